"""Worker processes for the review's fast path: plain subprocesses running `fastscan.py` as a script.

Why not multiprocessing: its 'fork' copies a process that may hold other threads' locks (a Prefect task runs
in a thread beside the engine's), 'spawn' and 'forkserver' re-import the parent's __main__ (the CLI, pytest)
in every worker. A worker here is `python -P fastscan.py`: it imports the standard library and msgspec only,
reads length-prefixed msgpack requests on stdin and answers on stdout, and exits when its stdin closes, so it
cannot outlive the review (nor the parent: a dead parent closes the pipe). `close()` waits for every worker
and kills one that does not exit.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from integrations.aws.cloudtrail_review import fastscan

_log = logging.getLogger("stanch.review")
_SCRIPT = Path(fastscan.__file__).resolve()


class WorkerDied(Exception):
    """A worker process ended before answering."""


# Worker processes started early (`stanch review-logs` starts them before importing the engine, and has them
# scan the first files already: see fastscan's early scans), each with the files it was sent.
_started: list[tuple[subprocess.Popen[bytes], list[str]]] = []
_started_lock = threading.Lock()


def adopt(started: list[tuple[subprocess.Popen[bytes], list[str]]]) -> None:
    """Worker processes started early, for the next `Workers` to use (the rest: `release`)."""
    with _started_lock:
        _started.extend(started)


def release() -> None:
    """End the early-started worker processes no review used (closing their stdin ends them)."""
    with _started_lock:
        left = list(_started)
        _started.clear()
    for proc, _ in left:
        try:
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
        self.pending: deque[Future[Any]] = deque()
        self.lock = threading.Lock()  # one writer at a time; the deque is shared with the reader
        self.dead = False
        self.reader = threading.Thread(target=self._read, name=f"stanch-review-worker-{index}", daemon=True)
        self.reader.start()

    def submit(self, task: tuple[Any, ...]) -> Future[Any]:
        future: Future[Any] = Future()
        body = fastscan.to_wire(task)
        with self.lock:
            if self.dead or self.proc.stdin is None:
                future.set_exception(WorkerDied("the worker process has ended"))
                return future
            self.pending.append(future)
            try:
                self.proc.stdin.write(body)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.pending.remove(future)
                self.dead = True
                future.set_exception(WorkerDied("the worker process has ended"))
        return future

    def _read(self) -> None:
        stream = self.proc.stdout
        while stream is not None:
            header = fastscan._read_exact(stream, fastscan._HEADER.size)
            body = fastscan._read_exact(stream, fastscan._HEADER.unpack(header)[0]) if header else None
            with self.lock:
                if body is None:
                    self.dead = True
                    while self.pending:
                        self.pending.popleft().set_exception(WorkerDied("the worker process ended"))
                    return
                future = self.pending.popleft()
            try:
                future.set_result(fastscan.result_from_wire(body))
            except Exception as exc:  # a garbled answer sends that file to the classic path
                future.set_exception(WorkerDied(f"unreadable answer: {exc!r:.100}"))

    @property
    def load(self) -> int:
        return len(self.pending)

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


class Workers:
    """A few worker processes; `submit` sends a fastscan task to the least busy one."""

    def __init__(self, count: int) -> None:
        self.workers: list[_Worker] = []
        self.home: dict[str, _Worker] = {}
        self.lock = threading.Lock()
        try:
            for index in range(count):
                worker = _Worker(index)
                self.workers.append(worker)
                self.home.update(dict.fromkeys(worker.early, worker))  # a file's task goes where it was scanned
        except BaseException:
            self.close()
            raise

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
        for worker in self.workers:
            worker.close(timeout, kill)
        self.workers = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(kill=kind is not None)
