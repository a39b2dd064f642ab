"""Playbooks run as Prefect flow runs against a real Prefect API and the sandbox (moto + Slack stand-in)."""

from __future__ import annotations

import subprocess
import time
from typing import Any
from uuid import UUID

import pytest
from conftest import FIXTURES, STANCH, approver_token, cli_env, playbook, start_run

from flows.approvals.client import ApprovalError, answer_gate, open_gates
from flows.engine.launch import LaunchError, run_playbook
from flows.language.model import Playbook

pytestmark = pytest.mark.usefixtures("prefect_api")

FLAGSHIP = str(FIXTURES / "playbooks" / "gated-deactivation.yaml")  # notify, gate, deactivate, verify, report


def flow_run(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id))


def gated(
    on_timeout: str = "reject",
    timeout: str = "60s",
    min_approvals: int = 1,
    extra: str = "",
    escalation: str = "",
) -> Playbook:
    """A playbook: deactivate a key behind a gate, then report; plus an independent step."""
    return playbook(f"""\
apiVersion: stanch/v1
kind: Playbook
metadata: {{name: gate-test, title: Gate test, severity: high}}
inputs:
  access_key_id: {{type: string}}
approvers:
  oncall: [alice, bob, dana]
  leads: [carol]
steps:
  - id: independent
    phase: notify
    uses: core.log
    with: {{message: "independent of the gate"}}
  - id: deactivate
    phase: contain
    uses: aws.iam.deactivate_access_key
    approval:
      from: oncall
      timeout: {timeout}
      min_approvals: {min_approvals}
      on_timeout: {on_timeout}
      {extra}
    with: {{access_key_id: "${{{{ inputs.access_key_id }}}}"}}
  - id: after
    phase: notify
    needs: [deactivate]
    uses: core.log
    with: {{message: "${{{{ steps.deactivate.outputs.detail }}}}"}}
{escalation}""")


