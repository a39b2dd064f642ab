"""Property-based tests: whatever a playbook holds, validation answers with problems at a place, quickly.

`make test` runs a few hundred derandomized examples; `make fuzz` (STANCH_FUZZ_EXAMPLES=10000, random) a long run.
Each failure found is kept as a fixture in tests/fixtures/invalid/ with its location in test_validate.EXPECTED.
"""

from __future__ import annotations

import os
import resource
import time

import yaml
from conftest import PLAYBOOKS, json_paths
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.language import expressions
from flows.language.validate import check_text

EXAMPLES = int(os.environ.get("STANCH_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or 120,
    derandomize=EXAMPLES is None,  # the suite is repeatable; the long run explores
    deadline=None,  # timed by the test itself (5 s), not by Hypothesis's per-call deadline
    database=None,
    suppress_health_check=list(HealthCheck),
)
LIMIT_SECONDS = 5.0
SOURCES = [p.read_text() for p in sorted(PLAYBOOKS.glob("*.yaml"))]

# Pieces of YAML that broke the loader or the tiers before, and their relatives.
SNIPPETS = [
    "&a [*a]",
    "&m {k: *m}",
    "!!int three",
    "!!float x",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!python/object:os.system x",
    "!custom {a: 1}",
    "9" * 4301,
    "1e400",
    ".nan",
    "~",
    "{1: x, true: y, null: z, [a]: b}",
    "{? [a, b] : c}",
    "[" * 60 + "]" * 60,
    "{a: " * 40 + "x" + "}" * 40,
    "'\x07'",
    '"\\x07 \\u0000"',
    "\ud7ff\ue000\U0001f600",
    "{<<: *nowhere}",
    "{<<: 3}",
    "{<<: [{a: 1}, {a: 2}]}",
    "2001-12-14t21:59:43.10-05:00",
    "yes",
    "0x1f",
    "1:30:00",
    '"${{ ' + "[" * 80 + "]" * 80 + ' }}"',
    '"${{ ' + "not " * 300 + '1 }}"',
    '"${{ ' + "1 + " * 500 + '1 }}"',
    '"${{ ' + "x | upper " * 200 + '}}"',
    '"${{ ${{ }} }}"',
    '"${% for x in y %}${% endfor %}"',
    '"${{ inputs[0][1].x }}"',
    '"${{ steps }}"',
    '"${{ item }}"',
    '"${{ "a" * 999999999 }}"',
    '"${{ 9 ** 9 ** 9 ** 9 }}"',
    '{$ref: "#/nope", default: 1}',
    '{$ref: "#", default: 1}',
    '{type: string, pattern: "(", default: x}',
    "{type: [string, 3]}",
]


NOISE = ":-[]{}&*!|>'\"#%@`, \t\nax${}?<"


def _bomb() -> str:
    lines = ["l0: &l0 [a,a,a,a,a,a,a,a,a]"]
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines)


def run_checked(text: str) -> None:
    """Validate; every outcome is a list of one-line problems with positions, within the time limit."""
    start = time.perf_counter()
    checked = check_text(text, "fuzz.yaml")
    elapsed = time.perf_counter() - start
    assert elapsed < LIMIT_SECONDS, f"{elapsed:.1f} s"
    assert checked.ok == (not checked.problems)
    for problem in checked.problems:
        assert problem.line >= 1 and problem.col >= 1, str(problem)
        assert problem.message and "\n" not in problem.message, str(problem)
        assert len(problem.message) < 2_000, problem.message[:200]


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    """A shipped playbook with lines inserted, replaced, dropped or cut: what an editor or an attacker makes."""
    lines = draw(st.sampled_from(SOURCES)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        op = draw(st.sampled_from(["value", "insert", "drop", "cut", "bomb", "noise"]))
        piece = draw(st.sampled_from(SNIPPETS))
        if op == "value" and ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + piece
        elif op == "insert":
            lines.insert(i, f"{indent}{draw(st.sampled_from(['x', 'with', 'inputs', '- id', 'on']))}: {piece}")
        elif op == "drop":
            del lines[i]
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "bomb":
            lines[i:i] = [indent + line for line in _bomb().splitlines()]
        else:
            noise = draw(st.text(st.sampled_from([*NOISE, "\x00", "\ufeff"]), max_size=30))
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + noise + lines[i][at:]
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["${{ inputs.user_name }}", "${{ steps.inventory.outputs.keys }}", "${{ item }}", "30m", "-1s"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@st.composite
def mutated_data(draw: st.DrawFn) -> str:
    """A shipped playbook as data with one to three values replaced by anything JSON-like, dumped as YAML."""
    data = yaml.safe_load(draw(st.sampled_from(SOURCES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(json_paths(data)))
        value = draw(json_values)
        if not path:
            data = value
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = value
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@given(mutated_text())
@FUZZ
def test_mutated_playbook_text_gets_problems_never_an_exception(text: str) -> None:
    run_checked(text)


@given(mutated_data())
@FUZZ
def test_mutated_playbook_data_gets_problems_never_an_exception(text: str) -> None:
    run_checked(text)


@given(st.text(max_size=300))
@FUZZ
def test_any_text_gets_problems_never_an_exception(text: str) -> None:
    run_checked(text)


NAMES = [
    "inputs.user_name",
    "inputs.nope",
    "alert.kind",
    "alert.raw.detail",
    "steps.inventory.outputs.keys",
    "steps['inventory'].outputs",
    "steps.ghost.state",
    "run.id",
    "item",
    "index",
    "nothing",
]
atoms = st.sampled_from(NAMES) | st.integers(-(10**6), 10**6).map(str) | st.text(max_size=8).map(repr)
FILTERS = [*expressions.ALLOWED_FILTERS, "attr", "format", "nope"]
exprs = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(
            inner, st.sampled_from(["+", "-", "*", "**", "/", "//", "%", "~", "==", " and ", " or ", " in "]), inner
        ).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(inner, st.sampled_from(FILTERS), st.lists(inner, max_size=2)).map(
            lambda t: f"{t[0]} | {t[1]}({', '.join(t[2])})"
        ),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, inner, inner).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
    ),
    max_leaves=25,
)
SCOPE = expressions.Scope(frozenset({"user_name"}), frozenset({"inventory"}), frozenset({"inventory", "ghost"}))
CONTEXT = {
    "inputs": {"user_name": "ci-deployer"},
    "alert": {"kind": "x", "raw": {"detail": {}}},
    "steps": {"inventory": {"outputs": {"keys": [{"id": "AKIA"}]}, "state": "completed"}},
    "run": {"id": "r"},
    "item": 1,
    "index": 0,
}


@given(exprs, st.sampled_from(["${{ %s }}", "x ${{ %s }} y", "${{ %s }}${{ %s }}", "${{ %s"]))
@example("inputs.user_name | truncate(item)", "${{ %s }}")  # found by `make fuzz`: jinja's truncate asserts
@FUZZ
def test_any_expression_is_checked_and_evaluated_without_an_uncaught_exception(body: str, shape: str) -> None:
    text = shape.replace("%s", body)
    start = time.perf_counter()
    messages = expressions.check(text, SCOPE)
    assert all(isinstance(m, str) and m for m in messages)
    try:
        expressions.evaluate_string(text, CONTEXT)
    except expressions.ExpressionError as exc:
        assert str(exc)
    assert time.perf_counter() - start < LIMIT_SECONDS


def test_peak_memory_of_the_fuzz_run_is_bounded() -> None:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS after the playbook and expression fuzzing: {peak_mb:.0f} MB")
    assert peak_mb < 1_024
