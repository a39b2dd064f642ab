"""Log review throughput: the review beside `zcat | jq`, zcat alone and the classic scanner, on three corpora.

Corpora (see review_corpus.py; generated once, cached in bench/.corpus/): today's (the key in one file of
250), realistic (a production-shaped day: 303 files of 750 to 14,507 records, mixed principals, the CI key and
its session keys 2% of the records in bursts, the key named in other principals' parameters) and principal
(every session of role/ci-runner, 2% of every file). 1,000,000 records each, gzipped as CloudTrail writes them.

For each corpus, in one run and side by side (each timing the best of --repeat runs, interleaved, so that
other load on the machine weighs on every row alike): zcat alone on every core, `zcat | jq` selecting the same
records (jq cannot follow derived keys: it is given their shape), the classic scanner (json.loads of every
file that mentions a key, the reference) and the review (`stanch review-logs`; by principal through the
engine, as the action does). Peak RSS is the sum over each command's processes (the review's workers
included). Targets on the realistic corpus: the review at least 8x the throughput of `zcat | jq`, and at most
1.5x the time zcat alone needs on every core.

Equivalence: the full report JSON of the classic scanner and of the review (in worker processes, and again
in-process) must be identical but for `seconds`; any difference is printed and the run exits non-zero.

Run: .venv/bin/python bench/review_speed.py [--only realistic] [--repeat 3] [--repeat-slow 1]

Measured (2-core VM, load average 0.7-2.3; best of 5, jq and classic best of 2; with python-isal installed):
  today      review   0.90  classic   1.81  zcat|jq  13.46 (15.0x)  zcat  1.39 (0.64x)  identical
  realistic  review   2.42  classic  28.18  zcat|jq  24.03 ( 9.9x)  zcat  2.30 (1.05x)  identical
  principal  review   1.72  classic  11.36  zcat|jq  15.23 ( 8.8x)  zcat  1.80 (0.96x)  identical
Both realistic targets are met; see docs/review-speed.md for the tables and where the time goes.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.review_corpus import CORPORA, KEY, ROLE, Corpus, build  # noqa: E402

STANCH = str(Path(sys.executable).with_name("stanch"))
JQ_TARGET = 8.0  # the review's throughput over zcat | jq's, at least
ZCAT_TARGET = 1.5  # the review's time over zcat alone's, at most

# A review through the engine: by principal (the CLI takes key ids only), and with the classic scanner.
ENGINE = """
import json, sys
from pathlib import Path
from integrations.aws import cloudtrail_review as engine
from integrations.aws.cloudtrail_review.scanner import ClassicScanner, Scanner
units = engine.local_units(Path(sys.argv[1]))
kind = sys.argv[3]
if kind == "classic":
    scanner = ClassicScanner(units)
else:
    scanner = Scanner(units, processes={"auto": None, "in-process": False}[kind])
report = engine.review([sys.argv[2]], scanner=scanner)
print(json.dumps(report.to_json()))
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
        while not done.wait(0.02):
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
    # jq cannot follow derived keys: it is given the corpus's session keys' shape. Only the caller's key counts:
    # records that name the key elsewhere (an admin's GetAccessKeyLastUsed...) are other principals'.
    return (
        f'.Records[] | select(.userIdentity.accessKeyId // "" | . == "{KEY}" or startswith("ASIABENCHSESSION")) | .eventID'
    )


def review_command(corpus: Corpus, kind: str) -> list[str]:
    """The review as a user runs it (kind "auto"), in-process, or with the classic scanner."""
    if kind == "auto" and not corpus.target.startswith("role/"):
        return [STANCH, "review-logs", "--source", str(corpus.root), "--access-key-id", corpus.target, "--format", "json"]
    return [sys.executable, "-c", ENGINE, str(corpus.root), corpus.target, kind]


def differences(a: Any, b: Any, path: str = "$") -> list[str]:
    """Where two JSON values differ (the first few)."""
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} != {type(b).__name__}"]
    if isinstance(a, dict):
        out = [f"{path}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        out = [f"{path}: {len(a)} items != {len(b)}"] if len(a) != len(b) else []
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            out += differences(x, y, f"{path}[{i}]")
            if len(out) > 10:
                break
        return out
    return [] if a == b else [f"{path}: {str(a)[:80]!r} != {str(b)[:80]!r}"]


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "seconds"}


