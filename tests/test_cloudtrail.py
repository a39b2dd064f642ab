"""Log review: events made with a key and its derived keys, from S3, local files and LookupEvents."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from conftest import FIXTURES, STANCH
from test_actions_aws import make_ctx

from flows.sandbox import trail
from integrations.aws import cloudtrail
from integrations.aws import cloudtrail_review as engine

STRATUS = FIXTURES / "cloudtrail" / "stratus-sts-federation-token.json"
LEAKED = "AKIA6V1GNZTT65XQH36M"
DERIVED = "ASIASTJKC5GCM7ZE6LUP"


def test_the_reference_sample_yields_the_derived_federation_key() -> None:
    scanner = engine.Scanner(engine.local_units(STRATUS))
    report = engine.review([LEAKED], scanner=scanner)
    assert report.events_total == 2
    assert [(d.access_key_id, d.parent, d.via) for d in report.derived_keys] == [(DERIVED, LEAKED, "GetFederationToken")]
    assert report.events_by_name == {"sts:GetFederationToken": 1, "sts:GetCallerIdentity": 1}
    [finding] = report.findings["persistence"]
    assert finding.event_id == "6e882b9d-2af8-4c67-b91f-aeac6a0e5e70"
    assert report.source_ips[0].ip == "203.0.113.5" and report.source_ips[0].count == 2
    assert "sessionToken" not in json.dumps(report.to_json())


def test_sandbox_trail_in_s3_review_finds_the_attack_and_what_to_contain(sandbox: Any) -> None:
    scenario = sandbox.scenario
    report = cloudtrail.review_key_activity(
        make_ctx(sandbox, False), access_key_ids=[scenario["key"]], source=f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/"
    )
    assert report.events_total == 12, "the attack's events only, none of the noise"
    assert {d.access_key_id for d in report.derived_keys} == {scenario["session_key"], scenario["backdoor_key"]}
    names = {c: sorted(f.event_name for f in items) for c, items in report.findings.items()}
    assert names == {
        "persistence": ["AttachUserPolicy", "CreateAccessKey", "CreateLoginProfile", "CreateUser", "GetFederationToken"],
        "defense_evasion": ["StopLogging"],
        "exfiltration": ["ModifySnapshotAttribute"],
        "credential_access": ["GetSecretValue"],
        "network_exposure": ["AuthorizeSecurityGroupIngress"],
    }
    [stop] = report.findings["defense_evasion"]
    assert stop.error_code == "AccessDenied"
    contain = report.to_json()["contain"]
    by_kind = {(e["kind"], e["event_id"]): e for entries in contain.values() for e in entries}
    assert {kind for kind, _ in by_kind} == {
        "session",
        "access_key",
        "login_profile",
        "user",
        "attached_policy",
        "secret",
    }, "the failed StopLogging stays a finding and never becomes an entry; a rule logged without a source names none"
    assert all(e["undone_by"] is None for e in by_kind.values())
    [session] = contain["credentials"][:1]
    assert session["access_key_id"] == scenario["session_key"] and session["via"] == "GetFederationToken"
    assert [(e["kind"], e["user_name"]) for e in contain["principals"][:1]] == [("user", trail.BACKDOOR_USER)]
    [key] = [e for e in contain["credentials"] if e["kind"] == "access_key"]
    assert key["access_key_id"] == scenario["backdoor_key"] and key["user_name"] == trail.BACKDOOR_USER
    [attached] = [e for e in contain["principals"] if e["kind"] == "attached_policy"]
    assert attached["principal"] == f"user/{trail.BACKDOOR_USER}"
    assert attached["policy_arn"] == f"arn:aws:iam::123456789012:policy/{trail.BACKDOOR_POLICY}"
    assert [ip.ip for ip in report.source_ips] == ["203.0.113.5", "198.51.100.23"]
    assert report.files_scanned > 10


def test_the_window_limits_the_review(sandbox: Any) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = cloudtrail.review_key_activity(
        make_ctx(sandbox, False),
        access_key_ids=[sandbox.scenario["key"]],
        source=f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/",
        since=later,
    )
    assert report.events_total == 0 and report.findings == {}


def test_local_directories_of_gz_records_and_bare_arrays(tmp_path: Path) -> None:
    start = datetime(2026, 11, 20, 9, tzinfo=UTC)
    story, made = trail.attack_story("AKIAEXAMPLEEXPOSED01", "ci-deployer", start)
    trail_dir = tmp_path / "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20"
    trail_dir.mkdir(parents=True)
    engine.write_corpus_file(trail_dir / "a.json.gz", story[:6] + trail.noise(200, start, timedelta(hours=1)))
    (trail_dir / "b.json").write_text(json.dumps(story[6:]))  # a bare array, not gzipped
    report = engine.review(["AKIAEXAMPLEEXPOSED01"], scanner=engine.Scanner(engine.local_units(tmp_path), workers=2))
    assert report.events_total == 12
    assert [(e.model_extra or {})["user_name"] for e in report.contain.principals if e.kind == "user"] == ["svc-backup"]
    windowed = engine.review(
        ["AKIAEXAMPLEEXPOSED01"],
        since=engine.normalize_time("2026-11-20T09:00:00Z"),
        until=engine.normalize_time("2026-11-20T09:07:00Z"),
        scanner=engine.Scanner(engine.local_units(tmp_path)),
    )
    assert [e for e in windowed.events_by_name] == ["sts:GetCallerIdentity", "s3:ListBuckets", "sts:GetFederationToken"]
    assert made["session_key"] in {d.access_key_id for d in windowed.derived_keys}


def test_lookup_events_pages_at_two_calls_a_second_and_follows_derived_keys() -> None:
    records = json.loads(STRATUS.read_text())
    client = boto3.client("cloudtrail", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")

    def event(record: dict[str, Any]) -> dict[str, Any]:
        return {"EventId": record["eventID"], "EventName": record["eventName"], "CloudTrailEvent": json.dumps(record)}

    with Stubber(client) as stub:
        base = {"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": LEAKED}], "MaxResults": 50}
        stub.add_response("lookup_events", {"Events": [], "NextToken": "page-2"}, base)
        stub.add_response("lookup_events", {"Events": [event(records[0])]}, {**base, "NextToken": "page-2"})
        derived = {"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": DERIVED}], "MaxResults": 50}
        stub.add_response("lookup_events", {"Events": [event(records[1])]}, derived)
        started = time.monotonic()
        report = engine.review([LEAKED], lookup=client)
        elapsed = time.monotonic() - started
        stub.assert_no_pending_responses()
    assert report.events_total == 2
    assert [d.access_key_id for d in report.derived_keys] == [DERIVED]
    assert elapsed >= 0.9, "three calls at most two a second"


def test_review_logs_command_formats_and_errors(tmp_path: Path) -> None:
    shutil.copy(STRATUS, tmp_path / "one.json")
    with gzip.open(tmp_path / "two.json.gz", "wt") as handle:
        json.dump({"Records": []}, handle)
    run = ["review-logs", "--source", str(tmp_path), "--access-key-id", LEAKED]
    as_json = subprocess.run([STANCH, *run, "--format", "json"], capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(as_json.stdout)
    assert report["schema"] == "stanch.review/v2"
    assert report["events_total"] == 2 and report["files_scanned"] == 2
    assert set(report) >= {"derived_keys", "source_ips", "findings", "contain", "events_by_name", "error_codes"}
    as_md = subprocess.run([STANCH, *run, "--format", "markdown"], capture_output=True, text=True, timeout=60, check=True)
    assert "## Persistence" in as_md.stdout and "| 203.0.113.5 | 2 |" in as_md.stdout
    table = subprocess.run([STANCH, *run], capture_output=True, text=True, timeout=60, check=True)
    assert "Derived credentials" in table.stdout
    missing = subprocess.run(
        [STANCH, "review-logs", "--source", str(tmp_path / "nope"), "--access-key-id", LEAKED],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr and "Traceback" not in missing.stderr
    bad = subprocess.run(
        [STANCH, "review-logs", "--source", str(tmp_path), "--access-key-id", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "is not an access key id" in bad.stderr
    bad_time = subprocess.run(
        [STANCH, *run, "--since", "yesterday"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad_time.returncode == 2 and "'yesterday' is not a time" in bad_time.stderr


@pytest.mark.parametrize("value", ["2024-11-30", "2024-11-30T08:43:17Z", "2024-11-30T09:43:17+01:00"])
def test_times_are_normalised_to_cloudtrail_form(value: str) -> None:
    assert engine.normalize_time(value) in ("2024-11-30T00:00:00Z", "2024-11-30T08:43:17Z")


# ---------------------------------------------------------------- CloudTrail's documented record shapes

ACCOUNT = "742491224508"
ROLE_KEY = "ASIAROLESESSION00001"
ENCODED_KEY = "ASIAENCODEDRESPONSE1"


def _shaped(n: int, name: str, source: str, identity: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A record as CloudTrail writes it; `fields` adds or overrides (None drops a field)."""
    base: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": f"2024-11-30T09:{n:02d}:00Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.5",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": None,
        "responseElements": None,
        "requestID": f"00000000-0000-4000-8000-{n:012d}",
        "eventID": f"11111111-0000-4000-8000-{n:012d}",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None or k in ("requestParameters", "responseElements")}


