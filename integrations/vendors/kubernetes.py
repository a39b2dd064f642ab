"""A Kubernetes Secret, and the Deployments that mount it, as a consumer of a credential.

Kubernetes REST API over HTTPS with a bearer token. `write` patches the Secret's data key (JSON merge patch,
`application/merge-patch+json`) with the fingerprint in an annotation, then restarts each Deployment using it the
way `kubectl rollout restart` does: a pod template annotation `kubectl.kubernetes.io/restartedAt` (plus the
fingerprint, so a re-run after a crash restarts only what was not restarted). The fingerprint annotation is keyed
per Secret and data key (`stanch.dev/fp-<hash of namespace/secret/key>`), so two Secrets (or two keys) feeding one
Deployment keep a note each. `verify` hashes the value the Secret's data key actually holds and compares it with the
fingerprint, then waits for each rollout:
`status.observedGeneration >= metadata.generation` and `updatedReplicas == availableReplicas == replicas`, and
stops early on `Progressing=False` (ProgressDeadlineExceeded) or at the timeout.

Deployments are those listed in the spec, else every Deployment in the namespace whose pods use the Secret
(volumes, projected volumes, `env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`, init containers included).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec

from integrations.context import ReadOnlyRefusal
from integrations.vendors._api import VendorApi, check_fingerprint, segment, value_fingerprint
from integrations.vendors.base import AdapterSettings, ConsumerWrite, SecretValue, VendorError, Verified

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
MERGE_PATCH = "application/merge-patch+json"


class _Meta(msgspec.Struct):
    name: str
    resourceVersion: str = ""
    generation: int = 0
    annotations: dict[str, str] | None = None


class _Secret(msgspec.Struct):
    metadata: _Meta
    data: dict[str, str] | None = None


class _TemplateMeta(msgspec.Struct):
    annotations: dict[str, str] | None = None


class _Template(msgspec.Struct):
    metadata: _TemplateMeta | None = None
    spec: dict[str, Any] | None = None


class _DeploymentSpec(msgspec.Struct):
    template: _Template
    replicas: int = 1


class _Condition(msgspec.Struct):
    type: str
    status: str
    reason: str = ""


class _Status(msgspec.Struct):
    observedGeneration: int = 0
    replicas: int = 0
    updatedReplicas: int = 0
    availableReplicas: int = 0
    conditions: list[_Condition] = []


class _Deployment(msgspec.Struct):
    metadata: _Meta
    spec: _DeploymentSpec
    status: _Status = msgspec.field(default_factory=_Status)


class _Deployments(msgspec.Struct):
    items: list[_Deployment]


def fingerprint_annotation(namespace: str, secret: str, key: str) -> str:
    """The annotation holding the fingerprint written to one key of one Secret (on the Secret and on the pod
    templates restarted for it): one per Secret and key, so notes for different Secrets never overwrite each other."""
    digest = hashlib.sha256(f"{namespace}/{secret}/{key}".encode()).hexdigest()[:16]
    return f"stanch.dev/fp-{digest}"


def uses_secret(pod_spec: dict[str, Any], secret: str) -> bool:
    """The pod spec mounts the Secret or reads it into its environment."""
    for volume in pod_spec.get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName") == secret:
            return True
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("secret") or {}).get("name") == secret:
                return True
    for container in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        for env in container.get("env") or []:
            if ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == secret:
                return True
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name") == secret:
                return True
    return False


def _rolled_out(deployment: _Deployment) -> bool:
    status, spec = deployment.status, deployment.spec
    return (
        status.observedGeneration >= deployment.metadata.generation
        and status.updatedReplicas == spec.replicas
        and status.availableReplicas == spec.replicas
        and status.replicas == spec.replicas  # no old pods left
    )


class KubernetesSecretConsumer:
    """Spec: `namespace`, `secret`, `key` (the data key), `deployments` (names; none or empty: discovered),
    `rollout_timeout` (seconds, default 300), `poll_interval` (seconds, default 2)."""

    kind: ClassVar[str] = "kubernetes"
    scopes: ClassVar[tuple[str, ...]] = (
        "kubernetes RBAC: secrets get, patch (the Secret)",
        "kubernetes RBAC: deployments (apps) get, list, patch (restart and watch the rollout)",
    )

    class Spec(msgspec.Struct, forbid_unknown_fields=True):
        secret: str
        key: str
        namespace: str = "default"
        deployments: list[str] | None = None
        rollout_timeout: float = 300.0
        poll_interval: float = 2.0

    def __init__(self, spec: Spec, settings: AdapterSettings):
        if not settings.base_url:
            raise ValueError("kubernetes consumer: base_url is the cluster's API server")
        if spec.rollout_timeout <= 0 or spec.poll_interval <= 0:
            raise ValueError("kubernetes consumer: rollout_timeout and poll_interval are positive seconds")
        self.spec = spec
        self.settings = settings
        self.api = VendorApi("kubernetes", settings, "")
        self.secret_path = f"/api/v1/namespaces/{segment(spec.namespace)}/secrets/{segment(spec.secret)}"
        self.deployments_path = f"/apis/apps/v1/namespaces/{segment(spec.namespace)}/deployments"
        self.annotation = fingerprint_annotation(spec.namespace, spec.secret, spec.key)

    def describe(self) -> str:
        return f"kubernetes:{self.spec.namespace} secret {self.spec.secret} key {self.spec.key}"

    def _secret(self) -> _Secret:
        secret = self.api.get(self.secret_path, _Secret, missing_ok=True)
        if secret is None:
            raise VendorError(f"{self.describe()}: the Secret does not exist (Stanch updates Secrets, never creates them)")
        return secret

    def _deployments(self) -> list[_Deployment]:
        if self.spec.deployments:
            found = []
            for name in self.spec.deployments:
                got = self.api.get(f"{self.deployments_path}/{segment(name)}", _Deployment, missing_ok=True)
                if got is None:
                    raise VendorError(f"{self.describe()}: Deployment {name} does not exist")
                found.append(got)
            return found
        listed = self.api.get(self.deployments_path, _Deployments)
        assert listed is not None  # noqa: S101 - not missing_ok
        return [d for d in listed.items if uses_secret(d.spec.template.spec or {}, self.spec.secret)]

    def _restarted_for(self, deployment: _Deployment) -> str | None:
        template = deployment.spec.template.metadata
        return (template.annotations or {}).get(self.annotation) if template else None

    def _held(self, secret: _Secret) -> str | None:
        """The value the Secret's data key holds (decoded), or None."""
        encoded = (secret.data or {}).get(self.spec.key)
        if encoded is None:
            return None
        try:
            value = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        self.settings.register_secret(encoded)
        self.settings.register_secret(value)
        return value

    def write(self, value: SecretValue, fingerprint: str, *, dry_run: bool) -> ConsumerWrite:
        self.settings.register_secret(value.reveal())
        check_fingerprint(fingerprint)
        encoded = base64.b64encode(value.reveal().encode()).decode()
        self.settings.register_secret(encoded)
        try:
            secret = self._secret()
            deployments = self._deployments()
        except ReadOnlyRefusal:
            if not dry_run:
                raise
            return ConsumerWrite(changed=True, dry_run=True, detail=f"would patch {self.describe()} (not read: dry-run)")
        noted = (secret.metadata.annotations or {}).get(self.annotation)
        secret_done = noted == fingerprint and (secret.data or {}).get(self.spec.key) == encoded
        # a Secret patched now restarts every Deployment; once it holds the value, only those not yet restarted
        # for it (a re-run after a failed restart finishes what is left)
        pending = [d.metadata.name for d in deployments if not secret_done or self._restarted_for(d) != fingerprint]
        names = ", ".join(d.metadata.name for d in deployments) or "none"
        if secret_done and not pending:
            marker = f"secret@{secret.metadata.resourceVersion}"
            return ConsumerWrite(
                changed=False,
                marker=marker,
                detail=f"{self.describe()} already holds it; restarted: {names}",
                dry_run=dry_run,
            )
        if dry_run:
            steps = ([] if secret_done else ["patch the Secret"]) + ([f"restart {', '.join(pending)}"] if pending else [])
            return ConsumerWrite(changed=True, dry_run=True, detail=f"would {', '.join(steps)} ({self.describe()})")
        version = secret.metadata.resourceVersion
        if not secret_done:
            patch = {"metadata": {"annotations": {self.annotation: fingerprint}}, "data": {self.spec.key: encoded}}
            answer = self.api.call("PATCH", self.secret_path, patch, content_type=MERGE_PATCH)
            version = self.api.typed(answer, _Secret, "PATCH", self.secret_path).metadata.resourceVersion
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        restart = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now, self.annotation: fingerprint}}}}}
        for name in pending:
            self.api.call("PATCH", f"{self.deployments_path}/{segment(name)}", restart, content_type=MERGE_PATCH)
        detail = f"{'patched' if not secret_done else 'kept'} {self.describe()}; restarted: {', '.join(pending) or 'none'}"
        return ConsumerWrite(changed=True, marker=f"secret@{version}", detail=detail)

    def verify(self, write: ConsumerWrite, fingerprint: str) -> Verified:
        """The Secret's data key holds the value (its hash is the fingerprint) and every Deployment using it finished
        its restart's rollout."""
        if write.dry_run:
            return Verified(ok=False, evidence=f"{self.describe()}: a dry-run wrote nothing")
        secret = self._secret()
        held = self._held(secret)
        if held is None:
            return Verified(ok=False, evidence=f"{self.describe()}: the Secret has no (readable) key {self.spec.key}")
        if value_fingerprint(held) != fingerprint:
            return Verified(ok=False, evidence=f"{self.describe()} holds another value (its hash differs)")
        deadline = time.monotonic() + self.spec.rollout_timeout
        waiting = {d.metadata.name for d in self._deployments()}
        done: list[str] = []
        while True:
            for deployment in [d for d in self._deployments() if d.metadata.name in waiting]:
                name = deployment.metadata.name
                if self._restarted_for(deployment) != fingerprint:
                    return Verified(
                        ok=False, evidence=f"{self.describe()}: Deployment {name} was not restarted for this value"
                    )
                stalled = next(
                    (c for c in deployment.status.conditions if c.type == "Progressing" and c.status == "False"), None
                )
                if stalled is not None:
                    reason = stalled.reason or "not progressing"
                    return Verified(ok=False, evidence=f"{self.describe()}: Deployment {name} rollout failed ({reason})")
                if _rolled_out(deployment):
                    waiting.discard(name)
                    done.append(f"{name}@{deployment.metadata.generation}")
            if not waiting:
                break
            if time.monotonic() >= deadline:
                late = ", ".join(sorted(waiting))
                return Verified(
                    ok=False,
                    evidence=f"{self.describe()}: rollout of {late} not done within {self.spec.rollout_timeout:g} s",
                )
            time.sleep(self.spec.poll_interval)
        return Verified(
            ok=True,
            evidence=f"{self.describe()} holds the new value; rolled out: {', '.join(done) or 'no Deployment uses it'}",
        )
