"""The after-action report, read back from a real run of the flagship playbook in the sandbox.

One live run (module-scoped: ~10 s) on a real Prefect API: an AWS Health alert for the sandbox key, a refused answer
from someone outside the approver group, then approvals at both gates. Its report is checked against what the run
recorded; the HTML is rendered by headless Chromium (Debian's `chromium`, installed when missing and possible) to a
PNG and a PDF; the JSON goes through `stanch compare`; `stanch report` runs on the real run and on an unknown one.
When "contained" may be said is checked on made-up steps (no run needed), and on real runs in test_playbooks.py.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import STANCH, cli_env
from test_playbooks import start_flagship_on_health_alert

from flows.approvals.client import answer_gate
from flows.tabletop.report import (
    KEY_USES,
    Message,
    Report,
    ReportError,
    StepLine,
    _measures,
    collect,
    compare,
    from_json,
    publish_artifact,
    render_html,
    render_markdown,
    render_svg,
    to_json,
    verdict_line,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

MIDWAY: list[Report] = []
# Credential shapes in free text people type: an AWS secret key in an approval's reason, a Slack token in a refused one.
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SLACK_TOKEN = "xoxb-1234567890-abcdefghijkl"
HOSTILE = '<script>alert(1)</script></svg><img src=x onerror="fetch(`//evil`)">[x](javascript:alert(1))|'


@pytest.fixture(scope="module")
def flagship(sandbox_session: Any, stanch_config: Path, prefect_api: str) -> Iterator[tuple[Any, Report, dict[str, str]]]:
    """(the run's summary, its report, who approved each gate): the flagship on a confirmed exposure, every gate
    it opens approved as it opens (the first by dana, after a refused answer from mallory; the others by alice).
    The report of the run while its first gate waited is kept in MIDWAY."""
    sandbox_session.reset()
    sandbox_session.activate()
    try:
        run = start_flagship_on_health_alert(sandbox_session)
        approved: dict[str, str] = {}
        while True:
            try:
                gate = run.wait_for("gate_opened", timeout=3)["gate"]
            except AssertionError:
                if run.thread is not None and run.thread.is_alive():
                    continue
                break
            run.wait_paused(gate=gate)
            who = "alice" if approved else "dana"
            if not approved:
                MIDWAY.append(collect(run.run_id))  # type: ignore[arg-type]
                refused = answer_gate(run.run_id, gate, "mallory", "approve", f"not on call {SLACK_TOKEN}")  # type: ignore[arg-type]
                assert not refused.accepted
            reason = f"test: {who} approves" + (f", pasted {AWS_SECRET} by mistake" if who == "dana" else "")
            verdict = answer_gate(run.run_id, gate, who, "approve", reason)  # type: ignore[arg-type]
            assert verdict.accepted, verdict.message
            approved[gate] = who
        summary = run.result(timeout=120)
        assert summary.state == "Completed", summary.message
        assert approved, "the flagship opens gates on the sandbox's attack"
        yield summary, collect(run.run_id), approved  # type: ignore[arg-type]
    finally:
        sandbox_session.deactivate()


def test_the_report_says_what_the_run_did_and_how_long_it_took(flagship: tuple[Any, Report, Any]) -> None:
    summary, report, approved = flagship
    assert report.kind == "incident" and report.playbook == "aws-access-key-compromise"
    assert report.flow_run_id == summary.run_id and report.state == "Completed" and report.mode == "live"
    assert report.alert["source"] == "aws.health" and report.alert["kind"] == "AWS_RISK_CREDENTIALS_EXPOSED"
    assert report.alert["keys"].startswith("AKIA") and report.alert["claims time"]
    # every step, in the playbook's order, with the state and times the run recorded
    assert [(s.id, s.name, s.state) for s in report.steps] == [(s.id, s.name, s.state) for s in summary.steps], (
        [s.id for s in report.steps],
        [s.id for s in summary.steps],
    )
    ran = {s.id: s for s in summary.steps}
    for line in report.steps:
        assert (line.started, line.ended) == (ran[line.id].started_at, ran[line.id].finished_at), line.id
    # the gates: each one the run opened, who approved it, and the answer refused at the time
    gates = {w.gate: w for w in report.measures.gates}
    assert set(gates) == set(approved)
    assert {g: w.decided_by for g, w in gates.items()} == {g: [who] for g, who in approved.items()}
    assert all(w.status == "approved" and w.seconds is not None and w.seconds > 0 for w in gates.values())
    first = next(iter(approved))
    decided = [(d.gate, d.approver, d.decision, d.accepted) for d in report.decisions]
    assert (first, "mallory", "approve", False) in decided
    assert all((g, who, "approve", True) in decided for g, who in approved.items())
    [refusal] = [d for d in report.decisions if not d.accepted]
    assert "mallory" in (refusal.refusal or "")
    for w in gates.values():  # a wait is from the gate's opening to the decision that closed it
        last = max(d.at for d in report.decisions if d.gate == w.gate and d.at)
        assert w.closed == last and w.opened is not None
        assert w.seconds == pytest.approx((last - w.opened).total_seconds())
    # the measures agree with the records: from the alert's arrival (the run's first record) to the key's
    # deactivation (a confirmed exposure: deactivate-now, without a gate), to the LAST containment step that did work
    # (nothing failed, was blocked or rejected, and the run's own report did not say NOT CONTAINED), to the first rotation
    m = report.measures
    assert report.started == min(s.started_at for s in summary.steps if s.started_at)
    contain_phase = [s for s in summary.steps if s.phase == "contain"]
    assert all(s.state in ("completed", "skipped") for s in contain_phase), [(s.id, s.state) for s in contain_phase]
    worked = [s for s in contain_phase if s.state == "completed" and not s.uses.startswith("core.") and s.items != 0]
    contained = max(worked, key=lambda s: s.finished_at)
    keyed = min(
        (s for s in summary.steps if s.uses in KEY_USES and s.items is None and s.state == "completed"),
        key=lambda s: s.finished_at,
    )
    rotated = min(
        (s for s in summary.steps if s.phase == "rotate" and s.state == "completed" and not s.uses.startswith("core.")),
        key=lambda s: s.finished_at,
    )
    assert keyed.id == "deactivate-now" and m.key_deactivated.until.endswith("(deactivate-now) done")
    assert m.key_deactivated.seconds == pytest.approx((keyed.finished_at - report.started).total_seconds())
    assert contained.id != "deactivate-now", "the key's deactivation is not the end of containment"
    assert m.time_to_contain.verdict == "contained" and m.time_to_contain.until.endswith(f"({contained.id}) done")
    assert m.time_to_contain.seconds == pytest.approx((contained.finished_at - report.started).total_seconds())
    assert m.key_deactivated.seconds < m.time_to_contain.seconds  # type: ignore[operator]
    assert verdict_line(report).startswith("Contained in ") and "key deactivated in" in verdict_line(report)
    assert m.time_to_rotate.until.endswith(f"({rotated.id}) done")
    assert m.time_to_rotate.seconds == pytest.approx((rotated.finished_at - report.started).total_seconds())
    assert 0 < m.time_to_contain.seconds <= m.total.seconds and 0 < m.time_to_rotate.seconds <= m.total.seconds  # type: ignore[operator]
    waits = [w.seconds for w in gates.values() if w.seconds is not None]
    assert max(waits) <= m.waiting_on_people.seconds <= sum(waits)  # type: ignore[operator]
    assert m.total.seconds == pytest.approx((report.ended - report.started).total_seconds())  # type: ignore[operator]
    # the review's findings and the messages the run posted
    [review] = report.findings
    assert review.step == "review" and review.events_total == 12 and "persistence" in review.by_category
    assert any(f.source_ip == "203.0.113.5" for f in review.items)
    assert [m.step for m in report.messages] == ["announce", "report"]
    assert "aws.health" in report.messages[0].text and "&lt;" not in report.messages[1].text
    # the timeline: sorted, every lane the run had, the attacker's events from the review
    times = [e.at for e in report.timeline]
    assert times == sorted(times)
    assert {e.kind for e in report.timeline} >= {"alert", "attacker", "step", "gate", "decision", "message"}
    # the JSON form carries the same report
    assert from_json(json.loads(json.dumps(to_json(report)))) == report


def test_a_run_still_waiting_at_a_gate_is_reported_so_far(flagship: tuple[Any, Report, Any]) -> None:
    _, final, approved = flagship
    [midway] = MIDWAY
    first = next(iter(approved))
    assert midway.state == "Running" and any("still running" in n for n in midway.notes)
    waiting = {w.gate: w for w in midway.measures.gates}[first]
    assert waiting.status == "open" and waiting.seconds is None and waiting.closed is None and waiting.opened is not None
    assert "a gate is still open" in midway.measures.waiting_on_people.note
    assert "so far" in midway.measures.total.until
    assert midway.measures.time_to_contain.seconds is None, "never contained before the run's own verdict"
    assert midway.measures.time_to_contain.verdict == "not contained yet"
    assert any(s.state == "pending" for s in midway.steps), "steps not reached yet are listed, pending"
    assert [s.id for s in midway.steps] == [s.id for s in final.steps]
    render_html(midway)  # renders with an open gate (a bar with no end)


def test_no_secret_value_reaches_the_report(flagship: tuple[Any, Report, Any], sandbox_session: Any) -> None:
    _, report, _ = flagship
    sandbox_session.activate()
    try:
        stored = json.loads(
            sandbox_session.client("secretsmanager").get_secret_value(SecretId="workloads/ci-deployer/aws")["SecretString"]
        )
    finally:
        sandbox_session.deactivate()
    for text in (json.dumps(to_json(report)), render_html(report), render_markdown(report)):
        assert stored["SecretAccessKey"] not in text


def test_credential_shapes_people_typed_are_masked_in_every_form_of_the_report(flagship: tuple[Any, Report, Any]) -> None:
    from flows.engine.journal import GATE_PREFIX
    from flows.tabletop.report import _read_inputs

    _, report, _ = flagship
    journal = json.dumps(
        {k: v for k, (v, _) in _read_inputs(uuid.UUID(report.flow_run_id)).items() if k.startswith(GATE_PREFIX)}
    )
    assert AWS_SECRET in journal and SLACK_TOKEN in journal, "the journal holds the reasons as typed"
    reasons = [d.reason for d in report.decisions if d.accepted] + [d.refusal or "" for d in report.decisions]
    assert any("pasted *** by mistake" in r for r in reasons), reasons
    for text, masked in (
        (json.dumps(to_json(report)), "pasted *** by mistake"),
        (render_html(report), "pasted *** by mistake"),
        (render_markdown(report), "pasted \\*\\*\\* by mistake"),  # Markdown escapes its emphasis
    ):
        assert AWS_SECRET not in text and SLACK_TOKEN not in text
        assert masked in text


def parsed(page: str) -> tuple[set[str], set[str]]:
    """The tag names and attribute names a browser would see in a page."""
    from html.parser import HTMLParser

    tags: set[str] = set()
    attributes: set[str] = set()

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.add(tag)
            attributes.update(name for name, _ in attrs)

    Collect().feed(page)
    return tags, attributes


def test_an_exercise_report_shows_outcomes_and_injects_and_escapes_what_attackers_wrote(
    flagship: tuple[Any, Report, Any],
) -> None:
    _, incident, _ = flagship
    t0 = incident.started
    assert t0 is not None
    report = collect(
        incident.flow_run_id,
        scenario={"kind": "Scenario", "metadata": {"name": "leaked-key", "title": f"Leaked key {HOSTILE}"}},
        outcomes=[
            {"name": "key Inactive within 2 min", "met": True, "target": "2m", "actual": "1s", "evidence": "deactivate-now"},
            {"name": f"backdoor contained {HOSTILE}", "met": False, "target": None, "actual": HOSTILE, "evidence": HOSTILE},
        ],
        extra_events=[
            {"at": (t0.replace(microsecond=0)).isoformat(), "kind": "alert", "label": f"AWS Health {HOSTILE}", "detail": ""},
            {"at": t0.isoformat(), "kind": "inject", "label": f"vendor: rotation failed {HOSTILE}", "detail": HOSTILE},
            {"at": "2024-01-01T00:00:00", "kind": "attacker", "label": f"CreateUser {HOSTILE}", "detail": HOSTILE},
        ],
    )
    assert report.kind == "tabletop" and report.title.startswith("Tabletop: Leaked key")
    assert [o.met for o in report.outcomes] == [True, False]
    kinds = [e.kind for e in report.timeline]
    assert kinds.count("alert") == 1 and "inject" in kinds
    assert kinds.count("attacker") == 1, "given attacker events replace the review's on the timeline"
    assert report.started == t0.replace(microsecond=0), "measures count from the given alert"
    shift = (t0 - t0.replace(microsecond=0)).total_seconds()
    assert incident.measures.time_to_contain.seconds is not None
    assert report.measures.time_to_contain.seconds == pytest.approx(incident.measures.time_to_contain.seconds + shift)
    page = render_html(report)
    tags, attributes = parsed(page)
    assert not tags & {"script", "img", "iframe", "link", "object", "embed", "a"}, tags
    assert not {a for a in attributes if a in ("src", "href", "xlink:href") or a.startswith("on")}, attributes
    assert "@import" not in page and "url(" not in page
    assert "&lt;script&gt;" in page and "✘ MISSED" in page and "✔ MET" in page
    markdown = render_markdown(report)
    assert "<script" not in markdown and "<img" not in markdown and "](javascript" not in markdown
    assert "**MISSED**" in markdown


def test_live_answers_show_who_answered_as_verified_with_their_part_and_nothing_is_put_on_a_persona(
    flagship: tuple[Any, Report, Any],
) -> None:
    """A live run (no scripted persona): each answer the gate records is on the Decisions lane with the approver's
    name as the run verified it and their approver group; no persona event is made up."""
    _, report, approved = flagship
    assert not [e for e in report.timeline if e.kind == "persona"]
    answers = [e for e in report.timeline if e.kind == "decision"]
    first = next(iter(approved))
    for gate, who in approved.items():
        [mark] = [e for e in answers if e.ref == gate and e.actor == who and e.status == "accepted"]
        assert (
            mark.role == "security-oncall approver"
            and mark.label == f"{who} (security-oncall approver) approved gate {gate}"
        )
        assert "identity verified by the approval service's signature" in mark.detail
    [refused] = [e for e in answers if e.actor == "mallory"]
    assert refused.ref == first and refused.status == "refused" and refused.role == "not an approver of this gate"
    assert all(d.verified == d.accepted for d in report.decisions), "every accepted answer was signed and checked"
    page = render_html(report)
    assert "(security-oncall approver) approved gate" in page and "tabletop (verified)" not in page


def test_persona_actions_are_on_their_own_lane_at_the_times_the_run_recorded(flagship: tuple[Any, Report, Any]) -> None:
    """The flagship's answers read as an exercise's: the persona notes the exercise gives are matched to the answers
    the run recorded (shown once, at the record's time, on the Personas lane); a persona's part besides an answer is
    shown at its own time; one the run kept no record of stays as noted. Masked and escaped like everything."""
    _, incident, approved = flagship
    first, who = next(iter(approved.items()))
    [recorded] = [d for d in incident.decisions if d.gate == first and d.approver == who and d.accepted]
    assert recorded.at is not None
    sent_at = recorded.at + timedelta(seconds=2)  # the exercise notes it once the verdict is back
    made_at = recorded.at  # the persona makes the key, then answers (the vendor breach's key owners)
    persona = {"kind": "persona", "actor": who, "role": "security-oncall approver", "ref": first}
    report = collect(
        incident.flow_run_id,
        scenario={"kind": "Scenario", "metadata": {"name": "leaked-key", "title": "Leaked key"}},
        extra_events=[
            {**persona, "at": sent_at.isoformat(), "status": "approved", "label": f"{who} approved gate {first}"},
            {
                **persona,
                "at": made_at.isoformat(),
                "status": "made_key",
                "label": f"{who} (security-oncall approver) made the new key for credential {HOSTILE} by hand",
                "detail": f"stored {AWS_SECRET} in its secret",
            },
            {
                **persona,
                "actor": "bob",
                "ref": "no-such-gate",
                "at": sent_at.isoformat(),
                "status": "late",
                "label": "bob (security-oncall approver) answered gate no-such-gate too late (approve)",
                "detail": "run is not waiting at gate 'no-such-gate'",
            },
        ],
    )
    people = [e for e in report.timeline if e.kind == "persona"]
    assert [(e.actor, e.status) for e in people] == [(who, "made_key"), (who, "approved"), ("bob", "late")]
    made, answer, late = people
    assert made.at == answer.at == recorded.at and late.at == sent_at
    assert answer.label == f"{who} (security-oncall approver) approved gate {first}"
    assert "a scripted persona of the exercise" in answer.detail and "identity verified" in answer.detail
    assert not [e for e in report.timeline if e.kind == "decision" and e.actor == who and e.ref == first], "shown once"
    assert [e for e in report.timeline if e.kind == "decision" and e.actor == "mallory"], "others stay decisions"
    [gate] = [e for e in report.timeline if e.kind == "gate" and e.ref == first and e.until is not None]
    order = report.timeline.index
    assert gate.at < answer.at == gate.until and order(gate) < order(made) < order(answer)
    text = json.dumps(to_json(report))
    assert AWS_SECRET not in text and "<script>" not in render_html(report) + render_svg(report)
    svg = render_svg(report)
    assert ">Personas</text>" in svg and f"{who} (security-oncall approver) approved gate {first}" in svg
    assert from_json(json.loads(text)) == report


def test_the_report_is_published_on_its_run(flagship: tuple[Any, Report, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, report, _ = flagship
    artifact_id = publish_artifact(report, report.flow_run_id)
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["after-action-report"])))
    [artifact] = [a for a in found if str(a.id) == artifact_id]
    assert str(artifact.flow_run_id) == report.flow_run_id and artifact.type == "markdown"
    assert "Time to contain" in str(artifact.data) and report.measures.gates[0].gate in str(artifact.data)
    assert "**Contained in" in str(artifact.data) and "Contained in" in str(artifact.description)
    assert AWS_SECRET not in str(artifact.data) and SLACK_TOKEN not in str(artifact.data)


# ---------------------------------------------------------------------------------------------------- Chromium


def chromium() -> str:
    """Debian's Chromium, installed when missing (as root, with apt); skip with the reason otherwise."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, timeout=900, check=False
        )
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("Debian's chromium is not installed and cannot be installed here (needs root and apt-get)")
    return found


def headless(browser: str, page: Path, *output: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="stanch-chromium-")
    try:
        return subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                *output,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def png_colours(path: Path, columns: int = 480, every: int = 5) -> int:
    """How many distinct colours a PNG (8-bit RGB or RGBA, not interlaced) holds in its left `columns` pixels,
    counted on every `every`th row. (PNG filters only look left and up, so a left strip decodes on its own.)"""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type, interlace)
    bpp = 3 if colour_type == 2 else 4
    raw, line = zlib.decompress(b"".join(chunks)), width * bpp + 1
    stride = min(width, columns) * bpp
    previous, colours = bytearray(stride), set[bytes]()
    for y in range(height):
        kind, row = raw[y * line], bytearray(raw[y * line + 1 : y * line + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            row = bytearray((a + b) & 0xFF for a, b in zip(row, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                row[i] = (row[i] + ((row[i - bpp] if i >= bpp else 0) + previous[i]) // 2) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a, b, c = (row[i - bpp] if i >= bpp else 0), previous[i], (previous[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if y % every == 0:
            colours.update(bytes(row[i : i + 3]) for i in range(0, stride, bpp))
        previous = row
    return len(colours)


def test_the_html_report_renders_in_chromium_and_prints(flagship: tuple[Any, Report, Any], tmp_path: Path) -> None:
    browser = chromium()
    _, report, _ = flagship
    page = tmp_path / "after-action.html"
    page.write_text(render_html(report), encoding="utf-8")
    png, pdf = tmp_path / "after-action.png", tmp_path / "after-action.pdf"
    with ThreadPoolExecutor(2) as pool:  # two browsers at once: the screenshot and the print
        shooting = pool.submit(headless, browser, page, f"--screenshot={png}", "--window-size=1280,2000")
        printing = pool.submit(headless, browser, page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
        shot, printed = shooting.result(), printing.result()
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    assert png_colours(png) > 40, "the page rendered (nearly) blank"
    assert printed.returncode == 0 and pdf.exists(), printed.stderr[-2000:]
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
    keep = os.environ.get("STANCH_REPORT_KEEP")  # a directory to keep the rendered files in, to look at them
    if keep:
        for made in (page, png, pdf):
            shutil.copy(made, Path(keep) / made.name)


# ---------------------------------------------------------------------------------------------------- JSON and the CLI


def stanch(*args: str) -> Any:
    """`stanch ARGS` in this process (the real command on the real app; the Prefect API is the session's)."""
    from typer.testing import CliRunner

    from flows.cli import app

    return CliRunner().invoke(app, list(args))


def test_compare_says_what_got_faster_or_slower_and_which_outcomes_flipped(
    flagship: tuple[Any, Report, Any], tmp_path: Path
) -> None:
    _, report, _ = flagship
    first = collect(report.flow_run_id, outcomes=[{"name": "key Inactive within 2 min", "met": True, "evidence": "x"}])
    later = to_json(
        collect(report.flow_run_id, outcomes=[{"name": "key Inactive within 2 min", "met": False, "evidence": "y"}])
    )
    later["measures"]["time_to_contain"]["seconds"] = first.measures.time_to_contain.seconds + 90  # type: ignore[operator]
    for wait in later["measures"]["gates"]:
        if wait["gate"] == first.measures.gates[-1].gate:
            wait["seconds"] += 45
    rows = {(r.section, r.name): r for r in compare(first, from_json(later))}
    assert rows[("measure", "Time to contain")].verdict == "slower"
    assert rows[("measure", "Time to contain")].change.startswith("+1m 30s")
    assert rows[("gate", first.measures.gates[-1].gate)].verdict == "slower"
    assert rows[("gate", first.measures.gates[0].gate)].verdict == "same" or len(first.measures.gates) == 1
    assert rows[("outcome", "key Inactive within 2 min")].verdict == "now missed"
    not_contained = to_json(first)
    not_contained["measures"]["time_to_contain"].update(seconds=None, verdict="not contained", note="not contained: x")
    row = {(r.section, r.name): r for r in compare(first, from_json(not_contained))}[("measure", "Time to contain")]
    assert (row.b, row.verdict) == ("not contained", "now not contained")
    old = to_json(first)
    del old["measures"]["key_deactivated"]  # a report written before the measure: still read, and compared
    assert from_json(old).measures.key_deactivated.seconds is None
    assert {r.name: r.verdict for r in compare(from_json(old), first)}["Key deactivated"] == "only in B"
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(to_json(first)))
    b.write_text(json.dumps(later))
    shown = stanch("compare", str(a), str(b), "--markdown")
    assert shown.exit_code == 0, shown.stderr
    assert "| Time to contain |" in shown.stdout and "slower" in shown.stdout and "now missed" in shown.stdout


def test_stanch_report_writes_the_html_and_json_of_a_real_run(flagship: tuple[Any, Report, Any], tmp_path: Path) -> None:
    _, report, _ = flagship
    page, data = tmp_path / "r.html", tmp_path / "r.json"
    done = stanch("report", report.flow_run_id, "--html", str(page), "--json", str(data))
    assert done.exit_code == 0, done.stderr
    if os.environ.get("STANCH_REPORT_KEEP"):
        (Path(os.environ["STANCH_REPORT_KEEP"]) / "stanch-report.txt").write_text(done.stdout)
    assert "Time to contain" in done.stdout and report.measures.gates[0].gate in done.stdout
    again = from_json(json.loads(data.read_text()))
    assert again.measures == report.measures and again.steps == report.steps
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_stanch_report_on_an_unknown_run_says_so_in_one_line(prefect_api: str) -> None:
    unknown = str(uuid.uuid4())
    done = subprocess.run([STANCH, "report", unknown], capture_output=True, text=True, env=cli_env())
    assert done.returncode == 1
    assert f"no flow run {unknown}" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    with pytest.raises(ReportError, match="no flow run"):
        collect(unknown)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[1, 2]", "a report is a JSON object, not list"),
        ('{"title": "x"}', "schema is 'None'"),
        ('{"schema": "stanch.review/v2"}', "schema is 'stanch.review/v2'"),
        ('{"schema": "stanch.report/v1", "title": "x"}', "kind: Field required"),
        ("{not json", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"schema": "stanch.report/v1", "alert": ' + "[" * 200 + "]" * 200 + "}", "nested more than 64 levels"),
    ],
)
def test_a_file_that_is_not_a_report_is_refused_with_the_reason(tmp_path: Path, content: str, expected: str) -> None:
    from flows.tabletop.report import read_json_file

    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ReportError) as caught:
        read_json_file(bad)
    assert expected in str(caught.value) and str(caught.value).startswith(str(bad))
    assert "\n" not in str(caught.value)


def test_a_file_too_large_for_a_report_is_refused_before_it_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.tabletop import report as module

    monkeypatch.setattr(module, "MAX_REPORT_BYTES", 1000)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"schema": "stanch.report/v1", "notes": ["x" * 2000]}))
    with pytest.raises(ReportError) as caught:
        module.read_json_file(big)
    assert str(caught.value) == f"{big}: too large for a report (over 1,000 bytes)"


