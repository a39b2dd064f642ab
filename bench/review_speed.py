"""Log review throughput: `stanch review-logs` beside jq, a plain json loop and zcat, on one corpus, in one run.

Generates (once, cached in bench/.corpus/) at least one million CloudTrail-like events in gzipped files in
CloudTrail's layout, with a leaked key's activity hidden among them, then times each reader selecting that key.
Targets: stanch at least 5x jq's events per second; stanch within 2x of the time zcat alone needs to
decompress the same files on every core.

Run: .venv/bin/python bench/review_speed.py [--events 1000000] [--files 250]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.sandbox import trail  # noqa: E402

CORPUS = ROOT / "bench" / ".corpus"
KEY = "AKIABENCHLEAKEDKEY01"
START = datetime(2026, 11, 1, tzinfo=UTC)
STANCH = str(Path(sys.executable).with_name("stanch"))


def _write_file(args: tuple[int, int, int]) -> int:
    index, per_file, files = args
    span = timedelta(days=2)
    at = START + span * index / files
    records = trail.noise(per_file, at, span / files, seed=index, keys=200)
    if index == files // 2:  # the leak, in the middle of the corpus
        story, _ = trail.attack_story(KEY, "ci-deployer", at + timedelta(minutes=1))
        records = sorted(records + story, key=lambda r: r["eventTime"])
    path = CORPUS / trail.object_key(at, n=index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as handle:
        json.dump({"Records": records}, handle)
    return len(records)


def corpus(events: int, files: int) -> tuple[list[Path], int]:
    marker = CORPUS / f".complete-{events}-{files}"
    if not marker.exists():
        shutil.rmtree(CORPUS, ignore_errors=True)
        CORPUS.mkdir(parents=True)
        print(f"generating {events:,} events in {files} files (once; cached in {CORPUS.relative_to(ROOT)}) ...")
        started = time.perf_counter()
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            total = sum(pool.map(_write_file, [(i, events // files, files) for i in range(files)]))
        marker.write_text(str(total))
        print(f"  done in {time.perf_counter() - started:.0f}s")
    paths = sorted(CORPUS.rglob("*.json.gz"))
    return paths, int(marker.read_text())


def timed(command: str | list[str], shell: bool = False) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, shell=shell, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, proc.stdout


JSON_LOOP = """
import gzip, json, sys
hits = 0
for path in sys.argv[2:]:
    with gzip.open(path, "rt") as f:
        for r in json.load(f)["Records"]:
            if (r.get("userIdentity") or {}).get("accessKeyId") == sys.argv[1]:
                hits += 1
print(hits)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=250)
    args = parser.parse_args()
    paths, total = corpus(args.events, args.files)
    size = sum(p.stat().st_size for p in paths)
    cores = os.cpu_count() or 1
    print(f"corpus: {total:,} events in {len(paths)} files, {size / 1e6:.0f} MB gzipped; {cores} cores\n")
    names = " ".join(str(p) for p in paths)
    rows: list[tuple[str, float, str]] = []

    seconds, out = timed(f"ls {names} | xargs -P{cores} -n8 zcat > /dev/null", shell=True)
    rows.append((f"zcat alone, {cores} processes (decompress only)", seconds, ""))
    zcat = seconds
    seconds, out = timed([STANCH, "review-logs", "--source", str(CORPUS), "--access-key-id", KEY, "--format", "json"])
    found = json.loads(out)["events_total"]
    rows.append(("stanch review-logs", seconds, f"{found} events (with derived keys)"))
    stanch = seconds
    jq = shutil.which("jq")
    jq_seconds = None
    if jq:
        select = f'.Records[] | select(.userIdentity.accessKeyId == "{KEY}") | .eventID'
        seconds, out = timed(f"zcat {names} | {jq} -c '{select}' | wc -l", shell=True)
        rows.append(("zcat | jq (same key)", seconds, f"{out.strip()} events"))
        jq_seconds = seconds
    else:
        rows.append(("jq", float("nan"), "not installed: apt-get install jq"))
    seconds, out = timed([sys.executable, "-c", JSON_LOOP, KEY, *map(str, paths)])
    rows.append(("python json loop, 1 process", seconds, f"{out.strip()} events"))

    print(f"{'reader':<44} {'seconds':>8} {'events/s':>12}  result")
    for name, secs, note in rows:
        rate = total / secs if secs == secs and secs > 0 else float("nan")
        print(f"{name:<44} {secs:>8.2f} {rate:>12,.0f}  {note}")
    print()
    if jq_seconds:
        print(f"stanch vs jq:   {jq_seconds / stanch:.1f}x the throughput (target: at least 5x)")
    print(f"stanch vs zcat: {stanch / zcat:.2f}x zcat's time on {cores} cores (target: at most 2x)")


if __name__ == "__main__":
    main()
