"""The approval service (`stanch serve`): the one place that verifies who answered a gate, and signs it.

- `POST /slack/interactions`: Slack's button clicks. The request must carry a valid `X-Slack-Signature` made
  within five minutes (`X-Slack-Request-Timestamp`), checked with slack-sdk's verifier; the Slack user id maps
  to an approver identity from the configuration. A forged or stale request gets 401 and changes nothing.
- `POST /approve`: `stanch approve`, with a per-approver token (kept as a SHA-256 in the configuration).
- `GET /healthz`: liveness.

Every accepted answer is signed (flows.approvals.signing) and handed to the run, which checks the signature and its own
policy and says whether it took it. Slack is answered within three seconds; the gate's Slack message is updated
afterwards, in the background, and a failed update leaves the decision standing (it is logged).

Nothing a client sends gets a 5xx: a malformed request gets a 4xx or, for a well-signed Slack request that is not
a Stanch gate action, a 200 saying so. Secret references are resolved once, in `create_app`, which fails with a
ConfigError naming the setting when one cannot be read. Seen Slack signatures are kept in a SQLite file
(`approvals.state_path`), so a click replayed after a restart is still refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flows.approvals.signing import token_hash
from flows.config import ConfigError, Settings, aws_client_factory, error_summary, load_settings, resolve_secret
from integrations.masking import SecretMasker

APPROVE_ACTION = "stanch_approve"
REJECT_ACTION = "stanch_reject"
REASON_BLOCK = "stanch_reason"

MAX_BODY_BYTES = 1 << 20  # Slack's largest interaction payloads are a few hundred KB
ACK_SECONDS = 2.5  # Slack shows an error when it has no answer within 3 s
SEEN_SECONDS = 600  # Slack's five-minute window, plus clock skew either way

_log = logging.getLogger("stanch.approvals")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class ServiceState:
    """The service's small state in SQLite, so that it survives a restart: keys seen recently, by kind.

    Kinds: `slack-signature` (a replayed click is refused); in `held`, with a value: `delivery` (an alert
    delivery seen, with the run it started) and `open-key` (a key with an open alert run).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS seen (kind TEXT NOT NULL, key TEXT NOT NULL, until REAL NOT NULL, "
                "PRIMARY KEY (kind, key))"
            )
            # alert deliveries seen (with the run they started) and keys with an open run
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS held (kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
                "until REAL NOT NULL, PRIMARY KEY (kind, key))"
            )
        except (OSError, sqlite3.Error) as exc:
            why = error_summary(exc)
            raise ConfigError(f"approvals.state_path: cannot open {self.path} as the service's state: {why}") from None

    def first_time(self, kind: str, key: str, keep_seconds: float) -> bool:
        """True the first time `key` is seen (it is then kept for `keep_seconds`), False while it is kept."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM seen WHERE until < ?", (now,))
                added = self._db.execute(
                    "INSERT OR IGNORE INTO seen (kind, key, until) VALUES (?, ?, ?)", (kind, key, now + keep_seconds)
                ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return added == 1

    def hold(self, kind: str, key: str, value: str, keep_seconds: float) -> str | None:
        """Keep `key` with `value` unless it is kept already: None when it was not, else the value it holds."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM held WHERE until < ?", (now,))
                row = self._db.execute("SELECT value FROM held WHERE kind = ? AND key = ?", (kind, key)).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO held (kind, key, value, until) VALUES (?, ?, ?, ?)",
                        (kind, key, value, now + keep_seconds),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return None if row is None else str(row[0])

    def put(self, kind: str, key: str, value: str, keep_seconds: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO held (kind, key, value, until) VALUES (?, ?, ?, ?)",
                (kind, key, value, time.time() + keep_seconds),
            )

    def release(self, kind: str, key: str) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM held WHERE kind = ? AND key = ?", (kind, key))
            except sqlite3.ProgrammingError:
                # a run that outlived the service (it was stopped first): the hold expires with the store
                _log.info("the state store is closed: %s %s is not released", kind, key)

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class _Resolved:
    """What the service holds, resolved once at start."""

    private_key: Any  # the Ed25519 key the service signs verified answers with; only the service holds it
    slack_signing_secret: str | None
    slack: Any  # a WebClient, or None without a token
    masker: SecretMasker
    state: ServiceState