def test_gate_pauses_cli_approve_resumes_and_key_becomes_inactive(sandbox: Any, approval_service: str) -> None:
    key = sandbox.keys["ci-deployer"][0]
    run = start_run(FLAGSHIP, {"access_key_id": key, "user_name": "ci-deployer"}, launched_by="erin", sandbox=True)
    opened = run.wait_for("gate_opened", gate="deactivate-key")
    assert opened["min_approvals"] == 1 and "dana" in opened["members"]
    run.wait_paused()
    assert run.run_id is not None
    [listed] = open_gates(run.run_id)
    assert listed["gate"] == "deactivate-key" and listed["members"] == ["alice", "bob", "dana"]
    assert sandbox.key_states()[key] == "ci-deployer: Active", "nothing is deactivated before approval"
    proc = subprocess.run(
        [
            STANCH,
            "approve",
            run.run_id,
            "--gate",
            "deactivate-key",
            "--as",
            "alice",
            "--approve",
            "--reason",
            "confirmed leak",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=cli_env(STANCH_APPROVER_TOKEN=approver_token("alice"), STANCH_APPROVALS__SERVICE_URL=approval_service),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accepted" in proc.stdout
    summary = run.result()
    assert summary.state == "Completed", summary.message
    assert sandbox.key_states()[key] == "ci-deployer: Inactive"
    states = {s.id: s.state for s in summary.steps}
    assert states == dict.fromkeys(["announce", "inventory", "deactivate-key", "verify", "report"], "completed")
    assert next(s for s in summary.steps if s.id == "verify").outputs["active"] == 0
    decision = summary.decisions()[0]
    assert (decision.approver, decision.decision, decision.accepted, decision.channel) == (
        "alice",
        "approve",
        True,
        "cli",
    )
    # The flow run tells the truth, is named after the incident and carries the tags.
    api_run = flow_run(run.run_id)
    assert api_run.state.type.value == "COMPLETED"
    assert api_run.name == summary.incident_id
    assert {"playbook:gated-deactivation", "mode:live", f"incident:{summary.incident_id}", "trigger:manual"} <= set(
        api_run.tags
    )
    # Slack got the announcement and the report in the incident channel.
    texts = [m["text"] for m in sandbox.slack.messages("incident-response")]
    assert len(texts) == 2 and key in texts[0] and "Inactive" in texts[1]
    # The decision record is an artifact of the run.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run.run_id)]))
        )
    by_key = {a.key: a for a in artifacts}
    assert "alice" in by_key["gate-deactivate-key"].data and "confirmed leak" in by_key["gate-deactivate-key"].data
    assert "| deactivate-key | contain | completed |" in by_key["run-summary"].data


def test_rejected_gate_leaves_key_active_and_run_cancelled(sandbox: Any) -> None:
    key = sandbox.keys["ci-deployer"][0]
    run = start_run(FLAGSHIP, {"access_key_id": key, "user_name": "ci-deployer"}, launched_by="erin")
    run.wait_for("gate_opened")
    run.wait_paused()
    verdict = answer_gate(run.run_id, "deactivate-key", "bob", "reject", "false positive: rotation job")
    assert verdict.accepted is True
    summary = run.result()
    assert summary.state == "Cancelled"
    assert "rejected by bob: false positive" in summary.message
    states = {s.id: s.state for s in summary.steps}
    assert states["deactivate-key"] == "rejected"
    assert states["verify"] == states["report"] == "blocked"
    assert sandbox.key_states()[key] == "ci-deployer: Active"
    assert flow_run(summary.run_id).state.type.value == "CANCELLED"


def test_outsider_is_refused_and_the_gate_keeps_waiting(sandbox: Any, approval_service: str) -> None:
    key = sandbox.keys["alice"][0]
    run = start_run(gated(), {"access_key_id": key}, launched_by="erin")
    run.wait_for("gate_opened")
    run.wait_paused()
    proc = subprocess.run(
        [
            STANCH,
            "approve",
            run.run_id,
            "--gate",
            "deactivate",
            "--as",
            "mallory",
            "--approve",
            "--reason",
            "let me",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=cli_env(STANCH_APPROVER_TOKEN=approver_token("mallory"), STANCH_APPROVALS__SERVICE_URL=approval_service),
        check=False,
    )
    assert proc.returncode == 1
    assert "'mallory' is not in approver group oncall" in proc.stderr
    assert "Traceback" not in proc.stderr
    run.wait_paused()  # still waiting
    assert sandbox.key_states()[key] == "alice: Active"
    with pytest.raises(ApprovalError, match=r"not waiting at gate 'after' \(open gates: deactivate\)"):
        answer_gate(run.run_id, "after", "bob", "approve", "wrong gate")
    assert answer_gate(run.run_id, "deactivate", "bob", "approve", "ok").accepted
    summary = run.result()
    assert summary.state == "Completed"
    decisions = summary.decisions()
    assert [(d.approver, d.accepted) for d in decisions] == [("mallory", False), ("bob", True)]
    assert sandbox.key_states()[key] == "alice: Inactive"


def test_two_distinct_approvers_and_separation_of_duties(sandbox: Any) -> None:
    key = sandbox.keys["alice"][0]
    run = start_run(gated(min_approvals=2), {"access_key_id": key}, launched_by="alice")
    run.wait_for("gate_opened")
    run.wait_paused()
    refused = answer_gate(run.run_id, "deactivate", "alice", "approve", "my own run")
    assert refused.accepted is False and "as this run's launcher (unverified)" in refused.message
    run.wait_paused()
    first = answer_gate(run.run_id, "deactivate", "bob", "approve", "yes")
    assert first.accepted and (first.approvals, first.needed) == (1, 2)
    run.wait_paused()
    twice = answer_gate(run.run_id, "deactivate", "bob", "approve", "yes again")
    assert twice.accepted is False and "already approved" in twice.message
    run.wait_paused()
    assert sandbox.key_states()[key] == "alice: Active"
    assert answer_gate(run.run_id, "deactivate", "dana", "approve", "agreed").accepted
    summary = run.result()
    assert summary.state == "Completed"
    assert sandbox.key_states()[key] == "alice: Inactive"


def test_on_timeout_reject_cancels_without_running_the_step(sandbox: Any) -> None:
    key = sandbox.keys["alice"][0]
    summary = run_playbook(gated(on_timeout="reject", timeout="2s"), {"access_key_id": key}, launched_by="erin")
    assert summary.state == "Cancelled", summary.message
    states = {s.id: s.state for s in summary.steps}
    assert states == {"independent": "completed", "deactivate": "timed_out", "after": "blocked"}
    assert "timed out" in summary.message
    assert sandbox.key_states()[key] == "alice: Active"
    assert flow_run(summary.run_id).state.type.value == "CANCELLED", "not Prefect's pause-timeout failure"
    assert [d.decision for d in summary.decisions()] == ["timeout"]


def test_on_timeout_continue_skips_the_step_and_completes(sandbox: Any) -> None:
    key = sandbox.keys["alice"][0]
    summary = run_playbook(gated(on_timeout="continue", timeout="2s"), {"access_key_id": key}, launched_by="erin")
    assert summary.state == "Completed", summary.message
    states = {s.id: s.state for s in summary.steps}
    assert states == {"independent": "completed", "deactivate": "timed_out", "after": "blocked"}
    assert "on_timeout: continue" in summary.message
    assert sandbox.key_states()[key] == "alice: Active", "a timeout never approves"
    assert flow_run(summary.run_id).state.type.value == "COMPLETED"


def test_on_timeout_escalate_asks_the_second_group_then_rejects(sandbox: Any) -> None:
    key = sandbox.keys["alice"][0]
    pb = gated(on_timeout="escalate", timeout="2s", extra="escalate_to: leads\n      escalation_timeout: 2s")
    run = start_run(pb, {"access_key_id": key}, launched_by="erin")
    escalated = run.wait_for("gate_escalated")
    assert escalated["group"] == "leads"
    summary = run.result()
    assert summary.state == "Cancelled"
    assert "after escalation" in summary.message
    assert sandbox.key_states()[key] == "alice: Active"
    # The escalation reached the escalation channel, mentioning the escalation group by their Slack ids.
    texts = [m["text"] for m in sandbox.slack.messages("security-escalations")]
    assert texts[0].startswith("Escalated: the gate before deactivate had no decision in time; leads may now decide")
    assert texts[1] == "<@U0CAROL>"


def test_on_timeout_escalate_lets_the_escalation_group_approve(sandbox: Any) -> None:
    key = sandbox.keys["alice"][0]
    pb = gated(on_timeout="escalate", timeout="2s", extra="escalate_to: leads\n      escalation_timeout: 60s")
    run = start_run(pb, {"access_key_id": key}, launched_by="erin")
    run.wait_for("gate_opened")
    run.wait_paused()
    early = answer_gate(run.run_id, "deactivate", "carol", "approve", "before escalation")
    assert early.accepted is False, "the escalation group may answer only after escalation"
    run.wait_for("gate_escalated")
    run.wait_paused()
    assert answer_gate(run.run_id, "deactivate", "carol", "approve", "lead approves").accepted
    summary = run.result()
    assert summary.state == "Completed"
    assert sandbox.key_states()[key] == "alice: Inactive"


def test_failed_step_fails_the_run_with_its_name_and_reason() -> None:
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: failing, title: Failing, severity: low}
steps:
  - {id: first, phase: review, uses: core.log, with: {message: start}}
  - {id: broken, phase: contain, uses: core.fail, needs: [first], with: {message: "the API said no"}}
  - {id: later, phase: notify, uses: core.log, needs: [broken], with: {message: never}}
  - {id: side, phase: notify, uses: core.fail, on_failure: continue, with: {message: "side failure"}}
""")
    summary = run_playbook(pb, {}, launched_by="erin")
    assert summary.state == "Failed"
    assert summary.message == "step broken failed: ActionFailed: the API said no"
    states = {s.id: s.state for s in summary.steps}
    assert states == {"first": "completed", "broken": "failed", "later": "not_run", "side": "failed"}
    api_run = flow_run(summary.run_id)
    assert api_run.state.type.value == "FAILED"
    assert "step broken failed" in api_run.state.message


def test_for_each_maps_items_with_bounded_concurrency_and_keeps_order() -> None:
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: fan-out, title: Fan out, severity: low}
inputs:
  users: {type: array, items: {type: string}}
steps:
  - id: each
    phase: review
    uses: core.log
    for_each: ${{ inputs.users }}
    max_concurrency: 2
    with: {message: "user ${{ index }}: ${{ item | upper }}"}
  - id: total
    phase: notify
    uses: core.assert
    needs: [each]
    with:
      condition: ${{ steps.each.outputs | length == 5 }}
      message: five items expected
""")
    summary = run_playbook(pb, {"users": ["a", "b", "c", "d", "e"]}, launched_by="erin")
    assert summary.state == "Completed", summary.message
    each = next(s for s in summary.steps if s.id == "each")
    assert each.items == 5
    assert [o["message"] for o in each.outputs] == [f"user {i}: {u}" for i, u in enumerate("ABCDE")]


