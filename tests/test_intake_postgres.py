"""Production shape: a Prefect server on PostgreSQL, two process workers, the service on the deployment route.

A burst of AWS Health alerts for different keys: both workers run some of the runs and every key ends Inactive.
PostgreSQL is Debian's `postgresql` (installed here when missing and possible); where it cannot be had the test
is skipped and says why. Skip it on purpose with STANCH_SKIP_POSTGRES=1 (or `-k "not postgres"`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, STANCH

pytestmark = pytest.mark.skipif(os.environ.get("STANCH_SKIP_POSTGRES") == "1", reason="STANCH_SKIP_POSTGRES=1")

TOKEN = "postgres-burst-token"  # the test's own
BURST = 6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def ensure_postgres() -> Path:
    """Debian's PostgreSQL binaries, installed when missing (as root, with apt); skip with the reason otherwise."""
    if pg_bin() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", "postgresql"],
            env=env,
            capture_output=True,
            timeout=600,
            check=False,
        )
    found = pg_bin()
    if found is None:
        pytest.skip("Debian's postgresql is not installed and cannot be installed here (needs root and apt-get)")
    return found


def as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user the package creates."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; the Prefect connection URL."""
    binaries = ensure_postgres()
    data = Path(tempfile.mkdtemp(prefix="stanch-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    initdb = subprocess.run(
        as_postgres([str(binaries / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "stanch", "--no-sync"]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if initdb.returncode != 0:
        pytest.skip(f"initdb failed here: {initdb.stderr[-300:]}")
    options = f"-p {port} -k {data} -h 127.0.0.1 -c fsync=off -c max_connections=200"
    ctl = [str(binaries / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-o", options]
    subprocess.run(as_postgres([*ctl, "start"]), capture_output=True, timeout=60, check=True)
    try:
        created = [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "stanch", "prefect"]
        subprocess.run(as_postgres(created), capture_output=True, timeout=60, check=True)
        yield f"postgresql+asyncpg://stanch@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run(as_postgres([*ctl, "-m", "fast", "stop"]), capture_output=True, timeout=60, check=False)
        shutil.rmtree(data, ignore_errors=True)


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s: {log.read_text()[-3000:]}")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def test_a_burst_of_alerts_runs_on_two_workers_over_postgres(
    database: str, sandbox: Any, stanch_config: Path, tmp_path: Path
) -> None:
    from test_intake import flagship_with_triggers, health_alert

    from flows.cli.stack import stop_group

    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "aws-access-key-compromise.yaml").write_text(flagship_with_triggers(quick_review=True))
    api_port, service_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_DATABASE_CONNECTION_URL=database,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
        STANCH_PLAYBOOK_DIRS=json.dumps([str(folder)]),
        STANCH_APPROVALS__STATE_PATH=str(tmp_path / "service.sqlite3"),
        STANCH_INTAKE__ROUTE="deployment",
        STANCH_INTAKE__SANDBOX="true",
        STANCH_TEST_TOKEN=TOKEN,
        STANCH_INTAKE__EVENTBRIDGE_TOKEN='{"env": "STANCH_TEST_TOKEN"}',
    )
    prefect = str(Path(sys.executable).with_name("prefect"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        server = start(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(api_port)], env, tmp_path / "server.log"
        )
        processes.append(server)
        wait_http(f"{api}/health", 120, server, tmp_path / "server.log")
        subprocess.run(
            [prefect, "work-pool", "create", "stanch-process", "--type", "process"], env=env, capture_output=True, check=True
        )
        deployed = subprocess.run(
            [prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        for name in ("w1", "w2"):
            command = [
                prefect,
                "worker",
                "start",
                "--pool",
                "stanch-process",
                "--type",
                "process",
                "--name",
                name,
                "--limit",
                "2",
            ]
            processes.append(start(command, env, tmp_path / f"{name}.log"))
        service = start([STANCH, "serve", "--port", str(service_port)], env, tmp_path / "service.log")
        processes.append(service)
        wait_http(f"http://127.0.0.1:{service_port}/healthz", 60, service, tmp_path / "service.log")

        iam = sandbox.client("iam")
        keys = {}
        for n in range(BURST):
            iam.create_user(UserName=f"burst-{n}")
            keys[f"burst-{n}"] = iam.create_access_key(UserName=f"burst-{n}")["AccessKey"]["AccessKeyId"]
        runs = []
        for n, key in enumerate(keys.values()):
            request = urllib.request.Request(
                f"http://127.0.0.1:{service_port}/alerts/eventbridge",
                data=json.dumps(health_alert(key, f"burst-{n}")).encode(),
                headers={"X-Stanch-Token": TOKEN},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
                body = json.loads(answer.read())
            assert body["accepted"] is True and body["run_id"], body
            runs.append(body["run_id"])

        deadline = time.monotonic() + 150
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {user: sandbox.key_states().get(key, "") for user, key in keys.items()}
            if all(state.endswith("Inactive") for state in states.values()):
                break
            time.sleep(0.5)
        assert all(state.endswith("Inactive") for state in states.values()), states
        logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("w1", "w2")}
        # both workers may offer to take a run; the one whose process ran it streamed the run's own log lines
        ran = {name: [r for r in runs if f"/runs/flow-run/{r}" in text] for name, text in logs.items()}
        assert ran["w1"] and ran["w2"], ran
        assert sorted(ran["w1"] + ran["w2"]) == sorted(runs)
    finally:
        for process in reversed(processes):
            stop_group(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
        with contextlib.suppress(ProcessLookupError):
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
