"""A stand-in for a vendor's key-management API (the vendor-breach case): mint, check and revoke API keys.

POST /v1/keys (admin token; honours Idempotency-Key) mints a key; GET /v1/check answers 200 to a working key
and 401 otherwise; POST /v1/keys/{key_id}/revoke (admin token) revokes one. Every call is recorded.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from flows.sandbox.loopback import LoopbackServer, reply

SANDBOX_ADMIN_TOKEN = "vendor-admin-sandbox-token"  # noqa: S105 - accepted by the stand-in only


@dataclass
class VendorKey:
    key_id: str
    api_key: str
    name: str
    active: bool = True


@dataclass
class VendorStandIn:
    admin_token: str = SANDBOX_ADMIN_TOKEN
    keys: dict[str, VendorKey] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _idempotent: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    _http: LoopbackServer | None = None

    @property
    def base_url(self) -> str:
        if self._http is None:
            raise RuntimeError("start() the vendor stand-in first")
        return self._http.url

    def start(self) -> VendorStandIn:
        self._http = LoopbackServer(self._handle, "vendor-stand-in").start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()

    def reset(self) -> None:
        with self._lock:
            self.keys.clear()
            self.calls.clear()
            self._idempotent.clear()

    def mint(self, name: str) -> VendorKey:
        with self._lock:
            key = VendorKey(key_id=f"key_{secrets.token_hex(6)}", api_key=f"vk_sandbox_{secrets.token_hex(16)}", name=name)
            self.keys[key.key_id] = key
            return key

    def is_active(self, api_key: str) -> bool:
        with self._lock:
            return any(k.api_key == api_key and k.active for k in self.keys.values())

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length) or b"null") if length else None
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            self.calls.append((request.command, path))
        if request.command == "GET" and path == "/v1/check":
            reply(request, 200 if self.is_active(token) else 401, {"ok": self.is_active(token)})
            return
        if token != self.admin_token:
            reply(request, 401, {"error": "invalid admin token"})
            return
        if request.command == "POST" and path == "/v1/keys":
            idem = request.headers.get("Idempotency-Key")
            with self._lock:
                existing = self.keys.get(self._idempotent.get(idem or "", ""))
            key = existing or self.mint(str((body or {}).get("name", "")))
            if idem:
                with self._lock:
                    self._idempotent[idem] = key.key_id
            reply(request, 201, {"key_id": key.key_id, "api_key": key.api_key})
            return
        parts = path.strip("/").split("/")
        if request.command == "POST" and len(parts) == 4 and parts[:2] == ["v1", "keys"] and parts[3] == "revoke":
            with self._lock:
                revoked = self.keys.get(parts[2])
                if revoked is not None:
                    revoked.active = False
            reply(request, 200 if revoked else 404, {"revoked": bool(revoked)})
            return
        reply(request, 404, {"error": "no such endpoint"})