def test_stanch_compare_on_a_bad_file_exits_1_with_the_reason(tmp_path: Path) -> None:
    bad, good = tmp_path / "bad.json", tmp_path / "missing.json"
    bad.write_text('{"schema": "stanch.report/v1", "kind": "exercise"}')
    done = stanch("compare", str(bad), str(good))
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit), done.exception  # no traceback
    assert "not a Stanch report" in done.stderr and "bad.json" in done.stderr


def test_bad_events_and_outcomes_are_refused_before_anything_is_read() -> None:
    with pytest.raises(ReportError, match=r"extra_events\[0\]\.kind"):
        collect(str(uuid.uuid4()), extra_events=[{"at": "2026-01-01T00:00:00Z", "kind": "meteor", "label": "x"}])
    with pytest.raises(ReportError, match=r"extra_events\[0\]\.at"):
        collect(str(uuid.uuid4()), extra_events=[{"at": "yesterday", "kind": "inject", "label": "x"}])
    with pytest.raises(ReportError, match=r"outcomes\[1\]\.met"):
        collect(str(uuid.uuid4()), outcomes=[{"name": "a", "met": True}, {"name": "b", "met": "perhaps"}])


# ---------------------------------------------------------------------------------------------------- when "contained"

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)


def line(step_id: str, phase: str, uses: str, end: float | None, state: str = "completed", **more: Any) -> StepLine:
    ended = T0 + timedelta(seconds=end) if end is not None else None
    started = ended - timedelta(seconds=1) if ended is not None else None
    return StepLine(id=step_id, name=step_id, phase=phase, uses=uses, state=state, started=started, ended=ended, **more)


