"""The shipped playbooks, end to end in the sandbox, against a real Prefect API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import FIXTURES, BackgroundRun, start_run

from flows.approvals.client import answer_gate, open_gates
from flows.sandbox import trail
from flows.tabletop.report import collect

pytestmark = pytest.mark.usefixtures("prefect_api")


def answer(run: BackgroundRun, gate: str, decision: str = "approve", who: str = "dana") -> None:
    if run.index_of("gate_opened", gate=gate) < 0:
        run.wait_for("gate_opened", timeout=90, gate=gate)
    run.wait_paused(gate=gate)
    verdict = answer_gate(run.run_id, gate, who, decision, f"test: {decision}")  # type: ignore[arg-type]
    assert verdict.accepted, verdict.message


def alert(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "alerts" / name).read_text())
    return data


def flagship_inputs(sandbox: Any) -> dict[str, Any]:
    """The leaked-key playbook's inputs for the sandbox scenario: its user, trail and the workload's secret."""
    return {
        "user_name": "ci-deployer",
        "trail_source": f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/",
        "secret_id": "workloads/ci-deployer/aws",
    }


def start_flagship_on_health_alert(sandbox: Any) -> BackgroundRun:
    """The leaked-key playbook on an AWS Health alert for the sandbox scenario's key, with rotation."""
    health = alert("aws-health-risk-credentials-exposed.json")
    health["detail"]["affectedEntities"][0]["entityValue"] = sandbox.scenario["key"]
    return start_run(
        "aws-access-key-compromise",
        flagship_inputs(sandbox),
        alert=health,
        launched_by="erin",
        sandbox=True,
    )


def states(summary: Any) -> dict[str, str]:
    return {s.id: s.state for s in summary.steps}


def iam_state(sandbox: Any) -> dict[str, Any]:
    iam = sandbox.client("iam")
    backdoor = trail.BACKDOOR_USER
    return {
        "keys": sandbox.key_states(),
        "backdoor_inline": iam.list_user_policies(UserName=backdoor)["PolicyNames"],
        "backdoor_attached": [
            p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=backdoor)["AttachedPolicies"]
        ],
        "backdoor_login": bool(_login(iam, backdoor)),
    }


def _login(iam: Any, user: str) -> Any:
    try:
        return iam.get_login_profile(UserName=user)
    except iam.exceptions.NoSuchEntityException:
        return None


