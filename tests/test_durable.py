"""Gates that wait beside the response, runs that survive their process, credentials that outlast a long gate.

The kills are real: `stanch run` in a subprocess gets SIGKILL, while the simulated account (moto) and the Prefect
API live in this test process and survive it; `stanch resume` then takes the same flow run up again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import STANCH, cli_env, playbook, start_run

from flows.approvals.client import answer_gate, open_gates

pytestmark = pytest.mark.usefixtures("prefect_api")

FAST = {"STANCH_HEARTBEAT_SECONDS": "1", "STANCH_STALE_SECONDS": "3"}


def test_independent_gates_open_together_while_other_steps_run(sandbox: Any) -> None:
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: two-gates, title: Two gates and a slow step, severity: low}
approvers: {oncall: [alice, bob]}
steps:
  - {id: slow, phase: review, uses: core.wait, with: {seconds: 4}}
  - id: left
    phase: contain
    uses: core.log
    approval: {from: oncall, timeout: 5m}
    with: {message: left}
  - id: right
    phase: contain
    uses: core.log
    approval: {from: oncall, timeout: 5m}
    with: {message: right}
""")
    run = start_run(pb, {}, launched_by="erin", sandbox=True)
    run.wait_for("gate_opened", gate="left")
    run.wait_for("gate_opened", gate="right")
    assert run.run_id is not None
    listed = {g["gate"] for g in open_gates(run.run_id)}
    assert listed == {"left", "right"}, "both gates are open at once"
    finished = run.wait_for("step_finished", timeout=30)
    assert finished["record"].id == "slow", "the slow step finishes while both gates wait"
    assert answer_gate(run.run_id, "right", "alice", "approve", "right first").accepted
    run.wait_for("step_finished", timeout=30)
    assert answer_gate(run.run_id, "left", "bob", "approve", "then left").accepted
    summary = run.result()
    steps = {s.id: s for s in summary.steps}
    assert summary.state == "Completed"
    assert steps["right"].started_at < steps["left"].started_at, "the gate answered first runs its step first"
    assert steps["slow"].finished_at < steps["right"].started_at


# ---------------------------------------------------------------- killed runs


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "durable.yaml"
    path.write_text(text)
    playbook(text)  # clean, as `stanch validate` sees it
    return path


def _launch(path: Path, inputs: dict[str, str], kill_at_boundary: str | None = None) -> subprocess.Popen[str]:
    args = [f"--input={k}={v}" for k, v in inputs.items()]
    if kill_at_boundary is None:
        command = [STANCH, "run", str(path), "--as", "erin", *args]
    else:  # the process kills itself at one of the rotation's crash boundaries, as an OOM kill would
        bootstrap = (
            "import os, signal, sys\n"
            "from integrations.aws import iam\n"
            "real = iam._boundary\n"
            "def boundary(name):\n"
            f"    if name == {kill_at_boundary!r}:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    real(name)\n"
            "iam._boundary = boundary\n"
            "from flows.cli import main\n"
            "sys.argv = ['stanch', *sys.argv[1:]]\n"
            "main()\n"
        )
        command = [sys.executable, "-c", bootstrap, "run", str(path), "--as", "erin", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(**FAST))


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 90) -> tuple[str, str]:
    """(the run id, everything printed) once `marker` is printed."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    run_id = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("run ") and not run_id:
            run_id = line.split()[1]
        if marker in line:
            return run_id, "".join(seen)
    raise AssertionError(f"{marker!r} never printed:\n{''.join(seen)}")


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _resume(run_id: str) -> subprocess.CompletedProcess[str]:
    time.sleep(3.5)  # the killed run's heartbeat goes stale (3 s here)
    return subprocess.run(
        [STANCH, "resume", run_id], capture_output=True, text=True, timeout=180, env=cli_env(**FAST), check=False
    )


def _task_runs(run_id: str) -> dict[str, int]:
    """How many task runs each step had in the flow run (a finished step re-run would count twice)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])))
    counts: dict[str, int] = {}
    for task_run in runs:  # "contain-1a2" for a step's only run, "spread[3]" for an item
        name = task_run.name.split("[")[0] if "[" in task_run.name else task_run.name.rsplit("-", 1)[0]
        counts[name] = counts.get(name, 0) + 1
    return counts


