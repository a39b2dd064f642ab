"""`${{ ... }}` expressions: jinja2's immutable sandbox with custom delimiters and strict undefined names.

An expression is evaluated once. A string that is exactly one expression yields the native value
(a list stays a list); a string that mixes text and expressions yields text. The values an
expression reads (alert fields above all) are data and are never rendered a second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

START = "${{"
ROOTS = ("inputs", "alert", "steps", "run", "item", "index")
RUN_FIELDS = ("id", "mode", "launched_by", "launcher_verified", "incident_id", "playbook", "trigger", "dry_run", "sandbox")
ALLOWED_FILTERS = (
    "default",
    "lower",
    "upper",
    "trim",
    "replace",
    "join",
    "length",
    "first",
    "last",
    "unique",
    "sort",
    "list",
    "int",
    "float",
    "string",
    "tojson",
    "map",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "min",
    "max",
    "sum",
    "truncate",
)

_SEGMENT_RE = re.compile(r"\$\{\{(?P<body>(?:(?!\}\}).)*)\}\}", re.S)
_DASHED_STEP_RE = re.compile(r"(?<![\w.\]'\"])steps\.([a-z0-9][a-z0-9]*(?:-[a-z0-9]+)+)")
_FULL_RE = re.compile(r"^\s*\$\{\{(?P<body>(?:(?!\}\}).)*)\}\}\s*$", re.S)


# Bounds on what one string may ask of the parser: jinja's parser and compiler recurse once per level of an
# expression, and a playbook is untrusted input.
MAX_TEXT = 10_000  # characters in a string that holds expressions
MAX_DEPTH = 40  # levels of the parsed expression: brackets, operators, filters, `not`s


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; the message says which and why."""


MAX_VALUE = 1_000_000  # characters or items that `*`, `**` and `replace` may produce


class _Environment(ImmutableSandboxedEnvironment):
    """Mapping keys win over methods: `outputs.keys` is the `keys` output, never dict.keys.

    `*` and `**` are bounded: `'a' * 10**9` or `9 ** 9 ** 9` would take the runner's memory or time.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            big = isinstance(left, int) and isinstance(right, int) and right > 0 and left.bit_length() * right > 4096
            if big or (
                isinstance(right, int | float) and abs(right) > 64 and isinstance(left, int | float) and abs(left) > 1
            ):
                raise SecurityError("a power over 4096 bits (or an exponent over 64) is not allowed in an expression")
        elif isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple):
            seq, times = (left, right) if isinstance(left, str | list | tuple) else (right, left)
            size = _weight(seq) * times if isinstance(times, int) else 0
            if size > MAX_VALUE:
                raise SecurityError(f"the result would hold {size} characters or items (at most {MAX_VALUE})")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _Environment(
        variable_start_string="${{",
        variable_end_string="}}",
        block_start_string="${%",
        block_end_string="%}",
        comment_start_string="${#",
        comment_end_string="#}",
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters = {name: env.filters[name] for name in ALLOWED_FILTERS}
    env.filters["replace"] = _bounded_replace
    env.globals = {}
    return env


def _weight(value: Any) -> int:
    """Characters and items in a value, counted deeply and only up to just past MAX_VALUE.

    A list of one long string repeated a million times is cheap to hold but not to join or print.
    """
    total, stack = 0, [value]
    while stack and total <= MAX_VALUE:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list | tuple):
            total += len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(item.values())
        else:
            total += 1
    return total


def _bounded_replace(value: Any, old: Any, new: Any, count: Any = None) -> str:
    """jinja's replace, refusing a result over MAX_VALUE characters (replacements multiply in a chain)."""
    text, old, new = str(value), str(old), str(new)
    limit = -1 if count is None else int(count)
    found = text.count(old) if old else len(text) + 1
    if limit >= 0:
        found = min(found, limit)
    if len(text) + found * max(len(new) - len(old), 0) > MAX_VALUE:
        raise SecurityError(f"replace would make over {MAX_VALUE} characters")
    return text.replace(old, new, limit)


_ENV = _environment()


def has_expression(value: Any) -> bool:
    return isinstance(value, str) and START in value


