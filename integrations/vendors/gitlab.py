"""GitLab CI/CD variables (project or group) as consumers of a credential.

GitLab's REST API v4 (`PRIVATE-TOKEN` header): `GET /projects/:id/variables/:key` (404 when missing),
`PUT` to update it, `POST /projects/:id/variables` to create it; the same under `/groups/:id/variables`.
Project variables are told apart by `filter[environment_scope]`. The write is masked and raw (no `$` expansion)
and keeps the fingerprint in the variable's `description`, so a second write of the same value changes nothing
(the value itself is compared too where GitLab shows it). `verify` hashes the value GitLab shows and compares it
with the fingerprint; only a hidden variable (whose value GitLab never shows) is judged by its note, and says so.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from integrations.vendors._api import ReadFirst, VendorApi, segment, value_fingerprint
from integrations.vendors.base import AdapterSettings, ConsumerWrite, SecretValue, VendorError, Verified

DEFAULT_URL = "https://gitlab.com"
NOTE = "Managed by Stanch; fingerprint "


class _Variable(msgspec.Struct):
    key: str
    value: str | None = None  # absent for a hidden variable
    description: str | None = None
    masked: bool = False
    environment_scope: str = "*"


class GitLabVariableConsumer(ReadFirst[_Variable]):
    """Spec: `key` and one of `project` (id or full path) or `group`; `environment_scope` (default `*`),
    `protected` (default false), `masked` (default true: GitLab then wants 8+ characters of its alphabet)."""

    kind: ClassVar[str] = "gitlab"
    scopes: ClassVar[tuple[str, ...]] = (
        "gitlab: a token with the api scope, Maintainer of the project (Owner of the group)",
    )

    class Spec(msgspec.Struct, forbid_unknown_fields=True):
        key: str
        project: str | None = None
        group: str | None = None
        environment_scope: str = "*"
        protected: bool = False
        masked: bool = True

    def __init__(self, spec: Spec, settings: AdapterSettings):
        if bool(spec.project) == bool(spec.group):
            raise ValueError("gitlab consumer: give exactly one of project or group")
        self.spec = spec
        self.settings = settings
        self.api = VendorApi("gitlab", settings, DEFAULT_URL, auth="PRIVATE-TOKEN")
        owner = f"projects/{segment(spec.project)}" if spec.project else f"groups/{segment(spec.group or '')}"
        self.collection = f"/api/v4/{owner}/variables"
        self.path = f"{self.collection}/{segment(spec.key)}"
        self.query: dict[str, Any] | None = {"filter[environment_scope]": spec.environment_scope} if spec.project else None

    def describe(self) -> str:
        where = f"project {self.spec.project}" if self.spec.project else f"group {self.spec.group}"
        scope = f" ({self.spec.environment_scope})" if self.spec.environment_scope != "*" else ""
        return f"gitlab:{where} variable {self.spec.key}{scope}"

    def _current(self) -> _Variable | None:
        answer = self.api.call("GET", self.path, query=self.query, missing_ok=True)
        return None if answer is None else self.api.typed(answer, _Variable, "GET", self.path)

    def write(self, value: SecretValue, fingerprint: str, *, dry_run: bool) -> ConsumerWrite:
        current = self._read_first(value, fingerprint, dry_run=dry_run)
        if isinstance(current, ConsumerWrite):
            return current
        note = NOTE + fingerprint
        # the note, and the value itself where GitLab shows it (someone may have changed it and kept the note)
        if current is not None and current.description == note and current.value in (None, value.reveal()):
            return self._holds(note, dry_run=dry_run)
        if dry_run:
            return self._would(f"{'update' if current else 'create'} {self.describe()}")
        body: dict[str, Any] = {
            "value": value.reveal(),
            "masked": self.spec.masked,
            "protected": self.spec.protected,
            "raw": True,
            "description": note,
        }
        try:
            if current is not None:
                self.api.call("PUT", self.path, body, query=self.query)
            else:
                body |= {"key": self.spec.key, "environment_scope": self.spec.environment_scope}
                self.api.call("POST", self.collection, body)
        except VendorError as exc:
            if "answered 400" in str(exc) and self.spec.masked:
                raise VendorError(
                    f"{exc}; a masked GitLab variable needs 8+ characters of its masking alphabet, no spaces"
                ) from None
            raise
        return ConsumerWrite(changed=True, marker=note, detail=f"{'updated' if current else 'created'} {self.describe()}")

    def verify(self, write: ConsumerWrite, fingerprint: str) -> Verified:
        current = self._written(write)
        if isinstance(current, Verified):
            return current
        if current.value is not None:
            self.settings.register_secret(current.value)
            if value_fingerprint(current.value) != fingerprint:
                return Verified(ok=False, evidence=f"{self.describe()} holds another value (its hash differs)")
            proof = "holds this value (its hash matches the fingerprint)"
        elif current.description == NOTE + fingerprint:
            proof = "is hidden (GitLab shows no value): judged by its fingerprint note only"
        else:
            return Verified(ok=False, evidence=f"{self.describe()} is hidden and carries another fingerprint note")
        if self.spec.masked and not current.masked:
            return Verified(ok=False, evidence=f"{self.describe()} holds the value but is not masked")
        return Verified(ok=True, evidence=f"{self.describe()} {proof}")
