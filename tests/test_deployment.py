"""prefect.yaml deploys the entry flow from a clean clone; the entry flow runs playbooks by name or path."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, cli_env

pytestmark = pytest.mark.usefixtures("prefect_api")


SHIPPED = ("aws-access-key-compromise", "vendor-breach-key-rotation", "iam-role-session-revocation")


def test_prefect_deploy_registers_one_flow_per_playbook_named_after_it() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name="stanch-process", type="process"))
    prefect = str(Path(sys.executable).with_name("prefect"))
    proc = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=cli_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with get_client(sync_client=True) as client:
        for name in SHIPPED:
            deployment = client.read_deployment_by_name(f"{name}/default")
            assert deployment.entrypoint == f"flows/engine/deployments.py:{name.replace('-', '_')}"
            assert deployment.work_pool_name == "stanch-process"
            # the run form: the playbook's inputs and a typed mode, never a free string
            properties = deployment.parameter_openapi_schema["properties"]
            assert set(properties) >= {"inputs", "alert", "mode", "incident_id", "launched_by"}
            mode = deployment.parameter_openapi_schema["definitions"]["RunMode"]
            assert mode["enum"] == ["live", "dry-run"]


def test_the_deployment_flow_is_the_playbook_flow_the_cli_runs(tmp_path: Path, sandbox: Any, monkeypatch: Any) -> None:
    from prefect.flows import load_flow_from_entrypoint

    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "inventory.yaml").write_text(
        "apiVersion: stanch/v1\nkind: Playbook\nmetadata: {name: inventory, title: Inventory, severity: low}\n"
        "inputs:\n  user_name: {type: string}\n"
        "steps:\n  - {id: keys, phase: review, uses: aws.iam.list_access_keys, "
        "with: {user_name: '${{ inputs.user_name }}'}}\n"
    )
    monkeypatch.chdir(tmp_path)
    flow = load_flow_from_entrypoint(f"{ROOT}/flows/engine/deployments.py:inventory")
    assert flow.name == "inventory"
    state = flow(inputs={"user_name": "data-pipeline"}, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.steps[0].outputs["active"] == 2
    assert summary.mode == "live"


def test_a_deployment_run_with_bad_inputs_fails_with_a_message_and_no_traceback(caplog: Any) -> None:
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(f"{ROOT}/flows/engine/deployments.py:aws_access_key_compromise")
    assert flow.name == "aws-access-key-compromise"
    state = flow(inputs={"user_name": "ci-deployer"}, return_state=True)
    assert state.is_failed()
    assert "input 'access_key_id' is required" in (state.message or "")
    assert "Traceback" not in caplog.text


def test_a_mode_that_is_not_live_or_dry_run_never_starts_a_run() -> None:
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(f"{ROOT}/flows/engine/deployments.py:aws_access_key_compromise")
    state = flow(inputs={}, mode="dryrun", return_state=True)
    assert state.is_failed()
    assert "dryrun" in (state.message or "") or "mode" in (state.message or "")
