"""Validate playbooks in tiers (schema, graph, action arguments, expressions), collecting every problem.

This module is on `stanch validate`'s fast path: it must not import Prefect, boto3 or slack_sdk.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flows.language import expressions
from flows.language.loader import Document, PathT, Problem, format_path, load_file, parse_yaml
from flows.language.model import Playbook

PLAYBOOK_DIR = Path(__file__).resolve().parents[2] / "playbooks"

# Documents of other kinds that `stanch validate` checks: kind -> module with `check_document(doc) -> list[Problem]`.
# Each module must stay off Prefect, boto3 and slack_sdk (the validate fast path).
OTHER_KINDS = {
    "Vendor": "flows.vendors.inventory",
    "Scenario": "flows.tabletop.scenario",
}


@dataclass
class Checked:
    """A checked playbook file: the model when valid, every problem otherwise."""

    file: str
    playbook: Playbook | None
    problems: list[Problem] = field(default_factory=list)
    document: Document | None = None
    kind: str = "Playbook"

    @property
    def ok(self) -> bool:
        if self.kind != "Playbook":
            return not self.problems
        return self.playbook is not None and not self.problems


class PlaybookError(Exception):
    """A playbook that cannot be used; str() lists every problem, one per line."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def check_file(path: str | Path) -> Checked:
    doc, problems = load_file(path)
    if doc is None:
        return Checked(str(path), None, problems)
    return check_document(doc, problems)


def check_text(text: str, file: str = "<string>") -> Checked:
    from flows.language.loader import YamlError

    try:
        doc, problems = parse_yaml(text, file)
    except YamlError as exc:
        return Checked(file, None, [exc.problem])
    return check_document(doc, problems)


def load_playbook(path: str | Path) -> Playbook:
    """The playbook at `path`, or PlaybookError listing every problem."""
    checked = check_file(path)
    if not checked.ok or checked.playbook is None:
        raise PlaybookError(checked.problems)
    return checked.playbook


