"""Session-wide real services: one Prefect API (the test harness), one moto server, one Slack stand-in."""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Before anything imports Prefect: a private home and no telemetry (else "database is locked").
_HOME = tempfile.mkdtemp(prefix="stanch-prefect-home-")
os.environ["PREFECT_HOME"] = _HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("STANCH_CONFIG", None)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
PLAYBOOKS = ROOT / "playbooks"
STANCH = str(Path(sys.executable).with_name("stanch"))


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect API for the whole session (the harness takes ~11 s to start)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        yield url
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[Any]:
    from flows.sandbox import Sandbox

    box = Sandbox().start()
    box.deactivate()  # each test that wants it points the environment at it
    yield box
    box.stop()


APPROVERS = {"alice": "U0ALICE", "bob": "U0BOB", "dana": "U0DANA", "carol": "U0CAROL", "mallory": "U0MALLORY"}


def approver_token(name: str) -> str:
    return f"sandbox-token-{name}-0123456789"


@pytest.fixture(scope="session")
def stanch_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's configuration file: approver identities with Slack ids and CLI token hashes."""
    import yaml

    from flows.approvals.signing import token_hash

    path = tmp_path_factory.mktemp("config") / "stanch.yaml"
    approvers = {
        name: {"slack_user_id": slack_id, "token_sha256": token_hash(approver_token(name))}
        for name, slack_id in APPROVERS.items()
    }
    path.write_text(yaml.safe_dump({"approvers": approvers, "approvals": {"escalation_channel": "#security-escalations"}}))
    os.environ["STANCH_CONFIG"] = str(path)
    yield path
    os.environ.pop("STANCH_CONFIG", None)


@pytest.fixture(scope="session")
def approval_service(
    sandbox_session: Any, stanch_config: Path, prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`stanch serve`'s app on a free loopback port, for the whole session; its base URL."""

    from flows.approvals.service import create_app, start_in_thread
    from flows.config import load_settings

    os.environ["STANCH_APPROVALS__STATE_PATH"] = str(tmp_path_factory.mktemp("service") / "service.sqlite3")
    sandbox_session.activate()
    try:
        app = create_app(load_settings())
    finally:
        sandbox_session.deactivate()
    url, stop = start_in_thread(app)
    yield url
    stop()


@pytest.fixture
def sandbox(sandbox_session: Any, stanch_config: Path) -> Iterator[Any]:
    """The session's sandbox, emptied and seeded afresh, pointed at for this test only."""
    sandbox_session.reset()
    sandbox_session.activate()
    yield sandbox_session
    sandbox_session.deactivate()


@dataclass
class BackgroundRun:
    """A playbook run on a thread, with its events in a queue."""

    events: queue.Queue[tuple[str, dict[str, Any]]] = field(default_factory=queue.Queue)
    history: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)
    run_id: str | None = None
    summary: Any = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def wait_for(self, kind: str, timeout: float = 60, **match: Any) -> dict[str, Any]:
        """The first event of `kind` (matching `match`) not returned before; earlier events of other kinds are
        kept, so waiting for one gate never loses another gate's event (gates open concurrently)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            for index, (got, data) in enumerate(self.history):
                if index not in self.taken and got == kind and all(data.get(k) == v for k, v in match.items()):
                    self.taken.add(index)
                    return data
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} event within {timeout}s")
            try:
                self.history.append(self.events.get(timeout=min(1.0, left)))
            except queue.Empty:
                if self.thread is not None and not self.thread.is_alive() and self.events.empty():
                    raise AssertionError(f"the run ended before {kind}: {self.error or self.summary}") from None

    def index_of(self, kind: str, **match: Any) -> int:
        """Where an event already seen stands in the run's order of events (-1 when not seen)."""
        while not self.events.empty():
            self.history.append(self.events.get_nowait())
        for index, (got, data) in enumerate(self.history):
            if got == kind and all(data.get(k) == v for k, v in match.items()):
                return index
        return -1

    def wait_paused(self, timeout: float = 30, gate: str | None = None) -> None:
        """Until the run lists an open gate (that gate, when named) in the Prefect API, where answers find it."""
        import time

        from flows.approvals.client import open_gates

        assert self.run_id
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = [g["gate"] for g in open_gates(self.run_id)]
            if listed and (gate is None or gate in listed):
                return
            time.sleep(0.1)
        raise AssertionError("the run lists no open gate")

    def result(self, timeout: float = 90) -> Any:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish in time"
        if self.error:
            raise self.error
        return self.summary


def start_run(playbook: Any, inputs: dict[str, Any], **kwargs: Any) -> BackgroundRun:
    from flows.engine.launch import run_playbook

    handle = BackgroundRun()

    def observer(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_started":
            handle.run_id = data["run_id"]
        handle.events.put((kind, data))

    def target() -> None:
        try:
            handle.summary = run_playbook(playbook, inputs, observer=observer, **kwargs)
        except BaseException as exc:
            handle.error = exc

    handle.thread = threading.Thread(target=target, daemon=True)
    handle.thread.start()
    return handle


def playbook(text: str, name: str = "test.yaml") -> Any:
    """A playbook from YAML text, checked as `stanch validate` checks it (a test's own playbooks must be clean)."""
    from flows.language.validate import check_text

    checked = check_text(text, name)
    assert checked.ok and checked.playbook is not None, [str(p) for p in checked.problems]
    return checked.playbook


def json_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into nested dicts and lists (the fuzz tests mutate a real document at one of them)."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += json_paths(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += json_paths(child, (*path, i))
    return found


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(_HOME, ignore_errors=True)
