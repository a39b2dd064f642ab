"""The run's clock: wall time, unless a tabletop exercise swaps in a virtual one.

Gate deadlines, the driver's waits and the times a run records (step starts and ends, decisions, gate windows)
are read here, never from `datetime.now` or `time` directly. By default this is the wall clock and nothing
changes. A scripted exercise installs a `VirtualClock`: it runs at wall speed while anything is happening, and
when every run of the exercise is only waiting (its gates open, no step in flight) and nothing scheduled is
being handled, it jumps to the next thing that will happen (an inject, a persona's answer, a gate's deadline),
so a two-hour exercise replays in seconds. Only the virtual clock's own jumps move it faster than the wall.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


WALL = WallClock()
# The clock is held per context, not per process: an exercise installs its virtual clock in its own context, and its
# runs (started from that context, with Prefect copying it into task threads) read it; any other run in the same
# process (an alert run in `stanch serve`, another test) stays on the wall clock and never counts as an idle actor.
_scoped: contextvars.ContextVar[Clock | None] = contextvars.ContextVar("stanch_clock", default=None)


def now() -> datetime:
    """The current time (UTC, timezone-aware) on the run's clock."""
    return current().now()


def monotonic() -> float:
    """Seconds on a clock that never goes back, for intervals."""
    return current().monotonic()


def sleep(seconds: float) -> None:
    """Wait with nothing to do: on a virtual clock, a chance for time to jump ahead."""
    current().sleep(seconds)


def current() -> Clock:
    return _scoped.get() or WALL


@contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """Install `clock` in this context (and the threads started from it with its context), restoring it after."""
    token = _scoped.set(clock)
    try:
        yield clock
    finally:
        _scoped.reset(token)


@dataclass(order=True)
class _Alarm:
    at: float  # on the virtual monotonic clock
    seq: int
    key: str = field(compare=False)
    label: str = field(compare=False)
    action: Callable[[], None] | None = field(compare=False, default=None)


class VirtualClock:
    """Wall time plus an offset that grows only by jumps, taken when every actor is idle and nothing is busy.

    Actors are the exercise's runs (`with clock.actor():` around each); a run is idle while its driver is in
    `sleep` (gates open, nothing in flight). Alarms are points the clock may jump to; an alarm with an action
    runs it on the clock's dispatcher thread once due, and holds off further jumps until the action returns
    (a persona's answer is judged by the run before time moves on). An alarm not yet handled is never jumped past.
    """

    def __init__(self, jumps: bool = True, poll: float = 0.02):
        self._cond = threading.Condition()
        self._offset = 0.0
        self._alarms: list[_Alarm] = []
        self._seq = itertools.count()
        self._busy = 0
        self._actors = 0
        self._idle = 0
        self._poll = poll
        self._jumps = jumps  # False: wall time, with alarms (a live exercise's injects)
        self._closed = False
        self.jumps: list[tuple[datetime, datetime, str]] = []  # (from, to, why): what the exercise skipped
        self.errors: list[str] = []
        # The dispatcher runs alarms in its creator's context (the Prefect API an exercise's settings name).
        context = contextvars.copy_context()
        self._dispatcher = threading.Thread(
            target=context.run, args=(self._dispatch,), name="stanch-virtual-clock", daemon=True
        )
        self._dispatcher.start()

    # ---------------------------------------------------------------- reading

    def now(self) -> datetime:
        with self._cond:
            offset = self._offset
        return datetime.now(UTC) + timedelta(seconds=offset)

    def monotonic(self) -> float:
        with self._cond:
            offset = self._offset
        return time.monotonic() + offset

    def to_monotonic(self, at: datetime) -> float:
        """A virtual time as a reading of this clock's `monotonic`."""
        return self.monotonic() + (at - self.now()).total_seconds()

    @property
    def skipped(self) -> float:
        """Seconds of exercise time skipped so far."""
        with self._cond:
            return self._offset

    # ---------------------------------------------------------------- scheduling

    def at(self, when: datetime, label: str, action: Callable[[], None] | None = None, key: str = "") -> None:
        """Wake at `when` (virtual), running `action` then when given."""
        with self._cond:
            heapq.heappush(self._alarms, _Alarm(self.to_monotonic(when), next(self._seq), key or label, label, action))
            self._cond.notify_all()

    def cancel(self, key: str) -> None:
        """Drop alarms with this key not yet due (a gate closed before its deadline)."""
        with self._cond:
            kept = [a for a in self._alarms if a.key != key]
            if len(kept) != len(self._alarms):
                self._alarms = kept
                heapq.heapify(self._alarms)
                self._cond.notify_all()

    def add_actor(self) -> None:
        """Count one more run among those that must all be idle before time jumps."""
        with self._cond:
            self._actors += 1

    def remove_actor(self) -> None:
        with self._cond:
            self._actors -= 1
            self._cond.notify_all()

    @contextmanager
    def actor(self) -> Iterator[None]:
        self.add_actor()
        try:
            yield
        finally:
            self.remove_actor()

    def pending(self) -> list[str]:
        """The labels of alarms with an action that never came due."""
        with self._cond:
            return [a.label for a in sorted(self._alarms) if a.action is not None]

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Hold off jumps while something outside the runs is happening (an inject being applied)."""
        with self._cond:
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def close(self) -> None:
        """Stop the dispatcher; alarms not yet due are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._dispatcher.join(timeout=5)

    # ---------------------------------------------------------------- waiting

    def sleep(self, seconds: float) -> None:
        """An idle wait: jump to the next alarm when everyone is idle, else wait on the wall clock."""
        with self._cond:
            self._idle += 1
            self._cond.notify_all()
            try:
                deadline = time.monotonic() + self._offset + seconds
                while True:
                    mono = time.monotonic() + self._offset
                    if mono >= deadline:
                        return
                    if self._jump_locked(mono):
                        return  # time moved on: the caller looks again at what is due
                    self._cond.wait(min(self._poll, deadline - mono))
            finally:
                self._idle -= 1

    def _jump_locked(self, mono: float) -> bool:
        if (
            not self._jumps
            or self._closed
            or self._busy
            or self._actors == 0
            or self._idle < self._actors
            or not self._alarms
        ):
            return False
        nxt = self._alarms[0]
        if nxt.at <= mono:
            return False  # due and not yet handled: the dispatcher takes it first
        before = datetime.now(UTC) + timedelta(seconds=self._offset)
        self._offset += nxt.at - mono
        self.jumps.append((before, before + timedelta(seconds=nxt.at - mono), nxt.label))
        self._cond.notify_all()
        return True

    def _dispatch(self) -> None:
        _scoped.set(self)  # what an alarm starts (an inject's new run) runs on this clock too
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    mono = time.monotonic() + self._offset
                    if self._alarms and self._alarms[0].at <= mono:
                        alarm = heapq.heappop(self._alarms)
                        if alarm.action is not None:
                            self._busy += 1
                        break
                    self._cond.wait(self._poll * 5)
            if alarm.action is None:
                continue
            try:
                alarm.action()
            except Exception as exc:  # one failed inject or answer is reported, the exercise goes on
                self.errors.append(f"{alarm.label}: {type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
