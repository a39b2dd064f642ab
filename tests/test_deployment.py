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


def test_prefect_deploy_registers_the_entry_flow_on_a_process_pool() -> None:
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
        timeout=120,
        env=cli_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("stanch-playbook/playbook")
    assert deployment.entrypoint == "flows/engine/entry.py:run_playbook_flow"
    assert deployment.work_pool_name == "stanch-process"
    assert deployment.parameters["playbook"] == "aws-access-key-compromise"


def test_entry_flow_runs_a_playbook_by_path(tmp_path: Path, sandbox: Any) -> None:
    from flows.engine.entry import run_playbook_flow

    path = tmp_path / "inventory.yaml"
    path.write_text(
        "apiVersion: stanch/v1\nkind: Playbook\nmetadata: {name: inventory, title: Inventory, severity: low}\n"
        "inputs:\n  user_name: {type: string}\n"
        "steps:\n  - {id: keys, phase: review, uses: aws.iam.list_access_keys, "
        "with: {user_name: '${{ inputs.user_name }}'}}\n"
    )
    state = run_playbook_flow(playbook=str(path), inputs={"user_name": "data-pipeline"}, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.steps[0].outputs["active"] == 2


def test_entry_flow_with_a_bad_playbook_fails_with_a_message() -> None:
    from flows.engine.entry import run_playbook_flow

    state = run_playbook_flow(playbook="no-such-playbook", return_state=True)
    assert state.is_failed()
    assert "no playbook named 'no-such-playbook'" in (state.message or "")
