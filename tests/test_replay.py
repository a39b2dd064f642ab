"""Replays of real runs: a sandbox run of the flagship recorded into an incident bundle, then replayed.

The recording is checked where it lands (calls per step, no secret value of the sandbox anywhere in the file); the
replay is checked where nothing may land: moto's own request log, the Slack and vendor stand-ins' call logs and a
listener that every replayed endpoint points at all count zero. A playbook edited after the incident replays with
its divergence named by step and call.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, PLAYBOOKS, STANCH, cli_env
from test_playbooks import flagship_inputs

from flows.tabletop.replay import BundleError, Redactor, read_bundle, recording, replay
from integrations.masking import MASK


class CountingListener:
    """A loopback port that accepts connections and counts them (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
        self.sock.close()


def secret_values(sandbox: Any) -> list[str]:
    """Every secret value the sandbox holds or handed out: secret strings (each member of a JSON one but its ids),
    the Slack token and signing secret, the vendor admin token, the approval service's private key."""
    sm = sandbox.client("secretsmanager")
    values = [sandbox.slack.token, sandbox.slack_signing_secret, sandbox.vendor.admin_token, sandbox.approval_keys[0]]
    for page in sm.get_paginator("list_secrets").paginate():
        for entry in page["SecretList"]:
            versions = sm.describe_secret(SecretId=entry["ARN"])["VersionIdsToStages"]
            for version in versions:
                text = sm.get_secret_value(SecretId=entry["ARN"], VersionId=version)["SecretString"]
                try:
                    inner = json.loads(text)
                except ValueError:
                    inner = None
                if isinstance(inner, dict):
                    values += [v for k, v in inner.items() if isinstance(v, str) and not k.lower().endswith("id")]
                else:
                    values.append(text)
    return [v for v in values if v and len(v) >= 6]


def run_flagship_approving_every_gate(sandbox: Any) -> Any:
    """The flagship on an AWS Health alert for the sandbox's key, with rotation; dana approves each gate it opens,
    through the signed-approval path (as `stanch demo`'s approver does)."""
    from flows.approvals.client import answer_gate, open_gates
    from flows.engine.launch import run_playbook

    health = json.loads((FIXTURES / "alerts" / "aws-health-risk-credentials-exposed.json").read_text())
    health["detail"]["affectedEntities"][0]["entityValue"] = sandbox.scenario["key"]
    run_id: list[str] = []
    answers: list[threading.Thread] = []

    def approve(gate: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(g["gate"] == gate for g in open_gates(run_id[0])):
            time.sleep(0.1)
        verdict = answer_gate(run_id[0], gate, "dana", "approve", "test: reviewed")
        assert verdict.accepted, verdict.message

    def observer(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_started":
            run_id.append(data["run_id"])
        elif kind == "gate_opened":
            import contextvars

            thread = threading.Thread(target=contextvars.copy_context().run, args=(approve, data["gate"]), daemon=True)
            thread.start()
            answers.append(thread)

    summary = run_playbook(
        "aws-access-key-compromise",
        flagship_inputs(sandbox),
        alert=health,
        launched_by="erin",
        sandbox=True,
        observer=observer,
    )
    for thread in answers:
        thread.join(timeout=5)
    return summary


@pytest.fixture(scope="module")
def recorded(
    sandbox_session: Any, stanch_config: Path, prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Any, list[str]]]:
    """The flagship on an AWS Health alert in the sandbox, gates approved by dana, recorded into a bundle."""
    sandbox_session.reset()
    sandbox_session.activate()
    path = tmp_path_factory.mktemp("bundle") / "incident.jsonl"
    try:
        with recording(path) as recorder:
            recorder.summary = run_flagship_approving_every_gate(sandbox_session)
        secrets = secret_values(sandbox_session)
    finally:
        sandbox_session.deactivate()
    yield path, recorder.summary, secrets


def test_a_recorded_run_keeps_each_steps_calls_and_no_secret_value(recorded: tuple[Path, Any, list[str]]) -> None:
    path, summary, secrets = recorded
    assert summary.state == "Completed", summary.message
    bundle = read_bundle(path)
    assert bundle.run.playbook == "aws-access-key-compromise"
    assert bundle.run.parameters["inputs"]["user_name"] == "ci-deployer"
    assert bundle.run.parameters["alert"]["source"] == "aws.health"
    by_step: dict[str, list[str]] = {}
    for call in bundle.calls:
        by_step.setdefault(call.step, []).append(f"{call.kind} {call.operation}")
    assert by_step["inventory"][0] == "aws iam:ListAccessKeys"
    assert "aws iam:UpdateAccessKey" in by_step["deactivate-now"]
    assert by_step["announce"] == ["slack chat.postMessage"]
    [rotation] = [s for s, ops in by_step.items() if "aws iam:CreateAccessKey" in ops]
    assert "aws secretsmanager:PutSecretValue" in by_step[rotation]
    assert any(op.startswith("aws s3:") for op in by_step["review"])
    assert {call.unit for call in bundle.calls if call.step == "deactivate-created-keys"} == {"deactivate-created-keys[0]"}
    assert "approve-containment" in bundle.end.gates
    assert {(r.status, tuple(d.approver for d in r.decisions)) for r in bundle.end.gates.values()} == {
        ("approved", ("dana",))
    }
    assert bundle.end.steps == {s.id: s.state for s in summary.steps}
    text = path.read_text()
    leaked = [value[:6] + "…" for value in secrets if value in text]
    assert leaked == [], "secret values in the bundle"
    created = next(c for c in bundle.calls if c.operation == "iam:CreateAccessKey")
    assert created.response["parsed"]["AccessKey"]["SecretAccessKey"] == MASK
    assert created.response["parsed"]["AccessKey"]["AccessKeyId"].startswith("AKIA")


def test_a_replay_of_the_recorded_run_is_identical_and_sends_nothing(
    recorded: tuple[Path, Any, list[str]], sandbox_session: Any
) -> None:
    path, summary, _ = recorded
    listener = CountingListener()
    sandbox_session.record_aws()
    sandbox_session.slack.calls.clear()
    sandbox_session.vendor.calls.clear()
    try:
        result = replay(path, endpoint=listener.url)
        replayed_connections = listener.connections
        socket.create_connection(listener.sock.getsockname(), timeout=2).close()  # the listener does count
        deadline = time.monotonic() + 2
        while listener.connections == replayed_connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.connections == replayed_connections + 1
    finally:
        listener.stop()
    assert [d.as_dict() for d in result.divergences] == [], "\n".join(str(d.as_dict()) for d in result.divergences)
    assert result.summary.state == "Completed", result.summary.message
    assert {s.id: s.state for s in result.summary.steps} == {s.id: s.state for s in summary.steps}
    assert result.answered >= len(read_bundle(path).calls) - result.repeats
    assert replayed_connections == 0
    assert sandbox_session.aws_operations() == []
    assert sandbox_session.slack.calls == [] and sandbox_session.vendor.calls == []
    # the replay is a flow run of its own, never taken for the incident, and never resumed for real
    from prefect.client.orchestration import get_client

    from flows.engine.launch import LaunchError, find_run, resume_run

    incident = read_bundle(path).run.parameters["incident_id"]
    assert result.incident_id.startswith(f"{incident}-replay-")
    with get_client(sync_client=True) as client:
        tags = set(client.read_flow_run(result.summary.run_id).tags)
    assert {"replay", f"incident:{result.incident_id}", "trigger:replay"} <= tags
    assert str(find_run(incident).id) == read_bundle(path).run.flow_run_id, "the incident names its one real run"
    with pytest.raises(LaunchError, match="is a replay"):
        resume_run(str(result.summary.run_id), force=True)


EXTRA_STEP = """
  - id: recheck-keys
    name: Look at the user's keys once more
    phase: review
    needs: [deactivate-now]
    uses: aws.iam.list_access_keys
    on_failure: continue
    with:
      user_name: ${{ inputs.user_name }}
"""


def test_a_replay_after_a_playbook_edit_names_the_step_and_call_that_diverge(
    recorded: tuple[Path, Any, list[str]], tmp_path: Path
) -> None:
    path, _, _ = recorded
    text = (PLAYBOOKS / "aws-access-key-compromise.yaml").read_text()
    head, marker, tail = text.partition("\n  - id: review\n")
    edited = tmp_path / "aws-access-key-compromise.yaml"
    edited.write_text(head + EXTRA_STEP.rstrip("\n") + marker + tail)
    result = replay(path, playbook=str(edited))
    found = [(d.step, d.what, d.call) for d in result.divergences]
    assert ("recheck-keys", "unexpected call", "aws iam:ListAccessKeys") in found, found
    assert ("recheck-keys", "step", "recheck-keys") in found
    step = next(s for s in result.summary.steps if s.id == "recheck-keys")
    assert step.state == "failed" and "StanchReplayDivergence" in step.reason
    assert result.summary.state == "Completed", "the rest of the response replays as recorded"


def test_the_cli_replays_a_bundle_and_exits_1_with_a_divergence_table(
    recorded: tuple[Path, Any, list[str]], tmp_path: Path
) -> None:
    path, _, _ = recorded
    bundle = read_bundle(path)
    # the same run, but the recording of the announcement is gone: the new run's announcement is unexpected
    lines = path.read_text().splitlines()
    kept = [line for line in lines if '"step":"announce"' not in line]
    end = json.loads(kept[-1])
    end["calls"] = len(bundle.calls) - (len(lines) - len(kept))
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join([*kept[:-1], json.dumps(end)]) + "\n")
    proc = subprocess.run(
        [STANCH, "replay", str(edited)], capture_output=True, text=True, timeout=120, env=cli_env(COLUMNS="200")
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "divergence" in proc.stdout and "announce" in proc.stdout and "chat.postMessage" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("cut", "no end record"),
        ("version", "bundle format version 99"),
        ("garbage", "not JSON"),
        ("count", "the file holds"),
        ("empty", "empty"),
        ("not-a-bundle", "not an incident bundle"),
        ("bad-call", "kind"),
        ("deep", r"broken.jsonl:2: nested too deep to read"),
        ("nested", r"broken.jsonl:2: nested more than 100 levels"),
        ("long-line", r"broken.jsonl:3: a line longer than \d+ bytes"),
    ],
)
def test_a_damaged_bundle_is_refused_with_the_line_and_reason(
    recorded: tuple[Path, Any, list[str]], tmp_path: Path, damage: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _, _ = recorded
    lines = path.read_text().splitlines()
    if damage == "cut":
        lines = lines[: len(lines) // 2]
    elif damage == "version":
        lines[0] = lines[0].replace('"version":1', '"version":99')
    elif damage == "garbage":
        lines[3] = lines[3][:40]
    elif damage == "count":
        del lines[5]
    elif damage == "empty":
        lines = []
    elif damage == "not-a-bundle":
        lines = ['{"Records": []}']
    elif damage == "bad-call":
        call = next(i for i, line in enumerate(lines) if '"type":"call"' in line)
        lines[call] = lines[call].replace('"kind":"aws"', '"kind":"ftp"').replace('"kind":"slack"', '"kind":"ftp"')
    elif damage == "deep":  # the JSON parser's own recursion gives up (RecursionError, not ValueError)
        lines[1] = '{"type": "run", "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    elif damage == "nested":  # parsed, but every comparison of it would recurse as deep
        lines[1] = '{"type": "run", "x": ' + "[" * 150 + "]" * 150 + "}"
    elif damage == "long-line":
        longest = max(len(line.encode()) + 1 for line in lines)
        monkeypatch.setattr("flows.tabletop.replay.MAX_LINE_BYTES", longest)  # a lower cap, this bundle within it
        lines[2] = lines[2][:-1] + ', "pad": "' + "x" * longest + '"}'
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines))
    with pytest.raises(BundleError, match=expected):
        read_bundle(broken)


