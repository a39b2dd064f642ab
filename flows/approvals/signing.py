"""Signed gate decisions and launches: only the approval service can sign; runners can only verify.

The approval service holds an Ed25519 private key; runners, workers and deployments hold public keys. So a
runner (or anyone who holds what a runner holds: its configuration, environment and Prefect API access) can
check a decision but cannot make one the run would accept.

A signature is `v2:<key id>:<unix time>:<nonce>:<base64url signature>` over the canonical JSON of everything
the decision says: run, gate, decision, approver, reason, channel, time and nonce (a launch: playbook, incident,
launcher). A decision is refused when no trusted key verifies it (forged, altered, or made for another run,
gate, person, reason or channel), when it is older than five minutes, or when its nonce was used before.
A launch proof counts for one flow run only: the first to record its nonce (`stanch-launch`, see
`flows.engine.flow`), within fifteen minutes of its signing; that run, resumed, keeps it at any age.
The key id (the first 16 hex digits of the public key's SHA-256) says which key signed, so a change-over can
accept the previous key for a while and an audit can still verify decisions signed by a retired key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

MAX_AGE_SECONDS = 300
LAUNCH_MAX_AGE_SECONDS = 900  # a launch proof must be first used within 15 minutes of its signing
LAUNCH_SKEW_SECONDS = 60  # clocks of the service and a runner may disagree this much
VERSION = "v2"


class ApprovalKeyError(ValueError):
    """A key that cannot be read; the message says which and why (never the key itself)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate() -> tuple[str, str]:
    """A new pair as text: (`ed25519-sk:<base64url>` private key, `ed25519-pk:<base64url>` public key). The
    prefixes tell them apart (a private key in a configuration or a log is refused or masked by its shape)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"ed25519-sk:{_b64(raw_private)}", f"ed25519-pk:{_b64(raw_public)}"


def load_private(text: str, where: str = "the private key") -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not text.strip().startswith("ed25519-sk:"):
        raise ApprovalKeyError(f"{where} is not an ed25519-sk:... private key (make a pair with `stanch keys init`)")
    return Ed25519PrivateKey.from_private_bytes(_raw(text, where))


def load_public(text: str, where: str = "a public key") -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not text.strip().startswith("ed25519-pk:"):
        raise ApprovalKeyError(f"{where} is not an ed25519-pk:... public key (make a pair with `stanch keys init`)")
    return Ed25519PublicKey.from_public_bytes(_raw(text, where))


def _raw(text: str, where: str) -> bytes:
    body = text.strip().split(":", 1)[-1]
    try:
        raw = _unb64(body)
    except ValueError:
        raise ApprovalKeyError(f"{where} is not base64 (make a pair with `stanch keys init`)") from None
    if len(raw) != 32:
        raise ApprovalKeyError(f"{where} is not an Ed25519 key of 32 bytes (make a pair with `stanch keys init`)")
    return raw


def key_id(public: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def public_keys(*texts: str) -> dict[str, Any]:
    """Trusted public keys by key id."""
    keys = [load_public(t) for t in texts if t]
    return {key_id(k): k for k in keys}


def _canonical(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sign(private: Any, fields: dict[str, Any], at: int | None) -> str:
    at = int(time.time()) if at is None else at
    nonce = secrets.token_hex(8)
    signed = _canonical({**fields, "v": 2, "at": at, "nonce": nonce})
    return f"{VERSION}:{key_id(private.public_key())}:{at}:{nonce}:{_b64(private.sign(signed))}"


def _verify(keys: Mapping[str, Any], fields: dict[str, Any], signature: str | None) -> tuple[str | None, int, str, str]:
    """(refusal or None, signed time, nonce, key id)."""
    from cryptography.exceptions import InvalidSignature

    if not signature:
        return "it is not signed by the approval service (answer through Slack or `stanch approve`)", 0, "", ""
    try:
        version, kid, at_text, nonce, sig = signature.split(":")
        at = int(at_text)
        raw_sig = _unb64(sig)
    except ValueError:
        return "its signature is malformed", 0, "", ""
    if version != VERSION:
        return f"its signature is of an unknown kind ({version}); only the approval service's v2 counts", at, nonce, kid
    key = keys.get(kid)
    if key is None:
        return f"it is signed by key {kid}, which this run does not trust", at, nonce, kid
    try:
        key.verify(raw_sig, _canonical({**fields, "v": 2, "at": at, "nonce": nonce}))
    except InvalidSignature:
        return (
            "its signature does not match (forged, altered, or made for another run, gate, person, reason or channel)",
            at,
            nonce,
            kid,
        )
    return None, at, nonce, kid


def decision_fields(run_id: str, gate: str, decision: str, approver: str, reason: str, channel: str) -> dict[str, Any]:
    return {
        "kind": "decision",
        "run": str(run_id),
        "gate": gate,
        "decision": decision,
        "approver": approver,
        "reason": reason,
        "channel": channel,
    }


def sign_decision(
    private: Any, run_id: str, gate: str, decision: str, approver: str, reason: str, channel: str, at: int | None = None
) -> str:
    return _sign(private, decision_fields(run_id, gate, decision, approver, reason, channel), at)


def check_decision(
    keys: Mapping[str, Any],
    run_id: str,
    gate: str,
    decision: str,
    approver: str,
    reason: str,
    channel: str,
    signature: str | None,
    seen_nonces: set[str],
    now: float | None = None,
    check_age: bool = True,
) -> str | None:
    """Why to refuse the decision, or None when a trusted key signed exactly it, recently, once (nonce recorded).

    `check_age=False` re-verifies a decision recorded earlier (after a resume, or in an audit)."""
    refusal, at, nonce, _ = _verify(keys, decision_fields(run_id, gate, decision, approver, reason, channel), signature)
    if refusal is not None:
        return f"the decision: {refusal}"
    age = (time.time() if now is None else now) - at
    if check_age and (age > MAX_AGE_SECONDS or age < -60):
        return f"the decision was signed {int(age)} s ago; it expires after {MAX_AGE_SECONDS} s"
    if nonce in seen_nonces:
        return "the decision was already used (a replay)"
    seen_nonces.add(nonce)
    return None


def launch_fields(playbook: str, incident_id: str, launched_by: str) -> dict[str, Any]:
    return {"kind": "launch", "playbook": playbook, "incident": incident_id, "launched_by": launched_by}


def sign_launch(private: Any, playbook: str, incident_id: str, launched_by: str, at: int | None = None) -> str:
    """The service's word that `launched_by` (verified by their token) launched this playbook for this incident;
    the nonce it carries lets one flow run, and only one, take it as its own."""
    return _sign(private, launch_fields(playbook, incident_id, launched_by), at)


def check_launch(
    keys: Mapping[str, Any],
    playbook: str,
    incident_id: str,
    launched_by: str,
    signature: str | None,
    now: float | None = None,
    check_age: bool = True,
) -> str | None:
    """Why the launch is not vouched for by the service, or None when it is (a claim otherwise).

    A proof counts only when first used within LAUNCH_MAX_AGE_SECONDS of its signing (parameters are readable by
    anyone with Prefect API access); `check_age=False` re-verifies a proof a run already holds (a resumed run)."""
    refusal, at, _, _ = _verify(keys, launch_fields(playbook, incident_id, launched_by), signature)
    if refusal:
        return f"the launch: {refusal}"
    return launch_age_refusal(at, now) if check_age else None


def launch_age_refusal(at: int, now: float | None = None) -> str | None:
    """Why a launch proof signed at `at` is too old (or too far in the future) to be used first now; None when not."""
    age = (time.time() if now is None else now) - at
    if age > LAUNCH_MAX_AGE_SECONDS:
        return (
            f"the launch proof is {int(age // 60)} minutes old; a proof is accepted only when first used within "
            f"{LAUNCH_MAX_AGE_SECONDS // 60} minutes of its signing"
        )
    if age < -LAUNCH_SKEW_SECONDS:
        skew = LAUNCH_SKEW_SECONDS
        return f"the launch proof is signed {int(-age)} s in the future (more than the {skew} s of clock skew allowed)"
    return None


def launch_time(signature: str | None) -> int | None:
    """When a proof says it was signed (unix seconds); None when it names no time. Trust it only after a check."""
    parts = (signature or "").split(":")
    try:
        return int(parts[2]) if len(parts) == 5 else None
    except ValueError:
        return None


def signed_by(signature: str | None) -> str:
    """The key id a signature names ('' when none)."""
    parts = (signature or "").split(":")
    return parts[1] if len(parts) == 5 else ""


def nonce_of(signature: str | None) -> str:
    parts = (signature or "").split(":")
    return parts[3] if len(parts) == 5 else ""


def token_hash(token: str) -> str:
    """How an approver's CLI token is kept in the configuration."""
    return hashlib.sha256(token.encode()).hexdigest()
