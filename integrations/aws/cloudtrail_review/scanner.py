"""Log review: what did a key do? CloudTrail events made with one or more access keys, and what they mean.

Sources: CloudTrail log files in S3 (`s3://bucket/prefix`, the real layout), local directories of the same
files (`.json`/`.json.gz`, `{"Records": [...]}` or a bare array), and the LookupEvents API (`lookup:`).
Derived credentials are followed: a GetSessionToken, GetFederationToken or AssumeRole made with a key yields
`ASIA...` keys whose events belong to the review too; a CreateAccessKey yields keys to contain (also followed).

Speed: each file is inflated in C and searched for the keys' bytes; a file that mentions them has only its
records' userIdentity decoded (msgspec), and only the records of the keys are parsed whole. Large reviews run on
worker processes (`workers.py`), small ones in-process; files are settled in time order with every key known by
then, so the result is the classic scanner's (`ClassicScanner`, kept as the reference and for the files the fast
decode hands back). See docs/review-speed.md.

Bad input never stops a review. A file that cannot be read (damaged or truncated gzip, not JSON, not UTF-8, no
Records array, an unreadable object) is listed in the report's `files_skipped` with the reason, and a record
that cannot be used (not an object, a userIdentity that is not one, a missing or malformed eventTime...) in
`records_skipped`; the rest is reviewed and the report says it is `partial`. A gzip file is always inflated
to the end, so a damaged one is listed even when it does not mention the keys; a file that inflates but does
not mention them is not parsed (it holds none of their events), so its JSON is never judged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from integrations.aws.cloudtrail_review import fastscan
from integrations.aws.cloudtrail_review.events import BadRecord, child_key, identity_of, is_ours, needle, slim
from integrations.aws.cloudtrail_review.fastscan import MAX_INFLATED, BadFile, inflate, read_capped
from integrations.aws.cloudtrail_review.report import Skips
from integrations.aws.cloudtrail_review.sources import Unit, day_of, local_units, s3_units
from integrations.aws.cloudtrail_review.workers import WorkerDied, Workers

_log = logging.getLogger("stanch.review")
__all__ = ["MAX_INFLATED", "BadFile", "ClassicScanner", "Scanner", "scanner_for", "unit_name"]


# One inflate for both paths: the classic search and the fast path must see the same pieces.
_inflate = inflate


def _records(raw: bytes) -> list[Any]:
    """The Records of a CloudTrail file ({"Records": [...]} or a bare array); BadFile when it has none."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadFile(f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise BadFile(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadFile("not JSON the review can read: nested too deep") from None
    except ValueError as exc:
        raise BadFile(f"not JSON: {exc}") from None
    records = data.get("Records") if isinstance(data, dict) else data
    if not isinstance(records, list):
        found = "Records is null" if isinstance(data, dict) and data.get("Records", 0) is None else "no Records array"
        raise BadFile(f"not a CloudTrail log file: {found}")
    return records


def _search(data: bytes, needles: tuple[bytes, ...]) -> tuple[int, bytes | None, str | None]:
    """(inflated size, the inflated text when any needle occurs in it else None, the damage met or None),
    inflating the whole file once in small pieces: the size is what the review read of it (as far as it inflated,
    for a damaged gzip)."""
    if data[:2] != b"\x1f\x8b":
        return len(data), data if any(n in data for n in needles) else None, None
    keep = max(len(n) for n in needles) - 1 if needles else 0
    tail = b""
    pieces: list[bytes] = []
    hit = False
    try:
        for piece in _inflate(data):
            pieces.append(piece)
            if not hit:
                window = tail + piece if tail else piece
                hit = any(n in window for n in needles)
                tail = window[-keep:] if keep else b""
    except BadFile as exc:
        return sum(map(len, pieces)), None, str(exc)
    return sum(map(len, pieces)), b"".join(pieces) if hit else None, None


def unit_name(unit: Unit) -> str:
    """How a report names a file: s3://bucket/key, or its local path."""
    return f"s3://{unit.bucket}/{unit.path}" if unit.bucket else unit.path


