"""Expressions: jinja2's sandbox, evaluated once, with strict names and a small set of functions."""

from __future__ import annotations

import pytest

from flows.language.expressions import ExpressionError, Scope, check, evaluate, evaluate_string, normalize, truthy

CTX = {
    "inputs": {"user": "alice", "count": 3, "users": ["a", "b"]},
    "alert": {"raw": {"text": "${{ inputs.user }} <!channel>"}},
    "steps": {"find-key": {"outputs": {"active": 2, "keys": [{"id": "K1", "status": "Active"}]}}},
    "run": {"id": "r1", "mode": "live", "launched_by": "erin"},
}


def test_a_whole_expression_keeps_its_type_and_mixed_text_is_text() -> None:
    assert evaluate_string("${{ inputs.count }}", CTX) == 3
    assert evaluate_string("${{ inputs.users }}", CTX) == ["a", "b"]
    assert evaluate_string("n=${{ inputs.count }}", CTX) == "n=3"
    assert evaluate({"a": ["${{ inputs.user | upper }}"], "b": 1}, CTX) == {"a": ["ALICE"], "b": 1}


def test_dashed_step_ids_read_naturally() -> None:
    assert evaluate_string("${{ steps.find-key.outputs.active }}", CTX) == 2
    assert normalize("${{ steps.find-key.outputs }} steps.find-key") == "${{ steps['find-key'].outputs }} steps.find-key"
    assert evaluate_string("${{ steps.find-key.outputs.keys | map(attribute='id') | list }}", CTX) == ["K1"]


def test_alert_data_is_never_rendered_a_second_time() -> None:
    assert evaluate_string("${{ alert.raw.text }}", CTX) == "${{ inputs.user }} <!channel>"


def test_undefined_names_fail_with_the_expression_in_the_message() -> None:
    with pytest.raises(ExpressionError, match=r"inputs.nope"):
        evaluate_string("${{ inputs.nope }}", CTX)
    assert evaluate_string("${{ inputs.nope | default('x') }}", CTX) == "x"


def test_the_sandbox_refuses_python_internals() -> None:
    with pytest.raises(ExpressionError, match="has no attribute '__class__'"):
        evaluate_string("${{ inputs.__class__.__mro__ }}", CTX)
    with pytest.raises(ExpressionError, match="is unsafe"):
        evaluate_string("${{ run.mode.__class__ }}", CTX)
    with pytest.raises(ExpressionError):
        evaluate_string("${{ inputs.users.append('x') }}", CTX)
    assert CTX["inputs"]["users"] == ["a", "b"]


def test_check_names_unknown_functions_and_statements() -> None:
    scope = Scope(inputs=frozenset({"user"}), earlier_steps=frozenset(), all_steps=frozenset({"later"}))
    assert any("unknown function 'attr'" in m for m in check("${{ inputs.user | attr('x') }}", scope))
    assert check("${% for x in inputs %}x${% endfor %}", scope) == [
        "only ${{ ... }} expressions are allowed, not ${% ... %} statements"
    ]
    assert check("${{ lipsum() }}", scope) == [
        "unknown name 'lipsum': an expression can name inputs, alert, steps, run (and item in for_each)"
    ]
    assert "add 'later' to `needs`" in check("${{ steps.later.outputs }}", scope)[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("false", False),
        ("No", False),
        ("", False),
        ("yes", True),
        (0, False),
        ([1], True),
    ],
)
def test_truthy(value: object, expected: bool) -> None:
    assert truthy(value) is expected
