"""`stanch plan` and `stanch graph`: offline, no network, no credentials."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import FIXTURES, PLAYBOOKS, STANCH

KEY = "AKIAIOSFODNN7EXAMPLE"


def offline_env() -> dict[str, str]:
    """No AWS credentials, no endpoints, no Prefect server, and a proxy that goes nowhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STANCH_", "PREFECT_API"))}
    env.update(
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="",
    )
    return env


def stanch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STANCH, *args], capture_output=True, text=True, timeout=60, env=offline_env(), check=False)


def test_plan_works_offline_and_shows_arguments_calls_and_gates() -> None:
    proc = stanch(
        "plan",
        "aws-access-key-compromise",
        "--input",
        f"access_key_id={KEY}",
        "--input",
        "user_name=ci-deployer",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "deactivate-approved — Deactivate the key (anomaly; a person decides) [contain] (changes things)" in out
    assert "when ${{ not (inputs.confirmed or (alert.confirmed | default(false))) }} -> True" in out
    assert f"access_key_id = {KEY}" in out
    assert "gate: 1 approval(s) from security-oncall within 900s; on timeout escalate to security-leads" in out
    assert "calls iam:GetAccessKeyLastUsed, iam:ListAccessKeys, iam:UpdateAccessKey" in out
    assert "for each item of ${{ steps.review.outputs.contain.principals | selectattr('kind', 'equalto', 'user')" in out
    assert "steps['deactivate-now'].outputs.detail" in out and "(at run time)" in out


def test_plan_iam_policy_is_least_privilege_for_the_playbook() -> None:
    proc = stanch(
        "plan",
        "aws-access-key-compromise",
        "--iam-policy",
        "--input",
        f"access_key_id={KEY}",
        "--input",
        "user_name=ci-deployer",
    )
    assert proc.returncode == 0, proc.stderr
    policy = json.loads(proc.stdout)
    assert policy["Version"] == "2012-10-17"
    by_resource = {
        r: sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        for s in policy["Statement"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    # The exposed user's own key operations are scoped to that user...
    assert {"iam:UpdateAccessKey", "iam:ListAccessKeys", "iam:CreateAccessKey"} <= set(
        by_resource["arn:aws:iam::*:user/ci-deployer"]
    )
    # ...what the attacker created is known only at run time, so those are scoped to users...
    assert "iam:PutUserPolicy" in by_resource["arn:aws:iam::*:user/*"]
    assert "iam:DeleteLoginProfile" in by_resource["arn:aws:iam::*:user/*"]
    # ...and nothing asks for write access to anything else.
    every = {a for actions in by_resource.values() for a in actions}
    expected = (
        "iam",
        "s3",
        "cloudtrail",
        "sts",
        "secretsmanager",
        "ec2",
        "rds",
        "lambda",
        "rolesanywhere",
        "guardduty",
        "config",
        "organizations",  # read only: whether a bucket policy's aws:PrincipalOrgID is our organization
    )
    assert not [a for a in every if a.split(":")[0] not in expected]
    assert "iam:CreateUser" not in every and "iam:*" not in every


def test_plan_fills_inputs_from_an_alert() -> None:
    proc = stanch(
        "plan",
        "aws-access-key-compromise",
        "--alert",
        str(FIXTURES / "alerts" / "guardduty-iam-anomalous-behavior.json"),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"access_key_id = {KEY}" in proc.stdout
    assert "user_name = ci-deployer" in proc.stdout


def test_plan_with_a_bad_input_names_it_without_a_traceback() -> None:
    proc = stanch("plan", "aws-access-key-compromise", "--input", "access_key_id=nope")
    assert proc.returncode == 1
    assert "input 'user_name' is required" in proc.stderr
    assert "input 'access_key_id': 'nope' does not match" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_graph_is_a_mermaid_flowchart_with_the_gate() -> None:
    proc = stanch("graph", "aws-access-key-compromise")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert "    gate_deactivate_approved --> deactivate_approved" in lines
    assert any(line.startswith("    inventory -- ") and line.endswith("--> gate_deactivate_approved") for line in lines)
    assert "    approve_containment --> quarantine_created_users" in lines
    assert "    review --> gate_approve_containment" not in lines, "a conditional edge carries its condition"


def test_the_vendor_playbooks_iam_policy_covers_its_stores_and_holds_no_slack_scope() -> None:
    from flows.language.plan import build_plan, iam_policy
    from flows.language.validate import load_playbook

    pb = load_playbook(PLAYBOOKS / "vendor-breach-key-rotation.yaml")
    policy = iam_policy(build_plan(pb, {"vendor": "acme-ai"}))
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage", "ssm:PutParameter"} <= actions
    assert all(a.split(":")[1][:1].isupper() for a in actions), actions  # IAM actions only, no `chat:write`
