"""Writing playbooks: validate, schema, actions, plan, graph. None of them imports Prefect."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    AlertOpt,
    InputOpt,
    app,
    escape,
    expand_paths,
    fail,
    load_playbook_arg,
    new_table,
    out,
    parse_inputs,
    read_alert,
)


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Playbook files or directories.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems.")] = False,
) -> None:
    """Check playbooks and print every problem as file:line:col: message (at path)."""
    from flows.language.loader import Problem
    from flows.language.validate import check_file

    files = expand_paths(paths)
    if not files:
        raise fail("no playbook files found in " + ", ".join(str(p) for p in paths))
    total = 0
    for file in files:
        try:
            problems = check_file(file).problems
        except Exception as exc:
            # A bug, not the user's fault: say so for this file and go on with the others.
            problems = [
                Problem(str(file), 1, 1, f"the validator failed on this file ({type(exc).__name__}); please report it")
            ]
        for problem in problems:
            print(problem)
        total += len(problems)
        if not quiet and not problems:
            print(f"{file}: ok")
    if total:
        print(f"{total} problem(s) in {len(files)} file(s)", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the playbook JSON Schema generated from the language's models."""
    from flows.language.model import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))


@app.command("actions")
def list_actions() -> None:
    """List the registered actions with what they need."""
    from integrations.registry import load_actions

    table = new_table("action", "mutates", "permissions", "description")
    for key, spec in sorted(load_actions().items()):
        perms = ", ".join(sorted({p.action for p in spec.permissions})) or "-"
        table.add_row(key, "yes" if spec.mutates else "", perms, spec.description)
    out.print(table)


@app.command()
def plan(
    playbook: Annotated[str, typer.Argument(help="A playbook file or name.")],
    input: InputOpt = None,
    alert: AlertOpt = None,
    iam_policy: Annotated[bool, typer.Option("--iam-policy", help="Print the IAM policy the run needs.")] = False,
) -> None:
    """Show what a run would do, offline: resolved arguments, API calls, gates."""
    from flows.alerts import AlertError
    from flows.engine.launch import LaunchError, prepare
    from flows.language.plan import build_plan, gate_summary
    from flows.language.plan import iam_policy as policy_of

    pb = load_playbook_arg(playbook)
    try:
        pb, values, facts = prepare(pb, parse_inputs(pb, input), read_alert(alert))
    except (LaunchError, AlertError) as exc:
        raise fail(str(exc)) from None
    planned = build_plan(pb, values, facts)
    if iam_policy:
        print(json.dumps(policy_of(planned), indent=2))
        return
    out.print(f"[bold]{escape(pb.metadata.title)}[/] ({pb.metadata.name}, severity {pb.metadata.severity})")
    for n, item in enumerate(planned, 1):
        step = item.step
        mutates = " [yellow](changes things)[/]" if item.spec.mutates else ""
        phase = f"[{step.phase}]"
        out.print(f"\n[bold]{n}. {escape(step.id)}[/] — {escape(step.display_name)} {escape(phase)}{mutates}")
        out.print(f"   uses {step.uses}: {escape(item.spec.description)}")
        if step.needs:
            out.print(f"   after {', '.join(step.needs)}")
        if item.when:
            out.print(f"   when {escape(item.when)}")
        if step.for_each:
            out.print(f"   for each item of {escape(step.for_each.strip())} (at most {step.max_concurrency} at once)")
        if step.approval:
            out.print(f"   [bold yellow]gate[/]: {escape(gate_summary(step))}")
        for name, value in item.args.items():
            shown = value if isinstance(value, str) else json.dumps(value)
            tag = " [dim](at run time)[/]" if name in item.dynamic else ""
            out.print(f"   {name} = {escape(str(shown))}{tag}")
        if item.spec.calls:
            out.print(f"   calls {', '.join(item.spec.calls)}")


@app.command()
def graph(playbook: Annotated[str, typer.Argument(help="A playbook file or name.")]) -> None:
    """Print a Mermaid flowchart of steps, dependencies and gates."""
    from flows.language.plan import mermaid

    print(mermaid(load_playbook_arg(playbook)))