def flagship_steps(**states: str) -> list[StepLine]:
    """The flagship's containment as a confirmed exposure runs it, every step done; `states` changes some."""
    steps = [
        line("deactivate-now", "contain", "aws.iam.deactivate_access_key", 30),
        line("deactivate-approved", "contain", "aws.iam.deactivate_access_key", None, "skipped"),
        line("revoke-user-sessions", "contain", "aws.iam.revoke_sessions", 45),
        line("approve-containment", "contain", "core.log", 200),
        line("quarantine-created-users", "contain", "aws.iam.quarantine_principal", 210, items=1),
        line("deactivate-created-keys", "contain", "aws.iam.deactivate_access_key", 215, items=1),
        line("disable-created-logins", "contain", "aws.iam.disable_console_login", 220, items=1),
        line("approve-role-sessions", "contain", "core.log", None, "skipped"),
        line("revoke-role-sessions", "contain", "aws.iam.revoke_sessions", 100, items=0, detail="0 item(s), 0 changed"),
        line("rotate-key-now", "rotate", "aws.iam.rotate_access_key", 60),
        line("watch-key-use", "review", "aws.cloudtrail.watch_key_use", 400),
        line("report", "notify", "slack.post_message", 401),
    ]
    for s in steps:
        if s.id in states:
            s.state = states[s.id]
            s.detail = "ListBuckets by ASIAEXAMPLE after containment: it still works" if s.id == "watch-key-use" else ""
    return steps