class ClassicScanner:
    """The reference scanner: every file that mentions a key is parsed whole with json.loads (kept to judge the
    files the fast path hands back, and as the reference the bench compares the fast path with).

    Files are read in time order (CloudTrail's names sort by time) on a thread pool; decompression frees the
    GIL, so every core works. A key derived in one file is searched for in every later file; the few files
    already in flight when it was found are searched again for it afterwards.
    """

    def __init__(self, units: list[Unit], s3_factory: Any = None, workers: int | None = None):
        self.units = sorted(units, key=lambda u: (u.day or "", u.path))
        self.s3_factory = s3_factory
        self.workers = workers or os.cpu_count() or 1
        self.files_scanned = 0
        self.bytes_scanned = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._seen: set[Unit] = set()
        self.skips = Skips()

    def _read(self, unit: Unit) -> bytes:
        try:
            if unit.bucket is None:
                with open(unit.path, "rb") as handle:
                    return read_capped(handle)
            s3 = getattr(self._local, "s3", None)
            if s3 is None:
                s3 = self._local.s3 = self.s3_factory()
            return read_capped(s3.get_object(Bucket=unit.bucket, Key=unit.path)["Body"])
        except OSError as exc:
            raise BadFile(f"cannot read it: {exc.strerror or type(exc).__name__}") from None
        except Exception as exc:
            # botocore's errors (imported only when S3 is read: `stanch validate` loads this module and needs none)
            from botocore.exceptions import BotoCoreError, ClientError

            if not isinstance(exc, BotoCoreError | ClientError):
                raise
            code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
            raise BadFile(f"cannot read it: {code}") from None

    def _scan_one(self, unit: Unit, keys: frozenset[str], since: str | None, until: str | None) -> list[dict[str, Any]]:
        name = unit_name(unit)
        if self.skips.skipped_file(name):
            return []
        try:
            data = self._read(unit)
        except BadFile as exc:
            self._count(unit, 0)
            self.skips.file(name, str(exc))
            return []
        size, text, error = _search(data, tuple(needle(k) for k in keys))
        del data
        self._count(unit, size)
        if error is not None:
            self.skips.file(name, error)
            return []
        if text is None:
            return []  # a file that does not mention the keys is not parsed, however its JSON is damaged
        try:
            records = _records(text)
        except BadFile as exc:
            self.skips.file(name, str(exc))
            return []
        return self._judge(name, enumerate(records), keys, since, until)

    def _judge(
        self, name: str, records: Iterable[tuple[int, Any]], keys: frozenset[str], since: str | None, until: str | None
    ) -> list[dict[str, Any]]:
        """The events among a file's (index, record) pairs that are the keys' and in the window; a record that
        cannot be judged is listed as skipped."""
        hits = []
        for index, record in records:
            try:
                identity = identity_of(record)
                if not is_ours(identity, keys):
                    continue
                event = slim(record, identity)
            except BadRecord as exc:
                self.skips.record(name, index, str(exc))
                continue
            stamp = event["eventTime"]
            if (since and stamp < since) or (until and stamp > until):
                continue
            hits.append(event)
        return hits

    def _count(self, unit: Unit, size: int) -> None:
        with self._lock:
            if unit not in self._seen:  # a file searched again for a late key counts once
                self._seen.add(unit)
                self.files_scanned += 1
                self.bytes_scanned += size

    def scan(self, keys: Iterable[str], since: str | None, until: str | None) -> list[dict[str, Any]]:
        """Every event made with `keys` or with keys they derived (GetSessionToken, CreateAccessKey...)."""
        wanted: set[str] = set(keys)
        found_day: dict[str, str] = {}  # derived key -> the day it was made
        used: dict[Unit, frozenset[str]] = {}
        hits: list[dict[str, Any]] = []

        def absorb(batch: list[dict[str, Any]]) -> None:
            with self._lock:
                hits.extend(batch)
                for event in batch:
                    child = child_key(event)
                    if child and child not in wanted:
                        wanted.add(child)
                        found_day[child] = day_of(event["eventTime"]) or ""

        def work(unit: Unit) -> None:
            with self._lock:
                snapshot = frozenset(wanted)
                used[unit] = snapshot
            absorb(self._guarded(unit, snapshot, since, until))

        self._run(work, self.units)
        # Files read while a key was still unknown, dated on or after the day it was made, are read again.
        while True:
            with self._lock:
                late = {
                    unit: frozenset(k for k in wanted - seen if unit.day is None or unit.day >= found_day.get(k, ""))
                    for unit, seen in used.items()
                }
            todo = [(unit, missing) for unit, missing in late.items() if missing]
            if not todo:
                break
            for unit, missing in todo:
                with self._lock:
                    used[unit] = used[unit] | missing
                absorb(self._guarded(unit, missing, since, until))
        return hits

    def _guarded(self, unit: Unit, keys: frozenset[str], since: str | None, until: str | None) -> list[dict[str, Any]]:
        try:
            return self._scan_one(unit, keys, since, until)
        except Exception as exc:  # a failure nobody foresaw skips the file, never the review
            _log.warning("review: skipped %s after an unexpected error", unit_name(unit), exc_info=True)
            self.skips.file(unit_name(unit), f"unexpected error: {type(exc).__name__}")
            return []

    def _run(self, work: Any, units: list[Unit]) -> None:
        if len(units) <= 2 or self.workers == 1:
            for unit in units:
                work(unit)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="stanch-review") as pool:
            for _ in pool.map(work, units):
                pass


