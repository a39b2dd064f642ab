"""The review's fast path for one log file: inflate it, look for the keys' bytes, decode only whose records they are.

This module is self-contained (the standard library and msgspec, nothing of Stanch; python-isal when it is
installed, to inflate faster): worker processes run it as a script (`python -P fastscan.py`), so starting one
costs a Python start and a msgspec import, not Stanch's. The scanner (`scanner.py`) runs it in-process for small
inputs and turns its answers into events; `stanch review-logs` starts the workers before its own imports and
sends them early scans of the first files (see `_early`).

What one scan answers, for a file and a set of keys (and role/NAME, user/NAME targets):
- the size the file inflates to (as far as it does, when damaged: the review's `bytes_scanned` counts it) and
  whether one of the keys' bytes occurs in it;
- the damage, if the gzip data is damaged (the same words as the classic search);
- whether the file is one the fast decode may read ("ok"), or one the classic path must judge ("fallback"):
  the fast decode says "ok" only when the standard library's json.loads would read the whole file too
  (UTF-8, nesting depth, integer digits limit, the Records array, objects for records and userIdentity,
  strings for accessKeyId, arn and principal); anything else is handed back unjudged;
- the records that may be the targets' (`cands`: their position and their exact bytes), decided on the
  decoded userIdentity exactly as `events.is_ours` decides, and every access key id that made a record in
  the file (`ids`), so that a later key can be ruled out of the file without reading it again.
"""

from __future__ import annotations

import importlib
import itertools
import json
import operator
import os
import signal
import struct
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import msgspec

_fast_zlib: Any
try:  # an optional accelerator (python-isal): about twice zlib's inflate speed
    _fast_zlib = importlib.import_module("isal.isal_zlib")
except ImportError:  # pragma: no cover - depends on what is installed
    _fast_zlib = None


class BadFile(Exception):
    """A file the review cannot read; the message says why."""


# A CloudTrail file inflates to tens of MB; more is a planted bomb. The classic path parses a matching file whole
# (several times its size in memory), so this is also the bound on what any file can cost.
MAX_INFLATED = 256 << 20
KEEP_LIMIT = MAX_INFLATED  # inflated bytes kept for the fast decode
_CHUNK = 1 << 16


def read_capped(stream: Any) -> bytes:
    """A file's bytes, at most MAX_INFLATED of them (gzip never shrinks a log below that); BadFile beyond."""
    data = stream.read(MAX_INFLATED + 1)
    if len(data) > MAX_INFLATED:
        raise BadFile(f"over {MAX_INFLATED >> 20} MB: not a CloudTrail log file")
    return bytes(data)


# CloudTrail writes one gzip member a file; a few (concatenated files) are read, thousands are a planted file
# that would cost a new inflater each.
MAX_MEMBERS = 1000


def _next_member(view: memoryview, offset: int, chunk: int, unused: int, members: int) -> int | None:
    """Where the next gzip member starts after one ended `unused` bytes before the end of the chunk read at
    `offset` (None: what follows is not a gzip member and carries no records); BadFile past MAX_MEMBERS."""
    start = offset + chunk - unused
    if bytes(view[start : start + 2]) != b"\x1f\x8b":
        return None
    if members >= MAX_MEMBERS:
        raise BadFile(f"over {MAX_MEMBERS} gzip members: not a CloudTrail log file")
    return start


def inflate(data: bytes) -> Iterator[bytes]:
    """The inflated pieces of gzip data (every member), a few MB at most each; BadFile when it is damaged.

    Small pieces keep memory bounded and are faster than one big inflate (no output reallocations); zlib
    frees the GIL while it inflates. Each member is read in 64 KiB input pieces from its start, through a view
    of the data (no copy of what is left: a file of many members costs no more than one).
    """
    view = memoryview(data)
    inflater = zlib.decompressobj(47)
    size = 0
    offset = 0
    members = 1
    try:
        while offset < len(data):
            chunk = view[offset : offset + _CHUNK]
            piece = inflater.decompress(chunk)
            size += len(piece)
            if size > MAX_INFLATED:
                raise BadFile(f"inflates to over {MAX_INFLATED >> 20} MB")
            yield piece
            if inflater.eof:
                start = _next_member(view, offset, len(chunk), len(inflater.unused_data), members)
                if start is None:
                    return  # trailing bytes that are not another gzip member carry no records
                offset, members, inflater = start, members + 1, zlib.decompressobj(47)
            else:
                offset += len(chunk)
    except zlib.error as exc:
        raise BadFile(f"damaged gzip data ({exc})") from None
    if not inflater.eof:
        raise BadFile("truncated gzip: the file ends before its compressed data does")


