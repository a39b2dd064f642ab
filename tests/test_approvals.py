"""Approvals with verified identity: signed Slack clicks and CLI tokens through the approval service."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import APPROVERS, BackgroundRun, playbook, start_run
from test_playbooks import start_flagship_on_health_alert

from flows.approvals.client import answer_gate
from flows.language.model import Playbook

pytestmark = pytest.mark.usefixtures("prefect_api")

CHANNEL = "stanch-incidents"


def gated(min_approvals: int = 1, extra: str = "") -> Playbook:
    return playbook(
        f"""\
apiVersion: stanch/v1
kind: Playbook
metadata: {{name: slack-gate, title: Slack gate, severity: high}}
inputs:
  access_key_id: {{type: string}}
approvers:
  oncall: [alice, bob, dana]
  leads: [carol]
steps:
  - id: deactivate
    phase: contain
    uses: aws.iam.deactivate_access_key
    approval: {{from: oncall, timeout: 60s, min_approvals: {min_approvals}{extra}}}
    with: {{access_key_id: "${{{{ inputs.access_key_id }}}}"}}
""",
        "slack-gate.yaml",
    )


def gate_message(sandbox: Any, gate: str) -> dict[str, Any]:
    for message in sandbox.slack.messages(CHANNEL):
        if message["text"].startswith(f"Approval needed before {gate}:") and not message.get("blocks"):
            return message  # already decided: the buttons are gone, the message stays
        for block in message.get("blocks") or []:
            for element in block.get("elements", []):
                if element.get("action_id") == "stanch_approve" and json.loads(element["value"])["gate"] == gate:
                    return message
    raise AssertionError(f"no gate message for {gate}")


def click(
    service: str,
    sandbox: Any,
    run: BackgroundRun,
    gate: str,
    user: str,
    action: str = "stanch_approve",
    reason: str = "",
    age: int = 0,
    secret: str | None = None,
    replay: tuple[bytes, dict[str, str]] | None = None,
) -> tuple[int, dict[str, Any], tuple[bytes, dict[str, str]]]:
    """A block_actions interaction as Slack sends it, signed as Slack signs it (or a replay of one)."""
    if replay is not None:
        return _post(service, *replay)
    message = gate_message(sandbox, gate)
    channel_id = next(c.id for c in sandbox.slack.channels.values() if c.name == CHANNEL)
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"},
        "api_app_id": "A0STANCH",
        "container": {"type": "message", "channel_id": channel_id, "message_ts": message["ts"], "is_ephemeral": False},
        "channel": {"id": channel_id, "name": CHANNEL},
        "message": {"ts": message["ts"], "text": message["text"]},
        "response_url": "https://hooks.slack.com/actions/T0SANDBOX/1/abc",
        "state": {"values": {"reason": {"stanch_reason": {"type": "plain_text_input", "value": reason}}}},
        "actions": [
            {
                "action_id": action,
                "block_id": "actions",
                "value": json.dumps({"run_id": run.run_id, "gate": gate}),
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()) - age)
    digest = hmac.new((secret or sandbox.slack_signing_secret).encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return _post(service, body, headers)


def _post(service: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], tuple[bytes, dict[str, str]]]:
    request = urllib.request.Request(f"{service}/slack/interactions", data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read()), (body, headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), (body, headers)


def still_waiting(run: BackgroundRun) -> None:
    run.wait_paused()
    assert run.thread is not None and run.thread.is_alive()


def test_refused_clicks_and_forged_decisions_change_nothing(sandbox: Any, approval_service: str) -> None:
    key = sandbox.keys["alice"][0]
    run = start_run(gated(), {"access_key_id": key}, launched_by="dana", sandbox=True)
    run.wait_for("gate_opened")
    still_waiting(run)
    # A forged Slack request (wrong signing secret) and a stale one (six minutes old): 401, nothing changed.
    status, _, _ = click(approval_service, sandbox, run, "deactivate", APPROVERS["alice"], secret="not-the-secret")
    assert status == 401
    status, _, _ = click(approval_service, sandbox, run, "deactivate", APPROVERS["alice"], age=360)
    assert status == 401
    # Someone Slack knows but Stanch does not.
    status, body, _ = click(approval_service, sandbox, run, "deactivate", "U0STRANGER")
    assert status == 200 and "is not a Stanch approver" in body["text"]
    # A known person outside the gate's group, and the launcher under separate_duties.
    status, body, _ = click(approval_service, sandbox, run, "deactivate", APPROVERS["mallory"])
    assert status == 200 and body["accepted"] is False and "not in approver group oncall" in body["message"]
    status, body, _ = click(approval_service, sandbox, run, "deactivate", APPROVERS["dana"])
    assert body["accepted"] is False and "as this run's launcher (unverified)" in body["message"]
    # Straight to Prefect's resume API: unsigned (as Prefect's UI form would send it), and with a made-up signature.
    unsigned = answer_gate(run.run_id, "deactivate", "bob", "approve", "typed into the UI", sign=False)
    assert unsigned.accepted is False and "not signed by the approval service" in unsigned.message
    forged = answer_gate(run.run_id, "deactivate", "bob", "approve", "forged", signature="v1:1:abcd:" + "0" * 64)
    assert forged.accepted is False and "malformed" in forged.message
    still_waiting(run)
    assert sandbox.key_states()[key] == "alice: Active"
    # The decisions were refused with reasons the run kept; the gate's message says so too.
    status, body, accepted = click(approval_service, sandbox, run, "deactivate", APPROVERS["bob"], reason="confirmed")
    assert body["accepted"] is True
    summary = run.result()
    assert summary.state == "Completed"
    # A replay of the accepted click is recognised and changes nothing.
    status, body, _ = click(approval_service, sandbox, run, "deactivate", APPROVERS["bob"], replay=accepted)
    assert status == 200 and "already handled" in body["text"]
    refused = [d.refusal for d in summary.decisions() if not d.accepted]
    assert len(refused) == 4, refused
    assert [d.channel for d in summary.decisions() if d.accepted] == ["slack"]
    text = sandbox.slack.messages(CHANNEL)
    [closed] = [m["text"] for m in text if m["text"].startswith("Approval needed before deactivate")]
    assert "approved by bob" in closed.lower()


def test_a_replayed_signed_decision_is_refused(sandbox: Any) -> None:
    from flows.approvals.signing import load_private, sign_decision

    private = load_private(sandbox.approval_keys[0])
    key = sandbox.keys["alice"][0]
    run = start_run(gated(min_approvals=2), {"access_key_id": key}, launched_by="erin", sandbox=True)
    run.wait_for("gate_opened")
    still_waiting(run)
    assert run.run_id is not None
    signature = sign_decision(private, run.run_id, "deactivate", "approve", "bob", "yes", "cli")
    first = answer_gate(run.run_id, "deactivate", "bob", "approve", "yes", signature=signature)
    assert first.accepted
    still_waiting(run)
    again = answer_gate(run.run_id, "deactivate", "dana", "approve", "yes", signature=signature)
    assert again.accepted is False and "does not match" in again.message, "bound to bob"
    replayed = answer_gate(run.run_id, "deactivate", "bob", "approve", "yes", signature=signature)
    assert replayed.accepted is False and ("replay" in replayed.message or "already approved" in replayed.message)
    old = sign_decision(private, run.run_id, "deactivate", "approve", "dana", "late", "cli", at=int(time.time()) - 400)
    expired = answer_gate(run.run_id, "deactivate", "dana", "approve", "late", signature=old)
    assert expired.accepted is False and "expires after 300 s" in expired.message
    assert answer_gate(run.run_id, "deactivate", "dana", "approve", "yes").accepted
    assert run.result().state == "Completed"


def test_gates_without_a_public_key_stop_the_run_before_anything(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.engine.launch import run_playbook

    monkeypatch.delenv("STANCH_APPROVAL_PUBLIC_KEY")
    summary = run_playbook(gated(), {"access_key_id": sandbox.keys["alice"][0]}, launched_by="erin")
    assert summary.state == "Failed" and "no approval public key is configured" in summary.message
    assert sandbox.key_states()[sandbox.keys["alice"][0]] == "alice: Active"


def test_unsigned_answers_only_in_the_sandbox_and_loudly(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STANCH_APPROVAL_PUBLIC_KEY")
    monkeypatch.setenv("STANCH_APPROVALS__ALLOW_UNSIGNED", "true")
    key = sandbox.keys["alice"][0]
    run = start_run(gated(), {"access_key_id": key}, launched_by="erin", sandbox=True)
    run.wait_for("gate_opened")
    still_waiting(run)
    assert answer_gate(run.run_id, "deactivate", "bob", "approve", "dev", sign=False).accepted
    assert run.result().state == "Completed"


def test_the_flagship_answered_from_slack_keeps_one_incident_thread(sandbox: Any, approval_service: str) -> None:
    key = sandbox.scenario["key"]
    # The two-keys rule: the user already holds a second key the review never saw the attacker make (a
    # workload's), so the exposed key is deactivated at once, nothing is deleted, and a person decides the rotation.
    iam = sandbox.client("iam")
    workload = iam.create_access_key(UserName="ci-deployer")["AccessKey"]["AccessKeyId"]
    run = start_flagship_on_health_alert(sandbox)
    for gate in ("approve-containment", "approve-secret-rotation", "rotate-key"):
        run.wait_for("gate_opened", gate=gate, timeout=90)
        still_waiting(run)
        if gate == "rotate-key":
            assert sandbox.key_states()[workload] == "ci-deployer: Active", "nothing is deleted before a person decides"
            asked = gate_message(sandbox, gate)["text"]
            assert f"approving DELETES the other key, {workload}" in asked, asked
        _, body, _ = click(approval_service, sandbox, run, gate, APPROVERS["alice"], reason=f"ok {gate}")
        assert body["accepted"], body
    summary = run.result(timeout=120)
    assert summary.state == "Completed", summary.message
    assert {s.id: s.state for s in summary.steps}["rotate-key-now"] == "skipped", "two keys: no rotation at once"
    assert workload not in sandbox.key_states(), "the person chose: the other key made room for the new one"
    messages = sandbox.slack.messages(CHANNEL)
    root = messages[0]
    assert root["thread_ts"] is None and f"Incident {summary.incident_id}" in root["text"]
    assert root["text"].endswith("ended Completed.")
    thread = [m["text"] for m in messages[1:]]
    assert all(m["thread_ts"] == root["ts"] for m in messages[1:])

    def at(words: str) -> int:
        found = [i for i, text in enumerate(thread) if words in text]
        assert len(found) == 1, (words, thread)
        return found[0]

    contained = [
        at(f"{step} changed")
        for step in (
            "quarantine-created-users (contain)",
            "deactivate-created-keys (contain)",
            "disable-created-logins (contain)",
            "detach-attached-policies (eradicate)",
        )
    ]
    # Contained at once; both gates asked together (the rotation gate does not wait behind containment's);
    # what the attacker made is contained after its gate, the key rotated after its own; summed up last.
    asked_containment, asked_rotation = (
        at("Approval needed before approve-containment"),
        at("Approval needed before rotate-key"),
    )
    assert at("deactivate-now (contain) changed: set " + key) < min(asked_containment, asked_rotation)
    assert asked_containment < min(contained)
    assert asked_rotation < at("rotate-key (rotate) changed: ci-deployer: new key")
    assert at("Completed: all steps finished") == len(thread) - 1
    decided = [t for t in thread if t.startswith("Approval needed before") and "approved by alice" in t.lower()]
    assert len(decided) == 3, thread
    assert "```" in thread[-1] and "rotate-key" in thread[-1]


def test_the_gate_message_shows_what_the_step_will_do(sandbox: Any, approval_service: str) -> None:
    key = sandbox.keys["alice"][0]
    run = start_run(gated(), {"access_key_id": key}, launched_by="erin", sandbox=True)
    run.wait_for("gate_opened")
    still_waiting(run)
    message = gate_message(sandbox, "deactivate")
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert texts[1] == f"aws.iam.deactivate_access_key: access_key_id={key}"
    context = next(b for b in message["blocks"] if b["type"] == "context")["elements"][0]["text"]
    assert context.startswith("1 approval(s) from oncall (alice, bob, dana) by ")
    assert any(b["type"] == "input" and b["element"]["action_id"] == "stanch_reason" for b in message["blocks"])
    assert answer_gate(run.run_id, "deactivate", "bob", "reject", "not now").accepted
    assert run.result().state == "Cancelled"


def test_stanch_serve_answers_healthz(tmp_path: Any) -> None:
    import socket
    import subprocess

    from conftest import STANCH, cli_env

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from flows.approvals.signing import generate

    env = cli_env(STANCH_APPROVAL_PRIVATE_KEY=generate()[0], STANCH_APPROVALS__STATE_PATH=str(tmp_path / "state.sqlite3"))
    proc = subprocess.Popen(
        [STANCH, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    assert json.loads(response.read()) == {"ok": True}
                    break
            except OSError:
                assert time.monotonic() < deadline, "stanch serve did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
