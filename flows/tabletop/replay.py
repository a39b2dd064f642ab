"""Incident bundles: record a run's outside calls, replay a playbook against them, and say where it diverges.

A recording (`recording(path)`, `stanch run --record`, or STANCH_RECORD=path with STANCH_RECORD_PID naming the
process) keeps every AWS, Slack and vendor HTTP call the run makes, with the step that made it, redacted of
secret values (every value the run's masker learns among them), beside the run's alert, inputs and gate
decisions, in one JSON Lines file (the format: docs/replay.md). `replay(path)` runs the playbook again,
the recorded version or a newer one, with the same alert, inputs and decisions; every outside call is answered
from the recording and nothing is sent. The replay reports each call that differs from the recording, step by
step: calls the recording lacks (answered with an error, so the run goes on or stops as a real failure would),
recorded calls the new run did not make, changed arguments, and calls made in another order within a step.

The hooks that see each call live in integrations.context (the one place every outside client is made).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, ValidationError

from integrations.context import current_unit, use_tape
from integrations.masking import MASK, SecretMasker

FORMAT = "stanch-incident-bundle"
VERSION = 1
MAX_BUNDLE_BYTES = 256 << 20  # a bundle larger than this is not one we wrote (its calls are held in memory)
MAX_LINE_BYTES = 32 << 20  # one record (an S3 object's body, base64) larger than this is not one we wrote
MAX_DEPTH = 100  # AWS answers nest a dozen levels; a record deeper than this is damage, or an attack
UNATTRIBUTED = "(unattributed)"  # a call made on a thread that carries no run context
UNORDERED_UNITS = ("(run)", UNATTRIBUTED)  # calls outside any step follow whichever concurrent step goes first
REPLAY_ERROR_CODE = "StanchReplayDivergence"
REPLAY_TAG = "replay"  # the Prefect tag of a replay's flow run (`stanch resume` refuses such a run)
REPLAY_TRIGGER = "replay"


class BundleError(Exception):
    """A bundle that cannot be read or replayed; the message names the file, the line and what is wrong."""


# ---------------------------------------------------------------- redaction

# Fields whose value is a secret wherever they appear (AWS answers and requests, vendor and Slack JSON).
_SECRET_FIELD = re.compile(
    r"(?i)^(secret_?access_?key|session_?token|secret_?string|secret_?binary|(new_?|old_?)?password|"
    r"private_?key(_?plaintext)?|plaintext|api_?key|access_?token|refresh_?token|client_?secret|token|secret|"
    r"signing_?secret|bot_?token)$"
)
# In vendor HTTP bodies (requests and answers) these hold a secret too: a minted token's `key` (Braintrust's
# service token), a stored `value` (GitLab and Braintrust variables), `credentials` sent to be revoked, a sealed
# `encrypted_value` (GitHub Actions). AWS is not matched by these: a tag's `Value` is not a secret.
_VENDOR_SECRET_FIELD = re.compile(
    r"(?i)^(key|value|secret_?value|api_?key|token|secret|credentials?|encrypted_?value|client_?secret|"
    r"access_?token|refresh_?token|private_?key|password|passphrase)$"
)
# A `key` beside these names something rather than unlocking it: GitHub's sealed-box public key ({key_id, key}),
# a GitLab variable's name ({key, value, variable_type, environment_scope}).
_KEY_IS_A_NAME = ("key_id", "variable_type", "environment_scope")
# A Kubernetes Secret (read, listed, patched): every member of its `data` (base64) and `stringData` is a secret.
_KUBE_SECRET_URL = re.compile(r"/api/v1/(namespaces/[^/?]+/)?secrets(/|\?|$)")
_KUBE_SECRET_DATA = ("data", "stringData")
# Inside a secret's JSON value: members that name rather than unlock (kept, so a replay finds the same key).
_IDENTIFIER_FIELD = re.compile(r"(?i)(^|_)id$|[a-z]Id$|^(user_?name|username|user|host|port|engine|dbname|region)$")


@dataclass(frozen=True)
class _Rules:
    """Which field rules apply to one call's request or answer: vendor HTTP bodies have more secret fields."""

    vendor: bool = False
    kube_secret: bool = False

    @classmethod
    def of(cls, kind: str | None, request: dict[str, Any] | None = None) -> _Rules:
        if kind != "http":
            return cls()
        url = str((request or {}).get("url") or "")
        return cls(vendor=True, kube_secret=bool(_KUBE_SECRET_URL.search(url)))


