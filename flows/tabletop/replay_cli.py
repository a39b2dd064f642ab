"""`stanch replay BUNDLE [--playbook PATH]`: re-run a recorded incident against its recording, and show where the
new run diverges. Exit status 0 when it makes the same calls, 1 with a divergence table otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import app, escape, fail, new_table, out


@app.command()
def replay(
    bundle: Annotated[Path, typer.Argument(help="An incident bundle (`stanch run --record FILE`).")],
    playbook: Annotated[
        str | None,
        typer.Option("--playbook", help="Replay this playbook (name or file) instead of the recorded version."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show Prefect's own log lines.")] = False,
) -> None:
    """Re-run a recorded run with its alert, inputs and gate decisions; every AWS, Slack and vendor call is answered
    from the recording (nothing is sent). Lists each call that differs from the recording, step by step."""
    from flows.cli.running import Progress, print_summary, quiet_prefect_console
    from flows.tabletop.replay import BundleError
    from flows.tabletop.replay import replay as run_replay

    if not verbose:
        quiet_prefect_console()
    try:
        result = run_replay(bundle, playbook, observer=Progress(out))
    except BundleError as exc:
        raise fail(str(exc)) from None
    print_summary(result.summary)
    recorded = result.bundle.run
    incident = escape(str(recorded.parameters.get("incident_id")))
    out.print(
        f"replayed {escape(str(bundle))}: {recorded.playbook}, incident {incident}"
        f" (this replay's flow run: incident {escape(result.incident_id)}, tagged replay)"
        f"; {result.answered} call(s) answered from the recording, {result.repeats} repeat(s) of a call already made"
    )
    if result.identical:
        out.print("[bold green]identical[/]: the same calls, step by step, as the recorded run")
        raise typer.Exit(0)
    table = new_table("step", "what", "call", "detail", title=f"{len(result.divergences)} divergence(s)")
    for d in result.divergences:
        table.add_row(escape(d.step), d.what, escape(d.call), escape(d.detail))
    out.print(table)
    raise typer.Exit(1)