def assert_federation_token_denied(sandbox: Any, review: dict[str, Any]) -> None:
    """The user carries a deny on every token issued before a time after the federation token was minted."""
    [token] = [d for d in review["derived_keys"] if d["via"] == "GetFederationToken"]
    document = sandbox.client("iam").get_user_policy(UserName="ci-deployer", PolicyName="AWSRevokeOlderSessions")[
        "PolicyDocument"
    ]
    [statement] = document["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "*" and statement["Resource"] == "*"
    cut_off = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    assert cut_off > token["event_time"], (cut_off, token)


def test_leaked_key_confirmed_by_aws_health_is_contained_reviewed_cleaned_up_and_rotated(sandbox: Any) -> None:
    key = sandbox.scenario["key"]
    before = iam_state(sandbox)
    assert before["backdoor_login"] and before["backdoor_attached"]
    run = start_flagship_on_health_alert(sandbox)
    run.wait_for("gate_opened", timeout=90, gate="approve-containment")
    run.wait_for("gate_opened", timeout=90, gate="approve-secret-rotation")
    assert run.run_id is not None
    listed = {g["gate"] for g in open_gates(run.run_id)}
    assert {"approve-containment", "approve-secret-rotation"} <= listed, "each gate is asked without waiting for another"
    answer(run, "approve-secret-rotation")
    answer(run, "approve-containment")
    summary = run.result(timeout=120)
    assert summary.state == "Completed", summary.message
    got = states(summary)
    assert got["deactivate-now"] == "completed", "a confirmed exposure is contained at once, without a gate"
    assert got["rotate-key-now"] == "completed", "a workload's confirmed-exposed key is rotated at once, without a gate"
    not_this_path = {"deactivate-approved", "rotate-key", "rotate-key-removing-attacker-key"}
    assert all(got[s] == "skipped" for s in not_this_path)
    nothing_of_the_kind = {
        "approve-role-sessions", "approve-exposure", "approve-bucket-policies", "approve-logging", "approve-compute"
    }  # fmt: skip
    assert all(got[s] == "skipped" for s in nothing_of_the_kind), "no gate opens when nothing of its kind stands"
    assert all(got[s] == "completed" for s in got if s not in {*not_this_path, *nothing_of_the_kind}), got
    after = iam_state(sandbox)
    backdoor_key = sandbox.scenario["backdoor_key"]
    assert after["keys"][key] == "ci-deployer: Inactive"
    assert after["keys"][backdoor_key] == f"{trail.BACKDOOR_USER}: Inactive"
    assert after["backdoor_inline"] == ["StanchQuarantine"]
    assert after["backdoor_attached"] == [] and not after["backdoor_login"]
    stored = json.loads(
        sandbox.client("secretsmanager").get_secret_value(SecretId="workloads/ci-deployer/aws", VersionStage="AWSCURRENT")[
            "SecretString"
        ]
    )
    assert stored["AccessKeyId"] != key and after["keys"][stored["AccessKeyId"]] == "ci-deployer: Active"
    review = next(s for s in summary.steps if s.id == "review").outputs
    assert review["events_total"] == 12
    assert [e["user_name"] for e in review["contain"]["principals"] if e["kind"] == "user"] == [trail.BACKDOOR_USER]
    assert got["revoke-user-sessions"] == "completed"
    assert_federation_token_denied(sandbox, review)
    messages = [m["text"] for m in sandbox.slack.messages("incident-response")]
    assert len(messages) == 2
    assert "aws.health" in messages[0]
    report = messages[1]
    for words in (
        "set " + key,
        "12 event(s)",
        "203.0.113.5",
        "persistence",
        "report: Contained: the key and the sessions minted from it are cut off.",
        "Sessions: revoked sessions of user/ci-deployer issued before",
        "Changed: 1 user(s), 1 key(s), 1 console login(s)",
        "Already undone by the attacker (left alone): nothing.",
        "Secrets read, to rotate: prod/db/password.",
        "Rotation: ci-deployer: new key",
    ):
        assert words in report, (words, report)
    assert stored["SecretAccessKey"] not in json.dumps(summary.model_dump(mode="json"))


def test_an_anomaly_waits_for_a_person_and_rejections_leave_everything_in_place(sandbox: Any) -> None:
    key = sandbox.scenario["key"]
    finding = alert("guardduty-iam-anomalous-behavior.json")
    finding["detail"]["resource"]["accessKeyDetails"]["accessKeyId"] = key
    before = iam_state(sandbox)
    run = start_run(
        "aws-access-key-compromise",
        {"trail_source": f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/"},
        alert=finding,
        launched_by="erin",
    )
    answer(run, "deactivate-approved", "reject", who="bob")
    answer(run, "approve-containment", "reject", who="bob")
    answer(run, "approve-secret-rotation", "reject", who="bob")
    summary = run.result(timeout=120)
    opened = run.index_of("gate_opened", gate="deactivate-approved")
    reviewed = next(i for i, (k, d) in enumerate(run.history) if k == "step_finished" and d["record"].id == "review")
    assert 0 <= opened < reviewed, "the anomaly's gate opens while the review is still reading"
    assert summary.state == "Cancelled"
    got = states(summary)
    assert got["deactivate-now"] == "skipped" and got["deactivate-approved"] == "rejected"
    assert got["rotate-key"] == "blocked" and got["quarantine-created-users"] == "blocked"
    assert got["revoke-user-sessions"] == "blocked", "on an anomaly, the sessions wait behind the deactivation gate"
    assert got["report"] == "completed", "the report goes out whatever happened"
    assert iam_state(sandbox) == before
    report = sandbox.slack.messages("incident-response")[-1]["text"]
    assert "Key: not deactivated" in report and "Changed: 0 user(s)" in report
    assert "NOT CONTAINED" in report and "Contained" not in report, "never contained while a token may work"
    assert (
        "Sessions: NOT revoked (step blocked); still valid until they expire: " + sandbox.scenario["session_key"] in report
    )
    after_action = collect(summary.run_id)  # the after-action report agrees, and says why
    contain, key = after_action.measures.time_to_contain, after_action.measures.key_deactivated
    assert contain.seconds is None and contain.verdict == "not contained"
    assert "deactivate-approved rejected" in contain.note and "revoke-user-sessions blocked" in contain.note
    assert "report says NOT CONTAINED: temporary credentials minted from the key may still work" in contain.note
    assert key.seconds is None and key.note == "no step deactivated the key (deactivate-approved rejected)"


def test_role_sessions_are_revoked_and_their_activity_reviewed(sandbox: Any) -> None:
    role = sandbox.scenario["role"]
    run = start_run(
        "iam-role-session-revocation",
        {"role_name": role, "trail_source": f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/"},
        launched_by="erin",
    )
    answer(run, "revoke")
    summary = run.result(timeout=120)
    assert summary.state == "Completed", summary.message
    policies = sandbox.client("iam").list_role_policies(RoleName=role)["PolicyNames"]
    assert policies == ["AWSRevokeOlderSessions"]
    review = next(s for s in summary.steps if s.id == "review").outputs
    assert review["principals"] == [f"role/{role}"] and review["events_total"] == 4
    assert [f["event_name"] for f in review["findings"]["exfiltration"]] == ["PutBucketPolicy"]
    report = sandbox.slack.messages("incident-response")[-1]["text"]
    assert "revoked sessions of role/app-deployer" in report and "192.0.2.44" in report and "exfiltration" in report


def test_a_credential_used_after_containment_fails_the_watch_and_the_report_never_says_contained(sandbox: Any) -> None:
    import gzip
    from datetime import UTC, datetime, timedelta

    session = sandbox.scenario["session_key"]
    soon = datetime.now(UTC) + timedelta(minutes=5)  # after containment: an event CloudTrail delivers late
    used = trail.record(soon, "ListBuckets", "s3.amazonaws.com", session, "user/ci-deployer")
    body = gzip.compress(json.dumps({"Records": [used]}).encode())
    sandbox.client("s3").put_object(Bucket=sandbox.cloudtrail_bucket, Key=trail.object_key(soon, n=77), Body=body)
    run = start_flagship_on_health_alert(sandbox)
    answer(run, "approve-containment")
    answer(run, "approve-secret-rotation")
    summary = run.result(timeout=180)
    got = states(summary)
    assert got["revoke-user-sessions"] == "completed" and got["watch-key-use"] == "failed"
    watch = next(s for s in summary.steps if s.id == "watch-key-use")
    assert used["eventID"] in watch.reason and "still works" in watch.reason, watch.reason
    report = sandbox.slack.messages("incident-response")[-1]["text"]
    assert "NOT CONTAINED: a credential made from the key was used successfully after containment" in report
    assert "Contained" not in report, report
    after_action = collect(summary.run_id)  # the key was Inactive in seconds, but a credential made from it works
    contain, key = after_action.measures.time_to_contain, after_action.measures.key_deactivated
    assert contain.seconds is None and contain.verdict == "not contained"
    assert f"watch-key-use failed: {watch.reason[:40]}" in contain.note, contain.note
    assert key.seconds is not None and key.until.endswith("(deactivate-now) done")


def test_role_sessions_or_logins_left_standing_are_never_reported_contained(sandbox: Any) -> None:
    """The key assumed a role and the attacker set a console password (the sandbox's backdoor user): a person rejects
    revoking the role's sessions, and containing what the attacker created. The key and the user's sessions are
    cut off at once, yet the report says NOT CONTAINED, naming the role, the login and why each still works."""
    import gzip
    from datetime import UTC, datetime, timedelta

    role, key = sandbox.scenario["role"], sandbox.scenario["key"]
    earlier = datetime.now(UTC) - timedelta(minutes=30)
    assumed = trail.record(
        earlier,
        "AssumeRole",
        "sts.amazonaws.com",
        key,
        "user/ci-deployer",
        params={"roleArn": f"arn:aws:iam::{trail.ACCOUNT}:role/{role}", "roleSessionName": "ops"},
        response={"credentials": {"accessKeyId": "ASIAROLESESSION00001", "expiration": "x"}},
    )
    body = gzip.compress(json.dumps({"Records": [assumed]}).encode())
    sandbox.client("s3").put_object(Bucket=sandbox.cloudtrail_bucket, Key=trail.object_key(earlier, n=78), Body=body)
    run = start_flagship_on_health_alert(sandbox)
    answer(run, "approve-role-sessions", "reject", who="bob")
    answer(run, "approve-containment", "reject", who="bob")
    answer(run, "approve-secret-rotation")
    summary = run.result(timeout=120)
    got = states(summary)
    assert got["deactivate-now"] == "completed" and got["revoke-user-sessions"] == "completed"
    assert got["approve-role-sessions"] == "rejected" and got["revoke-role-sessions"] == "blocked"
    assert got["disable-created-logins"] == "blocked" and iam_state(sandbox)["backdoor_login"]
    report = sandbox.slack.messages("incident-response")[-1]["text"]
    assert "Contained" not in report, report
    verdict = report.split("report: ", 1)[1].split(". Key: ", 1)[0]
    assert verdict.startswith("NOT CONTAINED: "), verdict
    for why in (
        f"sessions of roles the key assumed may still work ({role}; approve-role-sessions rejected, "
        "revoke-role-sessions blocked)",
        f"console logins the attacker created may still work ({trail.BACKDOOR_USER}; disable-created-logins blocked)",
    ):
        assert why in verdict, (why, verdict)
    contain = collect(summary.run_id).measures.time_to_contain
    assert contain.seconds is None and contain.verdict == "not contained"
    assert "approve-role-sessions rejected; revoke-role-sessions blocked" in contain.note, contain.note
    assert f"report says NOT CONTAINED: {verdict.removeprefix('NOT CONTAINED: ')[:60]}" in contain.note