SAID = "Incident INC-1 report: NOT CONTAINED: sessions of roles the key assumed may still work (app-deployer). Key: x."


@pytest.mark.parametrize(
    ("states", "said", "mode", "running", "why"),
    [
        ({"revoke-user-sessions": "failed"}, "", "live", False, "revoke-user-sessions failed"),
        ({"watch-key-use": "failed"}, "", "live", False, "watch-key-use failed: ListBuckets by ASIAEXAMPLE"),
        (
            {"approve-role-sessions": "rejected", "revoke-role-sessions": "blocked"},
            "",
            "live",
            False,
            "approve-role-sessions rejected; revoke-role-sessions blocked",
        ),
        ({"approve-containment": "timed_out", "disable-created-logins": "blocked"}, "", "live", False, "timed out"),
        ({}, SAID, "live", False, "report says NOT CONTAINED: sessions of roles the key assumed may still work"),
        ({}, "", "dry-run", False, "a dry-run changes nothing"),
        ({"watch-key-use": "pending", "report": "pending"}, "", "live", True, "watch-key-use not finished yet"),
    ],
)
def test_never_contained_while_a_credential_may_still_work(
    states: dict[str, str], said: str, mode: str, running: bool, why: str
) -> None:
    steps = flagship_steps(**states)
    messages = [Message(at=T0, step="report", text=said)] if said else []
    m = _measures(steps, [], T0, T0 + timedelta(seconds=401), running, True, messages, mode)
    assert m.time_to_contain.seconds is None and m.time_to_contain.at is None
    assert m.time_to_contain.verdict == ("not contained yet" if running else "not contained")
    assert why in m.time_to_contain.note, m.time_to_contain.note
    if mode == "dry-run":
        assert (m.key_deactivated.seconds, m.key_deactivated.verdict) == (None, "not deactivated")
    else:  # the key's own time stands whatever else failed
        assert m.key_deactivated.seconds == 30 and m.key_deactivated.until == "deactivate-now (deactivate-now) done"
    report = Report(title="t", kind="incident", flow_run_id="r", playbook="p", mode=mode, steps=steps, measures=m)
    shown = verdict_line(report)
    assert shown.startswith("NOT CONTAINED") and why in shown, shown
    for text in (render_html(report), render_markdown(report)):
        assert "NOT CONTAINED" in text and "Contained in" not in text