def walk_strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Every string inside nested dicts and lists, with its relative path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from walk_strings(child, (*path, str(key)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from walk_strings(child, (*path, i))


# The one definition of what an expression may name, shared by the validator and the runtime:
# - `inputs`, `alert`, `run` everywhere; `steps.<id>` for the steps this one needs (directly or not);
# - `item` and `index` only in the `with` of a for_each step: the runtime evaluates `with` once per item,
#   and `when`, `for_each` and a gate's `message` once for the whole step;
# - `steps.<id>.outputs.<field>` only for fields of that step's action result (a for_each step's outputs
#   are a list, one entry per item).
ITEM_PLACES = frozenset({"with"})


@dataclass(frozen=True)
class StepOutputs:
    """The shape of a step's outputs: its action's result model, and whether it is a list (for_each)."""

    action: str
    model: Any  # a pydantic model class
    hidden: frozenset[str] = frozenset()  # secret result fields, never in outputs
    fan_out: bool = False


@dataclass(frozen=True)
class Scope:
    """What an expression may name at one place in a playbook."""

    inputs: frozenset[str]
    earlier_steps: frozenset[str]
    all_steps: frozenset[str] = frozenset()
    has_item: bool = False
    fan_out: bool = False  # the step has for_each (so `item` exists somewhere in it)
    place: str = "with"
    outputs: dict[str, StepOutputs] = field(default_factory=dict)


@dataclass
class Parsed:
    text: str
    references: list[tuple[str | int, ...]] = field(default_factory=list)
    filters: set[str] = field(default_factory=set)


def normalize(text: str) -> str:
    """Let step ids keep their dashes: `steps.find-key.outputs` reads as `steps['find-key'].outputs`."""

    def fix(segment: re.Match[str]) -> str:
        return "${{" + _DASHED_STEP_RE.sub(lambda m: f"steps['{m.group(1)}']", segment.group("body")) + "}}"

    return _SEGMENT_RE.sub(fix, text) if "steps." in text else text


@lru_cache(maxsize=4096)
def parse(text: str) -> Parsed:
    """Parse an expression string; raises ExpressionError with jinja's reason."""
    if len(text) > MAX_TEXT:
        raise ExpressionError(f"the text is {len(text)} characters; a string with expressions is at most {MAX_TEXT}")
    try:
        tree = _ENV.parse(normalize(text))
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"expression does not parse: {' '.join(str(exc.message).split())}") from None
    except RecursionError:
        raise ExpressionError(f"the expression is nested too deeply (at most {MAX_DEPTH} levels)") from None
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"the expression is nested too deeply (at most {MAX_DEPTH} levels)")
    parsed = Parsed(text)
    for stmt in tree.body:
        if not isinstance(stmt, nodes.Output):
            raise ExpressionError("only ${{ ... }} expressions are allowed, not ${% ... %} statements")
    _collect(tree, parsed)
    return parsed


