"""Approval latency: from the second approver's Slack click to the gated step having run.

Each run is a one-step playbook gated with `min_approvals: 2`. Alice clicks Approve, then Bob; the figure is the
time from the start of Bob's signed click (sent to the approval service over HTTP, as Slack sends it) until the
gated step has finished. A run reads its gates' answers every second; the baseline is the same run reading them
every 10 s (Prefect's default pause poll). Target: within 2 s of the second click.

Everything is local and real: a Prefect API (the test harness, SQLite), the sandbox's moto server and Slack
stand-in, and `stanch serve`'s app on a loopback port.

Run: .venv/bin/python bench/approval_latency.py [--runs 10] [--baseline-runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="stanch-bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.sandbox import Sandbox

CHANNEL = "stanch-incidents"
APPROVERS = {"alice": "U0ALICE", "bob": "U0BOB"}
PLAYBOOK = """\
apiVersion: stanch/v1
kind: Playbook
metadata: {name: latency, title: Approval latency, severity: high}
inputs:
  access_key_id: {type: string}
approvers:
  oncall: [alice, bob]
steps:
  - id: deactivate
    phase: contain
    uses: aws.iam.deactivate_access_key
    approval: {from: oncall, timeout: 5m, min_approvals: 2}
    with: {access_key_id: "${{ inputs.access_key_id }}"}
"""


def serve(settings: Any) -> str:
    from flows.approvals.service import create_app, start_in_thread

    url, _ = start_in_thread(create_app(settings))
    return url


def click(box: Sandbox, service: str, run_id: str, user: str) -> dict[str, Any]:
    """Approve, as a signed Slack block_actions interaction."""
    assert box.slack is not None
    channel_id = next(c.id for c in box.slack.channels.values() if c.name == CHANNEL)
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"},
        "channel": {"id": channel_id, "name": CHANNEL},
        "state": {"values": {}},
        "actions": [
            {"action_id": "stanch_approve", "value": json.dumps({"run_id": run_id, "gate": "deactivate"}), "type": "button"}
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(box.slack_signing_secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}
    request = urllib.request.Request(f"{service}/slack/interactions", data=body, method="POST", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback service
        return json.loads(response.read())


def paused(run_id: str) -> None:
    """Until the run lists its gate as open (where answers find it)."""
    from flows.approvals.client import open_gates

    while not open_gates(run_id):
        time.sleep(0.05)


def one_run(box: Sandbox, service: str, playbook: Any) -> float:
    from flows.engine.launch import run_playbook

    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    key = box.keys["alice"][0]
    done: dict[str, Any] = {}

    def target() -> None:
        done["summary"] = run_playbook(
            playbook, {"access_key_id": key}, launched_by="erin", observer=lambda k, d: events.put((k, d))
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    run_id = ""
    while True:
        kind, data = events.get(timeout=60)
        if kind == "run_started":
            run_id = data["run_id"]
        if kind == "gate_opened":
            break
    paused(run_id)
    assert click(box, service, run_id, APPROVERS["alice"])["accepted"] is not False  # None: acked, verdict later
    paused(run_id)
    clicked = time.perf_counter()
    assert click(box, service, run_id, APPROVERS["bob"])["accepted"] is not False
    while events.get(timeout=60)[0] != "step_finished":
        pass
    elapsed = time.perf_counter() - clicked
    thread.join(60)
    assert done["summary"].state == "Completed", done["summary"].message
    box.client("iam").update_access_key(UserName="alice", AccessKeyId=key, Status="Active")  # ready for the next run
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline-runs", type=int, default=3)
    args = parser.parse_args()

    import yaml
    from prefect.testing.utilities import prefect_test_harness

    from flows.config import load_settings
    from flows.engine import gates
    from flows.language.validate import check_text

    config = Path(tempfile.mkdtemp(prefix="stanch-bench-config-")) / "stanch.yaml"
    config.write_text(yaml.safe_dump({"approvers": {name: {"slack_user_id": uid} for name, uid in APPROVERS.items()}}))
    os.environ["STANCH_CONFIG"] = str(config)
    playbook = check_text(PLAYBOOK, "latency.yaml").playbook
    assert playbook is not None

    with Sandbox() as box, prefect_test_harness(server_startup_timeout=60):
        service = serve(load_settings())
        stanch = [one_run(box, service, playbook) for _ in range(args.runs)]
        ours = gates.POLL_SECONDS
        gates.POLL_SECONDS = 10  # Prefect's default pause poll interval
        try:
            default = [one_run(box, service, playbook) for _ in range(args.baseline_runs)]
        finally:
            gates.POLL_SECONDS = ours

    def row(label: str, figures: list[float]) -> str:
        return f"{label:<40} {len(figures):>5} {statistics.median(figures):>8.2f} {min(figures):>8.2f} {max(figures):>8.2f}"

    print(f"second Slack click -> gated step finished (seconds), {os.cpu_count()} cores\n")
    print(f"{'gate poll':<40} {'runs':>5} {'median':>8} {'min':>8} {'max':>8}")
    print(row(f"Stanch gates ({ours} s poll)", stanch))
    print(row("baseline: Prefect's default 10 s poll", default))
    within = sum(1 for s in stanch if s < 2.0)
    print(f"\n{within} of {len(stanch)} runs moved on within 2 s of the second click (target: all)")


if __name__ == "__main__":
    main()
