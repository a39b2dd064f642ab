"""Worker processes for the review's fast path: plain subprocesses running `fastscan.py` as a script.

Why not multiprocessing: its 'fork' copies a process that may hold other threads' locks (a Prefect task runs
in a thread beside the engine's), 'spawn' and 'forkserver' re-import the parent's __main__ (the CLI, pytest)
in every worker. A worker here is `python -P fastscan.py`: it imports the standard library and msgspec only,
reads length-prefixed msgpack requests on stdin and answers on stdout, and exits when its stdin closes, so it
cannot outlive the review (nor the parent: a dead parent closes the pipe). `close()` waits for every worker
and kills one that does not exit.

A worker that hangs (alive, never answering: a pathological file, a stopped process) would stall the review: one
watchdog thread per pool kills a worker whose oldest request has waited over `HANG_SECONDS` since the worker
started on it (requests are answered in order: from its submission or the previous answer, whichever is later).
Its pending requests fail with `WorkerDied`, so the scanner judges those files the classic way, and later
requests go to the live workers.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from integrations.aws.cloudtrail_review import fastscan

_log = logging.getLogger("stanch.review")
_SCRIPT = Path(fastscan.__file__).resolve()


class WorkerDied(Exception):
    """A worker process ended before answering."""


# How long a worker may work on one request without answering before it is killed as hung. A file is at most
# fastscan.MAX_INFLATED (256 MiB) inflated, which a worker searches and decodes in a few seconds: this bound is
# an order of magnitude above that even on a loaded machine. Read at each check (tests lower it).
HANG_SECONDS = 60.0


# Worker processes started early (`stanch review-logs` starts them before importing the engine, and has them
# scan the first files already: see fastscan's early scans), each with the files it was sent.
_started: list[tuple[subprocess.Popen[bytes], list[str]]] = []
_started_lock = threading.Lock()


def adopt(started: list[tuple[subprocess.Popen[bytes], list[str]]]) -> None:
    """Worker processes started early, for the next `Workers` to use (the rest: `release`)."""
    with _started_lock:
        _started.extend(started)


def release(kill: bool = False) -> None:
    """End the early-started worker processes no review used (closing their stdin ends them once they have done
    their early scans; kill: at once, the command failed)."""
    with _started_lock:
        left = list(_started)
        _started.clear()
    for proc, _ in left:
        try:
            if kill:
                proc.kill()
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


class _Worker:
    def __init__(self, index: int) -> None:
        with _started_lock:
            started = _started.pop(0) if _started else None
        self.early: list[str] = started[1] if started else []  # the files it was sent early
        self.proc = (
            started[0]
            if started
            else subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-P", str(_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
                close_fds=True,
            )
        )
        self.pending: deque[tuple[Future[Any], float]] = deque()  # each with when it was submitted (monotonic)
        self.lock = threading.Lock()  # one writer at a time
        self.state = threading.Lock()  # pending, dead, killed and answered: shared with the reader and the watchdog
        self.dead = False
        self.killed = False  # by the watchdog, as hung
        self.answered: float | None = None  # when the last answer came (monotonic), None before the first
        self.reader = threading.Thread(target=self._read, name=f"stanch-review-worker-{index}", daemon=True)
        self.reader.start()

    def submit(self, task: tuple[Any, ...]) -> Future[Any]:
        future: Future[Any] = Future()
        body = fastscan.to_wire(task)
        # The write may block on a full pipe while the worker is busy (or hung: the watchdog's kill ends it), so
        # the pending requests have their own lock, never held across it.
        with self.lock:
            with self.state:
                ended = self.dead or self.proc.stdin is None
                entry = (future, time.monotonic())
                if not ended:
                    self.pending.append(entry)
            if ended or self.proc.stdin is None:
                future.set_exception(WorkerDied("the worker process has ended"))
                return future
            try:
                self.proc.stdin.write(body)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                with self.state:
                    self.dead = True
                    mine = entry in self.pending  # else the watchdog has failed it already
                    if mine:
                        self.pending.remove(entry)
                if mine:
                    future.set_exception(WorkerDied("the worker process has ended"))
        return future

    def _read(self) -> None:
        stream = self.proc.stdout
        while stream is not None:
            header = fastscan._read_exact(stream, fastscan._HEADER.size)
            body = fastscan._read_exact(stream, fastscan._HEADER.unpack(header)[0]) if header else None
            left: list[Future[Any]] | None = None
            with self.state:
                if body is None or self.killed:  # ended, or killed as hung (its requests have failed then)
                    self.dead = True
                    left = [future for future, _ in self.pending]
                    self.pending.clear()
                else:
                    future, _ = self.pending.popleft()
                    self.answered = time.monotonic()
            if body is None or left is not None:
                for failed in left or ():
                    failed.set_exception(WorkerDied("the worker process ended"))
                return
            try:
                future.set_result(fastscan.result_from_wire(body))
            except Exception as exc:  # a garbled answer sends that file to the classic path
                future.set_exception(WorkerDied(f"unreadable answer: {exc!r:.100}"))

    @property
    def load(self) -> int:
        return len(self.pending)

    def kill_if_hung(self, now: float) -> None:
        """End the worker if it has been on its oldest pending request longer than HANG_SECONDS allows (before
        its first answer, the files it was sent early are allowed for too: it scans them first). Its pending
        requests fail with WorkerDied."""
        with self.state:
            if self.dead or not self.pending:
                return
            submitted = self.pending[0][1]
            waited = now - (submitted if self.answered is None else max(submitted, self.answered))
            if waited <= HANG_SECONDS * (1 + (len(self.early) if self.answered is None else 0)):
                return
            self.dead = self.killed = True
            left = [future for future, _ in self.pending]
            self.pending.clear()
        _log.warning(
            "review: worker process %s gave no answer for %.1f s (bound %g s): killed; its %d pending file(s) go "
            "to the classic path",
            self.proc.pid,
            waited,
            HANG_SECONDS,
            len(left),
        )
        try:
            self.proc.kill()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            _log.warning("review: worker process %s did not end when killed", self.proc.pid, exc_info=True)
        for future in left:
            future.set_exception(WorkerDied(f"the worker process gave no answer for {waited:.1f} s"))

    def close(self, timeout: float, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        with self.lock:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout)
        if not self.reader.is_alive() and self.proc.stdout is not None:
            self.proc.stdout.close()


class Workers:
    """A few worker processes; `submit` sends a fastscan task to the least busy one."""

    def __init__(self, count: int) -> None:
        self.workers: list[_Worker] = []
        self.home: dict[str, _Worker] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.watchdog: threading.Thread | None = None
        try:
            for index in range(count):
                worker = _Worker(index)
                self.workers.append(worker)
                self.home.update(dict.fromkeys(worker.early, worker))  # a file's task goes where it was scanned
            self.watchdog = threading.Thread(target=self._watch, name="stanch-review-watchdog", daemon=True)
            self.watchdog.start()
        except BaseException:
            self.close()
            raise

    def _watch(self) -> None:
        """Kill the workers that hang (see HANG_SECONDS), until the pool closes."""
        workers = list(self.workers)
        while not self.stop.wait(min(1.0, max(0.05, HANG_SECONDS / 8))):
            now = time.monotonic()
            for worker in workers:
                try:
                    worker.kill_if_hung(now)
                except Exception:  # the watchdog goes on for the others
                    _log.warning("review: could not check worker process %s", worker.proc.pid, exc_info=True)

    def submit(self, task: tuple[Any, ...], affinity: str = "") -> Future[Any]:
        """Send a task to the least busy worker, or to the one that had the same `affinity` (it may still hold
        that file decoded)."""
        with self.lock:
            worker = self.home.get(affinity) if affinity else None
            if worker is None or worker.dead:
                live = [w for w in self.workers if not w.dead] or self.workers
                worker = min(live, key=lambda w: w.load)
                if affinity:
                    self.home[affinity] = worker
                    if len(self.home) > 4096:
                        self.home.pop(next(iter(self.home)))
        return worker.submit(task)

    def close(self, timeout: float = 10.0, kill: bool = False) -> None:
        """Close every worker's stdin and wait for it (kill: end them at once, the review is abandoned)."""
        self.stop.set()
        if self.watchdog is not None and self.watchdog is not threading.current_thread():
            self.watchdog.join()
            self.watchdog = None
        for worker in self.workers:
            worker.close(timeout, kill)
        self.workers = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(kill=kind is not None)
