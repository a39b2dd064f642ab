"""Entry points for Prefect deployments: one flow per playbook, the very flow `stanch run` starts.

`prefect.yaml` names `flows/engine/deployments.py:<playbook name with underscores>`; Prefect loads that
attribute, and this module builds the playbook's flow on first use (from `playbook_dirs`, ./playbooks or
the bundled playbooks). A flow run started from a deployment is named after its incident and shows up in
the Prefect UI under the playbook's name, like every other launch.
"""

from __future__ import annotations

import logging
from typing import Any


class _RunOutcomeIsNotACrash(logging.Filter):
    """Prefect's engine, running a deployment's flow in a worker's subprocess, asks for the flow's result and so
    re-raises a run that ended Failed as FailedRun, logged as an engine traceback ("Engine execution exited with
    unexpected exception"). A Stanch run that ends Failed has already said why (its state message, its log, its
    summary): that record is dropped. Any other exception is still logged with its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import FailedRun

        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, FailedRun) and "exited with unexpected exception" in record.getMessage())


# This module is what a worker's flow-run process loads, before the engine runs the flow.
for _name in ("prefect.flow_runs", "prefect.engine"):
    logging.getLogger(_name).addFilter(_RunOutcomeIsNotACrash())


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from flows.engine.flow import playbook_flow
    from flows.engine.launch import find_playbook
    from flows.language.validate import load_playbook

    try:
        path = find_playbook(name.replace("_", "-"))
    except FileNotFoundError as exc:
        raise AttributeError(str(exc)) from None
    flow = playbook_flow(load_playbook(path))
    globals()[name] = flow
    return flow
