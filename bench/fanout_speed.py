"""Fan-out speed: rotating 500 vendor keys through the vendor playbook beside a hand-written thread pool.

Both do the same calls (Secrets Manager on the sandbox's moto server, the vendor API stand-in) at the same
concurrency (8), on fresh, equal sets of 500 secrets. Target: the playbook within 1.3x of the loop.

Run: .venv/bin/python bench/fanout_speed.py [--keys 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="stanch-bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.sandbox import Sandbox

CONCURRENCY = 8


def hand_written(box: Sandbox, vendor: str) -> int:
    """What a person would write: the same calls as aws.secrets.rotate_vendor_secret, in a thread pool."""
    import urllib.request

    urls = box.vendor_urls()
    sm = box.client("secretsmanager")
    admin = sm.get_secret_value(SecretId=f"vendors/{vendor}/admin-token", VersionStage="AWSCURRENT")["SecretString"]
    names = [
        s["Name"]
        for page in sm.get_paginator("list_secrets").paginate(Filters=[{"Key": "tag-value", "Values": [vendor]}])
        for s in page["SecretList"]
    ]

    def call(method: str, url: str, token: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 - loopback stand-in
            return json.loads(response.read() or b"null")

    def rotate(name: str) -> None:
        described = sm.describe_secret(SecretId=name)
        current = next(v for v, s in described["VersionIdsToStages"].items() if "AWSCURRENT" in s)
        old = json.loads(sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"])
        new = call("POST", urls["mint_url"], admin, {"name": name})
        version = sm.put_secret_value(SecretId=name, SecretString=json.dumps(new), VersionStages=["AWSPENDING"])["VersionId"]
        call("GET", urls["check_url"], new["api_key"])
        sm.update_secret_version_stage(
            SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=version, RemoveFromVersionId=current
        )
        sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=version)
        call("POST", urls["revoke_url"].replace("{key_id}", old["key_id"]), admin, {"key_id": old["key_id"]})
        sm.tag_resource(SecretId=name, Tags=[{"Key": "stanch:revoked-version", "Value": current}])

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(rotate, names))
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=500)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    from flows.engine.launch import run_playbook

    with Sandbox(separate_process=True) as box, prefect_test_harness(server_startup_timeout=60):
        names = [f"key-{i:04d}" for i in range(args.keys)]
        box.seed_vendor("bench-loop", "vendors/bench-loop/", names)
        box.seed_vendor("bench-flow", "vendors/bench-flow/", names)
        print(f"{args.keys} vendor keys per run, concurrency {CONCURRENCY}, sandbox moto + vendor stand-in")
        print("the engine's fan-out, measured on bench/fanout-playbook.yaml (the generic-HTTP vendor playbook as it was")
        print("before inventories: one mint/check/revoke step over many secrets, the shape a fan-out bench needs)\n")

        started = time.perf_counter()
        done = hand_written(box, "bench-loop")
        loop = time.perf_counter() - started

        started = time.perf_counter()
        # the vendor playbook as it was before inventories: one generic mint/check/revoke fan-out over tagged secrets
        summary = run_playbook(
            str(Path(__file__).with_name("fanout-playbook.yaml")),
            {"vendor": "bench-flow", "admin_token_secret_id": "vendors/bench-flow/admin-token", **box.vendor_urls()},
            launched_by="bench",
        )
        flow = time.perf_counter() - started
        rotate = next(s for s in summary.steps if s.id == "rotate")
        rotated = sum(1 for o in rotate.outputs or [] if o.get("status") == "rotated")
        fan_out = rotate.duration or 0.0

    print(f"{'runner':<44} {'seconds':>8} {'keys/s':>8}")
    print(f"{'hand-written ThreadPoolExecutor loop':<44} {loop:>8.2f} {done / loop:>8.1f}")
    print(f"{'playbook: the rotate fan-out step':<44} {fan_out:>8.2f} {rotated / fan_out:>8.1f}")
    print(f"{'playbook: whole flow run (find, notify...)':<44} {flow:>8.2f} {rotated / flow:>8.1f}")
    print(f"\n{rotated} rotated by the playbook ({summary.state}); {done} by the loop")
    print(f"fan-out vs loop: {fan_out / loop:.2f}x (target: at most 1.3x); whole run vs loop: {flow / loop:.2f}x")


if __name__ == "__main__":
    main()
