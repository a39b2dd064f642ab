"""`stanch plan --iam-policy` is enough, and every permission in it is needed: moto with auth enforced."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import start_run
from test_playbooks import answer, flagship_inputs

from flows.language.plan import build_plan, iam_policy
from flows.language.validate import load_playbook, resolve_playbook_path

pytestmark = pytest.mark.usefixtures("prefect_api")


def generated_policy(sandbox: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    playbook = load_playbook(resolve_playbook_path("aws-access-key-compromise"))
    values = {name: schema["default"] for name, schema in playbook.inputs.items() if "default" in schema}
    values.update(inputs)
    return iam_policy(build_plan(playbook, values, {"confirmed": True}))


def for_moto(policy: dict[str, Any]) -> dict[str, Any]:
    """moto evaluates IAM calls against the resource `*`, so resource-scoped statements cannot match there:
    the actions are kept exactly, the resources widened. (AWS itself evaluates the scoped resources.)"""
    return {
        "Version": policy["Version"],
        "Statement": [{**s, "Resource": "*"} for s in policy["Statement"]],
    }


def set_auth(sandbox: Any, after_requests: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - the loopback moto server
        f"{sandbox.aws_endpoint}/moto-api/reset-auth",
        data=after_requests.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # else the body is parsed as a form and moto reads nothing
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


@pytest.fixture
def responder(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A responder user whose policy the test sets; the run uses its key; moto enforces auth."""
    iam = sandbox.client("iam")
    iam.create_user(UserName="stanch-responder")
    made = iam.create_access_key(UserName="stanch-responder")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", made["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", made["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)

    def grant(policy: dict[str, Any]) -> None:
        iam.put_user_policy(UserName="stanch-responder", PolicyName="stanch", PolicyDocument=json.dumps(policy))

    try:
        yield grant
    finally:
        set_auth(sandbox, "inf")


def inputs_for(sandbox: Any) -> dict[str, Any]:
    return {**flagship_inputs(sandbox), "access_key_id": sandbox.scenario["key"], "confirmed": True, "watch_seconds": 2}


def test_the_generated_policy_is_enough_for_the_whole_response(sandbox: Any, responder: Any) -> None:
    values = inputs_for(sandbox)
    policy = generated_policy(sandbox, values)
    responder(for_moto(policy))
    set_auth(sandbox, "0")  # from now on every call is checked against the responder's policy
    run = start_run("aws-access-key-compromise", values, launched_by="erin")
    answer(run, "approve-containment")
    answer(run, "approve-secret-rotation")  # the key is rotated at once (confirmed, a workload's): no rotation gate
    summary = run.result(timeout=120)
    assert summary.state == "Completed", summary.message
    set_auth(sandbox, "inf")
    assert sandbox.key_states()[values["access_key_id"]] == "ci-deployer: Inactive"


def test_without_one_permission_the_step_fails_and_says_what_is_missing(sandbox: Any, responder: Any) -> None:
    values = {**inputs_for(sandbox), "secret_id": ""}  # no rotation at once beside the deactivation: one step fails
    policy = for_moto(generated_policy(sandbox, values))
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        statement["Action"] = [a for a in actions if a != "iam:UpdateAccessKey"]
    policy["Statement"] = [s for s in policy["Statement"] if s["Action"]]
    responder(policy)
    set_auth(sandbox, "0")
    from flows.engine.launch import run_playbook

    summary = run_playbook("aws-access-key-compromise", values, launched_by="erin")
    set_auth(sandbox, "inf")
    assert summary.state == "Failed"
    assert summary.message.startswith("step deactivate-now failed")
    assert "UpdateAccessKey" in summary.message and "AccessDenied" in summary.message
    assert "`stanch plan PLAYBOOK --iam-policy`" in summary.message
    assert sandbox.key_states()[values["access_key_id"]] == "ci-deployer: Active"
