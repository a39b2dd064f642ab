"""`stanch validate`: every problem, with file, line, column and YAML path; never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, PLAYBOOKS, STANCH

from flows.language.validate import check_file, check_text

INVALID = FIXTURES / "invalid"

# fixture -> (line, YAML path, words the message must contain)
EXPECTED = {
    "bad-yaml.yaml": (13, "", "it started on line 12"),
    "duplicate-key.yaml": (13, "steps[0].with.message", "duplicate key 'message'"),
    "unknown-action.yaml": (10, "steps[0].uses", "did you mean 'aws.iam.deactivate_access_key'"),
    "unknown-need.yaml": (15, "steps[1].needs[1]", "needs unknown step 'frist-typo'"),
    "cycle.yaml": (11, "steps[0].needs", "a -> c -> b -> a"),
    "bad-expression.yaml": (14, "steps[0].with.message", "does not parse"),
    "forward-reference.yaml": (14, "steps[0].with.message", "add 'inventory' to `needs`"),
    "wrong-argument-type.yaml": (12, "steps[0].with.condition", "valid boolean"),
    "gate-without-timeout.yaml": (13, "steps[0].approval.timeout", "a gate needs `timeout`"),
    "unknown-approver-group.yaml": (14, "steps[0].approval.from", "unknown approver group 'on-call'"),
    # what the validator accepts, the run can evaluate: `when` and a gate's message are evaluated once per step
    "item-in-when.yaml": (12, "steps[0].when", "'item' is defined only in `with`"),
    "item-in-gate-message.yaml": (17, "steps[0].approval.message", "`approval.message` is evaluated once"),
    "unknown-output-field.yaml": (17, "steps[1].with.message", "has no field 'kyes' (aws.iam.list_access_keys gives: "),
    # bounded parsing: each was an uncaught exception, a stall or a report at 1:1 before (several found by fuzzing)
    "recursive-alias.yaml": (8, "approvers.oncall[1]", "a recursive alias"),
    "alias-bomb.yaml": (11, "approvers.l3[0][0][8][8]", "aliases expand to more than 1000 values"),
    "int-tag-not-a-number.yaml": (13, "steps[0].retries", "'three' is not a valid int"),
    "empty-int-tag.yaml": (13, "steps[0].retries", "'' is not a valid int"),  # found by `make fuzz`
    "huge-integer.yaml": (13, "steps[0].retries", "a number of 4301 digits is too long"),
    "non-string-key.yaml": (8, "inputs", "a mapping key must be text: quote '1'"),
    "binary-tag.yaml": (12, "steps[0].with.message", "the tag '!!binary' is not allowed"),
    "ref-to-nowhere.yaml": (8, "inputs.user_name", "$ref '#/$defs/missing' points to nothing"),
    "deep-expression.yaml": (12, "steps[0].with.message", "nested too deeply"),
    "deep-nesting.yaml": (12, "steps[0].with.message" + "[0]" * 29, "nested deeper than 32 levels"),
    "control-character.yaml": (12, "", "control character U+0007 is not allowed"),
    "not-utf8.yaml": (5, "", "byte 0xe9 is not UTF-8 text"),
}

# fixture -> column, where the column says more than the line
COLUMNS = {
    "control-character.yaml": 19,
    "not-utf8.yaml": 13,
    "int-tag-not-a-number.yaml": 14,
    "deep-nesting.yaml": 45,
}


def test_every_invalid_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_fixture_reports_its_one_problem_where_it_is(name: str) -> None:
    line, path, words = EXPECTED[name]
    checked = check_file(INVALID / name)
    assert checked.playbook is None
    assert len(checked.problems) == 1, [str(p) for p in checked.problems]
    problem = checked.problems[0]
    assert problem.line == line, str(problem)
    assert problem.col == COLUMNS.get(name, problem.col), str(problem)
    assert "\n" not in str(problem)
    assert problem.file.endswith(name)
    from flows.language.loader import format_path

    assert format_path(problem.path) == path, str(problem)
    assert words in problem.message, str(problem)
    rendered = str(problem)
    assert rendered.startswith(f"{INVALID / name}:{line}:")
    if path:
        assert rendered.endswith(f"(at {path})")


def test_validate_command_prints_every_problem_and_exits_1_without_traceback() -> None:
    proc = subprocess.run([STANCH, "validate", str(INVALID)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == len(EXPECTED)
    assert f"{len(EXPECTED)} problem(s) in {len(EXPECTED)} file(s)" in proc.stderr


def test_validate_command_passes_the_shipped_playbooks() -> None:
    proc = subprocess.run([STANCH, "validate", str(PLAYBOOKS)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "aws-access-key-compromise.yaml: ok" in proc.stdout


def test_validate_does_not_import_prefect_boto3_slack_or_rich() -> None:
    code = (
        "import sys\n"
        "from flows.language.validate import check_file\n"
        f"assert check_file({str(PLAYBOOKS / 'aws-access-key-compromise.yaml')!r}).ok\n"
        "heavy = [m for m in ('prefect', 'boto3', 'botocore', 'slack_sdk') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == ""
    # The command as a whole: nor rich (its output is plain lines), and it exits 0 on the shipped playbooks.
    code = (
        "import sys\n"
        "from flows.cli import main\n"
        f"sys.argv = ['stanch', 'validate', '-q', {str(PLAYBOOKS)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = [m for m in ('prefect', 'boto3', 'botocore', 'slack_sdk', 'rich') if m in sys.modules]\n"
        "print('heavy:' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "heavy:", proc.stdout


def test_a_file_that_does_not_exist_is_a_problem_not_a_crash() -> None:
    proc = subprocess.run(
        [STANCH, "validate", "no/such/playbook.yaml"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1
    assert "no/such/playbook.yaml:1:1: cannot read the file" in proc.stdout
    assert "Traceback" not in proc.stderr


BASE = """\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: t, title: T, severity: low}
"""


def test_yaml_yes_no_and_dates_stay_strings() -> None:
    checked = check_text(
        BASE
        + """\
