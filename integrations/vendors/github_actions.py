"""GitHub Actions secrets (repository, organization, environment) as consumers of a credential.

GitHub's REST API: `GET .../actions/secrets/public-key` answers `{key_id, key}` (a Curve25519 key, base64);
the value is encrypted with a libsodium sealed box to that key and sent with `PUT .../actions/secrets/{name}`
as `{encrypted_value, key_id}` (201 created, 204 updated); `GET .../actions/secrets/{name}` answers the secret's
`created_at`/`updated_at`, never its value. Paths: `/repos/{owner}/{repo}/actions/secrets`,
`/orgs/{org}/actions/secrets` (with `visibility`), `/repos/{owner}/{repo}/environments/{env}/secrets`.

Idempotency: a GitHub secret can be neither read nor annotated, so the write's marker is the secret's
`updated_at` after the write, which the caller records with the fingerprint; a write whose recorded marker
(`settings.recorded_marker(describe(), fingerprint)`) still equals the secret's `updated_at` is skipped: nobody
has written the secret since that value went in. Verify: `updated_at` still equals the marker.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import msgspec

from integrations.vendors._api import ReadFirst, VendorApi, segment
from integrations.vendors.base import AdapterSettings, ConsumerWrite, SecretValue, VendorError, Verified
from integrations.vendors.github import API_HEADERS, DEFAULT_URL


class _PublicKey(msgspec.Struct):
    key_id: str
    key: str


class _Secret(msgspec.Struct):
    name: str
    updated_at: str
    created_at: str | None = None
    visibility: str | None = None


class _Repos(msgspec.Struct):
    total_count: int = 0
    repositories: list[dict[str, Any]] = []


def seal(public_key_b64: str, value: SecretValue) -> str:
    """The value in a libsodium sealed box to GitHub's public key, base64 (what `encrypted_value` takes)."""
    from nacl.exceptions import CryptoError
    from nacl.public import PublicKey, SealedBox

    try:
        key = PublicKey(base64.b64decode(public_key_b64, validate=True))
    except (ValueError, TypeError, CryptoError):
        raise VendorError("github: the Actions public key is not a base64 Curve25519 key") from None
    return base64.b64encode(SealedBox(key).encrypt(value.reveal().encode())).decode()


class GitHubActionsConsumer(ReadFirst[_Secret]):
    """One Actions secret. Spec: `secret` and one of `repository` (owner/repo, with `environment` for an
    environment secret) or `org` (with `visibility`: all | private | selected, kept from the existing secret
    when not given)."""

    kind: ClassVar[str] = "github_actions"
    scopes: ClassVar[tuple[str, ...]] = (
        "github: repository secrets: fine-grained token with Secrets read and write (classic: repo)",
        "github: environment secrets: Environments read and Secrets read and write (classic: repo)",
        "github: organization secrets: organization Secrets read and write (classic: admin:org)",
    )

    class Spec(msgspec.Struct, forbid_unknown_fields=True):
        secret: str
        repository: str | None = None
        environment: str | None = None
        org: str | None = None
        visibility: str | None = None

    def __init__(self, spec: Spec, settings: AdapterSettings):
        if bool(spec.repository) == bool(spec.org):
            raise ValueError("github_actions consumer: give exactly one of repository (owner/repo) or org")
        if spec.repository and spec.repository.count("/") != 1:
            raise ValueError("github_actions consumer: repository is owner/repo")
        if spec.environment and not spec.repository:
            raise ValueError("github_actions consumer: an environment belongs to a repository")
        if spec.visibility not in (None, "all", "private", "selected") or (spec.visibility and not spec.org):
            raise ValueError("github_actions consumer: visibility (all | private | selected) is for org secrets")
        self.spec = spec
        self.settings = settings
        self.api = VendorApi("github", settings, DEFAULT_URL, headers=dict(API_HEADERS))
        if spec.org:
            self.base = f"/orgs/{segment(spec.org)}/actions/secrets"
        else:
            owner, repo = (spec.repository or "").split("/")
            self.base = f"/repos/{segment(owner)}/{segment(repo)}"
            if spec.environment:
                self.base += f"/environments/{segment(spec.environment)}/secrets"
            else:
                self.base += "/actions/secrets"
        self.path = f"{self.base}/{segment(spec.secret)}"

    def describe(self) -> str:
        if self.spec.org:
            return f"github:{self.spec.org} org secret {self.spec.secret}"
        env = f" env {self.spec.environment}" if self.spec.environment else ""
        return f"github:{self.spec.repository}{env} secret {self.spec.secret}"

    def _current(self) -> _Secret | None:
        return self.api.get(self.path, _Secret, missing_ok=True)

    def write(self, value: SecretValue, fingerprint: str, *, dry_run: bool) -> ConsumerWrite:
        current = self._read_first(value, fingerprint, dry_run=dry_run)
        if isinstance(current, ConsumerWrite):
            return current
        recorded = self.settings.recorded_marker(self.describe(), fingerprint)
        if current is not None and recorded and current.updated_at == recorded:
            detail = f"{self.describe()} unchanged since this value was written ({recorded})"
            return ConsumerWrite(changed=False, marker=recorded, detail=detail, dry_run=dry_run)
        if dry_run:
            return self._would(f"{'update' if current else 'create'} {self.describe()}")
        key = self.api.get(f"{self.base}/public-key", _PublicKey)
        assert key is not None  # noqa: S101 - not missing_ok
        body: dict[str, Any] = {"encrypted_value": seal(key.key, value), "key_id": key.key_id}
        if self.spec.org:
            visibility = self.spec.visibility or (current.visibility if current else None) or "private"
            body["visibility"] = visibility
            if visibility == "selected":
                body["selected_repository_ids"] = self._selected_ids()
        self.api.call("PUT", self.path, body)
        written = self._current()
        if written is None:
            raise VendorError(f"github: {self.describe()} is missing right after it was written")
        return ConsumerWrite(changed=True, marker=written.updated_at, detail=f"wrote {self.describe()}")

    def _selected_ids(self) -> list[int]:
        """The repositories an org secret is shared with (a PUT with visibility=selected names them again)."""
        path = f"{self.path}/repositories"
        repos = self.api.get(path, _Repos, query={"per_page": 100})
        assert repos is not None  # noqa: S101 - not missing_ok
        ids = [r.get("id") for r in repos.repositories]
        if not all(isinstance(i, int) for i in ids):
            raise VendorError(f"github: GET {path} answered a repository without a numeric id")
        return [int(i) for i in ids if isinstance(i, int)]

    def verify(self, write: ConsumerWrite, fingerprint: str) -> Verified:
        current = self._written(write)
        if isinstance(current, Verified):
            return current
        if current.updated_at != write.marker:
            return Verified(
                ok=False, evidence=f"{self.describe()} was written again at {current.updated_at} (ours: {write.marker})"
            )
        return Verified(ok=True, evidence=f"{self.describe()} updated_at {current.updated_at} is this write's")