def _depth(tree: nodes.Node) -> int:
    """The depth of a parsed tree, without recursion (a left-deep `1+1+...+1` parses without any)."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in node.iter_child_nodes())
    return deepest


def _chain(node: nodes.Node) -> tuple[str | int, ...] | None:
    parts: list[str | int] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def _collect(node: nodes.Node, parsed: Parsed) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        chain = _chain(node)
        if chain is not None:
            parsed.references.append(chain)
            return
    if isinstance(node, nodes.Name) and node.ctx == "load":
        parsed.references.append((node.name,))
        return
    if isinstance(node, nodes.Filter) and node.name:
        parsed.filters.add(node.name)
    for child in node.iter_child_nodes():
        _collect(child, parsed)


def check(text: str, scope: Scope) -> list[str]:
    """Messages for everything wrong with one expression string at one place (empty when fine)."""
    try:
        parsed = parse(text)
    except ExpressionError as exc:
        return [str(exc)]
    problems: list[str] = []
    for name in sorted(parsed.filters - set(ALLOWED_FILTERS)):
        problems.append(f"unknown function {name!r}; allowed: {', '.join(ALLOWED_FILTERS)}")
    for ref in parsed.references:
        problems.extend(_check_reference(ref, scope))
    return problems


def _check_reference(ref: tuple[str | int, ...], scope: Scope) -> list[str]:
    root = ref[0]
    if root not in ROOTS:
        return [f"unknown name {root!r}: an expression can name {', '.join(ROOTS[:4])} (and item in for_each)"]
    if root in ("item", "index") and not scope.has_item:
        if scope.fan_out:
            return [
                f"{root!r} is defined only in `with` (evaluated once per item); `{scope.place}` is evaluated once "
                "for the whole step: filter the list in for_each instead (e.g. select or selectattr)"
            ]
        return [f"{root!r} is only defined in a step with for_each"]
    if root == "inputs":
        if len(ref) < 2:
            return ["name one input: inputs.<name>"]
        if ref[1] not in scope.inputs:
            known = ", ".join(sorted(scope.inputs)) or "none declared"
            return [f"inputs.{ref[1]} is not a declared input (inputs: {known})"]
    if root == "run" and (len(ref) < 2 or ref[1] not in RUN_FIELDS):
        return [f"run has the fields {', '.join(RUN_FIELDS)}"]
    if root == "steps":
        if len(ref) < 3 or ref[2] not in ("outputs", "state"):
            return ["refer to a step's results as steps.<id>.outputs (or its state as steps.<id>.state)"]
        step_id = str(ref[1])
        if step_id not in scope.earlier_steps:
            if step_id in scope.all_steps:
                return [
                    f"steps.{step_id} is not an earlier step of this one: add {step_id!r} to `needs` "
                    "(directly or through a step it needs)"
                ]
            return [f"steps.{step_id} names no step in this playbook"]
        shape = scope.outputs.get(step_id)
        if ref[2] == "outputs" and len(ref) > 3 and shape is not None:
            return _check_outputs(step_id, shape, ref[3:])
    return []


def _check_outputs(step_id: str, shape: StepOutputs, path: tuple[str | int, ...]) -> list[str]:
    """Check `steps.<id>.outputs...` against the action's result model, one level of models at a time."""
    if shape.fan_out:
        if isinstance(path[0], str):
            return [
                f"steps.{step_id}.outputs is a list (one entry per item of its for_each): use "
                f"steps.{step_id}.outputs[0].{path[0]} or a filter such as map(attribute='{path[0]}')"
            ]
        path = path[1:]
    model = shape.model
    shown = f"steps.{step_id}.outputs"
    for part in path:
        if model is None or not isinstance(part, str):
            return []
        fields = {name: f for name, f in model.model_fields.items() if name not in shape.hidden}
        if part not in fields:
            known = ", ".join(sorted(fields)) or "none"
            return [f"{shown} has no field {part!r} ({shape.action} gives: {known})"]
        shown += f".{part}"
        annotation = fields[part].annotation
        model = annotation if isinstance(annotation, type) and hasattr(annotation, "model_fields") else None
    return []


def full_expression(text: str) -> str | None:
    """The body when the string is exactly one expression, else None."""
    match = _FULL_RE.match(text)
    return match.group("body") if match else None


@lru_cache(maxsize=4096)
def _compiled_expression(body: str) -> Any:
    return _ENV.compile_expression(body, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(text: str) -> Any:
    return _ENV.from_string(text)


def evaluate_string(text: str, context: dict[str, Any]) -> Any:
    if START not in text:
        return text
    parse(text)  # the bounds (length, depth) hold at run time too, whatever skipped validation
    try:
        body = full_expression(normalize(text))
        if body is not None:
            value = _compiled_expression(body)(**context)
            if isinstance(value, Undefined):
                raise ExpressionError(f"{text.strip()}: {value._undefined_message}")
            return value
        return _compiled_template(normalize(text)).render(**context)
    except ExpressionError:
        raise
    except UndefinedError as exc:
        raise ExpressionError(f"{text.strip()}: {exc.message}") from None
    except SecurityError as exc:
        raise ExpressionError(f"{text.strip()}: not allowed ({exc})") from None
    except TemplateError as exc:
        raise ExpressionError(f"{text.strip()}: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AssertionError) as exc:  # jinja's filters assert
        raise ExpressionError(f"{text.strip()}: {type(exc).__name__}: {exc}") from None


def evaluate(value: Any, context: dict[str, Any]) -> Any:
    """Evaluate every expression inside a value (nested dicts and lists), once."""
    if isinstance(value, str):
        return evaluate_string(value, context)
    if isinstance(value, dict):
        return {key: evaluate(child, context) for key, child in value.items()}
    if isinstance(value, list):
        return [evaluate(child, context) for child in value]
    return value


def truthy(value: Any) -> bool:
    """`when` semantics: Python truth, except that the strings 'false', 'no', '0' and '' are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0", "none")
    return bool(value)
