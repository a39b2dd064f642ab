"""Alerts start runs by themselves: triggers in the language, routing, enrichment, the signed endpoints, dedupe."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import PLAYBOOKS, playbook

from flows.intake.sources import sign_generic, sign_github

REFERENCE = Path(__file__).parent / "fixtures" / "alerts" / "intake"  # the real-format samples, as published
TOKEN = "eventbridge-shared-token-for-tests"
GENERIC = "generic-hmac-key-for-tests"
HOOK = "github-webhook-secret-for-tests"
PLANTED = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # a secret access key planted in alert payloads


def flagship_with_triggers(quick_review: bool = False) -> str:
    """The shipped flagship, its triggers included; `quick_review` points its review past the sandbox's trail (moto
    has no LookupEvents, and these tests are about the intake, not the review)."""
    from flows.sandbox import flagship_without_review

    return flagship_without_review() if quick_review else (PLAYBOOKS / "aws-access-key-compromise.yaml").read_text()


def reference(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REFERENCE / name).read_text())
    return data


def health_alert(key_id: str, event_id: str) -> dict[str, Any]:
    alert = reference("aws-health-risk-credentials-exposed.json")
    alert["id"] = event_id
    alert["detail"]["affectedEntities"][0]["entityValue"] = key_id
    return alert


# ---------------------------------------------------------------------- the language


def test_triggers_are_checked_like_every_other_part_of_a_playbook() -> None:
    from flows.language.validate import check_text

    bad = flagship_with_triggers().replace(
        "      confirmed: true\n",
        "      confirmed: ${{ inputs.confirmed }}\n      owner: ${{ alert.nope }}\n    match: {colour: red}\n",
        1,
    )
    messages = [str(p) for p in check_text(bad, "t.yaml").problems]
    assert any("a trigger can name only the alert's facts" in m and "triggers[0].inputs.confirmed" in m for m in messages)
    assert any("'owner' is not a declared input" in m for m in messages), messages
    assert any("name one alert fact" in m and "triggers[0].inputs.owner" in m for m in messages)
    assert any("'colour' is not an alert fact" in m for m in messages)
    assert check_text(flagship_with_triggers(), "t.yaml").ok


def test_the_shipped_schema_describes_triggers() -> None:
    schema = json.loads((PLAYBOOKS / "schema.json").read_text())
    assert "triggers" in schema["properties"]
    assert {"source", "kind", "match", "when", "inputs"} <= set(schema["$defs"]["Trigger"]["properties"])


def test_routing_maps_each_reference_alert_to_the_flagship_inputs() -> None:
    from flows.alerts import normalize
    from flows.intake.routing import first_trigger, trigger_inputs

    pb = playbook(flagship_with_triggers())
    health = normalize(health_alert("AKIAIOSFODNN7EXAMPLE", "e1"))
    assert first_trigger(pb, health) == 0
    assert trigger_inputs(pb, 0, health) == {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "confirmed": True}
    guardduty = normalize(reference("guardduty-iam-anomalous-behavior.json"))
    assert first_trigger(pb, guardduty) == 1
    assert trigger_inputs(pb, 1, guardduty) == {
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "user_name": "ci-deployer",
        "confirmed": False,
    }
    github = normalize(reference("github-secret-scanning-alert-reopened.json"))  # an adafruit key: not ours
    assert first_trigger(pb, github) is None


def test_the_vendor_playbook_starts_on_a_vendor_breach_notice() -> None:
    from flows.alerts import normalize
    from flows.intake.routing import first_trigger, trigger_inputs
    from flows.language.validate import load_playbook

    pb = load_playbook(PLAYBOOKS / "vendor-breach-key-rotation.yaml")
    facts = normalize({"id": "n1", "kind": "vendor_breach", "vendor": "acme-ai"})
    assert first_trigger(pb, facts) == 0
    assert trigger_inputs(pb, 0, facts)["vendor"] == "acme-ai"
    assert first_trigger(pb, normalize({"id": "n2", "kind": "vendor_breach"})) is None


# ---------------------------------------------------------------------- the service


@dataclass
class Local:
    """Local stand-ins the intake talks to: GitHub's API and SNS (its signing certificate, its SubscribeURL)."""

    github: Any
    sns_key: Any
    sns_url: str
    visits: list[str]


