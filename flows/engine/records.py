"""What a run records: step outcomes, gate decisions, the summary. Plain data, never a secret value."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

StepState = Literal["pending", "completed", "failed", "skipped", "blocked", "rejected", "timed_out", "not_run"]


class DecisionRecord(BaseModel):
    """One answer at a gate, accepted or refused. `signature` is filled by a verified channel."""

    gate: str
    approver: str
    decision: Literal["approve", "reject", "timeout"]
    reason: str = ""
    channel: str = "cli"
    at: datetime
    accepted: bool
    refusal: str | None = None
    signature: str | None = None


class StepRecord(BaseModel):
    id: str
    name: str
    phase: str
    uses: str
    state: StepState = "pending"
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    changed: bool = False
    detail: str = ""
    outputs: Any = None
    items: int | None = None
    failed_items: list[int] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class RunSummary(BaseModel):
    run_id: str
    flow_run_name: str = ""
    playbook: str
    incident_id: str
    mode: str
    state: Literal["Completed", "Failed", "Cancelled"]
    message: str
    steps: list[StepRecord]
    ui_url: str | None = None

    def decisions(self) -> list[DecisionRecord]:
        return [d for s in self.steps for d in s.decisions]

    def markdown(self) -> str:
        lines = [
            f"# {self.playbook}: {self.state}",
            "",
            f"Incident `{self.incident_id}`, mode `{self.mode}`. {self.message}",
            "",
            "| step | phase | state | duration | changed | detail |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for s in self.steps:
            duration = f"{s.duration:.1f}s" if s.duration is not None else ""
            detail = (s.detail or s.reason).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {s.id} | {s.phase} | {s.state} | {duration} | {'yes' if s.changed else ''} | {detail} |")
        decisions = self.decisions()
        if decisions:
            lines += ["", "## Gate decisions", "", decisions_table(decisions)]
        return "\n".join(lines)


def decisions_table(decisions: list[DecisionRecord]) -> str:
    lines = [
        "| gate | at (UTC) | approver | decision | accepted | reason | channel |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in decisions:
        why = d.reason if d.accepted else f"refused: {d.refusal}"
        why = why.replace("|", "\\|").replace("\n", " ")
        at = d.at.strftime("%Y-%m-%d %H:%M:%S")
        accepted = "yes" if d.accepted else "no"
        lines.append(f"| {d.gate} | {at} | {d.approver} | {d.decision} | {accepted} | {why} | {d.channel} |")
    return "\n".join(lines)