def test_the_cli_refuses_a_damaged_bundle_without_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"format": "stanch-incident-bundle", "version": 2, "recorded_at": "x"}\n')
    proc = subprocess.run(
        [STANCH, "replay", str(broken)], capture_output=True, text=True, timeout=60, env=cli_env(COLUMNS="200")
    )
    assert proc.returncode == 1
    assert "bundle format version 2" in proc.stderr and "Traceback" not in proc.stderr


def test_redaction_masks_secret_fields_and_remembers_their_values() -> None:
    redactor = Redactor()
    pair = json.dumps({"AccessKeyId": "AKIAEXAMPLEEXAMPLE01", "SecretAccessKey": "not-a-real-secret-value-1234"})
    answer = redactor.redact(
        {
            "SecretString": pair,
            "Parameter": {"Name": "/db/password", "Type": "SecureString", "Value": "hunter2-database"},
            "Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SessionToken": "session-token-value"},
        }
    )
    assert json.loads(answer["SecretString"]) == {"AccessKeyId": "AKIAEXAMPLEEXAMPLE01", "SecretAccessKey": MASK}
    assert answer["Parameter"]["Value"] == MASK and answer["Parameter"]["Name"] == "/db/password"
    assert answer["Credentials"] == {"AccessKeyId": "ASIAEXAMPLE", "SessionToken": MASK}
    # a value seen in a secret field is masked wherever it turns up later
    later = redactor.redact({"text": "the password hunter2-database leaked", "Body": {"$b64": "aGVsbG8="}})
    assert later == {"text": f"the password {MASK} leaked", "Body": {"$b64": "aGVsbG8="}}


