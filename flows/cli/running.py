"""Running playbooks: `stanch run` and `stanch demo`, with progress and a summary."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from flows.cli.common import (
    AlertOpt,
    InputOpt,
    app,
    err,
    escape,
    fail,
    load_playbook_arg,
    new_table,
    out,
    parse_inputs,
    read_alert,
)

SANDBOX_DIR = Path(__file__).resolve().parent.parent / "sandbox"


class Progress:
    """Prints run events as they come."""

    def __init__(self, console: Any):
        self.console = console
        self.run_id: str | None = None

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        c = self.console
        if kind == "run_started":
            self.run_id = data["run_id"]
            link = f" {data['ui_url']}" if data.get("ui_url") else ""
            c.print(f"[bold]run[/] {data['run_id']} ({escape(str(data['name']))}){link}")
        elif kind == "step_started":
            c.print(f"  [cyan]▶[/] {escape(data['step'])}: {escape(data['name'])}")
        elif kind == "step_finished":
            record = data["record"]
            colour = {"completed": "green", "failed": "red", "skipped": "dim"}.get(record.state, "yellow")
            text = record.detail or record.reason
            c.print(f"  [{colour}]■[/] {escape(record.id)}: {record.state}" + (f" — {escape(text)}" if text else ""))
        elif kind == "gate_opened":
            c.print(
                f"  [bold yellow]⏸ gate[/] before {escape(data['gate'])}: {escape(data['message'])}\n"
                f"    needs {data['min_approvals']} approval(s) from {data['group']} "
                f"({escape(', '.join(data['members']))}) by {data['deadline']:%H:%M:%S} UTC\n"
                f"    answer: stanch approve {self.run_id} --gate {data['gate']} --as NAME "
                "--approve|--reject --reason TEXT"
            )
        elif kind == "run_resumed":
            c.print(f"  [bold]resumed[/]: finished before, not run again: {escape(', '.join(data['steps']) or 'none')}")
        elif kind == "gate_dry_run":
            c.print(f"  [bold yellow]⏸ gate[/] before {escape(data['gate'])}: {escape(data['message'])}")
        elif kind == "gate_escalated":
            c.print(f"  [bold yellow]⏫ escalated[/] gate {escape(data['gate'])} to {escape(data['group'])}")
        elif kind == "gate_answer":
            record = data["record"]
            verdict = "accepted" if record.accepted else f"refused: {record.refusal}"
            c.print(f"    {escape(record.approver)} → {record.decision} ({escape(verdict)})")
        elif kind == "gate_closed":
            c.print(f"  [bold]gate[/] {escape(data['gate'])}: {data['status']} — {escape(data['message'])}")


def print_summary(summary: Any, console: Any = out) -> None:
    table = new_table(title=f"{summary.playbook} · {summary.incident_id} · {summary.mode}")
    for column in ("step", "phase", "state", "duration", "changed", "detail"):
        table.add_column(column)
    for s in summary.steps:
        duration = f"{s.duration:.1f}s" if s.duration is not None else ""
        table.add_row(s.id, s.phase, s.state, duration, "yes" if s.changed else "", escape(s.detail or s.reason))
    console.print(table)
    colour = {"Completed": "green", "Failed": "red", "Cancelled": "yellow"}[summary.state]
    console.print(f"[bold {colour}]{summary.state}[/]: {escape(summary.message)}")
    console.print(f"run id {summary.run_id}" + (f"  {summary.ui_url}" if summary.ui_url else ""))


def warn_without_server() -> None:
    import os

    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            err.print(
                "[yellow]note:[/] no Prefect server configured (PREFECT_API_URL); this run uses a temporary "
                "one, so its gates can be answered only from this process. For gates answered from another "
                "terminal, run `prefect server start` and set PREFECT_API_URL."
            )


@app.command()
def run(
    playbook: Annotated[str, typer.Argument(help="A playbook file or name.")],
    input: InputOpt = None,
    alert: AlertOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report changes without making them.")] = False,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Run against the embedded simulated AWS and Slack.")] = False,
    incident_id: Annotated[str | None, typer.Option("--incident-id", help="Defaults to a new id.")] = None,
    launched_by: Annotated[str | None, typer.Option("--as", help="Who launches (default: $STANCH_USER or login).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show Prefect's own log lines.")] = False,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record",
            help="Record every AWS, Slack and vendor call of the run, redacted, into this incident bundle "
            "(`stanch replay` reads it).",
        ),
    ] = None,
) -> None:
    """Run a playbook as a Prefect flow run, with progress and a summary at the end."""
    from contextlib import nullcontext

    from flows.engine.launch import LaunchError

    if not verbose:
        quiet_prefect_console()
    pb = load_playbook_arg(playbook)
    values = parse_inputs(pb, input)
    raw_alert = read_alert(alert)
    box = None
    if sandbox:
        from flows.sandbox import Sandbox

        box = Sandbox().start()
        for name, value in list(values.items()):
            if isinstance(value, str) and value.startswith("@sandbox:"):
                user, _, index = value.removeprefix("@sandbox:").partition("#")
                keys = box.keys.get(user)
                if not keys:
                    raise fail(f"--input {name}: the sandbox has no user {user!r} with keys")
                values[name] = keys[int(index or 0)]
        out.print(f"[dim]sandbox: AWS {box.aws_endpoint}, Slack {box.slack.base_url if box.slack else ''}[/]")
    try:
        warn_without_server()
        from flows.approvals.client import ApprovalError
        from flows.cli.approvals import verified_launcher
        from flows.engine.flow import new_incident_id
        from flows.engine.launch import run_playbook

        incident = incident_id or new_incident_id()
        try:
            launcher, proof = verified_launcher(pb.metadata.name, incident, launched_by)
        except ApprovalError as exc:
            raise LaunchError(f"the launch could not be verified: {exc}") from None
        from flows.tabletop.replay import recording

        with recording(record) if record is not None else nullcontext() as recorder:
            summary = run_playbook(
                pb,
                values,
                alert=raw_alert,
                dry_run=dry_run,
                incident_id=incident,
                launched_by=launcher,
                trigger="manual",
                sandbox=sandbox,
                observer=Progress(out),
                launch_proof=proof,
            )
            if recorder is not None:
                recorder.summary = summary  # the end record's step states
    except LaunchError as exc:
        if record is not None:
            record.unlink(missing_ok=True)  # a bundle with no run in it would only be refused later
        raise fail(str(exc)) from None
    finally:
        if box is not None:
            box.stop()
    print_summary(summary)
    if recorder is not None and record is not None:
        out.print(f"recorded {recorder.count} call(s) into {record}; replay with: stanch replay {record}")
    raise typer.Exit(0 if summary.state == "Completed" else 1)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The flow run id printed at launch (or an incident id naming one run).")],
    force: Annotated[
        bool, typer.Option("--force", help="Resume even though the run's heartbeat is recent (its process is gone).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show Prefect's own log lines.")] = False,
) -> None:
    """Continue a run whose process died, as the same flow run: nothing done is redone, nothing decided is re-asked."""
    from flows.engine.launch import LaunchError, resume_run

    if not verbose:
        quiet_prefect_console()
    try:
        summary = resume_run(run_id, force=force, observer=Progress(out))
    except LaunchError as exc:
        raise fail(str(exc)) from None
    print_summary(summary)
    raise typer.Exit(0 if summary.state == "Completed" else 1)


@app.command()
def demo(
    approver: Annotated[str, typer.Option(help="The demo approver who answers every gate.")] = "dana",
    reject: Annotated[bool, typer.Option("--reject", help="Have the demo approver reject instead.")] = False,
    vendor: Annotated[
        bool,
        typer.Option("--vendor", help="The vendor breach instead: rotate every key an AI platform held, consumers too."),
    ] = False,
) -> None:
    """The flagship playbook on the sandbox: an AWS Health alert, gates answered by a named demo approver.

    With --vendor: an AI platform vendor is breached; every credential in vendors/acme-ai.yaml is rotated and
    pushed to its consumers (GitHub Actions, Kubernetes, Secrets Manager, the vendor's stored provider keys)."""
    if vendor:
        from flows.vendors.demo import run_vendor_demo

        raise typer.Exit(run_vendor_demo(approver=approver, reject=reject))
    from flows.approvals.client import answer_gate
    from flows.engine.launch import run_playbook
    from flows.sandbox import Sandbox

    quiet_prefect_console()
    out.rule("[bold]Stanch demo: a leaked AWS access key, in the sandbox")
    with Sandbox() as box:
        # The wide attack: every kind of change a review can list (some undone by the attacker before the
        # alert), so every gate of the flagship opens and the approver answers each.
        box.seed_wide_attack()
        user = box.scenario["user"]
        key = box.scenario["key"]
        alert_path = (
            Path(__file__).resolve().parent.parent / "sandbox" / "alerts" / "aws-health-risk-credentials-exposed.json"
        )
        alert = json.loads(alert_path.read_text(encoding="utf-8"))
        alert["detail"]["affectedEntities"][0]["entityValue"] = key
        before = box.snapshot()
        out.print(
            f"AWS Health reports access key [bold]{key}[/] of [bold]{user}[/] exposed (AWS_RISK_CREDENTIALS_EXPOSED).\n"
            f"Hidden in the simulated CloudTrail: what an attacker did with it, in every category a review lists "
            f"(credentials, principals, exposure, logging, compute, secrets read), some of it undone before the alert. "
            f"Demo approver [bold]{approver}[/] answers every gate.\n"
        )
        progress = Progress(out)

        def observer(kind: str, data: dict[str, Any]) -> None:
            progress(kind, data)
            if kind == "gate_opened" and progress.run_id:
                run_id = progress.run_id

                def answer() -> None:
                    time.sleep(1.0)
                    decision: Literal["approve", "reject"] = "reject" if reject else "approve"
                    out.print(f"    [dim]demo approver {approver} answers: {decision}[/]")
                    answer_gate(run_id, data["gate"], approver, decision, "demo: reviewed by on-call", channel="demo")

                context = contextvars.copy_context()
                threading.Thread(target=context.run, args=(answer,), daemon=True).start()

        summary = run_playbook(
            "aws-access-key-compromise",
            {
                "user_name": user,
                "trail_source": f"s3://{box.cloudtrail_bucket}/AWSLogs/",
                "secret_id": "workloads/ci-deployer/aws",
            },
            alert=alert,
            launched_by="stanch-demo",
            trigger="demo",
            sandbox=True,
            observer=observer,
        )
        print_summary(summary)
        review = next((s.outputs for s in summary.steps if s.id == "review" and s.outputs), None)
        if review:
            findings = new_table("category", "event", "key", "resources", "error", title="What the review found")
            for category, items in review["findings"].items():
                for f in items:
                    findings.add_row(
                        category, f["event_name"], f["access_key_id"], ", ".join(f["resources"]), f["error_code"] or ""
                    )
            out.print(findings)
        after = box.snapshot()
        changes = new_table("resource", "before", "after", title="What changed in the simulated account")
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                changes.add_row(name, before.get(name, "-"), after.get(name, "deleted"))
        out.print(changes if changes.row_count else "Nothing changed in the simulated account.")
        if box.slack is None:
            raise fail("the sandbox has no Slack stand-in")
        out.print("\nSlack messages the playbook posted (sandbox #incident-response):")
        for message in box.slack.messages("incident-response"):
            out.print(f"  • {escape(message['text'])}")
        out.print("\nThe run's incident thread (sandbox #stanch-incidents):")
        for message in box.slack.messages("stanch-incidents"):
            first, _, rest = message["text"].partition("\n")
            out.print(f"  {'  ↳' if message['thread_ts'] else '•'} {escape(first)}{' …' if rest else ''}")
    raise typer.Exit(0 if summary.state == ("Cancelled" if reject else "Completed") else 1)


def quiet_prefect_console() -> None:
    """Our progress lines replace Prefect's INFO console lines; warnings and errors still show.

    Only the console handler changes (through Prefect's logging override variables, read when Prefect
    sets up logging): everything still goes to the Prefect API's run logs.
    """
    import os

    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    # The temporary server a run starts without PREFECT_API_URL: its telemetry write races the run's own writes
    # on SQLite ("database is locked" tracebacks on the console) and tells nobody anything.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
