"""Log review throughput: `stanch review-logs` beside `zcat | jq` and zcat alone, on three corpora, in one run.

Corpora (see review_corpus.py; generated once, cached in bench/.corpus/): today's (the key in one file of
250), realistic (a CI key and its session keys in every 5-minute file at 2% of the records) and principal
(every session of role/ci-runner, 2% of every file). 1,000,000 records each, gzipped as CloudTrail writes them.
Targets on each: stanch at least 8x the throughput of `zcat | jq` selecting the same records, and at most 1.5x
the time zcat alone needs to decompress the files on every core. Peak RSS is the sum over stanch's processes.

Run: .venv/bin/python bench/review_speed.py [--only realistic] [--json-loop]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.review_corpus import CORPORA, KEY, ROLE, Corpus, build  # noqa: E402

STANCH = str(Path(sys.executable).with_name("stanch"))
JQ_TARGET = 8.0  # stanch's throughput over zcat | jq's, at least
ZCAT_TARGET = 1.5  # stanch's time over zcat alone's, at most

# The CLI takes key ids only; a principal is reviewed through the engine, as the action does.
BY_PRINCIPAL = """
import json, sys
from pathlib import Path
from integrations.aws import cloudtrail_review as engine
report = engine.review([sys.argv[2]], scanner=engine.Scanner(engine.local_units(Path(sys.argv[1]))))
print(json.dumps(report.to_json()))
"""

JSON_LOOP = """
import gzip, json, sys
hits = 0
for path in sys.argv[2:]:
    with gzip.open(path, "rt") as f:
        for r in json.load(f)["Records"]:
            i = r.get("userIdentity") or {}
            if i.get("accessKeyId") == sys.argv[1] or ("assumed-role/" + sys.argv[1][5:] + "/") in (i.get("arn") or ""):
                hits += 1
print(hits)
"""


def _tree_rss(pid: int) -> int:
    """Resident memory of a process and its descendants, in bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        parents[int(entry)] = int(fields.get("PPid", "0"))
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        grew = bool(more)
        tree |= more
    return sum(rss.get(p, 0) for p in tree)


def timed(command: list[str] | str, shell: bool = False, watch: bool = False) -> tuple[float, str, int]:
    """Seconds, stdout and (when watched) peak RSS of the process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, _tree_rss(proc.pid))

    watcher = threading.Thread(target=poll, daemon=True)
    if watch:
        watcher.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    if proc.returncode:
        raise SystemExit(f"{command!r} failed ({proc.returncode}): {stderr[-2000:]}")
    return seconds, stdout, peak


def jq_filter(corpus: Corpus) -> str:
    if corpus.target.startswith("role/"):
        return f'.Records[] | select(.userIdentity.arn // "" | contains("assumed-role/{ROLE}/")) | .eventID'
    # jq cannot follow derived keys: it is given the corpus's session keys' shape
    return (
        f'.Records[] | select(.userIdentity.accessKeyId // "" | . == "{KEY}" or startswith("ASIABENCHSESSION")) | .eventID'
    )


def run(corpus: Corpus, cores: int, json_loop: bool) -> dict[str, float]:
    paths, total, ours = build(corpus)
    size = sum(p.stat().st_size for p in paths)
    print(f"\n== {corpus.name}: {corpus.note}")
    print(f"   {total:,} records in {len(paths)} files, {size / 1e6:.0f} MB gzipped; review of {corpus.target}")
    names = " ".join(shlex.quote(str(p)) for p in paths)
    rows: list[tuple[str, float, str]] = []

    zcat, _, _ = timed(f"printf '%s\\n' {names} | xargs -P{cores} -n8 zcat > /dev/null", shell=True)
    rows.append((f"zcat alone, {cores} processes", zcat, "decompress only"))
    if corpus.target.startswith("role/"):
        command = [sys.executable, "-c", BY_PRINCIPAL, str(corpus.root), corpus.target]
    else:
        command = [STANCH, "review-logs", "--source", str(corpus.root), "--access-key-id", corpus.target, "--format", "json"]
    stanch, out, peak = timed(command, watch=True)
    report = json.loads(out)
    derived = len(report["derived_keys"])
    rows.append(("stanch review", stanch, f"{report['events_total']:,} events, {derived} derived keys"))
    jq = shutil.which("jq")
    jq_seconds = float("nan")
    if jq:
        jq_seconds, out, _ = timed(f"zcat {names} | {jq} -c {shlex.quote(jq_filter(corpus))} | wc -l", shell=True)
        rows.append(("zcat | jq (same records)", jq_seconds, f"{int(out):,} events"))
    else:
        rows.append(("zcat | jq", jq_seconds, "jq is NOT INSTALLED (apt-get install -y jq): no jq baseline"))
    if json_loop:
        target = corpus.target if corpus.target.startswith("role/") else KEY
        seconds, out, _ = timed([sys.executable, "-c", JSON_LOOP, target, *map(str, paths)])
        rows.append(("python json loop, 1 process", seconds, f"{int(out):,} events (no derived keys)"))

    print(f"   {'reader':<32} {'seconds':>8} {'records/s':>12}  result")
    for name, secs, note in rows:
        rate = total / secs if secs == secs and secs > 0 else float("nan")
        print(f"   {name:<32} {secs:>8.2f} {rate:>12,.0f}  {note}")
    print(f"   records generated as the target's: {ours:,}; peak RSS of stanch: {peak / 2**20:.0f} MB")
    speedup, over_zcat = jq_seconds / stanch, stanch / zcat
    if jq:
        verdict = "ok" if speedup >= JQ_TARGET else "MISSED"
        print(f"   stanch vs zcat | jq: {speedup:5.1f}x the throughput (target: at least {JQ_TARGET:g}x) {verdict}")
    verdict = "ok" if over_zcat <= ZCAT_TARGET else "MISSED"
    target = f"target: at most {ZCAT_TARGET:g}x"
    print(f"   stanch vs zcat:      {over_zcat:5.2f}x zcat's time on {cores} cores ({target}) {verdict}")
    return {"stanch": stanch, "jq": jq_seconds, "zcat": zcat, "rss_mb": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=[c.name for c in CORPORA], action="append", help="Corpora to time (default: all).")
    parser.add_argument("--json-loop", action="store_true", help="Also time a plain Python json loop (slow).")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if not shutil.which("jq"):
        print("warning: jq is not installed (apt-get install -y jq); the jq baseline is left out")
    results = {c.name: run(c, cores, args.json_loop) for c in CORPORA if not args.only or c.name in args.only}
    print("\nsummary (seconds):")
    for name, r in results.items():
        print(
            f"  {name:<10} stanch {r['stanch']:6.2f}  zcat|jq {r['jq']:6.2f} ({r['jq'] / r['stanch']:4.1f}x)"
            f"  zcat {r['zcat']:5.2f} ({r['stanch'] / r['zcat']:4.2f}x)  peak RSS {r['rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
