"""Make a consumer of a credential from its kind and spec: `make_consumer("gitlab", {...}, settings)`.

Kinds and their spec keys (each module's `Spec` is the one definition; unknown keys are refused):
- github_actions: secret; repository (owner/repo) [environment] | org [visibility]
- gitlab: key; project | group; environment_scope, protected, masked
- kubernetes: secret, key; namespace, deployments, rollout_timeout, poll_interval (base_url: the API server)
- ssm: parameter; key_id, region
- secretsmanager: secret_id; json_key, region
- braintrust_ai_secret: name; type, org_name
- braintrust_env_var: name, object_type, object_id
Modules are imported when a kind is asked for; `consumer_class(kind).scopes` lists the permissions it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

import msgspec

from integrations.vendors.base import AdapterSettings, Consumer

_CLASSES: dict[str, str] = {
    "github_actions": "integrations.vendors.github_actions:GitHubActionsConsumer",
    "gitlab": "integrations.vendors.gitlab:GitLabVariableConsumer",
    "kubernetes": "integrations.vendors.kubernetes:KubernetesSecretConsumer",
    "ssm": "integrations.vendors.aws_stores:SsmParameterConsumer",
    "secretsmanager": "integrations.vendors.aws_stores:SecretsManagerConsumer",
    "braintrust_ai_secret": "integrations.vendors.braintrust:BraintrustAiSecretConsumer",
    "braintrust_env_var": "integrations.vendors.braintrust:BraintrustEnvVarConsumer",
}
CONSUMER_KINDS: tuple[str, ...] = tuple(_CLASSES)


def consumer_class(kind: str) -> Any:
    """The adapter class for a kind (its `scopes` and `Spec`), without building it."""
    if kind not in _CLASSES:
        raise ValueError(f"unknown consumer kind {kind!r} (known: {', '.join(CONSUMER_KINDS)})")
    module, name = _CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def make_consumer(kind: str, spec: dict[str, Any] | AdapterSettings, settings: AdapterSettings | None = None) -> Consumer:
    """The consumer adapter; ValueError names an unknown kind or what is wrong in its spec.

    Called as `make_consumer(kind, spec, settings)`, or `make_consumer(kind, settings)` with the spec in
    `settings.options`.
    """
    if isinstance(spec, AdapterSettings):
        settings, spec = spec, dict(spec.options)
    if settings is None:
        raise TypeError("make_consumer needs the adapter settings")
    cls = consumer_class(kind)
    try:
        parsed = msgspec.convert(spec, cls.Spec, strict=True)
    except msgspec.ValidationError as exc:
        raise ValueError(f"consumer kind {kind}: {exc}") from None
    consumer: Consumer = cls(parsed, settings)
    return consumer