def _records_of_every_shape() -> tuple[list[dict[str, Any]], dict[str, str]]:
    user = {
        "type": "IAMUser", "principalId": "AIDAN7SEM6PEVTNQR8M4", "arn": f"arn:aws:iam::{ACCOUNT}:user/ci-deployer",
        "accountId": ACCOUNT, "accessKeyId": LEAKED, "userName": "ci-deployer",
    }  # fmt: skip
    session_context = {
        "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "arn": f"arn:aws:iam::{ACCOUNT}:role/ops",
                          "accountId": ACCOUNT, "userName": "ops"},
        "webIdFederationData": {}, "attributes": {"creationDate": "2024-11-30T09:02:00Z", "mfaAuthenticated": "false"},
    }  # fmt: skip
    assumed = {
        "type": "AssumedRole", "principalId": "AROAEXAMPLE:ops", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/ops",
        "accountId": ACCOUNT, "accessKeyId": ROLE_KEY, "sessionContext": session_context,
    }  # fmt: skip
    federated = {
        "type": "FederatedUser", "principalId": f"{ACCOUNT}:ops", "arn": f"arn:aws:sts::{ACCOUNT}:federated-user/ops",
        "accountId": ACCOUNT, "accessKeyId": ENCODED_KEY,
        "sessionContext": {**session_context, "sessionIssuer": {"type": "IAMUser", "arn": user["arn"],
                                                                 "userName": "ci-deployer", "accountId": ACCOUNT}},
    }  # fmt: skip
    service = {"type": "AWSService", "invokedBy": "cloudtrail.amazonaws.com"}
    root = {"type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root", "accountId": ACCOUNT,
            "accessKeyId": "ASIAROOTCONSOLE00001"}  # fmt: skip
    records = [
        # eventVersion 1.02: no recipientAccountId, eventCategory, managementEvent, readOnly; null parameters
        _shaped(1, "ListBuckets", "s3.amazonaws.com", user, eventVersion="1.02", recipientAccountId=None,
                eventCategory=None, managementEvent=None, readOnly=None),
        _shaped(2, "AssumeRole", "sts.amazonaws.com", user,
                requestParameters={"roleArn": f"arn:aws:iam::{ACCOUNT}:role/ops", "roleSessionName": "ops"},
                responseElements={"credentials": {"accessKeyId": ROLE_KEY, "sessionToken": "x", "expiration": "y"},
                                  "assumedRoleUser": {"arn": assumed["arn"], "assumedRoleId": "AROAEXAMPLE:ops"}}),
        # 1.09 adds tlsDetails; a failure carries errorCode and errorMessage and a null responseElements
        _shaped(3, "CreateUser", "iam.amazonaws.com", assumed, eventVersion="1.09", errorCode="AccessDenied",
                errorMessage="User: ... is not authorized to perform: iam:CreateUser",
                requestParameters={"userName": "svc-denied"},
                tlsDetails={"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256"}),
        # an error code without a message (some services log only the code)
        _shaped(4, "GetBucketPolicy", "s3.amazonaws.com", assumed, errorCode="NoSuchBucketPolicy",
                requestParameters={"bucketName": "b", "policy": ""}),
        # responseElements logged as JSON text: decoded, its secret dropped, its key followed
        _shaped(5, "GetFederationToken", "sts.amazonaws.com", user, eventVersion="1.10",
                requestParameters={"name": "ops"},
                responseElements=json.dumps({"credentials": {"accessKeyId": ENCODED_KEY, "sessionToken": "secret!"}}),
                addendum={"reason": "DELIVERY_DELAY", "updatedFields": "", "originalRequestID": "", "originalEventID": ""}),
        _shaped(6, "CreateUser", "iam.amazonaws.com", federated, eventVersion="1.11",
                requestParameters={"userName": "svc-federated"}, responseElements={"user": {"userName": "svc-federated"}},
                sessionCredentialFromConsole="false"),
        # a string that is not JSON text counts as no response
        _shaped(7, "PutBucketAcl", "s3.amazonaws.com", assumed, requestParameters={"bucketName": "c", "acl": [""]},
                responseElements="Success"),
        # not ours: an AWS service acting, and the account's root
        _shaped(8, "AssumeRole", "sts.amazonaws.com", service, requestParameters={"roleArn": "arn:x"}),
        _shaped(9, "ConsoleLogin", "signin.amazonaws.com", root, eventType="AwsConsoleSignIn",
                responseElements={"ConsoleLogin": "Success"}),
    ]  # fmt: skip
    insight = {
        "eventVersion": "1.07", "eventTime": "2024-11-30T09:10:00Z", "awsRegion": "us-east-1",
        "eventID": "22222222-0000-4000-8000-000000000001", "eventType": "AwsCloudTrailInsight",
        "recipientAccountId": ACCOUNT, "sharedEventID": "33333333-0000-4000-8000-000000000001",
        "insightDetails": {"state": "Start", "eventSource": "iam.amazonaws.com", "eventName": "CreateUser",
                           "insightType": "ApiCallRateInsight",
                           "insightContext": {"attributions": [{"attribute": "userIdentityArn", "insight": [
                               {"value": user["arn"], "average": 5.0}], "baseline": []}]}},
        "eventCategory": "Insight",
    }  # fmt: skip
    digest = {
        "awsAccountId": ACCOUNT, "digestStartTime": "2024-11-30T08:00:00Z", "digestEndTime": "2024-11-30T09:00:00Z",
        "digestS3Bucket": "trail", "digestS3Object": "AWSLogs/x/CloudTrail-Digest/us-east-1/2024/11/30/d.json.gz",
        "digestPublicKeyFingerprint": "0f", "digestSignatureAlgorithm": "SHA256withRSA",
        "logFiles": [{"s3Bucket": "trail", "s3Object": "AWSLogs/x/CloudTrail/us-east-1/2024/11/30/f.json.gz",
                      "hashValue": "ab", "hashAlgorithm": "SHA-256"}],
    }  # fmt: skip
    return records, {"insight": json.dumps({"Records": [insight]}), "digest": json.dumps(digest)}


