"""Braintrust as an issuer (user API keys, service tokens) and as a consumer (stored provider keys).

Facts from Braintrust's API reference: user API keys are listed (`GET /v1/api_key`, the caller's own) and
deleted (`DELETE /v1/api_key/{id}`), but made by a person under Settings > API keys; service tokens are created
(`POST /v1/service_token`, the value shown once) and deleted. Stored provider keys (`/v1/ai_secret`) are updated
with `PATCH /v1/ai_secret/{id}` or `PUT /v1/ai_secret` (create or replace by name); a `POST` with an existing
name answers the OLD secret unchanged, so this module never POSTs an ai_secret. `/v1/env_var` (PUT creates or
replaces by name) can hold provider keys too. Braintrust offers no per-key usage or last-used time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Protocol, TypeVar

import msgspec

from integrations.vendors._api import PAGES, ReadFirst, VendorApi, parse_time, segment, would_revoke
from integrations.vendors.base import (
    AdapterSettings,
    ConsumerWrite,
    KeyInfo,
    ManualStepRequired,
    Minted,
    NotSupported,
    SecretValue,
    UsageRecord,
    VendorError,
    Verified,
)

DEFAULT_URL = "https://api.braintrust.dev"
FINGERPRINT_FIELD = "stanch_fingerprint"  # kept in an ai_secret's metadata: the note that makes writes idempotent


class _Key(msgspec.Struct):
    id: str
    name: str = ""
    preview_name: str = ""
    created: str | None = None


class _Keys(msgspec.Struct):
    objects: list[_Key]


class _NewToken(msgspec.Struct):
    id: str
    key: str
    name: str = ""


def _api(settings: AdapterSettings) -> VendorApi:
    return VendorApi("braintrust", settings, DEFAULT_URL)


def _info(key: _Key) -> KeyInfo:
    return KeyInfo(key_id=key.id, name=key.name, created_at=parse_time(key.created), hint=key.preview_name)


class _BraintrustKeys:
    """What user API keys and service tokens share: list, look up, check, delete."""

    kind: ClassVar[str] = "braintrust"
    resource: ClassVar[str] = "api_key"
    can_mint: ClassVar[bool] = False
    scopes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: AdapterSettings):
        self.settings = settings
        self.api = _api(settings)
        self.org_name: str | None = settings.options.get("org_name")
        # any authenticated read does: a key that works can list projects
        self.check_path: str = settings.options.get("check_path", "/v1/project")

    def mint(self, name: str, idempotency_key: str) -> Minted:
        raise ManualStepRequired(
            "braintrust: user API keys are made by a person under Settings > API keys; put the new key into the "
            "credential's secret"
        )

    def list_keys(self) -> list[KeyInfo]:
        path = f"/v1/{self.resource}"
        found: list[KeyInfo] = []
        after: str | None = None
        for _ in range(PAGES):
            page = self.api.get(path, _Keys, query={"limit": 100, "starting_after": after, "org_name": self.org_name})
            assert page is not None  # noqa: S101 - not missing_ok
            found += [_info(k) for k in page.objects]
            if len(page.objects) < 100:
                break
            after = page.objects[-1].id
        return found

    def key(self, key_id: str) -> KeyInfo | None:
        path = f"/v1/{self.resource}/{segment(key_id)}"
        got = self.api.get(path, _Key, missing_ok=True)
        return _info(got) if got else None

    def check(self, value: SecretValue) -> bool:
        return self.api.works(value, self.check_path, query={"limit": 1})

    def usage(self, key_id: str, start: datetime, end: datetime) -> list[UsageRecord]:
        raise NotSupported("braintrust: the API reports no per-key usage or last-used time; rely on the consumers")

    def revoke(self, key_id: str, *, dry_run: bool) -> bool:
        path = f"/v1/{self.resource}/{segment(key_id)}"
        if dry_run:
            return would_revoke(self.key, key_id)
        return self.api.call("DELETE", path, missing_ok=True) is not None


class BraintrustApiKeyIssuer(_BraintrustKeys):
    """Braintrust user API keys: listed and deleted by API; a person makes the new one (ManualStepRequired).

    `GET /v1/api_key` lists only the caller's own keys (Braintrust's knowledge base: "Returns caller's own keys
    only"), so the admin token here is an API key of the person who owns the keys being rotated. (A newer
    reference page documents an org-wide `GET /v1/organization/api_keys` for organization owners; it is not
    used here.) Lists page with `starting_after` = the last id and answer no `has_more`: a page shorter than
    `limit` is the last."""

    resource: ClassVar[str] = "api_key"
    can_mint: ClassVar[bool] = False
    scopes: ClassVar[tuple[str, ...]] = ("braintrust: an API key of the key's owner (GET/DELETE /v1/api_key)",)


class BraintrustServiceTokenIssuer(_BraintrustKeys):
    """Braintrust service tokens: created (value shown once) and deleted by API.

    Settings options: `service_account_id` (required to mint), `org_name`. The reference: creating a service
    token needs "a service token that has organization-owner permissions. User API keys cannot be used" (403).
    """

    resource: ClassVar[str] = "service_token"
    can_mint: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = (
        "braintrust: a service token with organization-owner permissions (POST/GET/DELETE /v1/service_token)",
    )

    def mint(self, name: str, idempotency_key: str) -> Minted:
        """Create a service token named `name [idempotency_key]`.

        Braintrust shows a token's value only once and takes no idempotency key, so a token left by an earlier mint
        under the same idempotency key whose answer was lost (its value never stored anywhere) is deleted first: at
        most one token per idempotency key exists, and the caller stores the value before it mints again. Orphans
        are matched on the stable suffix `[idempotency key]`, whatever name (an older one with a date) they carry.
        """
        account = self.settings.options.get("service_account_id")
        if not account:
            raise VendorError("braintrust: minting a service token needs options.service_account_id")
        suffix = f" [{idempotency_key[:24]}]"
        full = f"{name}{suffix}"
        for orphan in self.list_keys():
            if orphan.name.endswith(suffix):
                self.api.call("DELETE", f"/v1/service_token/{segment(orphan.key_id)}", missing_ok=True)
        body: dict[str, Any] = {"name": full, "service_account_id": account}
        if self.org_name:
            body["org_name"] = self.org_name
        created = self.api.typed(self.api.call("POST", "/v1/service_token", body), _NewToken, "POST", "/v1/service_token")
        self.settings.register_secret(created.key)
        return Minted(key_id=created.id, value=SecretValue(created.key), name=full)


# ---------------------------------------------------------------- consumers


class _Named(Protocol):
    @property
    def name(self) -> str: ...


Place = TypeVar("Place", bound=_Named)


class _BraintrustConsumer(ReadFirst[Place]):
    """What the consumers share: their spec, their API, and finding their object by name in a listing."""

    def __init__(self, spec: Any, settings: AdapterSettings):
        self.spec = spec
        self.settings = settings
        self.api = _api(settings)

    def _named(self, path: str, model: type[Any], query: dict[str, Any]) -> Place | None:
        """The object named like the spec in the listing's `objects` (the API filters by name; this checks it)."""
        found = self.api.get(path, model, query=query)
        objects: list[Place] = found.objects if found else []
        return next((o for o in objects if o.name == self.spec.name), None)


