"""The after-action report: what a run did and how fast, for an exercise or a real incident alike.

`collect` reads a flow run back from the Prefect API: the run (playbook, mode, incident, alert, tags), its
journal records (`stanch-step-*`, `stanch-gate-*`: steps, gates, decisions) and the review's findings in the
review step's outputs. Times come from those records, which carry the exercise clock in a tabletop run;
Prefect's own timestamps are used only when a run has no record with a time. The report renders as one
self-contained HTML file (inline CSS and SVG, nothing fetched), as Markdown (a Prefect artifact) and as JSON
(`stanch.report/v1`), which `compare` reads to say what got faster or slower between two runs.

Every value shown may come from an attacker (an alert's text, a log record's fields): the HTML and the
Markdown escape everything, and a report holds no secret value (the journal's step outputs are masked, and
`collect` masks credential shapes in every free text it reads: decision reasons, step details, messages).

"Contained" is said only when nothing the run knows of may still work: see `_contain_measure`.
"""

from __future__ import annotations

import html
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from integrations.masking import SecretMasker

SCHEMA = "stanch.report/v1"
ARTIFACT_KEY = "after-action-report"
EventKind = Literal["alert", "attacker", "step", "gate", "inject", "persona", "decision", "message"]
KINDS: tuple[str, ...] = ("alert", "attacker", "inject", "step", "gate", "persona", "decision", "message")
# What a scripted persona of an exercise did (an event of kind `persona`, its `status`): an answer at a gate, as the
# run judged it, or their part besides an answer (a key made by hand); `late` is an answer the gate no longer took.
PERSONA_ANSWERS = ("approved", "rejected", "refused", "sent", "late")
MAX_ATTACKER_EVENTS = 200  # findings put on the timeline; the findings section lists them all (up to MAX_FINDINGS)
MAX_FINDINGS = 500
MAX_TEXT = 2000
MAX_REPORT_BYTES = 32 * 1024 * 1024  # a report file read back (`stanch compare`): larger is not one Stanch wrote
MAX_REPORT_DEPTH = 64  # levels of nesting in a report's JSON (a real one has fewer than 10)
_MASKER = SecretMasker()  # credential shapes (no value is registered: a report reads no secret)
_log = logging.getLogger("stanch.report")


class ReportError(Exception):
    """A report cannot be made or read: the message says why, in one line."""


# ---------------------------------------------------------------------------------------------------- the model


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        """Every time in UTC; a time without a zone is taken as UTC (so times always compare)."""
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class Event(_Model):
    """One thing on the timeline. `until` makes it a span (a step's run, a gate's wait)."""

    at: datetime
    kind: EventKind
    label: str = Field(max_length=MAX_TEXT)
    detail: str = Field("", max_length=20 * MAX_TEXT)
    until: datetime | None = None
    ref: str = ""  # the step or gate id it belongs to
    status: str = ""  # a step's state, a gate's outcome; a persona's action (PERSONA_ANSWERS, made_key)
    actor: str = ""  # who did it: the approver (as the run verified it) or the exercise's persona
    role: str = ""  # the actor's part at the gate: the approver group that asked them


class Outcome(_Model):
    """An expected outcome of an exercise, met or missed, with what shows it."""

    name: str
    met: bool
    target: Any = None
    actual: Any = None
    evidence: str = ""


class StepLine(_Model):
    id: str
    name: str
    phase: str
    uses: str
    state: str
    started: datetime | None = None
    ended: datetime | None = None
    changed: bool = False
    detail: str = ""
    items: int | None = None  # a for_each step's item count (None: a single action)


class Decision(_Model):
    gate: str
    approver: str
    decision: str
    reason: str = ""
    channel: str = ""
    at: datetime | None = None
    accepted: bool = True
    refusal: str | None = None
    verified: bool = False  # the answer carried the approval service's signature and the run checked it
    role: str = ""  # the approver group of the gate the approver answered for


class GateWait(_Model):
    """How long a gate waited on people: from opening to its close (approved, rejected, timed out)."""

    gate: str
    step: str = ""
    status: str  # approved | rejected | timed_out | open | dropped | dry_run
    opened: datetime | None = None
    closed: datetime | None = None
    deadline: datetime | None = None
    escalated: datetime | None = None
    seconds: float | None = None
    decided_by: list[str] = Field(default_factory=list)


class Measure(_Model):
    key: str
    label: str
    seconds: float | None = None
    at: datetime | None = None  # when it ended (the step finished, the run's last record)
    since: str = ""
    until: str = ""
    note: str = ""
    verdict: str = ""  # what stands instead of a time: "not contained", "not deactivated" ("" when it has a time)

    def shown(self) -> str:
        """The time, else the verdict (a measure with neither shows a dash)."""
        return fmt_seconds(self.seconds) if self.seconds is not None or not self.verdict else self.verdict


def _no_key_measure() -> Measure:  # reports written before the measure existed
    return Measure(key="key_deactivated", label="Key deactivated", note="not measured in this report")


class Measures(_Model):
    time_to_contain: Measure
    key_deactivated: Measure = Field(default_factory=_no_key_measure)
    time_to_rotate: Measure
    waiting_on_people: Measure
    total: Measure
    gates: list[GateWait] = Field(default_factory=list)

    def all(self) -> list[Measure]:
        return [self.time_to_contain, self.key_deactivated, self.time_to_rotate, self.waiting_on_people, self.total]


class FindingLine(_Model):
    category: str
    event_name: str
    event_time: str = ""
    access_key_id: str | None = None
    source_ip: str | None = None
    region: str | None = None
    error_code: str | None = None
    resources: list[str] = Field(default_factory=list)


class Findings(_Model):
    """One review step's findings, as the review reported them."""

    step: str
    events_total: int | None = None
    first_event: str | None = None
    last_event: str | None = None
    source_ips: list[str] = Field(default_factory=list)  # "ip (count)"
    by_category: dict[str, int] = Field(default_factory=dict)
    to_contain: dict[str, int] = Field(default_factory=dict)  # entries still standing, by category
    items: list[FindingLine] = Field(default_factory=list)
    not_listed: int = 0
    partial: bool = False
    partial_note: str = ""


class Message(_Model):
    at: datetime | None = None
    step: str
    channel: str = ""
    posted: bool = True
    text: str = ""


class Report(_Model):
    schema_: str = Field(SCHEMA, alias="schema")
    title: str
    kind: Literal["tabletop", "incident"]
    flow_run_id: str
    flow_run_name: str = ""
    playbook: str
    playbook_title: str = ""
    scenario: str = ""
    incident_id: str = ""
    mode: str = ""
    state: str = ""
    state_message: str = ""
    launched_by: str = ""
    tags: list[str] = Field(default_factory=list)
    alert: dict[str, Any] = Field(default_factory=dict)  # source, kind, key, user, the time it claims
    started: datetime | None = None
    ended: datetime | None = None
    timeline: list[Event] = Field(default_factory=list)
    steps: list[StepLine] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    measures: Measures
    outcomes: list[Outcome] = Field(default_factory=list)
    findings: list[Findings] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CompareRow(_Model):
    section: Literal["measure", "gate", "outcome"]
    name: str
    a: str
    b: str
    change: str
    verdict: str  # faster | slower | same | only in A | only in B | now met | now missed | still met | still missed
    # (a measure with a verdict instead of a time: "now not contained", "now contained")


# ---------------------------------------------------------------------------------------------------- JSON


def to_json(report: Report) -> dict[str, Any]:
    data: dict[str, Any] = report.model_dump(mode="json", by_alias=True)
    return data