def test_bad_inputs_stop_the_run_before_it_starts() -> None:
    with pytest.raises(LaunchError) as info:
        run_playbook(FLAGSHIP, {"access_key_id": "not-a-key", "colour": "red"}, launched_by="erin")
    text = str(info.value)
    assert "input 'colour' is not declared" in text
    assert "input 'user_name' is required" in text
    assert "input 'access_key_id': 'not-a-key' does not match" in text
    with pytest.raises(LaunchError, match="looks like a credential"):
        run_playbook(
            FLAGSHIP,
            {
                "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                "user_name": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            },
        )


def test_alert_fills_inputs_and_alert_text_is_never_rendered_twice(sandbox: Any) -> None:
    import json

    from conftest import FIXTURES

    key = sandbox.keys["alice"][0]
    alert = json.loads((FIXTURES / "alerts" / "aws-health-risk-credentials-exposed.json").read_text())
    alert["detail"]["affectedEntities"][0]["entityValue"] = key
    alert["detail"]["eventDescription"][0]["latestDescription"] = "${{ run.launched_by }} {{ 7*7 }}"
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: alert-test, title: Alert, severity: high}
inputs:
  access_key_id: {type: string}
steps:
  - id: echo
    phase: review
    uses: core.log
    when: ${{ alert.confirmed }}
    with:
      message: >-
        ${{ alert.source }} ${{ inputs.access_key_id }}
        ${{ alert.raw.detail.eventDescription[0].latestDescription }}