class _AiSecret(msgspec.Struct):
    id: str
    name: str
    type: str | None = None
    metadata: dict[str, Any] | None = None
    updated_at: str | None = None
    preview_secret: str | None = None


class _AiSecrets(msgspec.Struct):
    objects: list[_AiSecret]


class BraintrustAiSecretConsumer(_BraintrustConsumer[_AiSecret]):
    """A provider key stored at Braintrust (`/v1/ai_secret`), updated after the provider key is rotated.

    Spec: `name` (the ai_secret's name, e.g. OPENAI_API_KEY), `type` (e.g. openai; used when it must be
    created), `org_name` (optional). The write keeps a note of the fingerprint in the ai_secret's metadata, so a
    second write of the same value changes nothing; the marker is the ai_secret's `updated_at`.
    """

    kind: ClassVar[str] = "braintrust_ai_secret"
    scopes: ClassVar[tuple[str, ...]] = ("braintrust: an API key or service token allowed to read and update AI secrets",)

    class Spec(msgspec.Struct, forbid_unknown_fields=True):
        name: str
        type: str | None = None
        org_name: str | None = None

    spec: Spec

    def describe(self) -> str:
        return f"braintrust ai_secret {self.spec.name}"

    def _current(self) -> _AiSecret | None:
        return self._named("/v1/ai_secret", _AiSecrets, {"ai_secret_name": self.spec.name, "org_name": self.spec.org_name})

    def write(self, value: SecretValue, fingerprint: str, *, dry_run: bool) -> ConsumerWrite:
        current = self._read_first(value, fingerprint, dry_run=dry_run, verb="update")
        if isinstance(current, ConsumerWrite):
            return current
        if current is not None and (current.metadata or {}).get(FINGERPRINT_FIELD) == fingerprint:
            return self._holds(current.updated_at or "", dry_run=dry_run)
        if dry_run:
            return self._would(f"{'update' if current else 'create'} {self.describe()}")
        if current is not None:
            metadata = {**(current.metadata or {}), FINGERPRINT_FIELD: fingerprint}
            path = f"/v1/ai_secret/{segment(current.id)}"
            answer = self.api.call("PATCH", path, {"secret": value.reveal(), "metadata": metadata})
        else:
            # PUT creates or replaces by name; POST would answer an existing secret unchanged
            path = "/v1/ai_secret"
            body: dict[str, Any] = {
                "name": self.spec.name,
                "secret": value.reveal(),
                "metadata": {FINGERPRINT_FIELD: fingerprint},
            }
            if self.spec.type:
                body["type"] = self.spec.type
            if self.spec.org_name:
                body["org_name"] = self.spec.org_name
            answer = self.api.call("PUT", path, body)
        written = self.api.typed(answer, _AiSecret, "PATCH" if current else "PUT", path)
        return ConsumerWrite(changed=True, marker=written.updated_at or "", detail=f"updated {self.describe()}")

    def verify(self, write: ConsumerWrite, fingerprint: str) -> Verified:
        current = self._written(write)
        if isinstance(current, Verified):
            return current
        noted = (current.metadata or {}).get(FINGERPRINT_FIELD)
        if noted != fingerprint:
            return Verified(ok=False, evidence=f"{self.describe()} holds another value (updated {current.updated_at})")
        return Verified(ok=True, evidence=f"{self.describe()} holds the new value (updated {current.updated_at})")