def test_the_documented_record_shapes_are_read_and_insights_and_digests_are_left_out(tmp_path: Path) -> None:
    records, others = _records_of_every_shape()
    logs = tmp_path / "AWSLogs" / ACCOUNT
    engine.write_corpus_file(logs / "CloudTrail/us-east-1/2024/11/30/f.json.gz", records)
    (logs / "CloudTrail-Insight/us-east-1/2024/11/30").mkdir(parents=True)
    (logs / "CloudTrail-Insight/us-east-1/2024/11/30/i.json.gz").write_bytes(gzip.compress(others["insight"].encode()))
    (logs / "CloudTrail-Digest/us-east-1/2024/11/30").mkdir(parents=True)
    (logs / "CloudTrail-Digest/us-east-1/2024/11/30/d.json.gz").write_bytes(gzip.compress(others["digest"].encode()))
    report = engine.review([LEAKED, "user/ci-deployer"], scanner=engine.Scanner(engine.local_units(tmp_path))).to_json()
    assert not report["partial"] and report["records_skipped"] == [] and report["files_skipped"] == []
    assert report["files_scanned"] == 3, "the insight file names the user, so it is parsed: its record is no caller's"
    ours = {r["eventID"] for r in records[:7]}
    assert report["events_total"] == 7, "the AWS service's and the root's records, and the insight, are not the key's"
    assert {d["access_key_id"]: d["via"] for d in report["derived_keys"]} == {
        ROLE_KEY: "AssumeRole",
        ENCODED_KEY: "GetFederationToken",
    }, "keys in an object and in JSON text are both followed"
    assert "secret!" not in json.dumps(report)
    findings = {f["event_id"]: f for category in report["findings"].values() for f in category}
    assert set(findings) <= ours
    assert findings[records[2]["eventID"]]["error_code"] == "AccessDenied"
    contain = report["contain"]
    users = [e["user_name"] for e in contain["principals"] if e["kind"] == "user"]
    assert users == ["svc-federated"], "a failed CreateUser is a finding, never an entry"
    sessions = {e["kind"]: e for e in contain["credentials"]}
    assert sessions["assumed_role"]["role_name"] == "ops" and sessions["session"]["user_name"] == "ci-deployer"
    assert report["events_by_name"]["s3:PutBucketAcl"] == 1 and not [e for e in contain["exposure"] if e.get("bucket")]


