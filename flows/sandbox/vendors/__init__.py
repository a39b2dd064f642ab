"""Local stand-ins for the vendor breach's outside APIs: one module per API, each speaking its real protocol.

Every stand-in is a small threaded HTTP server on 127.0.0.1 (a free port), keeps its state in memory, checks
credentials as the real API does (401/403), records each request as (method, path, status) and never a body,
header or query value (where secrets travel), and can be told to fail a resource: `fail("OPENAI_API_KEY")`
makes every request whose path contains that text answer 500 (or the status and body given) until `heal()`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from flows.sandbox.loopback import LoopbackServer

MUTATING = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query
    raw_path: str  # as sent, without the query (segments still escaped)
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: Any

    def bearer(self) -> str:
        value = self.headers.get("authorization", "")
        for scheme in ("Bearer ", "token "):
            if value.startswith(scheme):
                return value[len(scheme) :].strip()
        return ""

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def unknown_args(self, allowed: set[str] | frozenset[str]) -> list[str]:
        """The query parameter names the endpoint does not document (a misspelt or misencoded one included)."""
        return sorted(name for name in self.query if name not in allowed)


def listing(items: list[dict[str, Any]], request: Request, cursor: str) -> dict[str, Any]:
    """One page of `items` as OpenAI and Anthropic list: those after the id in the query parameter `cursor`, at most
    `limit` (default 20), with `has_more` and the page's first and last ids."""
    after = request.arg(cursor)
    ids = [i["id"] for i in items]
    if after:
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = int(request.arg("limit") or 20)
    page = items[:limit]
    return {
        "data": page,
        "has_more": len(items) > limit,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    status: int


class Reply(Exception):
    """Raised by a route to answer at once (an auth failure, a 404)."""

    def __init__(self, status: int, body: Any = None):
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass
class StandIn(LoopbackServer):
    """The server, the record of calls and the failure switches. Subclasses implement `route`.

    A LoopbackServer (its `url` and `stop`) that takes every method a vendor API does and stops within 50 ms."""

    name: str = "stand-in"
    calls: list[Recorded] = field(default_factory=list)
    failures: dict[str, tuple[int, Any]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    # ---- lifecycle

    @property
    def base_url(self) -> str:
        return self.url

    def start(self) -> Any:
        handle = self._handle

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass  # nothing is logged: requests carry secrets

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True, name=self.name).start()
        return self

    # ---- failure switches and the record

    def fail(self, resource: str, status: int = 500, body: Any = None) -> None:
        """Every request whose path contains `resource` answers `status` (with `body`, else the API's usual error
        body) until healed: a 200 with a body of the wrong shape makes a vendor that answers nonsense."""
        with self._lock:
            self.failures[resource] = (status, body)

    def heal(self, resource: str | None = None) -> None:
        with self._lock:
            if resource is None:
                self.failures.clear()
            else:
                self.failures.pop(resource, None)

    def mutating_calls(self) -> list[Recorded]:
        with self._lock:
            return [c for c in self.calls if c.method in MUTATING]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # ---- HTTP

    def route(self, request: Request) -> tuple[int, Any]:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        return {"error": {"status": status, "message": "stand-in failure"}}

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        status: int
        body: Any
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except ValueError:
            status, body = 400, {"message": "Problems parsing JSON"}
        else:
            request = Request(
                method=handler.command,
                path=unquote(parts.path),
                raw_path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in handler.headers.items()},
                body=parsed,
            )
            with self._lock:
                failing = next((f for r, f in self.failures.items() if r in request.path), None)
            if failing is not None:
                status, body = failing[0], failing[1] if failing[1] is not None else self.error_body(failing[0])
            else:
                try:
                    status, body = self.route(request)
                except Reply as reply:
                    status, body = reply.status, reply.body
        with self._lock:
            self.calls.append(Recorded(handler.command, unquote(parts.path), status))
        data = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        if data:
            handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if data:
            handler.wfile.write(data)
