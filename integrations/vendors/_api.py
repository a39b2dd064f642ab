"""What every HTTP adapter shares: one vendor API, its credential, its errors and typed answers.

A `VendorApi` turns the run's `HttpClient` failures into `VendorError`s that name the vendor, the method and the
path (never a query string, a header or a body, where values could hide), and checks answers against small
msgspec structs so a bad answer says where it was wrong instead of raising a KeyError three frames later.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote, urlencode

import msgspec

from integrations.vendors.base import (
    AdapterSettings,
    ConsumerWrite,
    KeyInfo,
    NotSupported,
    SecretValue,
    UsageRecord,
    VendorError,
    Verified,
)

T = TypeVar("T")
Item = TypeVar("Item")
Place = TypeVar("Place")

PAGES = 1000  # a bound on pages: a vendor that repeats a cursor must not loop forever
_FINGERPRINT = re.compile(r"^[A-Za-z0-9:_.=+/-]{6,128}$")


class Listing(msgspec.Struct, Generic[Item]):
    """One page of a listing as OpenAI and Anthropic answer it: `data`, `has_more` and the last item's id."""

    data: list[Item]
    has_more: bool = False
    last_id: str | None = None


class Report(msgspec.Struct, Generic[Item]):
    """One page of a usage report as OpenAI and Anthropic answer it: time buckets, `has_more` and the next page."""

    data: list[Item]
    has_more: bool = False
    next_page: str | None = None


def segment(value: str) -> str:
    """One path segment, escaped (a name from an inventory never adds a path of its own)."""
    return quote(value, safe="")


def value_fingerprint(value: str) -> str:
    """The fingerprint of a value (`sha256:` and 32 hex digits): what the vendor actions write into notes and what a
    consumer's `verify` compares with the hash of the value it actually holds."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:32]


def check_fingerprint(fingerprint: str) -> str:
    """A fingerprint is a short, printable hash (it is written into notes and labels), never a value."""
    if not _FINGERPRINT.match(fingerprint):
        raise ValueError("a fingerprint is 6-128 characters of [A-Za-z0-9:_.=+/-] (a hash of the value, not the value)")
    return fingerprint


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string or a Unix timestamp (as vendors give them) as an aware datetime; None for null."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def dry_read(read: Callable[[], T], *, dry_run: bool) -> tuple[bool, T | None]:
    """`(True, what read() answers)`; `(False, None)` when a dry-run's client refused the read (it calls no vendor).

    Outside a dry-run a ReadOnlyRefusal passes through unchanged."""
    from integrations.context import ReadOnlyRefusal

    try:
        return True, read()
    except ReadOnlyRefusal:
        if not dry_run:
            raise
        return False, None


def would_revoke(key: Callable[[str], KeyInfo | None], key_id: str) -> bool:
    """A dry-run's answer to `revoke`: the key is there to revoke (also when the dry-run's client refuses the read)."""
    read, found = dry_read(lambda: key(key_id), dry_run=True)
    return found is not None or not read


def read_token(settings: AdapterSettings, what: str) -> SecretValue:
    """The adapter's credential, read through the run's secret reader and registered with its masker."""
    if not settings.token_ref:
        raise VendorError(f"{what}: no credential configured (token_ref names the secret holding it)")
    if settings.read_secret is None:
        raise VendorError(f"{what}: no secret reader configured to read its credential")
    token = settings.read_secret(settings.token_ref)
    settings.register_secret(token.reveal())
    return token


@dataclass
class VendorApi:
    """One vendor's HTTP API as an adapter uses it.

    Args:
        vendor: the name used in every error message (`openai`, `github`...).
        auth: "bearer" (Authorization: Bearer), or a header name that carries the credential (`x-api-key`,
            `PRIVATE-TOKEN`).
        headers: fixed extra headers (an API version).
    """

    vendor: str
    settings: AdapterSettings
    default_url: str
    auth: str = "bearer"
    headers: dict[str, str] = field(default_factory=dict)
    _token: SecretValue | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return (self.settings.base_url or self.default_url).rstrip("/")

    @property
    def http(self) -> Any:
        if self.settings.http is None:
            from integrations.context import HttpClient

            self.settings.http = HttpClient()
        return self.settings.http

    def token(self) -> SecretValue:
        if self._token is None:
            self._token = read_token(self.settings, self.vendor)
        return self._token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        credential: SecretValue | None = None,
        anonymous: bool = False,
        content_type: str = "application/json",
        idempotency: str | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Send one request with the adapter's credential (or `credential`, or none when `anonymous`).

        Returns the JSON answer; None for an empty answer, or for a 404 when `missing_ok`.
        Raises VendorError naming vendor, method and path; 401/403 say the credential was refused; 429 and 5xx
        are retryable. ReadOnlyRefusal (a dry-run's client) passes through unchanged.
        """
        from integrations.context import HttpCallError

        url = self.base_url + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        headers = dict(self.headers)
        token: str | None = None
        if not anonymous:
            secret = credential or self.token()
            if self.auth == "bearer":
                token = secret.reveal()
            else:
                headers[self.auth] = secret.reveal()
        try:
            return self.http.call(
                method, url, token, body, idempotency=idempotency, headers=headers, content_type=content_type
            )
        except HttpCallError as exc:
            status = exc.status
            if status == 404 and missing_ok:
                return None
            raise VendorError(
                self.explain(method, path, status), retryable=status is None or status == 429 or status >= 500
            ) from None

    def explain(self, method: str, path: str, status: int | None) -> str:
        where = f"{self.vendor}: {method} {path}"
        if status is None:
            return f"{where} got no answer (connection failed or timed out)"
        if status == 401:
            return f"{where} answered 401: the credential was refused (wrong, expired or revoked)"
        if status == 403:
            return f"{where} answered 403: the credential lacks the permission or scope for this"
        if status == 404:
            return f"{where} answered 404: no such resource"
        if status == 429:
            return f"{where} answered 429: throttled, try again later"
        if status >= 500:
            return f"{where} answered {status}: the vendor failed, try again later"
        return f"{where} answered {status}: the request was refused"

    def status_of(self, method: str, path: str, *, credential: SecretValue, query: dict[str, Any] | None = None) -> int:
        """Call with a given credential and answer only the HTTP status (200 for any 2xx), for `check`."""
        from integrations.context import HttpCallError

        url = self.base_url + path + ("?" + urlencode(query, doseq=True) if query else "")
        headers = dict(self.headers)
        token: str | None = None
        if self.auth == "bearer":
            token = credential.reveal()
        else:
            headers[self.auth] = credential.reveal()
        try:
            self.http.call(method, url, token, headers=headers)
        except HttpCallError as exc:
            if exc.status is None or exc.status == 429 or exc.status >= 500:
                raise VendorError(self.explain(method, path, exc.status), retryable=True) from None
            return exc.status
        return 200

    def works(self, value: SecretValue, path: str, *, query: dict[str, Any] | None = None) -> bool:
        """An issuer's `check`: an authenticated GET of `path` with the key (registered with the masker) answers 2xx."""
        self.settings.register_secret(value.reveal())
        return self.status_of("GET", path, credential=value, query=query) == 200

    def typed(self, answer: Any, model: type[T], method: str, path: str) -> T:
        """The answer as `model`, or a VendorError naming where its shape was wrong (never its values)."""
        try:
            return msgspec.convert(answer, model, strict=False)
        except msgspec.ValidationError as exc:
            raise VendorError(f"{self.vendor}: {method} {path} answered an unexpected shape: {_shape_error(exc)}") from None

    def get(self, path: str, model: type[T], *, query: dict[str, Any] | None = None, missing_ok: bool = False) -> T | None:
        answer = self.call("GET", path, query=query, missing_ok=missing_ok)
        if answer is None and missing_ok:
            return None
        return self.typed(answer, model, "GET", path)

    def pages(
        self, path: str, model: type[T], query: dict[str, Any], *, cursor: str, following: str = "last_id"
    ) -> Iterator[T]:
        """The pages of a listing that answers `has_more` and a cursor (its field `following`, sent back as the query
        parameter `cursor`), at most PAGES of them."""
        query = dict(query)
        for _ in range(PAGES):
            page = self.get(path, model, query=query)
            assert page is not None  # noqa: S101 - not missing_ok
            yield page
            after = getattr(page, following, None)
            if not getattr(page, "has_more", False) or not after:
                break
            query[cursor] = after


