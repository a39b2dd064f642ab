"""Make the issuer of a credential from its kind: `make_issuer("openai", settings)`.

Kinds: braintrust (options.key_type: api_key, the default, made by a person; or service_token, minted by API),
openai, anthropic, github, generic. Modules are imported when a kind is asked for, so `stanch validate` and
`stanch plan` stay cheap; `issuer_class(kind).scopes` lists what the issuer's credential must be allowed.
"""

from __future__ import annotations

import importlib
from typing import Any

from integrations.vendors.base import AdapterSettings, Issuer

_CLASSES: dict[str, str] = {
    "braintrust": "integrations.vendors.braintrust:BraintrustApiKeyIssuer",
    "braintrust/service_token": "integrations.vendors.braintrust:BraintrustServiceTokenIssuer",
    "openai": "integrations.vendors.openai:OpenAIIssuer",
    "anthropic": "integrations.vendors.anthropic:AnthropicIssuer",
    "github": "integrations.vendors.github:GitHubIssuer",
    "generic": "integrations.vendors.generic:GenericIssuer",
}
ISSUER_KINDS: tuple[str, ...] = ("braintrust", "openai", "anthropic", "github", "generic")


def _variant(kind: str, options: dict[str, Any]) -> str:
    if kind == "braintrust":
        key_type = options.get("key_type", "api_key")
        if key_type not in ("api_key", "service_token"):
            raise ValueError("braintrust issuer: options.key_type is api_key or service_token")
        return "braintrust/service_token" if key_type == "service_token" else "braintrust"
    return kind


def issuer_class(kind: str, options: dict[str, Any] | None = None) -> Any:
    """The adapter class for a kind (its `scopes`, `can_mint`), without building it."""
    if kind not in ISSUER_KINDS:
        raise ValueError(f"unknown issuer kind {kind!r} (known: {', '.join(ISSUER_KINDS)})")
    module, name = _CLASSES[_variant(kind, options or {})].split(":")
    return getattr(importlib.import_module(module), name)


def make_issuer(kind: str, settings: AdapterSettings) -> Issuer:
    """The issuer adapter for `kind`; ValueError names an unknown kind or a missing option."""
    cls = issuer_class(kind, settings.options)
    issuer: Issuer = cls(settings)
    return issuer
