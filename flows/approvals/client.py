"""Answering a gate from outside the run: `stanch approve`, the demo's approver, tests.

The answer goes to Prefect's resume API with typed input; the gate in the run judges it and publishes
a verdict (accepted or refused, and why), which this module waits for and returns.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID


class ApprovalError(Exception):
    """The answer could not be delivered; the message says why and what to do."""


@dataclass
class Verdict:
    delivered: bool
    accepted: bool | None  # None when the run did not say in time
    message: str
    approvals: int | None = None
    needed: int | None = None


def open_gate(run_id: str | UUID) -> tuple[str | None, str]:
    """(gate step id or None, state name) of a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.engine.gates import gate_of

    run_uuid = _uuid(run_id)
    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(run_uuid)
        except ObjectNotFound:
            raise ApprovalError(f"no flow run {run_id} on this Prefect server") from None
    state = flow_run.state
    if state is None or not state.is_paused():
        return None, str(state.name) if state else "unknown"
    return gate_of(state.state_details.pause_key), str(state.name)


def answer_gate(
    run_id: str | UUID,
    gate: str,
    approver: str,
    decision: Literal["approve", "reject"],
    reason: str,
    channel: str = "cli",
    signature: str | None = None,
    wait_seconds: float = 15.0,
    signer: bytes | None = None,
    sign: bool = True,
) -> Verdict:
    """Send one answer to the gate `gate` of a paused run and wait for the gate's verdict.

    The caller has verified who `approver` is (a signed Slack click, a CLI token, the demo's own approver);
    the answer is signed with the approval key (`signer`, else the configured one) so the run can check it.
    `sign=False` sends it unsigned, as anything typed into Prefect's own Resume form would be.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    from flows.engine.gates import verdict_key

    run_uuid = _uuid(run_id)
    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(run_uuid)
        except ObjectNotFound:
            raise ApprovalError(f"no flow run {run_id} on this Prefect server") from None
    state = flow_run.state
    if state is None or not state.is_paused():
        name = state.name if state else "unknown"
        raise ApprovalError(f"run {run_id} is not waiting at a gate (it is {name})")
    key = state.state_details.pause_key or ""
    from flows.engine.gates import gate_of

    waiting = gate_of(key)
    if waiting != gate:
        raise ApprovalError(f"run {run_id} is waiting at gate {waiting!r}, not {gate!r}")
    run_input: dict[str, Any] = {
        "gate": gate,
        "decision": decision,
        "approver": approver,
        "reason": reason,
        "channel": channel,
    }
    if signature is None and sign:
        from flows.approvals.signing import sign_decision
        from flows.config import load_settings, signing_key

        signer = signer or signing_key(load_settings())
        if signer is not None:
            signature = sign_decision(signer, str(run_uuid), gate, decision, approver)
    if signature is not None:
        run_input["signature"] = signature
    try:
        resume_flow_run(run_uuid, run_input=run_input)
    except Exception as exc:
        raise ApprovalError(f"the run did not take the answer: {exc}") from None
    deadline = time.monotonic() + wait_seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            try:
                verdict = json.loads(client.read_flow_run_input(run_uuid, verdict_key(key)))
            except ObjectNotFound:
                time.sleep(0.25)
                continue
            except Exception:
                time.sleep(0.25)
                continue
            accepted = bool(verdict.get("accepted"))
            if accepted:
                message = f"accepted: {decision} ({verdict.get('approvals')} of {verdict.get('needed')} approvals)"
                if decision == "reject":
                    message = "accepted: the gate is rejected"
            else:
                message = f"refused: {verdict.get('refusal')}; the gate is still waiting"
            return Verdict(True, accepted, message, verdict.get("approvals"), verdict.get("needed"))
    return Verdict(True, None, "delivered; the run has not confirmed yet (check its logs)")


def _uuid(run_id: str | UUID) -> UUID:
    try:
        return run_id if isinstance(run_id, UUID) else UUID(str(run_id))
    except ValueError:
        raise ApprovalError(f"{run_id!r} is not a flow run id (a UUID)") from None
