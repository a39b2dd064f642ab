"""A worker process that hangs (alive, never answering) is killed after `workers.HANG_SECONDS`: its files are read
in this process and the review goes on, with the same report as one read without worker processes."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import wait
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.sandbox import trail
from integrations.aws import cloudtrail_review as engine
from integrations.aws.cloudtrail_review import scanner as scanner_module
from integrations.aws.cloudtrail_review import workers
from integrations.aws.cloudtrail_review.workers import WorkerDied, Workers

LEAKED = "AKIAHANGTESTKEY00001"
HANG = 2.0  # the bound, lowered for the test


def _corpus(root: Path, files: int = 8) -> None:
    """A leaked key's story (with the keys it made) spread over gzipped files in time order, among noise."""
    start = datetime(2026, 3, 1, 8, tzinfo=UTC)
    story, _ = trail.attack_story(LEAKED, "ci-deployer", start)
    other = trail.noise(files * 40, start - timedelta(minutes=5), timedelta(hours=2))
    records = sorted(story + other, key=lambda r: r["eventTime"])
    size = -(-len(records) // files)
    for n in range(files):
        chunk = records[n * size : (n + 1) * size]
        at = datetime.strptime(chunk[0]["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        engine.write_corpus_file(root / trail.object_key(at, n=n), chunk)


def _report(scanner: Any) -> dict[str, Any]:
    data = engine.review([LEAKED], scanner=scanner).model_dump(mode="json")
    data.pop("seconds", None)
    return data


def _reaped(pid: int) -> bool:
    """Whether the process is gone and waited for (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists()
    return False


def _task(path: Path) -> tuple[Any, ...]:
    return (str(path), (LEAKED.encode(),), frozenset({LEAKED}), (), (), False, 4300, 500, "")


def _review_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stanch-review-")]


def test_a_hung_worker_is_killed_and_the_review_reads_its_files_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _corpus(tmp_path)
    monkeypatch.setattr(workers, "HANG_SECONDS", HANG)
    stopped: list[int] = []

    class Stopped(Workers):
        """The pool, with its first worker stopped as soon as it starts: alive, never answering."""

        def __init__(self, count: int) -> None:
            super().__init__(count)
            os.kill(self.workers[0].proc.pid, signal.SIGSTOP)
            stopped.append(self.workers[0].proc.pid)

    monkeypatch.setattr(scanner_module, "Workers", Stopped)
    expected = _report(engine.Scanner(engine.local_units(tmp_path), processes=False))
    assert expected["events_total"] >= 8 and expected["derived_keys"], "the story, with the keys it made"

    caplog.set_level(logging.WARNING, logger="stanch.review")
    started = time.monotonic()
    got = _report(engine.Scanner(engine.local_units(tmp_path), workers=2, processes=True))
    took = time.monotonic() - started

    assert got == expected
    assert took < HANG + 8, f"the review took {took:.1f} s"
    [pid] = stopped
    [warning] = [r.getMessage() for r in caplog.records if f"worker process {pid} gave no answer" in r.getMessage()]
    assert "killed" in warning and f"bound {HANG:g} s" in warning
    waited = float(warning.split("gave no answer for ")[1].split()[0])
    assert HANG <= waited < HANG + 2
    assert _reaped(pid), "the stopped worker was killed and waited for"
    assert _review_threads() == [], "no reader or watchdog thread left"


def test_a_hung_pool_fails_its_requests_and_closes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With its only worker hung, a request fails with WorkerDied within the bound, later ones at once."""
    _corpus(tmp_path, files=1)
    [path] = tmp_path.rglob("*.json.gz")
    monkeypatch.setattr(workers, "HANG_SECONDS", 1.0)
    pool = Workers(1)
    proc = pool.workers[0].proc
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        first = [pool.submit(_task(path)) for _ in range(3)]
        done, _ = wait(first, timeout=6)
        assert len(done) == 3, "the requests to a hung worker failed in time"
        assert all(isinstance(f.exception(), WorkerDied) for f in first)
        assert 1.0 <= time.monotonic() - started < 6
        later = pool.submit(_task(path))
        assert later.done() and isinstance(later.exception(), WorkerDied), "a dead worker takes no more requests"
    finally:
        pool.close(timeout=5)
    assert proc.returncode == -signal.SIGKILL and _reaped(proc.pid)
    assert _review_threads() == []


def test_a_slow_worker_that_answers_is_not_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker paused for less than the bound answers, and is neither killed nor set aside."""
    _corpus(tmp_path, files=1)
    [path] = tmp_path.rglob("*.json.gz")
    monkeypatch.setattr(workers, "HANG_SECONDS", 3.0)
    with Workers(1) as pool:
        proc = pool.workers[0].proc
        answers = []
        for _ in range(3):  # each request waits about 1 s on a stopped worker, 3 s in all
            os.kill(proc.pid, signal.SIGSTOP)
            answers.append(pool.submit(_task(path)))
            time.sleep(1.0)
            os.kill(proc.pid, signal.SIGCONT)
            assert answers[-1].result(timeout=10)[0] == "scan"
        assert not pool.workers[0].dead
    assert proc.returncode == 0, "closed, not killed"