class _EnvVar(msgspec.Struct):
    id: str
    name: str
    object_type: str | None = None
    object_id: str | None = None
    created: str | None = None
    used: str | None = None


class _EnvVars(msgspec.Struct):
    objects: list[_EnvVar]


class BraintrustEnvVarConsumer(_BraintrustConsumer[_EnvVar]):
    """A provider key held in a Braintrust environment variable (`/v1/env_var`, PUT creates or replaces by name).

    Spec: `name`, `object_type` (organization | project | function), `object_id`. An env var keeps no note
    and never shows its value, so (as for GitHub secrets) the caller's recorded marker decides: the marker is
    `<env var id>:<fingerprint>`, and a write whose recorded marker names the env var still there is skipped.
    """

    kind: ClassVar[str] = "braintrust_env_var"
    scopes: ClassVar[tuple[str, ...]] = ("braintrust: an API key or service token allowed to read and update env vars",)

    class Spec(msgspec.Struct, forbid_unknown_fields=True):
        name: str
        object_type: str
        object_id: str

    spec: Spec

    def describe(self) -> str:
        return f"braintrust env_var {self.spec.object_type}/{self.spec.object_id} {self.spec.name}"

    def _current(self) -> _EnvVar | None:
        query = {"object_type": self.spec.object_type, "object_id": self.spec.object_id, "env_var_name": self.spec.name}
        return self._named("/v1/env_var", _EnvVars, query)

    def write(self, value: SecretValue, fingerprint: str, *, dry_run: bool) -> ConsumerWrite:
        current = self._read_first(value, fingerprint, dry_run=dry_run, verb="update")
        if isinstance(current, ConsumerWrite):
            return current
        recorded = self.settings.recorded_marker(self.describe(), fingerprint)
        if current is not None and recorded == f"{current.id}:{fingerprint}":
            return self._holds(recorded, dry_run=dry_run)
        if dry_run:
            return self._would(f"write {self.describe()}")
        body = {
            "object_type": self.spec.object_type,
            "object_id": self.spec.object_id,
            "name": self.spec.name,
            "value": value.reveal(),
        }
        written = self.api.typed(self.api.call("PUT", "/v1/env_var", body), _EnvVar, "PUT", "/v1/env_var")
        return ConsumerWrite(changed=True, marker=f"{written.id}:{fingerprint}", detail=f"wrote {self.describe()}")

    def verify(self, write: ConsumerWrite, fingerprint: str) -> Verified:
        if write.dry_run:
            return Verified(ok=False, evidence=f"{self.describe()}: a dry-run wrote nothing")
        current = self._current()
        if current is None or write.marker != f"{current.id}:{fingerprint}":
            return Verified(ok=False, evidence=f"{self.describe()} is not the env var written")
        return Verified(ok=True, evidence=f"{self.describe()} was replaced by this run (id {current.id})")
