"""What an alert run may trust: a launch proof counts for one run only, and one alert starts every run it names."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import playbook
from test_intake import (
    TOKEN,
    final_run,
    flagship_with_triggers,
    health_alert,
    post_eventbridge,
    post_generic,
    service,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

LAUNCHER = "alert:webhook"
TINY = """\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: launch-proof-check, title: One log line, severity: low}
steps:
  - {id: note, phase: notify, uses: core.log, with: {message: ran}}
"""
# Starts on the same alerts as the flagship, but its trigger leaves a required input out: it can never start.
UNSTARTABLE = """\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: a-needs-a-ticket, title: Needs a ticket no alert carries, severity: low}
inputs:
  access_key_id: {type: string}
  ticket: {type: string}
triggers:
  - source: webhook
    kind: aws_key_exposed
    inputs:
      access_key_id: ${{ alert.access_key_id }}
steps:
  - {id: note, phase: notify, uses: core.log, with: {message: "${{ inputs.ticket }}"}}
"""


def run_logs(run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])))
    return "\n".join(log.message for log in logs)


def tags(run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return list(client.read_flow_run(UUID(run_id)).tags or [])


def run_with(pb: Any, incident: str, proof: str) -> str:
    """A real flow run of `pb`, launched as an alert run with `proof`: its flow run id."""
    from flows.engine.launch import run_playbook

    summary = run_playbook(pb, {}, incident_id=incident, trigger="alert", launched_by=LAUNCHER, launch_proof=proof)
    return summary.run_id


# ---------------------------------------------------------------------- one proof, one run


class Warnings:
    """A run logger's stand-in for a check made outside a flow run: it keeps the warnings it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)


def test_a_launch_proof_verifies_one_run_only_and_that_run_again_when_resumed(sandbox: Any) -> None:
    from flows.approvals.signing import LAUNCH_MAX_AGE_SECONDS, load_private, sign_launch
    from flows.config import load_settings
    from flows.engine.flow import _launcher_verified

    pb = playbook(TINY)
    private = load_private(sandbox.approval_keys[0])
    incident = f"inc-trust-{time.time_ns()}"
    proof = sign_launch(private, pb.metadata.name, incident, LAUNCHER)

    first = run_with(pb, incident, proof)
    assert "launcher:verified" in tags(first), tags(first)

    # The proof, copied from the first run's parameters, starts another run: it goes on, its launcher a claim.
    copied = run_with(pb, incident, proof)
    assert copied != first
    assert "launcher:claimed" in tags(copied) and "launcher:verified" not in tags(copied), tags(copied)
    wait_until(lambda: f"the launch proof was already used by run {first}" in run_logs(copied), what="the warning")

    # A proof first used after the bound is refused, and the log says how old it is.
    stale_incident = f"inc-trust-stale-{time.time_ns()}"
    signed = int(time.time()) - LAUNCH_MAX_AGE_SECONDS - 120
    stale = run_with(pb, stale_incident, sign_launch(private, pb.metadata.name, stale_incident, LAUNCHER, at=signed))
    assert "launcher:claimed" in tags(stale), tags(stale)
    wait_until(lambda: "17 minutes old" in run_logs(stale), what="the warning naming the proof's age")

    # The first run, re-verified as a resume does (same parameters, same flow run id), long after the bound.
    settings, log = load_settings(), Warnings()
    later = time.time() + 4 * LAUNCH_MAX_AGE_SECONDS
    assert _launcher_verified(settings, pb, incident, LAUNCHER, proof, log, run_id=first, now=later) is True
    assert log.lines == []
    assert _launcher_verified(settings, pb, incident, LAUNCHER, proof, log, run_id=copied, now=later) is False
    assert f"already used by run {first}" in log.lines[-1]
    assert _launcher_verified(settings, pb, incident, LAUNCHER, proof, log, run_id=None) is False
    assert "the run's id is not known" in log.lines[-1]


# ---------------------------------------------------------------------- every playbook, every key


