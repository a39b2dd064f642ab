"""`stanch audit`: re-verify every gate decision a run recorded, long after the fact.

The decisions are read from the run's records on the Prefect server (each with the approval service's signature)
and checked against the service's public keys, retired ones included: a record altered in the database, or one
the service never signed, does not verify. Timeouts are the run's own decisions and carry no signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flows.engine.records import DecisionRecord


@dataclass
class Row:
    gate: str
    at: str
    approver: str
    decision: str
    channel: str
    reason: str
    accepted: str
    check: str
    verifies: bool


@dataclass
class AuditReport:
    run_id: str
    playbook: str
    incident_id: str
    launched_by: str
    launcher_verified: bool
    rows: list[Row] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(1 for r in self.rows if not r.verifies)


def check_record(keys: dict[str, Any], run_id: str, record: DecisionRecord) -> tuple[bool, str]:
    """(verifies, what was found) for one recorded decision."""
    from flows.approvals.signing import check_decision, signed_by

    if record.decision == "timeout":
        return True, "decided by the run's own clock (no signature needed)"
    if not record.accepted:
        return True, f"refused at the time: {record.refusal}"
    refusal = check_decision(
        keys,
        run_id,
        record.gate,
        record.decision,
        record.approver,
        record.reason,
        record.channel,
        record.signature,
        set(),
        check_age=False,
    )
    if refusal is None:
        return True, f"verifies (key {signed_by(record.signature)})"
    return False, f"DOES NOT VERIFY: {refusal}"


def audit_run(ref: str) -> AuditReport:
    from flows.config import approval_public_keys, load_settings
    from flows.engine.journal import Journal
    from flows.engine.launch import find_run

    flow_run = find_run(ref)
    params = flow_run.parameters or {}
    tags = set(flow_run.tags or [])
    incident = next((t.removeprefix("incident:") for t in tags if t.startswith("incident:")), str(params.get("incident_id")))
    playbook = next((t.removeprefix("playbook:") for t in tags if t.startswith("playbook:")), "")
    report = AuditReport(
        run_id=str(flow_run.id),
        playbook=playbook,
        incident_id=incident,
        launched_by=str(params.get("launched_by", "unknown")),
        launcher_verified="launcher:verified" in tags,
    )
    keys = approval_public_keys(load_settings(), audit=True)
    saved = Journal(flow_run.id, _quiet()).load()
    records: list[DecisionRecord] = []
    for events in saved.gates.values():
        closed = events.get("closed")
        if closed is not None:
            records += [DecisionRecord.model_validate(d) for d in closed.get("decisions", [])]
    for record in sorted(records, key=lambda r: r.at):
        verifies, check = check_record(keys, report.run_id, record)
        report.rows.append(
            Row(
                gate=record.gate,
                at=record.at.strftime("%Y-%m-%d %H:%M:%S"),
                approver=record.approver,
                decision=record.decision,
                channel=record.channel,
                reason=record.reason,
                accepted="yes" if record.accepted else "no",
                check=check,
                verifies=verifies,
            )
        )
    return report


def _quiet() -> Any:
    import logging

    return logging.getLogger("stanch.audit")
