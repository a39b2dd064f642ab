"""Log review: what did a key do? CloudTrail events made with one or more access keys, and what they mean.

Sources: CloudTrail log files in S3 (`s3://bucket/prefix`, the real layout), local directories of the same
files (`.json`/`.json.gz`, `{"Records": [...]}` or a bare array), and the LookupEvents API (`lookup:`).
Derived credentials are followed: a GetSessionToken, GetFederationToken or AssumeRole made with a key yields
`ASIA...` keys whose events belong to the review too; a CreateAccessKey yields keys to contain (also followed).

Speed: files are streamed one at a time (memory is bounded by the largest file times the workers), each is
decompressed in C with the GIL released, and only files that contain one of the key ids as bytes are parsed;
so a review of millions of events costs about what decompressing them costs, spread over every core.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from integrations.aws.cloudtrail_review.events import child_key, is_ours, needle, slim
from integrations.aws.cloudtrail_review.sources import Unit, day_of, local_units, s3_units


def _records(raw: bytes) -> list[dict[str, Any]]:
    data = json.loads(raw)
    if isinstance(data, dict):
        records = data.get("Records", [])
    elif isinstance(data, list):
        records = data
    else:
        records = []
    return [r for r in records if isinstance(r, dict)]


_CHUNK = 1 << 16


def _search(data: bytes, needles: tuple[bytes, ...]) -> tuple[int, bool]:
    """(decompressed size, whether any needle occurs), inflating in small pieces.

    Small pieces keep memory bounded and are faster than one big inflate (no output reallocations); zlib
    frees the GIL while it inflates, so threads use every core.
    """
    if data[:2] != b"\x1f\x8b":
        return len(data), any(n in data for n in needles)
    inflater = zlib.decompressobj(47)
    keep = max(len(n) for n in needles) - 1 if needles else 0
    tail = b""
    size = 0
    for offset in range(0, len(data), _CHUNK):
        piece = inflater.decompress(data[offset : offset + _CHUNK])
        size += len(piece)
        window = tail + piece if tail else piece
        if any(n in window for n in needles):
            return size, True
        tail = window[-keep:] if keep else b""
    return size, False


def _decompress(raw: bytes) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        return zlib.decompress(raw, 47)  # gzip; releases the GIL while it inflates
    return raw


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

    def _read(self, unit: Unit) -> bytes:
        if unit.bucket is None:
            with open(unit.path, "rb") as handle:
                return handle.read()
        s3 = getattr(self._local, "s3", None)
        if s3 is None:
            s3 = self._local.s3 = self.s3_factory()
        return bytes(s3.get_object(Bucket=unit.bucket, Key=unit.path)["Body"].read())

    def _scan_one(self, unit: Unit, keys: frozenset[str], since: str | None, until: str | None) -> list[dict[str, Any]]:
        data = self._read(unit)
        size, hit = _search(data, tuple(needle(k) for k in keys))
        with self._lock:
            if unit not in self._seen:  # a file searched again for a late key counts once
                self._seen.add(unit)
                self.files_scanned += 1
                self.bytes_scanned += size
        if not hit:
            return []
        raw = _decompress(data)
        hits = []
        for record in _records(raw):
            if not is_ours(record.get("userIdentity") or {}, keys):
                continue
            stamp = record.get("eventTime", "")
            if (since and stamp < since) or (until and stamp > until):
                continue
            hits.append(slim(record))
        return hits

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
            absorb(self._scan_one(unit, snapshot, since, until))

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
                absorb(self._scan_one(unit, missing, since, until))
        return hits

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
