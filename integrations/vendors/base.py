"""What every vendor adapter offers: issuers (who mints and revokes a key) and consumers (who must hold it).

The contract between the adapters (one module per issuer or consumer kind in this package) and the vendor
breach actions (`integrations/vendors/actions.py`), which work from a vendor inventory (`vendors/NAME.yaml`).
Importing this module is cheap: no HTTP, no boto3.

Secret values travel only inside `SecretValue`, whose repr and str never show the value; adapters register
every value they see with the run's masker before any log line could carry it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol


class SecretValue:
    """A credential value in memory. `reveal()` is the only way to the text; repr/str say `SecretValue(***)`."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str) or not value:
            raise ValueError("a secret value is a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class VendorError(RuntimeError):
    """An issuer or consumer refused or failed. The message names the place and never holds a secret.

    `retryable` says whether the same call may succeed later (throttling, 5xx, timeouts)."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class ManualStepRequired(VendorError):
    """The issuer has no API for this (Anthropic and Braintrust user keys are made by a person in a console)."""


class NotSupported(VendorError):
    """The issuer's API offers no such operation (Braintrust has no per-key usage; GitHub's revocation API only
    revokes). The caller records the gap (for usage: rely on the consumers' health checks) and carries on."""


@dataclass(frozen=True)
class KeyInfo:
    """One key as its issuer lists it. Never the value; `hint` is what the issuer shows (last 4 characters...)."""

    key_id: str
    name: str = ""
    status: str = "active"  # active | inactive | archived | revoked
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    hint: str = ""


@dataclass(frozen=True)
class Minted:
    """A new key from an issuer: its id at the issuer, and the value (shown once by the issuer)."""

    key_id: str
    value: SecretValue
    name: str = ""


@dataclass(frozen=True)
class UsageRecord:
    """Use of a key seen by the issuer (usage report or audit log): when, from where when the API says, what."""

    key_id: str
    at: datetime
    place: str | None = None  # an IP address or a named place, when the issuer's API gives one
    action: str = ""
    count: int = 1


@dataclass(frozen=True)
class ConsumerWrite:
    """What a consumer write did. `marker` is the consumer's own evidence of the write (GitHub's `updated_at`,
    a Secrets Manager version id, a Kubernetes resourceVersion, a rollout generation), checked by `verify`."""

    changed: bool
    marker: str = ""
    detail: str = ""
    dry_run: bool = False


@dataclass(frozen=True)
class Verified:
    """A consumer's proof that it holds the new value (and, for a workload, that it runs with it)."""

    ok: bool
    evidence: str = ""


class Issuer(Protocol):
    """Who mints and revokes one credential. Built by `make_issuer(kind, **settings)`.

    `can_mint` False means a person makes the new key (the run asks them through a gate to put it into the
    store, never into Slack or a command line) and `mint` raises ManualStepRequired.
    """

    kind: ClassVar[str]  # braintrust | openai | anthropic | github | generic
    can_mint: ClassVar[bool]
    scopes: ClassVar[tuple[str, ...]]  # the admin token's scopes or permissions, listed by `stanch plan`

    def mint(self, name: str, idempotency_key: str) -> Minted: ...

    def list_keys(self) -> list[KeyInfo]: ...

    def key(self, key_id: str) -> KeyInfo | None: ...

    def check(self, value: SecretValue) -> bool:
        """The key works (a cheap authenticated read at the issuer)."""
        ...

    def usage(self, key_id: str, start: datetime, end: datetime) -> list[UsageRecord]: ...

    def revoke(self, key_id: str, *, dry_run: bool) -> bool:
        """Revoke (or deactivate where the issuer cannot delete); False when it already was (idempotent)."""
        ...


class Consumer(Protocol):
    """One place that must hold the current value of a credential. Built by `make_consumer(kind, **settings)`."""

    kind: ClassVar[str]  # github_actions | gitlab | kubernetes | ssm | secretsmanager | braintrust_ai_secret
    scopes: ClassVar[tuple[str, ...]]

    def describe(self) -> str:
        """One line naming the place (`github:acme/api env production secret OPENAI_API_KEY`)."""
        ...

    def write(self, value: SecretValue, fingerprint: str, *, dry_run: bool) -> ConsumerWrite:
        """Put the value in place. `fingerprint` (a hash of the value, never the value) makes the write
        idempotent where the consumer can keep a note of it (a label, a tag, a description)."""
        ...

    def verify(self, write: ConsumerWrite, fingerprint: str) -> Verified: ...


@dataclass
class AdapterSettings:
    """What building an adapter needs: its base URL (None for AWS-backed ones), a way to read a credential
    reference (a Secrets Manager id or ARN) when a call needs it, the HTTP client and the run's masker hook."""

    base_url: str | None = None
    token_ref: str | None = None
    read_secret: Callable[[str], SecretValue] | None = None
    http: Any = None  # integrations.context.HttpClient
    aws: Any = None  # integrations.context.AwsClients
    register_secret: Callable[[str], None] = lambda _value: None
    options: dict[str, Any] = field(default_factory=dict)
    # (consumer.describe(), fingerprint) -> the `ConsumerWrite.marker` the caller recorded when it last wrote that
    # value there, or None. For consumers that keep no note and hide their value (GitHub Actions secrets): an
    # unchanged marker means the value written then is still in place, so the write is skipped.
    recorded_marker: Callable[[str, str], str | None] = lambda _place, _fingerprint: None
