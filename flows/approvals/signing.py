"""Signed gate decisions: the approval service signs what it verified; the flow accepts only what it signed.

A signature is `v1:<unix time>:<nonce>:<hex HMAC-SHA256>` over `v1|run|gate|decision|approver|time|nonce`
with a key the approval service and the runner share. A decision is refused when the HMAC does not match
(forged, or for another run, gate, decision or person), when it is older than five minutes, or when its
nonce was seen before in the run (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

MAX_AGE_SECONDS = 300


def _message(run_id: str, gate: str, decision: str, approver: str, at: int, nonce: str) -> bytes:
    return f"v1|{run_id}|{gate}|{decision}|{approver}|{at}|{nonce}".encode()


def sign_decision(key: bytes, run_id: str, gate: str, decision: str, approver: str, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    nonce = secrets.token_hex(8)
    digest = hmac.new(key, _message(str(run_id), gate, decision, approver, at, nonce), hashlib.sha256).hexdigest()
    return f"v1:{at}:{nonce}:{digest}"


def check_decision(
    key: bytes,
    run_id: str,
    gate: str,
    decision: str,
    approver: str,
    signature: str | None,
    seen_nonces: set[str],
    now: float | None = None,
) -> str | None:
    """The reason to refuse the decision, or None when it is genuine, fresh and new (its nonce is recorded)."""
    if not signature:
        return "the decision is not signed by the approval service (answer through Slack or `stanch approve`)"
    try:
        version, at_text, nonce, digest = signature.split(":")
        at = int(at_text)
    except ValueError:
        return "the decision's signature is malformed"
    expected = hmac.new(key, _message(str(run_id), gate, decision, approver, at, nonce), hashlib.sha256).hexdigest()
    if version != "v1" or not hmac.compare_digest(expected, digest):
        return "the decision's signature does not match (forged, or made for another run, gate or person)"
    age = (time.time() if now is None else now) - at
    if age > MAX_AGE_SECONDS or age < -60:
        return f"the decision was signed {int(age)} s ago; it expires after {MAX_AGE_SECONDS} s"
    if nonce in seen_nonces:
        return "the decision was already used (a replay)"
    seen_nonces.add(nonce)
    return None


def token_hash(token: str) -> str:
    """How an approver's CLI token is kept in the configuration."""
    return hashlib.sha256(token.encode()).hexdigest()