def encodings(value: str) -> list[str]:
    """The forms a secret value travels in besides itself: base64 (a Kubernetes Secret's data), URL-safe too."""
    import base64

    raw = value.encode()
    found = [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    found += [f.rstrip("=") for f in found]
    return [f for f in dict.fromkeys(found) if f != value and len(f) >= 8]


class Redactor:
    """Masks secret fields, credential shapes and every secret value seen so far, in requests and answers alike.

    A value found in a secret field is remembered, so it is masked wherever it turns up later (a key read from
    Secrets Manager and then sent to a vendor), in its base64 forms too. A recording's tape is also told every
    value the run's SecretMasker learns (integrations.context hands them on), whoever registered it."""

    def __init__(self) -> None:
        self.masker = SecretMasker(tell=False)  # its values come from the run's masker; told back, they would loop

    def secret(self, value: str | None) -> None:
        if not value or len(value) < 6:
            return
        self.masker.register(value)
        for form in encodings(value):
            self.masker.register(form)

    def _learn_encoded(self, value: str) -> None:
        """A base64 member of a Kubernetes Secret: the value it encodes is a secret too."""
        import base64
        import binascii

        self.secret(value)
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, ValueError):
            return
        self.secret(decoded)

    def _is_secret(self, key: str, parent: dict[str, Any], rules: _Rules) -> bool:
        if _SECRET_FIELD.match(key) or (key == "Value" and parent.get("Type") == "SecureString"):
            return True  # an SSM parameter: its Value is the secret
        if not rules.vendor:
            return False
        if rules.kube_secret and key in _KUBE_SECRET_DATA and isinstance(parent.get(key), dict):
            return True
        if _VENDOR_SECRET_FIELD.match(key):
            return not (key.lower() == "key" and any(name in parent for name in _KEY_IS_A_NAME))
        return False

    def _forget_secret(self, key: str, value: Any, rules: _Rules) -> Any:
        """A secret field's value, masked: a JSON object keeps its identifiers (AccessKeyId, key_id)."""
        if rules.kube_secret and key in _KUBE_SECRET_DATA and isinstance(value, dict):
            for child in value.values():
                if isinstance(child, str):
                    self._learn_encoded(child)
            return {k: MASK if isinstance(v, str) else v for k, v in value.items()}
        if isinstance(value, str):
            self.secret(value)
            try:
                inner = json.loads(value)
            except (ValueError, RecursionError):
                return MASK
            if isinstance(inner, dict):
                return json.dumps(self._secret_members(inner), sort_keys=True)
            return MASK
        if isinstance(value, dict) and set(value) == {"$b64"}:
            return MASK
        if isinstance(value, dict):
            return self._secret_members(value)
        if isinstance(value, list):  # credentials sent to be revoked, say
            return [self._forget_secret(key, child, rules) for child in value]
        return MASK

    def _secret_members(self, value: dict[str, Any]) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, child in value.items():
            if isinstance(child, str) and not _IDENTIFIER_FIELD.search(key):
                self.secret(child)
                kept[key] = MASK
            elif isinstance(child, dict):
                kept[key] = self._secret_members(child)
            else:
                kept[key] = child
        return kept

    def _collect(self, value: Any, rules: _Rules) -> None:
        """Learn the secret values in `value` before masking it (a request may carry them before an answer does)."""
        if isinstance(value, dict):
            for key, child in value.items():
                if self._is_secret(key, value, rules):
                    self._forget_secret(key, child, rules)  # learns; what it gives back is made again later
                else:
                    self._collect(child, rules)
        elif isinstance(value, list):
            for child in value:
                self._collect(child, rules)

    def redact(self, value: Any, kind: str | None = None, request: dict[str, Any] | None = None) -> Any:
        """`value` masked. `kind` (aws, slack, http) and the call's `request` (its URL) choose the field rules."""
        rules = _Rules.of(kind, request if request is not None else value if isinstance(value, dict) else None)
        self._collect(value, rules)
        return self._redact(value, rules)

    def _redact(self, value: Any, rules: _Rules) -> Any:
        if isinstance(value, dict):
            if set(value) == {"$b64"}:
                return value  # bytes as read (a log file); credential shapes are looked for in text only
            return {
                key: self._forget_secret(key, child, rules)
                if self._is_secret(key, value, rules)
                else self._redact(child, rules)
                for key, child in value.items()
            }
        if isinstance(value, list):
            return [self._redact(child, rules) for child in value]
        if isinstance(value, str):
            return self.masker.mask(value)
        return value

    def scrub(self, value: Any) -> Any:
        """Every string masked of what is known now (no field rules: a record already written once)."""
        if isinstance(value, dict):
            if set(value) == {"$b64"}:
                return value
            return {key: self.scrub(child) for key, child in value.items()}
        if isinstance(value, list):
            return [self.scrub(child) for child in value]
        if isinstance(value, str):
            return self.masker.mask(value)
        return value


# ---------------------------------------------------------------- comparing calls

_VOLATILE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?\b"), "<clock>"),
    (re.compile(r"\b\d+\.\d+s\b"), "<seconds>"),
    (re.compile(r"\b1[5-9]\d{8}(\.\d+)?\b"), "<epoch>"),  # Unix times (a rotation's mark, a Slack ts)
    (re.compile(r"\b(127\.0\.0\.1|localhost|\[::1\]):\d+"), r"\1:<port>"),
]


def _normalized(value: Any) -> Any:
    """A request with what changes from run to run (times, run ids, loopback ports) replaced by placeholders."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, str):
        for pattern, placeholder in _VOLATILE:
            value = pattern.sub(placeholder, value)
        return value
    return value


_ECHOED = [_VOLATILE[0][0], _VOLATILE[1][0], _VOLATILE[4][0]]  # run ids, times, Unix times: what answers echo


def echoes(recorded: Any, replayed: Any, found: dict[str, str]) -> None:
    """The volatile values (times, ids) a replayed request has where the recorded one had others: a later answer
    that echoes the recorded value (a policy read back) gets the replay's value instead."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for key in recorded.keys() & replayed.keys():
            echoes(recorded[key], replayed[key], found)
    elif isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        for a, b in zip(recorded, replayed, strict=True):
            echoes(a, b, found)
    elif isinstance(recorded, str) and isinstance(replayed, str) and recorded != replayed:
        for pattern in _ECHOED:
            olds = [m.group(0) for m in pattern.finditer(recorded)]
            news = [m.group(0) for m in pattern.finditer(replayed)]
            if len(olds) == len(news):
                for old, new in zip(olds, news, strict=True):
                    if old != new and len(old) >= 8:
                        found[old] = new
                        found[quote(old, safe="")] = quote(new, safe="")  # IAM sends policy documents URL-encoded


