"""The run's clock is held per context: an exercise's virtual clock never reaches another run in the process."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from flows.engine import clock
from flows.engine.clock import VirtualClock


def test_a_virtual_clock_stays_in_the_context_that_installed_it() -> None:
    virtual = VirtualClock()
    seen: dict[str, object] = {}
    try:
        virtual.add_actor()
        virtual.at(datetime.now(UTC) + timedelta(hours=2), "deadline")
        with clock.using(virtual):
            # a thread started elsewhere (an alert run in `stanch serve`, another test) keeps the wall clock...
            outsider = threading.Thread(target=lambda: seen.update(outside=clock.current()))
            outsider.start()
            outsider.join()
            clock.sleep(0.5)  # ...and this context's idle wait lets the exercise's time jump
            seen["inside"] = clock.now()
        assert seen["outside"] is clock.WALL
        assert isinstance(seen["inside"], datetime)
        assert seen["inside"] - datetime.now(UTC) > timedelta(hours=1, minutes=59)
        assert clock.current() is clock.WALL
    finally:
        virtual.close()


def test_an_outsiders_idle_wait_never_lets_the_exercise_jump() -> None:
    virtual = VirtualClock()
    try:
        virtual.add_actor()  # one exercise run, busy (it never sleeps on the clock)
        virtual.at(datetime.now(UTC) + timedelta(hours=2), "deadline")
        with clock.using(virtual):
            start = clock.now()
        clock.sleep(0.3)  # an outsider's wait: the wall clock's, not the exercise's
        assert virtual.skipped == 0.0 and (virtual.now() - start) < timedelta(seconds=5)
    finally:
        virtual.close()
