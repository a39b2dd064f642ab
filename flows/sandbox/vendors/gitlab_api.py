"""A stand-in for GitLab's REST API v4 CI/CD variables of projects and groups.

As the real API: `PRIVATE-TOKEN` (or `Authorization: Bearer`) header, 401 otherwise; projects by id or
URL-encoded path; `GET/PUT/DELETE /api/v4/projects/:id/variables/:key` (project variables told apart by
`filter[environment_scope]`), `POST /api/v4/projects/:id/variables` (400 "has already been taken" for a
duplicate); the same under `/groups/:id`. A masked value must be 8+ characters without spaces (400 otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flows.sandbox.vendors import Reply, Request, StandIn

SANDBOX_GITLAB_TOKEN = "glpat-sandbox-0123456789abcdef"  # noqa: S105 - accepted by the stand-in only
_MASKABLE = re.compile(r"^[A-Za-z0-9@:.~_+/=-]{8,}$")
_FIELDS = ("value", "masked", "protected", "raw", "description", "environment_scope", "variable_type")


@dataclass
class GitLabStandIn(StandIn):
    name: str = "gitlab-stand-in"
    token: str = SANDBOX_GITLAB_TOKEN
    # ("projects" | "groups", id or full path) -> {(key, environment_scope): variable}
    owners: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)

    def add_project(self, path: str) -> None:
        with self._lock:
            self.owners.setdefault(("projects", path), {})

    def add_group(self, path: str) -> None:
        with self._lock:
            self.owners.setdefault(("groups", path), {})

    def variable(self, owner: tuple[str, str], key: str, scope: str = "*") -> dict[str, Any] | None:
        with self._lock:
            found = self.owners.get(owner, {}).get((key, scope))
            return dict(found) if found else None

    def error_body(self, status: int) -> Any:
        return {"message": "500 Internal Server Error"}

    def route(self, request: Request) -> tuple[int, Any]:
        if request.headers.get("private-token", request.bearer()) != self.token:
            raise Reply(401, {"message": "401 Unauthorized"})
        # the owner id arrives URL-encoded (group%2Fproject): split the raw path, then decode each segment
        from urllib.parse import unquote

        parts = [unquote(p) for p in request.raw_path.strip("/").split("/")]
        if len(parts) < 5 or parts[:2] != ["api", "v4"] or parts[2] not in ("projects", "groups") or parts[4] != "variables":
            raise Reply(404, {"message": "404 Not Found"})
        owner = (parts[2], parts[3])
        rest = parts[5:]
        scope = request.arg("filter[environment_scope]") or "*"
        body = request.body if isinstance(request.body, dict) else {}
        with self._lock:
            variables = self.owners.get(owner)
            if variables is None:
                raise Reply(404, {"message": f"404 {parts[2][:-1].title()} Not Found"})
            if not rest and request.method == "GET":
                return 200, [dict(v) for v in variables.values()]
            if not rest and request.method == "POST":
                key = body.get("key")
                if not isinstance(key, str) or not isinstance(body.get("value"), str):
                    raise Reply(400, {"message": {"key": ["can't be blank"]}})
                env = str(body.get("environment_scope") or "*")
                if (key, env) in variables:
                    raise Reply(400, {"message": {"key": [f"({key}) has already been taken"]}})
                self._check_masked(body, body)
                entry: dict[str, Any] = {
                    "key": key,
                    "variable_type": "env_var",
                    "protected": False,
                    "masked": False,
                    "raw": False,
                    "description": None,
                    "environment_scope": env,
                }
                entry.update({k: body[k] for k in _FIELDS if k in body})
                variables[(key, env)] = entry
                return 201, dict(entry)
            if len(rest) == 1:
                found = variables.get((rest[0], scope))
                if found is None:
                    raise Reply(404, {"message": "404 Variable Not Found"})
                if request.method == "GET":
                    return 200, dict(found)
                if request.method == "PUT":
                    self._check_masked(body, found)
                    found.update({k: body[k] for k in _FIELDS if k in body and k != "environment_scope"})
                    return 200, dict(found)
                if request.method == "DELETE":
                    del variables[(rest[0], scope)]
                    return 204, None
        raise Reply(404, {"message": "404 Not Found"})

    @staticmethod
    def _check_masked(body: dict[str, Any], entry: dict[str, Any]) -> None:
        masked = body.get("masked", entry.get("masked"))
        value = body.get("value", entry.get("value"))
        if masked and not (isinstance(value, str) and _MASKABLE.match(value)):
            raise Reply(400, {"message": {"value": ["is invalid"]}})