def test_contained_is_the_end_of_the_last_containment_step_and_the_key_has_its_own_time() -> None:
    steps = flagship_steps()
    m = _measures(steps, [], T0, T0 + timedelta(seconds=401), False, True, [], "live")
    assert (m.time_to_contain.seconds, m.time_to_contain.verdict) == (220, "contained")
    assert m.time_to_contain.until == "disable-created-logins (disable-created-logins) done"
    assert (m.key_deactivated.seconds, m.time_to_rotate.seconds) == (30, 60)
    report = Report(title="t", kind="incident", flow_run_id="r", playbook="p", mode="live", steps=steps, measures=m)
    assert verdict_line(report) == "Contained in 3m 40s (key deactivated in 30s)"
    rejected = _measures(flagship_steps(**{"deactivate-now": "skipped"}), [], T0, T0, False, True, [], "live")
    assert rejected.key_deactivated.seconds == 60, "a rotation leaves the key Inactive too"
    none = [s for s in flagship_steps() if s.phase != "contain"]
    assert (
        _measures(none, [], T0, T0, False, True, [], "live").time_to_contain.note == "the playbook has no containment step"
    )


def test_a_run_still_going_is_not_contained_yet_even_with_every_containment_step_done() -> None:
    m = _measures(flagship_steps(), [], T0, T0 + timedelta(seconds=401), True, True, [], "live")
    assert (m.time_to_contain.seconds, m.time_to_contain.note) == (None, "not contained yet: the run is still going")
