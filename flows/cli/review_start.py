"""`stanch review-logs`'s worker processes, started before anything else is imported.

The review of a large local directory runs on worker processes (`fastscan.py` as a script). Starting them is
the first thing the command does: `flows.cli` calls `early(argv)` before it imports Typer and the commands
(about 0.1 s), and the review command imports the engine (about 0.3 s) after that; meanwhile the workers
already decode the first files (fastscan's early scans: the review's own requests for those files get the
kept answers). The standard library and msgspec only: this runs on every `stanch review-logs`.
"""

from __future__ import annotations

import atexit
import os
import struct
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

Started = list[tuple[subprocess.Popen[bytes], list[str]]]

# When to start the workers early: as the scanner decides (scanner.PROCESS_FILES, PROCESS_BYTES)
_EARLY_MIN_FILES = 4
_EARLY_MIN_BYTES = 16 << 20
_EARLY_PER_WORKER = 12  # files each worker decodes while this process imports the engine (at most 96 MB)

# Workers started by `early`, with the arguments they were started for.
_early: tuple[tuple[str, tuple[str, ...], int | None], Started] | None = None


def _arguments(argv: list[str]) -> tuple[str, tuple[str, ...], int | None] | None:
    """--source, --access-key-id (repeated) and --workers from the command's arguments; None when they cannot
    be told for certain (Typer parses them again and reports what is wrong)."""
    source: str | None = None
    keys: list[str] = []
    workers: int | None = None
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name not in ("--source", "--access-key-id", "--workers"):
            if name in ("--since", "--until", "--format", "--region"):
                if not eq:
                    next(args, None)
                continue
            return None  # something else (--help, a typo): leave it all to Typer
        if not eq:
            got = next(args, None)
            if got is None:
                return None
            value = got
        if name == "--source":
            source = value
        elif name == "--access-key-id":
            keys.append(value)
        else:
            try:
                workers = int(value)
            except ValueError:
                return None
    if source is None or not keys:
        return None
    return source, tuple(keys), workers


def early(argv: list[str]) -> None:
    """Start the workers for `stanch review-logs ARGV`, when its arguments ask for a large local review. Workers
    the command never takes (Typer refused its arguments) are killed when this process exits."""
    global _early
    wanted = _arguments(argv)
    if wanted is not None:
        _early = (wanted, start(*wanted))
        atexit.register(_end_untaken)


def _end_untaken() -> None:
    global _early
    kept, _early = _early, None
    if kept is not None:
        stop(kept[1])


def take(source: str, keys: list[str], workers: int | None) -> Started:
    """The workers `early` started for these arguments, else ones started now (the others are ended)."""
    global _early
    kept, _early = _early, None
    if kept is not None:
        if kept[0] == (source, tuple(keys), workers):
            return kept[1]
        stop(kept[1])
    return start(source, tuple(keys), workers)


def stop(started: Started) -> None:
    for proc, _ in started:
        proc.kill()
        proc.wait()


def start(source: str, keys: tuple[str, ...], workers: int | None) -> Started:
    """Start the review's worker processes and have them scan the first files already, for the keys given.
    Only for a local directory large enough for the scanner to use processes."""
    count = workers or os.cpu_count() or 1
    root = Path(source)
    if count < 2 or source == "lookup" or source.startswith("s3://") or not root.is_dir() or not sys.executable:
        return []
    spec = find_spec("integrations")  # the package's place, without importing it
    if spec is None or not spec.submodule_search_locations:
        return []
    script = Path(next(iter(spec.submodule_search_locations)), "aws", "cloudtrail_review", "fastscan.py")
    try:  # the files as sources.local_units lists them, in the same order
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz")))
        size = sum(p.stat().st_size for p in files)
    except OSError:
        return []
    if len(files) < _EARLY_MIN_FILES or size < _EARLY_MIN_BYTES or not script.is_file():
        return []
    import msgspec

    count = min(count, len(files))
    needles = [k.encode() for k in dict.fromkeys(keys)]  # events.needle of an access key id: its bytes
    budget = sys.getrecursionlimit() - 300  # no more than the review's (the limit less its stack, less 100)
    digits = sys.get_int_max_str_digits()
    started: Started = []
    try:
        for _ in range(count):
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no outside input
                [sys.executable, "-P", str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
            )
            started.append((proc, []))
        for index, path in enumerate(files[: count * _EARLY_PER_WORKER]):
            proc, sent = started[index % count]
            name = str(path)
            task = [name, needles, list(dict.fromkeys(keys)), [], [], False, digits, budget, name, "early"]
            body = msgspec.msgpack.encode(task)
            if proc.stdin is not None:
                proc.stdin.write(struct.pack("<Q", len(body)) + body)
                sent.append(name)
        for proc, _ in started:
            if proc.stdin is not None:
                proc.stdin.flush()
    except OSError:
        pass  # the review starts its own workers for what is missing
    return started
