"""The approval service never answers 5xx to what a client sends, resolves its secrets at start, and keeps its
replay state across a restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import STANCH, cli_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from flows.approvals import service
from flows.approvals.signing import generate
from flows.config import ConfigError, SecretRef, Settings

SECRET = "fuzz-slack-signing-secret"
ALICE = "U0ALICE"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TEST_SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("TEST_APPROVAL_KEY", generate()[0])
    return Settings(
        approvers={"alice": {"slack_user_id": ALICE}},
        slack={"signing_secret": {"env": "TEST_SLACK_SIGNING_SECRET"}, "token": None},
        approvals={"private_key": {"env": "TEST_APPROVAL_KEY"}, "state_path": str(tmp_path / "state" / "service.sqlite3")},
    )


def signed(body: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def form(payload: Any) -> bytes:
    return urlencode({"payload": payload if isinstance(payload, str) else json.dumps(payload)}).encode()


def click_payload(user: Any = None, run_id: str = "not-a-run", **extra: Any) -> dict[str, Any]:
    value = json.dumps({"run_id": run_id, "gate": "deactivate"})
    return {
        "type": "block_actions",
        "user": {"id": ALICE} if user is None else user,
        "actions": [{"action_id": "stanch_approve", "value": value}],
        **extra,
    }


def post(client: TestClient, body: bytes, headers: dict[str, Any]) -> Any:
    return client.post("/slack/interactions", content=body, headers=headers)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, form(click_payload()), 401),  # no Slack headers
        ({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=" + "0" * 64}, b"x", 401),
        (
            {"X-Slack-Request-Timestamp": "\u0661\u0667" + "\u0660" * 8, "X-Slack-Signature": "v0=" + "0" * 64},
            b"x",
            401,
        ),  # non-ASCII digits
        ({"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=é" + "0" * 63}, b"x", 401),
        (signed(b"\xff\xfe payload=\xe9"), b"\xff\xfe payload=\xe9", 400),  # a signed body that is not UTF-8
        (signed(b"x" * (service.MAX_BODY_BYTES + 1)), b"x" * (service.MAX_BODY_BYTES + 1), 413),
    ],
)
def test_malformed_slack_requests_get_a_4xx(config: Settings, headers: dict[str, str], body: bytes, status: int) -> None:
    client = TestClient(service.create_app(config), raise_server_exceptions=False)
    response = post(client, body, {k: v.encode() for k, v in headers.items()})  # type: ignore[misc]
    assert response.status_code == status, response.text
    assert response.json()["ok"] is False


@pytest.mark.parametrize(
    "payload",
    [
        click_payload(user="U0ALICE"),
        click_payload(user=["U0ALICE"]),
        click_payload(state="not an object"),
        click_payload(state={"values": ["x"]}),
        click_payload(message="not an object", container=[1]),
        {"actions": [{"action_id": "stanch_approve", "value": "[1, 2]"}], "user": {"id": ALICE}},
        {"actions": "nope"},
        [1, 2, 3],
        "[" * 5000,
    ],
)
def test_signed_payloads_of_the_wrong_shape_get_a_message(config: Settings, payload: Any) -> None:
    client = TestClient(service.create_app(config), raise_server_exceptions=False)
    body = form(payload)
    response = post(client, body, signed(body))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is False and (answer.get("text") or answer.get("message")), answer


def test_a_replayed_click_is_refused_after_a_restart(config: Settings) -> None:
    body = form(click_payload(user={"id": "U0STRANGER"}))
    headers = signed(body)
    first = post(TestClient(service.create_app(config)), body, headers)
    assert first.status_code == 200 and "is not a Stanch approver" in first.json()["text"]
    restarted = TestClient(service.create_app(config))  # a new process would read the same file
    again = post(restarted, body, headers)
    assert again.status_code == 200 and again.json()["text"] == "this click was already handled"
    assert Path(config.approvals.state_path).exists()


def test_without_its_private_key_the_service_does_not_start(config: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_APPROVAL_KEY")
    with pytest.raises(
        ConfigError, match=re.escape("approvals.private_key: environment variable TEST_APPROVAL_KEY is not set")
    ):
        service.create_app(config)


def test_a_state_path_that_cannot_be_a_database_stops_the_start(config: Settings, tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file, not a directory")
    config.approvals.state_path = str(tmp_path / "blocked" / "service.sqlite3")
    with pytest.raises(ConfigError, match=re.escape("approvals.state_path: cannot open")):
        service.create_app(config)


def test_a_secrets_manager_token_without_aws_access_fails_at_start(
    config: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stanch/slack-token-AbCdEf"
    config.slack.token = SecretRef(secretsmanager_arn=arn)
    with pytest.raises(ConfigError) as info:
        service.create_app(config)
    assert str(info.value).startswith(f"slack.token: cannot read secret {arn}: NoCredentialsError")


def test_a_secrets_manager_token_is_read_at_start_and_the_message_updated_after_the_answer(
    sandbox: Any, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.config import load_settings
    from integrations.context import slack_client

    arn = sandbox.client("secretsmanager").create_secret(Name="stanch/slack-token", SecretString=sandbox.slack.token)["ARN"]
    monkeypatch.setenv("STANCH_SLACK__TOKEN", json.dumps({"secretsmanager_arn": arn}))
    monkeypatch.setenv("STANCH_APPROVALS__STATE_PATH", str(tmp_path / "service.sqlite3"))
    monkeypatch.setattr(service, "ACK_SECONDS", 0.0)  # the run's verdict arrives after Slack's answer
    client = TestClient(service.create_app(load_settings()))
    slack = slack_client(sandbox.slack.token, sandbox.slack.base_url)
    posted = slack.chat_postMessage(channel="#stanch-incidents", text="Approval needed before deactivate: ok?")
    payload = click_payload(
        run_id=str(uuid.uuid4()),
        container={"channel_id": posted["channel"], "message_ts": posted["ts"]},
        message={"text": "Approval needed before deactivate: ok?"},
    )
    body = form(payload)
    response = post(client, body, signed(body, sandbox.slack_signing_secret))
    assert response.status_code == 200 and response.json()["accepted"] is None, response.json()
    [message] = [m for m in sandbox.slack.messages("stanch-incidents") if m["ts"] == posted["ts"]]
    assert "alice's approve at" in message["text"] and "no flow run" in message["text"]


def test_a_failed_message_update_leaves_the_answer_and_is_logged(
    sandbox: Any, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.config import load_settings

    monkeypatch.setenv("STANCH_SANDBOX_SLACK_TOKEN", "xoxb-revoked-since-start")
    monkeypatch.setenv("STANCH_APPROVALS__STATE_PATH", str(tmp_path / "service.sqlite3"))
    client = TestClient(service.create_app(load_settings()))
    body = form(click_payload(run_id=str(uuid.uuid4()), container={"channel_id": "C1", "message_ts": "1.2"}))
    with caplog.at_level(logging.WARNING, logger="stanch.approvals"):
        response = post(client, body, signed(body, sandbox.slack_signing_secret))
    assert response.status_code == 200 and "no flow run" in response.json()["message"]
    assert any("could not update the Slack message for alice's approve" in r.getMessage() for r in caplog.records)
    assert not any("xoxb-revoked-since-start" in r.getMessage() for r in caplog.records)


def test_stanch_serve_without_a_key_says_so(tmp_path: Path) -> None:
    env = cli_env(STANCH_APPROVAL_PRIVATE_KEY="", STANCH_APPROVALS__STATE_PATH=str(tmp_path / "s.sqlite3"))
    done = subprocess.run([STANCH, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (
        done.returncode == 1
        and "approvals.private_key: environment variable STANCH_APPROVAL_PRIVATE_KEY is not set" in done.stderr
    )
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- fuzzing

_headers = st.dictionaries(
    st.sampled_from(["X-Slack-Request-Timestamp", "X-Slack-Signature", "Content-Type", "Authorization"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80),
    max_size=4,
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
_payloads = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "user": st.one_of(_json, st.just({"id": ALICE})),
            "state": _json,
            "message": _json,
            "container": _json,
            "actions": st.one_of(
                _json,
                st.lists(
                    st.fixed_dictionaries(
                        {"action_id": st.sampled_from(["stanch_approve", "stanch_reject", "x"])},
                        optional={"value": st.one_of(st.text(max_size=20), _json.map(json.dumps))},
                    ),
                    max_size=2,
                ),
            ),
        },
    ),
)
_fuzz = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_fuzz
@given(headers=_headers, body=st.binary(max_size=200))
def test_fuzzed_unsigned_requests_never_get_a_5xx(config: Settings, headers: dict[str, str], body: bytes) -> None:
    client = TestClient(service.create_app(config), raise_server_exceptions=False)
    for path in ("/slack/interactions", "/approve"):
        response = client.post(path, content=body, headers={k: v.encode("latin-1") for k, v in headers.items()})
        assert response.status_code < 500, (path, response.text)
        assert isinstance(response.json(), dict)


@_fuzz
@given(payload=_payloads)
def test_fuzzed_signed_payloads_never_get_a_5xx(config: Settings, payload: Any) -> None:
    client = TestClient(service.create_app(config), raise_server_exceptions=False)
    body = form(payload)
    response = post(client, body, signed(body))
    assert response.status_code == 200, response.text
    assert isinstance(response.json(), dict)
    approve = client.post("/approve", content=json.dumps(payload), headers={"Authorization": "Bearer x"})
    assert approve.status_code in (400, 401), approve.text