def _too_deep(data: Any, limit: int = MAX_REPORT_DEPTH) -> bool:
    """True when lists and objects nest more than `limit` levels (counted without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            if level > limit:
                return True
            stack.extend((child, level + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


def from_json(data: Any) -> Report:
    """A report from its JSON form; ReportError naming what is wrong for anything else."""
    if not isinstance(data, dict):
        raise ReportError(f"not a Stanch report: a report is a JSON object, not {type(data).__name__}")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise ReportError(f"not a Stanch report: schema is {str(schema)[:60]!r}, expected {SCHEMA!r}")
    if _too_deep(data):
        raise ReportError(f"not a Stanch report: nested more than {MAX_REPORT_DEPTH} levels deep")
    try:
        return Report.model_validate(data)
    except RecursionError:
        raise ReportError("not a Stanch report: nested too deeply to read") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ReportError(f"not a Stanch report: {where}: {first['msg']}{more}") from None


def read_json_file(path: Any) -> Report:
    """A report from a JSON file, with one-line errors naming the file."""
    from pathlib import Path

    file = Path(path)
    try:
        with file.open("rb") as stream:  # at most one byte past the cap, whatever the file claims (a FIFO, /dev/zero)
            raw = stream.read(MAX_REPORT_BYTES + 1)
        if len(raw) > MAX_REPORT_BYTES:
            raise ReportError(f"{file}: too large for a report (over {MAX_REPORT_BYTES:,} bytes)")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{file}: cannot read it: {' '.join(str(exc).split())}") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ReportError(f"{file}: not a Stanch report: nested too deeply to read") from None
    except ValueError as exc:
        raise ReportError(f"{file}: not JSON: {exc}") from None
    try:
        return from_json(data)
    except ReportError as exc:
        raise ReportError(f"{file}: {exc}") from None


# ---------------------------------------------------------------------------------------------------- collect


def _time(value: Any) -> datetime | None:
    """An aware UTC datetime from a datetime or an ISO-8601 text (naive ones are taken as UTC); None otherwise."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _free(value: Any, limit: int = MAX_TEXT) -> str:
    """Free text (a reason, a detail, a message, an alert's field) with credential shapes masked, then cut to
    `limit`: masked before it is cut, so a cut never leaves part of a secret its pattern no longer matches."""
    text = "" if value is None else str(value)
    return _text(_MASKER.mask(text[: limit + 10_000]), limit)


