"""`stanch tabletop SCENARIO`: rehearse a breach with the real playbook in the sandbox, scored."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import app, err, escape, fail, new_table, out


@app.command()
def tabletop(
    scenario: Annotated[Path, typer.Argument(help="A scenario file (kind: Scenario), e.g. playbooks/scenarios/*.yaml.")],
    live_approvers: Annotated[
        bool,
        typer.Option("--live-approvers", help="People answer the gates (stanch approve), on wall time."),
    ] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write the after-action report (HTML) here.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the report's JSON here.")] = None,
    record_to: Annotated[
        str | None,
        typer.Option("--record-to", help="A Prefect API URL to record the exercise on (default: a temporary one)."),
    ] = None,
) -> None:
    """Run a tabletop exercise: the scenario's alert, attacker and approvers against the real playbook in the
    sandbox (never a real account, Slack or vendor), then each expected outcome met or missed."""
    from flows.cli.running import quiet_prefect_console
    from flows.tabletop.runner import ExerciseError, run_exercise
    from flows.tabletop.scenario import ScenarioError

    quiet_prefect_console()
    if not scenario.is_file():
        raise fail(f"no scenario file {scenario}")
    try:
        exercise = run_exercise(
            scenario,
            live_approvers=live_approvers,
            record_to=record_to,
            html=report,
            json_file=json_file,
            say=lambda line: out.print(escape(line)),
        )
    except ScenarioError as exc:
        for problem in exc.problems:
            err.print(escape(str(problem)))
        raise fail(f"{scenario} has {len(exc.problems)} problem(s); fix them first") from None
    except ExerciseError as exc:
        raise fail(str(exc)) from None
    table = new_table("outcome", "target", "actual", "", "evidence", title="Expected outcomes")
    for outcome in exercise.outcomes:
        mark = "[green]met[/]" if outcome["met"] else "[bold red]missed[/]"
        table.add_row(escape(outcome["name"]), outcome["target"], outcome["actual"], mark, escape(outcome["evidence"]))
    out.print(table)
    exercise_time = exercise.wall_seconds + exercise.skipped_seconds
    out.print(
        f"{exercise.offset(exercise.ended_at)} of exercise time in {exercise.wall_seconds:.0f} s; "
        f"run {exercise.run_id or '(none)'}"
        + (f"; {exercise_time / max(exercise.wall_seconds, 1):.0f}x faster than wall time" if exercise_time else "")
    )
    for text in exercise.problems:
        err.print(f"[yellow]problem:[/] {escape(text)}")
    if exercise.refused:
        counts = Counter(exercise.refused)
        listed = ", ".join(f"{where} ({n}x)" if n > 1 else where for where, n in counts.items())
        err.print(f"[yellow]refused, not the sandbox:[/] {escape(listed)}")
    raise typer.Exit(0 if exercise.met and exercise.outcomes and not exercise.problems else 1)