def run(corpus: Corpus, cores: int, repeat: int, repeat_slow: int) -> dict[str, Any]:
    paths, total, ours = build(corpus)
    size = sum(p.stat().st_size for p in paths)
    print(f"\n== {corpus.name}: {corpus.note}", flush=True)
    print(f"   {total:,} records in {len(paths)} files, {size / 1e6:.0f} MB gzipped; review of {corpus.target}")
    names = " ".join(shlex.quote(str(p)) for p in paths)
    jq = shutil.which("jq")
    best: dict[str, float] = {}
    peak: dict[str, int] = {}
    outputs: dict[str, str] = {}

    def keep(name: str, seconds: float, out: str, rss: int = 0) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)
        peak[name] = max(peak.get(name, 0), rss)
        outputs[name] = out

    for rep in range(max(repeat, repeat_slow)):
        if rep < repeat:
            seconds, out, _ = timed(f"printf '%s\\n' {names} | xargs -P{cores} -n8 zcat > /dev/null", shell=True)
            keep("zcat", seconds, out)
            keep("review", *timed(review_command(corpus, "auto"), watch=True))
        if rep < repeat_slow:
            if jq:
                command = f"zcat {names} | {jq} -c {shlex.quote(jq_filter(corpus))} | wc -l"
                keep("jq", *timed(command, shell=True))
            keep("classic", *timed(review_command(corpus, "classic"), watch=True))
    new, old = json.loads(outputs["review"]), json.loads(outputs["classic"])
    _, inproc, _ = timed(review_command(corpus, "in-process"))
    diffs = differences(comparable(old), comparable(new)) + [
        f"in-process {d}" for d in differences(comparable(old), comparable(json.loads(inproc)))
    ]
    jq_events = int(outputs["jq"]) if jq else 0

    rows = [
        (f"zcat alone, {cores} processes", best["zcat"], "", "decompress only"),
        (
            "zcat | jq (same records)" if jq else "zcat | jq: jq NOT INSTALLED",
            best.get("jq", float("nan")),
            "",
            f"{jq_events:,} events" if jq else "apt-get install -y jq",
        ),
        ("classic scanner (json.loads)", best["classic"], f"{peak['classic'] / 2**20:.0f}", _summary(old)),
        ("stanch review", best["review"], f"{peak['review'] / 2**20:.0f}", _summary(new)),
    ]
    print(f"   {'reader':<32} {'seconds':>8} {'records/s':>12} {'peak RSS MB':>12}  result")
    for name, secs, rss, note in rows:
        rate = total / secs if secs == secs and secs > 0 else float("nan")
        print(f"   {name:<32} {secs:>8.2f} {rate:>12,.0f} {rss:>12}  {note}")
    print(f"   records generated as the target's: {ours:,}")
    review, zcat = best["review"], best["zcat"]
    speedup, over_zcat = best.get("jq", float("nan")) / review, review / zcat
    print(f"   review vs classic:   {best['classic'] / review:5.1f}x the throughput")
    if jq:
        verdict = "ok" if speedup >= JQ_TARGET else "MISSED"
        print(f"   review vs zcat | jq: {speedup:5.1f}x the throughput (target: at least {JQ_TARGET:g}x) {verdict}")
    verdict = "ok" if over_zcat <= ZCAT_TARGET else "MISSED"
    target = f"target: at most {ZCAT_TARGET:g}x"
    print(f"   review vs zcat:      {over_zcat:5.2f}x zcat's time on {cores} cores ({target}) {verdict}")
    if diffs:
        print("   equivalence: DIFFERENT from the classic scanner:")
        for line in diffs[:20]:
            print(f"     {line}")
    else:
        print(
            "   equivalence: the report JSON (all but `seconds`) is identical to the classic scanner's, "
            "in worker processes and in-process"
        )
    return {**best, "rss_review": peak["review"] / 2**20, "rss_classic": peak["classic"] / 2**20, "same": not diffs}


def _summary(report: dict[str, Any]) -> str:
    return (
        f"{report['events_total']:,} events, {len(report['derived_keys'])} derived keys, "
        f"{report['files_scanned']} files, {report['bytes_scanned'] / 1e6:.0f} MB scanned"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=[c.name for c in CORPORA], action="append", help="Corpora to time (default: all).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of zcat and the review; the best counts.")
    parser.add_argument("--repeat-slow", type=int, default=1, help="Runs of zcat | jq and the classic scanner.")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if not shutil.which("jq"):
        print("warning: jq is not installed (apt-get install -y jq); the jq baseline is left out")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({cores} cores)")
    results = {c.name: run(c, cores, args.repeat, args.repeat_slow) for c in CORPORA if not args.only or c.name in args.only}
    print(f"\nsummary (seconds, best of {args.repeat}; jq and classic best of {args.repeat_slow}):")
    for name, r in results.items():
        jq = r.get("jq", float("nan"))
        print(
            f"  {name:<10} review {r['review']:6.2f}  classic {r['classic']:6.2f}  zcat|jq {jq:6.2f}"
            f" ({jq / r['review']:4.1f}x)  zcat {r['zcat']:5.2f} ({r['review'] / r['zcat']:4.2f}x)"
            f"  peak RSS {r['rss_review']:.0f} MB (classic {r['rss_classic']:.0f} MB)"
            f"  {'identical' if r['same'] else 'DIFFERENT'}"
        )
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not all(r["same"] for r in results.values()):
        raise SystemExit("the review's reports differ from the classic scanner's")


if __name__ == "__main__":
    main()