def _substituted(value: Any, pairs: dict[str, str]) -> Any:
    if not pairs:
        return value
    if isinstance(value, dict):
        if set(value) == {"$b64"}:
            return value
        return {k: _substituted(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v, pairs) for v in value]
    if isinstance(value, str):
        for old, new in pairs.items():
            if old in value:
                value = value.replace(old, new)
        return value
    return value


def identity(request: dict[str, Any]) -> str:
    """What makes two calls of one operation the same call: their requests, volatile parts aside."""
    return json.dumps(_normalized(request), sort_keys=True, separators=(",", ":"), default=str)


def first_difference(recorded: Any, replayed: Any, path: str = "") -> str:
    """Where two requests first differ, as `path: recorded → replayed` (short)."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for key in sorted(set(recorded) | set(replayed), key=str):
            if key not in replayed:
                return f"{path}.{key}: dropped".lstrip(".")
            if key not in recorded:
                return f"{path}.{key}: added".lstrip(".")
            if _normalized(recorded[key]) != _normalized(replayed[key]):
                return first_difference(recorded[key], replayed[key], f"{path}.{key}")
    if isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        for i, (a, b) in enumerate(zip(recorded, replayed, strict=True)):
            if _normalized(a) != _normalized(b):
                return first_difference(a, b, f"{path}[{i}]")
    where = path.lstrip(".") or "request"
    if isinstance(recorded, str) and isinstance(replayed, str):
        return f"{where}: {_around_difference(_normalized(recorded), _normalized(replayed))}"
    return f"{where}: {_short(recorded)} → {_short(replayed)}"


def _around_difference(recorded: str, replayed: str, size: int = 50) -> str:
    """Two texts shown from a little before the first place they differ (long messages share long openings)."""
    at = next((i for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)) if a != b), None)
    if at is None:
        at = min(len(recorded), len(replayed))
    start = max(0, at - 15)

    def part(text: str) -> str:
        piece = text[start : start + size].replace("\n", " ")
        return ("…" if start else "") + piece + ("…" if len(text) > start + size else "")

    return f"{part(recorded)!r} → {part(replayed)!r}"


def _short(value: Any, size: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= size else text[: size - 1] + "…"


# ---------------------------------------------------------------- the bundle


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Header(_Strict):
    format: Literal["stanch-incident-bundle"]
    version: int
    recorded_at: str


class CallRecord(_Strict):
    type: Literal["call"]
    seq: int
    t: float
    step: str
    unit: str
    kind: Literal["aws", "slack", "http"]
    operation: str
    request: dict[str, Any]
    response: dict[str, Any]


class RunRecord(_Strict):
    type: Literal["run"]
    flow_run_id: str
    playbook: str
    parameters: dict[str, Any]
    settings: dict[str, Any] = {}


class Decision(_Strict):
    approver: str
    decision: Literal["approve", "reject", "timeout"]
    reason: str = ""
    channel: str = "cli"
    accepted: bool = True


class GateRecord(_Strict):
    status: str
    decisions: list[Decision] = []


class EndRecord(_Strict):
    type: Literal["end"]
    calls: int
    state: str | None = None
    message: str = ""
    playbook: dict[str, Any] | None = None
    gates: dict[str, GateRecord] = {}
    steps: dict[str, str] = {}


@dataclass
class Bundle:
    path: Path
    header: Header
    run: RunRecord
    calls: list[CallRecord]
    end: EndRecord


def read_bundle(path: str | Path) -> Bundle:
    """A bundle file, checked line by line; BundleError names the line and what is wrong (never a traceback).

    Read a line at a time: no line may be longer than MAX_LINE_BYTES, nor the file than MAX_BUNDLE_BYTES, nor a
    record nested deeper than MAX_DEPTH (a parser's or a comparison's recursion would not survive it)."""
    path = Path(path)
    records: list[tuple[int, dict[str, Any]]] = []
    number = 0
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise BundleError(f"{path}: {size} bytes is more than a bundle may hold ({MAX_BUNDLE_BYTES})")
        with path.open("rb") as handle:
            while True:
                raw = handle.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    break
                number += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    raise BundleError(f"{path}:{number}: a line longer than {MAX_LINE_BYTES} bytes; not a bundle we wrote")
                line = raw.decode("utf-8")
                if line.strip():
                    records.append((number, _record(line, path, number)))
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}:{number}: not UTF-8: {exc.reason}") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read: {exc}") from None
    if not records:
        raise BundleError(f"{path}: empty; not an incident bundle")
    first_line, first = records[0]
    if first.get("format") != FORMAT:
        raise BundleError(f"{path}:{first_line}: not an incident bundle (its first line must name format {FORMAT!r})")
    if first.get("version") != VERSION:
        raise BundleError(
            f"{path}:{first_line}: bundle format version {first.get('version')!r}; this Stanch reads version {VERSION}"
        )
    header = _parse(Header, first, path, first_line)
    run: RunRecord | None = None
    end: EndRecord | None = None
    calls: list[CallRecord] = []
    for number, value in records[1:]:
        if end is not None:
            raise BundleError(f"{path}:{number}: a record after the end record; the file was edited")
        kind = value.get("type")
        if kind == "call":
            calls.append(_parse(CallRecord, value, path, number))
        elif kind == "run":
            if run is not None:
                raise BundleError(f"{path}:{number}: a second run record; a bundle holds one run")
            run = _parse(RunRecord, value, path, number)
        elif kind == "end":
            end = _parse(EndRecord, value, path, number)
        else:
            raise BundleError(f"{path}:{number}: unknown record type {kind!r} (call, run or end)")
    if end is None:
        raise BundleError(f"{path}: no end record: the recording was cut off before the run ended, or the file was cut")
    if run is None:
        raise BundleError(f"{path}: no run record: the recording saw no run")
    if end.calls != len(calls):
        raise BundleError(f"{path}: the end record counts {end.calls} call(s), the file holds {len(calls)}; it was edited")
    return Bundle(path, header, run, calls, end)


def _record(line: str, path: Path, number: int) -> dict[str, Any]:
    """One line's record: a JSON object nested no deeper than MAX_DEPTH."""
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise BundleError(f"{path}:{number}: not JSON ({exc.args[0]}); the file was cut or edited") from None
    except RecursionError:
        raise BundleError(f"{path}:{number}: nested too deep to read (more than {MAX_DEPTH} levels)") from None
    if not isinstance(value, dict):
        raise BundleError(f"{path}:{number}: a record must be a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise BundleError(f"{path}:{number}: nested more than {MAX_DEPTH} levels deep; not a bundle we wrote")
    return value


def _depth(value: Any) -> int:
    """How deep a JSON value nests (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _parse(model: type[Any], value: dict[str, Any], path: Path, line: int) -> Any:
    try:
        return model.model_validate(value)
    except RecursionError:
        raise BundleError(f"{path}:{line}: nested too deep to read") from None
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in problem["loc"]) or "record"
        raise BundleError(f"{path}:{line}: {where}: {problem['msg']}") from None


# ---------------------------------------------------------------- recording


class Recorder:
    """A tape that keeps every call as one line of the bundle, as it happens (a crash leaves what was made)."""

    replaying = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.redactor = Redactor()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.count = 0
        self.run: RunRecord | None = None
        self.finished = False
        self.run_id: str | None = None
        self.summary: Any = None  # the RunSummary, when the caller sets it: the end record's step states
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the bundle describes an incident: readable by its owner only
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        self._write({"format": FORMAT, "version": VERSION, "recorded_at": datetime.now(UTC).isoformat()})

    @classmethod
    def for_environment(cls, path: str) -> Recorder:
        """The recorder STANCH_RECORD asks for (in the process STANCH_RECORD_PID names, see
        integrations.context.active_tape): it writes its end record when the process exits."""
        import atexit

        recorder = cls(path)
        atexit.register(recorder.finish)
        return recorder

    def _write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n")
        self.file.flush()

    def secret(self, value: str | None) -> None:
        self.redactor.secret(value)

    def answer(self, kind: str, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a recorder answers nothing: it is not replaying")

    def record(self, kind: str, operation: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        step, unit = current_unit()
        with self.lock:
            if self.finished:
                return
            if self.run is None:
                self._note_run()
            self.count += 1
            call = {
                "type": "call",
                "seq": self.count,
                "t": round(time.monotonic() - self.started, 3),
                "step": step,
                "unit": unit,
                "kind": kind,
                "operation": operation,
                "request": self.redactor.redact(request, kind),
                "response": self.redactor.redact(response, kind, request),
            }
            self._write(call)

    def _note_run(self) -> None:
        """The run's launch (alert, inputs, who, mode) and the settings that shape its calls, from its flow run."""
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        if ctx is None or ctx.flow_run is None:
            return
        parameters = {k: v for k, v in dict(ctx.flow_run.parameters or {}).items() if k != "launch_proof"}
        parameters = json.loads(json.dumps(parameters, default=str))
        self.run_id = str(ctx.flow_run.id)
        self.run = RunRecord(
            type="run",
            flow_run_id=self.run_id,
            playbook=str(ctx.flow.name if ctx.flow else ""),
            parameters=self.redactor.redact(parameters),
            settings=_settings_snapshot(),
        )
        self._write(self.run.model_dump())

    def finish(self, summary: Any = None) -> Path:
        """Write the end record: the playbook as the run started it, its gates' decisions and its steps' states
        (read from the run's journal on the Prefect server; `summary`, a RunSummary, when the caller has it)."""
        with self.lock:
            if self.finished:
                return self.path
            self.finished = True
            run_id = getattr(summary, "run_id", None) or self.run_id
            if self.run is None and run_id:
                self._note_run_from_api(run_id)
            end: dict[str, Any] = {"type": "end", "calls": self.count}
            if run_id:
                end.update(self._journal(run_id))
            if summary is not None:
                end["state"] = summary.state
                end["message"] = self.redactor.masker.mask(summary.message)
                end["steps"] = {s.id: s.state for s in summary.steps}
            self._write(end)
            self.file.close()
            self._scrub()
        return self.path

    def _scrub(self) -> None:
        """The bundle masked once more of every value learned by the end: a secret the run's masker learned only
        after a call that carried it was written (a minted key registered after its answer) is masked there too."""
        lines = self.path.read_text(encoding="utf-8").splitlines()
        scrubbed = [
            json.dumps(self.redactor.scrub(json.loads(line)), sort_keys=True, separators=(",", ":"), default=str)
            for line in lines
        ]
        if scrubbed == lines:
            return
        temporary = self.path.with_name(self.path.name + ".scrub")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in scrubbed))
        os.replace(temporary, self.path)

    def _note_run_from_api(self, run_id: str) -> None:
        """A run that made no outside call: its launch, read from the Prefect server."""
        from uuid import UUID

        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                flow_run = client.read_flow_run(UUID(run_id))
                name = client.read_flow(flow_run.flow_id).name
        except Exception:  # the bundle then says it saw no run, and replay refuses it clearly
            return
        parameters = {k: v for k, v in dict(flow_run.parameters or {}).items() if k != "launch_proof"}
        self.run = RunRecord(
            type="run",
            flow_run_id=run_id,
            playbook=name,
            parameters=self.redactor.redact(json.loads(json.dumps(parameters, default=str))),
            settings=_settings_snapshot(),
        )
        self._write(self.run.model_dump())

    def _journal(self, run_id: str) -> dict[str, Any]:
        import logging
        from uuid import UUID

        from flows.engine.journal import PLAYBOOK_KEY, Journal, read_json_input

        found: dict[str, Any] = {}
        try:
            found["playbook"] = read_json_input(UUID(run_id), PLAYBOOK_KEY)
            saved = Journal(UUID(run_id), logging.getLogger("stanch.replay")).load()
        except Exception:  # the Prefect server is gone: the bundle keeps its calls; replay then needs --playbook
            return found
        gates: dict[str, Any] = {}
        for gate, events in saved.gates.items():
            closed = events.get("closed")
            if not isinstance(closed, dict):
                continue
            decisions = [
                {
                    "approver": str(d.get("approver", "")),
                    "decision": d.get("decision", "reject"),
                    "reason": self.redactor.masker.mask(str(d.get("reason", ""))),
                    "channel": str(d.get("channel", "cli")),
                    "accepted": bool(d.get("accepted")),
                }
                for d in closed.get("decisions", [])
                if isinstance(d, dict)
            ]
            gates[gate] = {"status": str(closed.get("status", "")), "decisions": decisions}
        found["gates"] = gates
        found["steps"] = {step_id: record.state for step_id, record in saved.steps.items()}
        return found


