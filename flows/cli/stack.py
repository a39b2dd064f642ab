"""`stanch up`: a local Prefect server, a process worker and `stanch serve`, together, stopped together on Ctrl-C.

Each part runs in its own process group, recorded in `.stanch/up.json`; a `stanch up` that was killed leaves
them running, and the next `stanch up` (or `stanch up --stop`) stops those leftovers by their recorded process
ids, after checking each id still runs the command it recorded (an id the system gave to another program is
left alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import app, fail, out

STATE_FILE = Path(".stanch") / "up.json"
POOL = "stanch-process"


@app.command()
def up(
    prefect_port: Annotated[int, typer.Option("--prefect-port", help="The Prefect server's port.")] = 4200,
    port: Annotated[int, typer.Option("--port", help="The Stanch service's port (approvals and alerts).")] = 8480,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Point every part at the embedded sandbox.")] = False,
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Deploy the playbooks and start a worker.")] = True,
    stop: Annotated[bool, typer.Option("--stop", help="Only stop what an earlier `stanch up` left running.")] = False,
) -> None:
    """Start a local Prefect server, a process worker and the Stanch service; Ctrl-C stops all of them."""
    stopped = stop_leftovers()
    if stopped:
        out.print(f"stopped {len(stopped)} part(s) an earlier `stanch up` left running: {', '.join(stopped)}")
    if stop:
        return
    env = dict(os.environ)
    box = None
    if sandbox:
        from flows.sandbox import Sandbox

        box = Sandbox().start()
        env.update(box.environ())
    api = f"http://127.0.0.1:{prefect_port}/api"
    env.update(PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_WORKER_QUERY_SECONDS="2")
    bin_dir = Path(sys.executable).parent
    parts: dict[str, dict[str, Any]] = {}
    try:
        start_part(
            parts,
            "prefect-server",
            [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            env,
        )
        wait_http(f"{api}/health", "the Prefect server", parts["prefect-server"])
        if worker:
            deploy(bin_dir, env)
            start_part(
                parts, "worker", [str(bin_dir / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"], env
            )
        start_part(parts, "service", [str(bin_dir / "stanch"), "serve", "--host", "127.0.0.1", "--port", str(port)], env)
        wait_http(f"http://127.0.0.1:{port}/healthz", "the Stanch service", parts["service"])
        out.print(f"Prefect server  http://127.0.0.1:{prefect_port} (UI), API {api}")
        if worker:
            out.print(f"worker          pool {POOL} (process), pid {parts['worker']['pid']}")
        out.print(f"Stanch service  http://127.0.0.1:{port} (POST /alerts/eventbridge, /alerts/sns, /alerts/github, ")
        out.print("                /alerts/generic, /slack/interactions, /approve, /launch)")
        if box is not None:
            out.print(f"sandbox         AWS {box.aws_endpoint}, Slack {box.slack.base_url if box.slack else ''}")
        out.print(f"export PREFECT_API_URL={api}   # in other terminals; Ctrl-C here stops everything")
        watch(parts)
    except KeyboardInterrupt:
        out.print("stopping")
    finally:
        stop_parts(parts)
        with contextlib.suppress(FileNotFoundError):
            STATE_FILE.unlink()
        if box is not None:
            box.stop()


def start_part(parts: dict[str, dict[str, Any]], name: str, command: list[str], env: dict[str, str]) -> None:
    log_dir = STATE_FILE.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as sink:
        # its own session: Ctrl-C in the terminal reaches `stanch up` only, which stops the parts in order
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
    parts[name] = {"pid": process.pid, "command": command, "process": process, "log": str(log_dir / f"{name}.log")}
    STATE_FILE.write_text(json.dumps({n: {"pid": p["pid"], "command": p["command"]} for n, p in parts.items()}))


def wait_http(url: str, what: str, part: dict[str, Any], timeout: float = 90) -> None:
    import urllib.request  # here: every `stanch` command (validate too) imports this module

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if part["process"].poll() is not None:
            raise fail(f"{what} exited (code {part['process'].returncode}); see {part['log']}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise fail(f"{what} did not answer {url} within {timeout:.0f}s; see {part['log']}")


def deploy(bin_dir: Path, env: dict[str, str]) -> None:
    """The work pool and one deployment per playbook (prefect.yaml), from the project's directory."""
    from flows.language.validate import PLAYBOOK_DIR

    root = Path.cwd() if (Path.cwd() / "prefect.yaml").exists() else PLAYBOOK_DIR.parent
    prefect = str(bin_dir / "prefect")
    subprocess.run([prefect, "work-pool", "create", POOL, "--type", "process"], env=env, capture_output=True, check=False)  # noqa: S603
    command = [prefect, "--no-prompt", "deploy", "--all"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise fail(f"`prefect deploy --all` failed: {(done.stderr or done.stdout)[-800:]}")


def watch(parts: dict[str, dict[str, Any]]) -> None:
    """Until Ctrl-C; a part that exits on its own is reported and the others are stopped."""
    while True:
        for name, part in parts.items():
            if part["process"].poll() is not None:
                raise fail(f"{name} exited (code {part['process'].returncode}); see {part['log']}")
        time.sleep(0.5)


def stop_parts(parts: dict[str, dict[str, Any]]) -> None:
    for name in reversed(list(parts)):  # the service and worker before the server they talk to
        stop_group(parts[name]["pid"])
        with contextlib.suppress(subprocess.TimeoutExpired):
            parts[name]["process"].wait(15)


def stop_group(pid: int, grace: float = 15) -> None:
    """SIGTERM to the part's process group, SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie (exited, not yet reaped) is not running
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    return True


def stop_leftovers() -> list[str]:
    """Stop the parts an earlier `stanch up` recorded and left running; their names."""
    try:
        recorded = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return []
    stopped = []
    for name, part in recorded.items() if isinstance(recorded, dict) else ():
        pid, command = part.get("pid"), part.get("command") or []
        if isinstance(pid, int) and alive(pid) and runs(pid, command):
            stop_group(pid)
            stopped.append(f"{name} (pid {pid})")
    with contextlib.suppress(FileNotFoundError):
        STATE_FILE.unlink()
    return stopped


def runs(pid: int, command: list[str]) -> bool:
    """Whether process `pid` still runs `command` (else its id was reused by another program)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = [part.decode(errors="replace") for part in cmdline if part]
    return bool(command) and command[-1] in text and any(Path(c).name == Path(command[0]).name for c in text[:3])
