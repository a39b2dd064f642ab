"""What `stanch vendor inventory NAME --discover` finds beyond the inventory: secrets tagged for the vendor and the
provider keys the vendor itself stores (a Braintrust-like `/v1/ai_secret` listing). Reads only; never a value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from flows.vendors.inventory import BraintrustAiSecretConsumer, SecretsManagerConsumer, Vendor


class _Secret(msgspec.Struct):
    """A stored provider key as the vendor lists it: its name and type, never its value."""

    name: str
    type: str | None = None
    updated_at: str | None = None


class _Secrets(msgspec.Struct):
    objects: list[_Secret]


@dataclass(frozen=True)
class Found:
    """One thing found that the inventory does not list."""

    source: str  # "secretsmanager tag" | "vendor ai_secret listing"
    name: str
    detail: str
    suggestion: dict[str, Any]  # the inventory entry to add (YAML-ready)


def _known_secrets(vendor: Vendor) -> set[str]:
    known: set[str] = {c.token for c in vendor.connections.values() if c.token}
    for cred in vendor.credentials:
        if cred.stored_in.secretsmanager:
            known.add(cred.stored_in.secretsmanager)
        if cred.issuer.admin_token:
            known.add(cred.issuer.admin_token)
        for consumer in cred.consumers:
            if isinstance(consumer, SecretsManagerConsumer):
                known.add(consumer.secret_id)
            token = getattr(consumer, "token", None)
            if token:
                known.add(token)
    return known


def tagged_secrets(vendor: Vendor, sm: Any, tag_key: str = "vendor") -> list[Found]:
    """Secrets Manager secrets tagged `vendor=NAME` that the inventory names nowhere (by name or ARN)."""
    known = _known_secrets(vendor)
    found: list[Found] = []
    name = vendor.metadata.name
    for page in sm.get_paginator("list_secrets").paginate(Filters=[{"Key": "tag-key", "Values": [tag_key]}]):
        for entry in page["SecretList"]:
            tags = {t["Key"]: t["Value"] for t in entry.get("Tags", [])}
            if tags.get(tag_key) != name or entry["Name"] in known or entry["ARN"] in known:
                continue
            found.append(
                Found(
                    source="secretsmanager tag",
                    name=str(entry["Name"]),
                    detail=f"tagged {tag_key}={name}; not in the inventory",
                    suggestion={
                        "id": _slug(entry["Name"]),
                        "issuer": {"kind": "generic"},
                        "stored_in": {"secretsmanager": entry["Name"]},
                        "consumers": [],
                    },
                )
            )
    return sorted(found, key=lambda f: f.name)


def _slug(text: str) -> str:
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:63].strip("-") or "credential"


def stored_provider_keys(vendor: Vendor, read_secret: Any, http: Any) -> list[Found]:
    """The provider keys a Braintrust-like vendor stores (`GET /v1/ai_secret`, names and types only), for each
    of the vendor's own credentials of kind braintrust; those no `braintrust_ai_secret` consumer names are found."""
    from flows.vendors.inventory import resolve_endpoint
    from integrations.vendors._api import VendorApi
    from integrations.vendors.base import AdapterSettings

    listed = {c.name for cred in vendor.credentials for c in cred.consumers if isinstance(c, BraintrustAiSecretConsumer)}
    found: list[Found] = []
    asked: set[tuple[str | None, str]] = set()
    for cred in vendor.credentials:
        if cred.issuer.kind != "braintrust" or not cred.issuer.admin_token:
            continue
        base = resolve_endpoint(cred.issuer.base_url)
        if (base, cred.issuer.admin_token) in asked:
            continue
        asked.add((base, cred.issuer.admin_token))
        settings = AdapterSettings(base_url=base, token_ref=cred.issuer.admin_token, read_secret=read_secret, http=http)
        api = VendorApi("braintrust", settings, "https://api.braintrust.dev")
        answer = api.get("/v1/ai_secret", _Secrets, query={"limit": 1000})
        for secret in answer.objects if answer else []:
            if secret.name in listed:
                continue
            found.append(
                Found(
                    source="vendor ai_secret listing",
                    name=secret.name,
                    detail=f"a {secret.type or 'provider'} key stored at {vendor.metadata.name} "
                    f"(updated {secret.updated_at or '?'}); not in the inventory",
                    suggestion={
                        "id": _slug(f"{secret.type or 'provider'}-{secret.name}"),
                        "issuer": {"kind": secret.type if secret.type in ("openai", "anthropic") else "generic"},
                        "stored_in": {"secretsmanager": "SECRET_ID_HOLDING_IT"},
                        "consumers": [
                            {"kind": "braintrust_ai_secret", "name": secret.name, "token": cred.issuer.admin_token}
                        ],
                    },
                )
            )
    return found