def resolve_playbook_path(name_or_path: str, search: Iterable[Path] = ()) -> Path:
    """A path as given, else `<name>.yaml` in the search directories, then the bundled playbooks/."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    for folder in (*search, Path.cwd() / "playbooks", PLAYBOOK_DIR):
        for suffix in (".yaml", ".yml"):
            path = folder / f"{name_or_path}{suffix}"
            if path.exists():
                return path
    raise FileNotFoundError(f"no playbook named {name_or_path!r} (looked for {name_or_path}.yaml in playbooks/)")


def check_document(doc: Document, problems: list[Problem] | None = None) -> Checked:
    problems = list(problems or [])
    # Where the loader refused a value (it reads as None), the tiers below would only report that None again.
    refused = {p.path for p in problems}
    from_loader = len(problems)
    data = doc.data
    if not isinstance(data, dict):
        problems.append(doc.problem((), "a playbook is a YAML mapping with apiVersion, kind, metadata, steps"))
        return Checked(doc.file, None, problems, doc)
    kind = data.get("kind")
    other = OTHER_KINDS.get(kind) if isinstance(kind, str) else None
    if other is not None:
        # Vendor inventories and tabletop scenarios: their own schema and checks, the same problem format.
        module = importlib.import_module(other)
        problems.extend(module.check_document(doc))
        return Checked(doc.file, None, _dedupe(problems), doc, kind=str(data["kind"]))
    playbook: Playbook | None = None
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems.extend(_schema_problems(doc, exc))
    problems.extend(_input_problems(doc, data))
    problems.extend(_graph_problems(doc, data))
    problems.extend(_action_problems(doc, data))
    problems.extend(_expression_problems(doc, data))
    problems.extend(_trigger_problems(doc, data))
    problems = [p for i, p in enumerate(problems) if i < from_loader or p.path not in refused]
    problems = _dedupe(problems)
    return Checked(doc.file, playbook if not problems else None, problems, doc)


def _shown(value: Any, limit: int = 80) -> str:
    """A value's type and a short, single-line repr (values come from the playbook: they can be huge)."""
    text = repr(value)
    return f"{type(value).__name__} {text[:limit]}{'...' if len(text) > limit else ''}"


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[int, int, str]] = set()
    out = []
    for problem in sorted(problems, key=lambda p: (p.line, p.col)):
        key = (problem.line, problem.col, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


# ---------------------------------------------------------------- tier 1: schema


_FIELD_HINTS = {
    ("approval", "timeout"): "a gate needs `timeout` (how long it waits; there is no default), e.g. 30m",
}


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[PathT, bool]:
    """Map a pydantic loc onto the document: drop union tags; tell whether the full path exists."""
    path: list[str | int] = []
    node = data
    exists = True
    for part in loc:
        if part == "[key]":
            continue  # pydantic's marker for a mapping key that failed: the path already names the key
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and exists:
            path.append(part)  # a missing key: name it
            exists = False
            node = None
        # anything else is a pydantic union/type tag such as 'str' or 'function-after[...]'
    return tuple(path), exists


def _schema_problems(doc: Document, exc: ValidationError) -> list[Problem]:
    problems = []
    union_seen: set[PathT] = set()
    for error in exc.errors(include_url=False):
        path, exists = _data_path(doc.data, tuple(error["loc"]))
        kind = error["type"]
        name = path[-1] if path else ""
        parent = path[:-1]
        if kind == "missing":
            hint = _FIELD_HINTS.get((str(parent[-1]) if parent and isinstance(parent[-1], str) else "", str(name)))
            message = hint or f"missing required field {name!r}"
            problems.append(doc.problem(path, message, at=parent))
            continue
        if kind == "extra_forbidden":
            siblings = _allowed_fields(parent, doc.data)
            close = difflib.get_close_matches(str(name), siblings, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed: {', '.join(siblings)}" if siblings else "")
            problems.append(doc.problem(path, f"unknown field {name!r}{hint}"))
            continue
        if path in union_seen:
            continue
        message = error["msg"]
        if len(error["loc"]) > len(path) and exists:
            # a failed union (str | int and the like): one message for the value
            union_seen.add(path)
        if kind == "string_pattern_mismatch" and name == "id":
            message = "a step id is a slug: lower-case letters, digits and dashes (deactivate-key)"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        elif kind.endswith("_type") and "input" in error:
            message = f"{message} (got {_shown(error['input'])})"
        problems.append(doc.problem(path, message))
    return problems


def _allowed_fields(path: PathT, data: Any) -> list[str]:
    from flows.language.model import Approval, Metadata, Step

    names = [str(p) for p in path if isinstance(p, str)]
    model: Any = Playbook
    if names[-1:] == ["metadata"]:
        model = Metadata
    elif names[-1:] == ["approval"]:
        model = Approval
    elif names[-1:] == ["steps"]:
        model = Step
    elif names:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


# ---------------------------------------------------------------- inputs


def _input_problems(doc: Document, data: dict[str, Any]) -> list[Problem]:
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        return []
    from jsonschema import SchemaError
    from jsonschema import ValidationError as JsonValidationError
    from jsonschema.validators import Draft202012Validator

    problems = []
    for name, fragment in inputs.items():
        if not isinstance(fragment, dict):
            continue
        try:
            _check_schema(json.dumps(fragment, sort_keys=True, default=str))
        except SchemaError as exc:
            where = ("inputs", name, *[str(p) for p in exc.path])
            problems.append(doc.problem(where, f"input {name!r} is not a valid JSON Schema: {exc.message}"))
            continue
        if "default" in fragment:
            try:
                Draft202012Validator(fragment).validate(fragment["default"])
            except JsonValidationError as exc:
                problems.append(
                    doc.problem(("inputs", name, "default"), f"the default does not fit the input: {exc.message}")
                )
            except _SCHEMA_FAILURES as exc:
                problems.append(doc.problem(("inputs", name), f"input {name!r} cannot be used: {_schema_failure(exc)}"))
    return problems


def _schema_failure(exc: Exception) -> str:
    """Why a schema that passed the metaschema still cannot check a value, in one line."""
    if isinstance(exc, RecursionError):
        return "its $ref refers to itself without end"
    from referencing.exceptions import Unresolvable

    if isinstance(exc, Unresolvable):
        # jsonschema wraps this in a frozen attrs exception: read it, never re-raise it
        ref = getattr(exc, "ref", None) or getattr(getattr(exc, "_wrapped", None), "ref", None)
        if isinstance(ref, str) and ref.startswith("/"):
            ref = "#" + ref  # referencing reports a local pointer without its '#'
        return f"$ref {ref!r} points to nothing" if ref else "a $ref points to nothing"
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


# A schema can pass the metaschema and still fail on use: a $ref to nowhere or to itself, a regex Python rejects.
_SCHEMA_FAILURES = (Exception,)


@functools.lru_cache(maxsize=1024)
def _check_schema(fragment_json: str) -> None:
    """Check one input fragment against the JSON Schema metaschema (cached: playbooks repeat them)."""
    from jsonschema.validators import Draft202012Validator

    Draft202012Validator.check_schema(json.loads(fragment_json))


def check_inputs(playbook: Playbook, given: dict[str, Any]) -> list[str]:
    """Run-time inputs against the playbook's declared inputs; one message per problem, naming the input."""
    from jsonschema import Draft202012Validator

    messages = []
    for name in sorted(set(given) - set(playbook.inputs)):
        known = ", ".join(sorted(playbook.inputs)) or "none"
        messages.append(f"input {name!r} is not declared by playbook {playbook.metadata.name} (inputs: {known})")
    for name in playbook.required_inputs():
        if name not in given:
            messages.append(f"input {name!r} is required: pass --input {name}=...")
    for name, value in given.items():
        schema = playbook.inputs.get(name)
        if schema is None:
            continue
        try:
            for error in Draft202012Validator(schema).iter_errors(value):
                messages.append(f"input {name!r}: {error.message}")
        except _SCHEMA_FAILURES as exc:
            messages.append(f"input {name!r} cannot be checked: {_schema_failure(exc)}")
    return messages


def with_defaults(playbook: Playbook, given: dict[str, Any]) -> dict[str, Any]:
    values = {name: schema["default"] for name, schema in playbook.inputs.items() if "default" in schema}
    values.update(given)
    return values


# ---------------------------------------------------------------- tier 2: graph


def _steps(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    return [(i, s) for i, s in enumerate(steps) if isinstance(s, dict)]


def _needs(step: dict[str, Any]) -> list[str]:
    needs = step.get("needs")
    return [n for n in needs if isinstance(n, str)] if isinstance(needs, list) else []


def _graph_problems(doc: Document, data: dict[str, Any]) -> list[Problem]:
    problems = []
    ids: dict[str, int] = {}
    for i, step in _steps(data):
        step_id = step.get("id")
        if not isinstance(step_id, str):
            continue
        if step_id in ids:
            problems.append(doc.problem(("steps", i, "id"), f"duplicate step id {step_id!r} (also steps[{ids[step_id]}])"))
        else:
            ids[step_id] = i
    groups: dict[str, Any] = data["approvers"] if isinstance(data.get("approvers"), dict) else {}
    for i, step in _steps(data):
        for j, need in enumerate(step.get("needs") or [] if isinstance(step.get("needs"), list) else []):
            if not isinstance(need, str):
                continue
            if need == step.get("id"):
                problems.append(doc.problem(("steps", i, "needs", j), "a step cannot need itself"))
            elif need not in ids:
                close = difflib.get_close_matches(need, list(ids), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(doc.problem(("steps", i, "needs", j), f"needs unknown step {need!r}{hint}"))
        approval = step.get("approval")
        if isinstance(approval, dict):
            for key in ("from", "escalate_to"):
                group = approval.get(key)
                if isinstance(group, str) and group not in groups:
                    known = ", ".join(sorted(groups)) or "none declared"
                    problems.append(
                        doc.problem(
                            ("steps", i, "approval", key),
                            f"unknown approver group {group!r}: declare it under `approvers` (groups: {known})",
                        )
                    )
    for name, members in groups.items():
        if isinstance(members, list) and not members:
            problems.append(doc.problem(("approvers", name), f"approver group {name!r} is empty"))
    problems.extend(_cycle_problems(doc, data, ids))
    return problems


def _cycle_problems(doc: Document, data: dict[str, Any], ids: dict[str, int]) -> list[Problem]:
    graph = {sid: [n for n in _needs(data["steps"][i]) if n in ids and n != sid] for sid, i in ids.items()}
    color: dict[str, int] = {}
    problems = []
    reported: set[frozenset[str]] = set()

    def visit(node: str, trail: list[str]) -> None:
        color[node] = 1
        trail.append(node)
        for nxt in graph[node]:
            if color.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    shown = " -> ".join([*cycle, nxt])
                    problems.append(
                        doc.problem(("steps", ids[nxt], "needs"), f"steps depend on each other in a cycle: {shown}")
                    )
            elif color.get(nxt) is None:
                visit(nxt, trail)
        trail.pop()
        color[node] = 2

    for sid in ids:
        if color.get(sid) is None:
            visit(sid, [])
    return problems


def ancestors(data_steps: dict[str, list[str]], step_id: str) -> set[str]:
    """Every step that `step_id` needs, directly or through another step."""
    seen: set[str] = set()
    stack = list(data_steps.get(step_id, []))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(data_steps.get(node, []))
    return seen


# ---------------------------------------------------------------- tier 3: action arguments


def _action_problems(doc: Document, data: dict[str, Any]) -> list[Problem]:
    from integrations.registry import load_actions

    registry = load_actions()
    problems = []
    for i, step in _steps(data):
        key = step.get("uses")
        if not isinstance(key, str):
            continue
        spec = registry.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(registry), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(doc.problem(("steps", i, "uses"), f"unknown action {key!r}{hint}"))
            continue
        args = step.get("with", {})
        if not isinstance(args, dict):
            continue
        with_path: PathT = ("steps", i, "with") if "with" in step else ("steps", i)
        dynamic = {k for k, v in args.items() if any(expressions.has_expression(s) for _, s in expressions.walk_strings(v))}
        literal = {k: v for k, v in args.items() if k not in dynamic}
        try:
            spec.args_model.model_validate(literal)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = tuple(error["loc"])
                name = str(loc[0]) if loc else ""
                if error["type"] == "missing":
                    if name in dynamic:
                        continue
                    message = f"{key} needs argument {name!r}"
                    problems.append(doc.problem((*with_path, name), message, at=with_path))
                elif error["type"] == "extra_forbidden":
                    allowed = ", ".join(spec.args_model.model_fields)
                    problems.append(
                        doc.problem((*with_path, name), f"{key} has no argument {name!r} (arguments: {allowed})")
                    )
                else:
                    path, _ = _data_path(args, loc)
                    got = error.get("input")
                    problems.append(
                        doc.problem(
                            (*with_path, *path),
                            f"argument {name!r} of {key}: {error['msg']} (got {_shown(got)})",
                        )
                    )
    return problems


# ---------------------------------------------------------------- tier 4: expressions


def _step_outputs(steps: list[tuple[int, dict[str, Any]]]) -> dict[str, expressions.StepOutputs]:
    """Each step's output shape, from its action's result model (steps with an unknown action are left out)."""
    from integrations.registry import load_actions

    registry = load_actions()
    shapes = {}
    for _, step in steps:
        sid, key = step.get("id"), step.get("uses")
        spec = registry.get(key) if isinstance(key, str) else None
        if isinstance(sid, str) and spec is not None:
            shapes[sid] = expressions.StepOutputs(str(key), spec.result_model, spec.secret_results, "for_each" in step)
    return shapes


def _expression_problems(doc: Document, data: dict[str, Any]) -> list[Problem]:
    inputs = frozenset(data["inputs"]) if isinstance(data.get("inputs"), dict) else frozenset()
    steps = _steps(data)
    graph = {s["id"]: _needs(s) for _, s in steps if isinstance(s.get("id"), str)}
    all_ids = frozenset(graph)
    outputs = _step_outputs(steps)
    problems = []
    for i, step in steps:
        sid = step.get("id")
        earlier = frozenset(ancestors(graph, sid)) if isinstance(sid, str) else frozenset()
        fan_out = "for_each" in step
        places: list[tuple[str, PathT, Any]] = [
            ("with", ("steps", i, "with"), step.get("with")),
            ("when", ("steps", i, "when"), step.get("when")),
            ("for_each", ("steps", i, "for_each"), step.get("for_each")),
        ]
        approval = step.get("approval")
        if isinstance(approval, dict):
            places.append(("approval.message", ("steps", i, "approval", "message"), approval.get("message")))
        for place, path, value in places:
            scope = expressions.Scope(
                inputs,
                earlier,
                all_ids,
                has_item=fan_out and place in expressions.ITEM_PLACES,
                fan_out=fan_out,
                place=place,
                outputs=outputs,
            )
            for sub, text in expressions.walk_strings(value):
                if not expressions.has_expression(text):
                    continue
                for message in expressions.check(text, scope):
                    problems.append(doc.problem((*path, *sub), message))
    return problems


def _trigger_problems(doc: Document, data: dict[str, Any]) -> list[Problem]:
    """Triggers: matched facts that exist, inputs the playbook declares, expressions that name only alert facts."""
    from flows.language.model import ALERT_FACTS

    triggers = data.get("triggers")
    if not isinstance(triggers, list):
        return []
    declared = set(data["inputs"]) if isinstance(data.get("inputs"), dict) else set()
    problems = []
    for i, trigger in enumerate(triggers):
        if not isinstance(trigger, dict):
            continue
        match = trigger.get("match")
        for name in match if isinstance(match, dict) else ():
            if name not in ALERT_FACTS:
                problems.append(
                    doc.problem(("triggers", i, "match", name), f"{name!r} is not an alert fact ({', '.join(ALERT_FACTS)})")
                )
        inputs = trigger.get("inputs")
        for name in inputs if isinstance(inputs, dict) else ():
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none declared"
                problems.append(
                    doc.problem(("triggers", i, "inputs", name), f"{name!r} is not a declared input (inputs: {known})")
                )
        places: list[tuple[PathT, Any]] = [
            (("triggers", i, "when"), trigger.get("when")),
            (("triggers", i, "inputs"), inputs),
        ]
        for path, value in places:
            for sub, text in expressions.walk_strings(value):
                if expressions.has_expression(text):
                    problems.extend(doc.problem((*path, *sub), m) for m in _trigger_expression_problems(text, ALERT_FACTS))
    return problems


def _trigger_expression_problems(text: str, facts: tuple[str, ...]) -> list[str]:
    try:
        parsed = expressions.parse(text)
    except expressions.ExpressionError as exc:
        return [str(exc)]
    problems = [
        f"unknown function {name!r}; allowed: {', '.join(expressions.ALLOWED_FILTERS)}"
        for name in sorted(parsed.filters - set(expressions.ALLOWED_FILTERS))
    ]
    for ref in parsed.references:
        if ref[0] != "alert":
            problems.append(f"a trigger can name only the alert's facts (alert.<fact>), not {ref[0]!r}")
        elif len(ref) < 2 or ref[1] not in (*facts, "raw"):
            problems.append(f"name one alert fact: alert.<fact> ({', '.join(facts)}, raw)")
    return problems


def describe(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems)


__all__ = [
    "Checked",
    "PlaybookError",
    "check_document",
    "check_file",
    "check_inputs",
    "check_text",
    "describe",
    "format_path",
    "load_playbook",
]
