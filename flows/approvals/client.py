"""Answering a gate from outside the run: `stanch approve`, the demo's approver, tests.

The answer is written as a flow-run input of the run (`stanch-answer-<gate>-<nonce>`); the gate in the run
judges it and publishes a verdict (accepted or refused, and why), which this module waits for and returns.
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


def open_gates(run_id: str | UUID) -> list[dict[str, Any]]:
    """The gates a run is waiting at (gate, group, members, approvals, deadline); empty when none or it ended."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.engine.gates import OPEN_GATES_KEY
    from flows.engine.journal import read_replaced

    run_uuid = _uuid(run_id)
    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(run_uuid)
        except ObjectNotFound:
            raise ApprovalError(f"no flow run {run_id} on this Prefect server") from None
        if flow_run.state is not None and flow_run.state.is_final():
            return []
        text = read_replaced(client, run_uuid, OPEN_GATES_KEY)  # the run rewrites the listing: delete, create
        if text is None:
            return []
        try:
            listing = json.loads(text)
        except ValueError:
            return []
        return [g for g in listing if isinstance(g, dict)] if isinstance(listing, list) else []


def answer_gate(
    run_id: str | UUID,
    gate: str,
    approver: str,
    decision: Literal["approve", "reject"],
    reason: str,
    channel: str = "cli",
    signature: str | None = None,
    wait_seconds: float = 15.0,
    signer: Any = None,
    sign: bool = True,
) -> Verdict:
    """Send one answer to the gate `gate` of a run and wait for the gate's verdict.

    The caller has verified who `approver` is (a signed Slack click, a CLI token, the demo's own approver);
    the answer is signed with the service's private key (`signer`, else the configured one) so the run can check
    it; a process without the private key (a runner) sends it unsigned, and the run refuses it.
    `sign=False` sends it unsigned, as anything written straight to Prefect's API would be. The answer is a
    flow-run input of the run, so it reaches the run even while its process is down (judged on resume).
    """
    import secrets

    from prefect.client.orchestration import get_client

    from flows.engine.gates import answer_key, verdict_key
    from flows.engine.journal import read_input

    run_uuid = _uuid(run_id)
    waiting = [g["gate"] for g in open_gates(run_uuid)]
    if gate not in waiting:
        open_text = ", ".join(waiting) or "none"
        raise ApprovalError(f"run {run_id} is not waiting at gate {gate!r} (open gates: {open_text})")
    run_input: dict[str, Any] = {
        "gate": gate,
        "decision": decision,
        "approver": approver,
        "reason": reason,
        "channel": channel,
    }
    if signature is None and sign:
        from flows.approvals.signing import sign_decision
        from flows.config import approval_private_key, load_settings

        signer = signer or approval_private_key(load_settings())  # only the service (or the sandbox) holds it
        if signer is not None:
            signature = sign_decision(signer, str(run_uuid), gate, decision, approver, reason, channel)
    if signature is not None:
        run_input["signature"] = signature
    key = answer_key(gate, secrets.token_hex(8))
    with get_client(sync_client=True) as client:
        try:
            client.create_flow_run_input(run_uuid, key=key, value=json.dumps(run_input))
        except Exception as exc:
            raise ApprovalError(f"the run did not take the answer: {exc}") from None
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            try:
                text = read_input(client, run_uuid, verdict_key(key))
                verdict = json.loads(text) if text else None
            except Exception:  # a passing API error: ask again
                verdict = None
            if not isinstance(verdict, dict):
                time.sleep(0.2)
                continue
            accepted = bool(verdict.get("accepted"))
            if accepted:
                message = f"accepted: {decision} ({verdict.get('approvals')} of {verdict.get('needed')} approvals)"
                if decision == "reject":
                    message = "accepted: the gate is rejected"
            else:
                message = f"refused: {verdict.get('refusal')}; the gate is still waiting"
            return Verdict(True, accepted, message, verdict.get("approvals"), verdict.get("needed"))
    return Verdict(True, None, "delivered; the run has not confirmed yet (it judges it when it runs; check its logs)")


def _uuid(run_id: str | UUID) -> UUID:
    try:
        return run_id if isinstance(run_id, UUID) else UUID(str(run_id))
    except ValueError:
        raise ApprovalError(f"{run_id!r} is not a flow run id (a UUID)") from None


def call_service(path: str, body: dict[str, Any], token: str, service_url: str | None = None) -> dict[str, Any]:
    """POST to the approval service with an approver's token; its JSON answer, or ApprovalError saying why not."""
    import urllib.error
    import urllib.request

    from flows.config import load_settings

    url = (service_url or load_settings().approvals.service_url).rstrip("/") + path
    request = urllib.request.Request(  # noqa: S310 - the configured approval service
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            result = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ApprovalError(f"the approval service refused: {detail}") from None
    except urllib.error.URLError as exc:
        raise ApprovalError(
            f"cannot reach the approval service at {url}: {exc.reason} (is `stanch serve` running?)"
        ) from None
    except ValueError:
        raise ApprovalError(f"the approval service at {url} did not answer JSON") from None
    return result if isinstance(result, dict) else {}


def launch_proof(playbook: str, incident_id: str, approver: str, token: str, service_url: str | None = None) -> str:
    """The approval service's signed word that `approver` (whose token it checked) launches this playbook."""
    result = call_service(
        "/launch", {"approver": approver, "playbook": playbook, "incident_id": incident_id}, token, service_url
    )
    proof = result.get("proof")
    if not isinstance(proof, str) or not proof:
        raise ApprovalError(str(result.get("message") or "the approval service gave no proof of the launch"))
    return proof
