"""The embedded sandbox is seeded from its fixture over real protocols, and resets to it."""

from __future__ import annotations

import gzip
import json
import re
from typing import Any


def test_sandbox_is_seeded_with_users_keys_secrets_and_cloudtrail_files(sandbox: Any) -> None:
    states = sandbox.key_states()
    assert sorted(sandbox.keys) == ["alice", "ci-deployer", "data-pipeline", "svc-backup"]
    assert len(states) == 5 and all(s.endswith("Active") for s in states.values())
    sm = sandbox.client("secretsmanager")
    secret = sm.describe_secret(SecretId="vendors/acme-ai/chat-service")
    assert {"Key": "vendor", "Value": "acme-ai"} in secret["Tags"]
    value = json.loads(sm.get_secret_value(SecretId="vendors/acme-ai/chat-service")["SecretString"])
    assert sandbox.vendor.is_active(value["api_key"]), "the stored vendor key works at the vendor"
    s3 = sandbox.client("s3")
    objects = s3.list_objects_v2(Bucket=sandbox.cloudtrail_bucket)["Contents"]
    obj = next(o for o in objects if "_sandbox0000" in o["Key"])
    assert len(objects) > 10, "the scenario's files are there too"
    assert re.fullmatch(
        r"AWSLogs/123456789012/CloudTrail/us-east-1/2024/11/30/"
        r"123456789012_CloudTrail_us-east-1_20241130T0843Z_sandbox0000\.json\.gz",
        obj["Key"],
    ), obj["Key"]
    body = json.loads(gzip.decompress(s3.get_object(Bucket=sandbox.cloudtrail_bucket, Key=obj["Key"])["Body"].read()))
    assert [r["eventName"] for r in body["Records"]] == ["GetFederationToken", "GetCallerIdentity"]


def test_reset_returns_to_the_fixture(sandbox: Any) -> None:
    key = sandbox.keys["alice"][0]
    sandbox.client("iam").update_access_key(UserName="alice", AccessKeyId=key, Status="Inactive")
    sandbox.reset()
    assert key not in sandbox.key_states(), "keys are created anew"
    assert all(s.endswith("Active") for s in sandbox.key_states().values())