""")
    summary = run_playbook(pb, {}, alert=alert, launched_by="erin")
    assert summary.state == "Completed"
    message = summary.steps[0].outputs["message"]
    assert message == f"aws.health {key} ${{{{ run.launched_by }}}} {{{{ 7*7 }}}}"


def test_secret_values_never_reach_the_prefect_logs_or_records() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    fake_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    pb = playbook(f"""\
apiVersion: stanch/v1
kind: Playbook
metadata: {{name: leak-test, title: Leak, severity: low}}
steps:
  - {{id: say, phase: review, uses: core.log, with: {{message: "the secret is {fake_secret}"}}}}
  - {{id: boom, phase: review, uses: core.fail, needs: [say], with: {{message: "failed with {fake_secret}"}}}}
""")
    summary = run_playbook(pb, {}, launched_by="erin")
    assert summary.state == "Failed"
    assert fake_secret not in summary.model_dump_json()
    text = ""  # logs reach the API in batches: poll
    deadline = time.monotonic() + 20
    with get_client(sync_client=True) as client:
        while "Step boom failed" not in text and time.monotonic() < deadline:
            time.sleep(0.5)
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(summary.run_id)])))
            text = "\n".join(log.message for log in logs)
        api_run = client.read_flow_run(UUID(summary.run_id))
    assert "the secret is ***" in text
    assert fake_secret not in text
    assert fake_secret not in (api_run.state.message or "")


def test_independent_steps_overlap_and_for_each_respects_max_concurrency() -> None:
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: timing, title: Timing, severity: low}
steps:
  - {id: a, phase: review, uses: core.wait, with: {seconds: 1}}
  - {id: b, phase: review, uses: core.wait, with: {seconds: 1}}
  - id: c
    phase: review
    uses: core.wait
    needs: [a, b]
    for_each: ${{ [1, 2, 3, 4] }}
    max_concurrency: 2
    with: {seconds: 0.6}
""")
    summary = run_playbook(pb, {}, launched_by="erin")
    assert summary.state == "Completed", summary.message
    a, b, c = summary.steps
    assert a.started_at < b.finished_at and b.started_at < a.finished_at, "a and b ran at the same time"
    assert c.started_at >= max(a.finished_at, b.finished_at)
    # How many of c's items were in flight at once, from the task runs' own start and end times in the API
    # (a structural check, not a stopwatch: the suite's timings belong in bench/).
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(summary.run_id)])))
    spans = [(r.start_time, r.end_time) for r in runs if r.name.startswith("c[")]
    assert len(spans) == 4 and all(start and end for start, end in spans), spans
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    in_flight = peak = 0
    for _, change in edges:
        in_flight += change
        peak = max(peak, in_flight)
    assert peak == 2, f"max_concurrency 2, yet {peak} items ran at once"