def test_vendor_and_slack_calls_are_recorded_redacted_and_answered_without_sending(
    sandbox_session: Any, tmp_path: Path
) -> None:
    """Outside a run (no step context): HttpClient and the Slack client through a recorder, then a replayer."""
    from flows.tabletop.replay import Bundle, CallRecord, EndRecord, Header, Recorder, Replayer, RunRecord
    from integrations.context import HttpCallError, HttpClient, slack_client, use_tape

    vendor, slack = sandbox_session.vendor, sandbox_session.slack
    urls = sandbox_session.vendor_urls()
    admin = vendor.admin_token

    def calls() -> list[Any]:
        http = HttpClient()
        minted = http.call("POST", urls["mint_url"], admin, {"name": "replay-test"})
        checked = http.call("GET", urls["check_url"], minted["api_key"])
        with pytest.raises(HttpCallError) as refused:
            http.call("POST", urls["revoke_url"].format(key_id="key_gone"), admin)
        posted = slack_client(slack.token, slack.base_url).chat_postMessage(channel="#incident-response", text="replay")
        return [minted["key_id"], checked, refused.value.status, posted["ok"]]

    path = tmp_path / "calls.jsonl"
    recorder = Recorder(path)
    previous = use_tape(recorder)
    try:
        live = calls()
        api_key = vendor.keys[live[0]].api_key
    finally:
        use_tape(previous)
    recorder.finish()
    text = path.read_text()
    assert api_key not in text and admin not in text and slack.token not in text
    recorded = [CallRecord.model_validate(json.loads(line)) for line in text.splitlines() if '"type":"call"' in line]
    assert [(c.kind, c.operation) for c in recorded] == [
        ("http", "POST"),
        ("http", "GET"),
        ("http", "POST"),
        ("slack", "chat.postMessage"),
    ]
    assert recorded[0].response["body"]["api_key"] == MASK
    bundle = Bundle(
        path,
        Header(format="stanch-incident-bundle", version=1, recorded_at="-"),
        RunRecord(type="run", flow_run_id="-", playbook="-", parameters={}),
        recorded,
        EndRecord(type="end", calls=len(recorded)),
    )
    replayer = Replayer(bundle)
    vendor.calls.clear()
    slack.calls.clear()
    previous = use_tape(replayer)
    try:
        assert calls() == live
        with pytest.raises(HttpCallError, match="replay divergence"):
            HttpClient().call("GET", f"{urls['check_url']}?again=1", "vk_other")
    finally:
        use_tape(previous)
    assert vendor.calls == [] and slack.calls == []
    assert [(d.what, d.call) for d in replayer.finish()] == [("unexpected call", "http GET")]