def _slack_text(text: str) -> str:
    """Slack's escaping undone (the HTML and Markdown renderers escape again, for their own language)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _checked_events(extra_events: list[dict[str, Any]] | None) -> list[Event]:
    events = []
    for index, item in enumerate(extra_events or []):
        if not isinstance(item, dict):
            raise ReportError(f"extra_events[{index}]: an event is an object with at, kind, label, detail")
        known = {k: v for k, v in item.items() if k in Event.model_fields}  # other keys are the caller's own
        for name, limit in (("label", MAX_TEXT), ("detail", 20 * MAX_TEXT), ("actor", 200), ("role", 300)):
            if isinstance(known.get(name), str):
                known[name] = _free(known[name], limit)
        try:
            events.append(Event.model_validate(known))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ReportError(f"extra_events[{index}].{where}: {first['msg']}") from None
    return events


def _checked_outcomes(outcomes: list[dict[str, Any]] | None) -> list[Outcome]:
    checked = []
    for index, item in enumerate(outcomes or []):
        if not isinstance(item, dict):
            raise ReportError(f"outcomes[{index}]: an outcome is an object with name, met, target, actual, evidence")
        try:
            checked.append(Outcome.model_validate(_MASKER.mask_data(item)))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ReportError(f"outcomes[{index}].{where}: {first['msg']}") from None
    return checked


def _read_run(ref: str) -> Any:
    from flows.engine.launch import LaunchError, find_run

    try:
        return find_run(ref)
    except LaunchError as exc:
        raise ReportError(str(exc)) from None
    except Exception as exc:  # the API is unreachable or answered oddly: say so in one line
        from prefect.settings import PREFECT_API_URL

        where = PREFECT_API_URL.value() or "the ephemeral Prefect API"
        raise ReportError(f"cannot read run {ref} from {where}: {type(exc).__name__}: {_free(exc, 300)}") from None


def _read_inputs(flow_run_id: UUID) -> dict[str, tuple[str, datetime | None]]:
    """Every stanch-* input of a run: key -> (value, when Prefect stored it)."""
    from prefect.client.orchestration import get_client

    found: dict[str, tuple[str, datetime | None]] = {}
    with get_client(sync_client=True) as client:
        while True:
            page = client.filter_flow_run_input(flow_run_id, key_prefix="stanch-", limit=200, exclude_keys=set(found))
            for item in page:
                found[item.key] = (str(item.value), _time(item.created))
            if len(page) < 200:
                return found


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return None


def collect(
    flow_run_id: str,
    *,
    scenario: dict[str, Any] | None = None,
    outcomes: list[dict[str, Any]] | None = None,
    extra_events: list[dict[str, Any]] | None = None,
) -> Report:
    """The after-action report of a finished (or running) flow run, read from the Prefect API.

    Args:
        flow_run_id: the flow run's id (or an incident id that names exactly one run).
        scenario: the exercise's scenario document, when the run was one (its name and title head the report).
        outcomes: the exercise's expected outcomes as judged: {name, met, target, actual, evidence}.
        extra_events: what the run's records do not hold: the injected alert, the attacker's activity, injects,
            as {at (ISO-8601), kind, label, detail}; an `alert` event here sets the time measures start from.
    """
    from flows.engine.journal import GATE_PREFIX, PLAYBOOK_KEY, STEP_PREFIX
    from flows.engine.records import DecisionRecord, StepRecord

    checked_outcomes = _checked_outcomes(outcomes)
    given_events = _checked_events(extra_events)
    if scenario is not None and not isinstance(scenario, dict):
        raise ReportError("scenario: a scenario is a mapping (the scenario document)")
    flow_run = _read_run(str(flow_run_id))
    try:
        inputs = _read_inputs(flow_run.id)
    except Exception as exc:  # the API went away between two calls, or answered oddly
        raise ReportError(f"cannot read the records of run {flow_run.id}: {type(exc).__name__}: {_free(exc, 300)}") from None
    notes: list[str] = []
    params = flow_run.parameters or {}
    tags = sorted(flow_run.tags or [])
    tag = {t.partition(":")[0]: t.partition(":")[2] for t in tags if ":" in t}

    playbook_doc = _dict(_json(inputs[PLAYBOOK_KEY][0]) if PLAYBOOK_KEY in inputs else None)
    metadata = _dict(playbook_doc.get("metadata"))
    playbook = str(tag.get("playbook") or metadata.get("name") or "")

    # ---- steps, from their records; steps of the playbook with no record yet are pending
    records: dict[str, StepRecord] = {}
    for key, (value, _) in inputs.items():
        if key.startswith(STEP_PREFIX):
            try:
                record = StepRecord.model_validate_json(value)
            except ValidationError:
                notes.append(f"the record {key} could not be read and is left out")
                continue
            records[record.id] = record
    order = [s.get("id") for s in playbook_doc.get("steps", []) if isinstance(s, dict) and s.get("id")]
    order += sorted(set(records) - set(order))
    steps: list[StepLine] = []
    for step_id in order:
        found = records.get(str(step_id))
        if found is None:
            spec = next(s for s in playbook_doc.get("steps", []) if isinstance(s, dict) and s.get("id") == step_id)
            name = str(spec.get("name") or step_id)
            steps.append(
                StepLine(
                    id=str(step_id),
                    name=name,
                    phase=str(spec.get("phase", "")),
                    uses=str(spec.get("uses", "")),
                    state="pending",
                )
            )
            continue
        steps.append(
            StepLine(
                id=found.id,
                name=found.name,
                phase=found.phase,
                uses=found.uses,
                state=found.state,
                started=_time(found.started_at),
                ended=_time(found.finished_at),
                changed=found.changed,
                detail=_free(found.detail or found.reason),
                items=found.items,
            )
        )

    # ---- gates and decisions
    gate_events: dict[str, dict[str, tuple[Any, datetime | None]]] = {}
    for key, (value, created) in inputs.items():
        if key.startswith(GATE_PREFIX):
            gate, _, event = key.removeprefix(GATE_PREFIX).rpartition("-")
            gate_events.setdefault(gate, {})[event] = (_json(value), created)
    decisions: list[Decision] = []
    waits: list[GateWait] = []
    for gate, events in sorted(gate_events.items()):
        opened_data = events.get("opened", ({}, None))
        opened_value = _dict(opened_data[0])
        opened = _time(opened_value.get("at")) or opened_data[1]
        deadline = _time(opened_value.get("deadline"))
        escalated = None
        if "escalated" in events:
            escalated_value, created = _dict(events["escalated"][0]), events["escalated"][1]
            escalated = _time(escalated_value.get("at")) or created
            deadline = _time(escalated_value.get("deadline")) or deadline
        closed_at: datetime | None = None
        status = "open"
        gate_decisions: list[Decision] = []
        if "closed" in events:
            closed_value, created = _dict(events["closed"][0]), events["closed"][1]
            status = str(closed_value.get("status") or "closed")
            for raw in closed_value.get("decisions") or []:
                try:
                    recorded = DecisionRecord.model_validate(raw)
                except ValidationError:
                    notes.append(f"a decision recorded at gate {gate} could not be read and is left out")
                    continue
                gate_decisions.append(_decision(recorded))
            times = [d.at for d in gate_decisions if d.at is not None]
            closed_at = max(times) if times else created
        else:
            gated = records.get(gate)
            if gated is not None and gated.state != "pending":
                status = "dropped"
                closed_at = _time(gated.finished_at)
        decisions += gate_decisions
        step = next((s for s in steps if s.id == gate), None)
        waits.append(
            GateWait(
                gate=gate,
                step=step.name if step else gate,
                status=status,
                opened=opened,
                closed=closed_at,
                deadline=deadline,
                escalated=escalated,
                seconds=(closed_at - opened).total_seconds() if opened and closed_at else None,
                decided_by=[d.approver for d in gate_decisions if d.accepted and d.decision != "timeout"],
            )
        )
    for record in records.values():  # a gate with no closing record: its decisions are on the step record
        if record.id not in gate_events or "closed" not in gate_events[record.id]:
            decisions += [_decision(d) for d in record.decisions]
        if record.id not in gate_events and record.reason.startswith("gate would wait for"):
            waits.append(GateWait(gate=record.id, step=record.name, status="dry_run"))
    decisions.sort(key=lambda d: d.at or datetime.min.replace(tzinfo=UTC))
    groups, approvals = _dict(playbook_doc.get("approvers")), _roles(playbook_doc)
    for d in decisions:
        if d.decision != "timeout" and d.gate in approvals:
            d.role = approver_role(groups, approvals[d.gate], d.approver)
    order_of = {sid: i for i, sid in enumerate(order)}
    waits.sort(key=lambda w: (w.opened or datetime.max.replace(tzinfo=UTC), order_of.get(w.gate, 0)))

    # ---- the review's findings and the messages the run posted
    findings = [_findings(r) for r in records.values() if _is_review(r.outputs)]
    messages = [
        Message(
            at=_time(r.finished_at),
            step=r.id,
            channel=str(r.outputs.get("channel") or ""),
            posted=bool(r.outputs.get("posted", True)),
            text=_free(_slack_text(str(r.outputs.get("text") or ""))),
        )
        for r in records.values()
        if r.uses.startswith("slack.") and isinstance(r.outputs, dict) and r.outputs.get("text")
    ]
    for f in findings:
        if f.partial:
            notes.append(f"the review in step {f.step} was partial: {f.partial_note}")

    # ---- the timeline
    # A persona's answer the run recorded is shown once, as the run judged it: at the record's time, on the
    # persona's lane (the exercise's own note of it, at the time it was sent, only when the run kept no record).
    answered = [e for e in given_events if e.kind == "persona" and e.status in PERSONA_ANSWERS]
    timeline: list[Event] = [e for e in given_events if not (e.kind == "persona" and e.status in PERSONA_ANSWERS)]
    journal_times = [t for s in steps for t in (s.started, s.ended) if t] + [
        t for w in waits for t in (w.opened, w.closed) if t
    ]
    alert = _alert_summary(_dict(params.get("alert")))
    given_alert = next((e for e in given_events if e.kind == "alert"), None)
    run_start: datetime | None
    if journal_times:
        run_start = min(journal_times)
    else:
        run_start = _time(flow_run.start_time) or _time(flow_run.expected_start_time) or _time(flow_run.created)
        notes.append("the run has no journal record with a time: Prefect's timestamps are used")
    alert_at = given_alert.at if given_alert else run_start
    if given_alert is None and run_start is not None:
        label = f"Alert: {alert.get('source', 'none')} {alert.get('kind', '')}".strip() if alert else "Run started by hand"
        detail = ", ".join(f"{k} {v}" for k, v in alert.items() if k not in ("source", "kind") and v)
        timeline.append(Event(at=run_start, kind="alert", label=_text(label), detail=_text(detail), ref="alert"))
    for s in steps:
        if s.started is None:
            continue
        timeline.append(
            Event(
                at=s.started,
                until=s.ended,
                kind="step",
                label=_text(f"{s.name} ({s.id}): {s.state}"),
                detail=s.detail,
                ref=s.id,
                status=s.state,
            )
        )
    for w in waits:
        if w.opened is None:
            continue
        who = f" by {', '.join(w.decided_by)}" if w.decided_by else ""
        timeline.append(
            Event(
                at=w.opened,
                until=w.closed,
                kind="gate",
                label=_text(f"Gate before {w.gate}: {w.status.replace('_', ' ')}{who}"),
                detail=f"waited {fmt_seconds(w.seconds)}" if w.seconds is not None else "still waiting",
                ref=w.gate,
                status=w.status,
            )
        )
        if w.escalated is not None:
            timeline.append(Event(at=w.escalated, kind="gate", label=f"Gate before {w.gate}: escalated", ref=w.gate))
    for d in decisions:
        if d.at is None:
            continue
        timeline.append(_decision_event(d, answered))
    timeline += answered  # answers the run kept no record of (it ended first, or did not say in time)
    for m in messages:
        if m.at is not None:
            where = m.channel or "Slack"
            label = f"{'Posted to' if m.posted else 'Would post to'} {where}"
            timeline.append(Event(at=m.at, kind="message", label=_text(label), detail=m.text, ref=m.step))
    if not any(e.kind == "attacker" for e in given_events):
        timeline += _attacker_events(findings, notes)
    timeline.sort(key=lambda e: (e.at, KINDS.index(e.kind)))

    # ---- measures
    times = [t for e in timeline for t in (e.at, e.until) if t]
    ended = max(times) if times else _time(flow_run.end_time)
    state = flow_run.state.name if flow_run.state else ""
    running = flow_run.state is not None and not flow_run.state.is_final()
    if running:
        notes.append(f"the run is still {state.lower() or 'running'}: the report shows it so far")
    mode = str(tag.get("mode") or params.get("mode") or "")
    measures = _measures(steps, waits, alert_at, ended, running, given_alert is not None, messages, mode)
    if mode == "dry-run":
        notes.append(
            "a dry-run: nothing was changed and gates were passed without waiting, so the times are not a response's"
        )

    kind: Literal["tabletop", "incident"] = "tabletop" if ("tabletop" in tags or scenario is not None) else "incident"
    scenario_name, scenario_title = _scenario_names(scenario)
    incident = str(tag.get("incident") or params.get("incident_id") or flow_run.name or "")
    heading = scenario_title or scenario_name or metadata.get("title") or playbook
    title = f"Tabletop: {heading}" if kind == "tabletop" else f"Incident {incident}: {metadata.get('title') or playbook}"
    return Report(
        title=_free(title, 300),
        kind=kind,
        flow_run_id=str(flow_run.id),
        flow_run_name=str(flow_run.name or ""),
        playbook=playbook,
        playbook_title=_free(metadata.get("title") or "", 300),
        scenario=_free(scenario_name, 300),
        incident_id=incident,
        mode=mode,
        state=state,
        state_message=_free(flow_run.state.message if flow_run.state else ""),
        launched_by=_free(params.get("launched_by") or "", 128),
        tags=tags,
        alert=alert,
        started=min(t for t in (alert_at, run_start) if t) if (alert_at or run_start) else None,
        ended=ended,
        timeline=timeline,
        steps=steps,
        decisions=decisions,
        measures=measures,
        outcomes=checked_outcomes,
        findings=findings,
        messages=messages,
        notes=notes,
    )


def _decision_event(d: Decision, answered: list[Event]) -> Event:
    """A decision on the timeline: who (as verified, with their part at the gate), what, why, how it came. A
    persona's answer (one of `answered`, the exercise's notes, taken from the list) goes on the persona's lane."""
    verb = {"approve": "approved", "reject": "rejected", "timeout": "timed out"}.get(d.decision, d.decision)
    status = ("approved" if d.decision == "approve" else "rejected") if d.accepted else "refused"
    # the persona's note says what it sent; "sent" is an answer whose verdict the runner did not wait for
    persona = next((e for e in answered if e.ref == d.gate and e.actor == d.approver and e.status in (status, "sent")), None)
    if persona is not None:
        answered.remove(persona)
    role = d.role or (persona.role if persona else "")
    who = f"{d.approver} ({role})" if role else d.approver
    if d.decision == "timeout":
        label = f"{d.gate} timed out"
    elif not d.accepted:
        label = f"{who}: {d.decision} at gate {d.gate} refused"
    else:
        label = f"{who} {verb} gate {d.gate}"
    why = d.reason if d.accepted else f"REFUSED: {d.refusal}"
    if d.decision == "timeout":
        how = ""
    elif d.verified:
        how = f"via {d.channel}; identity verified by the approval service's signature"
    else:
        how = f"via {d.channel}; " + ("unsigned: the name is only a claim" if d.accepted else "not accepted")
    source = "a scripted persona of the exercise; " if persona is not None else ""
    return Event(
        at=d.at or datetime.min.replace(tzinfo=UTC),
        kind="persona" if persona is not None else "decision",
        label=_text(label),
        detail=_text(f"{why} ({source}{how})" if how or source else why),
        ref=d.gate,
        status=status if persona is not None else ("accepted" if d.accepted else "refused"),
        actor="" if d.decision == "timeout" else d.approver,
        role=role,
    )