class Unlisted:
    """An issuer whose API neither lists nor looks up keys nor reports their use: each of those raises NotSupported
    with the issuer's own reason."""

    no_list: ClassVar[str]
    no_key: ClassVar[str]
    no_usage: ClassVar[str]

    def list_keys(self) -> list[KeyInfo]:
        raise NotSupported(self.no_list)

    def key(self, key_id: str) -> KeyInfo | None:
        raise NotSupported(self.no_key)

    def usage(self, key_id: str, start: datetime, end: datetime) -> list[UsageRecord]:
        raise NotSupported(self.no_usage)


class ReadFirst(Generic[Place]):
    """What a consumer that reads its place before writing it shares: the write's first steps and its answers when
    the place already holds the value or a dry-run writes nothing, and verify's first steps."""

    settings: AdapterSettings

    def describe(self) -> str:
        raise NotImplementedError

    def _current(self) -> Place | None:
        raise NotImplementedError

    def _read_first(
        self, value: SecretValue, fingerprint: str, *, dry_run: bool, verb: str = "write"
    ) -> Place | ConsumerWrite | None:
        """Register the value, check the fingerprint and read the place: what is there (None: nothing), or the
        write's answer when a dry-run's client refused the read."""
        self.settings.register_secret(value.reveal())
        check_fingerprint(fingerprint)
        read, current = dry_read(self._current, dry_run=dry_run)
        return current if read else self._would(f"{verb} {self.describe()} (not read: dry-run)")

    def _would(self, what: str) -> ConsumerWrite:
        return ConsumerWrite(changed=True, dry_run=True, detail=f"would {what}")

    def _holds(self, marker: str, *, dry_run: bool) -> ConsumerWrite:
        return ConsumerWrite(changed=False, marker=marker, detail=f"{self.describe()} already holds it", dry_run=dry_run)

    def _written(self, write: ConsumerWrite) -> Place | Verified:
        """verify's first steps: what is there, or the verdict after a dry-run or when the place is gone."""
        if write.dry_run:
            return Verified(ok=False, evidence=f"{self.describe()}: a dry-run wrote nothing")
        current = self._current()
        return Verified(ok=False, evidence=f"{self.describe()} does not exist") if current is None else current


def _shape_error(exc: msgspec.ValidationError) -> str:
    """msgspec's message without any echoed value (it quotes bad enum values): only the expectation and the path."""
    text = str(exc)
    path = text.rsplit(" - at ", 1)[1] if " - at " in text else "$"
    head = text.split(" - at ", 1)[0]
    if head.startswith("Expected") or head.startswith("Object missing required field"):
        return f"{head} at {path}"
    return f"invalid value at {path}"
