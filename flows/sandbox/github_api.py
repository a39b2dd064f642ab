"""A stand-in for GitHub's REST API, the part the alert intake reads: one secret-scanning alert.

GET /repos/{owner}/{repo}/secret-scanning/alerts/{number} with `Authorization: Bearer <token>` answers the
alert as GitHub does (number, state, secret_type, secret...), 401 `Bad credentials` for another token and 404
`Not Found` for an alert it does not hold. Every request is recorded (path and whether the token was right).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from flows.sandbox.loopback import LoopbackServer, reply

SANDBOX_GITHUB_TOKEN = "github-sandbox-token"  # noqa: S105 - accepted by the stand-in only
_ALERT_PATH = re.compile(r"^/repos/([^/]+/[^/]+)/secret-scanning/alerts/([0-9]+)$")


@dataclass
class GitHubStandIn:
    token: str = SANDBOX_GITHUB_TOKEN
    alerts: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _http: LoopbackServer | None = None

    @property
    def base_url(self) -> str:
        if self._http is None:
            raise RuntimeError("start() the GitHub stand-in first")
        return self._http.url

    def start(self) -> GitHubStandIn:
        self._http = LoopbackServer(self._handle, "github-stand-in").start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None

    def add_alert(self, repository: str, number: int, secret_type: str, secret: str) -> None:
        with self._lock:
            self.alerts[(repository, number)] = {
                "number": number,
                "state": "open",
                "secret_type": secret_type,
                "secret_type_display_name": secret_type.replace("_", " "),
                "secret": secret,
                "validity": "active",
                "url": f"https://api.github.com/repos/{repository}/secret-scanning/alerts/{number}",
                "html_url": f"https://github.com/{repository}/security/secret-scanning/{number}",
            }

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        authorized = request.headers.get("Authorization", "") in (f"Bearer {self.token}", f"token {self.token}")
        with self._lock:
            self.calls.append((request.path, authorized))
        if not authorized:
            reply(request, 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            return
        found = _ALERT_PATH.match(request.path) if request.command == "GET" else None
        alert = self.alerts.get((found.group(1), int(found.group(2)))) if found else None
        if alert is None:
            reply(request, 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
            return
        reply(request, 200, alert)