def _resolve(settings: Settings) -> _Resolved:
    from flows.engine.notify import slack_client

    aws = aws_client_factory(settings)
    masker = SecretMasker()
    key_text = resolve_secret(settings, "approvals.private_key", aws)
    if not key_text:
        ref = settings.approvals.private_key
        where = ref.describe() if ref else "approvals.private_key"
        raise ConfigError(
            f"approvals.private_key: {where} is not set; the service signs every answer with it "
            "(`stanch keys init` makes a pair)"
        )
    masker.register(key_text)
    from flows.approvals.signing import ApprovalKeyError, load_private

    try:
        key = load_private(key_text, "approvals.private_key")
    except ApprovalKeyError as exc:
        raise ConfigError(str(exc)) from None
    secret = resolve_secret(settings, "slack.signing_secret", aws)
    if secret:
        masker.register(secret)
    try:
        slack = slack_client(settings, masker, aws)
    except ConfigError as exc:
        raise ConfigError(f"slack.token: {exc}") from None
    return _Resolved(key, secret, slack, masker, ServiceState(settings.approvals.state_path))


def create_app(settings: Settings | None = None) -> Starlette:
    """The service's app; ConfigError, naming the setting, when a secret reference or the state store fails."""
    settings = settings or load_settings()
    held = _resolve(settings)

    def approver_for_slack_user(user_id: str) -> str | None:
        return next((name for name, who in settings.approvers.items() if who.slack_user_id == user_id), None)

    def decide(run_id: str, gate: str, approver: str, decision: str, reason: str, channel: str) -> dict[str, Any]:
        from flows.approvals.client import ApprovalError, answer_gate

        try:
            verdict = answer_gate(run_id, gate, approver, decision, reason, channel=channel, signer=held.private_key)  # type: ignore[arg-type]
        except ApprovalError as exc:
            return {"ok": False, "accepted": False, "message": held.masker.mask(str(exc))}
        except Exception as exc:  # Prefect unreachable or failing: the client gets a reason, not a 5xx
            why = held.masker.mask(error_summary(exc))
            _log.warning("could not hand %s's %s for run %s to Prefect: %s", approver, decision, run_id, why)
            return {"ok": False, "accepted": False, "message": f"the answer may not have reached the run: {why}"}
        return {"ok": True, "accepted": verdict.accepted, "message": verdict.message}

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def slack_interactions(request: Request) -> JSONResponse:
        import anyio
        from slack_sdk.signature import SignatureVerifier

        if not held.slack_signing_secret:
            return JSONResponse(
                {"ok": False, "error": "this service takes no Slack interactions: slack.signing_secret is not set"},
                status_code=404,
            )
        body = await _body(request)
        if body is None:
            return JSONResponse({"ok": False, "error": f"the body is over {MAX_BODY_BYTES} bytes"}, status_code=413)
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            return JSONResponse({"ok": False, "error": "missing or malformed Slack signature headers"}, status_code=401)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return JSONResponse({"ok": False, "error": "the body is not UTF-8"}, status_code=400)
        if not SignatureVerifier(held.slack_signing_secret).is_valid(body=text, timestamp=timestamp, signature=signature):
            return JSONResponse({"ok": False, "error": "invalid or stale Slack signature"}, status_code=401)
        try:
            first = await anyio.to_thread.run_sync(held.state.first_time, "slack-signature", signature, SEEN_SECONDS)
        except sqlite3.Error as exc:
            _log.error("the service's state store failed: %s", error_summary(exc))
            return JSONResponse({"ok": False, "text": "the click could not be recorded; nothing was changed, try again"})
        if not first:
            return JSONResponse({"ok": True, "text": "this click was already handled"})
        parsed = _gate_action(text)
        if isinstance(parsed, str):
            return JSONResponse({"ok": False, "text": parsed})
        payload, run_id, gate, decision, user_id = parsed
        approver = approver_for_slack_user(user_id)
        if approver is None:
            return JSONResponse({"ok": False, "text": f"<@{user_id}> is not a Stanch approver; nothing was changed"})
        reason = _reason(payload) or f"{decision} from Slack"
        task = asyncio.ensure_future(anyio.to_thread.run_sync(decide, run_id, gate, approver, decision, reason, "slack"))
        done, _ = await asyncio.wait({task}, timeout=ACK_SECONDS)
        after = BackgroundTask(_after_decision, task, held, payload, approver, decision, reason)
        if done:
            return JSONResponse(task.result(), background=after)
        return JSONResponse(
            {"ok": True, "accepted": None, "message": "received; the gate's message will say whether the run took it"},
            background=after,
        )

    def token_ok(approver: str, request: Request) -> bool:
        identity = settings.approvers.get(approver)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return bool(
            identity is not None
            and identity.token_sha256
            and token
            and hmac.compare_digest(identity.token_sha256, token_hash(token))
        )

    async def launch(request: Request) -> JSONResponse:
        """Vouch for a launch: the token's owner launches `playbook` for `incident_id` (signed, so the run can tell
        a verified launcher from a claimed name)."""
        from flows.approvals.signing import sign_launch

        body = await _body(request)
        data = _json(body) if body else None
        names = ("approver", "playbook", "incident_id")
        if not isinstance(data, dict) or not all(isinstance(data.get(n), str) and data.get(n) for n in names):
            return JSONResponse(
                {"ok": False, "message": "send a JSON object with strings approver, playbook, incident_id"}, 400
            )
        approver, playbook, incident = (str(data[n]) for n in names)
        if not token_ok(approver, request):
            return JSONResponse({"ok": False, "message": f"no approver {approver!r} with that token"}, status_code=401)
        _log.info("%s launches %s for incident %s (verified by token)", approver, playbook, incident)
        return JSONResponse(
            {"ok": True, "launched_by": approver, "proof": sign_launch(held.private_key, playbook, incident, approver)}
        )

    async def approve(request: Request) -> JSONResponse:
        import anyio

        body = await _body(request)
        if body is None:
            return JSONResponse({"ok": False, "message": f"the body is over {MAX_BODY_BYTES} bytes"}, status_code=413)
        fields = _approve_fields(body)
        if fields is None:
            return JSONResponse(
                {"ok": False, "message": "send a JSON object with strings run_id, gate, approver, decision (and reason)"},
                status_code=400,
            )
        run_id, gate, approver, decision, reason = fields
        if not token_ok(approver, request):
            return JSONResponse({"ok": False, "message": f"no approver {approver!r} with that token"}, status_code=401)
        if decision not in ("approve", "reject"):
            return JSONResponse({"ok": False, "message": "decision is approve or reject"}, status_code=400)
        result = await anyio.to_thread.run_sync(decide, run_id, gate, approver, decision, reason, "cli")
        return JSONResponse(result)

    from flows.approvals.signing import sign_launch
    from flows.intake.endpoints import Intake

    # The intake vouches for alert runs as the approval service does for a person: it verified the alert's sender.
    intake = Intake(
        settings, held.state, held.masker, lambda pb, inc, who: sign_launch(held.private_key, pb, inc, who), held.slack
    )
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/slack/interactions", slack_interactions, methods=["POST"]),
            Route("/approve", approve, methods=["POST"]),
            Route("/launch", launch, methods=["POST"]),
            Route("/alerts/eventbridge", intake.eventbridge, methods=["POST"]),
            Route("/alerts/generic", intake.generic, methods=["POST"]),
            Route("/alerts/github", intake.github, methods=["POST"]),
            Route("/alerts/sns", intake.sns, methods=["POST"]),
        ],
        lifespan=_closing(held.state),
    )