PROCESS_BYTES = 16 << 20  # compressed input below which worker processes cost more than they save
PROCESS_FILES = 4
AHEAD = 4  # files in flight per worker process: enough that a busy parent does not leave them idle
_RECURSION_MARGIN = 100  # levels the fast decode keeps short of where json.loads failed in the classic scan

Events = list[dict[str, Any]]


class _Classic(Exception):
    """The fast path cannot answer for this file: the classic path judges it."""


class _InProcess:
    """Runs fastscan in the calling thread: for small reviews, where starting processes costs more."""

    ahead = False  # scan a file at its turn, with every key known by then: nothing is ever searched again

    def submit(self, task: tuple[Any, ...]) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fastscan.scan(task))
        except Exception as exc:  # handed to the classic path by _settle
            future.set_exception(exc)
        return future

    def close(self, kill: bool = False) -> None:
        pass


class _Processes:
    ahead = True  # keep every worker busy; a file sent before a key was known is searched again for it

    def __init__(self, count: int) -> None:
        self.workers = Workers(count)

    def submit(self, task: tuple[Any, ...]) -> Future[Any]:
        return self.workers.submit(task, affinity=task[-1])

    def close(self, kill: bool = False) -> None:
        self.workers.close(kill=kill)


class _Turn:
    """A file of the first pass: its S3 bytes (fetched ahead) and the searches sent for it so far."""

    def __init__(self, unit: Unit, data: Future[Any] | None) -> None:
        self.unit, self.data = unit, data
        self.sent: list[tuple[frozenset[str], Future[Any]]] = []


def _ruled_out(answer: Future[Any], keys: frozenset[str]) -> bool:
    """Whether a search already answered rules out the keys: the file is damaged (skipped whatever it holds), or
    it was decoded and none of its records was made by them."""
    if not answer.done() or answer.exception() is not None:
        return False
    result = answer.result()
    if result[0] != "scan":
        return False
    return bool(result[3] is not None or (result[4] == "ok" and not keys & result[6]))


def _chain(source: Future[Any], then: Any) -> Future[Any]:
    """A future for then(source's result), itself a future; source's exception passes through."""
    out: Future[Any] = Future()

    def step(done: Future[Any]) -> None:
        try:
            inner = then(done.result())
        except BaseException as exc:  # delivered to whoever waits
            out.set_exception(exc)
            return
        inner.add_done_callback(lambda f: out.set_exception(e) if (e := f.exception()) else out.set_result(f.result()))

    source.add_done_callback(step)
    return out


