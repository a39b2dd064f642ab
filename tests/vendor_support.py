"""What the vendor adapter tests share (test_vendor_issuers.py, test_vendor_consumers.py): stand-ins started for
a test, logs captured at every level, and the check that no secret value leaked into a text."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import pytest


class _Server(Protocol):
    def start(self) -> Any: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


def assert_no_secret(text: str, *values: str) -> None:
    for value in values:
        assert value not in text, "a secret value leaked"


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Logs at every level (a test then asserts that none of them holds a secret value)."""
    caplog.set_level(logging.DEBUG)
    return caplog


@contextmanager
def serving(stand_in: S) -> Iterator[S]:
    """The stand-in started, and stopped when the test is done."""
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
