"""Anthropic as an issuer, through the Admin API (`x-api-key` admin key, `anthropic-version` header).

Facts from Anthropic's API reference: API keys are listed (`GET /v1/organizations/api_keys`), read and updated
(`POST /v1/organizations/api_keys/{id}` with `status` active | inactive | archived), never created or deleted by
API (a person makes the new key in the Console); `GET /v1/organizations/usage_report/messages` reports tokens
per key (`api_key_ids[]`, `group_by[]=api_key_id`, as the reference's own examples and the official SDK's
bracketed arrays send them) in time buckets, without places, paged by `page` = the answer's `next_page`. Lists
page with `after_id` = the answer's `last_id` while `has_more`; `limit` is 1-1000.

The reference does not say whether `cache_creation` tokens (the usage report's `cache_creation.ephemeral_5m/1h_
input_tokens`) are part of `uncached_input_tokens`; they are listed apart, so they are added here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec

from integrations.vendors._api import Listing, Report, VendorApi, dry_read, parse_time, segment
from integrations.vendors.base import (
    AdapterSettings,
    KeyInfo,
    ManualStepRequired,
    Minted,
    SecretValue,
    UsageRecord,
    VendorError,
)

DEFAULT_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class _ApiKey(msgspec.Struct):
    id: str
    name: str = ""
    status: str = "active"
    created_at: str | None = None
    partial_key_hint: str | None = None


class _CacheCreation(msgspec.Struct):
    ephemeral_1h_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0


class _Result(msgspec.Struct):
    api_key_id: str | None = None
    uncached_input_tokens: int = 0
    cache_creation: _CacheCreation | None = None
    cache_read_input_tokens: int = 0
    output_tokens: int = 0

    def tokens(self) -> int:
        created = self.cache_creation
        written = created.ephemeral_1h_input_tokens + created.ephemeral_5m_input_tokens if created else 0
        return self.uncached_input_tokens + written + self.cache_read_input_tokens + self.output_tokens


class _Bucket(msgspec.Struct):
    starting_at: str
    results: list[_Result] = []


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AnthropicIssuer:
    """Anthropic API keys. Settings options: `revoke_status` (inactive, the default, or archived)."""

    kind: ClassVar[str] = "anthropic"
    can_mint: ClassVar[bool] = False
    scopes: ClassVar[tuple[str, ...]] = (
        "anthropic: an Admin API key (sk-ant-admin...) of an organization admin: read and update API keys, "
        "read the usage report",
    )

    def __init__(self, settings: AdapterSettings):
        self.settings = settings
        self.api = VendorApi(
            "anthropic", settings, DEFAULT_URL, auth="x-api-key", headers={"anthropic-version": API_VERSION}
        )
        status = settings.options.get("revoke_status", "inactive")
        if status not in ("inactive", "archived"):
            raise ValueError("options.revoke_status is inactive or archived")
        self.revoke_status: str = status

    def mint(self, name: str, idempotency_key: str) -> Minted:
        raise ManualStepRequired(
            "anthropic: API keys are made by a person in the Console (Settings > API keys); put the new key into "
            "the credential's secret"
        )

    @staticmethod
    def _info(key: _ApiKey) -> KeyInfo:
        return KeyInfo(
            key_id=key.id,
            name=key.name,
            status=key.status,
            created_at=parse_time(key.created_at),
            hint=key.partial_key_hint or "",
        )

    def list_keys(self) -> list[KeyInfo]:
        pages = self.api.pages("/v1/organizations/api_keys", Listing[_ApiKey], {"limit": 100}, cursor="after_id")
        return [self._info(k) for page in pages for k in page.data]

    def key(self, key_id: str) -> KeyInfo | None:
        got = self.api.get(f"/v1/organizations/api_keys/{segment(key_id)}", _ApiKey, missing_ok=True)
        return self._info(got) if got else None

    def check(self, value: SecretValue) -> bool:
        return self.api.works(value, "/v1/models")

    def usage(self, key_id: str, start: datetime, end: datetime) -> list[UsageRecord]:
        """Token use per day from the usage report: `count` is tokens (input, cache writes and reads, output)."""
        records: list[UsageRecord] = []
        path = "/v1/organizations/usage_report/messages"
        query: dict[str, Any] = {
            "starting_at": _rfc3339(start),
            "ending_at": _rfc3339(end),
            "api_key_ids[]": [key_id],
            "group_by[]": ["api_key_id"],
            "bucket_width": "1d",
        }
        for report in self.api.pages(path, Report[_Bucket], query, cursor="page", following="next_page"):
            for bucket in report.data:
                at = parse_time(bucket.starting_at)
                if at is None:
                    raise VendorError(f"anthropic: GET {path} answered a bucket without a valid starting_at")
                for result in bucket.results:
                    tokens = result.tokens()
                    if tokens and result.api_key_id in (None, key_id):
                        records.append(UsageRecord(key_id, at, action="messages (tokens)", count=tokens))
        return records

    def revoke(self, key_id: str, *, dry_run: bool) -> bool:
        """Set the key inactive (or archived); False when it already is, or no longer exists."""
        read, current = dry_read(lambda: self.key(key_id), dry_run=dry_run)
        if not read:  # a dry-run's client calls no vendor: say it would revoke
            return True
        if current is None or current.status in ("inactive", "archived", "expired"):
            return False
        if dry_run:
            return True
        path = f"/v1/organizations/api_keys/{segment(key_id)}"
        updated = self.api.typed(self.api.call("POST", path, {"status": self.revoke_status}), _ApiKey, "POST", path)
        if updated.status not in ("inactive", "archived"):
            raise VendorError(f"anthropic: POST {path} answered with the key still active, not {self.revoke_status}")
        return True
