"""Each alert endpoint's check of who sent it, and the delivery id that makes a replay visible.

Every check answers `Refusal(status, reason)` for a request that must start nothing: 401 for a missing or bad
signature or token, 403 when the endpoint's secret is not configured (it then refuses everything), 400 for a
request that is not what the endpoint takes. The reason never holds a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WINDOW_SECONDS = 300  # a generic alert's signature is good for five minutes either way
_HEX_SIG = re.compile(r"sha256=([0-9a-f]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DELIVERY = re.compile(r"[\w.:/+=@-]{1,200}")


@dataclass
class Refusal(Exception):
    status: int
    reason: str

    def __str__(self) -> str:
        return self.reason


def not_configured(endpoint: str, setting: str) -> Refusal:
    return Refusal(403, f"{endpoint} takes no alerts: intake.{setting} is not set on the service")


def check_token(secret: str | None, headers: Mapping[str, str]) -> None:
    """EventBridge API destinations: the shared token in X-Stanch-Token."""
    if not secret:
        raise not_configured("/alerts/eventbridge", "eventbridge_token")
    given = headers.get("x-stanch-token", "")
    if not given:
        raise Refusal(401, "X-Stanch-Token is missing")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise Refusal(401, "X-Stanch-Token is not the configured token")


def check_generic(secret: str | None, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
    """X-Stanch-Signature: sha256=HMAC-SHA256(secret, "<X-Stanch-Timestamp>." + body), within five minutes.
    Returns the signature, which names the delivery when the alert has no `id`."""
    if not secret:
        raise not_configured("/alerts/generic", "generic_secret")
    timestamp, signature = headers.get("x-stanch-timestamp", ""), headers.get("x-stanch-signature", "")
    if not timestamp or not signature:
        raise Refusal(401, "X-Stanch-Timestamp and X-Stanch-Signature are required")
    found = _HEX_SIG.fullmatch(signature)
    if not _TIMESTAMP.fullmatch(timestamp) or not found:
        raise Refusal(401, "X-Stanch-Timestamp is Unix seconds and X-Stanch-Signature is sha256=<64 hex digits>")
    if abs((now or time.time()) - int(timestamp)) > WINDOW_SECONDS:
        raise Refusal(401, "X-Stanch-Timestamp is more than five minutes away from now (a stale or replayed alert)")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, found.group(1)):
        raise Refusal(401, "X-Stanch-Signature does not match the body and timestamp")
    return found.group(1)


def sign_generic(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers a sender of generic alerts adds (for tests, the bench and senders written in Python)."""
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Stanch-Timestamp": stamp, "X-Stanch-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def check_github(secret: str | None, headers: Mapping[str, str], body: bytes) -> str:
    """X-Hub-Signature-256 over the body; returns the event name (X-GitHub-Event)."""
    if not secret:
        raise not_configured("/alerts/github", "github_secret")
    found = _HEX_SIG.fullmatch(headers.get("x-hub-signature-256", ""))
    if not found:
        raise Refusal(401, "X-Hub-Signature-256 is missing or not sha256=<64 hex digits>")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, found.group(1)):
        raise Refusal(401, "X-Hub-Signature-256 does not match the body")
    return headers.get("x-github-event", "")


def sign_github(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_id(value: Any, what: str) -> str:
    """A delivery id from the request, as text; Refusal when it is missing or not a plain id."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not _DELIVERY.fullmatch(text):
        raise Refusal(400, f"{what} is missing or not a plain id (letters, digits and .:/+=@_-, at most 200)")
    return text


# ---------------------------------------------------------------------- SNS

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_CERTS: dict[str, Any] = {}  # signing certificates by URL: SNS rotates them rarely


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """SNS's canonical form: each signed field present, as `name\\nvalue\\n`, in this order."""
    fields = _SNS_FIELDS[str(message.get("Type"))]
    return "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None).encode()


def check_sns_url(url: Any, host_pattern: str, https_only: bool, what: str) -> str:
    """A URL SNS gave us, checked before it is fetched: https (unless tests allow http) on a host that matches."""
    from urllib.parse import urlparse

    parsed = urlparse(url if isinstance(url, str) else "")
    allowed = ("https",) if https_only else ("https", "http")
    if parsed.scheme not in allowed or not parsed.hostname or not re.fullmatch(host_pattern, parsed.hostname):
        raise Refusal(401, f"{what} is not an https URL on an SNS host (intake.sns_cert_host)")
    return str(url)


def check_sns(message: Mapping[str, Any], host_pattern: str, https_only: bool, topics: list[str]) -> None:
    """An SNS message signed by SNS: the certificate is fetched from an SNS host and verifies the signature."""
    import base64

    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    kind = message.get("Type")
    if kind not in _SNS_FIELDS:
        raise Refusal(400, f"an SNS message's Type is one of {', '.join(_SNS_FIELDS)}")
    if not topics:
        # any AWS account can publish a signed message to its own topic: only listed topics may start runs
        raise Refusal(403, "intake.sns_topic_arns lists no topic: the SNS endpoint takes no message until it does")
    if message.get("TopicArn") not in topics:
        raise Refusal(403, "the SNS topic is not one of intake.sns_topic_arns")
    if any(not isinstance(message.get(name), str) for name in ("Message", "MessageId", "Timestamp", "TopicArn")):
        raise Refusal(400, "an SNS message has text Message, MessageId, Timestamp and TopicArn")
    version = message.get("SignatureVersion")
    # SignatureVersion 1 is SHA1 by AWS's definition; 2 is SHA256.
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(version))  # noqa: S303
    if algorithm is None:
        raise Refusal(401, "SignatureVersion is 1 or 2")
    url = check_sns_url(message.get("SigningCertURL"), host_pattern, https_only, "SigningCertURL")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except ValueError:
        raise Refusal(401, "Signature is not base64") from None
    cert = _CERTS.get(url)
    if cert is None:
        try:
            cert = x509.load_pem_x509_certificate(_fetch(url, "the signing certificate"))
        except ValueError:
            raise Refusal(401, "the signing certificate is not a PEM certificate") from None
        _CERTS[url] = cert
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refusal(401, "the signing certificate does not hold an RSA key")
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Refusal(401, "the SNS signature does not verify with the signing certificate") from None


def _fetch(url: str, what: str) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - scheme and host checked by the caller
            return bytes(response.read(64 * 1024))
    except OSError as exc:
        raise Refusal(401, f"{what} could not be fetched: {type(exc).__name__}") from None


def confirm_subscription(message: Mapping[str, Any], host_pattern: str, https_only: bool) -> None:
    """Visit the SubscribeURL of a verified SubscriptionConfirmation (that is how SNS subscriptions are confirmed)."""
    url = check_sns_url(message.get("SubscribeURL"), host_pattern, https_only, "SubscribeURL")
    _fetch(url, "the SubscribeURL")
