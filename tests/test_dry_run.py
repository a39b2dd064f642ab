"""A dry-run is dry: every shipped playbook, end to end in the sandbox, sends nothing but reads.

Counted where the requests land: moto's own request log (every AWS request, classified by operation), the Slack
stand-in's call log (every channel) and the vendor stand-in's call log. Gates are reported, not waited for.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import start_run
from test_playbooks import alert

from flows.sandbox import is_mutating

pytestmark = pytest.mark.usefixtures("prefect_api")

SLACK_READS = (".list", ".info", ".history", ".replies", ".lookupByEmail", ".test")


def _launches(sandbox: Any) -> dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]]:
    health = alert("aws-health-risk-credentials-exposed.json")
    health["detail"]["affectedEntities"][0]["entityValue"] = sandbox.scenario["key"]
    anomaly = alert("guardduty-iam-anomalous-behavior.json")
    anomaly["detail"]["resource"]["accessKeyDetails"]["accessKeyId"] = sandbox.scenario["key"]
    trail = f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/"
    flagship = {"user_name": "ci-deployer", "trail_source": trail, "secret_id": "workloads/ci-deployer/aws"}
    return {
        "flagship-confirmed": ("aws-access-key-compromise", flagship, health),
        "flagship-anomaly": ("aws-access-key-compromise", {"trail_source": trail}, anomaly),
        "vendor": ("vendor-breach-key-rotation", {"vendor": "acme-ai"}, None),
        "role": ("iam-role-session-revocation", {"role_name": sandbox.scenario["role"], "trail_source": trail}, None),
    }


@pytest.mark.parametrize("case", ["flagship-confirmed", "flagship-anomaly", "vendor", "role"])
def test_a_dry_run_of_each_shipped_playbook_sends_nothing_but_reads(sandbox: Any, case: str) -> None:
    from flows.sandbox.vendor_env import VendorBreachEnv

    name, inputs, raw_alert = _launches(sandbox)[case]
    # the vendor breach works from vendors/acme-ai.yaml: its issuers and consumers answer from their stand-ins
    env = VendorBreachEnv(sandbox).start() if case == "vendor" else None
    stand_ins = (env.braintrust, env.openai, env.anthropic, env.github, env.kube) if env else ()
    for stand_in in stand_ins:
        stand_in.clear_calls()
    try:
        before = sandbox.snapshot()
        sandbox.slack.calls.clear()
        sandbox.vendor.calls.clear()
        sandbox.record_aws()
        run = start_run(name, inputs, alert=raw_alert, launched_by="erin", dry_run=True, sandbox=True)
        summary = run.result(timeout=120)

        operations = sandbox.aws_operations()
        assert operations, "the dry-run read the account"
        assert [op for op in operations if is_mutating(op)] == []
        assert [c.method for c in sandbox.slack.calls if not c.method.endswith(SLACK_READS)] == []
        assert sandbox.vendor.calls == []
        assert sandbox.snapshot() == before
        # the whole path is shown: gates say whom they would ask, and every expression the validator accepted evaluates
        assert summary.state == "Completed", summary.message
        assert all(s.state in ("completed", "skipped") for s in summary.steps), [
            (s.id, s.state, s.reason) for s in summary.steps
        ]
        gated = [s for s in summary.steps if s.reason.startswith("gate would wait for")]
        assert gated, "each shipped playbook has gates on its path"
        assert all("treated as approved in this dry-run" in s.reason for s in gated)
        assert any(
            s.changed and s.outputs and (s.outputs.get("dry_run") if isinstance(s.outputs, dict) else True)
            for s in summary.steps
        )
        assert [call for stand_in in stand_ins for call in stand_in.calls] == []  # not even a read with a key
    finally:
        if env is not None:
            env.stop()


def test_a_dry_run_refuses_a_write_even_when_an_action_forgets_to_check(sandbox: Any) -> None:
    """The context's clients refuse writes themselves: one place that stops every outside call."""
    import logging

    from flows.config import load_settings
    from flows.engine.driver import build_context
    from integrations.context import ReadOnlyRefusal, RunInfo, RunMode
    from integrations.masking import SecretMasker

    run = RunInfo(id="r", playbook="p", incident_id="inc-1", mode=RunMode.DRY_RUN, launched_by="t")
    ctx = build_context(load_settings(), run, SecretMasker(), logging.getLogger("stanch.test"))
    key = sandbox.keys["ci-deployer"][0]
    assert ctx.aws.client("iam").list_access_keys(UserName="ci-deployer")["AccessKeyMetadata"]
    with pytest.raises(ReadOnlyRefusal, match="iam:UpdateAccessKey refused"):
        ctx.aws.client("iam").update_access_key(UserName="ci-deployer", AccessKeyId=key, Status="Inactive")
    with pytest.raises(ReadOnlyRefusal, match=r"chat\.postMessage refused"):
        ctx.slack.chat_postMessage(channel="#incident-response", text="hello")
    with pytest.raises(ReadOnlyRefusal, match="calls no vendor"):
        ctx.http.call("GET", sandbox.vendor_urls()["check_url"], "sandbox-key")
    assert sandbox.key_states()[key] == "ci-deployer: Active"
    assert sandbox.slack.messages("incident-response") == []