SWEEP_SECONDS = 30


def _closing(state: ServiceState) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweeper = asyncio.ensure_future(_sweep_vanished_runs())
        yield
        sweeper.cancel()
        state.close()

    return lifespan


async def _sweep_vanished_runs() -> None:
    """Every half minute, mark Crashed the Stanch runs whose process is gone (no heartbeat), so none stays
    Running for ever; `stanch resume` takes such a run up again."""
    import anyio

    from flows.engine.launch import sweep_vanished_runs

    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            marked = await anyio.to_thread.run_sync(sweep_vanished_runs)
        except Exception as exc:  # Prefect briefly unreachable: try again next time
            _log.debug("could not look for vanished runs: %s", error_summary(exc))
            continue
        for run_id in marked:
            _log.warning(
                "run %s lost its process (no heartbeat): marked Crashed; `stanch resume %s` continues it", run_id, run_id
            )


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is over MAX_BODY_BYTES (read no further)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        return b""
    return b"".join(chunks)


def _json(text: str | bytes) -> Any:
    """Parsed JSON, or None when it is not JSON (or nested too deep to parse)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _gate_action(text: str) -> tuple[dict[str, Any], str, str, str, str] | str:
    """(payload, run id, gate, decision, Slack user id) of a Stanch gate click, or why it is not one."""
    not_ours = "not a Stanch gate action"
    try:
        payload = _json(parse_qs(text, max_num_fields=20).get("payload", [""])[0])
    except ValueError:
        return not_ours
    if not isinstance(payload, dict):
        return not_ours
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    if not isinstance(action, dict) or not isinstance(action.get("value"), str):
        return not_ours
    decision = {APPROVE_ACTION: "approve", REJECT_ACTION: "reject"}.get(str(action.get("action_id")))
    target = _json(action["value"])
    if decision is None or not isinstance(target, dict):
        return not_ours
    run_id, gate = target.get("run_id"), target.get("gate")
    if not isinstance(run_id, str) or not isinstance(gate, str):
        return not_ours
    user = payload.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return "the click names no Slack user; nothing was changed"
    return payload, run_id, gate, decision, user_id


def _approve_fields(body: bytes) -> tuple[str, str, str, str, str] | None:
    data = _json(body) if body else None
    if not isinstance(data, dict):
        return None
    names = ("run_id", "gate", "approver", "decision")
    values = [data.get(name) for name in names]
    reason = data.get("reason", "")
    if not all(isinstance(v, str) and v for v in values) or not isinstance(reason, str):
        return None
    run_id, gate, approver, decision = values
    return run_id, gate, approver, decision, reason  # type: ignore[return-value]


def _reason(payload: dict[str, Any]) -> str:
    state = payload.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        return ""
    for block in values.values():
        field = block.get(REASON_BLOCK) if isinstance(block, dict) else None
        if isinstance(field, dict) and isinstance(field.get("value"), str) and field["value"]:
            return str(field["value"])
    return ""


async def _after_decision(
    task: asyncio.Future[dict[str, Any]], held: _Resolved, payload: dict[str, Any], approver: str, decision: str, reason: str
) -> None:
    """After Slack has its answer: wait for the run's verdict, then say it in the gate's message."""
    import anyio

    try:
        result = await task
        await anyio.to_thread.run_sync(_update_message, held, payload, approver, decision, reason, result)
    except Exception as exc:  # the decision stands; only the message could not say so
        why = held.masker.mask(error_summary(exc))
        _log.warning("could not update the Slack message for %s's %s: %s", approver, decision, why)


def _update_message(
    held: _Resolved, payload: dict[str, Any], approver: str, decision: str, reason: str, result: dict[str, Any]
) -> None:
    """Say in the gate's Slack message who decided, when and why (or why the click changed nothing)."""
    from integrations.slack import escape

    container = payload.get("container")
    container = container if isinstance(container, dict) else {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    if held.slack is None or not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
        return
    stamp = time.strftime("%H:%M:%S UTC", time.gmtime())
    if result.get("accepted"):
        line = f"{'Approved' if decision == 'approve' else 'Rejected'} by {approver} at {stamp}: {reason}"
    elif result.get("accepted") is None:
        line = f"{approver}'s {decision} at {stamp}: {result.get('message')}"
    else:
        line = f"{approver}'s {decision} at {stamp} changed nothing: {result.get('message')}"
    message = payload.get("message")
    original = message.get("text") if isinstance(message, dict) else None
    original = original if isinstance(original, str) else ""
    held.slack.chat_update(channel=channel, ts=ts, text=held.masker.mask(f"{original}\n{escape(line)}"))


def start_in_thread(app: Starlette) -> tuple[str, Any]:
    """The app on a free loopback port in a daemon thread (benches, tests): its URL and a function that stops it."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="stanch-serve")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("the approval service did not start")

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


def serve(host: str = "127.0.0.1", port: int = 8480) -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="info")
