"""`stanch up`: a Prefect server, a worker and the service together, all stopped on Ctrl-C or as leftovers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from conftest import STANCH, cli_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    from flows.cli.stack import alive as running

    return running(pid)


def test_stanch_up_starts_the_stack_and_ctrl_c_stops_all_of_it(tmp_path: Path) -> None:
    prefect_port, port = free_port(), free_port()
    env = cli_env(PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)
    env.pop("STANCH_CONFIG", None)
    up = subprocess.Popen(
        [STANCH, "up", "--sandbox", "--prefect-port", str(prefect_port), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("export PREFECT_API_URL"):
                break
        printed = "".join(lines)
        assert f"http://127.0.0.1:{prefect_port}" in printed and f"http://127.0.0.1:{port}" in printed, printed
        assert "pool stanch-process" in printed
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert json.loads(answer.read()) == {"ok": True}
        parts = json.loads((tmp_path / ".stanch" / "up.json").read_text())
        assert set(parts) == {"prefect-server", "worker", "service"}
        assert all(alive(p["pid"]) for p in parts.values())
    finally:
        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        up.communicate(timeout=90)
    assert not any(alive(p["pid"]) for p in parts.values())
    assert not (tmp_path / ".stanch" / "up.json").exists()


def test_leftovers_are_stopped_by_their_recorded_ids_and_only_theirs(tmp_path: Path) -> None:
    leftover = subprocess.Popen(["sleep", "120"], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "121"], start_new_session=True)
    state = tmp_path / ".stanch" / "up.json"
    state.parent.mkdir()
    # the bystander's id is recorded with another command: an id the system gave to another program
    state.write_text(
        json.dumps(
            {
                "service": {"pid": leftover.pid, "command": ["sleep", "120"]},
                "worker": {"pid": bystander.pid, "command": ["prefect", "worker", "start"]},
            }
        )
    )
    try:
        done = subprocess.run(
            [STANCH, "up", "--stop"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"service (pid {leftover.pid})" in done.stdout
        assert leftover.wait(10) is not None
        assert bystander.poll() is None
        assert not state.exists()
    finally:
        for process in (leftover, bystander):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                process.wait(10)