def _scenario_names(scenario: dict[str, Any] | None) -> tuple[str, str]:
    if not scenario:
        return "", ""
    meta = _dict(scenario.get("metadata"))
    name = meta.get("name") or scenario.get("name") or ""
    title = meta.get("title") or scenario.get("title") or ""
    return str(name), str(title)


def _decision(d: Any) -> Decision:
    return Decision(
        gate=d.gate,
        approver=d.approver,
        decision=d.decision,
        reason=_free(d.reason),
        channel=d.channel,
        at=_time(d.at),
        accepted=d.accepted,
        refusal=_free(d.refusal) if d.refusal is not None else None,
        verified=bool(d.accepted and d.signature),
    )


def approver_role(groups: dict[str, Any], approval: dict[str, Any], who: str) -> str:
    """A person's part at a gate: the approver group that asks them (`from`), else the group asked once the gate
    escalated (`escalate_to`), else that the gate does not ask them (an answer its policy refused)."""
    first, second = str(approval.get("from") or ""), str(approval.get("escalate_to") or "")

    def member(group: str) -> bool:
        names = groups.get(group) if group else None
        return isinstance(names, list) and who in names

    if member(first):
        return f"{first} approver"
    if member(second):
        return f"{second} approver (escalation)"
    return "not an approver of this gate"


