"""Where CloudTrail records come from: local files, S3 objects (the real layout), the LookupEvents API."""

from __future__ import annotations

import gzip
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from integrations.aws.cloudtrail_review.events import BadRecord, identity_of, slim
from integrations.aws.cloudtrail_review.report import Skips

_DATE_IN_KEY = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/")


@dataclass(frozen=True)
class Unit:
    """One log file: a local path or an S3 object."""

    path: str
    bucket: str | None = None
    size: int = 0

    @property
    def day(self) -> str | None:
        """YYYY-MM-DD from CloudTrail's key layout (…/yyyy/mm/dd/…), when the path has it."""
        match = _DATE_IN_KEY.search(self.path.replace(os.sep, "/"))
        return f"{match.group(1)}-{match.group(2)}-{match.group(3)}" if match else None


def day_of(stamp: str | None) -> str | None:
    return stamp[:10] if stamp else None


def local_units(root: Path) -> list[Unit]:
    if root.is_file():
        return [Unit(str(root), size=root.stat().st_size)]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or directory: {root}")
    files = [p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".json") or p.name.endswith(".json.gz"))]
    return [Unit(str(p), size=p.stat().st_size) for p in sorted(files)]


def s3_units(s3: Any, bucket: str, prefix: str, since: str | None, until: str | None) -> list[Unit]:
    units = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith(".json.gz") or key.endswith(".json"):
                unit = Unit(key, bucket=bucket, size=int(obj.get("Size", 0)))
                if _in_days(unit, since, until):
                    units.append(unit)
    return units


def _in_days(unit: Unit, since: str | None, until: str | None) -> bool:
    day = unit.day
    if day is None:
        return True
    return not ((since and day < day_of(since)) or (until and day > day_of(until)))  # type: ignore[operator]


class Pacer:
    """At most one call per `interval` seconds, across every pass of a review."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.last = 0.0

    def wait(self) -> None:
        delay = self.interval - (time.monotonic() - self.last)
        if delay > 0:
            time.sleep(delay)
        self.last = time.monotonic()


def lookup_events(
    cloudtrail: Any,
    keys: Iterable[str],
    since: str | None,
    until: str | None,
    pacer: Pacer | None = None,
    skips: Skips | None = None,
) -> Iterator[dict[str, Any]]:
    """Events by access key through LookupEvents: 50 a page, at most 2 calls a second (the API's limit).

    An event whose record cannot be used is listed in `skips` (file `LookupEvents:KEY`, its position) and passed over.
    """
    pacer = pacer or Pacer()
    skips = skips if skips is not None else Skips()
    for key in sorted(set(keys)):
        params: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": key}],
            "MaxResults": 50,
        }
        if since:
            params["StartTime"] = _parse_time(since)
        if until:
            params["EndTime"] = _parse_time(until)
        index = 0
        while True:
            pacer.wait()
            page = cloudtrail.lookup_events(**params)
            for event in page.get("Events", []):
                try:
                    record = json.loads(event["CloudTrailEvent"])
                    if identity_of(record).get("accessKeyId") == key:
                        yield slim(record)
                except (KeyError, TypeError, ValueError, RecursionError) as exc:  # BadRecord is a ValueError
                    reason = (
                        str(exc) if isinstance(exc, BadRecord) else f"CloudTrailEvent is not a JSON record ({exc!r:.80})"
                    )
                    skips.record(f"LookupEvents:{key}", index, reason)
                index += 1
            token = page.get("NextToken")
            if not token:
                break
            params["NextToken"] = token


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def normalize_time(value: str | datetime | None) -> str | None:
    """CloudTrail's eventTime form (2024-11-30T08:43:17Z), from a datetime, a date or an ISO string."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return f"{text}T00:00:00Z"
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text!r} is not a time: use 2024-11-30 or 2024-11-30T08:43:17Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_corpus_file(path: Path, records: list[dict[str, Any]]) -> None:
    """Write records as CloudTrail does (gzipped {"Records": [...]}); used by the sandbox, tests and bench."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump({"Records": records}, handle)
