"""The `stanch` command line. Prefect is imported only by the commands that run or answer flows."""

from __future__ import annotations

import contextvars
import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

app = typer.Typer(
    name="stanch",
    help="Breach-response playbooks: validate, plan, run (with approval gates) and answer gates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _LazyConsole:
    """rich's Console, made on first use: importing rich costs ~45 ms that `stanch validate` never needs."""

    def __init__(self, **options: Any):
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


out: Any = _LazyConsole(highlight=False, emoji=False, soft_wrap=True)
err: Any = _LazyConsole(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def escape(text: str) -> str:
    """rich markup escaped (rich imported on first use)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _table(*headers: str, **options: Any) -> Table:
    from rich.table import Table

    return Table(*headers, **options)


InputOpt = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="An input as name=value (repeatable).", show_default=False),
]
AlertOpt = Annotated[
    Path | None, typer.Option("--alert", help="An alert JSON file (AWS Health, GuardDuty, GitHub, webhook).")
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Playbook files or directories.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems.")] = False,
) -> None:
    """Check playbooks and print every problem as file:line:col: message (at path)."""
    from flows.validate import check_file

    files = _expand(paths)
    if not files:
        raise _fail("no playbook files found in " + ", ".join(str(p) for p in paths))
    total = 0
    for file in files:
        checked = check_file(file)
        for problem in checked.problems:
            print(problem)
        total += len(checked.problems)
        if not quiet and not checked.problems:
            print(f"{file}: ok")
    if total:
        print(f"{total} problem(s) in {len(files)} file(s)", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the playbook JSON Schema generated from the language's models."""
    from flows.model import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))


@app.command("actions")
def list_actions() -> None:
    """List the registered actions with what they need."""
    from integrations.registry import load_actions

    table = _table("action", "mutates", "permissions", "description")
    for key, spec in sorted(load_actions().items()):
        perms = ", ".join(sorted({p.action for p in spec.permissions})) or "-"
        table.add_row(key, "yes" if spec.mutates else "", perms, spec.description)
    out.print(table)


def _load(playbook: str) -> Any:
    from flows.config import ConfigError
    from flows.launch import find_playbook
    from flows.validate import PlaybookError, load_playbook

    try:
        return load_playbook(find_playbook(playbook))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    except PlaybookError as exc:
        raise _fail(f"the playbook has problems:\n{exc}") from None


def _inputs(playbook: Any, pairs: list[str] | None) -> dict[str, Any]:
    from flows.launch import coerce_input

    values: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise _fail(f"--input {pair!r}: write name=value")
        values[name.strip()] = coerce_input(playbook, name.strip(), text)
    return values


