"""Entry points for Prefect deployments: one flow per playbook, the very flow `stanch run` starts.

`prefect.yaml` names `flows/engine/deployments.py:<playbook name with underscores>`; Prefect loads that
attribute, and this module builds the playbook's flow on first use (from `playbook_dirs`, ./playbooks or
the bundled playbooks). A flow run started from a deployment is named after its incident and shows up in
the Prefect UI under the playbook's name, like every other launch.
"""

from __future__ import annotations

from typing import Any


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