def _settings_snapshot() -> dict[str, Any]:
    """The settings a replay needs to make the same calls (channels, region); never a secret or an endpoint."""
    try:
        from flows.config import load_settings

        settings = load_settings()
    except Exception:
        return {}
    return {
        "aws_region": settings.aws.region,
        "slack_default_channel": settings.slack.default_channel,
        "slack_incident_channel": settings.slack.incident_channel,
        "slack_incident_thread": settings.slack.incident_thread,
        "approvals_channel": settings.approvals.channel,
        "approvals_escalation_channel": settings.approvals.escalation_channel,
    }


@contextmanager
def recording(path: str | Path) -> Iterator[Recorder]:
    """Record every outside call made in this process while the block runs into the bundle at `path`.

    Use around `run_playbook`; set `recorder.summary` (the RunSummary) for the end record's step states, else
    they are read from the run's journal."""
    recorder = Recorder(path)
    previous = use_tape(recorder)
    try:
        yield recorder
    finally:
        use_tape(previous)
        recorder.finish(recorder.summary)


# ---------------------------------------------------------------- replaying


@dataclass
class Divergence:
    """One place where the replay differs from the recording."""

    step: str
    what: str  # unexpected call, missing call, different arguments, out of order, gate, step
    call: str  # "aws iam:ListAccessKeys", or the gate / step
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"step": self.step, "what": self.what, "call": self.call, "detail": self.detail}