def _alert(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"--alert {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise _fail(f"--alert {path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(f"--alert {path}: an alert is a JSON object")
    return data


@app.command()
def plan(
    playbook: Annotated[str, typer.Argument(help="A playbook file or name.")],
    input: InputOpt = None,
    alert: AlertOpt = None,
    iam_policy: Annotated[bool, typer.Option("--iam-policy", help="Print the IAM policy the run needs.")] = False,
) -> None:
    """Show what a run would do, offline: resolved arguments, API calls, gates."""
    from flows.launch import LaunchError, prepare
    from flows.plan import build_plan, gate_summary
    from flows.plan import iam_policy as policy_of

    pb = _load(playbook)
    try:
        pb, values, facts = prepare(pb, _inputs(pb, input), _alert(alert))
    except LaunchError as exc:
        raise _fail(str(exc)) from None
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
    from flows.plan import mermaid

    print(mermaid(_load(playbook)))


@app.command("review-logs")
def review_logs(
    source: Annotated[
        str, typer.Option("--source", help="A directory or file of CloudTrail logs, s3://bucket/prefix, or lookup.")
    ],
    access_key_id: Annotated[list[str], typer.Option("--access-key-id", help="A key to review (repeatable).")],
    since: Annotated[str | None, typer.Option("--since", help="Start: 2024-11-30 or 2024-11-30T08:00:00Z.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End of the window.")] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or markdown.")] = "table",
    workers: Annotated[int | None, typer.Option("--workers", help="Threads reading files (default: every core).")] = None,
) -> None:
    """What did these keys do? Every CloudTrail event made with them and the keys derived from them."""
    import re

    from integrations.aws import cloudtrail

    if format not in ("table", "json", "markdown"):
        raise _fail(f"--format {format!r}: use table, json or markdown", 2)
    bad = [k for k in access_key_id if not re.fullmatch(r"(AKIA|ASIA)[A-Z0-9]{12,124}", k)]
    if bad:
        raise _fail(f"--access-key-id {bad[0]!r} is not an access key id (AKIA... or ASIA...)", 2)
    try:
        start, end = cloudtrail.normalize_time(since), cloudtrail.normalize_time(until)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    try:
        if source == "lookup" or source.startswith("s3://"):
            from flows.config import load_settings
            from flows.runtime import aws_clients

            clients = aws_clients(load_settings(), "review")
            if source == "lookup":
                report = cloudtrail.review(access_key_id, start, end, lookup=clients.client("cloudtrail"))
            else:
                scanner = cloudtrail.scanner_for(source, clients.client, start, end, workers)
                report = cloudtrail.review(access_key_id, start, end, scanner=scanner)
        else:
            scanner = cloudtrail.Scanner(cloudtrail.local_units(Path(source)), workers=workers)
            report = cloudtrail.review(access_key_id, start, end, scanner=scanner)
    except FileNotFoundError as exc:
        raise _fail(f"--source: {exc}") from None
    if format == "json":
        print(json.dumps(report.to_json(), indent=2))
    elif format == "markdown":
        print(review_markdown(report))
    else:
        print_review(report)


def review_markdown(report: Any) -> str:
    lines = [
        f"# Activity of {', '.join(report.access_key_ids)}",
        "",
        f"{report.events_total} event(s) from {report.first_event or '-'} to {report.last_event or '-'}; "
        f"{report.files_scanned} file(s), {report.bytes_scanned / 1e6:.1f} MB scanned in {report.seconds:.2f}s.",
        "",
    ]
    if report.derived_keys:
        lines += ["## Derived credentials", "", "| key | from | via | event |", "| --- | --- | --- | --- |"]
        lines += [f"| {d.access_key_id} | {d.parent} | {d.via} | {d.event_id} |" for d in report.derived_keys]
        lines.append("")
    lines += ["## Source IPs", "", "| ip | events | first seen | last seen |", "| --- | --- | --- | --- |"]
    lines += [f"| {s.ip} | {s.count} | {s.first_seen} | {s.last_seen} |" for s in report.source_ips]
    for category, items in report.findings.items():
        lines += [
            "",
            f"## {category.replace('_', ' ').capitalize()}",
            "",
            "| time | event | key | resources | error | event id |",
        ]
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for f in items:
            lines.append(
                f"| {f.event_time} | {f.event_name} | {f.access_key_id} | {', '.join(f.resources)} | "
                f"{f.error_code or ''} | {f.event_id} |"
            )
    return "\n".join(lines)


def print_review(report: Any) -> None:
    out.print(
        f"[bold]{report.events_total}[/] event(s) by {', '.join(report.access_key_ids)}"
        f" ({report.files_scanned} files, {report.bytes_scanned / 1e6:.1f} MB in {report.seconds:.2f}s)"
    )
    if report.derived_keys:
        table = _table("derived key", "from", "via", title="Derived credentials")
        for d in report.derived_keys:
            table.add_row(d.access_key_id, d.parent, d.via)
        out.print(table)
    ips = _table("source ip", "events", "first seen", "last seen", title="Source IPs")
    for s in report.source_ips:
        ips.add_row(s.ip, str(s.count), s.first_seen, s.last_seen)
    out.print(ips)
    findings = _table("category", "time", "event", "key", "resources", "error", title="Findings")
    for category, items in report.findings.items():
        for f in items:
            findings.add_row(
                category, f.event_time, f.event_name, f.access_key_id or "", ", ".join(f.resources), f.error_code or ""
            )
    out.print(findings)


class _Progress:
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
        elif kind == "gate_escalated":
            c.print(f"  [bold yellow]⏫ escalated[/] gate {escape(data['gate'])} to {escape(data['group'])}")
        elif kind == "gate_answer":
            record = data["record"]
            verdict = "accepted" if record.accepted else f"refused: {record.refusal}"
            c.print(f"    {escape(record.approver)} → {record.decision} ({escape(verdict)})")
        elif kind == "gate_closed":
            c.print(f"  [bold]gate[/] {escape(data['gate'])}: {data['status']} — {escape(data['message'])}")


def print_summary(summary: Any, console: Any = out) -> None:
    table = _table(title=f"{summary.playbook} · {summary.incident_id} · {summary.mode}")
    for column in ("step", "phase", "state", "duration", "changed", "detail"):
        table.add_column(column)
    for s in summary.steps:
        duration = f"{s.duration:.1f}s" if s.duration is not None else ""
        table.add_row(s.id, s.phase, s.state, duration, "yes" if s.changed else "", escape(s.detail or s.reason))
    console.print(table)
    colour = {"Completed": "green", "Failed": "red", "Cancelled": "yellow"}[summary.state]
    console.print(f"[bold {colour}]{summary.state}[/]: {escape(summary.message)}")
    console.print(f"run id {summary.run_id}" + (f"  {summary.ui_url}" if summary.ui_url else ""))


def _warn_without_server() -> None:
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
) -> None:
    """Run a playbook as a Prefect flow run, with progress and a summary at the end."""
    from flows.launch import LaunchError

    if not verbose:
        _quiet_prefect_console()
    pb = _load(playbook)
    values = _inputs(pb, input)
    raw_alert = _alert(alert)
    box = None
    if sandbox:
        from flows.sandbox import Sandbox

        box = Sandbox().start()
        for name, value in list(values.items()):
            if isinstance(value, str) and value.startswith("@sandbox:"):
                user, _, index = value.removeprefix("@sandbox:").partition("#")
                keys = box.keys.get(user)
                if not keys:
                    raise _fail(f"--input {name}: the sandbox has no user {user!r} with keys")
                values[name] = keys[int(index or 0)]
        out.print(f"[dim]sandbox: AWS {box.aws_endpoint}, Slack {box.slack.base_url if box.slack else ''}[/]")
    try:
        _warn_without_server()
        from flows.runner import run_playbook

        summary = run_playbook(
            pb,
            values,
            alert=raw_alert,
            dry_run=dry_run,
            incident_id=incident_id,
            launched_by=launched_by,
            trigger="manual",
            sandbox=sandbox,
            observer=_Progress(out),
        )
    except LaunchError as exc:
        raise _fail(str(exc)) from None
    finally:
        if box is not None:
            box.stop()
    print_summary(summary)
    raise typer.Exit(0 if summary.state == "Completed" else 1)


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The flow run id.")],
    gate: Annotated[str, typer.Option("--gate", help="The step id the gate guards.")],
    as_: Annotated[str, typer.Option("--as", help="Your approver identity.")],
    approve_: Annotated[bool, typer.Option("--approve", help="Approve the step.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the step.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the decision record.")] = "",
    service: Annotated[
        str | None, typer.Option("--service", help="The approval service (default from the configuration).")
    ] = None,
) -> None:
    """Answer a gate through the approval service, with your token ($STANCH_APPROVER_TOKEN)."""
    import os
    import urllib.error
    import urllib.request

    from flows.config import ConfigError, load_settings

    if approve_ == reject:
        raise _fail("say --approve or --reject (one of them)", 2)
    if not reason.strip():
        raise _fail("--reason is required: it goes into the decision record", 2)
    token = os.environ.get("STANCH_APPROVER_TOKEN", "")
    if not token:
        raise _fail("set STANCH_APPROVER_TOKEN to your approver token (its SHA-256 is in the configuration)", 2)
    try:
        url = (service or load_settings().approvals.service_url).rstrip("/") + "/approve"
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    body = json.dumps(
        {"run_id": run_id, "gate": gate, "approver": as_, "decision": "approve" if approve_ else "reject", "reason": reason}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the configured approval service
        url, data=body, method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            result = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
        raise _fail(f"the approval service refused: {detail}") from None
    except urllib.error.URLError as exc:
        raise _fail(f"cannot reach the approval service at {url}: {exc.reason} (is `stanch serve` running?)") from None
    if not result.get("accepted"):
        raise _fail(result.get("message", "the answer was not accepted"))
    out.print(result.get("message", "accepted"))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8480,
) -> None:
    """Run the approval service: Slack interactions, `stanch approve`, and /healthz."""
    from flows.service import serve as run_service

    run_service(host, port)