_FAST_CHUNK = 1 << 18


def _inflate_fast(data: bytes) -> list[bytes] | None:
    """The inflated pieces of gzip data with python-isal, when it is installed and the data inflates cleanly
    to the end (every member) within KEEP_LIMIT; else None, and the caller inflates with zlib as `inflate` does
    (so a damaged, truncated or oversized file is judged, and reported, by zlib's own words)."""
    if _fast_zlib is None:
        return None
    try:
        # One member, its size in its trailer: inflate it into one buffer of that size (no pieces to join).
        inflater = _fast_zlib.decompressobj(47)
        whole = inflater.decompress(data, min(int.from_bytes(data[-4:], "little"), KEEP_LIMIT) + 1)
        if inflater.eof and inflater.unused_data[:2] != b"\x1f\x8b" and len(whole) <= KEEP_LIMIT:
            return [whole]  # trailing bytes that are not another gzip member carry no records (as `inflate`)
        del whole
    except Exception:
        return None
    pieces: list[bytes] = []
    size = 0
    view = memoryview(data)
    try:
        inflater = _fast_zlib.decompressobj(47)
        offset = 0
        members = 1
        while offset < len(data):
            chunk = view[offset : offset + _FAST_CHUNK]
            piece = inflater.decompress(chunk)
            size += len(piece)
            if size > KEEP_LIMIT:
                return None
            pieces.append(piece)
            if inflater.eof:
                start = _next_member(view, offset, len(chunk), len(inflater.unused_data), members)
                if start is None:
                    return pieces
                offset, members, inflater = start, members + 1, _fast_zlib.decompressobj(47)
            else:
                offset += len(chunk)
    except Exception:  # isal's error, or too many members: zlib says what is wrong, in the classic words
        return None
    return pieces if inflater.eof else None


def mentions(buf: bytes, needles: tuple[bytes, ...], step: int = 1 << 16) -> bool:
    """Whether any needle occurs in buf, searching a step at a time so that a needle met early costs the others
    no search of the whole buffer."""
    keep = max(len(n) for n in needles) - 1 if needles else 0
    for start in range(0, len(buf), step):
        low, high = max(0, start - keep), start + step
        if any(buf.find(n, low, high) >= 0 for n in needles):
            return True
    return False


# ---------------------------------------------------------------- typed decode: only whose record it is


class _Identity(msgspec.Struct, gc=False):
    accessKeyId: str | None = None
    arn: str | None = None
    principal: str | None = None


class _Head(msgspec.Struct, gc=False):
    userIdentity: _Identity | None = None


class _Heads(msgspec.Struct, gc=False):
    Records: list[_Head]


class _Raws(msgspec.Struct, gc=False):
    Records: list[msgspec.Raw]


_IDENTITY_OF = operator.attrgetter("userIdentity")
_KEY_OF = operator.attrgetter("accessKeyId")
_ARN_OF = operator.attrgetter("arn")
_HEADS = msgspec.json.Decoder(_Heads | list[_Head])
_RAWS = msgspec.json.Decoder(_Raws | list[msgspec.Raw])
_DIGITS = bytes(1 if 0x30 <= b <= 0x39 else 0 for b in range(256))
_STRIDE = 512


def _long_digits(buf: bytes, limit: int) -> bool:
    """Whether buf holds a run of more than `limit` digits (json.loads refuses such an integer)."""
    run = limit + 1
    # A run of `run` digits covers at least run // STRIDE consecutive sampled positions: sample first.
    if run >= 2 * _STRIDE and b"\x01" * (run // _STRIDE) not in buf[::_STRIDE].translate(_DIGITS):
        return False
    return b"\x01" * run in buf.translate(_DIGITS)


def _depth() -> int:
    frame: Any = sys._getframe(1)
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


def _deeper(frames: int, fn: Any, arg: Any) -> Any:
    if frames > 0:
        return _deeper(frames - 1, fn, arg)
    return fn(arg)


def _within(budget: int, fn: Any, arg: Any) -> Any:
    """fn(arg) with at most `budget` levels of recursion left, so that a decoder fails on nesting at least as
    shallow as the one json.loads failed on in the classic scan (whose stack the caller measured)."""
    spare = sys.getrecursionlimit() - _depth() - budget
    return _deeper(spare, fn, arg)


Result = tuple[Any, ...]
_DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError, ValueError, MemoryError)


