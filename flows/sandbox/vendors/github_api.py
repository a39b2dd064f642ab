"""A stand-in for GitHub's credential revocation API and Actions secrets (repository, environment, organization).

Revocation: `POST /credentials/revoke` `{"credentials": [...]}` is unauthenticated, as on github.com (an
authenticated request answers 403), takes at most 1000 tokens (422 otherwise) and answers 202; a revoked token
then gets 401 from `GET /user`. Secrets: `GET .../secrets/public-key` answers this stand-in's own Curve25519 public
key; `PUT .../secrets/{name}` takes `{encrypted_value, key_id}` (org secrets also `visibility`), OPENS the sealed
box with the private key (422 when it does not open or the key_id is stale) and keeps the plaintext, so tests
check the real value (`secret_value`); 201 created, 204 updated. `GET .../secrets/{name}` answers `created_at` and
`updated_at` (seconds, strictly increasing per secret), never the value. The secrets token: `Bearer`/`token`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.sandbox.vendors import Reply, Request, StandIn

SANDBOX_GITHUB_ADMIN = "ghp_" + "S4ndb0xAdm1nT0kenF0rStanch0123456789"
_NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class GitHubSecretsStandIn(StandIn):
    """`token`: may read and write secrets. Scopes are made with `add_repository`/`add_org`."""

    name: str = "github-stand-in"
    token: str = SANDBOX_GITHUB_ADMIN
    scopes: dict[tuple[str, ...], dict[str, dict[str, Any]]] = field(default_factory=dict)
    leaked: dict[str, bool] = field(default_factory=dict)  # token value -> still active
    revoked: list[str] = field(default_factory=list)  # token values revoked through the API (tests inspect)
    _private: Any = field(default=None, repr=False)
    _key_id: str = ""

    def __post_init__(self) -> None:
        from nacl.public import PrivateKey

        self._private = PrivateKey.generate()
        self._key_id = str(secrets.randbelow(10**18))

    # ---- seeding and inspection

    def add_repository(self, repository: str, environments: tuple[str, ...] = ()) -> None:
        with self._lock:
            self.scopes.setdefault(("repos", repository), {})
            for env in environments:
                self.scopes.setdefault(("env", repository, env), {})

    def add_org(self, org: str) -> None:
        with self._lock:
            self.scopes.setdefault(("orgs", org), {})

    def add_leaked_token(self) -> str:
        with self._lock:
            value = "ghp_" + secrets.token_hex(18)
            self.leaked[value] = True
            return value

    def secret_value(self, scope: tuple[str, ...], name: str) -> str | None:
        """The plaintext held for a secret (opened from the sealed box it was sent in)."""
        with self._lock:
            return (self.scopes.get(scope, {}).get(name) or {}).get("value")

    def rotate_public_key(self) -> None:
        """GitHub rotates its key now and then: a PUT sealed to the old key_id is refused."""
        from nacl.public import PrivateKey

        with self._lock:
            self._private = PrivateKey.generate()
            self._key_id = str(secrets.randbelow(10**18))

    # ---- HTTP

    def error_body(self, status: int) -> Any:
        return {"message": "Server Error", "documentation_url": "https://docs.github.com/rest"}

    def route(self, request: Request) -> tuple[int, Any]:
        token = request.bearer()
        if request.path == "/credentials/revoke" and request.method == "POST":
            return self._revoke(request)
        if request.path == "/user" and request.method == "GET":
            with self._lock:
                if token == self.token or self.leaked.get(token):
                    return 200, {"login": "sandbox-user", "id": 1}
            raise Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        if token != self.token:
            raise Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        scope, rest = self._scope(request.path.strip("/").split("/"))
        with self._lock:
            secrets_of = self.scopes.get(scope) if scope else None
            if scope is None or secrets_of is None:
                raise Reply(404, _NOT_FOUND)
            if rest == ["public-key"] and request.method == "GET":
                public = base64.b64encode(bytes(self._private.public_key)).decode()
                return 200, {"key_id": self._key_id, "key": public}
            if len(rest) == 1 and request.method == "GET":
                entry = secrets_of.get(rest[0])
                if entry is None:
                    raise Reply(404, _NOT_FOUND)
                return 200, {k: v for k, v in entry.items() if k != "value"}
            if len(rest) == 1 and request.method == "PUT":
                return self._put(scope, secrets_of, rest[0], request.body)
            if len(rest) == 1 and request.method == "DELETE" and rest[0] in secrets_of:
                del secrets_of[rest[0]]
                return 204, None
            if len(rest) == 2 and rest[1] == "repositories" and rest[0] in secrets_of and request.method == "GET":
                return 200, {"total_count": 0, "repositories": []}
        raise Reply(404, _NOT_FOUND)

    @staticmethod
    def _scope(parts: list[str]) -> tuple[tuple[str, ...] | None, list[str]]:
        """(scope, path after `secrets/`) for the three kinds of secrets paths."""
        if len(parts) >= 5 and parts[0] == "repos" and parts[3:5] == ["actions", "secrets"]:
            return ("repos", f"{parts[1]}/{parts[2]}"), parts[5:]
        if len(parts) >= 6 and parts[0] == "repos" and parts[3] == "environments" and parts[5] == "secrets":
            return ("env", f"{parts[1]}/{parts[2]}", parts[4]), parts[6:]
        if len(parts) >= 4 and parts[0] == "orgs" and parts[2:4] == ["actions", "secrets"]:
            return ("orgs", parts[1]), parts[4:]
        return None, []

    def _put(self, scope: tuple[str, ...], secrets_of: dict[str, dict[str, Any]], name: str, body: Any) -> tuple[int, Any]:
        from nacl.exceptions import CryptoError
        from nacl.public import SealedBox

        if not isinstance(body, dict) or not isinstance(body.get("encrypted_value"), str) or not body.get("key_id"):
            raise Reply(422, {"message": "Invalid request: encrypted_value and key_id are required"})
        if str(body["key_id"]) != self._key_id:
            raise Reply(422, {"message": "Bad request - key_id does not match the current public key"})
        if scope[0] == "orgs" and body.get("visibility") not in ("all", "private", "selected"):
            raise Reply(422, {"message": "Invalid request: visibility is required"})
        try:
            value = SealedBox(self._private).decrypt(base64.b64decode(body["encrypted_value"])).decode()
        except (CryptoError, ValueError):
            raise Reply(422, {"message": "Bad request - the encrypted value could not be decrypted"}) from None
        now = datetime.now(UTC).replace(microsecond=0)
        existing = secrets_of.get(name)
        if existing is not None:
            last = datetime.fromisoformat(existing["updated_at"].replace("Z", "+00:00"))
            now = max(now, last + timedelta(seconds=1))  # each write is told apart by its updated_at
        entry = existing or {"name": name, "created_at": _stamp(now)}
        entry.update({"updated_at": _stamp(now), "value": value})
        if scope[0] == "orgs":
            entry["visibility"] = body["visibility"]
        secrets_of[name] = entry
        return (204, None) if existing else (201, {})

    def _revoke(self, request: Request) -> tuple[int, Any]:
        if request.headers.get("authorization"):
            raise Reply(403, {"message": "Authenticated requests are not allowed on this endpoint"})
        body = request.body if isinstance(request.body, dict) else {}
        credentials = body.get("credentials")
        if not isinstance(credentials, list) or not credentials or len(credentials) > 1000:
            raise Reply(422, {"message": "Validation Failed", "errors": ["credentials: 1 to 1000 strings"]})
        with self._lock:
            for value in credentials:
                if isinstance(value, str) and self.leaked.get(value):
                    self.leaked[value] = False
                    self.revoked.append(value)
        return 202, {}
