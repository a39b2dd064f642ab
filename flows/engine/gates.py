"""Human-approval gates on Prefect's pause with typed input.

A gate pauses the flow run with `wait_for_input=GateAnswer` (polling once a second) and checks each
answer itself: approver in the group, distinct approvers up to `min_approvals`, separation of duties.
A refused answer is recorded and the gate pauses again. The deadline is kept by a timer of ours that
resumes the run with a `timeout` answer, because a Prefect pause that times out fails the run whatever
the flow does; Prefect's own pause timeout is set later, as a backstop only.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from prefect.input import RunInput

from flows.engine.observe import emit
from flows.engine.records import DecisionRecord
from flows.language.model import Approval, Step, duration_seconds
from integrations.context import RunInfo

POLL_SECONDS = 1
BACKSTOP_SECONDS = 300
TIMER_CHANNEL = "timer"
VERDICT_PREFIX = "stanch-verdict-"


class GateAnswer(RunInput):
    """What an approver sends to a paused run."""

    gate: str
    decision: Literal["approve", "reject", "timeout"]
    approver: str
    reason: str = ""
    channel: str = "cli"
    signature: str | None = None


def pause_key(step_id: str, n: int) -> str:
    return f"{step_id}-{n}"


def gate_of(key: str | None) -> str | None:
    """The step id of a pause key made by `pause_key`."""
    if not key or "-" not in key:
        return None
    head, _, tail = key.rpartition("-")
    return head if tail.isdigit() else None


def verdict_key(key: str) -> str:
    return f"{VERDICT_PREFIX}{key}"


@dataclass
class GateOutcome:
    status: Literal["approved", "rejected", "timed_out"]
    policy: str = ""  # for timed_out: the policy that decided (reject or continue)
    message: str = ""
    decisions: list[DecisionRecord] = field(default_factory=list)
    approvers: list[str] = field(default_factory=list)


@dataclass
class _Window:
    groups: tuple[str, ...]
    allowed: frozenset[str]
    deadline: float  # time.monotonic()
    deadline_at: datetime
    escalated: bool = False


@dataclass
class Verification:
    """How a gate checks who answered: the key the approval service signs with, the nonces already used."""

    key: bytes | None
    allow_unsigned: bool = False
    seen: set[str] = field(default_factory=set)


def _resume_at_deadline(
    flow_run_id: UUID, key: str, gate: str, log: logging.Logger | Any, signer: bytes | None = None
) -> None:
    """Answer the gate with a timeout if it is still paused at `key` (runs on a timer thread)."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
        if not (state and state.is_paused() and state.state_details.pause_key == key):
            return
        from flows.approvals.signing import sign_decision

        resume_flow_run(
            flow_run_id,
            run_input={
                "gate": gate,
                "decision": "timeout",
                "approver": "stanch",
                "reason": "the gate's deadline passed",
                "channel": TIMER_CHANNEL,
                "signature": sign_decision(signer, str(flow_run_id), gate, "timeout", "stanch") if signer else None,
            },
        )
    except Exception as exc:  # the run may have been answered in the same instant
        log.debug("deadline timer for gate %s: %s", gate, exc)


