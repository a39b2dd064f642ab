"""A stand-in for Anthropic's Admin API (API keys, usage report) and `GET /v1/models`.

As the real API: the admin key in `x-api-key` with an `anthropic-version` header (400 without it, 401 for a bad
key, 403 for a normal key on admin paths); `GET /v1/organizations/api_keys[/{id}]`, `POST .../api_keys/{id}`
with `{"status": "inactive" | "archived"}` (no create, no delete: keys are made in the Console, i.e. `add_key`);
`GET /v1/organizations/usage_report/messages` answers token buckets per key from `record_use`.

Query parameters are checked as the API reference names them: lists take `after_id`, `before_id`, `limit`
(1-1000), `status` (active | inactive | archived | expired), `workspace_id`, `created_by_user_id`; the usage
report takes arrays with `[]` (`api_key_ids[]`, `group_by[]`...) as its reference examples send them (and the
official SDK, `Querystring(array_format="brackets")`). A name an endpoint does not document answers 400.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.sandbox.vendors import Reply, Request, StandIn, listing

SANDBOX_ANTHROPIC_ADMIN = "sk-ant-admin01-sandbox-0123456789abcdef"


STATUSES = ("active", "inactive", "archived", "expired")
_LIST_ARGS = frozenset({"after_id", "before_id", "limit", "status", "workspace_id", "created_by_user_id"})
_REPORT_ARRAYS = (
    "api_key_ids",
    "workspace_ids",
    "models",
    "service_tiers",
    "context_window",
    "inference_geos",
    "speeds",
    "account_ids",
    "service_account_ids",
    "group_by",
)
_REPORT_ARGS = frozenset({"starting_at", "ending_at", "bucket_width", "limit", "page", *(f"{a}[]" for a in _REPORT_ARRAYS)})
_GROUPS = ("api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo", "speed", "account_id")


def _invalid(message: str) -> Reply:
    return Reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": message}})


def _check_args(request: Request, allowed: frozenset[str]) -> None:
    unknown = request.unknown_args(allowed)
    if unknown:
        raise _invalid(f"{', '.join(unknown)}: Extra inputs are not permitted")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@dataclass
class AnthropicStandIn(StandIn):
    name: str = "anthropic-stand-in"
    admin_token: str = SANDBOX_ANTHROPIC_ADMIN
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    uses: list[tuple[str, datetime, int]] = field(default_factory=list)  # (key id, when, tokens)

    def add_key(self, name: str) -> tuple[str, str]:
        """A key made by a person in the Console: (id, value)."""
        with self._lock:
            key_id, value = f"apikey_{secrets.token_hex(8)}", f"sk-ant-api03-{secrets.token_hex(24)}"
            self.keys[key_id] = {
                "id": key_id,
                "type": "api_key",
                "name": name,
                "status": "active",
                "created_at": _stamp(datetime.now(UTC)),
                "partial_key_hint": f"{value[:14]}...{value[-4:]}",
                "workspace_id": None,
                "value": value,
            }
            return key_id, value

    def record_use(self, key_id: str, at: datetime, tokens: int) -> None:
        with self._lock:
            self.uses.append((key_id, at, tokens))

    def works(self, value: str) -> bool:
        with self._lock:
            return any(k["value"] == value and k["status"] == "active" for k in self.keys.values())

    def error_body(self, status: int) -> Any:
        return {"type": "error", "error": {"type": "api_error", "message": "stand-in failure"}}

    @staticmethod
    def _shown(key: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in key.items() if k != "value"}

    def route(self, request: Request) -> tuple[int, Any]:
        if "anthropic-version" not in request.headers:
            raise Reply(
                400,
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "anthropic-version header is required"},
                },
            )
        key = request.headers.get("x-api-key", "")
        if request.path == "/v1/models" and request.method == "GET":
            _check_args(request, frozenset({"after_id", "before_id", "limit"}))
            if not self.works(key):
                raise Reply(
                    401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
                )
            return 200, {"data": [{"id": "claude-sandbox", "type": "model"}], "has_more": False}
        if key != self.admin_token:
            status = 403 if self.works(key) else 401
            raise Reply(status, {"type": "error", "error": {"type": "authentication_error", "message": "invalid admin key"}})
        parts = request.path.strip("/").split("/")
        with self._lock:
            if parts == ["v1", "organizations", "api_keys"] and request.method == "GET":
                _check_args(request, _LIST_ARGS)
                limit, wanted = request.arg("limit"), request.arg("status")
                if limit is not None and (not limit.isdigit() or not 1 <= int(limit) <= 1000):
                    raise _invalid("limit: Input should be less than or equal to 1000")
                if wanted is not None and wanted not in STATUSES:
                    raise _invalid("status: Input should be 'active', 'inactive', 'archived' or 'expired'")
                keys = [self._shown(k) for k in self.keys.values() if wanted in (None, k["status"])]
                return 200, listing(keys, request, "after_id")
            if parts[:3] == ["v1", "organizations", "api_keys"] and len(parts) == 4 and request.query:
                _check_args(request, frozenset())
            if parts[:3] == ["v1", "organizations", "api_keys"] and len(parts) == 4 and parts[3] in self.keys:
                entry = self.keys[parts[3]]
                if request.method == "GET":
                    return 200, self._shown(entry)
                if request.method == "POST":
                    body = request.body if isinstance(request.body, dict) else {}
                    wanted = body.get("status")
                    if wanted is not None and wanted not in ("active", "inactive", "archived"):
                        raise Reply(
                            400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad status"}}
                        )
                    if entry["status"] == "archived" and wanted:
                        raise Reply(
                            400,
                            {
                                "type": "error",
                                "error": {"type": "invalid_request_error", "message": "archived keys cannot change"},
                            },
                        )
                    entry.update({k: body[k] for k in ("name", "status") if k in body})
                    return 200, self._shown(entry)
            if parts == ["v1", "organizations", "usage_report", "messages"] and request.method == "GET":
                return 200, self._report(request)
        raise Reply(404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}})

    def _report(self, request: Request) -> dict[str, Any]:
        _check_args(request, _REPORT_ARGS)
        if any(group not in _GROUPS for group in request.query.get("group_by[]", [])):
            raise _invalid("group_by: Input should be one of " + ", ".join(_GROUPS))
        start = _parse(request.arg("starting_at"))
        if start is None:
            raise Reply(
                400, {"type": "error", "error": {"type": "invalid_request_error", "message": "starting_at is required"}}
            )
        end = _parse(request.arg("ending_at")) or datetime.now(UTC)
        wanted = set(request.query.get("api_key_ids[]", [])) or None
        days: dict[datetime, dict[str, int]] = {}
        for key_id, at, tokens in self.uses:
            if start <= at < end and (wanted is None or key_id in wanted):
                day = at.replace(hour=0, minute=0, second=0, microsecond=0)
                days.setdefault(day, {})[key_id] = days.get(day, {}).get(key_id, 0) + tokens
        data = [
            {
                "starting_at": _stamp(day),
                "ending_at": _stamp(day + timedelta(days=1)),
                "results": [
                    {
                        "api_key_id": key_id,
                        "uncached_input_tokens": n,
                        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
                        "cache_read_input_tokens": 0,
                        "output_tokens": 0,
                    }
                    for key_id, n in sorted(per_key.items())
                ],
            }
            for day, per_key in sorted(days.items())
        ]
        return {"data": data, "has_more": False, "next_page": None}