class _Decoded:
    """A file the fast decode read: its bytes, records' identities and (once needed) records' bytes."""

    def __init__(self, buf: bytes, heads: list[_Head], budget: int) -> None:
        self.buf, self.budget = buf, budget
        self.raws: list[msgspec.Raw] | None = None
        # each record's access key id (None: no userIdentity), and the file's set of them (no None, no "")
        self.identities = identities = list(map(_IDENTITY_OF, heads))
        if None in identities:
            self.keyids = [None if u is None else u.accessKeyId for u in identities]
        else:
            self.keyids = list(map(_KEY_OF, identities))
        present = frozenset(self.keyids)
        self.ids = present - {None, ""}
        self.present = present

    def pick(self, keys: frozenset[str], roles: tuple[str, ...], users: tuple[str, ...]) -> list[tuple[int, bytes]]:
        """The records that are the targets' (by their decoded userIdentity, as events.is_ours decides)."""
        roles_in = tuple(f":assumed-role/{name}/" for name in roles)
        users_at = tuple(f":user/{name}" for name in users)
        wanted: list[int] = []
        if not keys.isdisjoint(self.present):
            wanted = list(itertools.compress(range(len(self.keyids)), map(keys.__contains__, self.keyids)))
        if roles_in or users_at:
            # whose record it is by its ARN (or principal): the arn, principal or "" of each record, then one
            # C-level pass per name
            identities = self.identities
            arns = list(map(_ARN_OF, identities)) if None not in identities else [u and u.arn for u in identities]
            if None in arns or "" in arns:
                arns = [a or (u.principal if u is not None else None) or "" for a, u in zip(arns, identities, strict=True)]
            index = range(len(arns))
            found = set(wanted)
            for marker in roles_in:
                found.update(itertools.compress(index, map(operator.contains, arns, itertools.repeat(marker))))
            for marker in users_at:
                found.update(itertools.compress(index, map(str.endswith, arns, itertools.repeat(marker))))
            wanted = sorted(found)
        if not wanted:
            return []
        if self.raws is None:
            raws = _within(self.budget, _RAWS.decode, self.buf)
            self.raws = raws.Records if isinstance(raws, _Raws) else raws
        return [(index, bytes(self.raws[index])) for index in wanted]


def _decode(buf: bytes, digits: int, budget: int) -> _Decoded | None:
    """The file's records' identities, when json.loads would read buf as the classic path does; else None."""
    if not buf.isascii():
        try:
            buf.decode("utf-8", "surrogatepass")  # what json.loads decodes bytes with (after its BOM check)
        except UnicodeDecodeError:
            return None
    if digits > 0 and _long_digits(buf, digits):
        return None
    try:
        heads = _within(budget, _HEADS.decode, buf)
    except _DECODE_ERRORS:
        return None
    return _Decoded(buf, heads.Records if isinstance(heads, _Heads) else heads, budget)


_CACHE: OrderedDict[str, _Decoded] = OrderedDict()  # the last few files decoded, for a search again soon after
_CACHE_FILES = 6  # more than the files a worker has in flight (see scanner.AHEAD)
_CACHE_BYTES = 128 << 20
_CACHE_LOCK = threading.Lock()


