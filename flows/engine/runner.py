"""Launch a playbook in this process (the CLI, the demo, tests) and get its summary back."""

from __future__ import annotations

from typing import Any

from flows.engine.launch import current_user, new_incident_id, prepare
from flows.engine.observe import Observer, observing
from flows.engine.records import RunSummary
from flows.language.model import Playbook


def run_playbook(
    playbook_ref: str | Playbook,
    inputs: dict[str, Any] | None = None,
    *,
    alert: dict[str, Any] | None = None,
    dry_run: bool = False,
    incident_id: str | None = None,
    trigger: str = "manual",
    launched_by: str | None = None,
    sandbox: bool = False,
    observer: Observer | None = None,
) -> RunSummary:
    """Run a playbook as a Prefect flow run and return its summary. Raises LaunchError before starting."""
    from flows.engine.compiler import compile_playbook

    playbook, values, facts = prepare(playbook_ref, inputs or {}, alert)
    captured: dict[str, Any] = {}

    def observe(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_finished":
            captured["summary"] = data["summary"]
        if observer is not None:
            observer(kind, data)

    flow = compile_playbook(playbook)
    with observing(observe):
        state = flow(
            inputs=values,
            alert=facts,
            mode="dry-run" if dry_run else "live",
            incident_id=incident_id or new_incident_id(),
            trigger=trigger,
            launched_by=launched_by or current_user(),
            sandbox=sandbox,
            return_state=True,
        )
    summary = captured.get("summary")
    if summary is None:
        # The flow crashed before it could summarise (a bug or an infrastructure failure).
        raise RuntimeError(f"the flow run ended {state.name} without a summary: {state.message}")
    return summary
