"""The one launch path. Every launcher (the CLI, the demo, a deployment, tests) resolves the playbook, checks
its inputs and reads the alert here, then starts the playbook's own flow (`flows.engine.flow`)."""

from __future__ import annotations

import getpass
import os
from typing import Any

from flows.alerts import normalize
from flows.engine.flow import new_incident_id
from flows.engine.observe import Observer, observing
from flows.engine.records import RunSummary
from flows.language.model import Playbook
from flows.language.validate import check_inputs, load_playbook, resolve_playbook_path, with_defaults
from integrations.context import RunMode
from integrations.masking import looks_secret


class LaunchError(Exception):
    """A run that must not start; the message says what to fix. Nothing has been changed."""


def current_user() -> str:
    try:
        return os.environ.get("STANCH_USER") or getpass.getuser()
    except Exception:
        return "unknown"


def find_playbook(name_or_path: str) -> Any:
    """A playbook's path: as given, else in the configured playbook_dirs, ./playbooks or the bundled ones."""
    from pathlib import Path

    from flows.config import load_settings

    return resolve_playbook_path(name_or_path, [Path(d) for d in load_settings().playbook_dirs])


def prepare(
    playbook_ref: str | Playbook,
    inputs: dict[str, Any],
    alert_raw: dict[str, Any] | None = None,
) -> tuple[Playbook, dict[str, Any], dict[str, Any] | None]:
    """The playbook, its complete inputs and the alert's facts, or LaunchError."""
    from flows.language.validate import PlaybookError

    if isinstance(playbook_ref, Playbook):
        playbook = playbook_ref
    else:
        try:
            playbook = load_playbook(find_playbook(playbook_ref))
        except FileNotFoundError as exc:
            raise LaunchError(str(exc)) from None
        except PlaybookError as exc:
            raise LaunchError(f"the playbook has problems; fix them first:\n{exc}") from None
    alert = normalize(alert_raw) if alert_raw is not None else None
    given = dict(inputs)
    if alert is not None:
        # Inputs not given are taken from the alert's facts of the same name.
        for name in playbook.inputs:
            if name not in given and alert.get(name) not in (None, "", []):
                given[name] = alert[name]
    return playbook, checked_inputs(playbook, given), alert


def checked_inputs(playbook: Playbook, given: dict[str, Any]) -> dict[str, Any]:
    """The inputs with their defaults, or LaunchError naming every problem (a credential-looking value too)."""
    problems = check_inputs(playbook, given)
    for name, value in given.items():
        if isinstance(value, str) and looks_secret(value):
            problems.append(
                f"input {name!r} looks like a credential; pass a reference (a Secrets Manager ARN), never a secret value"
            )
    if problems:
        raise LaunchError("the run was not started:\n" + "\n".join(f"  - {p}" for p in problems))
    return with_defaults(playbook, given)


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
    """Run a playbook's flow in this process and return its summary. Raises LaunchError before starting."""
    from flows.engine.flow import playbook_flow

    playbook, values, facts = prepare(playbook_ref, inputs or {}, alert)
    captured: dict[str, Any] = {}

    def observe(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_finished":
            captured["summary"] = data["summary"]
        if observer is not None:
            observer(kind, data)

    with observing(observe):
        state = playbook_flow(playbook)(
            inputs=values,
            alert=facts,
            mode=RunMode.DRY_RUN if dry_run else RunMode.LIVE,
            incident_id=incident_id or new_incident_id(),
            trigger=trigger,
            launched_by=launched_by or current_user(),
            sandbox=sandbox,
            return_state=True,
        )
    summary = captured.get("summary")
    if summary is None:
        if state.is_failed() and state.message and "was not started" in state.message:
            raise LaunchError(state.message)
        # The flow crashed before it could summarise (a bug or an infrastructure failure).
        raise RuntimeError(f"the flow run ended {state.name} without a summary: {state.message}")
    return summary


def coerce_input(playbook: Playbook, name: str, text: str) -> Any:
    """A --input value: text for string inputs, else JSON when it parses (3, true, ["a"])."""
    import json

    schema = playbook.inputs.get(name, {})
    if schema.get("type") == "string":
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
