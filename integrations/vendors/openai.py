"""OpenAI as an issuer, through the Admin API (an admin key, `Authorization: Bearer`).

Facts from OpenAI's API reference: creating a project service account (`POST /v1/organization/projects/{project}/
service_accounts`) answers its API key, value included, once; project API keys are listed with `last_used_at`
(`GET .../projects/{project}/api_keys`, each with its `owner`) and deleted (`DELETE .../api_keys/{id}`, which
the reference says answers "an error if the key belonged to a service account": such a key is revoked by deleting
its service account, `DELETE .../service_accounts/{id}`); per-key usage comes from
`GET /v1/organization/usage/completions` (`api_key_ids[]`, `group_by[]=api_key_id`, paged by `page` =
`next_page`) and the audit log (`GET /v1/organization/audit_logs`, `actor_ids[]`, `effective_at[gte|lte]`, paged
by `after` = `last_id`) lists what a key did (with an IP address for session actors). Lists page with `after` and
`limit` (1-100) and answer `has_more`, `first_id`, `last_id`.

Array parameters are sent as the official SDK sends them (openai-python: `Querystring(array_format="brackets")`,
i.e. `api_key_ids[]=...`); the reference names them `api_key_ids`, `group_by` without saying how an array is
encoded, so the SDK is the authority here. The audit log's documented event types are configuration changes
(api_key.created, service_account.deleted...), not API calls: whether a project key ever appears there as an
actor is not documented; the usage API is what counts requests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec

from integrations.vendors._api import Listing, Report, VendorApi, parse_time, segment, would_revoke
from integrations.vendors.base import AdapterSettings, KeyInfo, Minted, SecretValue, UsageRecord, VendorError

DEFAULT_URL = "https://api.openai.com"


class _Owned(msgspec.Struct):
    id: str


class _Owner(msgspec.Struct):
    type: str | None = None  # user | service_account
    service_account: _Owned | None = None


class _ApiKey(msgspec.Struct):
    id: str
    name: str | None = None
    redacted_value: str = ""
    created_at: int | None = None
    last_used_at: int | None = None
    owner: _Owner | None = None


class _Account(msgspec.Struct):
    id: str
    name: str = ""


class _NewKey(msgspec.Struct):
    id: str
    value: str
    name: str | None = None


class _NewAccount(msgspec.Struct):
    id: str
    api_key: _NewKey


class _UsageResult(msgspec.Struct):
    api_key_id: str | None = None
    num_model_requests: int = 0


class _Bucket(msgspec.Struct):
    start_time: int
    results: list[_UsageResult] = []


class _Session(msgspec.Struct):
    ip_address: str | None = None


class _Actor(msgspec.Struct):
    type: str = ""
    session: _Session | None = None


class _AuditEvent(msgspec.Struct):
    id: str
    type: str
    effective_at: int
    actor: _Actor | None = None


class OpenAIIssuer:
    """OpenAI project API keys. Settings options: `project_id` (required)."""

    kind: ClassVar[str] = "openai"
    can_mint: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = (
        "openai: an Admin API key (organization owner) that can manage project service accounts and API keys",
        "openai: the same admin key reads organization usage and the audit log (audit logging turned on)",
    )

    def __init__(self, settings: AdapterSettings):
        self.settings = settings
        self.api = VendorApi("openai", settings, DEFAULT_URL)
        project = settings.options.get("project_id")
        if not project:
            raise ValueError("the openai issuer needs options.project_id")
        self.project = str(project)
        self.prefix = f"/v1/organization/projects/{segment(self.project)}"

    def mint(self, name: str, idempotency_key: str) -> Minted:
        """A new service account named `name [idempotency_key]` and its key.

        The key's value is answered once and OpenAI takes no idempotency key here, so a service account left
        under the same idempotency key by an earlier mint whose answer was lost (its key never stored) is deleted
        first. Orphans are matched on the stable suffix `[idempotency key]`, whatever name (an older one with a
        date) they carry.
        """
        suffix = f" [{idempotency_key[:24]}]"
        full = f"{name}{suffix}"
        path = f"{self.prefix}/service_accounts"
        for page in self.api.pages(path, Listing[_Account], {"limit": 100}, cursor="after"):
            for account in page.data:
                if account.name.endswith(suffix):
                    self.api.call("DELETE", f"{path}/{segment(account.id)}", missing_ok=True)
        created = self.api.typed(self.api.call("POST", path, {"name": full}), _NewAccount, "POST", path)
        self.settings.register_secret(created.api_key.value)
        return Minted(key_id=created.api_key.id, value=SecretValue(created.api_key.value), name=full)

    def list_keys(self) -> list[KeyInfo]:
        pages = self.api.pages(f"{self.prefix}/api_keys", Listing[_ApiKey], {"limit": 100}, cursor="after")
        return [self._info(k) for page in pages for k in page.data]

    @staticmethod
    def _info(key: _ApiKey) -> KeyInfo:
        return KeyInfo(
            key_id=key.id,
            name=key.name or "",
            created_at=parse_time(key.created_at),
            last_used_at=parse_time(key.last_used_at),
            hint=key.redacted_value,
        )

    def key(self, key_id: str) -> KeyInfo | None:
        got = self.api.get(f"{self.prefix}/api_keys/{segment(key_id)}", _ApiKey, missing_ok=True)
        return self._info(got) if got else None

    def check(self, value: SecretValue) -> bool:
        return self.api.works(value, "/v1/models")

    def usage(self, key_id: str, start: datetime, end: datetime) -> list[UsageRecord]:
        """Requests per day from the usage API, and the key's audit-log events (with the IP where given)."""
        records: list[UsageRecord] = []
        path = "/v1/organization/usage/completions"
        query: dict[str, Any] = {
            "start_time": int(start.timestamp()),
            "end_time": int(end.timestamp()),
            "api_key_ids[]": [key_id],
            "group_by[]": ["api_key_id"],
            "bucket_width": "1d",
        }
        for usage in self.api.pages(path, Report[_Bucket], query, cursor="page", following="next_page"):
            for bucket in usage.data:
                for result in bucket.results:
                    if result.num_model_requests and result.api_key_id in (None, key_id):
                        at = parse_time(bucket.start_time)
                        assert at is not None  # noqa: S101 - an int always parses
                        records.append(UsageRecord(key_id, at, action="completions", count=result.num_model_requests))
        path = "/v1/organization/audit_logs"
        audit: dict[str, Any] = {
            "actor_ids[]": [key_id],
            "effective_at[gte]": int(start.timestamp()),
            "effective_at[lte]": int(end.timestamp()),
            "limit": 100,
        }
        for log in self.api.pages(path, Listing[_AuditEvent], audit, cursor="after"):
            for event in log.data:
                at = parse_time(event.effective_at)
                assert at is not None  # noqa: S101 - an int always parses
                place = event.actor.session.ip_address if event.actor and event.actor.session else None
                records.append(UsageRecord(key_id, at, place=place, action=event.type))
        return records

    def revoke(self, key_id: str, *, dry_run: bool) -> bool:
        """Delete the project key; False when it is already gone.

        A service account's key cannot be deleted by itself (the reference: "an error if the key belonged to a
        service account"), so its service account is deleted, which takes its key with it: a service account made
        by `mint` holds that one key; one made otherwise loses any other key it holds too."""
        if dry_run:
            return would_revoke(self.key, key_id)
        path = f"{self.prefix}/api_keys/{segment(key_id)}"
        got = self.api.get(path, _ApiKey, missing_ok=True)
        if got is None:
            return False
        owner = got.owner
        if owner is not None and owner.type == "service_account" and owner.service_account is not None:
            path = f"{self.prefix}/service_accounts/{segment(owner.service_account.id)}"
        answer = self.api.call("DELETE", path, missing_ok=True)
        if answer is None:
            return False
        if isinstance(answer, dict) and answer.get("deleted") is False:
            raise VendorError(f"openai: DELETE {path} answered deleted=false")
        return True
