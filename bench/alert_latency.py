"""Alert latency: from an AWS Health exposed-key alert sent to `stanch serve` to the key being Inactive.

20 alerts for 20 different keys, posted one after another to POST /alerts/eventbridge (each run's key reaches
Inactive before the next is posted); each figure is the time from sending the alert (the service's checks,
enrichment and starting the run included; it may answer only after the key is already Inactive) to the key's
status reading Inactive in the sandbox's moto server. Routes, in one run:
- warm runner: the service runs the playbook in its own process, Prefect and the playbooks loaded, each run
  recorded as a flow run on the Prefect server (checked);
- deployment: the service creates a deployment run and a `prefect worker` (process pool, polling every second)
  starts it in a new process;
- baseline: a bare boto3 loop deactivating the same number of keys.
Target on a 2-core machine: warm runner p50 at most 1 s and p95 at most 2 s.

Everything is local and real: a Prefect server (SQLite), the sandbox's moto server and Slack stand-in, the
service's app on a loopback port. The playbook is the flagship with the trigger block proposed for it.

Run: .venv/bin/python bench/alert_latency.py [--alerts 20] [--skip-deployment]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="stanch-bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.sandbox import Sandbox  # noqa: E402

TOKEN = "bench-eventbridge-token"  # noqa: S105 - the bench's own
P50_TARGET, P95_TARGET = 1.0, 2.0


def playbook_dir() -> Path:
    """The flagship with its review pointed past the sandbox's trail (the review is not what this measures)."""
    from flows.sandbox import flagship_without_review

    folder = Path(tempfile.mkdtemp(prefix="stanch-bench-playbooks-"))
    (folder / "aws-access-key-compromise.yaml").write_text(flagship_without_review())
    return folder


def serve(settings: Any) -> str:
    from flows.approvals.service import create_app, start_in_thread

    url, _ = start_in_thread(create_app(settings))
    return url


def make_keys(box: Sandbox, prefix: str, count: int) -> list[tuple[str, str]]:
    iam = box.client("iam")
    keys = []
    for n in range(count):
        user = f"{prefix}-{n:02d}"
        iam.create_user(UserName=user)
        keys.append((user, iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]))
    return keys


def health_alert(key_id: str, event_id: str) -> bytes:
    alert = json.loads(
        (ROOT / "tests" / "fixtures" / "alerts" / "intake" / "aws-health-risk-credentials-exposed.json").read_text()
    )
    alert["id"] = event_id
    alert["detail"]["affectedEntities"][0]["entityValue"] = key_id
    return json.dumps(alert).encode()


def post(service: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the loopback service
        f"{service}/alerts/eventbridge", data=body, headers={"X-Stanch-Token": TOKEN, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def wait_inactive(iam: Any, user: str, key: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        if any(k["AccessKeyId"] == key and k["Status"] == "Inactive" for k in found):
            return
        time.sleep(0.01)
    raise SystemExit(f"{key} of {user} was not Inactive within {timeout}s")


def wait_final(run_id: str, timeout: float = 120) -> str:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(UUID(run_id)).state
            if state is not None and state.is_final():
                return str(state.name)
            time.sleep(0.1)
    raise SystemExit(f"run {run_id} did not end within {timeout}s")


def measure(box: Sandbox, service: str, keys: list[tuple[str, str]], label: str) -> list[float]:
    iam = box.client("iam")
    times = []
    for n, (user, key) in enumerate(keys):
        # from the moment the alert is sent: the service's own work (checks, enrichment, starting the run) counts
        sent = time.monotonic()
        answer = post(service, health_alert(key, f"{label}-{n}"))
        if not answer.get("accepted") or not answer.get("run_id"):
            raise SystemExit(f"{label}: alert {n} was not accepted: {answer}")
        wait_inactive(iam, user, key)
        times.append(time.monotonic() - sent)
        state = wait_final(answer["run_id"])  # recorded on the server, and over before the next alert
        if state != "Completed":
            raise SystemExit(f"{label}: run {answer['run_id']} ended {state}")
    return times


def baseline(box: Sandbox, keys: list[tuple[str, str]]) -> list[float]:
    iam = box.client("iam")
    times = []
    for user, key in keys:
        start = time.monotonic()
        iam.update_access_key(UserName=user, AccessKeyId=key, Status="Inactive")
        times.append(time.monotonic() - start)
    return times


def deploy_and_start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name="stanch-process", type="process"))
    prefect = str(Path(sys.executable).with_name("prefect"))
    subprocess.run([prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, check=True, capture_output=True)
    return subprocess.Popen(
        [prefect, "worker", "start", "--pool", "stanch-process", "--type", "process"],
        cwd=ROOT,
        env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def summary(label: str, times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"{label:<14} n={len(times):<3} p50 {p50 * 1000:7.0f} ms  p95 {p95 * 1000:7.0f} ms  max {ordered[-1] * 1000:7.0f} ms"
    )
    return {"p50": p50, "p95": p95, "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--skip-deployment", action="store_true", help="Measure the warm runner and the baseline only.")
    args = parser.parse_args()

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows.config import load_settings

    folder = playbook_dir()
    with prefect_test_harness(server_startup_timeout=60), Sandbox() as box:
        os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        os.environ["STANCH_BENCH_TOKEN"] = TOKEN
        os.environ["STANCH_INTAKE__EVENTBRIDGE_TOKEN"] = '{"env": "STANCH_BENCH_TOKEN"}'  # noqa: S105 - a reference
        os.environ["STANCH_PLAYBOOK_DIRS"] = json.dumps([str(folder)])
        os.environ["STANCH_INTAKE__SANDBOX"] = "true"  # sandbox runs: the post-containment watch is 3 s, not minutes
        os.environ["STANCH_APPROVALS__STATE_PATH"] = str(folder / "service.sqlite3")
        results: dict[str, dict[str, float]] = {}
        warm = serve(load_settings())
        measure(box, warm, make_keys(box, "warmup", 1), "warmup")  # the first run pays for Prefect's first calls
        warm_times = measure(box, warm, make_keys(box, "warm", args.alerts), "warm")
        base_times = baseline(box, make_keys(box, "boto3", args.alerts))
        worker = None
        deploy_times: list[float] = []
        if not args.skip_deployment:
            os.environ["STANCH_INTAKE__ROUTE"] = "deployment"
            os.environ["STANCH_APPROVALS__STATE_PATH"] = str(folder / "service-deployment.sqlite3")
            worker = deploy_and_start_worker(dict(os.environ))
            try:
                deployed = serve(load_settings())
                deploy_times = measure(box, deployed, make_keys(box, "deploy", args.alerts), "deploy")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(20)
        print(f"\nalert sent -> key Inactive, {args.alerts} alerts, one after another")
        results["warm runner"] = summary("warm runner", warm_times)
        if deploy_times:
            results["deployment"] = summary("deployment", deploy_times)
        results["boto3 baseline"] = summary("boto3 baseline", base_times)
        ok = results["warm runner"]["p50"] <= P50_TARGET and results["warm runner"]["p95"] <= P95_TARGET
        print(f"target: warm runner p50 <= {P50_TARGET:.0f} s and p95 <= {P95_TARGET:.0f} s: {'met' if ok else 'NOT met'}")
        print(json.dumps({k: {m: round(v, 4) for m, v in r.items()} for k, r in results.items()}))


if __name__ == "__main__":
    main()
