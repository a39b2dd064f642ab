"""A playbook to a Prefect flow named after it. No I/O: the flow's body does the work when it runs."""

from __future__ import annotations

from typing import Any

from flows.language.model import Playbook


def compile_playbook(playbook: Playbook) -> Any:
    """A Prefect Flow named after the playbook; its parameters never carry secret values."""
    from prefect import flow

    from flows.engine.runtime import execute_playbook

    def body(
        inputs: dict[str, Any],
        alert: dict[str, Any] | None = None,
        mode: str = "live",
        incident_id: str = "",
        trigger: str = "manual",
        launched_by: str = "unknown",
        sandbox: bool = False,
    ) -> Any:
        return execute_playbook(playbook, inputs, alert, mode, incident_id, trigger, launched_by, sandbox)

    return flow(  # type: ignore[call-overload]
        body,
        name=playbook.metadata.name,
        description=playbook.metadata.title,
        flow_run_name="{incident_id}",
        persist_result=False,
        log_prints=False,
        validate_parameters=True,
    )
