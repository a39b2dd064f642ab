"""The deployment route against a real Prefect server and a `prefect worker` process with no AWS account."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

SANDBOX_VARS = ("STANCH_AWS__ENDPOINT_URL", "STANCH_SLACK__BASE_URL", "STANCH_SLACK__TOKEN", "AWS_ACCESS_KEY_ID")


@pytest.fixture(scope="module")
def worker(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The shipped deployments and one process worker polling every second; its log file."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name="stanch-process", type="process"))
    prefect = str(Path(sys.executable).with_name("prefect"))
    # no account and no sandbox in the worker's environment: only a run's `sandbox: true` can give it one
    env = {k: v for k, v in os.environ.items() if k not in SANDBOX_VARS and not k.startswith("STANCH_INTAKE")}
    env.update(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1")
    deployed = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "stanch-process", "--type", "process"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


def deployment_run(inputs: dict[str, Any], **parameters: Any) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(
        "aws-access-key-compromise/default",
        parameters={"inputs": inputs, "trigger": "deployment", "launched_by": "test", **parameters},
        timeout=180,
    )


def gone(run: Any, timeout: float = 30) -> None:
    """Wait until the run's process (the worker's infrastructure pid, host:pid) has exited."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            pid = (client.read_flow_run(run.id).infrastructure_pid or "").rpartition(":")[2]
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    raise AssertionError(f"the process of run {run.id} did not exit within {timeout}s")


def test_a_sandbox_deployment_run_contains_the_key_on_a_worker_with_no_account(worker: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    run = deployment_run(
        {
            "access_key_id": "@sandbox:ci-deployer",
            "user_name": "ci-deployer",
            "confirmed": True,
            "trail_source": "s3://stanch-sandbox-cloudtrail/AWSLogs/",
            "review_since": "2099-01-01",
        },
        sandbox=True,
    )
    assert run.state.is_completed(), (run.state.message, worker.read_text()[-3000:])
    assert "sandbox" in run.tags
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    summary = "".join(a.data for a in artifacts if isinstance(a.data, str))
    assert "deactivate-now" in summary and "completed" in summary.lower(), summary


def test_a_failing_deployment_run_ends_failed_without_an_engine_traceback(worker: Path) -> None:
    run = deployment_run({"user_name": "ci-deployer"}, sandbox=True)
    assert run.state.is_failed()
    assert "input 'access_key_id' is required" in (run.state.message or "")
    gone(run)  # everything its process logged is in the worker's log
    text = worker.read_text()
    assert "input 'access_key_id' is required" in text  # the run's own log reached the worker's
    assert "Unexpected result for failed state" not in text and "Traceback" not in text, text[-3000:]


def test_the_event_route_starts_the_run_through_the_deployment_trigger(worker: Path) -> None:
    """intake.route `event`: the service emits stanch.alert.routed; prefect.yaml's trigger starts the worker's run."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from flows.config import load_settings
    from flows.engine.launch import load_named
    from flows.intake.launcher import Launcher

    settings = load_settings()
    settings.intake.route = "event"
    settings.intake.sandbox = True
    launcher = Launcher(settings)
    playbook = load_named("aws-access-key-compromise")
    inputs = {
        "access_key_id": "@sandbox:data-pipeline",
        "user_name": "data-pipeline",
        "confirmed": True,
        "trail_source": "s3://stanch-sandbox-cloudtrail/AWSLogs/",
        "review_since": "2099-01-01",
    }
    facts = {"source": "aws.health", "kind": "AWS_RISK_CREDENTIALS_EXPOSED", "confirmed": True}
    # The parameters Launcher.start builds, with the worker sandbox's `@sandbox:` key reference as the key id
    # (start() checks inputs against the playbook, and that reference is only resolved by the worker's run).
    parameters = {
        "inputs": inputs,
        "alert": facts,
        "mode": "live",
        "incident_id": "INC-EVENT-ROUTE",
        "trigger": "alert",
        "launched_by": "alert:aws.health",
        "sandbox": True,
        "launch_proof": None,
    }
    launcher._emit(playbook, parameters)  # the trigger makes the run: there is no id to answer with

    deadline = time.monotonic() + 150
    run: Any = None
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["incident:INC-EVENT-ROUTE"]))
            )
        run = runs[0] if runs else None
        if run is not None and run.state is not None and run.state.is_final():
            break
        time.sleep(0.5)
    assert run is not None, "the deployment trigger started no run"
    assert run.state.is_completed(), (run.state.message, worker.read_text()[-3000:])
    assert run.parameters["inputs"]["user_name"] == "data-pipeline" and run.parameters["sandbox"] is True
    assert run.parameters["alert"]["source"] == "aws.health" and run.parameters["trigger"] == "alert"
    assert "trigger:alert" in run.tags and "sandbox" in run.tags