@app.command()
def demo(
    approver: Annotated[str, typer.Option(help="The demo approver who answers every gate.")] = "dana",
    reject: Annotated[bool, typer.Option("--reject", help="Have the demo approver reject instead.")] = False,
) -> None:
    """The flagship playbook on the sandbox: an AWS Health alert, gates answered by a named demo approver."""
    from flows.approvals import answer_gate
    from flows.runner import run_playbook
    from flows.sandbox import Sandbox

    _quiet_prefect_console()
    out.rule("[bold]Stanch demo: a leaked AWS access key, in the sandbox")
    with Sandbox() as box:
        user = box.scenario["user"]
        key = box.scenario["key"]
        alert_path = Path(__file__).parent / "sandbox" / "alerts" / "aws-health-risk-credentials-exposed.json"
        alert = json.loads(alert_path.read_text(encoding="utf-8"))
        alert["detail"]["affectedEntities"][0]["entityValue"] = key
        before = box.snapshot()
        out.print(
            f"AWS Health reports access key [bold]{key}[/] of [bold]{user}[/] exposed (AWS_RISK_CREDENTIALS_EXPOSED).\n"
            f"Hidden in the simulated CloudTrail: what an attacker did with it. "
            f"Demo approver [bold]{approver}[/] answers every gate.\n"
        )
        progress = _Progress(out)

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
            findings = _table("category", "event", "key", "resources", "error", title="What the review found")
            for category, items in review["findings"].items():
                for f in items:
                    findings.add_row(
                        category, f["event_name"], f["access_key_id"], ", ".join(f["resources"]), f["error_code"] or ""
                    )
            out.print(findings)
        after = box.snapshot()
        changes = _table("resource", "before", "after", title="What changed in the simulated account")
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                changes.add_row(name, before.get(name, "-"), after.get(name, "deleted"))
        out.print(changes if changes.row_count else "Nothing changed in the simulated account.")
        if box.slack is None:
            raise _fail("the sandbox has no Slack stand-in")
        out.print("\nSlack messages the playbook posted (sandbox #incident-response):")
        for message in box.slack.messages("incident-response"):
            out.print(f"  • {escape(message['text'])}")
        out.print("\nThe run's incident thread (sandbox #stanch-incidents):")
        for message in box.slack.messages("stanch-incidents"):
            first, _, rest = message["text"].partition("\n")
            out.print(f"  {'  ↳' if message['thread_ts'] else '•'} {escape(first)}{' …' if rest else ''}")
    raise typer.Exit(0 if summary.state == ("Cancelled" if reject else "Completed") else 1)


def _quiet_prefect_console() -> None:
    """Our progress lines replace Prefect's INFO console lines; warnings and errors still show.

    Only the console handler changes (through Prefect's logging override variables, read when Prefect
    sets up logging): everything still goes to the Prefect API's run logs.
    """
    import os

    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def main() -> None:
    import os

    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("STANCH_DEBUG"):
            raise
        from integrations.masking import SecretMasker

        err.print(f"[bold red]error:[/] {escape(SecretMasker().mask(f'{type(exc).__name__}: {exc}'))}")
        err.print("[dim](set STANCH_DEBUG=1 to see where it happened)[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