@contextmanager
def service(env: dict[str, str], sandbox_session: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from flows.approvals.service import create_app
    from flows.config import load_settings

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        sandbox_session.activate()
        try:
            app = create_app(load_settings())
        finally:
            sandbox_session.deactivate()
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from flows.sandbox.github_api import GitHubStandIn
    from flows.sandbox.loopback import LoopbackServer, reply

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-east-1.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    visits: list[str] = []

    def handle(request: Any) -> None:
        visits.append(request.path)
        if request.path == "/SimpleNotificationService-test.pem":
            request.send_response(200)
            request.send_header("Content-Length", str(len(pem)))
            request.end_headers()
            request.wfile.write(pem)
        else:
            reply(request, 200, {"ConfirmSubscriptionResponse": {"ConfirmSubscriptionResult": {}}})

    sns = LoopbackServer(handle, "sns-stand-in").start()
    github = GitHubStandIn().start()
    yield Local(github, key, sns.url, visits)
    github.stop()
    sns.stop()


@pytest.fixture(scope="module")
def intake_app(
    sandbox_session: Any, stanch_config: Path, prefect_api: str, local: Local, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """`stanch serve`'s app with every alert endpoint configured and the flagship triggered."""
    folder = tmp_path_factory.mktemp("intake-playbooks")
    (folder / "aws-access-key-compromise.yaml").write_text(flagship_with_triggers(quick_review=True))
    env = {
        "STANCH_APPROVALS__STATE_PATH": str(tmp_path_factory.mktemp("intake") / "service.sqlite3"),
        "STANCH_PLAYBOOK_DIRS": json.dumps([str(folder)]),
        "STANCH_TEST_EVENTBRIDGE_TOKEN": TOKEN,
        "STANCH_TEST_GENERIC_SECRET": GENERIC,
        "STANCH_TEST_GITHUB_SECRET": HOOK,
        "STANCH_TEST_GITHUB_TOKEN": local.github.token,
        "STANCH_INTAKE__EVENTBRIDGE_TOKEN": '{"env": "STANCH_TEST_EVENTBRIDGE_TOKEN"}',
        "STANCH_INTAKE__GENERIC_SECRET": '{"env": "STANCH_TEST_GENERIC_SECRET"}',
        "STANCH_INTAKE__GITHUB_SECRET": '{"env": "STANCH_TEST_GITHUB_SECRET"}',
        "STANCH_INTAKE__GITHUB_TOKEN": '{"env": "STANCH_TEST_GITHUB_TOKEN"}',
        "STANCH_INTAKE__GITHUB_API_URL": local.github.base_url,
        "STANCH_INTAKE__SNS_ENABLED": "true",
        "STANCH_INTAKE__SNS_TOPIC_ARNS": '["arn:aws:sns:us-east-1:123456789012:stanch-alerts"]',
        "STANCH_INTAKE__SNS_CERT_HOST": r"127\.0\.0\.1",
        "STANCH_INTAKE__SNS_CERT_HTTPS": "false",
        "STANCH_INTAKE__SANDBOX": "true",
    }
    with service(env, sandbox_session) as client:
        yield client


@pytest.fixture(scope="module")
def bare_app(
    sandbox_session: Any, stanch_config: Path, prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The service with no intake secret configured: every alert endpoint refuses everything."""
    env = {
        "STANCH_APPROVALS__STATE_PATH": str(tmp_path_factory.mktemp("bare") / "service.sqlite3"),
        "STANCH_INTAKE__EVENTBRIDGE_TOKEN": '{"env": "STANCH_TEST_UNSET_1"}',
        "STANCH_INTAKE__GENERIC_SECRET": '{"env": "STANCH_TEST_UNSET_2"}',
        "STANCH_INTAKE__GITHUB_SECRET": '{"env": "STANCH_TEST_UNSET_3"}',
        "STANCH_INTAKE__SNS_ENABLED": "false",
    }
    with service(env, sandbox_session) as client:
        yield client


def post_eventbridge(client: Any, alert: dict[str, Any], token: str = TOKEN) -> Any:
    return client.post("/alerts/eventbridge", content=json.dumps(alert), headers={"X-Stanch-Token": token})


def post_generic(client: Any, alert: dict[str, Any] | bytes, secret: str = GENERIC, **sign: Any) -> Any:
    body = alert if isinstance(alert, bytes) else json.dumps(alert).encode()
    return client.post("/alerts/generic", content=body, headers=sign_generic(secret, body, **sign))


def wait_until(check: Any, timeout: float = 30, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def final_run(run_id: str, timeout: float = 60) -> Any:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    def ended() -> Any:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
        return run if run.state is not None and run.state.is_final() else None

    return wait_until(ended, timeout, f"run {run_id} ending")


def test_an_aws_health_alert_alone_deactivates_the_key(sandbox: Any, intake_app: Any) -> None:
    key = sandbox.keys["ci-deployer"][0]
    answer = post_eventbridge(intake_app, health_alert(key, "health-e2e-1"))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] is True and body["run_id"], body
    wait_until(lambda: sandbox.key_states()[key] == "ci-deployer: Inactive", what="the key becoming Inactive")
    run = final_run(body["run_id"])
    # the user came from GetAccessKeyLastUsed; the run is recorded on the server as an alert run
    assert run.parameters["inputs"]["user_name"] == "ci-deployer"
    assert run.parameters["alert"]["user_name"] == "ci-deployer"
    assert "trigger:alert" in run.tags and "launcher:verified" in run.tags, run.tags
    assert run.state.is_completed(), run.state.message

    replay = post_eventbridge(intake_app, health_alert(key, "health-e2e-1"))
    assert replay.status_code == 409 and "already received" in replay.json()["reason"]
    assert replay.json()["run_id"] == body["run_id"]


def test_a_second_alert_for_a_key_with_an_open_run_joins_it(sandbox: Any, intake_app: Any) -> None:
    key = sandbox.keys["data-pipeline"][0]
    first = post_eventbridge(intake_app, health_alert(key, "health-join-1"))
    second = post_eventbridge(intake_app, health_alert(key, "health-join-2"))
    assert first.status_code == 202, first.text
    assert second.status_code == 200, second.text
    assert second.json()["run_id"] == first.json()["run_id"]
    assert "joins the open run" in second.json()["reason"]
    final_run(first.json()["run_id"])
    assert sandbox.key_states()[key] == "data-pipeline: Inactive"


def test_a_signed_generic_alert_starts_the_run_and_its_secret_goes_nowhere(
    sandbox: Any, intake_app: Any, caplog: Any
) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    key = sandbox.keys["alice"][0]
    alert = {
        "id": "siem-rule-7-0001",
        "kind": "aws_key_exposed",
        "confirmed": True,
        "access_key_id": key,
        "user_name": "alice",
        "detail": {"secret": PLANTED, "note": f"found with aws_secret_access_key={PLANTED}"},
    }
    answer = post_generic(intake_app, alert)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    run = final_run(run_id)
    assert sandbox.key_states()[key] == "alice: Inactive"
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])))
    stored = json.dumps(run.parameters) + "".join(log.message for log in logs)
    slack = json.dumps([sandbox.slack.messages(c) for c in ("#stanch-incidents", "#incident-response")], default=str)
    assert PLANTED not in stored and PLANTED not in caplog.text and PLANTED not in slack
    assert run.parameters["alert"]["raw"]["detail"]["secret"] != PLANTED


def test_an_alert_no_playbook_takes_is_recorded_and_answered_202(sandbox: Any, intake_app: Any) -> None:
    answer = post_generic(intake_app, {"id": "unrouted-1", "kind": "disk_full", "host": "db-1"})
    assert answer.status_code == 202
    assert answer.json()["accepted"] is False and "no playbook's trigger matches" in answer.json()["reason"]


BAD_EVENTBRIDGE: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("no token", {}, b"{}", 401, "X-Stanch-Token is missing"),
    ("wrong token", {"X-Stanch-Token": "nope"}, b"{}", 401, "not the configured token"),
    ("not JSON", {"X-Stanch-Token": TOKEN}, b"{not json", 400, "not JSON"),
    ("a list", {"X-Stanch-Token": TOKEN}, b"[1]", 400, "a JSON object"),
    ("no event id", {"X-Stanch-Token": TOKEN}, b'{"source": "aws.health"}', 400, "the EventBridge event's id"),
    ("too big", {"X-Stanch-Token": TOKEN}, b"{" + b" " * (1 << 20) + b"}", 413, "size limit"),
    (
        "a GitHub alert",
        {"X-Stanch-Token": TOKEN},
        json.dumps({"id": "x1", **reference("github-secret-scanning-alert-reopened.json")}).encode(),
        422,
        "takes aws.health, aws.guardduty alerts, not github.secret_scanning",
    ),
    (
        "a malformed Health event",
        {"X-Stanch-Token": TOKEN},
        json.dumps({"id": "x2", "source": "aws.health", "detail": {"affectedEntities": 5}}).encode(),
        422,
        "detail.affectedEntities: should be a list",
    ),
]


@pytest.mark.parametrize(
    ("case", "headers", "body", "status", "reason"), BAD_EVENTBRIDGE, ids=[c[0] for c in BAD_EVENTBRIDGE]
)
def test_bad_eventbridge_requests_get_a_4xx_and_start_nothing(
    intake_app: Any, case: str, headers: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    answer = intake_app.post("/alerts/eventbridge", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["accepted"] is False and reason in answer.json()["reason"]


def test_bad_generic_requests_get_a_4xx(sandbox: Any, intake_app: Any) -> None:
    alert = {"id": "g-bad", "kind": "aws_key_exposed", "access_key_id": sandbox.keys["alice"][0], "user_name": "alice"}
    stale = post_generic(intake_app, alert, timestamp=int(time.time()) - 600)
    assert stale.status_code == 401 and "five minutes" in stale.json()["reason"]
    forged = post_generic(intake_app, alert, secret="not-the-key")
    assert forged.status_code == 401 and "does not match" in forged.json()["reason"]
    unsigned = intake_app.post("/alerts/generic", content=json.dumps(alert))
    assert unsigned.status_code == 401 and "are required" in unsigned.json()["reason"]
    assert sandbox.key_states()[alert["access_key_id"]] == "alice: Active"


@pytest.mark.parametrize("endpoint", ["eventbridge", "generic", "github", "sns"])
def test_an_endpoint_without_its_secret_refuses_everything(bare_app: Any, endpoint: str, caplog: Any) -> None:
    body = json.dumps(health_alert("AKIAIOSFODNN7EXAMPLE", "unconfigured-1")).encode()
    headers = {
        "X-Stanch-Token": "",
        **sign_generic("anything", body),
        "X-Hub-Signature-256": sign_github("anything", body),
        "X-GitHub-Event": "secret_scanning_alert",
    }
    answer = bare_app.post(f"/alerts/{endpoint}", content=body, headers=headers)
    assert answer.status_code == 403, answer.text
    assert "is not set" in answer.json()["reason"] or "is false" in answer.json()["reason"]
    assert answer.json()["accepted"] is False
    assert answer.json()["reason"] in caplog.text


# ---------------------------------------------------------------------- GitHub


def github_hook(number: int) -> dict[str, Any]:
    """The reference webhook, about a leaked AWS key id this time."""
    hook = reference("github-secret-scanning-alert-reopened.json")
    hook["alert"].update(number=number, secret_type="aws_access_key_id")
    return hook


def post_github(
    client: Any, hook: dict[str, Any], delivery: str, secret: str = HOOK, event: str = "secret_scanning_alert"
) -> Any:
    body = json.dumps(hook).encode()
    headers = {"X-Hub-Signature-256": sign_github(secret, body), "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    return client.post("/alerts/github", content=body, headers=headers)


def test_a_github_alert_for_an_aws_key_deactivates_it(sandbox: Any, intake_app: Any, local: Local) -> None:
    key = sandbox.keys["ci-deployer"][0]
    # GitHub's alert carries the leaked text; only the key id may come out of it
    local.github.add_alert("Codertocat/Hello-World", 4242, "aws_access_key_id", f"{key}:{PLANTED}")
    answer = post_github(intake_app, github_hook(4242), "delivery-gh-1")
    assert answer.status_code == 202, answer.text
    run = final_run(answer.json()["run_id"])
    assert sandbox.key_states()[key] == "ci-deployer: Inactive"
    assert run.parameters["inputs"] == {**run.parameters["inputs"], "access_key_id": key, "user_name": "ci-deployer"}
    assert PLANTED not in json.dumps(run.parameters)
    assert ("/repos/Codertocat/Hello-World/secret-scanning/alerts/4242", True) in local.github.calls
    again = post_github(intake_app, github_hook(4242), "delivery-gh-1")
    assert again.status_code == 409


def test_github_requests_that_are_not_signed_alerts_start_nothing(intake_app: Any) -> None:
    forged = post_github(intake_app, github_hook(1), "delivery-gh-2", secret="guess")
    assert forged.status_code == 401 and "does not match" in forged.json()["reason"]
    ping = post_github(intake_app, {"zen": "Keep it logically awesome."}, "delivery-gh-3", event="ping")
    assert ping.status_code == 200 and "pong" in ping.json()["reason"]
    other = post_github(intake_app, github_hook(1), "delivery-gh-4", event="push")
    assert other.status_code == 400 and "secret_scanning_alert only" in other.json()["reason"]
    unrouted = post_github(intake_app, reference("github-secret-scanning-alert-reopened.json"), "delivery-gh-5")
    assert unrouted.status_code == 202 and unrouted.json()["accepted"] is False


# ---------------------------------------------------------------------- SNS


def sns_message(local: Local, kind: str, message: str, message_id: str, version: str = "2", **extra: Any) -> dict[str, Any]:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from flows.intake.sources import sns_string_to_sign

    body = {
        "Type": kind,
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:stanch-alerts",
        "Message": message,
        "Timestamp": "2026-11-27T12:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": f"{local.sns_url}/SimpleNotificationService-test.pem",
        **extra,
    }
    digest = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303 - SNS's version 1 is SHA1
    signature = local.sns_key.sign(sns_string_to_sign(body), padding.PKCS1v15(), digest)
    body["Signature"] = base64.b64encode(signature).decode()
    return body


def test_an_sns_subscription_is_confirmed_once_its_signature_verifies(intake_app: Any, local: Local) -> None:
    confirm = sns_message(
        local,
        "SubscriptionConfirmation",
        "You have chosen to subscribe to the topic.",
        "sub-1",
        version="1",
        Token="2336412f37",
        SubscribeURL=f"{local.sns_url}/?Action=ConfirmSubscription&Token=2336412f37",
    )
    answer = intake_app.post("/alerts/sns", content=json.dumps(confirm))
    assert answer.status_code == 200 and "confirmed" in answer.json()["reason"], answer.text
    assert "/?Action=ConfirmSubscription&Token=2336412f37" in local.visits


def test_a_guardduty_finding_through_sns_waits_for_a_signed_decision(sandbox: Any, intake_app: Any, local: Local) -> None:
    from conftest import approver_token

    from flows.approvals.client import open_gates

    key = sandbox.keys["data-pipeline"][1]
    finding = reference("guardduty-iam-anomalous-behavior.json")
    finding["detail"]["resource"]["accessKeyDetails"].update(accessKeyId=key, userName="data-pipeline")
    answer = intake_app.post(
        "/alerts/sns", content=json.dumps(sns_message(local, "Notification", json.dumps(finding), "gd-1"))
    )
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    wait_until(lambda: "deactivate-approved" in [g["gate"] for g in open_gates(run_id)], what="the gate opening")
    assert sandbox.key_states()[key] == "data-pipeline: Active"  # an anomaly waits for a person

    # The same finding again through EventBridge (another delivery) joins the open run, in its incident thread.
    from uuid import UUID

    from flows.engine.journal import THREAD_KEY, read_json_input

    again = dict(finding, id="gd-1-again-through-eventbridge")
    joined = post_eventbridge(intake_app, again)
    assert joined.status_code == 200 and joined.json()["run_id"] == run_id, joined.text
    root = read_json_input(UUID(run_id), THREAD_KEY)
    assert root and root["ts"], "the run recorded its incident thread's root"
    replies = wait_until(
        lambda: [
            m
            for m in sandbox.slack.messages(root["channel"])
            if m.get("thread_ts") == root["ts"] and "another alert for this key joined the run" in m["text"]
        ],
        what="the joined alert in the run's thread",
    )
    assert "aws.guardduty" in replies[0]["text"], replies
    decision = {
        "run_id": run_id,
        "gate": "deactivate-approved",
        "approver": "alice",
        "decision": "approve",
        "reason": "mine",
    }
    approved = intake_app.post("/approve", json=decision, headers={"Authorization": f"Bearer {approver_token('alice')}"})
    assert approved.json()["accepted"] is True, approved.text
    wait_until(lambda: sandbox.key_states()[key] == "data-pipeline: Inactive", what="the key becoming Inactive")
    final_run(run_id)


def test_forged_or_misplaced_sns_messages_are_refused(intake_app: Any, local: Local) -> None:
    good = sns_message(local, "Notification", json.dumps(health_alert("AKIAIOSFODNN7EXAMPLE", "x")), "sns-bad-1")
    tampered = {**good, "Message": good["Message"].replace("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLF")}
    answer = intake_app.post("/alerts/sns", content=json.dumps(tampered))
    assert answer.status_code == 401 and "does not verify" in answer.json()["reason"]
    elsewhere = {**good, "SigningCertURL": "http://sns.attacker.example/cert.pem"}
    answer = intake_app.post("/alerts/sns", content=json.dumps(elsewhere))
    assert answer.status_code == 401 and "SNS host" in answer.json()["reason"]
    answer = intake_app.post("/alerts/sns", content=json.dumps({**good, "Type": "Surprise"}))
    assert answer.status_code == 400
    # a message validly signed by SNS, but for another account's topic: any account can publish to its own
    theirs = sns_message(
        local, "Notification", good["Message"], "sns-bad-2", TopicArn="arn:aws:sns:us-east-1:999988887777:theirs"
    )
    answer = intake_app.post("/alerts/sns", content=json.dumps(theirs))
    assert answer.status_code == 403 and "sns_topic_arns" in answer.json()["reason"]
