"""The entry flow for deployments (`prefect.yaml`): a playbook name and inputs, never secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from flows.engine.launch import LaunchError, new_incident_id, prepare
from flows.engine.runtime import execute_playbook


def _run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters
    name = Path(str(params.get("playbook", "playbook"))).stem
    return f"{name}-{params.get('incident_id') or datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


@flow(name="stanch-playbook", flow_run_name=_run_name, persist_result=False, log_prints=False)
def run_playbook_flow(
    playbook: str,
    inputs: dict[str, Any] | None = None,
    alert: dict[str, Any] | None = None,
    dry_run: bool = False,
    incident_id: str | None = None,
    trigger: str = "deployment",
    launched_by: str = "deployment",
) -> Any:
    """Run a Stanch playbook (by name from playbooks/, or a path) as this flow run."""
    try:
        resolved, values, facts = prepare(playbook, inputs or {}, alert)
    except LaunchError as exc:
        from prefect.states import Failed

        return Failed(message=str(exc))
    return execute_playbook(
        resolved,
        values,
        facts,
        "dry-run" if dry_run else "live",
        incident_id or new_incident_id(),
        trigger,
        launched_by,
    )
