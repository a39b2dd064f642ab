"""In-process run events for whoever launched the run (the CLI's progress, the demo's approver, tests).

Events are emitted from the flow's own thread; an observer that raises never breaks a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Observer = Callable[[str, dict[str, Any]], None]
_OBSERVER: ContextVar[Observer | None] = ContextVar("stanch_observer", default=None)
_log = logging.getLogger("stanch")


def emit(kind: str, **data: Any) -> None:
    observer = _OBSERVER.get()
    if observer is None:
        return
    try:
        observer(kind, data)
    except Exception:  # an observer's bug must not fail a containment step
        _log.exception("run observer failed on %s", kind)


@contextmanager
def observing(observer: Observer | None) -> Iterator[None]:
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)
