"""The corpora `review_speed.py` times, generated once and cached under bench/.corpus/NAME/.

- today: the leak hides in one file of 250 (two days of traffic); only that file mentions the key.
- realistic: a long-lived CI key, active all day: it and the session keys it makes every hour (GetSessionToken)
  are about 2% of the records of every 5-minute file, and the leak's story (federation token, backdoor key) is
  in the middle. A session key is made in one file and used in the later ones.
- principal: every session of a role (assumed-role/ci-runner/...), a new session key per file, about 2% of
  the records of every 5-minute file; reviewed as role/ci-runner.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flows.sandbox import trail

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".corpus"
KEY = "AKIABENCHLEAKEDKEY01"
ROLE = "ci-runner"
START = datetime(2026, 11, 1, tzinfo=UTC)
SHARE = 50  # one record in 50 (2%) is the reviewed key's, in the realistic and principal corpora


@dataclass(frozen=True)
class Corpus:
    name: str
    target: str  # what is reviewed: a key id or role/NAME
    files: int
    events: int
    span: timedelta
    make: Callable[[int, int, int, timedelta], list[dict[str, Any]]]
    note: str

    @property
    def root(self) -> Path:
        return CACHE / self.name


def _today(index: int, per_file: int, files: int, span: timedelta) -> list[dict[str, Any]]:
    at = START + span * index / files
    records = trail.noise(per_file, at, span / files, seed=index, keys=200)
    if index == files // 2:
        story, _ = trail.attack_story(KEY, "ci-deployer", at + timedelta(minutes=1))
        records = sorted(records + story, key=lambda r: r["eventTime"])
    return records


def session_key(hour: int) -> str:
    return f"ASIABENCHSESSION{hour:04d}"


def _realistic(index: int, per_file: int, files: int, span: timedelta) -> list[dict[str, Any]]:
    at = START + span * index / files
    records = trail.noise(per_file, at, span / files, seed=index, keys=200)
    rng = random.Random(index)
    hour = int((at - START) / timedelta(hours=1))
    first_of_hour = at == START + timedelta(hours=hour)
    for n, i in enumerate(range(rng.randrange(SHARE), len(records), SHARE)):
        stamp = datetime.strptime(records[i]["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if n == 0 and first_of_hour:  # the CI job's hourly session
            made = {"credentials": {"accessKeyId": session_key(hour), "sessionToken": "x", "expiration": "x"}}
            records[i] = trail.record(stamp, "GetSessionToken", "sts.amazonaws.com", KEY, "user/ci-deployer", response=made)
        else:
            key = KEY if n % 2 else session_key(hour)
            name, source = ("PutObject", "s3.amazonaws.com") if n % 3 else ("DescribeInstances", "ec2.amazonaws.com")
            records[i] = trail.record(stamp, name, source, key, "user/ci-deployer", rng=rng)
    if index == files // 2:
        story, _ = trail.attack_story(KEY, "ci-deployer", at + timedelta(minutes=1))
        records = sorted(records + story, key=lambda r: r["eventTime"])
    return records


def _principal(index: int, per_file: int, files: int, span: timedelta) -> list[dict[str, Any]]:
    at = START + span * index / files
    records = trail.noise(per_file, at, span / files, seed=index, keys=200)
    rng = random.Random(index)
    who = f"assumed-role/{ROLE}/job-{index:04d}"
    for n, i in enumerate(range(rng.randrange(SHARE), len(records), SHARE)):
        stamp = datetime.strptime(records[i]["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        name, source = ("GetObject", "s3.amazonaws.com") if n % 2 else ("GetParameter", "ssm.amazonaws.com")
        records[i] = trail.record(stamp, name, source, f"ASIABENCHROLE{index:07d}", who, rng=rng)
    return records


CORPORA = [
    Corpus("today", KEY, 250, 1_000_000, timedelta(days=2), _today, "the key in one file of 250"),
    Corpus("realistic", KEY, 288, 1_000_000, timedelta(days=1), _realistic, "the key, its session keys: 2% of each file"),
    Corpus("principal", f"role/{ROLE}", 288, 1_000_000, timedelta(days=1), _principal, "role sessions: 2% of every file"),
]


def _write(args: tuple[str, int]) -> tuple[int, int]:
    name, index = args
    corpus = next(c for c in CORPORA if c.name == name)
    records = corpus.make(index, corpus.events // corpus.files, corpus.files, corpus.span)
    at = START + corpus.span * index / corpus.files
    path = corpus.root / trail.object_key(at, n=index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as handle:
        json.dump({"Records": records}, handle)
    ours = sum(1 for r in records if _is_ours(r, corpus.target))
    return len(records), ours


def _is_ours(record: dict[str, Any], target: str) -> bool:
    identity = record["userIdentity"]
    if target.startswith("role/"):
        return f":assumed-role/{target.removeprefix('role/')}/" in identity["arn"]
    key = identity["accessKeyId"]
    return key == KEY or key.startswith("ASIABENCHSESSION")


def build(corpus: Corpus) -> tuple[list[Path], int, int]:
    """The corpus's files, its record count and how many records are the target's (generating it if needed)."""
    marker = corpus.root / f".complete-{corpus.events}-{corpus.files}"
    if not marker.exists():
        shutil.rmtree(corpus.root, ignore_errors=True)
        corpus.root.mkdir(parents=True)
        print(f"generating {corpus.name}: {corpus.events:,} records in {corpus.files} files (once) ...", flush=True)
        started = time.perf_counter()
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            counts = list(pool.map(_write, [(corpus.name, i) for i in range(corpus.files)]))
        marker.write_text(json.dumps([sum(c[0] for c in counts), sum(c[1] for c in counts)]))
        print(f"  done in {time.perf_counter() - started:.0f}s", flush=True)
    total, ours = json.loads(marker.read_text())
    return sorted(corpus.root.rglob("*.json.gz")), total, ours
