"""A stand-in for OpenAI's Admin API (projects' service accounts and API keys, usage, audit log) and `/v1/models`.

The admin key (`Authorization: Bearer`) is accepted on `/v1/organization/...`; a project key on `/v1/models`
only (401 `invalid_api_key` otherwise, as OpenAI answers). Creating a service account answers its API key with the
value, once; keys list with `redacted_value` and `last_used_at`; `DELETE .../api_keys/{id}` answers
`{"deleted": true}` (404 once gone), except a service account's key, which the API refuses to delete (400: the
service account is deleted instead). Usage buckets and audit events are seeded by tests (`record_use`).

Query parameters are checked as the API reference names them and as the official SDK (openai-python, its
`Querystring(array_format="brackets")`) encodes them: array parameters carry `[]` (`api_key_ids[]`,
`group_by[]`, `actor_ids[]`), `effective_at` is `effective_at[gte]`...; a name an endpoint does not document is
answered 400, so a misspelt or misencoded parameter fails here as it would be ignored or refused there.
(The audit log's real event types are configuration changes; the `api_key.used` events seeded here stand for
"an event whose actor is this key", the only thing the issuer reads from them.)
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from flows.sandbox.vendors import Reply, Request, StandIn, listing

SANDBOX_OPENAI_ADMIN = "sk-admin-sandbox-0123456789abcdefghij"
PROJECT = "proj_sandbox"

_LIST_ARGS = frozenset({"after", "limit"})
_USAGE_ARRAYS = ("project_ids", "user_ids", "api_key_ids", "models", "group_by")
_USAGE_ARGS = frozenset(
    {"start_time", "end_time", "bucket_width", "batch", "limit", "page", *(f"{a}[]" for a in _USAGE_ARRAYS)}
)
_AUDIT_ARRAYS = ("project_ids", "event_types", "actor_ids", "actor_emails", "resource_ids")
_AUDIT_ARGS = frozenset(
    {
        "after",
        "before",
        "limit",
        "tenant_only",
        *(f"effective_at[{op}]" for op in ("gt", "gte", "lt", "lte")),
        *(f"{a}[]" for a in _AUDIT_ARRAYS),
    }
)


def _bad_request(message: str) -> Reply:
    return Reply(400, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


def _check_args(request: Request, allowed: frozenset[str]) -> None:
    unknown = request.unknown_args(allowed)
    if unknown:
        raise _bad_request(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    limit = request.arg("limit")
    if limit is not None and (not limit.isdigit() or not 1 <= int(limit) <= 100):
        raise _bad_request("limit must be between 1 and 100")


@dataclass
class OpenAIStandIn(StandIn):
    name: str = "openai-stand-in"
    admin_token: str = SANDBOX_OPENAI_ADMIN
    project: str = PROJECT
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # key id -> {id, name, value, created_at, ...}
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    uses: list[dict[str, Any]] = field(default_factory=list)  # {key_id, at, requests, ip}

    def add_key(self, name: str) -> tuple[str, str]:
        """A user's project key made in the dashboard: (id, value)."""
        with self._lock:
            key_id, value = f"key_{secrets.token_hex(6)}", f"sk-proj-{secrets.token_hex(20)}"
            self.keys[key_id] = {
                "id": key_id,
                "name": name,
                "value": value,
                "created_at": int(time.time()),
                "last_used_at": None,
                "owner": {
                    "type": "user",
                    "user": {"id": "user_sandbox", "name": "Sandbox", "email": "sandbox@example.com", "role": "owner"},
                },
            }
            return key_id, value

    def record_use(self, key_id: str, at: int, requests: int = 1, ip: str | None = None) -> None:
        with self._lock:
            self.uses.append({"key_id": key_id, "at": at, "requests": requests, "ip": ip})
            key = self.keys.get(key_id)
            if key is not None:
                key["last_used_at"] = max(at, key["last_used_at"] or 0)

    def works(self, value: str) -> bool:
        with self._lock:
            return any(k["value"] == value for k in self.keys.values())

    def error_body(self, status: int) -> Any:
        return {"error": {"message": "stand-in failure", "type": "server_error"}}

    def route(self, request: Request) -> tuple[int, Any]:
        token = request.bearer()
        if request.path == "/v1/models" and request.method == "GET":
            _check_args(request, frozenset())
            if not self.works(token):
                raise Reply(401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
            return 200, {"object": "list", "data": [{"id": "gpt-sandbox", "object": "model"}]}
        if not request.path.startswith("/v1/organization/"):
            raise Reply(404, {"error": {"message": "Unknown request URL"}})
        if token != self.admin_token:
            status = 403 if self.works(token) else 401  # a project key is not an admin key
            raise Reply(status, {"error": {"message": "Invalid admin key", "code": "invalid_api_key"}})
        parts = request.path.strip("/").split("/")[2:]  # after v1/organization
        with self._lock:
            if parts == ["usage", "completions"] and request.method == "GET":
                _check_args(request, _USAGE_ARGS)
                return 200, self._usage(request)
            if parts == ["audit_logs"] and request.method == "GET":
                _check_args(request, _AUDIT_ARGS)
                return 200, self._audit(request)
            if parts[:1] == ["projects"] and len(parts) >= 3 and parts[1] == self.project:
                return self._project(request, parts[2:])
        raise Reply(404, {"error": {"message": "Not found"}})

    @staticmethod
    def _page(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
        return {"object": "list", **listing(items, request, "after")}

    def _shown(self, key: dict[str, Any]) -> dict[str, Any]:
        value = key["value"]
        return {
            "object": "organization.project.api_key",
            "id": key["id"],
            "name": key["name"],
            "redacted_value": f"{value[:8]}***{value[-4:]}",
            "created_at": key["created_at"],
            "last_used_at": key["last_used_at"],
            "owner": key["owner"],
        }

    def _project(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        if request.method == "GET" and rest in (["api_keys"], ["service_accounts"]):
            _check_args(request, _LIST_ARGS)
        elif request.query:
            raise _bad_request(f"Unrecognized request argument supplied: {', '.join(request.unknown_args(set()))}")
        if rest == ["api_keys"] and request.method == "GET":
            return 200, self._page([self._shown(k) for k in self.keys.values()], request)
        if len(rest) == 2 and rest[0] == "api_keys" and rest[1] in self.keys:
            if request.method == "GET":
                return 200, self._shown(self.keys[rest[1]])
            if request.method == "DELETE":
                if (self.keys[rest[1]]["owner"] or {}).get("type") == "service_account":
                    # the API reference: "an error if the key belonged to a service account"
                    raise _bad_request("API keys owned by a service account cannot be deleted; delete the service account")
                del self.keys[rest[1]]
                return 200, {"object": "organization.project.api_key.deleted", "id": rest[1], "deleted": True}
        if rest == ["service_accounts"] and request.method == "GET":
            return 200, self._page(list(self.accounts.values()), request)
        if rest == ["service_accounts"] and request.method == "POST":
            name = (request.body or {}).get("name") if isinstance(request.body, dict) else None
            if not isinstance(name, str) or not name:
                raise Reply(400, {"error": {"message": "name is required"}})
            now = int(time.time())
            account: dict[str, Any] = {
                "object": "organization.project.service_account",
                "id": f"svc_acct_{secrets.token_hex(6)}",
                "name": name,
                "role": "member",
                "created_at": now,
            }
            self.accounts[account["id"]] = account
            key_id, value = f"key_{secrets.token_hex(6)}", f"sk-svcacct-{secrets.token_hex(20)}"
            self.keys[key_id] = {
                "id": key_id,
                "name": "Secret Key",
                "value": value,
                "created_at": now,
                "last_used_at": None,
                "owner": {"type": "service_account", "service_account": account},
            }
            api_key = {
                "object": "organization.project.service_account.api_key",
                "value": value,
                "name": "Secret Key",
                "created_at": now,
                "id": key_id,
            }
            return 200, {**account, "api_key": api_key}
        if len(rest) == 2 and rest[0] == "service_accounts" and rest[1] in self.accounts and request.method == "DELETE":
            account = self.accounts.pop(rest[1])
            for key_id in [
                k for k, v in self.keys.items() if (v["owner"] or {}).get("service_account", {}).get("id") == account["id"]
            ]:
                del self.keys[key_id]
            return 200, {"object": "organization.project.service_account.deleted", "id": account["id"], "deleted": True}
        raise Reply(404, {"error": {"message": "Not found"}})

    def _usage(self, request: Request) -> dict[str, Any]:
        start = int(request.arg("start_time") or 0)
        end = int(request.arg("end_time") or 2**40)
        if request.arg("start_time") is None:
            raise _bad_request("start_time is required")
        wanted = set(request.query.get("api_key_ids[]", [])) or None
        buckets: dict[int, dict[str, int]] = {}
        for use in self.uses:
            if start <= use["at"] < end and (wanted is None or use["key_id"] in wanted):
                day = use["at"] - use["at"] % 86400
                per_key = buckets.setdefault(day, {})
                per_key[use["key_id"]] = per_key.get(use["key_id"], 0) + use["requests"]
        data = [
            {
                "object": "bucket",
                "start_time": day,
                "end_time": day + 86400,
                "results": [
                    {
                        "object": "organization.usage.completions.result",
                        "input_tokens": 10 * n,
                        "output_tokens": 5 * n,
                        "num_model_requests": n,
                        "api_key_id": key_id,
                    }
                    for key_id, n in sorted(per_key.items())
                ],
            }
            for day, per_key in sorted(buckets.items())
        ]
        return {"object": "page", "data": data, "has_more": False, "next_page": None}

    def _audit(self, request: Request) -> dict[str, Any]:
        actors = set(request.query.get("actor_ids[]", [])) or None
        start = int(request.arg("effective_at[gte]") or 0)
        end = int(request.arg("effective_at[lte]") or 2**40)
        events = [
            {
                "id": f"audit_{i}",
                "type": "api_key.used",
                "effective_at": use["at"],
                "actor": {"type": "session", "session": {"ip_address": use["ip"]}}
                if use["ip"]
                else {"type": "api_key", "api_key": {"id": use["key_id"]}},
            }
            for i, use in enumerate(self.uses)
            if start <= use["at"] <= end and (actors is None or use["key_id"] in actors)
        ]
        return self._page(events, request)