def test_stanch_record_in_the_environment_records_only_the_process_it_names(
    sandbox_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """STANCH_RECORD names the bundle, honoured only where STANCH_RECORD_PID names this process: left in a worker's
    environment (or inherited by a child) it is ignored with a warning, never one bundle of every run. A recording
    that saw no run is refused clearly when replayed."""
    import os

    from integrations import context

    path = tmp_path / "env.jsonl"
    monkeypatch.setattr(context, "_env_tapes", {})
    monkeypatch.setattr(context, "_ignored_env", set())
    monkeypatch.setenv("STANCH_RECORD", str(path))
    sandbox_session.activate()
    try:
        clients = context.AwsClients(endpoint_url=sandbox_session.aws_endpoint)
        for other in (None, str(os.getpid() + 1)):  # no pid, another process's
            if other is None:
                monkeypatch.delenv("STANCH_RECORD_PID", raising=False)
            else:
                monkeypatch.setenv("STANCH_RECORD_PID", other)
            clients.client("iam").list_users()
            assert context.active_tape() is None and not path.exists()
        assert "STANCH_RECORD is set but ignored" in caplog.text
        monkeypatch.setenv("STANCH_RECORD_PID", str(os.getpid()))
        clients.client("iam").list_users()
        tape = context.active_tape()
        assert tape is not None and not tape.replaying
        tape.finish()  # type: ignore[attr-defined]
    finally:
        sandbox_session.deactivate()
    [call] = [json.loads(line) for line in path.read_text().splitlines() if '"type":"call"' in line]
    assert (call["unit"], call["operation"]) == ("(unattributed)", "iam:ListUsers")
    with pytest.raises(BundleError, match="no run record"):
        read_bundle(path)


def test_a_dry_runs_refused_writes_are_not_recorded(sandbox_session: Any, tmp_path: Path) -> None:
    """The refusal comes first: a write a dry-run refuses never left, so the bundle does not hold it."""
    from flows.tabletop.replay import Recorder
    from integrations.context import AwsClients, HttpClient, ReadOnlyRefusal, slack_client, use_tape

    path = tmp_path / "dry.jsonl"
    recorder = Recorder(path)
    previous = use_tape(recorder)
    sandbox_session.activate()
    try:
        iam = AwsClients(endpoint_url=sandbox_session.aws_endpoint, read_only=True).client("iam")
        assert iam.list_users()["Users"]
        with pytest.raises(ReadOnlyRefusal):
            iam.delete_user(UserName="alice")
        slack = sandbox_session.slack
        with pytest.raises(ReadOnlyRefusal):
            slack_client(slack.token, slack.base_url, read_only=True).chat_postMessage(channel="#x", text="no")
        with pytest.raises(ReadOnlyRefusal):
            HttpClient(read_only=True).call("GET", sandbox_session.vendor_urls()["check_url"], "vk_key")
    finally:
        sandbox_session.deactivate()
        use_tape(previous)
    recorder.finish()
    operations = [json.loads(line)["operation"] for line in path.read_text().splitlines() if '"type":"call"' in line]
    assert operations == ["iam:ListUsers"]


def _small_bundle() -> list[dict[str, Any]]:
    playbook = {
        "apiVersion": "stanch/v1",
        "kind": "Playbook",
        "metadata": {"name": "tiny", "title": "Tiny", "severity": "low"},
        "inputs": {"user_name": {"type": "string"}},
        "steps": [
            {
                "id": "keys",
                "phase": "review",
                "uses": "aws.iam.list_access_keys",
                "with": {"user_name": "${{ inputs.user_name }}"},
            }
        ],
    }
    call = {
        "type": "call",
        "seq": 1,
        "t": 0.1,
        "step": "keys",
        "unit": "keys",
        "kind": "aws",
        "operation": "iam:ListAccessKeys",
        "request": {"params": {"UserName": "ci-deployer"}},
        "response": {"status": 200, "parsed": {"AccessKeyMetadata": []}},
    }
    return [
        {"format": "stanch-incident-bundle", "version": 1, "recorded_at": "2026-11-27T12:00:00+00:00"},
        {"type": "run", "flow_run_id": "-", "playbook": "tiny", "parameters": {"inputs": {"user_name": "ci-deployer"}}},
        call,
        {"type": "end", "calls": 1, "playbook": playbook, "steps": {"keys": "completed"}},
    ]


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        ((1, "parameters", "inputs"), "not-an-object", "inputs must be an object"),
        ((1, "parameters", "mode"), "chaos", "mode must be live or dry-run"),
        ((1, "parameters", "launched_by"), ["x"], "launched_by must be a short text"),
        ((3, "playbook", "steps", 0, "uses"), "aws.iam.no_such_action", "the recorded playbook has problems"),
    ],
)
def test_a_bundle_whose_launch_or_playbook_was_edited_is_refused_before_anything_runs(
    tmp_path: Path, where: tuple[Any, ...], value: Any, expected: str
) -> None:
    records = _small_bundle()
    target: Any = records
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    path = tmp_path / "edited.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(BundleError, match=expected):
        replay(path)


