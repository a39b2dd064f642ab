"""`stanch review-logs`: what did a key do, from CloudTrail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli import review_start
from flows.cli.common import (
    app,
    err,
    escape,
    fail,
    new_table,
    out,
)


@app.command("review-logs")
def review_logs(
    source: Annotated[
        str, typer.Option("--source", help="A directory or file of CloudTrail logs, s3://bucket/prefix, or lookup.")
    ],
    access_key_id: Annotated[list[str], typer.Option("--access-key-id", help="A key to review (repeatable).")],
    since: Annotated[str | None, typer.Option("--since", help="Start: 2024-11-30 or 2024-11-30T08:00:00Z.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End of the window.")] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or markdown.")] = "table",
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Worker processes reading files (default: every core; 1: in this process)."),
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option("--region", help="With --source lookup: a region to look in (repeatable); default aws.regions."),
    ] = None,
) -> None:
    """What did these keys do? Every CloudTrail event made with them and the keys derived from them."""
    started = review_start.take(source, access_key_id, workers)
    pool: Any = None
    failed = True
    try:
        from integrations.aws import cloudtrail_review as engine
        from integrations.aws.cloudtrail_review import workers as pool

        pool.adopt(started)
        _review_logs(engine, source, access_key_id, since, until, format, workers, region)
        failed = False
    finally:
        if pool is not None:
            pool.release(kill=failed)  # the ones the review did not use
        else:
            review_start.stop(started)


def _review_logs(
    engine: Any,
    source: str,
    access_key_id: list[str],
    since: str | None,
    until: str | None,
    format: str,
    workers: int | None,
    region: list[str] | None,
) -> None:
    import re

    if format not in ("table", "json", "markdown"):
        raise fail(f"--format {format!r}: use table, json or markdown", 2)
    bad = [k for k in access_key_id if not re.fullmatch(r"(AKIA|ASIA)[A-Z0-9]{12,124}", k)]
    if bad:
        raise fail(f"--access-key-id {bad[0]!r} is not an access key id (AKIA... or ASIA...)", 2)
    try:
        start, end = engine.normalize_time(since), engine.normalize_time(until)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    try:
        if source == "lookup" or source.startswith("s3://"):
            from flows.config import load_settings
            from integrations.context import AwsClients

            settings = load_settings().aws
            clients = AwsClients.from_settings(settings, "review")
            if source == "lookup":
                report = engine.review(access_key_id, start, end, lookup=lookup_in_regions(clients, settings, region))
            else:
                scanner = engine.scanner_for(source, clients.client, start, end, workers)
                report = engine.review(access_key_id, start, end, scanner=scanner)
        else:
            scanner = engine.Scanner(engine.local_units(Path(source)), workers=workers)
            report = engine.review(access_key_id, start, end, scanner=scanner)
    except FileNotFoundError as exc:
        raise fail(f"--source: {exc}") from None
    if format == "json":
        print(json.dumps(report.to_json(), indent=2))
    elif format == "markdown":
        print(review_markdown(report))
    else:
        print_review(report)
    if report.partial:
        what = f"{report.files_skipped_total} file(s) and {report.records_skipped_total} record(s) could not be read"
        err.print(f"[yellow]warning:[/] {escape(what)}; the review is partial (files_skipped, records_skipped)")
    if report.files_scanned and report.files_skipped_total == report.files_scanned:
        first = report.files_skipped[0]
        raise fail(f"none of the {report.files_scanned} file(s) could be read (first: {first.file}: {first.reason})")


def lookup_in_regions(clients: Any, settings: Any, regions: list[str] | None = None) -> Any:
    """LookupEvents in every region asked for, else every region of the configuration's `aws.regions`.

    LookupEvents answers for one region only, and an attacker works where nobody looks."""
    from integrations.aws.cloudtrail import RegionsLookup

    where = list(dict.fromkeys(regions or list(settings.regions) or [clients.region]))
    return RegionsLookup([clients.client("cloudtrail", r) for r in where])


def review_markdown(report: Any) -> str:
    lines = [
        f"# Activity of {', '.join(report.access_key_ids)}",
        "",
        f"{report.events_total} event(s) from {report.first_event or '-'} to {report.last_event or '-'}; "
        f"{report.files_scanned} file(s), {report.bytes_scanned / 1e6:.1f} MB scanned in {report.seconds:.2f}s.",
        "",
    ]
    if report.partial:
        lines += [
            f"**Partial review**: {report.files_skipped_total} file(s) and {report.records_skipped_total} record(s)"
            " could not be read (listed at the end).",
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
    if report.files_skipped or report.records_skipped:
        lines += ["", "## Not read", "", "| file | record | reason |", "| --- | --- | --- |"]
        lines += [f"| {_cell(s.file)} | | {_cell(s.reason)} |" for s in report.files_skipped]
        lines += [f"| {_cell(r.file)} | {r.index} | {_cell(r.reason)} |" for r in report.records_skipped]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text for a Markdown table cell (file names and reasons come from the logs' own bytes)."""
    return text.replace("|", "\\|").replace("\n", " ")


def print_review(report: Any) -> None:
    out.print(
        f"[bold]{report.events_total}[/] event(s) by {', '.join(report.access_key_ids)}"
        f" ({report.files_scanned} files, {report.bytes_scanned / 1e6:.1f} MB in {report.seconds:.2f}s)"
    )
    if report.derived_keys:
        table = new_table("derived key", "from", "via", title="Derived credentials")
        for d in report.derived_keys:
            table.add_row(d.access_key_id, d.parent, d.via)
        out.print(table)
    ips = new_table("source ip", "events", "first seen", "last seen", title="Source IPs")
    for s in report.source_ips:
        ips.add_row(s.ip, str(s.count), s.first_seen, s.last_seen)
    out.print(ips)
    findings = new_table("category", "time", "event", "key", "resources", "error", title="Findings")
    for category, items in report.findings.items():
        for f in items:
            findings.add_row(
                category, f.event_time, f.event_name, f.access_key_id or "", ", ".join(f.resources), f.error_code or ""
            )
    out.print(findings)
    if report.files_skipped or report.records_skipped:
        skipped = new_table("file", "record", "reason", title="Not read (the review is partial)")
        for s in report.files_skipped:
            skipped.add_row(escape(s.file), "", escape(s.reason))
        for r in report.records_skipped:
            skipped.add_row(escape(r.file), str(r.index), escape(r.reason))
        out.print(skipped)
