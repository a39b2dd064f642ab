"""`stanch plan` and `stanch graph`: offline, no network, no credentials."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import FIXTURES, STANCH

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
    assert "3. deactivate-key — Deactivate the exposed key [contain] (changes things)" in out
    assert f"access_key_id = {KEY}" in out
    assert "gate: 1 approval(s) from security-oncall within 900s; on timeout escalate to security-leads" in out
    assert "calls iam:GetAccessKeyLastUsed, iam:ListAccessKeys, iam:UpdateAccessKey" in out
    assert "steps['deactivate-key'].outputs.detail" in out and "(at run time)" in out


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
    [statement] = policy["Statement"]
    assert statement["Resource"] == "arn:aws:iam::*:user/ci-deployer"
    assert statement["Action"] == ["iam:GetAccessKeyLastUsed", "iam:ListAccessKeys", "iam:UpdateAccessKey"]


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
    assert "    gate_deactivate_key --> deactivate_key" in lines
    assert "    announce --> gate_deactivate_key" in lines
    assert "    inventory --> gate_deactivate_key" in lines
    assert "    deactivate_key --> verify" in lines