class Scanner(ClassicScanner):
    """The review's scanner: the classic scanner's results, events and skips, at about the cost of inflating.

    Each file is inflated in C, searched for the keys' bytes, and when it mentions them only its records'
    userIdentity is decoded (msgspec); the records that are the targets' are then parsed (msgspec, to the values
    json.loads gives; json.loads itself for what msgspec refuses) and judged by the classic code (`slim`,
    `is_ours`). A file the fast decode cannot vouch for (anything json.loads
    might read differently: not UTF-8, nested deep, huge integers, a record or userIdentity that is not an
    object...) is judged by the classic path, so a bad file is reported in the same words.

    Files are settled in time order with every key known by then, as a one-thread classic scan would; the
    re-reading of files dated on or after the day a late key was made is kept exactly. Large reviews run on
    worker processes (msgspec holds the GIL), a few files ahead: a file sent before a key was found is
    searched again for that key only when its records could hold it. A file whose records' key ids are known
    is never read again for a key that made none of them.
    """

    def __init__(self, units: list[Unit], s3_factory: Any = None, workers: int | None = None, processes: bool | None = None):
        super().__init__(units, s3_factory, workers)
        self.processes = processes  # None: worker processes for large reviews only; False: never; True: always
        self._ids: dict[Unit, frozenset[str]] = {}  # files the fast decode read -> the key ids that made records
        self._classic: set[Unit] = set()  # files the classic path judges, in every pass
        self._early: dict[Unit, tuple[frozenset[str], Future[Any]]] = {}  # second-pass searches sent early
        self._fetcher: ThreadPoolExecutor | None = None

    def _engine(self) -> _InProcess | _Processes:
        count = max(1, self.workers)
        if self.processes is False or not sys.executable or (self.processes is None and count < 2):
            return _InProcess()
        if self.processes is None:
            size = sum(u.size for u in self.units)
            if len(self.units) < PROCESS_FILES or size < PROCESS_BYTES:
                return _InProcess()
        try:
            return _Processes(min(count, len(self.units)) or 1)
        except OSError:
            _log.warning("review: no worker processes (%s); reading in this one", exc_info=True)
            return _InProcess()

    def scan(self, keys: Iterable[str], since: str | None, until: str | None) -> Events:
        """Every event made with `keys` or with keys they derived (GetSessionToken, CreateAccessKey...)."""
        targets = list(dict.fromkeys(keys))
        wanted: set[str] = set(targets)
        order = list(targets)  # needles are tried in this order: the reviewed keys first
        found_day: dict[str, str] = {}
        used: dict[Unit, frozenset[str]] = {}
        hits: Events = []
        roles = tuple(n for k, _, n in (t.partition("/") for t in targets) if k == "role")
        users = tuple(n for k, _, n in (t.partition("/") for t in targets) if k == "user")
        budget = sys.getrecursionlimit() - fastscan._depth() - _RECURSION_MARGIN
        digits = sys.get_int_max_str_digits()

        def task(unit: Unit, source: str | bytes, keyset: frozenset[str], force: bool) -> tuple[Any, ...]:
            needles = tuple(needle(k) for k in order if k in keyset)
            mine = (roles, users) if any(t in keyset for t in targets if "/" in t) else ((), ())
            # a worker keeps the last files it decoded, to search one again for a key found meanwhile
            name = unit_name(unit) if engine.ahead else ""
            return (source, needles, keyset, *mine, force, digits, budget, name)

        def absorb(batch: Events) -> None:
            hits.extend(batch)
            for event in batch:
                child = child_key(event)
                if child and child not in wanted:
                    wanted.add(child)
                    order.append(child)
                    found_day[child] = day_of(event["eventTime"]) or ""

        engine = self._engine()
        window = AHEAD * len(engine.workers.workers) if isinstance(engine, _Processes) else max(2, self.workers)
        failed = True
        try:
            # One pass in time order, each file settled with every key known when its turn comes.
            queue: deque[_Turn] = deque()
            pending = iter(self.units)

            def admit() -> None:
                while len(queue) < window:
                    unit = next(pending, None)
                    if unit is None:
                        return
                    turn = _Turn(unit, self._fetch(unit))
                    if engine.ahead:
                        now = frozenset(wanted)
                        turn.sent.append((now, self._send(engine, unit, turn.data, task, now, False)))
                    queue.append(turn)

            admit()
            while queue:
                turn = queue.popleft()
                now = frozenset(wanted)
                if not turn.sent:
                    turn.sent.append((now, self._send(engine, turn.unit, turn.data, task, now, False)))
                used[turn.unit] = now
                absorb(self._settle(engine, turn.unit, turn.data, task, now, turn.sent, since, until))
                new = frozenset(wanted) - now
                if new and engine.ahead:
                    # A key made in this file and used in it sends the file back in the second pass: search it
                    # for that key now, while its worker still holds it decoded.
                    own = new & self._ids.get(turn.unit, frozenset())
                    if own:
                        self._early[turn.unit] = (own, self._send(engine, turn.unit, turn.data, task, own, True))
                    # the files already sent are searched for the new keys now, not when their turn comes
                    for later in queue:
                        if not _ruled_out(later.sent[0][1], new):
                            later.sent.append((new, self._send(engine, later.unit, later.data, task, new, True)))
                admit()
            # Files read while a key was still unknown, dated on or after the day it was made, are read again
            # (the classic rule), unless their records' key ids rule the late keys out.
            while True:
                late = {
                    unit: frozenset(k for k in wanted - seen if unit.day is None or unit.day >= found_day.get(k, ""))
                    for unit, seen in used.items()
                }
                todo = [(unit, missing) for unit, missing in late.items() if missing]
                if not todo:
                    break
                again = []
                for unit, missing in todo:
                    used[unit] = used[unit] | missing
                    known = self._ids.get(unit)
                    could = unit in self._classic or known is None or bool(missing & known)
                    if could and not self.skips.skipped_file(unit_name(unit)):
                        again.append((unit, missing))
                self._again(engine, again, task, absorb, window, since, until)
            failed = False
        finally:
            engine.close(kill=failed)
            if self._fetcher is not None:
                self._fetcher.shutdown(wait=True, cancel_futures=True)
                self._fetcher = None
        return hits

    def _again(
        self, engine: Any, todo: list[tuple[Unit, frozenset[str]]], task: Any, absorb: Any, window: int, *span: Any
    ) -> None:
        """Search files again for late keys, in order, a window ahead."""
        queue: deque[tuple[Unit, frozenset[str], Future[Any] | None, list[tuple[frozenset[str], Future[Any]]]]]
        queue = deque()
        pending = iter(todo)

        def admit() -> None:
            while len(queue) < window:
                item = next(pending, None)
                if item is None:
                    return
                unit, missing = item
                data = self._fetch(unit)
                early = self._early.pop(unit, None)
                if early is not None and early[0] <= missing:
                    # searched for some of these keys in the first pass: the rest only (the parts are combined)
                    rest = missing - early[0]
                    if not rest & self._ids.get(unit, rest):
                        rest = frozenset()  # none of its records are theirs: _combine rules them out
                    sent = [early] + ([(rest, self._send(engine, unit, data, task, rest, False))] if rest else [])
                    queue.append((unit, missing, data, sent))
                    continue
                answer = [(missing, self._send(engine, unit, data, task, missing, False))] if engine.ahead else []
                queue.append((unit, missing, data, answer))

        admit()
        while queue:
            unit, missing, data, sent = queue.popleft()
            if not sent:
                sent = [(missing, self._send(engine, unit, data, task, missing, False))]
            absorb(self._settle(engine, unit, data, task, missing, sent, *span))
            admit()

    def _fetch(self, unit: Unit) -> Future[Any] | None:
        """An S3 object's bytes, fetched ahead on a thread (a local file is read by whoever scans it)."""
        if unit.bucket is None:
            return None
        if self._fetcher is None:
            self._fetcher = ThreadPoolExecutor(max(2, self.workers), thread_name_prefix="stanch-review-fetch")
        return self._fetcher.submit(self._read, unit)

    def _send(
        self, engine: Any, unit: Unit, data: Future[Any] | None, task: Any, keys: frozenset[str], force: bool
    ) -> Future[Any]:
        if data is None:
            return engine.submit(task(unit, unit.path, keys, force))

        def scan(raw: bytes) -> Future[Any]:
            return engine.submit(task(unit, raw, keys, force))

        def read_error(done: Future[Any]) -> Future[Any] | None:
            exc = done.exception()
            if isinstance(exc, BadFile):
                failed: Future[Any] = Future()
                failed.set_result(("read", str(exc)))
                return failed
            return None

        early = read_error(data) if data.done() else None
        if early is not None:
            return early
        out: Future[Any] = Future()

        def step(done: Future[Any]) -> None:
            bad = read_error(done)
            if bad is not None:
                out.set_result(bad.result())
                return
            _chain(done, scan).add_done_callback(
                lambda f: out.set_exception(e) if (e := f.exception()) else out.set_result(f.result())
            )

        data.add_done_callback(step)
        return out

    def _settle(
        self,
        engine: Any,
        unit: Unit,
        data: Future[Any] | None,
        task: Any,
        keys: frozenset[str],
        sent: list[tuple[frozenset[str], Future[Any]]],
        since: str | None,
        until: str | None,
    ) -> Events:
        """What the classic `_scan_one(unit, keys)` would return (and count, and skip), from fastscan's answers."""
        name = unit_name(unit)
        try:
            if unit in self._classic:
                return self._scan_one(unit, keys, since, until)
            if self.skips.skipped_file(name):
                return []
            try:
                return self._combine(engine, unit, data, task, keys, sent, since, until)
            except (_Classic, WorkerDied):
                self._classic.add(unit)
                self._ids.pop(unit, None)
                return self._scan_one(unit, keys, since, until)
        except Exception as exc:  # a failure nobody foresaw skips the file, never the review
            _log.warning("review: skipped %s after an unexpected error", name, exc_info=True)
            self.skips.file(name, f"unexpected error: {type(exc).__name__}")
            return []

    def _combine(
        self,
        engine: Any,
        unit: Unit,
        data: Future[Any] | None,
        task: Any,
        keys: frozenset[str],
        sent: list[tuple[frozenset[str], Future[Any]]],
        since: str | None,
        until: str | None,
    ) -> Events:
        name = unit_name(unit)
        first = sent[0][1].result()
        if first[0] == "read":
            self._count(unit, 0)
            self.skips.file(name, first[1])
            return []
        parts: list[tuple[frozenset[str], tuple[Any, ...]]] = [(sent[0][0], first)]
        parts += [(part_keys, answer.result()) for part_keys, answer in sent[1:]]
        missing = keys - frozenset().union(*(part_keys for part_keys, _ in sent))
        if missing and first[0] == "scan" and first[4] != "fallback":
            _, _, found, error, status, _, ids = first
            if not (error is not None or (status == "ok" and not missing & ids)):
                # sent before these keys were known: search it for them (decoded if the file is read anyway)
                parts.append((missing, self._send(engine, unit, data, task, missing, found).result()))
        if any(part[0] != "scan" or part[4] == "fallback" for _, part in parts):
            raise _Classic
        # the size the file inflated to (as far as it did, when damaged): every part read the same file
        size, error = first[1], first[3]
        if any(part[1] != size or part[3] != error for _, part in parts):
            raise _Classic  # the file changed between reads
        self._count(unit, size)
        if error is not None:
            self.skips.file(name, error)
            return []
        if not any(part[2] for _, part in parts):
            return []  # a file that does not mention the keys is not parsed, however its JSON is damaged
        ids = next(part[6] for _, part in parts if part[4] == "ok")
        cands: dict[int, bytes] = {}
        for part_keys, part in parts:
            if part[4] != "ok" and (any("/" in k for k in part_keys) or part_keys & ids):
                # this part's needles do not occur, but the file is parsed for the others: decode it for these too
                part = self._send(engine, unit, data, task, part_keys, True).result()
                if part[0] != "scan" or part[4] != "ok" or part[1] != size:
                    raise _Classic
            cands.update(part[5])
        order = sorted(cands)
        try:
            records = list(zip(order, fastscan.parse_records([cands[index] for index in order]), strict=True))
        except (ValueError, RecursionError):
            raise _Classic from None
        self._ids[unit] = ids | self._ids.get(unit, frozenset())
        return self._judge(name, records, keys, since, until)


def scanner_for(source: str, ctx_client: Any, since: str | None, until: str | None, workers: int | None = None) -> Scanner:
    """A scanner over `s3://bucket/prefix` or a local file or directory."""
    if source.startswith("s3://"):
        bucket, _, prefix = source.removeprefix("s3://").partition("/")
        s3 = ctx_client("s3")
        return Scanner(s3_units(s3, bucket, prefix, since, until), s3_factory=lambda: ctx_client("s3"), workers=workers)
    return Scanner(local_units(Path(source)), workers=workers)
