"""What every launch does before a flow run exists: resolve the playbook, check inputs, read the alert."""

from __future__ import annotations

import getpass
import os
import secrets
from datetime import UTC, datetime
from typing import Any

from flows.alerts import normalize
from flows.language.model import Playbook
from flows.language.validate import check_inputs, load_playbook, resolve_playbook_path, with_defaults
from integrations.masking import looks_secret


class LaunchError(Exception):
    """A run that must not start; the message says what to fix. Nothing has been changed."""


def new_incident_id() -> str:
    return f"inc-{datetime.now(UTC):%Y%m%d-%H%M}-{secrets.token_hex(2)}"


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
    problems = check_inputs(playbook, given)
    for name, value in given.items():
        if isinstance(value, str) and looks_secret(value):
            problems.append(
                f"input {name!r} looks like a credential; pass a reference (a Secrets Manager ARN), never a secret value"
            )
    if problems:
        raise LaunchError("the run was not started:\n" + "\n".join(f"  - {p}" for p in problems))
    return playbook, with_defaults(playbook, given), alert


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