@dataclass
class _Unit:
    calls: list[CallRecord]
    used: list[bool]
    identities: list[str]
    last_answer: dict[str, dict[str, Any]] = field(default_factory=dict)  # identity -> answer (repeats)
    order_issues: list[tuple[int, int]] = field(default_factory=list)  # (skipped position, taken position)
    unmatched: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # outside steps: paired at the end


class Replayer:
    """A tape that answers each call from the recording, matched per step (in order within a step)."""

    replaying = True

    def __init__(self, bundle: Bundle):
        self.redactor = Redactor()
        self.lock = threading.Lock()
        self.units: dict[str, _Unit] = {}
        for call in bundle.calls:
            unit = self.units.setdefault(call.unit, _Unit([], [], []))
            unit.calls.append(call)
            unit.used.append(False)
            unit.identities.append(f"{call.kind} {call.operation} {identity(call.request)}")
        self.divergences: list[Divergence] = []
        self.answered = 0
        self.repeats = 0
        self.echoed: dict[str, str] = {}  # recorded volatile value -> this run's (see `echoes`)
        self.aliases: dict[str, str] = {}  # this replay's launch -> the recorded one (its incident id), in requests

    def secret(self, value: str | None) -> None:
        self.redactor.secret(value)

    def record(self, kind: str, operation: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        raise RuntimeError("a replay records nothing: every call is answered from the recording")

    def answer(self, kind: str, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        _, name = current_unit()
        request = self.redactor.redact(_substituted(request, self.aliases), kind)
        wanted = f"{kind} {operation} {identity(request)}"
        label = f"{kind} {operation}"
        with self.lock:
            unit = self.units.setdefault(name, _Unit([], [], []))
            free = [i for i, used in enumerate(unit.used) if not used]
            exact = next((i for i in free if unit.identities[i] == wanted), None)
            if exact is not None:
                echoes(unit.calls[exact].request, request, self.echoed)
                return _substituted(self._take(unit, name, exact, free, operation), self.echoed)
            if wanted in unit.last_answer:  # a poll that looked once more, a retry: the same answer again
                self.repeats += 1
                return _substituted(unit.last_answer[wanted], self.echoed)
            elsewhere = self._unattributed_twin(name, wanted)
            if elsewhere is not None:
                other, position = elsewhere
                echoes(other.calls[position].request, request, self.echoed)
                other.used[position] = True
                self.answered += 1
                response = other.calls[position].response
                unit.last_answer[wanted] = other.last_answer[wanted] = response
                return _substituted(response, self.echoed)
            same = [i for i in free if unit.calls[i].kind == kind and unit.calls[i].operation == operation]
            if same and name in UNORDERED_UNITS:
                # Outside a step the order proves nothing: the recorded call this one replaces may still come
                # exactly. Answer like the most similar one, and pair them up when the run is over.
                nearest = max(same, key=lambda i: _similarity(unit.identities[i], wanted))
                unit.unmatched.append((kind, operation, request))
                return _substituted(unit.calls[nearest].response, self.echoed)
            same_operation = same[0] if same else None
            if same_operation is not None:
                recorded = unit.calls[same_operation]
                self.divergences.append(
                    Divergence(name, "different arguments", label, first_difference(recorded.request, request))
                )
                answer = self._take(unit, name, same_operation, free, operation)
                unit.last_answer[wanted] = answer  # its repeats are repeats, not more divergences
                return _substituted(answer, self.echoed)
            self.divergences.append(
                Divergence(name, "unexpected call", label, f"not in the recording of {name}: {_short(request, 120)}")
            )
            return _synthetic_error(kind, operation, name)

    def _unattributed_twin(self, name: str, wanted: str) -> tuple[_Unit, int] | None:
        """A call on a thread without the run's context is labelled `(unattributed)`, and the same call may be
        labelled with its step in another run (a reader thread that did or did not carry the context): the exact
        twin of an `(unattributed)` call in any step's recording, or of a step's call among the `(unattributed)`
        ones, is the same call, taken from there (the first recorded)."""
        if name == UNATTRIBUTED:
            places = [(n, u) for n, u in self.units.items() if n != UNATTRIBUTED]
        else:
            places = [(UNATTRIBUTED, self.units[UNATTRIBUTED])] if UNATTRIBUTED in self.units else []
        found = [
            (unit.calls[i].seq, i, unit)
            for _, unit in places
            for i, used in enumerate(unit.used)
            if not used and unit.identities[i] == wanted
        ]
        if not found:
            return None
        _, position, unit = min(found, key=lambda f: f[0])
        return unit, position

    def _take(self, unit: _Unit, name: str, position: int, free: list[int], operation: str) -> dict[str, Any]:
        unit.used[position] = True
        self.answered += 1
        if name not in UNORDERED_UNITS and free and free[0] != position:
            head = unit.calls[free[0]]
            if head.operation != operation:  # same-operation calls may overlap (parallel reads): not an order
                unit.order_issues.append((free[0], position))
        unit.last_answer[unit.identities[position]] = unit.calls[position].response
        return unit.calls[position].response

    def finish(self) -> list[Divergence]:
        """The divergences: those seen during the run, then recorded calls it never made."""
        found = list(self.divergences)
        for name, unit in self.units.items():
            for skipped, taken in unit.order_issues:
                if unit.used[skipped]:
                    before, after = unit.calls[taken], unit.calls[skipped]
                    found.append(
                        Divergence(
                            name,
                            "out of order",
                            f"{before.kind} {before.operation}",
                            f"made before {after.kind} {after.operation}; the recording has it after",
                        )
                    )
            found += self._pair_unmatched(name, unit)
            for position, call in enumerate(unit.calls):
                if unit.used[position]:
                    continue
                if unit.identities[position] in unit.last_answer:
                    self.repeats += 1  # the recording looked once more than the replay did
                    continue
                found.append(
                    Divergence(
                        name,
                        "missing call",
                        f"{call.kind} {call.operation}",
                        f"recorded (call {call.seq}), not made by this run: {_short(call.request, 120)}",
                    )
                )
        return found

    def _pair_unmatched(self, name: str, unit: _Unit) -> list[Divergence]:
        """Calls outside a step that had no exact recorded twin: each paired with the most similar recorded call
        of its operation left unused (most similar pairs first), else unexpected."""
        pairs = sorted(
            (
                (_similarity(unit.identities[i], f"{kind} {operation} {identity(request)}"), n, i)
                for n, (kind, operation, request) in enumerate(unit.unmatched)
                for i, used in enumerate(unit.used)
                if not used and unit.calls[i].kind == kind and unit.calls[i].operation == operation
            ),
            reverse=True,
        )
        paired: dict[int, int] = {}
        for _, n, i in pairs:
            if n not in paired and not unit.used[i]:
                paired[n] = i
                unit.used[i] = True
        found = []
        for n, (kind, operation, request) in enumerate(unit.unmatched):
            label = f"{kind} {operation}"
            if n in paired:
                detail = first_difference(unit.calls[paired[n]].request, request)
                found.append(Divergence(name, "different arguments", label, detail))
            else:
                detail = f"not in the recording of {name}: {_short(request, 120)}"
                found.append(Divergence(name, "unexpected call", label, detail))
        return found


def _similarity(a: str, b: str) -> float:
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a[:2000], b[:2000], autojunk=False).ratio()


def _synthetic_error(kind: str, operation: str, unit: str) -> dict[str, Any]:
    """The answer to a call the recording does not have: an error, as an outage would give."""
    message = f"the recording has no {operation} call in {unit} (replay divergence)"
    if kind == "aws":
        error = {"Error": {"Code": REPLAY_ERROR_CODE, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return {"status": 400, "parsed": error}
    if kind == "slack":
        return {"status": 200, "data": {"ok": False, "error": "stanch_replay_divergence", "detail": message}}
    return {"status": None, "error": message}


@dataclass
class ReplayResult:
    bundle: Bundle
    summary: Any  # RunSummary
    divergences: list[Divergence]
    answered: int
    repeats: int
    incident_id: str = ""  # the replay's own (the recorded one with -replay-<n>)

    @property
    def identical(self) -> bool:
        return not self.divergences


def load_replay_playbook(bundle: Bundle, playbook: str | None) -> Any:
    """The playbook to replay: the one given (name or path), else the version the recorded run started with."""
    from flows.engine.launch import LaunchError, load_named
    from flows.language.model import Playbook

    if playbook is not None:
        try:
            return load_named(playbook)
        except LaunchError as exc:
            raise BundleError(str(exc)) from None
    if bundle.end.playbook is None:
        raise BundleError(f"{bundle.path}: the bundle holds no playbook (the Prefect server was gone); give --playbook")
    from flows.language.validate import check_text, describe

    # checked as `stanch validate` checks a file: a bundle is outside input, and its playbook is what will run
    checked = check_text(json.dumps(bundle.end.playbook), f"{bundle.path} (recorded playbook)")
    if not checked.ok or checked.playbook is None:
        raise BundleError(f"{bundle.path}: the recorded playbook has problems:\n{describe(checked.problems)}")
    recorded: Playbook = checked.playbook
    return recorded


def replay(
    path: str | Path,
    playbook: str | None = None,
    observer: Callable[[str, dict[str, Any]], None] | None = None,
    endpoint: str | None = None,
) -> ReplayResult:
    """Run the bundle's playbook (or `playbook`) again against the recording; nothing is sent anywhere.

    Gates are answered with the recorded decisions, signed by a key pair made for this replay, through the same
    path as `stanch approve`. `endpoint` is where every AWS and Slack endpoint points meanwhile (default: a closed
    loopback port; tests give a listener that counts connections). Raises BundleError for a bundle that cannot be
    replayed."""
    bundle = read_bundle(path)
    book = load_replay_playbook(bundle, playbook)
    tape = Replayer(bundle)
    gates = _GateAnswerer(bundle)
    captured: dict[str, Any] = {}

    def observe(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_finished":
            captured["summary"] = data["summary"]
        gates(kind, data)
        if observer is not None:
            observer(kind, data)

    parameters = _launch_parameters(bundle)
    inputs = dict(parameters["inputs"])
    alert = parameters["alert"]
    if isinstance(alert, dict):  # a newer playbook's new inputs come from the alert's facts, as at launch
        for name in book.inputs:
            if name not in inputs and alert.get(name) not in (None, "", []):
                inputs[name] = alert[name]
    # The replay is a flow run of its own, never mistaken for the incident: tagged `replay`, its incident id the
    # recorded one with `-replay-<n>`, its trigger `replay` (`stanch resume` refuses it; `stanch report <incident>`
    # still names the one real run). Its requests are compared with the recorded launch's names put back.
    incident = replay_incident_id(parameters["incident_id"])
    if parameters["incident_id"]:
        tape.aliases[incident] = parameters["incident_id"]
    launcher = parameters["launched_by"]
    tape.aliases[f"launched by {launcher} ({REPLAY_TRIGGER})"] = f"launched by {launcher} ({parameters['trigger']})"
    with _replay_environment(bundle, endpoint), _tape(tape):
        from prefect import tags

        from flows.engine.flow import playbook_flow
        from flows.engine.observe import observing

        with observing(observe), tags(REPLAY_TAG):
            state = playbook_flow(book)(
                inputs=inputs,
                alert=alert,
                mode=parameters["mode"],
                incident_id=incident,
                trigger=REPLAY_TRIGGER,
                launched_by=launcher,
                sandbox=parameters["sandbox"],
                return_state=True,
            )
        gates.wait()
    summary = captured.get("summary")
    if summary is None:
        raise BundleError(f"the replayed run ended {state.name} without a summary: {state.message}")
    divergences = tape.finish() + gates.divergences() + _step_divergences(bundle, summary)
    return ReplayResult(bundle, summary, divergences, tape.answered, tape.repeats, incident)


def replay_incident_id(recorded: str) -> str:
    """The incident id of a replay: the recorded one (or `replay`) with `-replay-<n>`, n new for each replay."""
    import secrets

    stamp = f"{datetime.now(UTC):%Y%m%d%H%M%S}{secrets.token_hex(2)}"
    return f"{recorded or 'incident'}-{REPLAY_TAG}-{stamp}"


def _launch_parameters(bundle: Bundle) -> dict[str, Any]:
    """The recorded launch, checked: an edited bundle's parameters give a clear error, not a failed flow."""
    given = bundle.run.parameters
    where = f"{bundle.path}: the run record's parameters"
    inputs, alert = given.get("inputs", {}), given.get("alert")
    if not isinstance(inputs, dict):
        raise BundleError(f"{where}: inputs must be an object")
    if alert is not None and not isinstance(alert, dict):
        raise BundleError(f"{where}: alert must be an object or null")
    mode = given.get("mode", "live")
    if mode not in ("live", "dry-run"):
        raise BundleError(f"{where}: mode must be live or dry-run, not {_short(mode)}")
    texts = {}
    for name, default in (("incident_id", ""), ("trigger", "manual"), ("launched_by", "unknown")):
        value = given.get(name, default)
        if not isinstance(value, str) or len(value) > 256:
            raise BundleError(f"{where}: {name} must be a short text")
        texts[name] = value
    sandbox = given.get("sandbox", False)
    if not isinstance(sandbox, bool):
        raise BundleError(f"{where}: sandbox must be true or false")
    return {"inputs": inputs, "alert": alert, "mode": mode, "sandbox": sandbox, **texts}


@contextmanager
def _tape(tape: Replayer) -> Iterator[None]:
    previous = use_tape(tape)
    try:
        yield
    finally:
        use_tape(previous)


def _step_divergences(bundle: Bundle, summary: Any) -> list[Divergence]:
    recorded = bundle.end.steps
    found = []
    for record in summary.steps:
        before = recorded.get(record.id)
        if before is None and recorded:
            found.append(Divergence(record.id, "step", record.id, f"not in the recording; this run: {record.state}"))
        elif before is not None and before != record.state:
            why = f" ({record.reason})" if record.reason else ""
            found.append(Divergence(record.id, "step", record.id, f"recorded {before}, this run {record.state}{why}"))
    ours = {s.id for s in summary.steps}
    for step_id, before in recorded.items():
        if step_id not in ours:
            found.append(Divergence(step_id, "step", step_id, f"recorded {before}; not in this playbook"))
    return found


class _GateAnswerer:
    """Answers each gate the replay opens with the decisions the recording holds for it, in their order."""

    def __init__(self, bundle: Bundle):
        self.recorded = bundle.end.gates
        self.run_id: str | None = None
        self.opened: list[str] = []
        self.threads: list[threading.Thread] = []
        self.problems: list[Divergence] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        import contextvars

        if kind == "run_started":
            self.run_id = data["run_id"]
        if kind != "gate_opened" or self.run_id is None:
            return
        gate = str(data["gate"])
        self.opened.append(gate)
        members = list(data.get("members") or [])
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(self._answer, self.run_id, gate, members), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _answer(self, run_id: str, gate: str, members: list[str]) -> None:
        from flows.approvals.client import ApprovalError, answer_gate, open_gates

        recorded = self.recorded.get(gate)
        decisions = [d for d in (recorded.decisions if recorded else []) if d.accepted and d.decision != "timeout"]
        if not decisions:
            if recorded is None:
                why = "the recording has no decision for this gate (it was not asked then)"
            else:
                why = f"the recorded gate ended {recorded.status} with no decision: a replay does not wait out deadlines"
            self.problems.append(Divergence(gate, "gate", gate, f"{why}; rejected in this replay"))
            decisions = [Decision(approver=members[0] if members else "replay", decision="reject", reason=f"replay: {why}")]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if any(g.get("gate") == gate for g in open_gates(run_id)):
                    break
            except ApprovalError:
                return
            time.sleep(0.1)
        for decision in decisions:
            verb: Literal["approve", "reject"] = "approve" if decision.decision == "approve" else "reject"
            try:
                verdict = answer_gate(run_id, gate, decision.approver, verb, decision.reason, channel=decision.channel)
            except ApprovalError as exc:
                self.problems.append(Divergence(gate, "gate", gate, f"the recorded decision could not be given: {exc}"))
                return
            if verdict.accepted is False:
                self.problems.append(Divergence(gate, "gate", gate, f"{decision.approver}'s decision {verdict.message}"))

    def wait(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)

    def divergences(self) -> list[Divergence]:
        found = list(self.problems)
        for gate, recorded in self.recorded.items():
            if gate not in self.opened:
                found.append(Divergence(gate, "gate", gate, f"asked in the recording ({recorded.status}), not in this run"))
        return found


@contextmanager
def _replay_environment(bundle: Bundle, endpoint: str | None = None) -> Iterator[None]:
    """The process as the recorded run saw it (channels, region), with every endpoint a closed loopback port and
    no credential: even a call that slipped past the tape could reach nothing. A key pair made for this replay
    signs the recorded decisions, so they pass the run's real verification."""
    import socket

    from flows.approvals.signing import generate

    if endpoint is None:
        with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
            probe.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    dead = endpoint.rstrip("/")
    settings = bundle.run.settings
    private, public = generate()
    uses_slack = any(call.kind == "slack" for call in bundle.calls)
    overrides: dict[str, str | None] = {
        "AWS_ACCESS_KEY_ID": "replay",
        "AWS_SECRET_ACCESS_KEY": "replay",
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_DEFAULT_REGION": str(settings.get("aws_region") or "us-east-1"),
        "STANCH_AWS__REGION": str(settings.get("aws_region") or "us-east-1"),
        "STANCH_AWS__ENDPOINT_URL": dead,
        "STANCH_AWS__ROLE_ARN": "",
        "STANCH_SLACK__BASE_URL": f"{dead}/api/",
        "STANCH_SLACK__TOKEN": '{"env": "STANCH_REPLAY_SLACK_TOKEN"}' if uses_slack else None,
        "STANCH_SLACK_TOKEN": None,
        "STANCH_REPLAY_SLACK_TOKEN": "replay-placeholder" if uses_slack else None,
        "STANCH_SLACK__DEFAULT_CHANNEL": settings.get("slack_default_channel"),
        "STANCH_SLACK__INCIDENT_CHANNEL": settings.get("slack_incident_channel"),
        "STANCH_SLACK__INCIDENT_THREAD": None
        if settings.get("slack_incident_thread") is None
        else str(bool(settings["slack_incident_thread"])).lower(),
        "STANCH_APPROVALS__CHANNEL": settings.get("approvals_channel"),
        "STANCH_APPROVALS__ESCALATION_CHANNEL": settings.get("approvals_escalation_channel"),
        "STANCH_APPROVAL_PRIVATE_KEY": private,
        "STANCH_APPROVAL_PUBLIC_KEY": public,
        "STANCH_SANDBOX_VENDOR_URL": None,
    }
    saved = {name: os.environ.get(name) for name in overrides}
    try:
        for name, value in overrides.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = str(value)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