def test_damaged_bundle_lines_give_a_bundle_error_or_a_bundle_never_another_exception(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    lines = [json.dumps(r) for r in _small_bundle()]
    path = tmp_path / "fuzzed.jsonl"

    @settings(max_examples=150, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(lines) - 1), st.integers(0, 400), st.integers(0, 400), st.text(max_size=20))
    def damaged(line: int, start: int, stop: int, insert: str) -> None:
        text = lines[line]
        edited = [*lines]
        edited[line] = text[: min(start, stop)] + insert + text[max(start, stop) :]
        path.write_text("\n".join(edited))
        try:
            read_bundle(path)
        except BundleError as exc:
            assert str(path) in str(exc)

    damaged()


# ---------------------------------------------------------------- secrets the recorder must not keep


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_vendor_bodies_lose_minted_keys_stored_values_and_kubernetes_secret_data() -> None:
    """Field rules for vendor HTTP bodies; a `key` that names something (a public key, a variable's name) stays."""
    redactor = Redactor()
    minted = "bt-service-token-minted-0001"
    old, new, other = "old-provider-key-0002", "new-provider-key-0003", "other-member-0004"
    mint = {"url": "https://api.braintrust.dev/v1/service_token", "body": {"name": "evals-ci"}}
    assert redactor.redact({"status": 200, "body": {"id": "tok_1", "key": minted, "name": "evals-ci"}}, "http", mint)[
        "body"
    ] == {"id": "tok_1", "key": MASK, "name": "evals-ci"}
    secret_url = "https://kube.example/api/v1/namespaces/chat/secrets/acme-ai"
    read = {"kind": "Secret", "metadata": {"name": "acme-ai"}, "data": {"api-key": _b64(old), "other": _b64(other)}}
    answer = redactor.redact({"status": 200, "body": read}, "http", {"url": secret_url})
    assert answer["body"]["data"] == {"api-key": MASK, "other": MASK} and answer["body"]["metadata"]["name"] == "acme-ai"
    patch = {"url": secret_url, "body": {"metadata": {"annotations": {"fp": "abc"}}, "data": {"api-key": _b64(new)}}}
    assert redactor.redact(patch, "http")["body"]["data"] == {"api-key": MASK}
    # what a Secret's data encodes is learned: the plain value is masked wherever it turns up later
    assert redactor.redact({"text": f"{old} {other} {new} {_b64(minted)}"}) == {"text": f"{MASK} {MASK} {MASK} {MASK}"}
    gitlab = {"key": "ACME_AI_API_KEY", "value": "gitlab-held-value-05", "variable_type": "env_var", "masked": True}
    assert redactor.redact({"status": 200, "body": gitlab}, "http", {"url": "https://gl.example/api/v4/x"})["body"] == {
        **gitlab,
        "value": MASK,
    }
    github = {"url": "https://gh.example/repos/acme/evals/actions/secrets/K", "body": {"encrypted_value": "c2VhbGVk"}}
    assert redactor.redact(github, "http")["body"] == {"encrypted_value": MASK}
    public = {"key_id": "568250167242549743", "key": "dGhlIHB1YmxpYyBrZXk="}  # GitHub's sealed-box public key
    assert redactor.redact({"status": 200, "body": public}, "http", {"url": "https://gh.example/k"})["body"] == public
    revoke = {"url": "https://gh.example/credentials/revoke", "body": {"credentials": ["ghp-like-value-0006"]}}
    assert redactor.redact(revoke, "http")["body"] == {"credentials": [MASK]}
    tags = {"Tags": [{"Key": "stanch:new-key", "Value": "v1=key_9"}]}  # AWS: a tag's Value is no secret
    assert redactor.redact(tags, "aws") == tags


