"""Human-approval gates that wait for their own step only.

A gate opens as soon as its step's needs are done and waits beside everything else: other steps keep running and
several gates can be open at once. Answers arrive as flow-run inputs (`stanch-answer-<gate>-<nonce>`, written by
`flows.approvals.client.answer_gate`), which the driver reads about once a second and offers to the open gate
they name. The gate checks each answer itself: a signature from the approval service, the approver in the group,
distinct approvers up to `min_approvals`, separation of duties. A refused answer is recorded with its reason and
the gate keeps waiting. Deadlines and escalation are kept by the run's own clock (`flows.engine.clock`: wall
time, so they survive a resume in another process; a tabletop exercise's virtual time); a timeout is decided by
the run, never sent by anyone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.engine import clock
from flows.engine.records import DecisionRecord
from flows.language.model import Approval, Step, duration_seconds
from integrations.context import RunInfo

POLL_SECONDS = 1.0
ANSWER_PREFIX = "stanch-answer-"
VERDICT_PREFIX = "stanch-verdict-"
OPEN_GATES_KEY = "stanch-open-gates"


class GateAnswer(BaseModel):
    """What an approver sends to a run (through the approval service, which signs it)."""

    model_config = ConfigDict(extra="ignore")

    # Bounded: anyone with access to the Prefect API can write an answer, and its text reaches logs and Slack.
    gate: str = Field(max_length=64)
    decision: Literal["approve", "reject"]
    approver: str = Field(max_length=128)
    reason: str = Field("", max_length=2000)
    channel: str = Field("cli", max_length=32)
    signature: str | None = Field(None, max_length=256)


def answer_key(gate: str, nonce: str) -> str:
    return f"{ANSWER_PREFIX}{gate}-{nonce}"


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
class Verification:
    """How a gate checks who answered: the approval service's public keys (by key id), the nonces already used.

    A runner holds only public keys: it can check a decision, never make one it would accept."""

    keys: dict[str, Any]
    allow_unsigned: bool = False
    seen: set[str] = field(default_factory=set)


@dataclass
class Gate:
    """One open gate: its window (who may answer, until when), the approvals so far, and its outcome once closed."""

    step: Step
    groups: dict[str, list[str]]
    run: RunInfo
    message: str
    details: dict[str, Any]
    opened_at: datetime
    deadline_at: datetime
    escalated: bool = False
    approvals: dict[str, DecisionRecord] = field(default_factory=dict)
    decisions: list[DecisionRecord] = field(default_factory=list)
    outcome: GateOutcome | None = None

    @classmethod
    def open(cls, step: Step, groups: dict[str, list[str]], run: RunInfo, message: str, details: dict[str, Any]) -> Gate:
        now = clock.now()
        return cls(step, groups, run, message, details, now, now + timedelta(seconds=duration_seconds(cls._a(step).timeout)))

    @staticmethod
    def _a(step: Step) -> Approval:
        if step.approval is None:
            raise ValueError(f"step {step.id} has no gate")
        return step.approval

    @property
    def approval(self) -> Approval:
        return self._a(self.step)

    @property
    def id(self) -> str:
        return self.step.id

    @property
    def group_names(self) -> tuple[str, ...]:
        a = self.approval
        return (a.from_, a.escalate_to) if self.escalated and a.escalate_to else (a.from_,)

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(member for name in self.group_names for member in self.groups.get(name, []))

    def describe(self) -> dict[str, Any]:
        """What the UI listing and `answer_gate` show of an open gate."""
        return {
            "launcher": self.run.launched_by + ("" if self.run.launcher_verified else " (unverified)"),
            "gate": self.id,
            "group": " or ".join(self.group_names),
            "members": sorted(self.allowed),
            "min_approvals": self.approval.min_approvals,
            "approvals": sorted(self.approvals),
            "deadline": self.deadline_at.isoformat(),
            "escalated": self.escalated,
        }

    # ---------------------------------------------------------------- time

    def tick(self, log: logging.Logger | Any, now: datetime | None = None) -> str | None:
        """Apply the deadline: 'escalated' when the window moved to the escalation group, 'closed' when the gate
        timed out (its outcome set), else None."""
        now = now or clock.now()
        if self.outcome is not None or now < self.deadline_at:
            return None
        a = self.approval
        if a.on_timeout == "escalate" and not self.escalated:
            self.escalated = True
            self.deadline_at = now + timedelta(seconds=duration_seconds(a.escalation_timeout or a.timeout))
            log.warning(
                "Gate before %r timed out; escalating to %s (%s) until %s UTC",
                self.id,
                a.escalate_to,
                ", ".join(sorted(self.groups.get(str(a.escalate_to), []))),
                self.deadline_at.strftime("%H:%M:%S"),
            )
            return "escalated"
        policy = "reject" if self.escalated or a.on_timeout != "continue" else "continue"
        text = (
            f"no decision by {self.deadline_at:%H:%M:%S} UTC"
            + (" after escalation" if self.escalated else "")
            + (f" ({len(self.approvals)} of {a.min_approvals} approvals)" if self.approvals else "")
            + ("; step skipped, run continues (on_timeout: continue)" if policy == "continue" else "; rejected")
        )
        log.warning("Gate before %r: %s", self.id, text)
        self.decisions.append(
            DecisionRecord(
                gate=self.id,
                approver="stanch",
                decision="timeout",
                reason="the gate's deadline passed",
                channel="deadline",
                at=now,
                accepted=True,
            )
        )
        self.outcome = GateOutcome("timed_out", policy, text, self.decisions, sorted(self.approvals))
        return "closed"

    # ---------------------------------------------------------------- answers

    def offer(
        self, answer: GateAnswer, verification: Verification, log: logging.Logger | Any, replayed: bool = False
    ) -> tuple[DecisionRecord, dict[str, Any]]:
        """Judge one answer; the record (kept, accepted or not) and the verdict told to its sender.

        `replayed` re-checks a decision recorded before a resume: its signature must still verify, without the
        five-minute expiry (it was fresh when it arrived)."""
        approver = answer.approver.strip()
        refusal = _signature_refusal(answer, approver, self.run, verification, replayed) or self._policy_refusal(
            answer, approver
        )
        record = DecisionRecord(
            gate=self.id,
            approver=approver,
            decision=answer.decision,
            reason=answer.reason,
            channel=answer.channel,
            at=clock.now(),
            accepted=refusal is None,
            refusal=refusal,
            signature=answer.signature,
        )
        self.decisions.append(record)
        a = self.approval
        if refusal is not None:
            log.warning("Gate before %r refused an answer from %r: %s", self.id, approver, refusal)
        elif answer.decision == "reject":
            text = f"rejected by {approver}" + (f": {answer.reason}" if answer.reason else "")
            log.warning("Gate before %r %s", self.id, text)
            self.outcome = GateOutcome("rejected", "", text, self.decisions, sorted(self.approvals))
        else:
            self.approvals[approver] = record
            if len(self.approvals) >= a.min_approvals:
                names = ", ".join(sorted(self.approvals))
                log.info("Gate before %r approved by %s", self.id, names)
                self.outcome = GateOutcome("approved", "", f"approved by {names}", self.decisions, sorted(self.approvals))
            else:
                log.info("Gate before %r: %d of %d approvals", self.id, len(self.approvals), a.min_approvals)
        verdict = {
            "accepted": refusal is None,
            "refusal": refusal,
            "decision": answer.decision,
            "approvals": len(self.approvals),
            "needed": a.min_approvals,
        }
        return record, verdict

    def _policy_refusal(self, answer: GateAnswer, approver: str) -> str | None:
        """Why the gate's policy refuses the answer, or None when it takes it."""
        a = self.approval
        if answer.gate != self.id:
            return f"the answer is for gate {answer.gate!r}, but this gate is {self.id!r}"
        if self.outcome is not None:
            return f"the gate is already closed ({self.outcome.status})"
        if approver not in self.allowed:
            who = " or ".join(self.group_names)
            return f"{approver!r} is not in approver group {who} ({', '.join(sorted(self.allowed))})"
        if a.separate_duties and approver == self.run.launched_by:
            how = "launched this run" if self.run.launcher_verified else "is named as this run's launcher (unverified)"
            return f"{approver!r} {how} and may not approve it (separate_duties)"
        if a.separate_duties == "strict" and not self.run.launcher_verified and answer.decision == "approve":
            return (
                f"the run's launcher is unverified ({self.run.launched_by!r} is only a claim), and separate_duties: "
                "strict takes no approval then; launch with an approver token (STANCH_APPROVER_TOKEN) to verify it"
            )
        if answer.decision == "approve" and approver in self.approvals:
            return f"{approver!r} has already approved; {a.min_approvals} distinct people are needed"
        return None


def _signature_refusal(
    answer: GateAnswer, approver: str, run: RunInfo, verification: Verification, replayed: bool
) -> str | None:
    """Why the answer is not known to come from the approval service, or None when it is."""
    from flows.approvals.signing import check_decision

    if not verification.keys:
        return None if verification.allow_unsigned else "no approval public key is configured, so no answer can be verified"
    if not answer.signature and verification.allow_unsigned:
        return None
    return check_decision(
        verification.keys,
        run.id,
        answer.gate,
        answer.decision,
        approver,
        answer.reason,
        answer.channel,
        answer.signature,
        verification.seen,
        check_age=not replayed,
    )
