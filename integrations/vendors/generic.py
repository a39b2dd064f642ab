"""A vendor with a plain key-management HTTP API: today's contract of `aws.secrets.rotate_vendor_secret`.

`POST mint_url` (admin token, `Idempotency-Key`) answers `{"key_id", "api_key"}`; `GET check_url` with a key
answers 2xx while it works (401/403 once revoked); `POST revoke_url` (`{key_id}` in it replaced) revokes one key,
answering 404 (or 410) when there is no such key. The sandbox's `flows/sandbox/vendor_api.py` speaks it.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from integrations.vendors._api import Unlisted, VendorApi, segment
from integrations.vendors.base import AdapterSettings, ManualStepRequired, Minted, NotSupported, SecretValue, VendorError


class _Minted(msgspec.Struct):
    key_id: str
    api_key: str


class GenericIssuer(Unlisted):
    """Settings options: `mint_url` (none: a person mints), `check_url`, `revoke_url` (with `{key_id}`)."""

    kind: ClassVar[str] = "generic"
    can_mint: ClassVar[bool] = True  # without a mint_url, mint raises ManualStepRequired
    scopes: ClassVar[tuple[str, ...]] = ("vendor: an admin token that can mint and revoke API keys",)
    no_list: ClassVar[str] = "vendor: the generic contract lists no keys"
    no_key: ClassVar[str] = "vendor: the generic contract looks up no key"
    no_usage: ClassVar[str] = "vendor: the generic contract reports no usage"

    def __init__(self, settings: AdapterSettings):
        from integrations.context import HttpClient

        self.settings = settings
        self.urls: dict[str, str | None] = {k: settings.options.get(k) for k in ("mint_url", "check_url", "revoke_url")}
        for url in self.urls.values():
            if url:
                HttpClient.check_url(url)
        # the URLs are absolute: the API's base is empty and each call's "path" is the whole URL
        self.api = VendorApi("vendor", settings, "")

    def _error(self, method: str, url: str, status: int | None) -> VendorError:
        from urllib.parse import urlparse

        retryable = status is None or status == 429 or status >= 500
        return VendorError(self.api.explain(method, urlparse(url).path, status), retryable=retryable)

    def _call_url(self, method: str, url: str, body: object = None, idempotency: str | None = None) -> object:
        from integrations.context import HttpCallError

        try:
            return self.api.http.call(method, url, self.api.token().reveal(), body, idempotency=idempotency)
        except HttpCallError as exc:
            raise self._error(method, url, exc.status) from None

    def mint(self, name: str, idempotency_key: str) -> Minted:
        url = self.urls["mint_url"]
        if not url:
            raise ManualStepRequired("vendor: no mint_url configured; a person makes the new key")
        answer = self._call_url("POST", url, {"name": name}, idempotency=idempotency_key)
        minted = self.api.typed(answer, _Minted, "POST", "mint_url")
        self.settings.register_secret(minted.api_key)
        return Minted(key_id=minted.key_id, value=SecretValue(minted.api_key), name=name)

    def check(self, value: SecretValue) -> bool:
        from integrations.context import HttpCallError

        url = self.urls["check_url"]
        if not url:
            raise NotSupported("vendor: no check_url configured")
        self.settings.register_secret(value.reveal())
        try:
            self.api.http.call("GET", url, value.reveal())
        except HttpCallError as exc:
            if exc.status in (401, 403):
                return False
            raise self._error("GET", url, exc.status) from None
        return True

    def revoke(self, key_id: str, *, dry_run: bool) -> bool:
        """POST revoke_url; False when the vendor answers 404/410 (no such key: already gone)."""
        url = self.urls["revoke_url"]
        if not url:
            raise NotSupported("vendor: no revoke_url configured")
        if dry_run:
            return True  # the contract has no read of one key: a dry-run says it would revoke
        from integrations.context import HttpCallError

        target = url.replace("{key_id}", segment(key_id))
        try:
            self.api.http.call("POST", target, self.api.token().reveal(), {"key_id": key_id})
        except HttpCallError as exc:
            if exc.status in (404, 410):
                return False
            raise self._error("POST", url, exc.status) from None
        return True
