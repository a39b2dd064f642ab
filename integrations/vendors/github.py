"""GitHub as an issuer: leaked tokens revoked through the credential revocation API.

Facts from GitHub's REST reference: `POST /credentials/revoke` with `{"credentials": [...]}` (up to 1000 per
request) revokes personal access tokens (classic `ghp_`, fine-grained `github_pat_`) and, since 2026, OAuth app
and GitHub App user tokens (`gho_`, `ghu_`, `ghr_`), whoever owns them; it answers 202, 422 when spammed or
invalid. On github.com it is unauthenticated (an authenticated request answers 403) and limited to 60 requests an
hour; GitHub Enterprise Server takes an authenticated request instead. The owner is notified and the token
cannot be reactivated. There is nothing to mint, list or report: revoking is the only operation.
"""

from __future__ import annotations

from typing import ClassVar

from integrations.vendors._api import Unlisted, VendorApi, dry_read
from integrations.vendors.base import AdapterSettings, ManualStepRequired, Minted, SecretValue, VendorError

DEFAULT_URL = "https://api.github.com"
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubIssuer(Unlisted):
    """GitHub tokens, revoked by value. `revoke(key_id)` takes a secret reference (read with the run's
    `read_secret`) holding the leaked token, since the API identifies a token only by its value.

    `revokes_by_value`: the vendor actions never pass the credential's own store to `revoke` (after a rotation its
    current value is the NEW token); they read the store's old version by its version id and call `revoke_value`.

    Settings options: `authenticated` (True for GitHub Enterprise Server, which wants a token: `token_ref`).
    """

    kind: ClassVar[str] = "github"
    can_mint: ClassVar[bool] = False
    revokes_by_value: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = (
        "github: none (POST /credentials/revoke is unauthenticated on github.com; 60 requests an hour)",
    )
    no_list: ClassVar[str] = "github: the credential revocation API lists nothing"
    no_key: ClassVar[str] = "github: the credential revocation API looks nothing up"
    no_usage: ClassVar[str] = "github: no per-token usage API; review the organization's audit log instead"

    def __init__(self, settings: AdapterSettings):
        self.settings = settings
        self.api = VendorApi("github", settings, DEFAULT_URL, headers=dict(API_HEADERS))
        self.authenticated = bool(settings.options.get("authenticated", False))

    def mint(self, name: str, idempotency_key: str) -> Minted:
        raise ManualStepRequired(
            "github: tokens are made by their owner (Settings > Developer settings); put the new token into the "
            "credential's secret"
        )

    def check(self, value: SecretValue) -> bool:
        """The token still works: `GET /user` with it answers 200 (401 once revoked)."""
        return self.api.works(value, "/user")

    def revoke(self, key_id: str, *, dry_run: bool) -> bool:
        if self.settings.read_secret is None:
            raise VendorError("github: revoking needs a secret reader to read the leaked token by reference")
        value = self.settings.read_secret(key_id)
        self.settings.register_secret(value.reveal())
        return self.revoke_value(value, dry_run=dry_run)

    def revoke_value(self, value: SecretValue, *, dry_run: bool) -> bool:
        """Revoke one token by value; False when it no longer works (already revoked or expired)."""
        self.settings.register_secret(value.reveal())
        read, works = dry_read(lambda: self.check(value), dry_run=dry_run)
        if not read:  # a dry-run's client calls no vendor: say it would revoke
            return True
        if not works:
            return False
        if dry_run:
            return True
        self.api.call("POST", "/credentials/revoke", {"credentials": [value.reveal()]}, anonymous=not self.authenticated)
        return True
