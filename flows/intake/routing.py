"""Which playbooks an alert starts, and with what inputs: each playbook's `triggers:` against the alert's facts."""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any

from flows.language import expressions
from flows.language.model import Playbook, Trigger

_log = logging.getLogger("stanch.intake")


class RouteError(ValueError):
    """An alert that matches a trigger whose inputs cannot be made from it; the message says which and why."""


def triggered_playbooks(dirs: list[str]) -> list[Playbook]:
    """Every valid playbook with triggers in `dirs`, ./playbooks and the bundled ones (the first of a name wins).
    A playbook with problems is logged and left out: one bad file never stops the intake."""
    from flows.language.validate import PLAYBOOK_DIR, check_file

    found: dict[str, Playbook] = {}
    for folder in [*(Path(d) for d in dirs), Path.cwd() / "playbooks", PLAYBOOK_DIR]:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            if path.suffix not in (".yaml", ".yml") or not path.is_file():
                continue
            checked = check_file(path)
            if not checked.ok or checked.playbook is None:
                _log.warning(
                    "%s has problems and starts on no alert: %s", path, checked.problems[0] if checked.problems else ""
                )
                continue
            if checked.playbook.triggers and checked.playbook.metadata.name not in found:
                found[checked.playbook.metadata.name] = checked.playbook
    return list(found.values())


def matches(trigger: Trigger, facts: dict[str, Any]) -> bool:
    """Whether the alert's facts meet the trigger's source, kind, fields and `when`."""
    if facts.get("source") not in trigger.sources:
        return False
    kind = str(facts.get("kind") or "")
    if not any(fnmatch.fnmatchcase(kind, pattern) for pattern in trigger.kinds):
        return False
    if any(facts.get(name) != value for name, value in trigger.match.items()):
        return False
    if trigger.when is None:
        return True
    try:
        return expressions.truthy(expressions.evaluate_string(trigger.when, {"alert": facts}))
    except expressions.ExpressionError as exc:
        _log.info("a trigger's `when` could not be read for this alert (taken as false): %s", exc)
        return False


def first_trigger(playbook: Playbook, facts: dict[str, Any]) -> int | None:
    return next((i for i, trigger in enumerate(playbook.triggers) if matches(trigger, facts)), None)


def trigger_inputs(playbook: Playbook, index: int, facts: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs: the trigger's mapping, then facts of the same name for inputs it leaves out.
    RouteError when a mapping cannot be evaluated."""
    trigger = playbook.triggers[index]
    inputs: dict[str, Any] = {}
    for name, value in trigger.inputs.items():
        try:
            result = expressions.evaluate(value, {"alert": facts})
        except expressions.ExpressionError as exc:
            raise RouteError(f"{playbook.metadata.name} triggers[{index}].inputs.{name}: {exc}") from None
        if result is not None:
            inputs[name] = result
    for name in playbook.inputs:
        if name not in inputs and facts.get(name) not in (None, "", []):
            inputs[name] = facts[name]
    return inputs
