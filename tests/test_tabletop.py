"""Tabletop exercises: shipped scenarios run the real playbooks in the sandbox on a virtual clock, and are scored."""

from __future__ import annotations

import html
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PLAYBOOKS, STANCH, cli_env

from flows.engine import clock
from flows.engine.clock import VirtualClock
from flows.language.validate import check_file
from flows.sandbox.vendor_env import UNKNOWN_IP
from flows.tabletop.runner import Exercise, SandboxOnly, run_exercise, sandbox_only
from flows.tabletop.scenario import schema_text

SCENARIOS = PLAYBOOKS / "scenarios"
LEAKED_KEY = SCENARIOS / "leaked-ci-key.yaml"
ROLE = SCENARIOS / "stolen-role-session.yaml"
VENDOR = SCENARIOS / "vendor-breach-acme-ai.yaml"


def exercise(path: Path, prefect_api: str, **options: Any) -> tuple[Exercise, list[str]]:
    lines: list[str] = []
    return run_exercise(path, record_to=prefect_api, say=lines.append, **options), lines


def outcome(done: Exercise, name_part: str) -> dict[str, Any]:
    [found] = [o for o in done.outcomes if name_part in o["name"]]
    return found


def seconds(offset: str) -> int:
    """`T+0:03:12` -> 192."""
    hours, minutes, secs = offset.removeprefix("T+").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(secs)


def variant(tmp_path: Path, source: Path, change: Any) -> Path:
    """A copy of a shipped scenario, changed, beside copies of the files it names (paths stay relative)."""
    data = yaml.safe_load(source.read_text())
    change(data)
    for folder in ("alerts", "cloudtrail"):
        (tmp_path / folder).mkdir(exist_ok=True)
        for file in (SCENARIOS / folder).iterdir():
            (tmp_path / folder / file.name).write_bytes(file.read_bytes())
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def personas(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What the personas did, as the after-action report's JSON has it, in its order."""
    return [e for e in report["timeline"] if e["kind"] == "persona"]


def after(report: dict[str, Any], event: dict[str, Any]) -> float:
    """Seconds from the start of the exercise (the alert) to the event, on the exercise clock."""
    return (datetime.fromisoformat(event["at"]) - datetime.fromisoformat(report["started"])).total_seconds()


def assert_inside_its_gate(report: dict[str, Any], event: dict[str, Any]) -> None:
    """The gate opened before the persona's action, and (an answer) closed with it, in the timeline's order too."""
    [gate] = [e for e in report["timeline"] if e["kind"] == "gate" and e["ref"] == event["ref"] and e["until"]]
    opened, at, closed = (datetime.fromisoformat(t) for t in (gate["at"], event["at"], gate["until"]))
    assert opened < at <= closed, (gate, event)
    if event["status"] in ("approved", "rejected"):
        assert at == closed, "the answer closed the gate"
    assert report["timeline"].index(gate) < report["timeline"].index(event)


# ---------------------------------------------------------------- the virtual clock


def test_virtual_time_jumps_only_when_every_run_waits_and_an_answer_is_judged_before_it_moves_on() -> None:
    virtual = VirtualClock()
    try:
        start = virtual.now()
        answered: list[tuple[float, float]] = []  # (when it began, how far time moved while it ran)

        def slow_answer() -> None:  # a persona's answer: time must not move while it is being delivered
            before = virtual.now()
            time.sleep(0.3)
            answered.append(((before - start).total_seconds(), (virtual.now() - before).total_seconds()))

        virtual.at(start + _minutes(20), "answer", slow_answer)
        virtual.at(start + _minutes(60), "deadline")
        with virtual.actor():
            busy_until = time.monotonic() + 0.3
            while time.monotonic() < busy_until:  # a run with a step in flight: no jump
                time.sleep(0.05)
            assert (virtual.now() - start).total_seconds() < 5
            with clock.using(virtual):
                while (clock.now() - start).total_seconds() < 60 * 60:
                    clock.sleep(1.0)  # the driver's idle wait
        [(began, moved)] = answered
        assert 20 * 60 <= began < 20 * 60 + 5, began
        assert moved < 1.0, "time jumped while the answer was being delivered"
        assert [why for _, _, why in virtual.jumps] == ["answer", "deadline"]
        assert clock.current() is clock.WALL
    finally:
        virtual.close()


def _minutes(n: int) -> Any:
    from datetime import timedelta

    return timedelta(minutes=n)


# ---------------------------------------------------------------- scenarios on file


def test_the_committed_scenario_schema_matches_the_models() -> None:
    assert (SCENARIOS / "schema.json").read_text() == schema_text(), "run python -m flows.tabletop.scenario"


def test_shipped_scenarios_validate_and_point_editors_at_their_schema() -> None:
    for path in sorted(SCENARIOS.glob("*.yaml")):
        checked = check_file(path)
        assert checked.kind == "Scenario" and checked.ok, [str(p) for p in checked.problems]
        assert path.read_text().startswith("# yaml-language-server: $schema=./schema.json"), path


BAD = """\
apiVersion: stanch/v1
kind: Scenario
metadata: {name: bad-one, title: Bad}
playbook: aws-access-key-compromise
alert:
  file: alerts/missing.json
  set: {"detail.affectedEntities[0].entityValue": "@sandbox:nobody"}
inputs: {user_name: ci-deployer, colour: red}
environment:
  users: [{name: ci-deployer, keys: 1}]
injects:
  - {at: 3m, do: create_access_key, user: ci-deployer, by: "@sandbox:ci-deployer"}
approvers:
  personas:
    - {gate: approve-everything, who: dana, decision: approve}
    - {gate: rotate-key, who: mallory, decision: approve, after: 2m}
expect:
  - {name: Fast, check: step, step: no-such-step}
"""


def test_a_bad_scenario_lists_every_problem_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    problems = {(p.line, p.col): p.message for p in check_file(path).problems}
    expected = {
        (6, 3): "no alert file alerts/missing.json (paths are relative to the scenario's folder)",
        (7, 9): "@sandbox:nobody: the environment has no user 'nobody'",
        (8, 34): "aws-access-key-compromise has no input 'colour'",
        (15, 8): "aws-access-key-compromise has no gate 'approve-everything'",
        (16, 26): "'mallory' may not answer gate rotate-key (groups security-oncall: alice, bob, dana)",
        (18, 31): "aws-access-key-compromise has no step 'no-such-step'",
    }
    for where, words in expected.items():
        assert where in problems and words in problems[where], (where, words, problems)
    assert len(problems) == len(expected), problems


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (("playbook: aws-access-key-compromise", "playbook: no-such-playbook"), (4, 1), "no playbook named"),
        (("{at: 3m, do:", "{at: soon, do:"), (12, 6), "'soon' is not a duration"),
        (("{at: 3m, do: create_access_key", "{at: 3m, do: delete_account"), (12, 5), "`do` must be one of"),
        (("metadata: {", "metadata: {colour: red, "), (3, 12), "unknown field 'colour'"),
    ],
)
def test_one_mistake_each_is_named_at_its_place(
    tmp_path: Path, change: tuple[str, str], where: tuple[int, int], words: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.replace(*change))
    found = [p for p in check_file(path).problems if (p.line, p.col) == where]
    assert found and words in found[0].message, [str(p) for p in check_file(path).problems]