def _state(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def test_a_run_killed_during_a_fan_out_resumes_without_redoing_finished_steps(sandbox: Any, tmp_path: Path) -> None:
    alice, bob = sandbox.keys["alice"][0], sandbox.keys["data-pipeline"][0]
    path = _write(
        tmp_path,
        """\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: durable-fan-out, title: Killed in a fan-out, severity: low}
inputs:
  first: {type: string}
  second: {type: string}
steps:
  - {id: contain, phase: contain, uses: aws.iam.deactivate_access_key,
     with: {user_name: alice, access_key_id: "${{ inputs.first }}"}}
  - id: spread
    phase: review
    needs: [contain]
    uses: core.wait
    for_each: ${{ [1, 1, 1, 1, 1, 1] }}
    max_concurrency: 1
    with: {seconds: "${{ item }}"}
  - {id: finish, phase: contain, needs: [spread], uses: aws.iam.deactivate_access_key,
     with: {user_name: data-pipeline, access_key_id: "${{ inputs.second }}"}}
""",
    )
    sandbox.record_aws()
    proc = _launch(path, {"first": alice, "second": bob})
    run_id, _ = _read_until(proc, "spread")
    time.sleep(2.5)
    _kill(proc)
    assert _state(run_id).is_running(), "a killed process leaves its run Running until someone notices"
    assert sandbox.key_states()[alice] == "alice: Inactive" and sandbox.key_states()[bob] == "data-pipeline: Active"
    resumed = _resume(run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "finished before, not run again: contain" in resumed.stdout
    assert _state(run_id).is_completed()
    assert sandbox.key_states()[bob] == "data-pipeline: Inactive"
    assert [op for op in sandbox.aws_operations() if op == "iam:UpdateAccessKey"] == ["iam:UpdateAccessKey"] * 2
    assert _task_runs(run_id)["contain"] == 1, "the step that had finished did not run again"


def test_a_run_killed_while_a_gate_waits_keeps_its_deadline_and_the_answer_sent_meanwhile(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.engine.launch import sweep_vanished_runs

    alice, bob = sandbox.keys["alice"][0], sandbox.keys["data-pipeline"][0]
    path = _write(
        tmp_path,
        """\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: durable-gate, title: Killed at a gate, severity: low}
inputs:
  first: {type: string}
  second: {type: string}
approvers: {oncall: [alice, bob]}
steps:
  - {id: contain, phase: contain, uses: aws.iam.deactivate_access_key,
     with: {user_name: alice, access_key_id: "${{ inputs.first }}"}}
  - id: gated
    phase: contain
    needs: [contain]
    uses: aws.iam.deactivate_access_key
    approval: {from: oncall, timeout: 10m}
    with: {user_name: data-pipeline, access_key_id: "${{ inputs.second }}"}
""",
    )
    proc = _launch(path, {"first": alice, "second": bob})
    run_id, _ = _read_until(proc, "⏸ gate")
    deadline = _wait_listed(run_id)["deadline"]
    _kill(proc)
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    assert run_id not in sweep_vanished_runs(), "a run whose heartbeat is fresh is left alone"
    # the answer goes to the run's id while no process runs it: kept, judged on resume
    verdict = answer_gate(run_id, "gated", "alice", "approve", "sent while it was down", wait_seconds=1)
    assert verdict.delivered and verdict.accepted is None
    assert sandbox.key_states()[bob] == "data-pipeline: Active"
    time.sleep(3.5)
    # this sweep, or the approval service's own (every 30 s, in this test session too), marks it Crashed
    assert run_id in sweep_vanished_runs() or _state(run_id).is_crashed()
    assert _state(run_id).is_crashed(), "a run whose process vanished is marked Crashed, not left Running"
    resumed = _resume(run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    said = resumed.stdout + resumed.stderr
    assert f"re-opened after a resume: 0 approval(s) kept, deadline {deadline[11:19]} UTC" in said, said
    assert sandbox.key_states()[bob] == "data-pipeline: Inactive"
    assert _task_runs(run_id)["contain"] == 1
    assert _journal(run_id, "stanch-gate-gated-opened")["deadline"][:19] == deadline[:19], "the original deadline"


def _wait_listed(run_id: str) -> dict[str, Any]:
    for _ in range(100):
        listed = open_gates(run_id)
        if listed:
            return listed[0]
        time.sleep(0.1)
    raise AssertionError("no open gate listed")


def _journal(run_id: str, key: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        value: dict[str, Any] = json.loads(client.read_flow_run_input(UUID(run_id), key))
    return value


@pytest.mark.parametrize("boundary", ["stored", "promoted"])
def test_a_run_killed_inside_a_rotation_converges_on_resume_with_a_working_key_throughout(
    sandbox: Any, tmp_path: Path, boundary: str
) -> None:
    iam = sandbox.client("iam")
    iam.create_user(UserName="svc-durable")
    made = iam.create_access_key(UserName="svc-durable")["AccessKey"]
    pair = {"AccessKeyId": made["AccessKeyId"], "SecretAccessKey": made["SecretAccessKey"]}
    sm = sandbox.client("secretsmanager")
    sm.create_secret(Name="apps/svc-durable/aws", SecretString=json.dumps(pair))

    def current() -> str:
        value = sm.get_secret_value(SecretId="apps/svc-durable/aws", VersionStage="AWSCURRENT")["SecretString"]
        return str(json.loads(value)["AccessKeyId"])

    def status(key: str) -> str:
        metas = iam.list_access_keys(UserName="svc-durable")["AccessKeyMetadata"]
        return next(m["Status"] for m in metas if m["AccessKeyId"] == key)

    path = _write(
        tmp_path,
        """\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: durable-rotation, title: Killed in a rotation, severity: low}
inputs:
  key: {type: string}
steps:
  - {id: rotate, phase: rotate, uses: aws.iam.rotate_access_key,
     with: {user_name: svc-durable, secret_id: apps/svc-durable/aws, access_key_id: "${{ inputs.key }}"}}
  - {id: after, phase: notify, needs: [rotate], uses: core.log, with: {message: "${{ steps.rotate.outputs.detail }}"}}
""",
    )
    sandbox.record_aws()
    proc = _launch(path, {"key": made["AccessKeyId"]}, kill_at_boundary=boundary)
    _read_until(proc, "rotate")
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert status(current()) == "Active", "the secret's current key works after the kill"
    run_id = _last_run("durable-rotation")
    resumed = _resume(run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    new = current()
    assert new != made["AccessKeyId"] and status(new) == "Active"
    assert status(made["AccessKeyId"]) == "Inactive"
    assert len(iam.list_access_keys(UserName="svc-durable")["AccessKeyMetadata"]) == 2, "exactly one new key"
    assert sandbox.aws_operations().count("iam:CreateAccessKey") == 1, "nothing minted twice"


def _last_run(flow_name: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), sort=FlowRunSort.START_TIME_DESC, limit=1
        )
    return str(runs[0].id)


# ---------------------------------------------------------------- credentials


def test_a_gate_that_outlasts_the_role_credentials_is_followed_by_a_step_that_works(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto never expires credentials, so a botocore hook refuses any signed with credentials older than 3 s."""
    from integrations.context import AwsClients

    iam = sandbox.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName="stanch-responder", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    monkeypatch.setenv("STANCH_AWS__ROLE_ARN", role)
    monkeypatch.setenv("STANCH_AWS__CREDENTIAL_MAX_AGE", "2")
    first_seen: dict[str, float] = {}
    refused: list[str] = []

    def expire(request: Any, **_: Any) -> None:
        auth = request.headers.get("Authorization", b"")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        key = auth.split("Credential=")[-1].split("/")[0] if "Credential=" in auth else ""
        if not key.startswith("ASIA"):
            return
        born = first_seen.setdefault(key, time.monotonic())
        if time.monotonic() - born > 3:
            refused.append(key)
            raise RuntimeError(f"ExpiredToken: the security token {key} expired")

    monkeypatch.setattr(AwsClients, "event_hooks", [("before-send", expire)])
    key = sandbox.keys["alice"][0]
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: long-gate, title: A gate longer than the credentials, severity: low}
inputs:
  access_key_id: {type: string}
approvers: {oncall: [bob]}
steps:
  - {id: inventory, phase: review, uses: aws.iam.list_access_keys, with: {user_name: alice}}
  - id: deactivate
    phase: contain
    needs: [inventory]
    uses: aws.iam.deactivate_access_key
    approval: {from: oncall, timeout: 5m}
    with: {user_name: alice, access_key_id: "${{ inputs.access_key_id }}"}
""")
    run = start_run(pb, {"access_key_id": key}, launched_by="erin", sandbox=True)
    run.wait_for("gate_opened")
    time.sleep(5)  # longer than the credentials live
    assert answer_gate(run.run_id, "deactivate", "bob", "approve", "after a long wait").accepted  # type: ignore[arg-type]
    summary = run.result()
    assert summary.state == "Completed", summary.message
    assert sandbox.key_states()[key] == "alice: Inactive"
    assert len(first_seen) >= 2, "the responder role's credentials were refreshed"
    assert not refused, f"a request went out with expired credentials: {refused}"
