"""Approvals no runner can forge, launchers that are known, and an audit that can be checked later.

The runner side holds what a runner holds: the configuration, the environment with the service's *public* key and
the Prefect API. Only the approval service (here: the private key the sandbox made for it) can sign.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any
from uuid import UUID

import pytest
from conftest import ROOT, STANCH, approver_token, cli_env, start_run
from test_approvals import gated

from flows.approvals.client import answer_gate
from flows.approvals.signing import generate, load_private, sign_decision

pytestmark = pytest.mark.usefixtures("prefect_api")


def _runner_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on this process holds only what a runner holds: no private key."""
    monkeypatch.delenv("STANCH_APPROVAL_PRIVATE_KEY")


def test_a_process_holding_everything_a_runner_holds_cannot_answer_a_gate(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = load_private(sandbox.approval_keys[0])
    _runner_only(monkeypatch)
    key = sandbox.keys["alice"][0]
    run = start_run(gated(), {"access_key_id": key}, launched_by="erin", sandbox=True)
    other = start_run(gated(), {"access_key_id": sandbox.keys["ci-deployer"][0]}, launched_by="erin", sandbox=True)
    run.wait_for("gate_opened")
    other.wait_for("gate_opened")
    run.wait_paused()
    other.wait_paused()
    assert run.run_id and other.run_id
    # another process with the runner's environment, answering as someone else and as itself
    script = (
        "import sys\nfrom flows.approvals.client import answer_gate\n"
        "for who in ('bob', 'erin'):\n"
        "    v = answer_gate(sys.argv[1], 'deactivate', who, 'approve', 'from the runner')\n"
        "    print(who, v.accepted, v.message)\n"
    )
    env = cli_env()
    env.pop("STANCH_APPROVAL_PRIVATE_KEY", None)
    done = subprocess.run(
        [sys.executable, "-c", script, run.run_id], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bob False refused: the decision: it is not signed by the approval service"), lines
    assert lines[1].startswith("erin False refused: the decision: it is not signed"), lines
    # a key the runner made itself: the run trusts only the service's
    forged_key = load_private(generate()[0])
    forged = sign_decision(forged_key, run.run_id, "deactivate", "approve", "bob", "forged", "cli")
    verdict = answer_gate(run.run_id, "deactivate", "bob", "approve", "forged", signature=forged)
    assert verdict.accepted is False and "which this run does not trust" in verdict.message
    # a genuine decision, copied from another run, and one whose reason was changed after signing
    copied = sign_decision(private, other.run_id, "deactivate", "approve", "bob", "for the other run", "cli")
    verdict = answer_gate(run.run_id, "deactivate", "bob", "approve", "for the other run", signature=copied)
    assert verdict.accepted is False and "does not match" in verdict.message
    genuine = sign_decision(private, run.run_id, "deactivate", "approve", "bob", "checked the key", "cli")
    verdict = answer_gate(run.run_id, "deactivate", "bob", "approve", "changed after signing", signature=genuine)
    assert verdict.accepted is False and "does not match" in verdict.message
    verdict = answer_gate(run.run_id, "deactivate", "bob", "approve", "checked the key", channel="slack", signature=genuine)
    assert verdict.accepted is False and "does not match" in verdict.message, "the channel is signed too"
    run.wait_paused()
    assert sandbox.key_states()[key] == "alice: Active", "the gate still waits"
    # the genuine one, as signed, goes through; then the other run is rejected the same way
    assert answer_gate(run.run_id, "deactivate", "bob", "approve", "checked the key", signature=genuine).accepted
    assert run.result().state == "Completed"
    rejected = sign_decision(private, other.run_id, "deactivate", "reject", "alice", "not this one", "cli")
    assert answer_gate(other.run_id, "deactivate", "alice", "reject", "not this one", signature=rejected).accepted
    assert other.result().state == "Cancelled"
    refusals = [d.refusal for d in run.result().decisions() if not d.accepted]
    assert len(refusals) == 6 and all(refusals), refusals


@pytest.mark.parametrize("duties", ["true", "strict"])
def test_a_claimed_launcher_and_separate_duties(sandbox: Any, duties: str) -> None:
    key = sandbox.keys["alice"][0]
    run = start_run(gated(extra=f", separate_duties: {duties}"), {"access_key_id": key}, launched_by="dana", sandbox=True)
    opened = run.wait_for("gate_opened")
    assert "launcher unverified: 'dana' is only a claim" in opened["message"]
    run.wait_paused()
    as_launcher = answer_gate(run.run_id, "deactivate", "dana", "approve", "my own run")  # type: ignore[arg-type]
    assert as_launcher.accepted is False and "named as this run's launcher (unverified)" in as_launcher.message
    other = answer_gate(run.run_id, "deactivate", "bob", "approve", "a second person")  # type: ignore[arg-type]
    if duties == "true":
        assert other.accepted, other.message
        assert run.result().state == "Completed"
    else:
        assert other.accepted is False and "launcher is unverified" in other.message
        reject = answer_gate(run.run_id, "deactivate", "bob", "reject", "cannot approve an unverified launch")  # type: ignore[arg-type]
        assert reject.accepted
        assert run.result().state == "Cancelled"


def test_a_verified_launch_under_strict_duties(sandbox: Any, approval_service: str) -> None:
    """`stanch run` with an approver's token: the service vouches for the launcher; strict duties then allow others."""
    from flows.approvals.client import launch_proof
    from flows.engine.flow import new_incident_id

    incident = new_incident_id()
    proof = launch_proof("slack-gate", incident, "dana", approver_token("dana"), approval_service)
    key = sandbox.keys["alice"][0]
    pb = gated(extra=", separate_duties: strict")
    run = start_run(pb, {"access_key_id": key}, launched_by="dana", incident_id=incident, launch_proof=proof, sandbox=True)
    opened = run.wait_for("gate_opened")
    assert "launcher unverified" not in opened["message"]
    run.wait_paused()
    mine = answer_gate(run.run_id, "deactivate", "dana", "approve", "my own run")  # type: ignore[arg-type]
    assert mine.accepted is False and "'dana' launched this run and may not approve it" in mine.message
    assert answer_gate(run.run_id, "deactivate", "bob", "approve", "second person").accepted  # type: ignore[arg-type]
    summary = run.result()
    assert summary.state == "Completed"
    # a proof for another incident, or another person, makes the launcher a claim again
    stolen = start_run(pb, {"access_key_id": key}, launched_by="bob", launch_proof=proof, sandbox=True)
    assert "launcher unverified: 'bob' is only a claim" in stolen.wait_for("gate_opened")["message"]
    stolen.wait_paused()
    assert answer_gate(stolen.run_id, "deactivate", "alice", "reject", "stop").accepted  # type: ignore[arg-type]
    stolen.result()


def test_a_key_change_over_and_an_audit_that_still_verifies_the_past(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    old_private, old_public = sandbox.approval_keys
    new_private, new_public = generate()
    # during the change-over the runners trust the new key and the previous one
    monkeypatch.setenv("STANCH_APPROVAL_PUBLIC_KEY", new_public)
    monkeypatch.setenv("STANCH_APPROVALS__PREVIOUS_PUBLIC_KEY", json.dumps({"env": "OLD_APPROVAL_PUBLIC_KEY"}))
    monkeypatch.setenv("OLD_APPROVAL_PUBLIC_KEY", old_public)
    key = sandbox.keys["alice"][0]
    during = start_run(gated(), {"access_key_id": key}, launched_by="erin", sandbox=True)
    during.wait_for("gate_opened")
    during.wait_paused()
    assert during.run_id
    signed_old = sign_decision(load_private(old_private), during.run_id, "deactivate", "approve", "bob", "old key", "cli")
    assert answer_gate(during.run_id, "deactivate", "bob", "approve", "old key", signature=signed_old).accepted
    assert during.result().state == "Completed"
    # after it: the old key signs nothing new that counts
    monkeypatch.delenv("STANCH_APPROVALS__PREVIOUS_PUBLIC_KEY")
    sandbox.client("iam").update_access_key(UserName="alice", AccessKeyId=key, Status="Active")
    after = start_run(gated(), {"access_key_id": key}, launched_by="erin", sandbox=True)
    after.wait_for("gate_opened")
    after.wait_paused()
    assert after.run_id
    late = sign_decision(load_private(old_private), after.run_id, "deactivate", "approve", "bob", "old key", "cli")
    refused = answer_gate(after.run_id, "deactivate", "bob", "approve", "old key", signature=late)
    assert refused.accepted is False and "which this run does not trust" in refused.message
    fresh = sign_decision(load_private(new_private), after.run_id, "deactivate", "approve", "bob", "new key", "cli")
    assert answer_gate(after.run_id, "deactivate", "bob", "approve", "new key", signature=fresh).accepted
    after.result()
    # the audit keeps the old key as retired, so the decision it signed still verifies
    env = cli_env(STANCH_APPROVALS__RETIRED_PUBLIC_KEYS=json.dumps([old_public]))
    env.pop("STANCH_APPROVALS__PREVIOUS_PUBLIC_KEY", None)
    audited = subprocess.run(
        [STANCH, "audit", during.run_id], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "every one of 1 decision(s) verifies" in audited.stdout


def test_stanch_audit_flags_a_decision_altered_in_the_prefect_database(sandbox: Any) -> None:
    from prefect.client.orchestration import get_client

    key = sandbox.keys["alice"][0]
    run = start_run(gated(), {"access_key_id": key}, launched_by="erin", sandbox=True)
    run.wait_for("gate_opened")
    run.wait_paused()
    assert run.run_id
    assert answer_gate(run.run_id, "deactivate", "bob", "approve", "the key is leaked").accepted
    assert run.result().state == "Completed"
    clean = subprocess.run(
        [STANCH, "audit", run.run_id], env=cli_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "verifies (key " in clean.stdout and "launched by erin (an unverified claim)" in clean.stdout
    # someone with database access rewrites who approved and why
    record_key = "stanch-gate-deactivate-closed"
    with get_client(sync_client=True) as client:
        record = json.loads(client.read_flow_run_input(UUID(run.run_id), record_key))
        record["decisions"][0]["approver"] = "alice"
        client.delete_flow_run_input(UUID(run.run_id), record_key)
        client.create_flow_run_input(UUID(run.run_id), key=record_key, value=json.dumps(record))
    tampered = subprocess.run(
        [STANCH, "audit", run.run_id], env=cli_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert tampered.returncode == 1
    assert "DOES NOT VERIFY" in tampered.stdout and "1 decision(s) do not verify" in tampered.stderr
    assert "Traceback" not in tampered.stderr


@pytest.mark.parametrize("with_token", [True, False])
def test_stanch_launch_starts_a_deployment_run_whose_launcher_is_verified_only_with_a_token(
    sandbox: Any, approval_service: str, with_token: bool
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flows import load_flow_from_entrypoint

    from flows.approvals.signing import check_launch, public_keys
    from flows.engine.launch import find_run

    entrypoint = "flows/engine/deployments.py:aws_access_key_compromise"
    flow = load_flow_from_entrypoint(f"{ROOT}/{entrypoint}")
    with get_client(sync_client=True) as client:
        client.create_deployment(flow_id=client.create_flow(flow), name="default", entrypoint=entrypoint)
    env = cli_env(STANCH_APPROVALS__SERVICE_URL=approval_service)
    env.pop("STANCH_APPROVER_TOKEN", None)
    if with_token:
        env["STANCH_APPROVER_TOKEN"] = approver_token("dana")
    key = sandbox.keys["ci-deployer"][0]
    done = subprocess.run(
        [STANCH, "launch", "aws-access-key-compromise", "--as", "dana", "--input", f"access_key_id={key}",
         "--input", "user_name=ci-deployer"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.split()[1]
    params = find_run(run_id).parameters
    assert params["launched_by"] == "dana" and params["inputs"]["access_key_id"] == key
    proof = params.get("launch_proof")
    if with_token:
        assert "verified by the approval service" in done.stdout
        keys = public_keys(sandbox.approval_keys[1])
        assert check_launch(keys, "aws-access-key-compromise", params["incident_id"], "dana", proof) is None
        assert check_launch(keys, "aws-access-key-compromise", params["incident_id"], "bob", proof) is not None
    else:
        assert proof is None and "an unverified claim" in done.stdout
