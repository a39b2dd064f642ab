"""A stand-in for Braintrust's REST API: user API keys, service tokens, AI secrets and env vars.

As the real API: `Authorization: Bearer` with an API key or service token (401 otherwise); `GET /v1/api_key`
lists keys (no POST: users make keys in the UI), `DELETE /v1/api_key/{id}`; `POST /v1/service_token` answers the
token's `key` once, `GET`/`DELETE /v1/service_token[/{id}]`; `/v1/ai_secret`: `PUT` creates or replaces by name,
`PATCH /{id}` updates, and `POST` with an existing name answers the OLD secret unchanged (the trap);
`/v1/env_var`: `PUT` creates or replaces by name. `GET /v1/project` answers any valid key (the check).
Lists answer `{"objects": [...]}`; values are never listed (`preview_name`, `preview_secret` only).

As the API reference says: `POST /v1/service_token` takes a service token with organization-owner permissions
("User API keys cannot be used": 403 here); the key and token lists and `GET /v1/project` take only their
documented query parameters (`limit`, `starting_after`, `ending_before`, `ids`, `<object>_name`, `org_name`),
anything else answers 400.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flows.sandbox.vendors import Reply, Request, StandIn

SANDBOX_BRAINTRUST_ADMIN = "sk-braintrust-sandbox-admin-0123456789"
ORG_ID = "00000000-0000-4000-8000-00000000b7a1"


def _list_args(name_arg: str) -> frozenset[str]:
    return frozenset({"limit", "starting_after", "ending_before", "ids", name_arg, "org_name"})


def _check_args(request: Request, allowed: frozenset[str]) -> None:
    unknown = request.unknown_args(allowed)
    if unknown:
        raise Reply(400, {"error": f"unknown query parameter(s): {', '.join(unknown)}"})
    if request.arg("starting_after") and request.arg("ending_before"):
        raise Reply(400, {"error": "you may only pass one of starting_after and ending_before"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _preview(value: str) -> str:
    return f"{value[:3]}...{value[-4:]}" if len(value) > 8 else "..."


@dataclass
class BraintrustStandIn(StandIn):
    """`admin_token`: the org owner's service token (accepted on every endpoint)."""

    name: str = "braintrust-stand-in"
    admin_token: str = SANDBOX_BRAINTRUST_ADMIN
    api_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    service_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    ai_secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    env_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ---- seeding and inspection (tests)

    def add_api_key(self, name: str) -> tuple[str, str]:
        """A user API key made "in the UI": (id, value)."""
        with self._lock:
            key_id, value = str(uuid.uuid4()), f"sk-bt-{secrets.token_hex(16)}"
            self.api_keys[key_id] = {"id": key_id, "name": name, "key": value, "created": _now(), "org_id": ORG_ID}
            return key_id, value

    def add_ai_secret(self, name: str, value: str, type: str = "openai") -> str:
        with self._lock:
            secret_id = str(uuid.uuid4())
            self.ai_secrets[secret_id] = {
                "id": secret_id,
                "org_id": ORG_ID,
                "name": name,
                "type": type,
                "metadata": {},
                "secret": value,
                "created": _now(),
                "updated_at": _now(),
            }
            return secret_id

    def ai_secret_value(self, name: str) -> str | None:
        with self._lock:
            return next((s["secret"] for s in self.ai_secrets.values() if s["name"] == name), None)

    def env_var_value(self, name: str) -> str | None:
        with self._lock:
            return next((v["value"] for v in self.env_vars.values() if v["name"] == name), None)

    def works(self, value: str) -> bool:
        with self._lock:
            return value == self.admin_token or any(
                k["key"] == value for k in [*self.api_keys.values(), *self.service_tokens.values()]
            )

    # ---- HTTP

    def error_body(self, status: int) -> Any:
        return {"error": "stand-in failure"}

    def route(self, request: Request) -> tuple[int, Any]:
        if not self.works(request.bearer()):
            raise Reply(401, {"error": "Invalid API key"})
        parts = request.path.strip("/").split("/")
        if parts[:1] != ["v1"] or len(parts) < 2:
            raise Reply(404, {"error": "Not found"})
        resource, rest = parts[1], parts[2:]
        with self._lock:
            if resource == "project" and request.method == "GET" and not rest:
                _check_args(request, _list_args("project_name"))
                return 200, {"objects": []}
            if resource == "api_key":
                return self._keys(request, self.api_keys, rest, "api_key_name", creatable=False)
            if resource == "service_token":
                return self._keys(request, self.service_tokens, rest, "service_token_name", creatable=True)
            if resource == "ai_secret":
                return self._ai_secret(request, rest)
            if resource == "env_var":
                return self._env_var(request, rest)
        raise Reply(404, {"error": "Not found"})

    @staticmethod
    def _public_key(entry: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in entry.items() if k != "key"}
        shown["preview_name"] = _preview(entry["key"])
        return shown

    def _keys(
        self, request: Request, store: dict[str, dict[str, Any]], rest: list[str], name_arg: str, creatable: bool
    ) -> tuple[int, Any]:
        if not rest and request.method == "GET":
            _check_args(request, _list_args(name_arg))
            wanted = request.arg(name_arg)
            found = [self._public_key(k) for k in store.values() if wanted in (None, k["name"])]
            found.sort(key=lambda k: str(k["created"]), reverse=True)
            after = request.arg("starting_after")
            if after:
                ids = [k["id"] for k in found]
                found = found[ids.index(after) + 1 :] if after in ids else []
            limit = int(request.arg("limit") or 1000)
            return 200, {"objects": found[:limit]}
        if not rest and request.method == "POST" and creatable:
            if request.bearer() != self.admin_token and request.bearer() not in (
                t["key"] for t in self.service_tokens.values()
            ):
                raise Reply(403, {"error": "Creating a service token needs a service token with owner permissions"})
            body = request.body or {}
            if not isinstance(body.get("name"), str) or not isinstance(body.get("service_account_id"), str):
                raise Reply(400, {"error": "name and service_account_id are required"})
            token_id, value = str(uuid.uuid4()), f"bt-st-{secrets.token_hex(16)}"
            entry = {
                "id": token_id,
                "name": body["name"],
                "key": value,
                "created": _now(),
                "service_account_id": body["service_account_id"],
                "org_id": ORG_ID,
            }
            store[token_id] = entry
            return 200, {**self._public_key(entry), "key": value}  # the only time the value is shown
        if len(rest) == 1 and rest[0] in store:
            if request.method == "GET":
                return 200, self._public_key(store[rest[0]])
            if request.method == "DELETE":
                return 200, self._public_key(store.pop(rest[0]))
        raise Reply(404, {"error": "Not found"})

    @staticmethod
    def _shown_secret(entry: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in entry.items() if k != "secret"}
        shown["preview_secret"] = _preview(entry["secret"]) if entry.get("secret") else None
        return shown

    def _ai_secret(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        body = request.body if isinstance(request.body, dict) else {}
        by_name = {s["name"]: s for s in self.ai_secrets.values()}
        if not rest and request.method == "GET":
            wanted = request.arg("ai_secret_name")
            return 200, {"objects": [self._shown_secret(s) for s in self.ai_secrets.values() if wanted in (None, s["name"])]}
        if not rest and request.method in ("POST", "PUT"):
            if not isinstance(body.get("name"), str):
                raise Reply(400, {"error": "name is required"})
            existing = by_name.get(body["name"])
            if existing is not None and request.method == "POST":
                return 200, self._shown_secret(existing)  # Braintrust's POST: the existing secret, unmodified
            entry = existing or {"id": str(uuid.uuid4()), "org_id": ORG_ID, "created": _now(), "metadata": {}}
            entry.update({k: body[k] for k in ("name", "type", "metadata", "secret") if k in body})
            entry["updated_at"] = _now()
            self.ai_secrets[entry["id"]] = entry
            return 200, self._shown_secret(entry)
        if len(rest) == 1 and rest[0] in self.ai_secrets:
            entry = self.ai_secrets[rest[0]]
            if request.method == "GET":
                return 200, self._shown_secret(entry)
            if request.method == "PATCH":
                entry.update({k: body[k] for k in ("name", "type", "metadata", "secret") if k in body})
                entry["updated_at"] = _now()
                return 200, self._shown_secret(entry)
            if request.method == "DELETE":
                return 200, self._shown_secret(self.ai_secrets.pop(rest[0]))
        raise Reply(404, {"error": "Not found"})

    def _env_var(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        body = request.body if isinstance(request.body, dict) else {}

        def shown(entry: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in entry.items() if k != "value"}

        if not rest and request.method == "GET":
            wanted = {
                k: request.arg(a)
                for k, a in (("name", "env_var_name"), ("object_type", "object_type"), ("object_id", "object_id"))
            }
            found = [shown(v) for v in self.env_vars.values() if all(w in (None, v[k]) for k, w in wanted.items())]
            return 200, {"objects": found}
        if not rest and request.method == "PUT":
            if not all(isinstance(body.get(k), str) for k in ("name", "object_type", "object_id", "value")):
                raise Reply(400, {"error": "name, object_type, object_id and value are required"})
            key = (body["object_type"], body["object_id"], body["name"])
            existing = next(
                (v for v in self.env_vars.values() if (v["object_type"], v["object_id"], v["name"]) == key), None
            )
            entry = existing or {"id": str(uuid.uuid4()), "created": _now(), "used": None}
            entry.update({k: body[k] for k in ("name", "object_type", "object_id", "value")})
            self.env_vars[entry["id"]] = entry
            return 200, shown(entry)
        if len(rest) == 1 and rest[0] in self.env_vars and request.method == "DELETE":
            return 200, shown(self.env_vars.pop(rest[0]))
        raise Reply(404, {"error": "Not found"})
