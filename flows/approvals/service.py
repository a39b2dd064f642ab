"""The approval service (`stanch serve`): the one place that verifies who answered a gate, and signs it.

- `POST /slack/interactions`: Slack's button clicks. The request must carry a valid `X-Slack-Signature` made
  within five minutes (`X-Slack-Request-Timestamp`), checked with slack-sdk's verifier; the Slack user id maps
  to an approver identity from the configuration. A forged or stale request gets 401 and changes nothing.
- `POST /approve`: `stanch approve`, with a per-approver token (kept as a SHA-256 in the configuration).
- `GET /healthz`: liveness.

Every accepted answer is signed (flows.approvals.signing) and handed to the run, which checks the signature and its own
policy and says whether it took it; the Slack message is then updated in place to say who decided and why.
A well-signed request for an unknown run or a closed gate gets a message saying so, never a 5xx.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flows.approvals.signing import token_hash
from flows.config import Settings, load_settings, signing_key

APPROVE_ACTION = "stanch_approve"
REJECT_ACTION = "stanch_reject"
REASON_BLOCK = "stanch_reason"


class _Seen:
    """Slack request signatures already handled in the last five minutes (a replayed click changes nothing)."""

    def __init__(self) -> None:
        self._items: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            self._items = {k: t for k, t in self._items.items() if now - t < 600}
            if key in self._items:
                return False
            self._items[key] = now
            return True


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()
    seen = _Seen()

    def slack_secret() -> str | None:
        ref = settings.slack.signing_secret
        return ref.resolve() if ref is not None else None

    def approver_for_slack_user(user_id: str) -> str | None:
        return next((name for name, who in settings.approvers.items() if who.slack_user_id == user_id), None)

    def decide(run_id: str, gate: str, approver: str, decision: str, reason: str, channel: str) -> dict[str, Any]:
        from flows.approvals.client import ApprovalError, answer_gate

        key = signing_key(settings)
        if key is None:
            return {"ok": False, "accepted": False, "message": "the approval service has no signing key configured"}
        try:
            verdict = answer_gate(run_id, gate, approver, decision, reason, channel=channel, signer=key)  # type: ignore[arg-type]
        except ApprovalError as exc:
            return {"ok": False, "accepted": False, "message": str(exc)}
        return {"ok": True, "accepted": verdict.accepted, "message": verdict.message}

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def slack_interactions(request: Request) -> JSONResponse:
        from slack_sdk.signature import SignatureVerifier

        body = await request.body()
        secret = slack_secret()
        if not secret:
            return JSONResponse({"ok": False, "error": "no Slack signing secret configured"}, status_code=503)
        verifier = SignatureVerifier(secret)
        if not verifier.is_valid(
            body=body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
        ):
            return JSONResponse({"ok": False, "error": "invalid or stale Slack signature"}, status_code=401)
        if not seen.first_time(request.headers.get("X-Slack-Signature", "")):
            return JSONResponse({"ok": True, "text": "this click was already handled"})
        try:
            payload = json.loads(parse_qs(body.decode())["payload"][0])
            action = payload["actions"][0]
            target = json.loads(action["value"])
            run_id, gate = str(target["run_id"]), str(target["gate"])
        except (KeyError, IndexError, ValueError, TypeError):
            return JSONResponse({"ok": False, "text": "not a Stanch gate action"})
        decision = {APPROVE_ACTION: "approve", REJECT_ACTION: "reject"}.get(action.get("action_id", ""))
        if decision is None:
            return JSONResponse({"ok": False, "text": "not a Stanch gate action"})
        user_id = str(payload.get("user", {}).get("id", ""))
        approver = approver_for_slack_user(user_id)
        if approver is None:
            return JSONResponse({"ok": False, "text": f"<@{user_id}> is not a Stanch approver; nothing was changed"})
        reason = _reason(payload) or f"{decision} from Slack"
        import anyio

        result = await anyio.to_thread.run_sync(decide, run_id, gate, approver, decision, reason, "slack")
        await anyio.to_thread.run_sync(_update_message, settings, payload, approver, decision, reason, result)
        return JSONResponse(result)

    async def approve(request: Request) -> JSONResponse:
        auth = request.headers.get("Authorization", "")
        try:
            data = await request.json()
            approver = str(data["approver"])
            run_id, gate, decision = str(data["run_id"]), str(data["gate"]), str(data["decision"])
            reason = str(data.get("reason", ""))
        except (KeyError, ValueError, TypeError):
            return JSONResponse({"ok": False, "message": "send run_id, gate, approver, decision, reason"}, status_code=400)
        identity = settings.approvers.get(approver)
        token = auth.removeprefix("Bearer ").strip()
        if (
            identity is None
            or not identity.token_sha256
            or not token
            or not hmac.compare_digest(identity.token_sha256, token_hash(token))
        ):
            return JSONResponse({"ok": False, "message": f"no approver {approver!r} with that token"}, status_code=401)
        if decision not in ("approve", "reject"):
            return JSONResponse({"ok": False, "message": "decision is approve or reject"}, status_code=400)
        import anyio

        result = await anyio.to_thread.run_sync(decide, run_id, gate, approver, decision, reason, "cli")
        return JSONResponse(result)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/slack/interactions", slack_interactions, methods=["POST"]),
            Route("/approve", approve, methods=["POST"]),
        ]
    )


def _reason(payload: dict[str, Any]) -> str:
    values = (payload.get("state") or {}).get("values") or {}
    for block in values.values():
        field = block.get(REASON_BLOCK) if isinstance(block, dict) else None
        if isinstance(field, dict) and field.get("value"):
            return str(field["value"])
    return ""


def _update_message(
    settings: Settings, payload: dict[str, Any], approver: str, decision: str, reason: str, result: dict[str, Any]
) -> None:
    """Say in the gate's Slack message who decided, when and why (or why the click changed nothing)."""
    from flows.engine.notify import slack_client
    from integrations.slack import escape

    container = payload.get("container") or {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    if not channel or not ts:
        return
    stamp = time.strftime("%H:%M:%S UTC", time.gmtime())
    if result.get("accepted"):
        line = f"{'Approved' if decision == 'approve' else 'Rejected'} by {approver} at {stamp}: {reason}"
    else:
        line = f"{approver}'s {decision} at {stamp} changed nothing: {result.get('message')}"
    original = (payload.get("message") or {}).get("text", "")
    client = slack_client(settings)
    if client is None:
        return
    try:
        client.chat_update(channel=channel, ts=ts, text=f"{original}\n{escape(line)}")
    except Exception:  # the decision stands; only the message could not say so
        return


def serve(host: str = "127.0.0.1", port: int = 8480) -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="info")
