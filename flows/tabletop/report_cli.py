"""`stanch report RUN_ID` (the after-action report of any run, exercise or incident) and `stanch compare A B`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import app, escape, fail, new_table, out


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"{path}: cannot write it: {exc.strerror or exc}") from None


@app.command("report")
def report_command(
    run_id: Annotated[str, typer.Argument(help="The flow run id (or an incident id that names one run).")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the report as one self-contained HTML file.")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON (for `stanch compare`).")
    ] = None,
    publish: Annotated[
        bool, typer.Option("--publish", help="Also attach it to the run as a Prefect artifact (after-action-report).")
    ] = False,
) -> None:
    """The after-action report of a run: timeline, time to contain and to rotate, waits at gates, findings."""
    from flows.tabletop.report import (
        ReportError,
        collect,
        fmt_seconds,
        publish_artifact,
        render_html,
        to_json,
        verdict_line,
    )

    try:
        report = collect(run_id)
        if publish:
            publish_artifact(report, report.flow_run_id)
    except ReportError as exc:
        raise fail(str(exc)) from None
    if html is not None:
        _write(html, render_html(report))
    if json_path is not None:
        _write(json_path, json.dumps(to_json(report), indent=2) + "\n")
    out.print(f"[bold]{escape(report.title)}[/] ({escape(report.state or '?')}, {escape(report.mode or '?')})")
    contained = report.measures.time_to_contain.verdict == "contained"
    out.print(f"[{'green' if contained else 'red'}]{escape(verdict_line(report))}[/]")
    table = new_table("measure", "time", "to", "note")
    for measure in report.measures.all():
        table.add_row(measure.label, escape(measure.shown()), escape(measure.until), escape(measure.note))
    for wait in report.measures.gates:
        who = f" by {', '.join(wait.decided_by)}" if wait.decided_by else ""
        table.add_row(f"  gate {escape(wait.gate)}", fmt_seconds(wait.seconds), escape(wait.status + who), "")
    out.print(table)
    for outcome in report.outcomes:
        out.print(f"{'MET' if outcome.met else '[red]MISSED[/]'} {escape(outcome.name)}: {escape(outcome.evidence)}")
    for note in report.notes:
        out.print(f"[dim]note: {escape(note)}[/]")
    for path, what in ((html, "HTML"), (json_path, "JSON")):
        if path is not None:
            out.print(f"{what} report written to {escape(str(path))}")


@app.command("compare")
def compare_command(
    a: Annotated[Path, typer.Argument(help="The earlier report (JSON from `stanch report --json` or `stanch tabletop`).")],
    b: Annotated[Path, typer.Argument(help="The later report.")],
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table instead.")] = False,
) -> None:
    """What got faster or slower between two exercises or incidents: measures, waits per gate, outcomes."""
    from flows.tabletop.report import ReportError, compare, compare_table, read_json_file

    try:
        first, second = read_json_file(a), read_json_file(b)
    except ReportError as exc:
        raise fail(str(exc)) from None
    rows = compare(first, second)
    if markdown:
        out.print(compare_table(rows, a.name, b.name), markup=False)
        return
    out.print(f"A: {escape(first.title)} ({escape(a.name)})\nB: {escape(second.title)} ({escape(b.name)})")
    table = new_table("what", "A", "B", "change", "verdict")
    colours: dict[str, Any] = {"faster": "green", "now met": "green", "slower": "red", "now missed": "red"}
    colours.update({"now contained": "green", "now not contained": "red", "now not deactivated": "red"})
    for row in rows:
        name = {"measure": row.name, "gate": f"gate {row.name}", "outcome": f"outcome: {row.name}"}[row.section]
        colour = colours.get(row.verdict.split(" (")[0])
        verdict = f"[{colour}]{escape(row.verdict)}[/]" if colour else escape(row.verdict)
        table.add_row(escape(name), escape(row.a), escape(row.b), escape(row.change), verdict)
    out.print(table)
