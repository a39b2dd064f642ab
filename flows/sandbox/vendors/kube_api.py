"""A stand-in for the Kubernetes API server's Secret and Deployment paths, with rollouts simulated.

As the real API: `Authorization: Bearer` (401 Status `Unauthorized`; a `read_only_token` gets 403 `Forbidden` on
writes); `GET/PATCH /api/v1/namespaces/{ns}/secrets/{name}`; `GET /apis/apps/v1/namespaces/{ns}/deployments[/{name}]`
and `PATCH` of one. A PATCH takes `application/merge-patch+json` (or strategic merge for these maps; 415 for
anything else) and bumps `resourceVersion`; a change to a Deployment's pod template bumps `generation` and starts
a rollout that completes `rollout_seconds` later (status: observedGeneration, replicas, updatedReplicas,
availableReplicas). `fail_rollout(name)` makes a Deployment's rollouts stall and then report
`Progressing=False` (ProgressDeadlineExceeded), as a crash-looping new pod would.
"""

from __future__ import annotations

import base64
import copy
import time
from dataclasses import dataclass, field
from typing import Any

from flows.sandbox.vendors import Reply, Request, StandIn

SANDBOX_KUBE_TOKEN = "kube-sandbox-token-0123456789"  # noqa: S105 - accepted by the stand-in only
_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class KubeStandIn(StandIn):
    name: str = "kube-stand-in"
    token: str = SANDBOX_KUBE_TOKEN
    read_only_token: str = "kube-sandbox-read-only-0123456789"  # noqa: S105 - accepted by the stand-in only
    rollout_seconds: float = 0.3
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    failing_rollouts: set[str] = field(default_factory=set)
    _version: int = 100
    _rollouts: dict[tuple[str, str], float] = field(default_factory=dict)  # when the current rollout started

    # ---- seeding and inspection

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def add_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """A Secret holding `data` (plain values; stored base64 as the API does)."""
        with self._lock:
            self.secrets[(namespace, name)] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": self._next_version()},
                "type": "Opaque",
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        with self._lock:
            encoded = (self.secrets.get((namespace, name)) or {}).get("data", {}).get(key)
            return base64.b64decode(encoded).decode() if encoded else None

    def add_deployment(
        self, namespace: str, name: str, secret: str | None = None, replicas: int = 2, how: str = "volume"
    ) -> None:
        """A Deployment whose pods use `secret` as a volume (`how="volume"`) or through `env` (`how="env"`)."""
        pod: dict[str, Any] = {"containers": [{"name": "app", "image": "sandbox/app:1"}]}
        if secret and how == "volume":
            pod["volumes"] = [{"name": "creds", "secret": {"secretName": secret}}]
        elif secret:
            ref = {"name": secret, "key": "api-key"}
            pod["containers"][0]["env"] = [{"name": "API_KEY", "valueFrom": {"secretKeyRef": ref}}]
        with self._lock:
            self.deployments[(namespace, name)] = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "generation": 1, "resourceVersion": self._next_version()},
                "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": name}}, "spec": pod}},
            }

    def fail_rollout(self, name: str) -> None:
        with self._lock:
            self.failing_rollouts.add(name)

    def restarts(self, namespace: str, name: str) -> int:
        """How many times the pod template changed (generation - 1)."""
        with self._lock:
            return int(self.deployments[(namespace, name)]["metadata"]["generation"]) - 1

    def _shown_deployment(self, key: tuple[str, str]) -> dict[str, Any]:
        deployment = copy.deepcopy(self.deployments[key])
        replicas = int(deployment["spec"].get("replicas", 1))
        generation = int(deployment["metadata"]["generation"])
        started = self._rollouts.get(key)
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "readyReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        if started is not None:
            elapsed = time.monotonic() - started
            failing = key[1] in self.failing_rollouts
            if failing or elapsed < self.rollout_seconds:
                status.update({"replicas": replicas + 1, "updatedReplicas": min(1, replicas), "availableReplicas": replicas})
                status["conditions"][1] = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
            if failing and elapsed >= self.rollout_seconds:
                status["conditions"][1] = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        deployment["status"] = status
        return deployment

    # ---- HTTP

    def error_body(self, status: int) -> Any:
        return _status(status, "InternalError", "stand-in failure")

    def route(self, request: Request) -> tuple[int, Any]:
        token = request.bearer()
        if token not in (self.token, self.read_only_token):
            raise Reply(401, _status(401, "Unauthorized", "Unauthorized"))
        if request.method != "GET" and token != self.token:
            raise Reply(403, _status(403, "Forbidden", "the token may not change this resource"))
        parts = request.path.strip("/").split("/")
        with self._lock:
            if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
                return self._secret((parts[3], parts[5]), request)
            if len(parts) in (6, 7) and parts[:4] == ["apis", "apps", "v1", "namespaces"] and parts[5] == "deployments":
                if len(parts) == 6 and request.method == "GET":
                    items = [self._shown_deployment(k) for k in sorted(self.deployments) if k[0] == parts[4]]
                    return 200, {"kind": "DeploymentList", "apiVersion": "apps/v1", "items": items}
                if len(parts) == 7:
                    return self._deployment((parts[4], parts[6]), request)
        raise Reply(404, _status(404, "NotFound", "the server could not find the requested resource"))

    def _patch_body(self, request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0] not in _PATCH_TYPES:
            raise Reply(415, _status(415, "UnsupportedMediaType", "the body of the request was in an unknown format"))
        if not isinstance(request.body, dict):
            raise Reply(400, _status(400, "BadRequest", "a patch is a JSON object"))
        return request.body

    def _patching(
        self, objects: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str], what: str, request: Request
    ) -> dict[str, Any] | None:
        """The merge patch a request makes to an object, None for a GET; 404 without the object, 405 for another
        method."""
        if objects.get(key) is None:
            raise Reply(404, _status(404, "NotFound", f'{what} "{key[1]}" not found'))
        if request.method == "GET":
            return None
        if request.method == "PATCH":
            return self._patch_body(request)
        raise Reply(405, _status(405, "MethodNotAllowed", "method not allowed"))

    def _patched(self, current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        merged = merge_patch(copy.deepcopy(current), patch)
        merged["metadata"]["resourceVersion"] = self._next_version()
        return merged

    def _secret(self, key: tuple[str, str], request: Request) -> tuple[int, Any]:
        patch = self._patching(self.secrets, key, "secrets", request)
        if patch is not None:
            for value in (patch.get("data") or {}).values():
                try:
                    base64.b64decode(value, validate=True)
                except (ValueError, TypeError):
                    raise Reply(422, _status(422, "Invalid", "data values must be base64")) from None
            self.secrets[key] = self._patched(self.secrets[key], patch)
        return 200, copy.deepcopy(self.secrets[key])

    def _deployment(self, key: tuple[str, str], request: Request) -> tuple[int, Any]:
        patch = self._patching(self.deployments, key, "deployments.apps", request)
        if patch is not None:
            deployment = self.deployments[key]
            merged = self._patched(deployment, patch)
            if merged["spec"] != deployment["spec"]:
                merged["metadata"]["generation"] = int(deployment["metadata"]["generation"]) + 1
                self._rollouts[key] = time.monotonic()
            self.deployments[key] = merged
        return 200, self._shown_deployment(key)
