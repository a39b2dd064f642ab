"""CloudTrail records in the real format (modelled on the Stratus Red Team sample), for the sandbox, tests and bench.

`attack_story` is what a leaked key typically does (mint session credentials, create a backdoor user with a
key and admin rights, try to stop logging, read secrets, open a port, share a snapshot); `noise` is ordinary
traffic from other keys, the haystack a review searches.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

ACCOUNT = "123456789012"
ATTACKER_IP = "203.0.113.5"
ATTACKER_UA = "aws-cli/2.15.0 Python/3.11.6 Linux/6.5.0 exe/x86_64.ubuntu.22"


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(
    at: datetime,
    name: str,
    source: str,
    key: str,
    principal: str,
    *,
    params: dict[str, Any] | None = None,
    response: dict[str, Any] | None = None,
    error: str | None = None,
    ip: str = ATTACKER_IP,
    agent: str = ATTACKER_UA,
    region: str = "us-east-1",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    rng = rng or random.Random()  # noqa: S311 - test data, not security
    kind, _, who = principal.partition("/")
    identity: dict[str, Any] = {
        "type": "IAMUser" if key.startswith("AKIA") else "FederatedUser",
        "principalId": "AIDA" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=17)),
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{who}",
        "accountId": ACCOUNT,
        "accessKeyId": key,
        "userName": who,
    }
    if kind == "assumed-role":  # assumed-role/ROLE/SESSION
        role, _, session = who.partition("/")
        identity = {
            "type": "AssumedRole",
            "principalId": f"AROA{rng.getrandbits(64):016X}:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
            "accountId": ACCOUNT,
            "accessKeyId": key,
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}", "userName": role}
            },
        }
    out: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": _time(at),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": ip,
        "userAgent": agent,
        "requestParameters": params,
        "responseElements": response,
        "requestID": str(uuid.UUID(int=rng.getrandbits(128))),
        "eventID": str(uuid.UUID(int=rng.getrandbits(128))),
        "readOnly": name.startswith(("Get", "List", "Describe")),
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    if error:
        out["errorCode"] = error
        out["errorMessage"] = f"User: {identity['arn']} is not authorized to perform this operation"
        out["responseElements"] = None
    return out


def fake_key(prefix: str, rng: random.Random) -> str:
    return prefix + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16))


BACKDOOR_USER = "svc-backup"
BACKDOOR_POLICY = "backdoor-admin"


def attack_story(
    key: str, user: str, start: datetime, seed: int = 7, backdoor_key: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Records of a leaked key's misuse, and the ids it made ({'session_key', 'backdoor_key'})."""
    rng = random.Random(seed)  # noqa: S311
    session = fake_key("ASIA", rng)
    backdoor = backdoor_key or fake_key("AKIA", rng)
    me = f"user/{user}"
    t = start
    step = timedelta(minutes=3)
    events = [
        record(t, "GetCallerIdentity", "sts.amazonaws.com", key, me, rng=rng),
        record(t + step, "ListBuckets", "s3.amazonaws.com", key, me, rng=rng),
        record(
            t + 2 * step,
            "GetFederationToken",
            "sts.amazonaws.com",
            key,
            me,
            params={"name": "ops", "durationSeconds": 129600},
            response={"credentials": {"accessKeyId": session, "sessionToken": "<redacted>", "expiration": "x"}},
            rng=rng,
        ),
        record(t + 3 * step, "CreateUser", "iam.amazonaws.com", session, me, params={"userName": BACKDOOR_USER}, rng=rng),
        record(
            t + 4 * step,
            "CreateAccessKey",
            "iam.amazonaws.com",
            session,
            me,
            params={"userName": BACKDOOR_USER},
            response={"accessKey": {"accessKeyId": backdoor, "userName": BACKDOOR_USER, "status": "Active"}},
            rng=rng,
        ),
        record(
            t + 5 * step,
            "AttachUserPolicy",
            "iam.amazonaws.com",
            session,
            me,
            params={"userName": BACKDOOR_USER, "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/{BACKDOOR_POLICY}"},
            rng=rng,
        ),
        record(
            t + 6 * step,
            "CreateLoginProfile",
            "iam.amazonaws.com",
            session,
            me,
            params={"userName": BACKDOOR_USER, "passwordResetRequired": False},
            rng=rng,
        ),
        record(
            t + 7 * step,
            "StopLogging",
            "cloudtrail.amazonaws.com",
            key,
            me,
            params={"name": f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/main"},
            error="AccessDenied",
            rng=rng,
        ),
        record(
            t + 8 * step,
            "GetSecretValue",
            "secretsmanager.amazonaws.com",
            key,
            me,
            params={"secretId": "prod/db/password"},
            rng=rng,
        ),
        record(
            t + 9 * step,
            "AuthorizeSecurityGroupIngress",
            "ec2.amazonaws.com",
            session,
            me,
            params={
                "groupId": "sg-0abc1234def567890",
                "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22}]},
            },
            rng=rng,
        ),
        record(
            t + 10 * step,
            "ModifySnapshotAttribute",
            "ec2.amazonaws.com",
            session,
            me,
            params={"snapshotId": "snap-0123456789abcdef0", "attributeType": "CREATE_VOLUME_PERMISSION"},
            rng=rng,
        ),
        record(
            t + 11 * step,
            "ListBuckets",
            "s3.amazonaws.com",
            backdoor,
            f"user/{BACKDOOR_USER}",
            ip="198.51.100.23",
            rng=rng,
        ),
    ]
    return events, {"session_key": session, "backdoor_key": backdoor}


def role_story(role: str, start: datetime, seed: int = 11) -> list[dict[str, Any]]:
    """Records of a role's stolen session: reads secrets, opens a bucket to the world."""
    rng = random.Random(seed)  # noqa: S311
    session = fake_key("ASIA", rng)
    who = f"assumed-role/{role}/i-0a1b2c3d4e5f67890"
    step = timedelta(minutes=4)
    return [
        record(start, "GetCallerIdentity", "sts.amazonaws.com", session, who, ip="192.0.2.44", rng=rng),
        record(start + step, "ListBuckets", "s3.amazonaws.com", session, who, ip="192.0.2.44", rng=rng),
        record(
            start + 2 * step,
            "GetSecretValue",
            "secretsmanager.amazonaws.com",
            session,
            who,
            params={"secretId": "prod/api/signing-key"},
            ip="192.0.2.44",
            rng=rng,
        ),
        record(
            start + 3 * step,
            "PutBucketPolicy",
            "s3.amazonaws.com",
            session,
            who,
            params={"bucketName": "customer-exports", "policy": "{...Principal: *...}"},
            ip="192.0.2.44",
            rng=rng,
        ),
    ]


_NOISE = [
    ("DescribeInstances", "ec2.amazonaws.com"),
    ("GetObject", "s3.amazonaws.com"),
    ("PutObject", "s3.amazonaws.com"),
    ("ListBuckets", "s3.amazonaws.com"),
    ("AssumeRole", "sts.amazonaws.com"),
    ("GetParameter", "ssm.amazonaws.com"),
    ("Decrypt", "kms.amazonaws.com"),
    ("DescribeLogGroups", "logs.amazonaws.com"),
]


def noise(count: int, start: datetime, span: timedelta, seed: int = 1, keys: int = 50) -> list[dict[str, Any]]:
    """Ordinary traffic from `keys` other keys, spread over `span`, in time order."""
    rng = random.Random(seed)  # noqa: S311
    pool = [(fake_key("AKIA", rng), f"user/app-{i:03d}") for i in range(keys)]
    step = span / max(count, 1)
    out = []
    for i in range(count):
        key, who = pool[rng.randrange(keys)]
        name, source = _NOISE[rng.randrange(len(_NOISE))]
        out.append(
            record(
                start + step * i,
                name,
                source,
                key,
                who,
                params={"bucketName": f"data-{rng.randrange(100)}", "key": f"objects/{rng.randrange(10**6)}.parquet"},
                ip=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                agent="aws-sdk-java/2.20.0 Linux/5.10 OpenJDK_64-Bit_Server_VM/17",
                rng=rng,
            )
        )
    return out


def object_key(at: datetime, region: str = "us-east-1", n: int = 0) -> str:
    """CloudTrail's S3 key for a file whose first record is at `at`."""
    return (
        f"AWSLogs/{ACCOUNT}/CloudTrail/{region}/{at:%Y/%m/%d}/"
        f"{ACCOUNT}_CloudTrail_{region}_{at:%Y%m%dT%H%M}Z_{n:016x}.json.gz"
    )


def now_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


OUTSIDE_ACCOUNT = "999988887777"  # the attacker's own account, which shares and trust policies let in


def trust_document(principal: dict[str, str]) -> str:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def wide_attack_story(
    key: str, session: str, user: str, start: datetime, ids: dict[str, str], seed: int = 13
) -> list[dict[str, Any]]:
    """A leaked key's wider misuse, one record of each kind of change a review lists, some undone by the attacker.

    `ids` names the real resources the changes touch (group, snapshot, db_snapshot, bucket, function, trail,
    role, mfa_serial, attacker_key, instance, ssm_target, created_function, detector, recorder): the sandbox makes
    them so a response has something to revert.
    """
    rng = random.Random(seed)  # noqa: S311
    me = f"user/{user}"
    at = iter(start + timedelta(minutes=2 * i) for i in range(100))
    outside = f"arn:aws:iam::{OUTSIDE_ACCOUNT}:root"
    minted = fake_key("ASIA", rng)
    assumed = fake_key("ASIA", rng)
    stray = fake_key("AKIA", rng)
    ssh = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}
    rdp = {"ipProtocol": "tcp", "fromPort": 3389, "toPort": 3389, "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}
    public = {
        "Sid": "Open",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{ids['bucket']}/*",
    }
    pipeline = {
        "Sid": "Pipeline",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/etl"},
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{ids['bucket']}/*",
    }
    creds = {"accessKeyId": minted, "sessionToken": "<redacted>", "expiration": "x"}

    def call(name: str, source: str, params: dict[str, Any], response: dict[str, Any] | None = None, by: str = "") -> None:
        events.append(record(next(at), name, source, by or session, me, params=params, response=response, rng=rng))

    events: list[dict[str, Any]] = []
    call("GetSessionToken", "sts.amazonaws.com", {"durationSeconds": 129600}, {"credentials": creds}, by=key)
    call(
        "AssumeRole",
        "sts.amazonaws.com",
        {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/{ids['role']}", "roleSessionName": "ops"},
        {"credentials": {"accessKeyId": assumed, "expiration": "x"}},
    )
    call(
        "CreateAccessKey",
        "iam.amazonaws.com",
        {"userName": "alice"},
        {"accessKey": {"accessKeyId": stray, "userName": "alice", "status": "Active"}},
    )
    call("DeleteAccessKey", "iam.amazonaws.com", {"userName": "alice", "accessKeyId": stray})
    call(
        "CreateVirtualMFADevice",
        "iam.amazonaws.com",
        {"virtualMFADeviceName": "ops"},
        {"virtualMFADevice": {"serialNumber": ids["mfa_serial"]}},
    )
    call("EnableMFADevice", "iam.amazonaws.com", {"userName": BACKDOOR_USER, "serialNumber": ids["mfa_serial"]})
    call("CreateUser", "iam.amazonaws.com", {"userName": "tmp-admin"})
    call("DeleteUser", "iam.amazonaws.com", {"userName": "tmp-admin"})
    call(
        "PutUserPolicy",
        "iam.amazonaws.com",
        {"userName": "alice", "policyName": "alice-escalate", "policyDocument": '{"Statement": []}'},
    )
    call("AddUserToGroup", "iam.amazonaws.com", {"groupName": ids["group_name"], "userName": "alice"})
    call(
        "CreateRole",
        "iam.amazonaws.com",
        {"roleName": "svc-escalation", "assumeRolePolicyDocument": trust_document({"Service": "ec2.amazonaws.com"})},
    )
    call(
        "UpdateAssumeRolePolicy",
        "iam.amazonaws.com",
        {"roleName": "svc-escalation", "policyDocument": trust_document({"AWS": outside})},
    )
    call(
        "UpdateAssumeRolePolicy",
        "iam.amazonaws.com",
        {"roleName": ids["role"], "policyDocument": trust_document({"AWS": outside})},
    )
    call(
        "AuthorizeSecurityGroupIngress",
        "ec2.amazonaws.com",
        {"groupId": ids["group"], "ipPermissions": {"items": [ssh, rdp]}},
    )
    call("RevokeSecurityGroupIngress", "ec2.amazonaws.com", {"groupId": ids["group"], "ipPermissions": {"items": [rdp]}})
    call(
        "ModifySnapshotAttribute",
        "ec2.amazonaws.com",
        {
            "snapshotId": ids["snapshot"],
            "attributeType": "CREATE_VOLUME_PERMISSION",
            "createVolumePermission": {"add": {"items": [{"userId": OUTSIDE_ACCOUNT}]}},
        },
    )
    call(
        "ModifyImageAttribute",
        "ec2.amazonaws.com",
        {"imageId": "ami-0a1b2c3d4e5f60718", "launchPermission": {"add": {"items": [{"group": "all"}]}}},
    )
    call(
        "ModifyImageAttribute",
        "ec2.amazonaws.com",
        {"imageId": "ami-0a1b2c3d4e5f60718", "launchPermission": {"remove": {"items": [{"group": "all"}]}}},
    )
    call(
        "ModifyDBSnapshotAttribute",
        "rds.amazonaws.com",
        {"dBSnapshotIdentifier": ids["db_snapshot"], "attributeName": "restore", "valuesToAdd": [OUTSIDE_ACCOUNT]},
    )
    call(
        "PutBucketPolicy",
        "s3.amazonaws.com",
        {"bucketName": ids["bucket"], "bucketPolicy": {"Version": "2012-10-17", "Statement": [pipeline, public]}},
    )
    call(
        "AddPermission20150331v2",
        "lambda.amazonaws.com",
        {"functionName": ids["function"], "statementId": "ops", "action": "lambda:InvokeFunction", "principal": "*"},
    )
    call(
        "AddPermission20150331v2",
        "lambda.amazonaws.com",
        {"functionName": ids["function"], "statementId": "tmp", "action": "lambda:InvokeFunction", "principal": "*"},
    )
    call("RemovePermission20150331v2", "lambda.amazonaws.com", {"functionName": ids["function"], "statementId": "tmp"})
    call("StopLogging", "cloudtrail.amazonaws.com", {"name": f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/{ids['trail']}"})
    call(
        "PutEventSelectors",
        "cloudtrail.amazonaws.com",
        {"trailName": ids["trail"], "eventSelectors": [{"readWriteType": "ReadOnly", "includeManagementEvents": False}]},
    )
    call(
        "RunInstances",
        "ec2.amazonaws.com",
        {"instanceType": "p3.16xlarge"},
        {"instancesSet": {"items": [{"instanceId": "i-0feedfacecafe0001"}]}},
    )
    call("TerminateInstances", "ec2.amazonaws.com", {"instancesSet": {"items": [{"instanceId": "i-0feedfacecafe0001"}]}})
    call("GetParameter", "ssm.amazonaws.com", {"name": "/prod/api/token", "withDecryption": True})
    call(
        "CreateAccessKey",
        "iam.amazonaws.com",
        {"userName": user},
        {"accessKey": {"accessKeyId": ids["attacker_key"], "userName": user, "status": "Active"}},
    )
    call(
        "RunInstances",
        "ec2.amazonaws.com",
        {"instanceType": "t3.micro"},
        {"instancesSet": {"items": [{"instanceId": ids["instance"]}]}},
    )
    call(
        "SendCommand",
        "ssm.amazonaws.com",
        {"instanceIds": [ids["ssm_target"]], "documentName": "AWS-RunShellScript"},
        {"command": {"commandId": str(uuid.UUID(int=rng.getrandbits(128)))}},
    )
    call(
        "CreateFunction20150331",
        "lambda.amazonaws.com",
        {"functionName": ids["created_function"], "runtime": "python3.11", "handler": "handler.handler"},
    )
    call(
        "DeleteFlowLogs", "ec2.amazonaws.com", {"DeleteFlowLogsRequest": {"FlowLogId": {"content": "fl-0a1b2c3d4e5f6a7b8"}}}
    )
    call("DeleteLogGroup", "logs.amazonaws.com", {"logGroupName": "/aws/vpc/flow-logs"})
    call("UpdateDetector", "guardduty.amazonaws.com", {"detectorId": ids["detector"], "enable": False})
    call("StopConfigurationRecorder", "config.amazonaws.com", {"configurationRecorderName": ids["recorder"]})
    return events