def test_a_large_fan_out_runs_in_chunks_and_keeps_each_items_outcome() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: big-fan-out, title: Big fan-out, severity: low}
inputs:
  values: {type: array, items: {type: integer}}
steps:
  - id: check
    phase: review
    uses: core.assert
    for_each: ${{ inputs.values }}
    max_concurrency: 2
    on_failure: continue
    with: {condition: "${{ item % 50 != 7 }}", message: "item ${{ index }} is bad"}
  - id: after
    phase: notify
    needs: [check]
    always: true
    uses: core.log
    with: {message: "${{ steps.check.outputs | selectattr('failed', 'defined') | list | length }} failed"}
""")
    summary = run_playbook(pb, {"values": list(range(100))}, launched_by="erin")
    check, after = summary.steps
    assert check.state == "failed" and check.items == 100
    assert sorted(check.failed_items) == [7, 57]
    assert check.outputs[7] == {"failed": True, "error": "ActionFailed: item 7 is bad"}
    assert check.outputs[8] == {"passed": True}
    assert after.outputs["message"] == "2 failed"
    assert summary.state == "Completed" and "2 of 100 items failed; first: item 7:" in summary.message
    # Task runs reach the server through Prefect's event stream, a moment after the flow returns: wait for them.
    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(summary.run_id)])))
        names = sorted(r.name for r in runs if r.name.startswith("check"))
        if len(names) >= 15 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(names) == 15, names  # chunks of ceil(100 / (2 slots x 8)) = 7 items
    assert "check[0-6]" in names


def test_a_slack_outage_never_fails_containment(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANCH_SANDBOX_SLACK_TOKEN", "xoxb-revoked-token-000000")  # every Slack call: invalid_auth
    key = sandbox.keys["alice"][0]
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: no-slack, title: No Slack, severity: high}
inputs:
  key: {type: string}
steps:
  - {id: contain, phase: contain, uses: aws.iam.deactivate_access_key, with: {access_key_id: "${{ inputs.key }}"}}
""")
    summary = run_playbook(pb, {"key": key}, launched_by="erin")
    assert summary.state == "Completed"
    assert sandbox.key_states()[key] == "alice: Inactive"
    assert "Slack notification(s) failed" in summary.message and "invalid_auth" in summary.message


def test_a_step_naming_an_unconfigured_account_stops_the_run_before_anything() -> None:
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: other-account, title: Other account, severity: low}
steps:
  - {id: first, phase: notify, uses: core.log, with: {message: never}}
  - id: there
    phase: review
    uses: aws.iam.list_access_keys
    aws: {account: "210987654321", region: eu-west-1}
    with: {user_name: someone}
""")
    summary = run_playbook(pb, {}, launched_by="erin")
    assert summary.state == "Failed"
    assert "step there: account 210987654321 is not configured under aws.accounts" in summary.message
    assert {s.id: s.state for s in summary.steps} == {"first": "not_run", "there": "not_run"}


@pytest.mark.parametrize("count", [100, 10])
def test_a_fan_out_item_that_outlives_the_step_timeout_times_out_and_the_rest_finish(count: int) -> None:
    """Large fan-outs (chunks of items per task) and small ones (a task per item) give `timeout` one meaning."""
    pb = playbook("""\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: slow-item, title: One slow item, severity: low}
inputs:
  values: {type: array, items: {type: integer}}
steps:
  - id: work
    phase: review
    uses: core.wait
    for_each: ${{ inputs.values }}
    max_concurrency: 4
    timeout: 1s
    retries: 1
    retry_delay: 0s
    on_failure: continue
    with: {seconds: "${{ 4 if item == 7 else 0 }}"}
""")
    summary = run_playbook(pb, {"values": list(range(count))}, launched_by="erin")
    (work,) = summary.steps
    assert work.items == count
    assert work.failed_items == [7]
    assert work.outputs[7] == {"failed": True, "error": "timed out after 1s (the step's timeout)"}
    assert all(o == {"seconds": 0.0} for i, o in enumerate(work.outputs) if i != 7)
    # two attempts of at most 1 s each (retries: 1), not the 4 s the item asked for twice
    assert work.duration is not None and work.duration < 6