def _roles(playbook_doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each gated step's approval (from, escalate_to) of the playbook as the run started it."""
    return {
        str(s["id"]): _dict(s.get("approval"))
        for s in playbook_doc.get("steps", [])
        if isinstance(s, dict) and s.get("id") and isinstance(s.get("approval"), dict)
    }


def _alert_summary(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert's facts worth a line: where from, what, which key and user, and when it says it happened."""
    if not alert:
        return {}
    raw = _dict(alert.get("raw"))
    keys = alert.get("access_key_ids") or ([alert["access_key_id"]] if alert.get("access_key_id") else [])
    summary = {
        "source": _free(alert.get("source") or "", 200),
        "kind": _free(alert.get("kind") or "", 200),
        "keys": _free(", ".join(str(k) for k in keys[:10]) if isinstance(keys, list) else keys, 300),
        "user": _free(alert.get("user_name") or "", 200),
        "claims time": _free(raw.get("time") or "", 64),
    }
    return {k: v for k, v in summary.items() if v}


def _is_review(outputs: Any) -> bool:
    # step outputs are dumped by field name (`schema_`); the review's own JSON uses the alias (`schema`)
    return isinstance(outputs, dict) and str(outputs.get("schema") or outputs.get("schema_") or "").startswith(
        "stanch.review/"
    )


def _findings(record: Any) -> Findings:
    out = record.outputs
    items: list[FindingLine] = []
    by_category: dict[str, int] = {}
    for category, found in (out.get("findings") or {}).items():
        if not isinstance(found, list):
            continue
        by_category[str(category)] = len(found)
        for f in found:
            if isinstance(f, dict):
                items.append(
                    FindingLine(
                        category=str(category),
                        event_name=_text(f.get("event_name"), 200),
                        event_time=_text(f.get("event_time"), 64),
                        access_key_id=_text(f.get("access_key_id"), 128) or None,
                        source_ip=_text(f.get("source_ip"), 128) or None,
                        region=_text(f.get("region"), 64) or None,
                        error_code=_text(f.get("error_code"), 200) or None,
                        resources=[_text(r, 500) for r in (f.get("resources") or [])[:20]],
                    )
                )
    items.sort(key=lambda f: f.event_time)
    contain = out.get("contain") if isinstance(out.get("contain"), dict) else {}
    to_contain = {
        str(c): sum(1 for e in entries if isinstance(e, dict) and not e.get("undone_by"))
        for c, entries in contain.items()
        if isinstance(entries, list)
    }
    ips = [f"{ip.get('ip')} ({ip.get('count')})" for ip in (out.get("source_ips") or [])[:20] if isinstance(ip, dict)]
    partial = bool(out.get("partial"))
    note = ""
    if partial:
        files, skipped = out.get("files_skipped_total", 0), out.get("records_skipped_total", 0)
        note = f"{files} file(s) and {skipped} record(s) could not be read"
    return Findings(
        step=record.id,
        events_total=out.get("events_total") if isinstance(out.get("events_total"), int) else None,
        first_event=_text(out.get("first_event"), 64) or None,
        last_event=_text(out.get("last_event"), 64) or None,
        source_ips=ips,
        by_category=by_category,
        to_contain={c: n for c, n in to_contain.items() if n},
        items=items[:MAX_FINDINGS],
        not_listed=max(0, len(items) - MAX_FINDINGS),
        partial=partial,
        partial_note=note,
    )


def _attacker_events(findings: list[Findings], notes: list[str]) -> list[Event]:
    """The review's findings on the timeline, at the times the logs give (often before the alert)."""
    events = []
    for review in findings:
        for f in review.items:
            at = _time(f.event_time)
            if at is None:
                continue
            who = f" with {f.access_key_id}" if f.access_key_id else ""
            where = f" from {f.source_ip}" if f.source_ip else ""
            failed = f" (failed: {f.error_code})" if f.error_code else ""
            events.append(
                Event(
                    at=at,
                    kind="attacker",
                    label=_text(f"{f.event_name}{who}{where}{failed}", 300),
                    detail=_text(f"{f.category}: {', '.join(f.resources)}"),
                    ref=review.step,
                    status="failed" if f.error_code else "done",
                )
            )
    if len(events) > MAX_ATTACKER_EVENTS:
        notes.append(f"{len(events) - MAX_ATTACKER_EVENTS} more attacker event(s) are in the findings, not the timeline")
        events = events[:MAX_ATTACKER_EVENTS]
    return events


def _did_work(s: StepLine) -> bool:
    """A step that completed doing work: not a gate's `core.*` placeholder, not a message, not an empty fan-out."""
    return (
        s.state == "completed"
        and s.ended is not None
        and not s.uses.startswith(("core.", "slack."))
        and s.items != 0
        and not s.detail.startswith("0 item(s)")
    )


def _done_in(steps: list[StepLine], phase: str) -> StepLine | None:
    """The first step of a phase that finished doing its work."""
    done = [s for s in steps if s.phase == phase and _did_work(s)]
    return min(done, key=lambda s: s.ended or datetime.max.replace(tzinfo=UTC)) if done else None


NOT_DONE = ("failed", "blocked", "rejected", "timed_out", "not_run")  # a step in one of these did not do its part
WATCH_USES = "aws.cloudtrail.watch_key_use"  # watching for use of the key after containment: a failure means NOT
KEY_USES = ("aws.iam.deactivate_access_key", "aws.iam.rotate_access_key")  # either leaves the run's key Inactive
_NOT_CONTAINED_RE = re.compile(r"not\s+contained\b", re.IGNORECASE)


def _said_not_contained(messages: list[Message]) -> list[str]:
    """The run's own verdict: each message that says NOT CONTAINED, from those words to the end of the sentence."""
    said = []
    for m in messages:
        found = _NOT_CONTAINED_RE.search(m.text)
        if found:
            sentence = m.text[found.start() :].split(". ")[0].rstrip(".")
            said.append(f"{m.step} says {_text(sentence, 400)}")
    return said


def _contain_measure(
    steps: list[StepLine], messages: list[Message], mode: str, running: bool, alert_at: datetime | None, since: str
) -> Measure:
    """Time to contain: from the alert to the end of the LAST containment step the run needed, and only when
    nothing says a credential made from the key may still work. "Not contained", with why, when a containment step
    (a gate of the contain phase included) failed, was blocked, rejected, timed out or never ran; when the watch for
    further use of the key failed or did not run; when a message of the run says NOT CONTAINED (the run's own
    verdict); in a dry-run (nothing was changed); and "not contained yet" while the run goes on."""
    base: dict[str, Any] = {"key": "time_to_contain", "label": "Time to contain", "since": since}
    contain = [s for s in steps if s.phase == "contain"]
    if not contain:
        return Measure(**base, note="the playbook has no containment step")
    why: list[str] = []
    if mode == "dry-run":
        why.append("a dry-run changes nothing")
    for s in contain + [s for s in steps if s.uses == WATCH_USES and s.phase != "contain"]:
        if s.state in NOT_DONE or (s.state == "pending" and not running):
            what = s.state.replace("_", " ") if s.state != "pending" else "never ran"
            detail = f": {_text(s.detail, 200)}" if s.uses == WATCH_USES and s.state == "failed" and s.detail else ""
            why.append(f"{s.id} {what}{detail}")
        elif s.state == "pending":
            why.append(f"{s.id} not finished yet")
    why += _said_not_contained(messages)
    if running and not why:  # its own verdict is not in yet
        why.append("the run is still going")
    done = [s for s in contain if _did_work(s)]
    if not done and not why:
        why.append("no containment step did its work")
    if why:
        verdict = "not contained yet" if running else "not contained"
        return Measure(**base, verdict=verdict, note=f"{verdict}: " + "; ".join(dict.fromkeys(why)))
    last = max(done, key=lambda s: s.ended or datetime.min.replace(tzinfo=UTC))
    if last.ended is None or alert_at is None:
        return Measure(**base, verdict="not contained", note="not contained: the containment steps have no times")
    return Measure(
        **base,
        seconds=(last.ended - alert_at).total_seconds(),
        at=last.ended,
        until=f"{last.name} ({last.id}) done",
        verdict="contained",
        note=f"the last of {len(done)} containment step(s) that did work; none failed, was blocked, rejected or timed "
        "out, and the run did not say NOT CONTAINED",
    )


def _key_measure(steps: list[StepLine], mode: str, alert_at: datetime | None, since: str) -> Measure:
    """Key deactivated: from the alert to the first single step that deactivated (or rotated) the run's key; a
    fan-out over other keys (the attacker's) does not count."""
    base: dict[str, Any] = {"key": "key_deactivated", "label": "Key deactivated", "since": since}
    keyed = [s for s in steps if s.uses in KEY_USES and s.items is None]
    done = [(s.ended, s) for s in keyed if s.state == "completed" and s.ended is not None]
    if mode == "dry-run":
        return Measure(**base, verdict="not deactivated", note="a dry-run deactivates nothing")
    if not done or alert_at is None:
        # why, in the step's own words: a blocked or never-run step only follows another's failure
        failed = [f"{s.id} {s.state.replace('_', ' ')}" for s in keyed if s.state in ("failed", "rejected", "timed_out")]
        note = "no step deactivated the key" + (f" ({', '.join(failed)})" if failed else "")
        return Measure(**base, verdict="not deactivated", note=note)
    at, first = min(done, key=lambda pair: pair[0])
    return Measure(**base, seconds=(at - alert_at).total_seconds(), at=at, until=f"{first.name} ({first.id}) done")


def _union_seconds(spans: list[tuple[datetime, datetime]]) -> float:
    total, end = 0.0, None
    for start, stop in sorted(spans):
        if end is None or start > end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total


def _measures(
    steps: list[StepLine],
    waits: list[GateWait],
    alert_at: datetime | None,
    ended: datetime | None,
    running: bool,
    alert_given: bool,
    messages: list[Message],
    mode: str,
) -> Measures:
    since = "the alert" if alert_given else "the run's start (the alert's arrival)"

    def span(key: str, label: str, phase: str, none_note: str) -> Measure:
        step = _done_in(steps, phase)
        if step is None or alert_at is None or step.ended is None:
            failed = [s.id for s in steps if s.phase == phase and s.state in ("failed", "rejected", "timed_out", "blocked")]
            note = none_note + (f" ({', '.join(failed)}: not done)" if failed else "")
            return Measure(key=key, label=label, since=since, note=note)
        return Measure(
            key=key,
            label=label,
            seconds=(step.ended - alert_at).total_seconds(),
            at=step.ended,
            since=since,
            until=f"{step.name} ({step.id}) done",
        )

    contain = _contain_measure(steps, messages, mode, running, alert_at, since)
    key = _key_measure(steps, mode, alert_at, since)
    rotate = span("time_to_rotate", "Time to rotate", "rotate", "no rotation step finished")
    spans = [(w.opened, w.closed) for w in waits if w.opened and w.closed]
    waiting = Measure(
        key="waiting_on_people",
        label="Waiting on people",
        seconds=_union_seconds(spans)
        if spans
        else (0.0 if not waits or all(w.status == "dry_run" for w in waits) else None),
        since="a gate opened",
        until="it closed",
        note=f"{len(spans)} gate(s); concurrent waits counted once"
        + ("; a gate is still open" if any(w.status == "open" for w in waits) else ""),
    )
    total = Measure(
        key="total",
        label="Total",
        seconds=(ended - alert_at).total_seconds() if ended and alert_at else None,
        at=ended,
        since=since,
        until="the run's last record" + (" so far (still running)" if running else ""),
    )
    return Measures(
        time_to_contain=contain,
        key_deactivated=key,
        time_to_rotate=rotate,
        waiting_on_people=waiting,
        total=total,
        gates=waits,
    )


# ---------------------------------------------------------------------------------------------------- formatting


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{sign}{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def fmt_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


def _offset(report: Report, moment: datetime | None) -> str:
    if moment is None or report.started is None:
        return ""
    return "T" + ("+" if moment >= report.started else "") + fmt_seconds((moment - report.started).total_seconds())


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)[:MAX_TEXT]
    return _text(value)


def verdict_line(report: Report) -> str:
    """One line for the top of a report: contained in how long, or NOT CONTAINED and why; the key's time beside it."""
    contain, key = report.measures.time_to_contain, report.measures.key_deactivated
    key_part = f"key deactivated in {fmt_seconds(key.seconds)}" if key.seconds is not None else (key.verdict or "")
    if contain.seconds is not None and contain.verdict == "contained":
        head = f"Contained in {fmt_seconds(contain.seconds)}"
    elif contain.verdict:
        head = contain.verdict.upper() + (f": {contain.note.partition(': ')[2]}" if ": " in contain.note else "")
    else:
        head = f"Containment not measured: {contain.note}" if contain.note else "Containment not measured"
    return _text(head + (f" ({key_part})" if key_part else ""), 600)


# ---------------------------------------------------------------------------------------------------- Markdown


def _md(text: Any) -> str:
    """Text safe in a Markdown table cell: no HTML, no links or emphasis, no cell breaks."""
    value = html.escape(_value(text) if not isinstance(text, str) else text, quote=True)
    for ch in "\\`*_[]()#|!~":
        value = value.replace(ch, "\\" + ch)
    return " ".join(value.split())


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def render_markdown(report: Report) -> str:
    m = report.measures
    lines = [
        f"# After-action report: {_md(report.title)}",
        "",
        f"{'Exercise' if report.kind == 'tabletop' else 'Incident'} `{_md(report.incident_id)}`, playbook "
        f"`{_md(report.playbook)}`, mode {_md(report.mode or '—')}, run {_md(report.flow_run_id)}: "
        f"**{_md(report.state or '—')}**. {_md(report.state_message)}",
        "",
        f"From {fmt_time(report.started)} to {fmt_time(report.ended)} UTC.",
        "",
        f"**{_md(verdict_line(report))}**",
        "",
        "## Measures",
        "",
        "| measure | time | from | to | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for measure in m.all():
        lines.append(_row(measure.label, _md(measure.shown()), _md(measure.since), _md(measure.until), _md(measure.note)))
    if m.gates:
        lines += ["", "## Waiting on people, per gate", "", "| gate | outcome | opened | closed | waited | decided by |"]
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for w in m.gates:
            lines.append(
                f"| {_md(w.gate)} | {_md(w.status)} | {_offset(report, w.opened)} | {_offset(report, w.closed)} | "
                f"{fmt_seconds(w.seconds)} | {_md(', '.join(w.decided_by))} |"
            )
    if report.decisions:
        lines += [
            "",
            "## Decisions",
            "",
            "| at | gate | who | decision | reason | channel |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for d in report.decisions:
            why = d.reason if d.accepted else f"refused: {d.refusal}"
            lines.append(
                _row(_offset(report, d.at), _md(d.gate), _md(d.approver), _md(d.decision), _md(why), _md(d.channel))
            )
    if report.outcomes:
        lines += [
            "",
            "## Expected outcomes",
            "",
            "| outcome | result | target | actual | evidence |",
            "| --- | --- | --- | --- | --- |",
        ]
        for o in report.outcomes:
            lines.append(_row(_md(o.name), "MET" if o.met else "**MISSED**", _md(o.target), _md(o.actual), _md(o.evidence)))
    for f in report.findings:
        lines += ["", f"## Review findings ({_md(f.step)})", ""]
        lines.append(
            f"{_md(f.events_total if f.events_total is not None else '?')} event(s) "
            f"from {_md(', '.join(f.source_ips) or 'no IPs')}; "
            + (", ".join(f"{_md(c)}: {n}" for c, n in f.by_category.items()) or "no findings")
            + ("; PARTIAL: " + _md(f.partial_note) if f.partial else "")
        )
        if f.items:
            lines += [
                "",
                "| time | category | event | key | from | result | resources |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for item in f.items[:100]:
                lines.append(
                    _row(
                        *(_md(v) for v in (item.event_time, item.category, item.event_name, item.access_key_id or "")),
                        *(_md(v) for v in (item.source_ip or "", item.error_code or "done", ", ".join(item.resources))),
                    )
                )
            if len(f.items) > 100:
                lines.append(f"\n{len(f.items) - 100 + f.not_listed} more in the HTML or JSON report.")
    lines += ["", "## Timeline", "", "| at | kind | what | detail |", "| --- | --- | --- | --- |"]
    for e in report.timeline[:300]:
        lines.append(f"| {_offset(report, e.at)} | {e.kind} | {_md(e.label)} | {_md(_text(e.detail, 300))} |")
    if len(report.timeline) > 300:
        lines.append(f"\n{len(report.timeline) - 300} more events in the HTML or JSON report.")
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {_md(n)}" for n in report.notes]
    return "\n".join(lines)


def publish_artifact(report: Report, flow_run_id: str) -> str:
    """The report as a Markdown artifact on the flow run (key `after-action-report`); the artifact's id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    try:
        run_id = UUID(str(flow_run_id))
    except ValueError:
        raise ReportError(f"not a flow run id: {flow_run_id!r}") from None
    description = f"{report.title}: {verdict_line(report)}"
    try:
        with get_client(sync_client=True) as client:
            artifact = client.create_artifact(
                ArtifactCreate(
                    key=ARTIFACT_KEY,
                    type="markdown",
                    data=render_markdown(report),
                    description=_text(description, 500),
                    flow_run_id=run_id,
                )
            )
    except Exception as exc:
        raise ReportError(f"could not publish the report on run {run_id}: {type(exc).__name__}: {_free(exc, 300)}") from None
    return str(artifact.id)


# ---------------------------------------------------------------------------------------------------- compare


def _change(a: float | None, b: float | None) -> tuple[str, str]:
    if a is None and b is None:
        return "", "n/a"
    if a is None:
        return "", "only in B"
    if b is None:
        return "", "only in A"
    diff = b - a
    if abs(diff) < 1 and (max(abs(a), abs(b)) < 20 or abs(diff) < 0.05 * max(abs(a), abs(b))):
        return fmt_seconds(diff), "same"
    return ("+" if diff > 0 else "") + fmt_seconds(diff), "slower" if diff > 0 else "faster"


def compare(a: Report, b: Report) -> list[CompareRow]:
    """What got faster or slower from A to B: each measure, each gate's wait (matched by gate id), each outcome."""
    rows: list[CompareRow] = []
    for ma, mb in zip(a.measures.all(), b.measures.all(), strict=True):
        change, verdict = _change(ma.seconds, mb.seconds)
        if verdict.startswith("only in") and (ma.verdict or mb.verdict):  # e.g. contained in A, not contained in B
            verdict = f"now {mb.shown()}" if mb.seconds is None else f"now {mb.verdict or 'measured'}"
        rows.append(CompareRow(section="measure", name=ma.label, a=ma.shown(), b=mb.shown(), change=change, verdict=verdict))
    gates_a = {w.gate: w for w in a.measures.gates}
    gates_b = {w.gate: w for w in b.measures.gates}
    for gate in list(gates_a) + [g for g in gates_b if g not in gates_a]:
        wa, wb = gates_a.get(gate), gates_b.get(gate)
        change, verdict = _change(wa.seconds if wa else None, wb.seconds if wb else None)
        if wa is None:
            verdict = "only in B"
        elif wb is None:
            verdict = "only in A"
        elif wa.status != wb.status:
            verdict += f" ({wa.status} → {wb.status})"

        def cell(w: GateWait | None) -> str:
            return f"{fmt_seconds(w.seconds)} ({w.status})" if w else "—"

        rows.append(CompareRow(section="gate", name=gate, a=cell(wa), b=cell(wb), change=change, verdict=verdict))
    outcomes_a = {o.name: o for o in a.outcomes}
    outcomes_b = {o.name: o for o in b.outcomes}
    for name in list(outcomes_a) + [n for n in outcomes_b if n not in outcomes_a]:
        oa, ob = outcomes_a.get(name), outcomes_b.get(name)
        if oa is None or ob is None:
            verdict = "only in B" if oa is None else "only in A"
        elif oa.met != ob.met:
            verdict = "now met" if ob.met else "now missed"
        else:
            verdict = "still met" if ob.met else "still missed"
        rows.append(
            CompareRow(
                section="outcome",
                name=name,
                a=("met" if oa.met else "missed") if oa else "—",
                b=("met" if ob.met else "missed") if ob else "—",
                change="",
                verdict=verdict,
            )
        )
    return rows


def compare_table(rows: list[CompareRow], a_name: str = "A", b_name: str = "B") -> str:
    """The comparison as a Markdown table."""
    lines = [f"| what | {_md(a_name)} | {_md(b_name)} | change | verdict |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        name = {"measure": r.name, "gate": f"gate {r.name}", "outcome": f"outcome: {r.name}"}[r.section]
        lines.append(f"| {_md(name)} | {_md(r.a)} | {_md(r.b)} | {_md(r.change)} | {_md(r.verdict)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- HTML

_CSS = """
:root { --ink:#1d2430; --dim:#5b6574; --line:#d5dae1; --ok:#1f8a4c; --bad:#c0392b; --warn:#d68910; --info:#2e6fba; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 24px 32px; max-width: 1200px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 2px solid var(--line);
     padding-bottom: 4px; } h3 { font-size: 15px; margin: 16px 0 6px; }
.meta { color: var(--dim); margin: 0 0 4px; } .badge { display: inline-block; padding: 1px 8px; border-radius: 10px;
     font-size: 12px; font-weight: 600; background: #e8eef7; color: var(--info); margin-right: 6px; }
.badge.tabletop { background: #efe6f8; color: #6c3fa0; } .state-Completed { color: var(--ok); }
.state-Failed, .state-Crashed { color: var(--bad); } .state-Cancelled { color: var(--warn); }
.cards { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: #f8fafc; }
.card .v { font-size: 24px; font-weight: 700; } .card .v.missed { color: var(--bad); font-size: 18px; }
.card .k { color: var(--dim); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .n { color: var(--dim); font-size: 12px; } .verdict { font-size: 16px; font-weight: 700; margin: 12px 0 0; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f4f8; font-weight: 600; }
td.t { white-space: nowrap; color: var(--dim); font-variant-numeric: tabular-nums; }
td.wrap { word-break: break-word; max-width: 520px; }
.met { color: var(--ok); font-weight: 700; } .missed { color: var(--bad); font-weight: 700; }
.refused { color: var(--bad); } .k-alert { color: var(--bad); } .k-attacker { color: #8e3b2e; }
.k-step { color: var(--info); }
.k-gate { color: var(--warn); } .k-persona { color: #0f6b5c; font-weight: 600; } .k-decision { color: #6c3fa0; }
.k-message { color: #1a7f86; } .k-inject { color: #b0387a; }
.chart { border: 1px solid var(--line); border-radius: 8px; padding: 8px; overflow: hidden; }
.chart svg { width: 100%; height: auto; display: block; }
.notes li { margin: 2px 0; } .empty { color: var(--dim); font-style: italic; }
footer { margin-top: 32px; color: var(--dim); font-size: 12px; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { padding: 0; max-width: none; font-size: 10.5pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; } tr, .card, .chart { break-inside: avoid; }
  .cards { grid-template-columns: repeat(5, 1fr); } a { color: inherit; text-decoration: none; }
}
"""

# Nothing may be fetched: not a font, not an image, not a script, whatever a value slipped in.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_LANE_COLOURS = {
    "alert": "#c0392b",
    "attacker": "#8e3b2e",
    "inject": "#b0387a",
    "step": "#2e6fba",
    "gate": "#d68910",
    "persona": "#0f6b5c",
    "decision": "#6c3fa0",
    "message": "#1a7f86",
}
_STATUS_COLOURS = {
    "completed": "#2e6fba",
    "failed": "#c0392b",
    "rejected": "#c0392b",
    "timed_out": "#d68910",
    "approved": "#1f8a4c",
    "open": "#9aa4b1",
    "dropped": "#9aa4b1",
    "refused": "#c0392b",
    "late": "#d68910",
    "sent": "#9aa4b1",
}
_LANE_NAMES = {
    "alert": "Alert",
    "attacker": "Attacker",
    "inject": "Injects",
    "step": "Steps",
    "gate": "Gates (waits)",
    "persona": "Personas",
    "decision": "Decisions",
    "message": "Messages",
}


def _e(value: Any) -> str:
    return html.escape(_value(value) if not isinstance(value, str) else value, quote=True)


def _tick_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span / step <= 10:
            return step
    return 86400 * max(1, round(span / 86400 / 10))


def _tick_label(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"T+{hours}h{minutes:02d}" if hours else f"T+{minutes}:{secs:02d}"


def render_svg(report: Report) -> str:
    """The timeline chart: one lane per kind of event, steps and gate waits as bars, the rest as marks."""
    width, gutter, right, earlier_w = 1120, 120, 16, 70
    events = list(report.timeline)
    if not events or report.started is None:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1120 40"><text x="10" y="24">No timed events.</text></svg>'
        )
    t0 = report.started
    t1 = max([t for e in events for t in (e.at, e.until) if t] + [t0 + timedelta(seconds=1)])
    span = max((t1 - t0).total_seconds(), 1.0)
    earliest = min(e.at for e in events)
    has_earlier = earliest < t0  # the attacker's events before the alert: squeezed into a band, in their order
    x0 = gutter + (earlier_w if has_earlier else 0)
    plot_w = width - right - x0

    def x(moment: datetime) -> float:
        if moment < t0:
            return gutter + 6 + (moment - earliest).total_seconds() / (t0 - earliest).total_seconds() * (earlier_w - 16)
        return x0 + (moment - t0).total_seconds() / span * plot_w

    char_w, row_h, pad = 6.2, 17, 6
    # steps that had nothing to do (an empty fan-out) stay in the tables, off the chart
    events = [e for e in events if not (e.kind == "step" and e.detail.startswith("0 item(s)"))]
    lanes = [k for k in KINDS if any(e.kind == k for e in events)]
    parts: list[str] = []
    y = 34.0
    lane_rows: list[tuple[str, float, float]] = []
    for kind in lanes:
        rows: list[float] = []  # the right end of what each row holds so far
        placed: list[str] = []
        lane_events = sorted((e for e in events if e.kind == kind), key=lambda e: e.at)
        for e in lane_events:
            start = x(e.at)
            end = max(x(e.until), start + 2) if e.until is not None and e.at >= t0 else start + 5
            if kind == "persona":  # who and what on the chart; their part is in the tooltip and the table
                label = _text(e.label.replace(f" ({e.role})", "", 1) if e.role else e.label, 48)
            else:
                label = _text(e.label, 34)
            label_w = len(label) * char_w
            room_right = end + 4 + label_w <= width - right
            occupied = end + 4 + label_w if room_right else end
            left = start - 5 if room_right else start - 8 - label_w
            row = next((i for i, r in enumerate(rows) if r + 4 < left), None)
            if row is None:
                if len(rows) < (12 if kind == "step" else 6):
                    rows.append(0.0)
                    row = len(rows) - 1
                else:  # a crowded lane: the mark shows, its label is in the table below
                    row, label = len(rows) - 1, ""
            rows[row] = max(rows[row], occupied if room_right else end)
            cy = y + pad + row * row_h + row_h / 2
            colour = (
                _STATUS_COLOURS.get(e.status, _LANE_COLOURS[kind])
                if kind in ("step", "gate", "persona", "decision")
                else _LANE_COLOURS[kind]
            )
            tip = (
                f"<title>{_e(fmt_time(e.at))} {_e(e.label)}"
                + (f" — {_e(_text(e.detail, 300))}" if e.detail else "")
                + "</title>"
            )
            if e.until is not None and e.at >= t0:
                parts.append(
                    f'<rect x="{start:.1f}" y="{cy - 6:.1f}" width="{max(end - start, 2):.1f}" height="12" rx="2" '
                    f'fill="{colour}" fill-opacity="{0.85 if kind == "gate" else 0.7}">{tip}</rect>'
                )
            elif kind in ("alert", "inject"):
                parts.append(
                    f'<path d="M{start:.1f} {cy - 7:.1f} L{start + 7:.1f} {cy:.1f} L{start:.1f} {cy + 7:.1f} '
                    f'L{start - 7:.1f} {cy:.1f} Z" fill="{colour}">{tip}</path>'
                )
            elif kind == "persona":  # what a person of the exercise did: a square, apart from the run's marks
                parts.append(
                    f'<rect x="{start - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" fill="{colour}" '
                    f'stroke="#1d2430" stroke-width="1">{tip}</rect>'
                )
            else:
                parts.append(f'<circle cx="{start:.1f}" cy="{cy:.1f}" r="4.5" fill="{colour}">{tip}</circle>')
            if label:
                if room_right:
                    placed.append(f'<text x="{end + 4:.1f}" y="{cy + 4:.1f}" class="l">{_e(label)}</text>')
                else:
                    placed.append(
                        f'<text x="{start - 8:.1f}" y="{cy + 4:.1f}" class="l" text-anchor="end">{_e(label)}</text>'
                    )
        parts += placed
        height = pad * 2 + max(1, len(rows)) * row_h
        lane_rows.append((kind, y, height))
        y += height
    bottom = y
    back: list[str] = []
    for index, (kind, top, lane_h) in enumerate(lane_rows):
        if index % 2 == 0:
            back.append(f'<rect x="0" y="{top:.1f}" width="{width}" height="{lane_h:.1f}" fill="#f4f6f9"/>')
        colour = _LANE_COLOURS[kind]
        name = _e(_LANE_NAMES[kind])
        back.append(f'<text x="8" y="{top + lane_h / 2 + 4:.1f}" class="lane" fill="{colour}">{name}</text>')
    step = _tick_step(span)
    ticks = []
    t = 0.0
    while t <= span + 1e-6:
        tx = x0 + t / span * plot_w
        ticks.append(f'<line x1="{tx:.1f}" y1="28" x2="{tx:.1f}" y2="{bottom:.1f}" stroke="#dde2e8"/>')
        ticks.append(f'<text x="{tx:.1f}" y="22" class="tick" text-anchor="middle">{_tick_label(t)}</text>')
        t += step
    if has_earlier:
        back.append(
            f'<rect x="{gutter}" y="28" width="{earlier_w - 6}" height="{bottom - 28:.1f}" fill="#ece8e4"/>'
            f'<text x="{gutter + 4}" y="22" class="tick">earlier</text>'
        )
    marks = []
    lines = (
        (report.measures.key_deactivated, "#d68910", "key inactive"),
        (report.measures.time_to_contain, "#1f8a4c", "contained"),
        (report.measures.time_to_rotate, "#2e6fba", "rotated"),
    )
    for row, (measure, colour, word) in enumerate(lines):
        if measure.seconds is not None and measure.at is not None:
            mx, my = x(measure.at), bottom + 14 + row * 14  # one line each: the two are often close
            marks.append(
                f'<line x1="{mx:.1f}" y1="28" x2="{mx:.1f}" y2="{my - 10:.1f}" stroke="{colour}" stroke-width="2" '
                f'stroke-dasharray="5 3"/><text x="{mx + 3:.1f}" y="{my:.1f}" class="mark" fill="{colour}">'
                f"{word} {_e(fmt_seconds(measure.seconds))}</text>"
            )
    total_h = bottom + 24 + 14 * len(lines)  # room for each mark's label, one row each
    style = (
        "<style>.l{font:11px sans-serif;fill:#1d2430}.lane{font:bold 12px sans-serif}"
        ".tick{font:11px sans-serif;fill:#5b6574}.mark{font:bold 11px sans-serif}</style>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total_h:.0f}" role="img" '
        f'aria-label="Timeline of the run">{style}'
        + "".join(back)
        + "".join(ticks)
        + f'<line x1="{x0}" y1="28" x2="{x0}" y2="{bottom:.1f}" stroke="#5b6574"/>'
        + "".join(parts)
        + "".join(marks)
        + "</svg>"
    )


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched."""
    m = report.measures
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(report.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<p><span class="badge {report.kind}">{_e(report.kind)}</span>'
        f'<span class="badge">{_e(report.mode or "mode ?")}</span></p>',
        f"<h1>{_e(report.title)}</h1>",
        f'<p class="meta">Playbook <b>{_e(report.playbook)}</b>'
        + (f" ({_e(report.playbook_title)})" if report.playbook_title else "")
        + (f" · scenario <b>{_e(report.scenario)}</b>" if report.scenario else "")
        + f" · incident <b>{_e(report.incident_id)}</b> · launched by {_e(report.launched_by or '—')}</p>",
        f'<p class="meta">Run {_e(report.flow_run_id)} ({_e(report.flow_run_name)}) ended '
        f'<b class="state-{_e(report.state)}">{_e(report.state or "—")}</b>: {_e(report.state_message)}</p>',
        f'<p class="meta">From {_e(fmt_time(report.started))} to {_e(fmt_time(report.ended))} UTC'
        + (
            f" · alert: {_e(', '.join(f'{k} {v}' for k, v in report.alert.items()))}"
            if report.alert
            else " · started by hand (no alert)"
        )
        + "</p>",
        f'<p class="verdict {"met" if m.time_to_contain.verdict == "contained" else "missed"}">'
        f"{_e(verdict_line(report))}</p>",
        '<div class="cards">',
    ]
    for measure in m.all():
        note = measure.note or (f"to {measure.until}" if measure.until else "")
        value = "missed" if measure.seconds is None and measure.verdict.startswith("not ") else ""
        out.append(
            f'<div class="card"><div class="k">{_e(measure.label)}</div>'
            f'<div class="v {value}">{_e(measure.shown())}</div>'
            f'<div class="n">{_e(note)}</div></div>'
        )
    out.append("</div>")
    out += ["<h2>Timeline chart</h2>", f'<div class="chart">{render_svg(report)}</div>']

    out.append("<h2>Expected outcomes</h2>")
    if report.outcomes:
        out.append("<table><tr><th>outcome</th><th>result</th><th>target</th><th>actual</th><th>evidence</th></tr>")
        for o in report.outcomes:
            result = '<span class="met">✔ MET</span>' if o.met else '<span class="missed">✘ MISSED</span>'
            out.append(
                f"<tr><td>{_e(o.name)}</td><td>{result}</td><td>{_e(_value(o.target))}</td>"
                f'<td>{_e(_value(o.actual))}</td><td class="wrap">{_e(o.evidence)}</td></tr>'
            )
        out.append("</table>")
    else:
        out.append('<p class="empty">No expected outcomes were given (a real incident run, or a scenario without them).</p>')

    out.append("<h2>Measures</h2><table><tr><th>measure</th><th>time</th><th>from</th><th>to</th><th>note</th></tr>")
    for measure in m.all():
        out.append(
            f"<tr><td>{_e(measure.label)}</td><td><b>{_e(measure.shown())}</b></td><td>{_e(measure.since)}</td>"
            f"<td>{_e(measure.until)}</td><td>{_e(measure.note)}</td></tr>"
        )
    out.append("</table>")
    out.append("<h3>Waiting on people, per gate</h3>")
    if m.gates:
        out.append(
            "<table><tr><th>gate</th><th>outcome</th><th>opened</th><th>escalated</th><th>closed</th><th>waited</th>"
            "<th>decided by</th></tr>"
        )
        for w in m.gates:
            out.append(
                f"<tr><td>{_e(w.gate)}<br><small>{_e(w.step)}</small></td><td>{_e(w.status.replace('_', ' '))}</td>"
                f'<td class="t">{_e(_offset(report, w.opened))}</td><td class="t">{_e(_offset(report, w.escalated))}</td>'
                f'<td class="t">{_e(_offset(report, w.closed))}</td><td><b>{_e(fmt_seconds(w.seconds))}</b></td>'
                f"<td>{_e(', '.join(w.decided_by))}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append('<p class="empty">No gate opened.</p>')

    out.append("<h2>Decisions</h2>")
    if report.decisions:
        out.append("<table><tr><th>at</th><th>gate</th><th>who</th><th>decision</th><th>reason</th><th>channel</th></tr>")
        for d in report.decisions:
            why = _e(d.reason) if d.accepted else f'<span class="refused">refused: {_e(d.refusal)}</span>'
            who = _e(d.approver) + (f"<br><small>{_e(d.role)}</small>" if d.role else "")
            how = _e(d.channel) + (" (verified)" if d.verified else "")
            out.append(
                f'<tr><td class="t">{_e(_offset(report, d.at))}</td><td>{_e(d.gate)}</td><td>{who}</td>'
                f'<td>{_e(d.decision)}</td><td class="wrap">{why}</td><td>{how}</td></tr>'
            )
        out.append("</table>")
    else:
        out.append('<p class="empty">Nobody decided at a gate.</p>')

    out.append("<h2>The review's findings</h2>")
    if not report.findings:
        out.append('<p class="empty">The run made no log review.</p>')
    for f in report.findings:
        cats = ", ".join(f"{c}: {n}" for c, n in f.by_category.items()) or "no findings"
        standing = ", ".join(f"{c}: {n}" for c, n in f.to_contain.items()) or "nothing"
        out.append(
            f"<h3>{_e(f.step)}</h3><p>{_e(f.events_total if f.events_total is not None else '?')} event(s) "
            f"from {_e(', '.join(f.source_ips) or 'no IPs')}; {_e(cats)}. To contain: {_e(standing)}."
            + (f' <b class="missed">Partial review: {_e(f.partial_note)}</b>' if f.partial else "")
            + "</p>"
        )
        if f.items:
            out.append(
                "<table><tr><th>time</th><th>category</th><th>event</th><th>key</th><th>from</th><th>result</th><th>resources</th></tr>"
            )
            for item in f.items:
                result = f'<span class="refused">failed: {_e(item.error_code)}</span>' if item.error_code else "done"
                out.append(
                    f'<tr><td class="t">{_e(item.event_time)}</td><td>{_e(item.category)}</td><td>{_e(item.event_name)}</td>'
                    f"<td>{_e(item.access_key_id or '')}</td><td>{_e(item.source_ip or '')}</td><td>{result}</td>"
                    f'<td class="wrap">{_e(", ".join(item.resources))}</td></tr>'
                )
            out.append("</table>")
            if f.not_listed:
                out.append(f'<p class="empty">{f.not_listed} more finding(s) not listed.</p>')

    out.append("<h2>Timeline</h2>")
    out.append("<table><tr><th>at (UTC)</th><th></th><th>kind</th><th>who</th><th>what</th><th>detail</th></tr>")
    for e in report.timeline:
        until = f" → {_offset(report, e.until)}" if e.until else ""
        who = _e(e.actor) + (f"<br><small>{_e(e.role)}</small>" if e.role else "")
        out.append(
            f'<tr><td class="t">{_e(fmt_time(e.at))}</td><td class="t">{_e(_offset(report, e.at) + until)}</td>'
            f'<td class="k-{e.kind}">{_e(e.kind)}</td><td>{who}</td><td class="wrap">{_e(e.label)}</td>'
            f'<td class="wrap">{_e(e.detail)}</td></tr>'
        )
    out.append("</table>")

    out.append(
        "<h2>Steps</h2><table><tr><th>step</th><th>phase</th><th>state</th><th>started</th><th>took</th><th>changed</th><th>detail</th></tr>"
    )
    for s in report.steps:
        took = (s.ended - s.started).total_seconds() if s.started and s.ended else None
        out.append(
            f"<tr><td>{_e(s.id)}<br><small>{_e(s.name)}</small></td><td>{_e(s.phase)}</td><td>{_e(s.state)}</td>"
            f'<td class="t">{_e(_offset(report, s.started))}</td>'
            f'<td class="t">{_e(fmt_seconds(took) if took is not None else "")}</td>'
            f'<td>{"yes" if s.changed else ""}</td><td class="wrap">{_e(s.detail)}</td></tr>'
        )
    out.append("</table>")

    if report.messages:
        out.append("<h2>Messages the run posted</h2><table><tr><th>at</th><th>step</th><th>channel</th><th>text</th></tr>")
        for msg in report.messages:
            where = msg.channel + ("" if msg.posted else " (not posted: dry-run)")
            out.append(
                f'<tr><td class="t">{_e(_offset(report, msg.at))}</td><td>{_e(msg.step)}</td><td>{_e(where)}</td>'
                f'<td class="wrap">{_e(msg.text)}</td></tr>'
            )
        out.append("</table>")
    if report.notes:
        out.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in report.notes) + "</ul>")
    out.append(
        f"<footer>Stanch after-action report ({SCHEMA}). Times are UTC; T+ counts from the alert. "
        "Measures are defined in docs/report.md.</footer></body></html>"
    )
    return "\n".join(out)
