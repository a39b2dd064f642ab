"""Log review: what did a key do? CloudTrail events made with one or more access keys, and what they mean.

Sources: CloudTrail log files in S3 (`s3://bucket/prefix`, the real layout), local directories of the same
files (`.json`/`.json.gz`, `{"Records": [...]}` or a bare array), and the LookupEvents API (`lookup:`).
Derived credentials are followed: a GetSessionToken, GetFederationToken or AssumeRole made with a key yields
`ASIA...` keys whose events belong to the review too; a CreateAccessKey yields keys to contain (also followed).

Speed: files are streamed one at a time (memory is bounded by the largest file times the workers), each is
decompressed in C with the GIL released, and only files that contain one of the key ids as bytes are parsed;
so a review of millions of events costs about what decompressing them costs, spread over every core.

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
import threading
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from integrations.aws.cloudtrail_review.events import BadRecord, child_key, identity_of, is_ours, needle, slim
from integrations.aws.cloudtrail_review.report import Skips
from integrations.aws.cloudtrail_review.sources import Unit, day_of, local_units, s3_units

_log = logging.getLogger("stanch.review")


class BadFile(Exception):
    """A file the review cannot read; the message says why."""


MAX_INFLATED = 1 << 30  # a CloudTrail file inflates to tens of MB; more is a planted bomb


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


_CHUNK = 1 << 16


def _inflate(data: bytes) -> Iterator[bytes]:
    """The inflated pieces of gzip data (every member), a few MB at most each; BadFile when it is damaged.

    Small pieces keep memory bounded and are faster than one big inflate (no output reallocations); zlib
    frees the GIL while it inflates, so threads use every core.
    """
    inflater = zlib.decompressobj(47)
    size = 0
    offset = 0
    try:
        while offset < len(data):
            piece = inflater.decompress(data[offset : offset + _CHUNK])
            offset += _CHUNK
            size += len(piece)
            if size > MAX_INFLATED:
                raise BadFile(f"inflates to over {MAX_INFLATED >> 20} MB")
            yield piece
            if inflater.eof:
                rest = inflater.unused_data + data[offset:]
                if rest[:2] != b"\x1f\x8b":
                    return  # trailing bytes that are not another gzip member carry no records
                data, offset, inflater = rest, 0, zlib.decompressobj(47)
    except zlib.error as exc:
        raise BadFile(f"damaged gzip data ({exc})") from None
    if not inflater.eof:
        raise BadFile("truncated gzip: the file ends before its compressed data does")


def _search(data: bytes, needles: tuple[bytes, ...]) -> tuple[int, bool]:
    """(decompressed size, whether any needle occurs), inflating in small pieces; BadFile for a damaged gzip."""
    if data[:2] != b"\x1f\x8b":
        return len(data), any(n in data for n in needles)
    keep = max(len(n) for n in needles) - 1 if needles else 0
    tail = b""
    size = 0
    for piece in _inflate(data):
        size += len(piece)
        window = tail + piece if tail else piece
        if any(n in window for n in needles):
            return size, True
        tail = window[-keep:] if keep else b""
    return size, False


def _decompress(raw: bytes) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        return b"".join(_inflate(raw))
    return raw


def unit_name(unit: Unit) -> str:
    """How a report names a file: s3://bucket/key, or its local path."""
    return f"s3://{unit.bucket}/{unit.path}" if unit.bucket else unit.path


class Scanner:
    """Scans units for events made with a set of keys, following derived keys as it meets them.

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
                    return handle.read()
            s3 = getattr(self._local, "s3", None)
            if s3 is None:
                s3 = self._local.s3 = self.s3_factory()
            return bytes(s3.get_object(Bucket=unit.bucket, Key=unit.path)["Body"].read())
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
            size, hit = _search(data, tuple(needle(k) for k in keys))
        except BadFile as exc:
            self._count(unit, 0)
            self.skips.file(name, str(exc))
            return []
        self._count(unit, size)
        if not hit:
            return []  # a file that does not mention the keys is not parsed, however it is damaged
        try:
            records = _records(_decompress(data))
        except BadFile as exc:
            self.skips.file(name, str(exc))
            return []
        hits = []
        for index, record in enumerate(records):
            try:
                if not is_ours(identity_of(record), keys):
                    continue
                event = slim(record)
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


def scanner_for(source: str, ctx_client: Any, since: str | None, until: str | None, workers: int | None = None) -> Scanner:
    """A scanner over `s3://bucket/prefix` or a local file or directory."""
    if source.startswith("s3://"):
        bucket, _, prefix = source.removeprefix("s3://").partition("/")
        s3 = ctx_client("s3")
        return Scanner(s3_units(s3, bucket, prefix, since, until), s3_factory=lambda: ctx_client("s3"), workers=workers)
    return Scanner(local_units(Path(source)), workers=workers)