def _publish_verdict(flow_run_id: UUID, key: str, verdict: dict[str, Any], log: logging.Logger | Any) -> None:
    """Tell the sender (stanch approve, the approval service) what became of its answer."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.create_flow_run_input(flow_run_id, key=verdict_key(key), value=json.dumps(verdict))
    except Exception as exc:
        log.warning("could not publish the verdict for %s: %s", key, exc)


def run_gate(
    step: Step,
    groups: dict[str, list[str]],
    run: RunInfo,
    flow_run_id: UUID,
    message: str,
    log: logging.Logger | Any,
    verification: Verification,
    pause: Callable[..., GateAnswer] | None = None,
    notify: Callable[[str, dict[str, Any]], None] | None = None,
    details: dict[str, Any] | None = None,
) -> GateOutcome:
    """Hold the run at the gate before `step` until it is approved, rejected or times out."""
    from prefect.flow_runs import pause_flow_run

    pause = pause or pause_flow_run
    approval: Approval = step.approval  # type: ignore[assignment]
    first = _window((approval.from_,), groups, duration_seconds(approval.timeout))
    window = first
    approvals: dict[str, DecisionRecord] = {}
    decisions: list[DecisionRecord] = []
    n = 0

    def tell(kind: str, **data: Any) -> None:
        emit(kind, **data)
        if notify is not None:
            try:
                notify(kind, data)
            except Exception as exc:  # telling people must not stop the gate
                log.warning("gate notification failed: %s", exc)

    tell(
        "gate_opened",
        gate=step.id,
        step=step.display_name,
        group=approval.from_,
        members=sorted(window.allowed),
        min_approvals=approval.min_approvals,
        deadline=window.deadline_at,
        message=message,
        **(details or {}),
    )
    log.warning(
        "Gate before %r is waiting for %d approval(s) from %s (%s) until %s UTC. Answer with: "
        "stanch approve %s --gate %s --as NAME --approve|--reject --reason TEXT",
        step.id,
        approval.min_approvals,
        approval.from_,
        ", ".join(sorted(window.allowed)),
        window.deadline_at.strftime("%H:%M:%S"),
        flow_run_id,
        step.id,
    )
    while True:
        remaining = window.deadline - time.monotonic()
        if remaining <= 0:
            if approval.on_timeout == "escalate" and not window.escalated:
                second = duration_seconds(approval.escalation_timeout or approval.timeout)
                escalate_to: str = approval.escalate_to  # type: ignore[assignment]
                window = _window((approval.from_, escalate_to), groups, second, escalated=True)
                log.warning(
                    "Gate before %r timed out; escalating to %s (%s) until %s UTC",
                    step.id,
                    escalate_to,
                    ", ".join(sorted(groups.get(escalate_to, []))),
                    window.deadline_at.strftime("%H:%M:%S"),
                )
                tell(
                    "gate_escalated",
                    gate=step.id,
                    group=escalate_to,
                    members=sorted(groups.get(escalate_to, [])),
                    deadline=window.deadline_at,
                )
                continue
            policy = "reject" if window.escalated or approval.on_timeout != "continue" else "continue"
            text = (
                f"no decision by {window.deadline_at:%H:%M:%S} UTC"
                + (" after escalation" if window.escalated else "")
                + (f" ({len(approvals)} of {approval.min_approvals} approvals)" if approvals else "")
                + ("; step skipped, run continues (on_timeout: continue)" if policy == "continue" else "; rejected")
            )
            log.warning("Gate before %r: %s", step.id, text)
            return GateOutcome("timed_out", policy, text, decisions, sorted(approvals))
        n += 1
        key = pause_key(step.id, n)
        # The timer thread carries this context so it talks to the same Prefect API as the run.
        context = contextvars.copy_context()
        timer = threading.Timer(
            remaining, context.run, (_resume_at_deadline, flow_run_id, key, step.id, log, verification.key)
        )
        timer.daemon = True
        timer.start()
        try:
            answer = pause(
                wait_for_input=GateAnswer,
                timeout=int(remaining) + BACKSTOP_SECONDS,
                poll_interval=POLL_SECONDS,
                key=key,
            )
        finally:
            timer.cancel()
        record, verdict = _judge(answer, step, approval, window, run, approvals, verification)
        decisions.append(record)
        if record.decision == "timeout" and record.accepted:
            window.deadline = min(window.deadline, time.monotonic())
            continue  # the loop top applies the policy
        _publish_verdict(flow_run_id, key, verdict, log)
        tell("gate_answer", gate=step.id, record=record, verdict=verdict)
        if not record.accepted:
            log.warning("Gate before %r refused an answer from %r: %s", step.id, record.approver, record.refusal)
            continue
        if record.decision == "reject":
            text = f"rejected by {record.approver}" + (f": {record.reason}" if record.reason else "")
            log.warning("Gate before %r %s", step.id, text)
            return GateOutcome("rejected", "", text, decisions, sorted(approvals))
        approvals[record.approver] = record
        if len(approvals) >= approval.min_approvals:
            names = ", ".join(sorted(approvals))
            log.info("Gate before %r approved by %s", step.id, names)
            return GateOutcome("approved", "", f"approved by {names}", decisions, sorted(approvals))
        log.info(
            "Gate before %r: %d of %d approvals (%s)",
            step.id,
            len(approvals),
            approval.min_approvals,
            ", ".join(sorted(approvals)),
        )


def _window(group_names: tuple[str, ...], groups: dict[str, list[str]], seconds: int, escalated: bool = False) -> _Window:
    allowed = frozenset(member for name in group_names for member in groups.get(name, []))
    return _Window(
        groups=group_names,
        allowed=allowed,
        deadline=time.monotonic() + seconds,
        deadline_at=datetime.now(UTC) + timedelta(seconds=seconds),
        escalated=escalated,
    )


def _signature_refusal(answer: GateAnswer, approver: str, run: RunInfo, verification: Verification) -> str | None:
    """Why the answer is not known to come from the approval service, or None when it is."""
    from flows.approvals.signing import check_decision

    if verification.key is None:
        return None if verification.allow_unsigned else "no approval signing key is configured, so no answer can be verified"
    if not answer.signature and verification.allow_unsigned:
        return None
    return check_decision(
        verification.key, run.id, answer.gate, answer.decision, approver, answer.signature, verification.seen
    )


def _policy_refusal(
    answer: GateAnswer,
    approver: str,
    step: Step,
    approval: Approval,
    window: _Window,
    run: RunInfo,
    approvals: dict[str, DecisionRecord],
) -> str | None:
    """Why the gate's policy refuses the answer, or None when it takes it."""
    if answer.gate != step.id:
        return f"the answer is for gate {answer.gate!r}, but the open gate is {step.id!r}"
    if answer.decision == "timeout":
        if answer.channel != TIMER_CHANNEL or time.monotonic() < window.deadline - 2:
            return "a timeout is decided by Stanch's deadline timer, not sent by a person"
        return None
    if approver not in window.allowed:
        who = " or ".join(window.groups)
        return f"{approver!r} is not in approver group {who} ({', '.join(sorted(window.allowed))})"
    if approval.separate_duties and approver == run.launched_by:
        return f"{approver!r} launched this run and may not approve it (separate_duties)"
    if answer.decision == "approve" and approver in approvals:
        return f"{approver!r} has already approved; {approval.min_approvals} distinct people are needed"
    return None


def _judge(
    answer: GateAnswer,
    step: Step,
    approval: Approval,
    window: _Window,
    run: RunInfo,
    approvals: dict[str, DecisionRecord],
    verification: Verification,
) -> tuple[DecisionRecord, dict[str, Any]]:
    """Check one answer against the gate's policy: the record, and the verdict told to the sender."""
    approver = answer.approver.strip()
    refusal = _signature_refusal(answer, approver, run, verification) or _policy_refusal(
        answer, approver, step, approval, window, run, approvals
    )
    record = DecisionRecord(
        gate=step.id,
        approver=approver,
        decision=answer.decision,
        reason=answer.reason,
        channel=answer.channel,
        at=datetime.now(UTC),
        accepted=refusal is None,
        refusal=refusal,
        signature=answer.signature,
    )
    count = len(approvals) + (1 if refusal is None and answer.decision == "approve" else 0)
    verdict = {
        "accepted": refusal is None,
        "refusal": refusal,
        "decision": answer.decision,
        "approvals": count,
        "needed": approval.min_approvals,
    }
    return record, verdict