def test_what_the_runs_masker_learns_reaches_the_bundle_even_after_the_call_was_written(tmp_path: Path) -> None:
    """A value registered with any SecretMasker while a recording runs is masked in every record, those written
    before it was registered too (a minted key is registered after its answer was recorded), base64 forms too."""
    from flows.tabletop.replay import Recorder
    from integrations.context import use_tape
    from integrations.masking import SecretMasker

    path = tmp_path / "late.jsonl"
    recorder = Recorder(path)
    previous = use_tape(recorder)
    try:
        late = "late-registered-secret-0007"
        recorder.record("http", "POST", {"url": "https://v.example/mint", "body": None}, {"body": {"made": late}})
        SecretMasker().register(late)  # the run's masker, as an action registers what it minted
        encoded = {"url": "https://v.example/x", "body": {"blob": _b64(late)}}
        recorder.record("http", "PUT", encoded, {"status": 200, "body": None})
    finally:
        use_tape(previous)
    recorder.finish()
    text = path.read_text()
    assert late not in text and _b64(late) not in text and text.count(MASK) >= 2
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_calls_labelled_unattributed_match_their_twin_in_a_step_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader thread with or without the run's context labels the same S3 read `(unattributed)` or with its
    step: the replay takes the exact twin from the other label, and reports nothing missing."""
    from flows.tabletop import replay as module
    from flows.tabletop.replay import Bundle, CallRecord, EndRecord, Header, Replayer, RunRecord

    def get(seq: int, unit: str, key: str) -> CallRecord:
        return CallRecord(
            type="call",
            seq=seq,
            t=0.0,
            step=unit,
            unit=unit,
            kind="aws",
            operation="s3:GetObject",
            request={"params": {"Bucket": "trail", "Key": key}},
            response={"status": 200, "parsed": {"Body": {"$b64": _b64(key)}}},
        )

    calls = [get(1, "review", "a.json.gz"), get(2, "(unattributed)", "b.json.gz"), get(3, "review", "c.json.gz")]
    bundle = Bundle(
        Path("-"),
        Header(format="stanch-incident-bundle", version=1, recorded_at="-"),
        RunRecord(type="run", flow_run_id="-", playbook="-", parameters={}),
        calls,
        EndRecord(type="end", calls=len(calls)),
    )
    replayer = Replayer(bundle)
    for unit, key in (("(unattributed)", "a.json.gz"), ("review", "b.json.gz"), ("(unattributed)", "c.json.gz")):
        monkeypatch.setattr(module, "current_unit", lambda unit=unit: (unit, unit))
        answer = replayer.answer("aws", "s3:GetObject", {"params": {"Bucket": "trail", "Key": key}})
        assert answer["parsed"]["Body"] == {"$b64": _b64(key)}
    assert [d.as_dict() for d in replayer.finish()] == []
    assert replayer.answered == 3


def test_a_recorded_vendor_breach_keeps_no_old_or_new_key_nor_their_base64(
    sandbox: Any, prefect_api: str, tmp_path: Path
) -> None:
    """The vendor breach playbook recorded in the sandbox: Braintrust's service-token mint, Kubernetes Secrets read
    and patched, GitHub Actions secrets sealed; no credential value, old or new, nor its base64, is in the bundle."""
    from conftest import start_run

    from flows.approvals.client import answer_gate
    from flows.sandbox.vendor_env import VendorBreachEnv

    path = tmp_path / "vendor.jsonl"
    env = VendorBreachEnv(sandbox).start()
    try:
        with recording(path) as recorder:
            run = start_run(
                "vendor-breach-key-rotation", {"vendor": "acme-ai", "grace_period": "1s"}, launched_by="erin", sandbox=True
            )
            run.wait_for("gate_opened", timeout=120, gate="ask-key-owner")
            env.person_makes_new_key()
            for gate in ("ask-key-owner", "revoke"):
                if gate != "ask-key-owner":
                    run.wait_for("gate_opened", timeout=120, gate=gate)
                run.wait_paused(gate=gate)
                assert run.run_id is not None
                assert answer_gate(run.run_id, gate, "dana", "approve", "test: checked").accepted
            recorder.summary = run.result(timeout=180)
        assert recorder.summary.state == "Completed", recorder.summary.message
        values = env.values()
        sm = sandbox.client("secretsmanager")
        new = {c: json.loads(sm.get_secret_value(SecretId=f"acme-ai/{c}")["SecretString"])["api_key"] for c in env.old}
    finally:
        env.stop()
    assert all(new[c] != env.old[c] for c in env.old) and len(values) >= 11
    text = path.read_text()
    leaked = [f"{value[:6]}… as {form}" for value in values for form, shown in _forms(value) if shown in text]
    assert leaked == [], "credential values in the bundle"
    bundle = read_bundle(path)
    [mint] = [c for c in bundle.calls if c.operation == "POST" and str(c.request["url"]).endswith("/v1/service_token")]
    assert mint.response["body"]["key"] == MASK and mint.response["body"]["id"], "the new token's id is kept"
    secrets = [c for c in bundle.calls if c.kind == "http" and "/secrets/" in str(c.request["url"])]
    read = [c for c in secrets if c.operation == "GET" and (c.response.get("body") or {}).get("data")]
    patched = [c for c in secrets if c.operation == "PATCH" and "data" in (c.request.get("body") or {})]
    assert read and all(set(c.response["body"]["data"].values()) == {MASK} for c in read)
    assert patched and all(set(c.request["body"]["data"].values()) == {MASK} for c in patched)


def _forms(value: str) -> list[tuple[str, str]]:
    import base64

    encoded = base64.b64encode(value.encode()).decode()
    urlsafe = base64.urlsafe_b64encode(value.encode()).decode()
    return [("clear", value), ("base64", encoded.rstrip("=")), ("url-safe base64", urlsafe.rstrip("="))]
