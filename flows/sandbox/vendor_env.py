"""The sandbox for a vendor breach: the Acme AI inventory (`vendors/acme-ai.yaml`) made real on loopback.

Beside the sandbox's moto and Slack: stand-ins of Braintrust (Acme AI itself: its service token and the provider
keys it stores), OpenAI, Anthropic, GitHub Actions secrets and a Kubernetes API server; every credential's value
in Secrets Manager with its consumers seeded with the current value; the base URLs the inventory reads from the
environment pointed at the stand-ins. One consumer fails (the batch-worker Deployment's rollout) and one issuer
needs a person (Anthropic keys are made in the Console: `person_makes_new_key`).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

VENDOR = "acme-ai"
GITHUB_TOKEN_SECRET = "stanch/consumers/github-token"  # noqa: S105 - a secret's name
KUBE_TOKEN_SECRET = "stanch/consumers/kubernetes-token"  # noqa: S105 - a secret's name
FAILING_DEPLOYMENT = "batch-worker"  # its rollout never completes: the OpenAI key's Kubernetes consumer fails
KNOWN_IP = "203.0.113.10"  # in Acme AI's published range, a known place of the OpenAI key
UNKNOWN_IP = "192.0.2.66"  # nowhere in the inventory: the log review flags it


@dataclass
class VendorBreachEnv:
    """The stand-ins and what was seeded. `start(box)` on a started Sandbox; `stop()` stops the stand-ins only."""

    box: Any
    fail_consumer: bool = True
    braintrust: Any = None
    openai: Any = None
    anthropic: Any = None
    github: Any = None
    kube: Any = None
    old: dict[str, str] = field(default_factory=dict)  # credential id -> its value before the breach (tests)
    old_key_ids: dict[str, str] = field(default_factory=dict)
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def start(self) -> VendorBreachEnv:
        from flows.sandbox.vendors.anthropic_api import AnthropicStandIn
        from flows.sandbox.vendors.braintrust_api import BraintrustStandIn
        from flows.sandbox.vendors.github_api import GitHubSecretsStandIn
        from flows.sandbox.vendors.kube_api import KubeStandIn
        from flows.sandbox.vendors.openai_api import OpenAIStandIn

        self.braintrust = BraintrustStandIn().start()
        self.openai = OpenAIStandIn(project="proj_evals").start()
        self.anthropic = AnthropicStandIn().start()
        self.github = GitHubSecretsStandIn().start()
        self.kube = KubeStandIn().start()
        self.activate()
        self.seed()
        return self

    def stop(self) -> None:
        self.deactivate()
        for stand_in in (self.braintrust, self.openai, self.anthropic, self.github, self.kube):
            if stand_in is not None:
                stand_in.stop()

    def __enter__(self) -> VendorBreachEnv:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """The variables the inventory's `{env: ...}` base URLs read."""
        return {
            "STANCH_VENDOR_URL_ACME_AI": self.braintrust.base_url,
            "STANCH_VENDOR_URL_OPENAI": self.openai.base_url,
            "STANCH_VENDOR_URL_ANTHROPIC": self.anthropic.base_url,
            "STANCH_VENDOR_URL_GITHUB": self.github.base_url,
            "STANCH_VENDOR_URL_KUBERNETES": self.kube.base_url,
        }

    def activate(self) -> None:
        for key, value in self.environ().items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def deactivate(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    # ---------------------------------------------------------------- seeding

    def _service_token(self, name: str) -> tuple[str, str]:
        """A Braintrust service token made through the stand-in's API, as an admin would: (id, value)."""
        request = urllib.request.Request(  # noqa: S310 - loopback stand-in only
            f"{self.braintrust.base_url}/v1/service_token",
            data=json.dumps({"name": name, "service_account_id": "sa-evals"}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.braintrust.admin_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback stand-in only
            made = json.loads(response.read())
        return str(made["id"]), str(made["key"])

    def seed(self) -> None:
        sm = self.box.client("secretsmanager")
        for name, value in (
            ("acme-ai/admin/platform", self.braintrust.admin_token),
            ("acme-ai/admin/openai", self.openai.admin_token),
            ("acme-ai/admin/anthropic", self.anthropic.admin_token),
            (GITHUB_TOKEN_SECRET, self.github.token),
            (KUBE_TOKEN_SECRET, self.kube.token),
        ):
            sm.create_secret(Name=name, SecretString=value, Tags=[{"Key": "role", "Value": "stanch-admin"}])
        made = {
            "platform-api-key": self._service_token("evals-ci"),
            "openai-provider-key": self.openai.add_key("acme-ai evaluations"),
            "anthropic-provider-key": self.anthropic.add_key("acme-ai evaluations"),
        }
        for credential, (key_id, value) in made.items():
            self.old[credential] = value
            self.old_key_ids[credential] = key_id
            sm.create_secret(
                Name=f"acme-ai/{credential}",
                SecretString=json.dumps({"api_key": value, "key_id": key_id}),
                Tags=[{"Key": "vendor", "Value": VENDOR}],
            )
        # The consumers, holding the current values.
        self.braintrust.add_ai_secret("OPENAI_API_KEY", self.old["openai-provider-key"], "openai")
        self.braintrust.add_ai_secret("ANTHROPIC_API_KEY", self.old["anthropic-provider-key"], "anthropic")
        self.github.add_repository("acme/evals", environments=("production",))
        self.github.add_org("acme")
        for secret_id, credential in (
            ("apps/chat/acme-ai", "platform-api-key"),
            ("apps/batch/openai", "openai-provider-key"),
            ("apps/chat/anthropic", "anthropic-provider-key"),
        ):
            sm.create_secret(Name=secret_id, SecretString=self.old[credential])
        self.kube.add_secret("chat", "acme-ai", {"api-key": self.old["platform-api-key"]})
        self.kube.add_secret("batch", "openai", {"api-key": self.old["openai-provider-key"]})
        self.kube.add_secret("chat", "anthropic", {"api-key": self.old["anthropic-provider-key"]})
        self.kube.add_deployment("chat", "chat-api", secret="acme-ai")  # noqa: S106 - a Secret's name
        self.kube.add_deployment("batch", FAILING_DEPLOYMENT, secret="openai", how="env")  # noqa: S106 - a name
        self.kube.add_deployment("chat", "eval-runner", secret="anthropic", how="env")  # noqa: S106 - a name
        if self.fail_consumer:
            self.kube.fail_rollout(FAILING_DEPLOYMENT)
        # The exposure window: the OpenAI key used from Acme AI's range (a known place) and from elsewhere.
        now = int(time.time())
        self.openai.record_use(self.old_key_ids["openai-provider-key"], now - 86_400, requests=40, ip=KNOWN_IP)
        self.openai.record_use(self.old_key_ids["openai-provider-key"], now - 3_600, requests=3, ip=UNKNOWN_IP)

    # ---------------------------------------------------------------- the people in the story

    def person_makes_new_key(self, credential: str = "anthropic-provider-key") -> str:
        """What the key owner does at the gate: a new key in Anthropic's Console, put into its secret (never into
        Slack or a command line). Returns the new key's id."""
        key_id, value = self.anthropic.add_key("acme-ai evaluations (rotated)")
        self.box.client("secretsmanager").put_secret_value(
            SecretId=f"acme-ai/{credential}", SecretString=json.dumps({"api_key": value, "key_id": key_id})
        )
        return str(key_id)

    def values(self) -> list[str]:
        """Every credential value the sandbox holds now, old and new (for tests that no value leaked)."""
        found = set(self.old.values())
        sm = self.box.client("secretsmanager")
        for credential in self.old:
            for version in sm.list_secret_version_ids(SecretId=f"acme-ai/{credential}")["Versions"]:
                text = sm.get_secret_value(SecretId=f"acme-ai/{credential}", VersionId=version["VersionId"])
                found.add(json.loads(text["SecretString"])["api_key"])
        found.update(
            {
                self.braintrust.admin_token,
                self.openai.admin_token,
                self.anthropic.admin_token,
                self.github.token,
                self.kube.token,
            }
        )
        return sorted(found)