def test_review_logs_looks_up_every_configured_region() -> None:
    """moto has no LookupEvents: the clients the command pages through are checked (the paging over regions is
    tested with Stubber in test_containment.test_lookup_reviews_every_configured_region)."""
    from types import SimpleNamespace

    from flows.cli.review import lookup_in_regions
    from integrations.context import AwsClients

    clients = AwsClients(region="us-east-1", endpoint_url="http://127.0.0.1:9")
    configured = SimpleNamespace(regions=["us-east-1", "eu-west-1", "us-east-1"])
    lookup = lookup_in_regions(clients, configured)
    assert [c.meta.region_name for c in lookup.clients] == ["us-east-1", "eu-west-1"]
    asked = lookup_in_regions(clients, configured, ["ap-southeast-2"])
    assert [c.meta.region_name for c in asked.clients] == ["ap-southeast-2"]
    fallback = lookup_in_regions(clients, SimpleNamespace(regions=[]))
    assert [c.meta.region_name for c in fallback.clients] == ["us-east-1"]
    help_text = subprocess.run([STANCH, "review-logs", "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "--region" in help_text.stdout


def test_a_principal_of_another_account_naming_ours_in_its_path_is_outside() -> None:
    from integrations.aws.cloudtrail_review.analysis import outside_principals

    ours = "123456789012"
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {
                    "AWS": [
                        f"arn:aws:iam::999988887777:role/{ours}-x",
                        f"arn:aws:iam::{ours}:root",
                        ours,
                        "999988887777",
                    ]
                },
            }
        ]
    }
    assert outside_principals(policy, ours) == ["999988887777", f"arn:aws:iam::999988887777:role/{ours}-x"]