def test_stanch_tabletop_names_the_place_of_a_mistake_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.replace("{at: 3m, do:", "{at: soon, do:"))
    done = subprocess.run(
        [STANCH, "tabletop", str(path)], capture_output=True, text=True, env=cli_env(), timeout=60, check=False
    )
    assert done.returncode == 1
    assert f"{path}:12:6: 'soon' is not a duration" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# ---------------------------------------------------------------- exercises


def test_the_leaked_key_exercise_meets_its_outcomes_in_seconds_on_the_virtual_clock(
    prefect_api: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    done, lines = exercise(LEAKED_KEY, prefect_api, json_file=tmp_path / "exercise.json", html=tmp_path / "report.html")
    wall = time.monotonic() - began
    assert not done.problems, done.problems
    assert done.met, json.dumps(done.outcomes, indent=2)
    assert done.summary.state == "Completed", done.summary.message
    # Twelve minutes of the exercise (Bob takes the secrets read on at T+12m) took seconds of wall time.
    assert seconds(done.offset(done.ended_at)) >= 12 * 60 and wall < 45, (done.offset(done.ended_at), wall)
    assert seconds(outcome(done, "exposed key")["actual"]) < 60
    contained = outcome(done, "backdoor")
    assert 4 * 60 <= seconds(contained["actual"]) < 5 * 60, contained  # Dana approved at T+4m
    assert "denied by the quarantine" in contained["evidence"], "the key the attacker added at T+3m is listed"
    assert seconds(outcome(done, "rotated")["actual"]) < 60, "a confirmed exposure's workload key rotates at once"
    assert 12 * 60 <= seconds(outcome(done, "handed to their owners")["actual"]) < 13 * 60
    attacker = [e for e in done.events if e["kind"] == "attacker"]
    assert len(attacker) == 1 and "second access key" in attacker[0]["label"]
    assert any("[T+0:03:00] The attacker gives its backdoor user a second access key" in line for line in lines)
    answered = [line for line in lines if "dana approved approve-containment" in line]
    assert len(answered) == 1 and answered[0].startswith("[T+0:04:0"), lines
    tags = _flow_run(done.run_id).tags
    assert "tabletop" in tags and "trigger:tabletop" in tags and "sandbox" in tags
    page = (tmp_path / "report.html").read_text()
    assert all(html.escape(o["name"]) in page for o in done.outcomes) and "second access key" in page
    written = json.loads((tmp_path / "exercise.json").read_text())
    assert [o["met"] for o in written["outcomes"]] == [True] * len(done.outcomes)
    assert "SecretAccessKey" not in json.dumps(written) and "tabletop-not-a-password" not in json.dumps(written)
    # Who did what when: each persona's answer on the report's Personas lane, at its time on the exercise clock,
    # inside its gate's wait (the gate opens, the persona answers, that answer closes it). Alice's gate never opened
    # (a confirmed exposure rotates at once): nothing of hers is made up.
    people = personas(written)
    assert [(e["actor"], e["status"], e["ref"]) for e in people] == [
        ("dana", "approved", "approve-containment"),
        ("bob", "approved", "approve-secret-rotation"),
    ], people
    assert [e["label"] for e in people] == [
        "dana (security-oncall approver) approved gate approve-containment",
        "bob (security-oncall approver) approved gate approve-secret-rotation",
    ]
    assert all(e["role"] == "security-oncall approver" for e in people)
    assert "svc-backup was made by the leaked key" in people[0]["detail"] and "identity verified" in people[0]["detail"]
    assert 4 * 60 <= after(written, people[0]) < 4 * 60 + 10 and 12 * 60 <= after(written, people[1]) < 12 * 60 + 10
    for person in people:
        assert_inside_its_gate(written, person)
    assert not [e for e in written["timeline"] if e["kind"] == "decision"], "the personas' answers are shown once"
    assert ">Personas</text>" in page and "Personas" in page
    for person in people:
        assert html.escape(person["label"]) in page


def test_a_persona_who_never_answers_and_one_who_rejects_leave_their_outcomes_missed(
    prefect_api: str, tmp_path: Path
) -> None:
    def silent_and_reject(data: dict[str, Any]) -> None:
        del data["playbook"]
        data["route"] = True  # the playbooks' triggers pick the leaked-key playbook for AWS Health's alert
        personas = data["approvers"]["personas"]
        personas[0]["decision"] = "none"  # nobody answers the containment gate: it escalates, then times out
        personas[1].update(decision="reject", reason="not ours: the orders team is not on call")

    done, lines = exercise(variant(tmp_path, LEAKED_KEY, silent_and_reject), prefect_api, json_file=tmp_path / "r.json")
    assert not done.problems, done.problems
    assert done.summary.playbook == "aws-access-key-compromise"
    assert done.summary.state == "Cancelled"
    assert outcome(done, "exposed key")["met"], "a confirmed exposure is contained without a gate"
    contained = outcome(done, "backdoor")
    assert not contained["met"] and "not quarantined" in contained["evidence"], contained
    handed = outcome(done, "handed to their owners")
    assert not handed["met"] and "rejected" in handed["evidence"], handed
    assert not outcome(done, "completes")["met"]
    # The containment gate waited 30 minutes, escalated, and timed out 30 minutes later: an hour, in seconds.
    assert seconds(done.offset(done.ended_at)) >= 60 * 60
    assert any("escalated to security-leads" in line for line in lines)
    assert any("dana will not answer gate approve-containment" in line for line in lines)
    # On the report: Bob's rejection, with his reason, where it happened; Dana, who never answered, is not on it.
    written = json.loads((tmp_path / "r.json").read_text())
    [bob] = personas(written)
    assert (bob["actor"], bob["status"], bob["ref"]) == ("bob", "rejected", "approve-secret-rotation"), bob
    assert bob["label"] == "bob (security-oncall approver) rejected gate approve-secret-rotation"
    assert "not ours: the orders team is not on call" in bob["detail"]
    assert_inside_its_gate(written, bob)
    assert not [e for e in written["timeline"] if e.get("actor") == "dana"]
    [timeout] = [e for e in written["timeline"] if e["kind"] == "decision" and e["ref"] == "approve-containment"]
    assert timeout["label"] == "approve-containment timed out" and after(written, timeout) >= 60 * 60


def test_the_vendor_breach_exercise_rotates_twelve_consumers_two_keys_by_hand_through_a_vendor_outage(
    prefect_api: str, tmp_path: Path
) -> None:
    done, lines = exercise(VENDOR, prefect_api, json_file=tmp_path / "r.json", html=tmp_path / "r.html")
    assert not done.problems, done.problems
    assert done.met, json.dumps(done.outcomes, indent=2)
    assert done.summary.playbook == "vendor-breach-key-rotation", "the playbooks' triggers picked it"
    steps = {s.id: s for s in done.summary.steps}
    # The exercise's inventory: twelve places hold the keys; two issuers have no key API.
    inventory = steps["inventory"].outputs
    assert inventory["vendor"] == "acme-ai-exercise"
    consumers = [c for cred in inventory["credentials"] for c in cred["consumers"]]
    assert len(consumers) == 12
    kinds = {c["kind"] for c in consumers}
    assert kinds == {"github_actions", "gitlab", "kubernetes", "secretsmanager", "ssm", "braintrust_ai_secret"}
    manual = {c["id"]: c["manual_owner"] for c in inventory["credentials"] if not c["can_mint"]}
    assert manual == {"notebooks-user-key": "alice", "anthropic-provider-key": "dana"}
    # Both people make their keys at the gate the playbook opens; Dana's answer lets the run check both.
    made = [line for line in lines if "makes the new key at the issuer's console" in line]
    assert len(made) == 2 and made[0].startswith("[T+0:12:0") and "alice" in made[0], made
    assert made[1].startswith("[T+0:20:0") and "dana" in made[1], made
    for credential, name in (("notebooks-user-key", "Braintrust user key"), ("anthropic-provider-key", "Anthropic key,")):
        made_by_hand = outcome(done, name)
        assert 20 * 60 <= seconds(made_by_hand["actual"]) < 21 * 60, made_by_hand
        assert f"{credential}: new key made by hand, verified" in made_by_hand["evidence"]
    # The unknown place is flagged by the review, and in the report.
    flagged = outcome(done, "unknown place")
    assert UNKNOWN_IP in flagged["evidence"] and "#incident-response" in flagged["evidence"], flagged
    # At T+5m Acme AI reports that the rotation of its stored provider keys failed: its API fails until T+22m.
    injects = [(done.offset(datetime.fromisoformat(e["at"])), e["label"]) for e in done.events if e["kind"] == "inject"]
    assert ("T+0:05:00", "Acme AI reports that the rotation of the provider keys it stores failed") in injects
    assert ("T+0:22:00", "Acme AI reports its AI secrets settings API works again") in injects
    assert any(line.startswith("[T+0:05:00] Acme AI reports") and "answer 503" in line for line in lines)
    # What is safe is revoked; the consumers that failed (the rollout, the vendor's outage) keep old keys alive.
    assert "revoked" in outcome(done, "old platform key")["evidence"]
    assert "revoked" in outcome(done, "old user key")["evidence"]
    assert "ProgressDeadlineExceeded" in outcome(done, "failed rollout")["evidence"]
    assert "answered 503" in outcome(done, "vendor's outage")["evidence"]
    report = steps["summarize"].outputs
    statuses = [c["status"] for r in report["credentials"] for c in r["consumers"]]
    assert len(statuses) == 12 and statuses.count("verified") == 9 and statuses.count("failed") == 3, statuses
    assert report["revoked"] == 2 and report["with_failures"] == 2
    # The after-action report says who made which key by hand, and when, besides who answered which gate.
    written = json.loads((tmp_path / "r.json").read_text())
    people = [(e["actor"], e["status"], e["ref"], e["label"]) for e in personas(written)]
    assert people[:3] == [
        (
            "alice",
            "made_key",
            "ask-key-owner",
            "alice (key-owners approver) made the new key for credential notebooks-user-key by hand",
        ),
        (
            "dana",
            "made_key",
            "ask-key-owner",
            "dana (key-owners approver) made the new key for credential anthropic-provider-key by hand",
        ),
        ("dana", "approved", "ask-key-owner", "dana (key-owners approver) approved gate ask-key-owner"),
    ], people
    assert [p[:3] for p in people[3:]] == [("bob", "approved", "revoke")], people
    alice, dana_made, dana_answer, bob = personas(written)
    assert 12 * 60 <= after(written, alice) < 12 * 60 + 10 and 20 * 60 <= after(written, dana_made) < 20 * 60 + 10
    for person in (alice, dana_made, dana_answer, bob):
        assert_inside_its_gate(written, person)
    assert "the key is not shown" in alice["detail"]
    page = (tmp_path / "r.html").read_text()
    assert all(html.escape(e["label"]) in page for e in (alice, dana_made, dana_answer, bob))


def _vendor_variant(tmp_path: Path, old: str, new: str, at: str) -> tuple[Path, int, int]:
    """The vendor scenario with one text changed, and the line and column of `at` (a part of the new text)."""
    text = VENDOR.read_text()
    assert old in text, old
    changed = text.replace(old, new, 1)
    before = changed[: changed.index(new) + new.index(at)]
    path = tmp_path / VENDOR.name
    path.write_text(changed)
    return path, before.count("\n") + 1, len(before) - before.rfind("\n")


OUTAGE = "api: vendor\n    path: /v1/ai_secret\n    status: 503"
RECOVERS = "do: vendor_recovers\n    label: Acme AI reports its AI secrets settings API works again\n    api: vendor"


@pytest.mark.parametrize(
    ("old", "new", "at", "words"),
    [
        (OUTAGE, OUTAGE.replace("api: vendor", "api: ftp"), "api", "Input should be 'vendor', 'openai'"),
        (OUTAGE, OUTAGE.replace("503", "200"), "status", "greater than or equal to 400"),
        (OUTAGE, OUTAGE.replace("api: vendor", "api: gitlab"), "api", "the acme-ai sandbox has no gitlab API"),
        (RECOVERS, RECOVERS.replace("api: vendor", "api: openai"), "api", "no vendor_outage of openai comes before"),
        (
            "credential: notebooks-user-key\n",
            "credential: openai-provider-key\n",
            "credential",
            "'openai-provider-key' is not a key made by hand in acme-ai-exercise",
        ),
        (
            "credential: platform-api-key\n    state: revoked",
            "credential: platform-key\n    state: revoked",
            "credential",
            "acme-ai-exercise has no credential 'platform-key'",
        ),
    ],
)
def test_a_bad_vendor_inject_persona_or_outcome_is_named_at_its_place(
    tmp_path: Path, old: str, new: str, at: str, words: str
) -> None:
    path, line, col = _vendor_variant(tmp_path, old, new, at)
    if "gitlab API" in words:  # the smaller inventory's sandbox serves no GitLab
        path.write_text(path.read_text().replace("{vendor: acme-ai-exercise,", "{vendor: acme-ai,"))
    problems = [str(p) for p in check_file(path).problems]
    assert any(f":{line}:{col}: " in p and words in p for p in problems), (line, col, problems)


def test_a_vendor_outage_that_lasts_a_while_heals_itself_on_the_exercise_clock() -> None:
    from datetime import UTC, timedelta

    from flows.tabletop.runner import _Play
    from flows.tabletop.scenario import VendorOutage, load_scenario

    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    calls: list[tuple[Any, ...]] = []
    scheduled: list[tuple[datetime, str, Any]] = []

    class Env:
        def outage(self, api: str, path: str, status: int) -> None:
            calls.append(("outage", api, path, status))

        def recover(self, api: str, path: str | None) -> None:
            calls.append(("recover", api, path))

    class Clock:
        now_at = start + timedelta(minutes=5)

        def now(self) -> datetime:
            return self.now_at

        def at(self, when: datetime, label: str, action: Any = None, key: str | None = None) -> None:
            scheduled.append((when, label, action))

    lines: list[str] = []
    done = Exercise(scenario=load_scenario(VENDOR), file=str(VENDOR), started_at=start)
    play = _Play(done, Clock(), None, SCENARIOS, lines.append, False, Env())  # type: ignore[arg-type]
    outage = VendorOutage.model_validate(
        {"at": "5m", "do": "vendor_outage", "api": "openai", "path": "/v1/organization", "status": 500, "lasts": "10m"}
    )
    play._fire(outage, "OpenAI's admin API fails")
    assert calls == [("outage", "openai", "/v1/organization", 500)]
    [(when, label, heal)] = scheduled
    assert when == start + timedelta(minutes=15) and label == "The openai API answers again (10m after the outage began)"
    heal()
    assert calls[-1] == ("recover", "openai", "/v1/organization")
    assert [e["label"] for e in done.events if e["kind"] == "inject"] == ["OpenAI's admin API fails", label]
    assert "for 10m" in done.events[0]["detail"]


# ---------------------------------------------------------------- safety


@pytest.fixture
def outside() -> Iterator[tuple[str, list[str]]]:
    """A TCP listener standing for real AWS, Slack and a vendor: every connection it gets is counted."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    seen: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                continue
            seen.append(str(peer))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", seen
    stop.set()
    thread.join(2)
    server.close()


def guardduty_flags_the_key_too(data: dict[str, Any]) -> None:
    """At T+2m GuardDuty flags the CI deployer's key: a second run (the leaked-key playbook) joins the exercise."""
    data["injects"].append(
        {
            "at": "2m",
            "do": "alert",
            "label": "GuardDuty flags the deployer's key",
            "playbook": "aws-access-key-compromise",
            "alert": {
                "file": "alerts/guardduty-iam-anomalous-behavior.json",
                "set": {"detail.resource.accessKeyDetails.accessKeyId": "@sandbox:ci-deployer"},
            },
            "inputs": {"trail_source": "@sandbox:trail"},
        }
    )
    data["approvers"]["personas"] += [
        {"gate": "deactivate-approved", "who": "bob", "decision": "approve", "after": "3m"},
        {"gate": "approve-containment", "who": "dana", "decision": "approve", "after": "5m"},
        {"gate": "approve-secret-rotation", "who": "dana", "decision": "approve", "after": "5m"},
    ]
    data["expect"].append(
        {
            "name": "The flagged key is inactive within 6 minutes",
            "check": "key_inactive",
            "key": "@sandbox:ci-deployer",
            "within": "6m",
        }
    )


def test_an_exercise_sends_nothing_outside_the_sandbox_whatever_the_environment_says(
    prefect_api: str, tmp_path: Path, outside: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = outside
    config = tmp_path / "stanch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "aws": {"endpoint_url": url, "region": "eu-west-1"},
                "slack": {"base_url": f"{url}/api/", "token": {"env": "REAL_SLACK_TOKEN"}},
                "approvers": {"alice": {"slack_user_id": "U0ALICE"}},
            }
        )
    )
    real = {
        "STANCH_CONFIG": str(config),
        "AWS_ENDPOINT_URL": url,
        "AWS_ENDPOINT_URL_IAM": url,
        "AWS_ACCESS_KEY_ID": "AKIAREALLOOKINGKEY01",
        "AWS_SECRET_ACCESS_KEY": "real-looking-secret-access-key-0123456789",
        "AWS_PROFILE": "production",
        "STANCH_AWS__ENDPOINT_URL": url,
        "STANCH_SLACK__BASE_URL": f"{url}/api/",
        "REAL_SLACK_TOKEN": "xoxb-real-looking-token",
        "STANCH_SANDBOX_VENDOR_URL": url,
        "HTTPS_PROXY": url,
        "HTTP_PROXY": url,
    }
    for name, value in real.items():
        monkeypatch.setenv(name, value)
    done, _ = exercise(variant(tmp_path, ROLE, guardduty_flags_the_key_too), prefect_api)
    assert not done.problems, done.problems
    assert done.met, json.dumps(done.outcomes, indent=2)
    assert len(done.runs) == 2, "the injected alert started a run of its own, beside the first"
    assert [s.playbook for s in done.summaries] == ["iam-role-session-revocation", "aws-access-key-compromise"]
    assert [e["label"] for e in done.events if e["kind"] == "alert"][-1] == "GuardDuty flags the deployer's key"
    assert seen == [], f"{len(seen)} connection(s) reached the outside endpoint"
    assert done.refused == [], done.refused  # the isolation alone kept every client in the sandbox
    assert all(os.environ[name] == value for name, value in real.items()), "the caller's environment is restored"
    # The guard behind the isolation: a connection that is not the sandbox's is refused, and never arrives.
    host, port = url.removeprefix("http://").split(":")
    with sandbox_only([prefect_api]) as refused, pytest.raises(SandboxOnly):
        socket.create_connection((host, int(port)), timeout=2)
    assert refused == [f"{host}:{port}"] and seen == []


def _flow_run(run_id: str | None) -> Any:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(run_id)))
