"""The sandbox for a vendor breach: an Acme AI inventory made real on loopback.

Beside the sandbox's moto and Slack: stand-ins of Braintrust (Acme AI itself: its service token and the provider
keys it stores), OpenAI, Anthropic, GitHub Actions secrets and a Kubernetes API server; every credential's value
in Secrets Manager with its consumers seeded with the current value; the base URLs the inventory reads from the
environment pointed at the stand-ins. One consumer fails (the batch-worker Deployment's rollout) and the issuers
with no key API need a person (`person_makes_new_key`).

Two inventories (`INVENTORIES`): `acme-ai` (vendors/acme-ai.yaml, the default: the demo and the tests; three
credentials, eleven consumers, Anthropic made by hand) and `acme-ai-exercise` (vendors/acme-ai-exercise.yaml, the
tabletop's: four credentials, twelve consumers among them GitLab CI/CD variables and an SSM parameter, served by
a GitLab stand-in too; Anthropic and a Braintrust user API key made by hand). `outage(api, path)` and
`recover(api)` make one stand-in fail a path and heal it (a vendor reporting that a rotation failed).
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from flows.sandbox import Sandbox

VENDOR = "acme-ai"
GITHUB_TOKEN_SECRET = "stanch/consumers/github-token"  # noqa: S105 - a secret's name
KUBE_TOKEN_SECRET = "stanch/consumers/kubernetes-token"  # noqa: S105 - a secret's name
FAILING_DEPLOYMENT = "batch-worker"  # its rollout never completes: the OpenAI key's Kubernetes consumer fails
KNOWN_IP = "203.0.113.10"  # in Acme AI's published range, a known place of the OpenAI key
UNKNOWN_IP = "192.0.2.66"  # nowhere in the inventory: the log review flags it
GITLAB_TOKEN_SECRET = "stanch/consumers/gitlab-token"  # noqa: S105 - a secret's name
EXERCISE = "acme-ai-exercise"
# Inventory -> the outside APIs its sandbox serves (`vendor` is Acme AI's own API, a Braintrust stand-in).
INVENTORIES: dict[str, tuple[str, ...]] = {
    VENDOR: ("vendor", "openai", "anthropic", "github", "kubernetes"),
    EXERCISE: ("vendor", "openai", "anthropic", "github", "gitlab", "kubernetes"),
}
# Credential -> who makes its new key (its issuer has no API for it), per inventory.
MANUAL: dict[str, dict[str, str]] = {
    VENDOR: {"anthropic-provider-key": "dana"},
    EXERCISE: {"notebooks-user-key": "alice", "anthropic-provider-key": "dana"},
}
# Credential -> the API that issued it (the same ids in both inventories).
ISSUER_OF = {
    "platform-api-key": "vendor",
    "notebooks-user-key": "vendor",
    "openai-provider-key": "openai",
    "anthropic-provider-key": "anthropic",
}
_ATTRIBUTE = {"vendor": "braintrust", "kubernetes": "kube"}  # an API's name -> the stand-in's attribute


@dataclass
class VendorBreachEnv:
    """The stand-ins and what was seeded. `start(box)` on a started Sandbox; `stop()` stops the stand-ins only."""

    box: Any
    fail_consumer: bool = True
    inventory: str = VENDOR  # a key of INVENTORIES: vendors/<inventory>.yaml
    braintrust: Any = None
    openai: Any = None
    anthropic: Any = None
    github: Any = None
    kube: Any = None
    gitlab: Any = None  # only for an inventory with GitLab consumers
    old: dict[str, str] = field(default_factory=dict)  # credential id -> its value before the breach (tests)
    old_key_ids: dict[str, str] = field(default_factory=dict)
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def start(self) -> VendorBreachEnv:
        from flows.sandbox.vendors.anthropic_api import AnthropicStandIn
        from flows.sandbox.vendors.braintrust_api import BraintrustStandIn
        from flows.sandbox.vendors.github_api import GitHubSecretsStandIn
        from flows.sandbox.vendors.kube_api import KubeStandIn
        from flows.sandbox.vendors.openai_api import OpenAIStandIn

        if self.inventory not in INVENTORIES:
            raise ValueError(f"no vendor breach sandbox for {self.inventory!r} (one of: {', '.join(INVENTORIES)})")
        if "gitlab" in INVENTORIES[self.inventory]:
            from flows.sandbox.vendors.gitlab_api import GitLabStandIn

            self.gitlab = GitLabStandIn().start()
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
        for stand_in in (self.braintrust, self.openai, self.anthropic, self.github, self.kube, self.gitlab):
            if stand_in is not None:
                stand_in.stop()

    def __enter__(self) -> VendorBreachEnv:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """The variables the inventory's `{env: ...}` base URLs read."""
        found = {
            "STANCH_VENDOR_URL_ACME_AI": self.braintrust.base_url,
            "STANCH_VENDOR_URL_OPENAI": self.openai.base_url,
            "STANCH_VENDOR_URL_ANTHROPIC": self.anthropic.base_url,
            "STANCH_VENDOR_URL_GITHUB": self.github.base_url,
            "STANCH_VENDOR_URL_KUBERNETES": self.kube.base_url,
        }
        if self.gitlab is not None:
            found["STANCH_VENDOR_URL_GITLAB"] = self.gitlab.base_url
        return found

    # Set and restored as the Sandbox does it: its methods read only environ() and _saved_env.
    def activate(self) -> None:
        Sandbox.activate(self)  # type: ignore[arg-type]

    def deactivate(self) -> None:
        Sandbox.deactivate(self)  # type: ignore[arg-type]

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
        if self.inventory == EXERCISE:
            self._seed_exercise()
            return
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
        self._seed_keys(sm, made, VENDOR)
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
        self._seed_workloads()

    def _seed_keys(self, sm: Any, made: dict[str, tuple[str, str]], vendor: str) -> None:
        """Each credential's key (id, value) kept as the old one and stored in `acme-ai/<credential>`."""
        for credential, (key_id, value) in made.items():
            self.old[credential] = value
            self.old_key_ids[credential] = key_id
            sm.create_secret(
                Name=f"acme-ai/{credential}",
                SecretString=json.dumps({"api_key": value, "key_id": key_id}),
                Tags=[{"Key": "vendor", "Value": vendor}],
            )

    def _seed_workloads(self) -> None:
        """The Kubernetes consumers (one rollout failing when `fail_consumer`) and the OpenAI key's use."""
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

    def _seed_exercise(self) -> None:
        """vendors/acme-ai-exercise.yaml: four credentials, twelve consumers, two keys made by hand."""
        sm = self.box.client("secretsmanager")
        _, alice_admin = self.braintrust.add_api_key("alice: stanch admin")  # lists and deletes Alice's keys
        for name, value in (
            ("acme-ai/admin/platform", self.braintrust.admin_token),
            ("acme-ai/admin/alice", alice_admin),
            ("acme-ai/admin/openai", self.openai.admin_token),
            ("acme-ai/admin/anthropic", self.anthropic.admin_token),
            (GITHUB_TOKEN_SECRET, self.github.token),
            (GITLAB_TOKEN_SECRET, self.gitlab.token),
            (KUBE_TOKEN_SECRET, self.kube.token),
        ):
            sm.create_secret(Name=name, SecretString=value, Tags=[{"Key": "role", "Value": "stanch-admin"}])
        made = {
            "platform-api-key": self._service_token("evals-ci"),
            "notebooks-user-key": self.braintrust.add_api_key("alice: notebooks"),
            "openai-provider-key": self.openai.add_key("acme-ai evaluations"),
            "anthropic-provider-key": self.anthropic.add_key("acme-ai evaluations"),
        }
        self._seed_keys(sm, made, EXERCISE)
        # The twelve consumers, holding the current values.
        self.braintrust.add_ai_secret("OPENAI_API_KEY", self.old["openai-provider-key"], "openai")
        self.braintrust.add_ai_secret("ANTHROPIC_API_KEY", self.old["anthropic-provider-key"], "anthropic")
        self.github.add_repository("acme/evals")
        self.github.add_org("acme")
        self._gitlab_variable(("projects", "ml/notebooks"), "ACME_AI_API_KEY", self.old["notebooks-user-key"])
        self._gitlab_variable(("groups", "ml"), "ANTHROPIC_API_KEY", self.old["anthropic-provider-key"])
        self.box.client("ssm").put_parameter(
            Name="/ml/notebooks/acme-ai-api-key", Value=self.old["notebooks-user-key"], Type="SecureString"
        )
        for secret_id, credential in (
            ("apps/chat/acme-ai", "platform-api-key"),
            ("apps/batch/openai", "openai-provider-key"),
        ):
            sm.create_secret(Name=secret_id, SecretString=self.old[credential])
        self._seed_workloads()

    def _gitlab_variable(self, owner: tuple[str, str], key: str, value: str) -> None:
        """A masked CI/CD variable, as a maintainer made it in GitLab's settings."""
        if owner[0] == "projects":
            self.gitlab.add_project(owner[1])
        else:
            self.gitlab.add_group(owner[1])
        with self.gitlab._lock:
            self.gitlab.owners[owner][(key, "*")] = {
                "key": key,
                "value": value,
                "variable_type": "env_var",
                "protected": False,
                "masked": True,
                "raw": True,
                "description": None,
                "environment_scope": "*",
            }

    # ---------------------------------------------------------------- outages

    def stand_in(self, api: str) -> Any:
        """The stand-in serving `api` (a name of INVENTORIES: vendor, openai, anthropic, github, gitlab, kubernetes)."""
        found = getattr(self, _ATTRIBUTE.get(api, api), None) if api in INVENTORIES[self.inventory] else None
        if found is None:
            raise ValueError(
                f"the {self.inventory} sandbox serves no {api!r} API (it serves {', '.join(INVENTORIES[self.inventory])})"
            )
        return found

    def outage(self, api: str, path: str, status: int = 503) -> None:
        """Every request to `api` whose path contains `path` answers `status` until `recover`."""
        self.stand_in(api).fail(path, status)

    def recover(self, api: str, path: str | None = None) -> None:
        """The outage of `path` (None: every outage of `api`) is over."""
        self.stand_in(api).heal(path)

    # ---------------------------------------------------------------- the people in the story

    def manual_credentials(self) -> dict[str, str]:
        """Credential -> the person who makes its new key (the issuer has no API for it)."""
        return dict(MANUAL[self.inventory])

    def person_makes_new_key(self, credential: str = "anthropic-provider-key") -> str:
        """What the key owner does at the gate: a new key at the issuer's console (Anthropic's Console, Braintrust's
        Settings > API keys), put into its secret (never into Slack or a command line). Returns the new key's id."""
        if ISSUER_OF.get(credential) == "vendor":
            key_id, value = self.braintrust.add_api_key(f"{credential} (rotated)")
        else:
            key_id, value = self.anthropic.add_key("acme-ai evaluations (rotated)")
        self.box.client("secretsmanager").put_secret_value(
            SecretId=f"acme-ai/{credential}", SecretString=json.dumps({"api_key": value, "key_id": key_id})
        )
        return str(key_id)

    def current(self, credential: str) -> str:
        """The credential's value its secret holds now."""
        text = self.box.client("secretsmanager").get_secret_value(SecretId=f"acme-ai/{credential}")["SecretString"]
        return str(json.loads(text)["api_key"])

    def old_key_works(self, credential: str) -> bool:
        """Whether the credential's key from before the breach still works at its issuer."""
        return bool(self.stand_in(ISSUER_OF[credential]).works(self.old[credential]))

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
                *([self.gitlab.token] if self.gitlab is not None else []),
            }
        )
        return sorted(found)
