"""The one launch path. Every launcher (the CLI, the demo, a deployment, tests) resolves the playbook, checks
its inputs and reads the alert here, then starts the playbook's own flow (`flows.engine.flow`)."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flows.alerts import AlertError, normalize
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
    playbook = playbook_ref if isinstance(playbook_ref, Playbook) else load_named(playbook_ref)
    try:
        alert = normalize(alert_raw) if alert_raw is not None else None
    except AlertError as exc:
        raise LaunchError(f"the alert cannot be used: {exc}") from None
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
    launch_proof: str | None = None,
) -> RunSummary:
    """Run a playbook's flow in this process and return its summary. Raises LaunchError before starting.

    `launch_proof` is the approval service's signature vouching for `launched_by` (flows.approvals.client.launch_proof);
    without it the launcher is an unverified claim."""
    from flows.engine.flow import playbook_flow

    playbook, values, facts = prepare(playbook_ref, inputs or {}, alert)
    with _summarised(observer) as captured:
        state = playbook_flow(playbook)(
            inputs=values,
            alert=facts,
            mode=RunMode.DRY_RUN if dry_run else RunMode.LIVE,
            incident_id=incident_id or new_incident_id(),
            trigger=trigger,
            launched_by=launched_by or current_user(),
            sandbox=sandbox,
            launch_proof=launch_proof,
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


def find_run(ref: str) -> Any:
    """A flow run by its id, or by an incident id that names exactly one run."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(UUID(ref))
        except ValueError:
            pass
        except ObjectNotFound:
            raise LaunchError(f"no flow run {ref} on this Prefect server") from None
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"incident:{ref}"])))
    if len(runs) != 1:
        found = ", ".join(str(r.id) for r in runs) or "none"
        raise LaunchError(f"incident {ref!r} names {len(runs)} runs ({found}): give the flow run id")
    return runs[0]


def mark_if_vanished(flow_run: Any, force: bool = False) -> bool:
    """Mark a run Crashed when its process is gone (no heartbeat for a while); True when it is (now) crashed."""
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from flows.engine.journal import last_heartbeat, stale_seconds

    state = flow_run.state
    if state is not None and state.is_crashed():
        return True
    if state is not None and state.is_final():
        return False
    beat = last_heartbeat(flow_run.id)
    alive_at = beat or flow_run.start_time  # a run that never beat yet is judged from its start
    age = (datetime.now(UTC) - alive_at).total_seconds() if alive_at else None
    if not force and (age is None or age < stale_seconds()):
        return False
    since = f"its last heartbeat was {age:.0f} s ago" if beat and age is not None else "it sent no heartbeat"
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Crashed(message=f"the run's process is gone: {since}"), force=True)
    return True


def resume_run(ref: str, *, force: bool = False, observer: Observer | None = None) -> RunSummary:
    """Continue a run whose process died, as the same flow run: finished steps are not run again, decided gates
    are not asked again, open gates keep their deadlines, and answers sent meanwhile are judged now."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Scheduled

    from flows.engine.flow import playbook_flow
    from flows.engine.journal import PLAYBOOK_KEY, read_input

    flow_run = find_run(ref)
    if "replay" in (flow_run.tags or []):  # a replay (`stanch replay`) resumed would run the playbook for real
        raise LaunchError(f"run {flow_run.id} is a replay of a recorded incident: it is never resumed; replay again")
    state = flow_run.state
    if state is not None and state.is_final() and not state.is_crashed():
        raise LaunchError(f"run {flow_run.id} already ended {state.name}: {state.message or ''}".strip())
    if not mark_if_vanished(flow_run, force=force):
        raise LaunchError(
            f"run {flow_run.id} is still alive in another process (it sent a heartbeat recently); "
            "if you know its process is gone, resume with --force"
        )
    with get_client(sync_client=True) as client:
        name = client.read_flow(flow_run.flow_id).name
        started_with = read_input(client, flow_run.id, PLAYBOOK_KEY)
        playbook = Playbook.model_validate_json(started_with) if started_with else load_named(name)
        client.set_flow_run_state(flow_run.id, Scheduled(name="Resuming"), force=True)
        flow_run = client.read_flow_run(flow_run.id)
    with _summarised(observer) as captured:
        final = run_flow_sync(
            playbook_flow(playbook), flow_run=flow_run, parameters=flow_run.parameters, return_type="state"
        )
    summary = captured.get("summary")
    if summary is None:
        raise RuntimeError(f"the resumed run ended {getattr(final, 'name', final)} without a summary")
    return summary


def load_named(name_or_path: str) -> Playbook:
    """A playbook by name or path, checked as `stanch validate` checks it, or LaunchError saying what to fix."""
    from flows.config import ConfigError
    from flows.language.validate import PlaybookError

    try:
        return load_playbook(find_playbook(name_or_path))
    except (FileNotFoundError, ConfigError) as exc:
        raise LaunchError(str(exc)) from None
    except PlaybookError as exc:
        raise LaunchError(f"the playbook has problems; fix them first:\n{exc}") from None


@contextmanager
def _summarised(observer: Observer | None) -> Iterator[dict[str, Any]]:
    """Pass a run's events to `observer` and keep its summary (under "summary") when it finishes."""
    captured: dict[str, Any] = {}

    def observe(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_finished":
            captured["summary"] = data["summary"]
        if observer is not None:
            observer(kind, data)

    with observing(observe):
        yield captured


def sweep_vanished_runs() -> list[str]:
    """Mark Crashed every Stanch run left Running or Paused by a process that is gone; the ids marked."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    wanted = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PAUSED])),
        tags=FlowRunFilterTags(all_=["stanch"]),
    )
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=wanted, limit=200)
    return [str(run.id) for run in runs if mark_if_vanished(run)]