inputs:
  answer: {type: string, default: no}
  day: {type: string, default: 2024-01-01}
steps:
  - {id: s, phase: notify, uses: core.log, with: {message: yes}}
""",
        "t.yaml",
    )
    assert checked.ok, [str(p) for p in checked.problems]
    pb = checked.playbook
    assert pb is not None
    assert pb.inputs["answer"]["default"] == "no"
    assert pb.inputs["day"]["default"] == "2024-01-01"
    assert pb.steps[0].with_["message"] == "yes"


def test_many_problems_are_all_reported_in_line_order() -> None:
    checked = check_text(
        BASE
        + """\
approvers: {oncall: [alice]}
steps:
  - id: Bad_Id
    phase: notify
    uses: core.log
    with: {message: hi, colour: red}
  - id: two
    phase: sideways
    uses: core.nothing
    needs: [ghost]
    retries: "3"
    approval: {from: nobody, timeout: 5 minutes}
""",
        "many.yaml",
    )
    messages = [f"{p.line}: {p.message}" for p in checked.problems]
    joined = "\n".join(messages)
    assert "a step id is a slug" in joined
    assert "core.log has no argument 'colour'" in joined
    assert "Input should be 'contain'" in joined
    assert "unknown action 'core.nothing'" in joined
    assert "needs unknown step 'ghost'" in joined
    assert "unknown approver group 'nobody'" in joined
    assert "'5 minutes' is not a duration" in joined
    assert "valid integer" in joined
    assert [p.line for p in checked.problems] == sorted(p.line for p in checked.problems)


def test_missing_required_argument_and_unknown_run_field() -> None:
    checked = check_text(
        BASE
        + """\
steps:
  - id: s
    phase: contain
    uses: aws.iam.deactivate_access_key
    with:
      user_name: "${{ run.who }}"
""",
        "m.yaml",
    )
    joined = "\n".join(str(p) for p in checked.problems)
    assert "needs argument 'access_key_id' (at steps[0].with.access_key_id)" in joined
    assert "run has the fields" in joined


def test_item_outside_for_each_and_undeclared_input() -> None:
    checked = check_text(
        BASE
        + """\
steps:
  - id: s
    phase: notify
    uses: core.log
    with: {message: "${{ item }} ${{ inputs.nope }}"}
""",
        "i.yaml",
    )
    joined = "\n".join(str(p) for p in checked.problems)
    assert "'item' is only defined in a step with for_each" in joined
    assert "inputs.nope is not a declared input" in joined


def test_escalation_needs_a_group_and_input_schema_must_be_valid() -> None:
    checked = check_text(
        BASE
        + """\
approvers: {oncall: [alice]}
inputs:
  count: {type: numberish}
steps:
  - id: s
    phase: notify
    uses: core.log
    approval: {from: oncall, timeout: 1m, on_timeout: escalate}
    with: {message: hi}
""",
        "e.yaml",
    )
    joined = "\n".join(str(p) for p in checked.problems)
    assert "on_timeout: escalate needs `escalate_to`" in joined
    assert "input 'count' is not a valid JSON Schema" in joined


def test_special_files_are_refused_by_type_and_every_other_file_is_still_checked(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "a-fifo.yaml")  # opening it for reading would wait for a writer forever
    (tmp_path / "b-directory.yaml").mkdir()
    (tmp_path / "c-bomb.yaml").write_bytes((INVALID / "alias-bomb.yaml").read_bytes())
    (tmp_path / "d-good.yaml").write_bytes((PLAYBOOKS / "aws-access-key-compromise.yaml").read_bytes())
    proc = subprocess.run([STANCH, "validate", str(tmp_path)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert f"{tmp_path / 'a-fifo.yaml'}:1:1: this is a FIFO, not a regular file: refused without opening it" in lines
    assert f"{tmp_path / 'b-directory.yaml'}:1:1: this is a directory, not a playbook file" in lines
    assert any(ln.startswith(f"{tmp_path / 'c-bomb.yaml'}:11:3: aliases expand") for ln in lines), lines
    assert f"{tmp_path / 'd-good.yaml'}: ok" in lines
    assert "3 problem(s) in 4 file(s)" in proc.stderr


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from flows.language.loader import MAX_BYTES

    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_BYTES // 10 + 1))
    checked = check_file(big)
    assert [str(p) for p in checked.problems] == [
        f"{big}:1:1: the file is {big.stat().st_size} bytes; a playbook is at most {MAX_BYTES}"
    ]


def test_a_merge_key_copies_within_the_alias_budget_and_explicit_keys_win() -> None:
    checked = check_text(
        BASE
        + """\
steps:
  - &base {id: first, phase: notify, uses: core.log, with: {message: hi}}
  - <<: *base
    id: second
    needs: [first]
""",
        "merge.yaml",
    )
    assert checked.ok, [str(p) for p in checked.problems]
    assert checked.playbook is not None
    assert [s.id for s in checked.playbook.steps] == ["first", "second"]
    assert checked.playbook.steps[1].with_ == {"message": "hi"}


def test_the_alias_bomb_from_the_report_is_refused_quickly() -> None:
    import time

    levels = "".join(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    start = time.perf_counter()
    checked = check_text("l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + levels, "bomb.yaml")
    assert time.perf_counter() - start < 1
    assert [p.message for p in checked.problems] == ["aliases expand to more than 1000 values (an alias bomb?)"]