def forget() -> None:
    """Drop the decoded files kept for a search again."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _answer(decoded: _Decoded, found: bool | None, task: tuple[Any, ...]) -> Result:
    """The answer for a decoded file; found None: whether a needle occurs is not known yet."""
    _, needles, keys, roles, users, force, *_ = task
    size = len(decoded.buf)
    try:
        cands: list[tuple[int, bytes]] | None = decoded.pick(keys, roles, users)
    except _DECODE_ERRORS:
        cands = None
    if found is None:
        # A record that is the keys' names them in its bytes (unless written with JSON escapes): that spares
        # searching the whole file for them.
        found = any(n in raw for _, raw in (cands or [])[:8] for n in needles) or mentions(decoded.buf, needles)
    if not found and not force:
        return ("scan", size, False, None, "nohit", [], None)
    if cands is None:
        return ("scan", size, found, None, "fallback", [], None)
    return ("scan", size, found, None, "ok", cands, decoded.ids)


# Whether the last file this process scanned mentioned the keys: a key active all day is in nearly every file,
# so the next file is decoded first and searched only when none of its records is theirs (see `_answer`).
_last_found = False


def scan(task: tuple[Any, ...]) -> Result:
    """One file for one set of keys.

    task: (source: a path or the file's bytes, needles: the bytes to look for, keys: key ids, roles, users,
    force: decode even when no needle occurs, digits: json's integer digits limit, budget: recursion levels,
    name: the file's name, to find it among the files decoded last, or "").

    Returns ("read", reason) when the file cannot be read, else
    ("scan", size, found, error, status, cands, ids): size the inflated size (as far as it inflated, when
    damaged), found whether a needle occurs, error the damage met while inflating (None: none), status "nohit"
    (not decoded), "error" (not decoded: damaged), "ok" or "fallback" (see `_decode`).
    """
    source, needles, _, _, _, force, digits, budget, name = task
    if _EARLY:
        _from_early(name, digits, budget)
    with _CACHE_LOCK:
        cached = _CACHE.get(name) if name else None
    if cached is not None:
        return _answer(cached, None, task)
    if isinstance(source, str):
        try:
            with open(source, "rb") as handle:
                data = read_capped(handle)
        except OSError as exc:
            return ("read", f"cannot read it: {exc.strerror or type(exc).__name__}")
        except BadFile as exc:
            return ("read", str(exc))
    else:
        data = source
    if data[:2] == b"\x1f\x8b" and (fast := _inflate_fast(data)) is not None:
        # isal inflated it cleanly (zlib would too: it reports only damage, which isal refuses first)
        return _scan_inflated(fast, task)
    pieces: list[bytes] = []  # kept from the piece with the first hit on (the ones before are inflated again)
    hit: int | None = None  # the piece where a needle first occurs
    error: str | None = None
    kept = True
    size = 0
    if data[:2] != b"\x1f\x8b":
        size = len(data)
        pieces.append(data)
        if any(n in data for n in needles):
            hit = 0
    else:
        keep = max(len(n) for n in needles) - 1 if needles else 0
        tail = b""
        try:
            for index, piece in enumerate(inflate(data)):
                size += len(piece)
                if hit is None:
                    window = tail + piece if tail else piece
                    if any(n in window for n in needles):
                        hit = index
                    else:
                        tail = window[-keep:] if keep else b""
                if (hit is not None or force) and kept:
                    pieces.append(piece)
                    if size > KEEP_LIMIT:
                        kept, pieces = False, []
        except BadFile as exc:
            error = str(exc)
        if hit and not force and kept and error is None:
            # the pieces before the first hit were not kept: inflate them again (the same pieces: same input)
            before = []
            for index, piece in enumerate(inflate(data)):
                if index == hit:
                    break
                before.append(piece)
            pieces[:0] = before
    del data
    found = hit is not None
    if error is not None:
        return ("scan", size, found, error, "error", [], None)
    if not found and not force:
        return ("scan", size, False, None, "nohit", [], None)
    if not kept:
        return ("scan", size, found, None, "fallback", [], None)
    buf = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    del pieces
    return _decoded_answer(buf, found, task)


def _scan_inflated(pieces: list[bytes], task: tuple[Any, ...]) -> Result:
    """`scan` for gzip data that isal inflated cleanly (one piece per member)."""
    global _last_found
    needles, force = task[1], task[5]
    if len(pieces) == 1 and _last_found:
        answer = _decoded_answer(pieces[0], None, task)
        _last_found = answer[2]
        return answer
    if len(pieces) == 1:
        found = mentions(pieces[0], needles)
    else:  # several members: search them as one (a needle may straddle two)
        keep = max(len(n) for n in needles) - 1 if needles else 0
        found, tail = False, b""
        for piece in pieces:
            window = tail + piece if tail else piece
            if mentions(window, needles):
                found = True
                break
            tail = window[-keep:] if keep else b""
    _last_found = found
    if not found and not force:
        return ("scan", sum(len(piece) for piece in pieces), False, None, "nohit", [], None)
    buf = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    del pieces
    return _decoded_answer(buf, found, task)


def _decoded_answer(buf: bytes, found: bool | None, task: tuple[Any, ...]) -> Result:
    """The answer for an inflated file, decoded; found None: whether a needle occurs is not known yet."""
    needles, force, digits, budget, name = task[1], task[5], task[6], task[7], task[8]
    decoded = _decode(buf, digits, budget)
    if decoded is None:
        if found is None:
            found = mentions(buf, needles)
        if not found and not force:
            return ("scan", len(buf), False, None, "nohit", [], None)
        return ("scan", len(buf), found, None, "fallback", [], None)
    _keep(name, decoded)
    return _answer(decoded, found, task)


def _keep(name: str, decoded: _Decoded) -> None:
    """Keep a decoded file for a search again soon after (the last few, within _CACHE_BYTES)."""
    if name and len(decoded.buf) <= _CACHE_BYTES:
        with _CACHE_LOCK:
            _CACHE[name] = decoded
            while len(_CACHE) > _CACHE_FILES or sum(len(d.buf) for d in _CACHE.values()) > _CACHE_BYTES:
                _CACHE.popitem(last=False)


_RECORDS = msgspec.json.Decoder()


def parse_records(raws: list[bytes]) -> list[Any]:
    """Records' bytes (from a file the fast decode vouched for) as json.loads reads them; ValueError or
    RecursionError when json.loads would refuse one.

    msgspec reads valid JSON to the same values as json.loads, and refuses the few texts json.loads reads
    differently (a number out of a double's range, a lone surrogate escape, nesting past its limit): those
    records are read by json.loads itself."""
    if not raws:
        return []
    try:
        return list(_RECORDS.decode(b"[" + b",".join(raws) + b"]"))
    except msgspec.DecodeError:
        pass
    out = []
    for raw in raws:
        try:
            out.append(_RECORDS.decode(raw))
        except msgspec.DecodeError:
            out.append(json.loads(raw))
    return out


# ---------------------------------------------------------------- worker process

_HEADER = struct.Struct("<Q")


def task_from_wire(body: bytes) -> tuple[Any, ...]:
    source, needles, keys, roles, users, force, digits, budget, name, *early = msgspec.msgpack.decode(body)
    return (source, tuple(needles), frozenset(keys), tuple(roles), tuple(users), force, digits, budget, name, *early)


# Early scans: `stanch review-logs` starts the workers before it imports the engine (about 0.3 s) and sends
# them the first files (a task with a tenth field, "early", answered with nothing), with a recursion budget no
# larger than the review's. The worker decodes each (as if forced) and keeps it; the review's own request for
# that file, whatever keys it has learnt by then, is answered from it as a file decoded moments before is (a
# file that decoded within a smaller budget decodes the same within a larger one; one that did not, or was
# not kept, is scanned as usual).
_EARLY: dict[str, tuple[int, int, _Decoded]] = {}  # name -> (digits, budget, the file decoded)
_EARLY_BYTES = 96 << 20


def _early(task: tuple[Any, ...]) -> None:
    source, needles, keys, roles, users, _, digits, budget, name, *_ = task
    if not name or isinstance(source, bytes) or name in _EARLY:
        return
    if sum(len(d.buf) for _, _, d in _EARLY.values()) >= _EARLY_BYTES:
        return
    scan((source, needles, keys, roles, users, True, digits, budget, name))
    with _CACHE_LOCK:
        decoded = _CACHE.pop(name, None)
    if decoded is not None:
        _EARLY[name] = (digits, budget, decoded)


def _from_early(name: str, digits: int, budget: int) -> None:
    """Move a file decoded early to the cache for this task, when its decode holds for it."""
    kept = _EARLY.pop(name, None) if name else None
    if kept is not None and kept[0] == digits and kept[1] <= budget:
        _keep(name, kept[2])


def result_from_wire(body: bytes) -> Result:
    result = msgspec.msgpack.decode(body)
    if result[0] != "scan":
        return tuple(result)
    kind, size, found, error, status, cands, ids = result
    return (kind, size, found, error, status, [(i, raw) for i, raw in cands], None if ids is None else frozenset(ids))


def to_wire(value: tuple[Any, ...]) -> bytes:
    body = msgspec.msgpack.encode(value)
    return _HEADER.pack(len(body)) + body


def _read_exact(stream: Any, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def serve() -> None:
    """Answer scan requests from stdin on stdout (length-prefixed msgpack) until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it closes our stdin
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the answers
    while True:
        header = _read_exact(requests, _HEADER.size)
        if header is None:
            return
        body = _read_exact(requests, _HEADER.unpack(header)[0])
        if body is None:
            return
        early = False
        try:
            task = task_from_wire(body)
            early = len(task) > 9
            if early:
                _early(task)
                continue
            result: Result = scan(task)
        except Exception as exc:  # the parent judges the file the classic way
            if early:
                continue  # an early scan that failed: the review's own request scans the file again
            result = ("failed", f"{type(exc).__name__}: {exc}"[:200])
        answers.write(to_wire(result))
        answers.flush()


if __name__ == "__main__":
    serve()