@pytest.fixture(scope="module")
def two_playbook_app(
    sandbox_session: Any, stanch_config: Path, prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The service with the flagship and a playbook that matches the same generic alerts but cannot start."""
    folder = tmp_path_factory.mktemp("trust-playbooks")
    (folder / "aws-access-key-compromise.yaml").write_text(flagship_with_triggers(quick_review=True))
    (folder / "a-needs-a-ticket.yaml").write_text(UNSTARTABLE)
    env = {
        "STANCH_APPROVALS__STATE_PATH": str(tmp_path_factory.mktemp("trust") / "service.sqlite3"),
        "STANCH_PLAYBOOK_DIRS": json.dumps([str(folder)]),
        "STANCH_TEST_EVENTBRIDGE_TOKEN": TOKEN,
        "STANCH_TEST_GENERIC_SECRET": "generic-hmac-key-for-tests",
        "STANCH_INTAKE__EVENTBRIDGE_TOKEN": '{"env": "STANCH_TEST_EVENTBRIDGE_TOKEN"}',
        "STANCH_INTAKE__GENERIC_SECRET": '{"env": "STANCH_TEST_GENERIC_SECRET"}',
        "STANCH_INTAKE__SANDBOX": "true",
    }
    with service(env, sandbox_session) as client:
        yield client


def test_an_alert_for_two_playbooks_starts_the_one_that_can_and_names_the_failure(
    sandbox: Any, two_playbook_app: Any
) -> None:
    key = sandbox.keys["alice"][0]
    alert = {"id": "trust-two-playbooks-1", "kind": "aws_key_exposed", "confirmed": True, "access_key_id": key}
    answer = post_generic(two_playbook_app, alert, secret="generic-hmac-key-for-tests")
    assert answer.status_code == 202, answer.text
    body = answer.json()
    outcomes = {r["playbook"]: r for r in body["results"]}
    assert set(outcomes) == {"a-needs-a-ticket", "aws-access-key-compromise"}, body
    failed, started = outcomes["a-needs-a-ticket"], outcomes["aws-access-key-compromise"]
    assert failed["outcome"] == "failed" and failed["status"] == 422 and "ticket" in failed["reason"], failed
    assert started["outcome"] == "started" and started["run_id"] and body["run_id"] == started["run_id"], body
    assert body["accepted"] is True and "a-needs-a-ticket" in body["reason"]
    run = final_run(started["run_id"])
    assert run.state.is_completed(), run.state.message
    assert sandbox.key_states()[key] == "alice: Inactive"


def test_a_health_event_naming_two_keys_starts_a_run_for_each(sandbox: Any, two_playbook_app: Any) -> None:
    keys = [sandbox.keys["ci-deployer"][0], sandbox.keys["data-pipeline"][0]]
    alert = health_alert(keys[0], "trust-two-keys-1")
    alert["detail"]["affectedEntities"].append({"entityValue": keys[1]})
    answer = post_eventbridge(two_playbook_app, alert)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    results = body["results"]
    assert [r["access_key_id"] for r in results] == keys, body
    assert all(r["outcome"] == "started" and r["run_id"] for r in results), body
    assert len({r["run_id"] for r in results}) == 2 and len({r["incident_id"] for r in results}) == 2
    assert body["runs"] == [r["run_id"] for r in results]
    for result, user in zip(results, ("ci-deployer", "data-pipeline"), strict=True):
        run = final_run(result["run_id"])
        assert run.parameters["inputs"]["access_key_id"] == result["access_key_id"]
        assert run.parameters["inputs"]["user_name"] == user  # each key's own owner, looked up for it
        assert run.parameters["alert"]["access_key_ids"] == [result["access_key_id"]]
        assert run.parameters["incident_id"] == result["incident_id"]
    wait_until(
        lambda: [sandbox.key_states()[k] for k in keys] == ["ci-deployer: Inactive", "data-pipeline: Inactive"],
        what="both keys becoming Inactive",
    )


def test_a_key_that_could_not_start_is_started_by_the_senders_retry_and_the_other_not_twice(
    sandbox: Any, two_playbook_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One key's run cannot start for a reason of the service's own (Prefect unreachable, injected once): the
    answer is 503 so the sender retries the delivery, and the retry starts that key's run only."""
    intake = next(
        r.endpoint.__self__ for r in two_playbook_app.app.routes if getattr(r, "path", "") == "/alerts/eventbridge"
    )
    keys = [sandbox.keys["ci-deployer"][0], sandbox.keys["data-pipeline"][0]]
    real, refused = intake.launcher.start, []

    def unreachable_once(playbook: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if inputs.get("access_key_id") == keys[1] and not refused:
            refused.append(keys[1])
            raise ConnectionError("the Prefect API could not be reached")
        return real(playbook, inputs, *args, **kwargs)

    monkeypatch.setattr(intake.launcher, "start", unreachable_once)
    alert = health_alert(keys[0], "trust-retry-1")
    alert["detail"]["affectedEntities"].append({"entityValue": keys[1]})
    first = post_eventbridge(two_playbook_app, alert)
    assert first.status_code == 503, first.text
    outcomes = {r["access_key_id"]: r for r in first.json()["results"]}
    assert outcomes[keys[0]]["outcome"] == "started" and outcomes[keys[0]]["run_id"], outcomes
    assert outcomes[keys[1]]["outcome"] == "failed" and outcomes[keys[1]]["status"] == 503, outcomes
    again = post_eventbridge(two_playbook_app, alert)  # the sender's retry: the same delivery
    assert again.status_code == 202, again.text
    retried = {r["access_key_id"]: r for r in again.json()["results"]}
    assert retried[keys[0]]["outcome"] == "started before", retried
    assert retried[keys[0]]["run_id"] == outcomes[keys[0]]["run_id"], "the first key's run is not started twice"
    assert retried[keys[1]]["outcome"] == "started" and retried[keys[1]]["run_id"], retried
    assert post_eventbridge(two_playbook_app, alert).status_code == 409, "once every run started, the delivery is seen"
    wait_until(
        lambda: [sandbox.key_states()[k] for k in keys] == ["ci-deployer: Inactive", "data-pipeline: Inactive"],
        what="both keys becoming Inactive",
    )


def test_a_user_an_alert_names_is_not_given_to_every_key_it_names() -> None:
    from flows.intake.endpoints import _per_key

    facts = {"source": "webhook", "user_name": "alice", "access_key_id": "AKIAAAAAAAAAAAAAAAAA"}
    facts["access_key_ids"] = ["AKIAAAAAAAAAAAAAAAAA", "AKIABBBBBBBBBBBBBBBB"]
    copies = _per_key(facts)
    assert [c["access_key_ids"] for c in copies] == [["AKIAAAAAAAAAAAAAAAAA"], ["AKIABBBBBBBBBBBBBBBB"]]
    assert all("user_name" not in c for c in copies), "each key's owner is looked up for that key"
    assert all(c["named_user"] == "alice" for c in copies), "the named user is kept, for a lookup that finds none"
    assert _per_key({**facts, "access_key_ids": ["AKIAAAAAAAAAAAAAAAAA"]})[0]["user_name"] == "alice"
