"""A local stand-in for the Slack Web API methods Stanch uses, served over HTTP for slack-sdk's WebClient.

It checks the token, arguments and channels the way Slack does (`invalid_auth`, `not_authed`,
`channel_not_found`, `missing_scope`-free), can answer `ratelimited` with a Retry-After header,
and records every call.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from flows.sandbox.loopback import LoopbackServer, reply


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    ok: bool
    error: str | None = None


@dataclass
class Channel:
    id: str
    name: str
    topic: str = ""
    members: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


SANDBOX_TOKEN = "xoxb-sandbox-0000-stand-in"  # noqa: S105 - accepted by the stand-in only


class SlackStandIn:
    """Start with `start()`; point WebClient(base_url=standin.base_url, token=standin.token) at it."""

    def __init__(self, token: str = SANDBOX_TOKEN, channels: tuple[str, ...] = ()):
        self.token = token
        self.calls: list[Call] = []
        self.channels: dict[str, Channel] = {}
        self._lock = threading.Lock()
        self._ratelimit: list[int] = []
        self._http = LoopbackServer(self._handle, "slack-stand-in")
        self._seq = 0
        self.uploads: dict[str, bytes] = {}
        self.files: dict[str, dict[str, Any]] = {}
        for name in channels or ("incident-response",):
            self.add_channel(name)

    # ------------------------------------------------------------ control

    @property
    def base_url(self) -> str:
        return f"{self._http.url}/api/"

    def start(self) -> SlackStandIn:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._ratelimit.clear()
            for channel in self.channels.values():
                channel.messages.clear()

    def add_channel(self, name: str) -> Channel:
        with self._lock:
            name = name.lstrip("#")
            for channel in self.channels.values():
                if channel.name == name:
                    return channel
            channel = Channel(id=f"C{len(self.channels) + 1:08d}", name=name)
            self.channels[channel.id] = channel
            return channel

    def ratelimit_next(self, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls with HTTP 429 and Retry-After."""
        with self._lock:
            self._ratelimit.extend([retry_after] * times)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        found = self._channel(channel)
        return list(found.messages) if found else []

    # ------------------------------------------------------------ protocol

    def _channel(self, ref: str) -> Channel | None:
        if ref in self.channels:
            return self.channels[ref]
        name = ref.lstrip("#")
        return next((c for c in self.channels.values() if c.name == name), None)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        if request.path.startswith("/upload/"):  # the upload URL files.getUploadURLExternal hands out
            length = int(request.headers.get("Content-Length") or 0)
            with self._lock:
                self.uploads[request.path.removeprefix("/upload/")] = request.rfile.read(length)
            reply(request, 200, {"ok": True})
            return
        method = request.path.split("/api/", 1)[-1].split("?", 1)[0]
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        args: dict[str, Any] = {}
        content_type = request.headers.get("Content-Type", "")
        if raw and "application/json" in content_type:
            args = json.loads(raw)
        elif raw:
            args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if "?" in request.path:
            args.update({k: v[0] for k, v in parse_qs(request.path.split("?", 1)[1]).items()})
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else args.pop("token", "")
        with self._lock:
            retry_after = self._ratelimit.pop(0) if self._ratelimit else None
        if retry_after is not None:
            self._record(method, args, False, "ratelimited")
            reply(request, 429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": str(retry_after)})
            return
        if not token:
            self._finish(request, method, args, {"ok": False, "error": "not_authed"})
            return
        if token != self.token:
            self._finish(request, method, args, {"ok": False, "error": "invalid_auth"})
            return
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            self._finish(request, method, args, {"ok": False, "error": "unknown_method"})
            return
        self._finish(request, method, args, handler(args))

    def _finish(self, request: BaseHTTPRequestHandler, method: str, args: dict[str, Any], body: dict[str, Any]) -> None:
        self._record(method, args, bool(body.get("ok")), body.get("error"))
        reply(request, 200, body)

    def _record(self, method: str, args: dict[str, Any], ok: bool, error: str | None) -> None:
        with self._lock:
            self.calls.append(Call(method, args, ok, error))

    def _ts(self) -> str:
        with self._lock:
            self._seq += 1
            return f"{time.time():.0f}.{self._seq:06d}"

    # ------------------------------------------------------------ methods

    def _api_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://sandbox.slack.invalid/",
            "team": "Sandbox",
            "user": "stanch",
            "bot_id": "B0STANCH",
        }

    def _api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        message = {
            "ts": self._ts(),
            "text": args.get("text", ""),
            "blocks": blocks,
            "thread_ts": args.get("thread_ts"),
        }
        with self._lock:
            channel.messages.append(message)
        return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": message}

    def _api_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            for message in channel.messages:
                if message["ts"] == args.get("ts"):
                    message["text"] = args.get("text", message["text"])
                    if args.get("blocks") is not None:
                        message["blocks"] = args["blocks"]
                    return {"ok": True, "channel": channel.id, "ts": message["ts"], "text": message["text"]}
        return {"ok": False, "error": "message_not_found"}

    def _api_conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            channels = [{"id": c.id, "name": c.name, "topic": {"value": c.topic}} for c in self.channels.values()]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

    def _api_conversations_create(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name", ""))
        if not name or name != name.lower() or " " in name or len(name) > 80:
            return {"ok": False, "error": "invalid_name_specials"}
        if self._channel(name) is not None:
            return {"ok": False, "error": "name_taken"}
        channel = self.add_channel(name)
        return {"ok": True, "channel": {"id": channel.id, "name": channel.name}}

    def _api_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": {"id": channel.id, "name": channel.name, "topic": {"value": channel.topic}}}

    def _api_conversations_setTopic(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        channel.topic = str(args.get("topic", ""))
        return {"ok": True, "channel": {"id": channel.id, "topic": {"value": channel.topic}}}

    def _api_conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if not users:
            return {"ok": False, "error": "no_user"}
        new = [u for u in users if u not in channel.members]
        if not new:
            return {"ok": False, "error": "already_in_channel"}
        channel.members.extend(new)
        return {"ok": True, "channel": {"id": channel.id}}

    def _api_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not args.get("length"):
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{len(self.files) + len(self.uploads) + 1:08d}"
        return {"ok": True, "upload_url": f"{self._http.url}/upload/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(args.get("files") or "[]")
        channel = self._channel(str(args.get("channel_id", ""))) if args.get("channel_id") else None
        if args.get("channel_id") and channel is None:
            return {"ok": False, "error": "channel_not_found"}
        done = []
        for item in files:
            with self._lock:
                data = self.uploads.pop(item["id"], None)
            if data is None:
                return {"ok": False, "error": "file_not_found"}
            record = {
                "id": item["id"],
                "title": item.get("title", ""),
                "content": data,
                "channel": channel.id if channel else None,
            }
            self.files[item["id"]] = record
            done.append({"id": item["id"], "title": record["title"]})
        return {"ok": True, "files": done}