def test_bytes_scanned_is_what_every_file_inflated_to_in_each_scanner(tmp_path: Path) -> None:
    """`bytes_scanned`: the whole inflated size of every file read, once each (also the files searched again for
    a derived key), alike in the classic scanner, the fast path in-process and on worker processes."""
    from integrations.aws.cloudtrail_review.scanner import ClassicScanner

    start = datetime(2026, 11, 20, 9, tzinfo=UTC)
    story, _ = trail.attack_story("AKIAEXAMPLEEXPOSED01", "ci-deployer", start)
    trail_dir = tmp_path / "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20"
    trail_dir.mkdir(parents=True)
    inflated = 0
    for index in range(6):  # the story in the fourth file; the derived keys are used in the later ones
        at = start + timedelta(minutes=5 * index)
        records = trail.noise(400, at, timedelta(minutes=5), seed=index) + (story if index == 3 else [])
        path = trail_dir / f"f{index}.json.gz"
        engine.write_corpus_file(path, records)
        inflated += len(gzip.decompress(path.read_bytes()))
    (trail_dir / "plain.json").write_text(json.dumps({"Records": trail.noise(50, start, timedelta(minutes=5))}))
    inflated += (trail_dir / "plain.json").stat().st_size

    for scanner in (
        ClassicScanner(engine.local_units(tmp_path), workers=1),
        engine.Scanner(engine.local_units(tmp_path), processes=False),
        engine.Scanner(engine.local_units(tmp_path), processes=True),
    ):
        report = engine.review(["AKIAEXAMPLEEXPOSED01"], scanner=scanner)
        assert report.events_total == len(story) and report.derived_keys, type(scanner).__name__
        assert (report.files_scanned, report.bytes_scanned) == (7, inflated), type(scanner).__name__
