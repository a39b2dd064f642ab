"""The corpora `review_speed.py` times, generated once and cached under bench/.corpus/NAME/.

- today: the leak hides in one file of 250 (two days of traffic); only that file mentions the key.
- realistic: one day of a production account, shaped like what CloudTrail delivers. 288 five-minute periods
  (1,000,000 records, plus the attack story's 12, compact JSON as CloudTrail writes it): per-period counts are
  log-normal around a diurnal curve (working hours, peaking near 14:00 UTC, about three times as busy as the
  night), with four burst periods 4-7x the median; twelve busy periods are delivered as 2 or 3 files (CloudTrail
  splits a period's delivery), so 303 files of a few hundred to about twenty thousand records. The traffic:
  IAM users with AKIA keys, role sessions (ASIA keys with sessionContext: EKS nodes, ECS tasks, Lambda, GitHub
  Actions, SSO people, an audit role), AWS services (no key, `invokedBy`), a partner account (AWSAccount and its
  role sessions), console sign-ins without a key, the root user now and then; S3 data events with resources, KMS,
  STS AssumeRole (credentials in the response), EC2 (RunInstances with its instances in the response, a few KB),
  SSM, logs... The reviewed CI key (ci-deployer) is 2% of the records: a GetSessionToken at the start of each hour
  (making `session_key(hour)`), a runner's heartbeat in every period (so every file of a period that is not split
  holds the key), and CI jobs (a few minutes, about a hundred calls each, more in working hours) that use the
  hour's session key or the key itself: bursts, then quiet; at most a quarter of a period's records. Other
  principals' records also name the key in their parameters (an admin's UpdateAccessKey, the audit role's
  GetAccessKeyLastUsed, GetAccessKeyInfo), about 0.1% of the records: they are not the key's. CloudTrail logs no
  responseElements for reads, so the key is named in requestParameters there. The leak's story (federation token,
  backdoor key) is in the middle. Files are named at their period's start with a random suffix, as CloudTrail
  names them, so a period's files sort in no particular order.
- principal: every session of a role (assumed-role/ci-runner/...), a new session key per file, about 2% of
  the records of every 5-minute file; reviewed as role/ci-runner.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flows.sandbox import trail

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".corpus"
KEY = "AKIABENCHLEAKEDKEY01"
ROLE = "ci-runner"
START = datetime(2026, 11, 1, tzinfo=UTC)
SHARE = 50  # one record in 50 (2%) is the reviewed key's, in the realistic and principal corpora


@dataclass(frozen=True)
class Corpus:
    name: str
    target: str  # what is reviewed: a key id or role/NAME
    files: int
    events: int
    span: timedelta
    make: Callable[[int, int, int, timedelta], list[tuple[str, list[dict[str, Any]]]]]  # a unit's files: (path, records)
    note: str
    shape: str = ""  # names the generator's version in the marker: a new shape is generated anew

    @property
    def root(self) -> Path:
        return CACHE / self.name


def _today(index: int, per_file: int, files: int, span: timedelta) -> list[dict[str, Any]]:
    at = START + span * index / files
    records = trail.noise(per_file, at, span / files, seed=index, keys=200)
    if index == files // 2:
        story, _ = trail.attack_story(KEY, "ci-deployer", at + timedelta(minutes=1))
        records = sorted(records + story, key=lambda r: r["eventTime"])
    return records


def session_key(hour: int) -> str:
    return f"ASIABENCHSESSION{hour:04d}"


def _principal(index: int, per_file: int, files: int, span: timedelta) -> list[dict[str, Any]]:
    at = START + span * index / files
    records = trail.noise(per_file, at, span / files, seed=index, keys=200)
    rng = random.Random(index)
    who = f"assumed-role/{ROLE}/job-{index:04d}"
    for n, i in enumerate(range(rng.randrange(SHARE), len(records), SHARE)):
        stamp = datetime.strptime(records[i]["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        name, source = ("GetObject", "s3.amazonaws.com") if n % 2 else ("GetParameter", "ssm.amazonaws.com")
        records[i] = trail.record(stamp, name, source, f"ASIABENCHROLE{index:07d}", who, rng=rng)
    return records


# ---------------------------------------------------------------------------------------------------------------
# realistic: production-shaped traffic (see the module docstring)

PERIODS = 288  # 5-minute delivery periods in the day
PERIOD = timedelta(minutes=5)
REGION = "us-east-1"
CI_USER = "ci-deployer"
CI_PRINCIPAL_ID = "AIDABENCHCIDEPLOYER01"
CI_IPS = ("52.23.41.7", "52.23.41.9", "3.94.160.12")  # the CI runners' NAT addresses
CI_AGENT = "aws-cli/2.15.30 Python/3.11.8 Linux/6.2.0-1018-azure exe/x86_64.ubuntu.22 prompt/off command/{}"
MENTION_RATE = 0.001  # other principals' records that name the key in their parameters
BOTO3 = "Boto3/1.34.34 md/Botocore#1.34.34 ua/2.0 os/linux#5.10.209 md/arch#x86_64 lang/python#3.11.7"
JAVA_SDK = (
    "aws-sdk-java/2.25.11 Linux/5.10.210-201.852.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 "
    "vendor/Amazon.com_Inc. exec-env/AWS_ECS_EC2 io/sync http/Apache cfg/retry-mode/legacy"
)
BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)
PARTNER = "210987654321"  # a partner account whose principals read our buckets and keys


def _diurnal(period: int) -> float:
    """Relative traffic at a period: a night floor and a working-hours hump peaking near 14:00 UTC."""
    hour = period * 5 / 60
    return 0.35 + 1.0 * math.exp(-(((hour - 14.0) / 4.0) ** 2))


@dataclass(frozen=True)
class _Plan:
    counts: tuple[int, ...]  # records per period (the target's included, the attack story not)
    shares: tuple[tuple[float, ...], ...]  # each period's split into files (1 to 3 shares)
    suffixes: tuple[tuple[int, ...], ...]  # the files' name suffixes
    target: tuple[tuple[tuple[float, str], ...], ...]  # per period: (seconds into the day, kind) of target records


@functools.lru_cache(maxsize=1)
def _plan(total: int = 1_000_000, seed: int = 2026) -> _Plan:
    """The day's shape, the same in every worker: record counts, file splits and the target's timeline."""
    rng = random.Random(seed)
    raw = [_diurnal(p) * rng.lognormvariate(0, 0.35) for p in range(PERIODS)]
    median = sorted(raw)[PERIODS // 2]
    for p in rng.sample(range(PERIODS), 4):  # bursts: a deploy wave, a batch job, a scan
        raw[p] = median * rng.uniform(4.0, 7.0)
    scale = total / sum(raw)
    counts = [int(x * scale) for x in raw]
    for p in sorted(range(PERIODS), key=lambda p: raw[p] * scale - counts[p], reverse=True)[: total - sum(counts)]:
        counts[p] += 1
    # Busy periods are written as several files (CloudTrail splits a period's delivery per region by size).
    ranked = sorted(range(PERIODS), key=lambda p: counts[p], reverse=True)
    split = set(rng.sample(ranked[: PERIODS // 5], 12))
    shares, suffixes = [], []
    for p in range(PERIODS):
        parts = rng.choice((2, 2, 3)) if p in split else 1
        weights = [rng.uniform(0.5, 1.5) for _ in range(parts)]
        shares.append(tuple(w / sum(weights) for w in weights))
        suffixes.append(tuple(rng.getrandbits(64) for _ in range(parts)))
    # The target: an hourly GetSessionToken, a runner's heartbeat in every period, and CI jobs in bursts.
    budget = total // SHARE
    cap = [c // 4 for c in counts]  # a period is never more than a quarter the target's
    target: list[list[tuple[float, str]]] = [[] for _ in range(PERIODS)]
    for hour in range(24):
        at = hour * 3600 + rng.uniform(2, 30)
        target[int(at // 300)].append((at, "mint"))
    for p in range(PERIODS):
        for _ in range(rng.randint(1, 3)):
            target[p].append((p * 300 + rng.uniform(0, 299), "poll"))
    have = sum(len(t) for t in target)
    weights = [_diurnal(p) for p in range(PERIODS)]
    while have < budget:
        start = rng.choices(range(PERIODS), weights)[0] * 300 + rng.uniform(0, 300)
        length = rng.uniform(120, 540)
        size = min(int(rng.lognormvariate(math.log(110), 0.6)) + 10, budget - have)
        kind = "job-session" if rng.random() < 0.7 else "job-key"
        for _ in range(size):
            at = min(start + rng.uniform(0, length), 86399.5)
            p = int(at // 300)
            if len(target[p]) < cap[p]:
                target[p].append((at, kind))
                have += 1
    return _Plan(tuple(counts), tuple(shares), tuple(suffixes), tuple(tuple(sorted(t)) for t in target))


def _stamp(seconds: float) -> datetime:
    return START + timedelta(seconds=int(seconds))


def _tls(host: str) -> dict[str, str]:
    return {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": host}


def _session_context(issuer: dict[str, Any] | None, created: datetime, mfa: bool = False) -> dict[str, Any]:
    return {
        "sessionIssuer": issuer or {},
        "webIdFederationData": {},
        "attributes": {"creationDate": trail._time(created), "mfaAuthenticated": "true" if mfa else "false"},
    }


def _hour_key(name: str, hour: int) -> str:
    """A role session's key: one per principal and hour, the same in every worker."""
    return trail.fake_key("ASIA", random.Random(f"{name}:{hour}"))


class _Principals:
    """The account's callers other than the CI key: users, role sessions, services, a partner account, root."""

    def __init__(self) -> None:
        rng = random.Random("principals")
        self.users = [
            (f"app-{i:03d}", "AIDA" + trail.fake_key("", rng)[:17], trail.fake_key("AKIA", rng)) for i in range(150)
        ]
        self.roles = [  # (role, session names, user agent)
            (
                "eks-node-group",
                [f"i-0{rng.getrandbits(60):015x}" for _ in range(24)],
                "aws-sdk-go/1.50.8 (go1.21.6; linux; amd64)",
            ),
            (
                "ecs-task-orders",
                [f"{rng.getrandbits(128):032x}" for _ in range(12)],
                BOTO3,
            ),
            (
                "lambda-ingest",
                ["ingest-fn"],
                BOTO3 + " exec-env/AWS_Lambda_python3.11",
            ),
            (
                "github-actions-deploy",
                [f"GitHubActions-{i}" for i in range(6)],
                "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-azure exe/x86_64.ubuntu.22",
            ),
            (
                "AWSReservedSSO_AdministratorAccess_4f2a9c1d8e7b6a50",
                ["alice@example.com", "bob@example.com"],
                "console.amazonaws.com",
            ),
            (
                "AWSReservedSSO_ReadOnly_0c9d8e7f6a5b4c3d",
                ["carol@example.com", "dan@example.com", "erin@example.com"],
                "console.amazonaws.com",
            ),
            (
                "security-audit",
                ["steampipe"],
                "aws-sdk-go-v2/1.24.1 os/linux lang/go#1.21.6 md/GOOS#linux md/GOARCH#amd64 api/iam#1.28.7",
            ),
        ]
        self.role_ids = {role: f"AROA{rng.getrandbits(64):016X}"[:21] for role, _, _ in self.roles}
        self.services = [
            "lambda.amazonaws.com",
            "ecs-tasks.amazonaws.com",
            "ec2.amazonaws.com",
            "cloudformation.amazonaws.com",
            "config.amazonaws.com",
            "autoscaling.amazonaws.com",
            "elasticloadbalancing.amazonaws.com",
        ]
        self.partner_user = "AIDA" + trail.fake_key("", rng)[:17]

    def user(self, rng: random.Random) -> tuple[dict[str, Any], str]:
        name, pid, key = self.users[min(int(rng.expovariate(1 / 25)), len(self.users) - 1)]  # a few busy apps
        identity = {
            "type": "IAMUser",
            "principalId": pid,
            "arn": f"arn:aws:iam::{trail.ACCOUNT}:user/{name}",
            "accountId": trail.ACCOUNT,
            "accessKeyId": key,
            "userName": name,
        }
        return (
            identity,
            JAVA_SDK,
        )

    def role(
        self, rng: random.Random, hour: int, index: int | None = None, account: str = trail.ACCOUNT
    ) -> tuple[dict[str, Any], str]:
        role, sessions, agent = self.roles[rng.choices(range(5), (40, 25, 20, 5, 3))[0] if index is None else index]
        session = rng.choice(sessions)
        created = START + timedelta(hours=hour) - timedelta(minutes=len(session) % 50)  # made before the hour
        issuer = {
            "type": "Role",
            "principalId": self.role_ids[role],
            "arn": f"arn:aws:iam::{account}:role/{role}",
            "accountId": account,
            "userName": role,
        }
        identity: dict[str, Any] = {
            "type": "AssumedRole",
            "principalId": f"{self.role_ids[role]}:{session}",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
            "accountId": account,
            "accessKeyId": _hour_key(f"{account}/{role}/{session}", hour),
            "sessionContext": _session_context(issuer, created, mfa=role.startswith("AWSReserved")),
        }
        return identity, agent


_PRINCIPALS: _Principals | None = None


def _principals() -> _Principals:
    global _PRINCIPALS
    if _PRINCIPALS is None:
        _PRINCIPALS = _Principals()
    return _PRINCIPALS


def _instance(rng: random.Random) -> dict[str, Any]:
    """One instance as RunInstances' responseElements lists it (a few KB for a handful)."""
    iid = f"i-0{rng.getrandbits(60):015x}"
    ip = f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"
    return {
        "instanceId": iid,
        "imageId": "ami-0c7217cdde317cfec",
        "currentInstanceBootMode": "legacy-bios",
        "instanceState": {"code": 0, "name": "pending"},
        "privateDnsName": f"ip-{ip.replace('.', '-')}.ec2.internal",
        "amiLaunchIndex": 0,
        "productCodes": {},
        "instanceType": rng.choice(["m6i.large", "c6i.xlarge", "r6i.2xlarge"]),
        "launchTime": 1793000000000,
        "placement": {"availabilityZone": "us-east-1" + rng.choice("abcdf"), "tenancy": "default"},
        "monitoring": {"state": "disabled"},
        "subnetId": "subnet-0a1b2c3d4e5f60718",
        "vpcId": "vpc-0123456789abcdef0",
        "privateIpAddress": ip,
        "stateReason": {"code": "pending", "message": "pending"},
        "architecture": "x86_64",
        "rootDeviceType": "ebs",
        "rootDeviceName": "/dev/xvda",
        "blockDeviceMapping": {},
        "virtualizationType": "hvm",
        "hypervisor": "xen",
        "tagSet": {
            "items": [
                {"key": "eks:nodegroup-name", "value": "general"},
                {"key": "kubernetes.io/cluster/prod", "value": "owned"},
            ]
        },
        "groupSet": {"items": [{"groupId": "sg-0f1e2d3c4b5a69788", "groupName": "eks-node"}]},
        "sourceDestCheck": True,
        "networkInterfaceSet": {
            "items": [
                {
                    "networkInterfaceId": f"eni-0{rng.getrandbits(60):015x}",
                    "subnetId": "subnet-0a1b2c3d4e5f60718",
                    "vpcId": "vpc-0123456789abcdef0",
                    "ownerId": trail.ACCOUNT,
                    "status": "in-use",
                    "privateIpAddress": ip,
                    "sourceDestCheck": True,
                    "interfaceType": "interface",
                    "groupSet": {"items": [{"groupId": "sg-0f1e2d3c4b5a69788", "groupName": "eks-node"}]},
                    "attachment": {
                        "attachmentId": f"eni-attach-0{rng.getrandbits(60):015x}",
                        "deviceIndex": 0,
                        "networkCardIndex": 0,
                        "status": "attaching",
                        "attachTime": 1793000000000,
                        "deleteOnTermination": True,
                    },
                    "privateIpAddressesSet": {"item": [{"privateIpAddress": ip, "primary": True}]},
                    "ipv6AddressesSet": {},
                    "tagSet": {},
                }
            ]
        },
        "ebsOptimized": True,
        "enaSupport": True,
        "cpuOptions": {"coreCount": 1, "threadsPerCore": 2},
        "capacityReservationSpecification": {"capacityReservationPreference": "open"},
        "enclaveOptions": {"enabled": False},
        "metadataOptions": {
            "state": "pending",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 2,
            "httpEndpoint": "enabled",
        },
        "maintenanceOptions": {"autoRecovery": "default"},
    }


def _noise_event(rng: random.Random, at: datetime, hour: int) -> dict[str, Any]:
    """One record of someone else's: mixed identity types, services and parameter sizes."""
    who = _principals()
    roll = rng.random()
    bucket = f"prod-data-{rng.randrange(40):02d}"
    extra: dict[str, Any] = {}
    response: dict[str, Any] | None = None
    data = False
    identity: dict[str, Any]
    params: Any
    if roll < 0.22:  # S3 data events from apps and role sessions
        identity, agent = (who.user if rng.random() < 0.4 else lambda r: who.role(r, hour))(rng)
        name = rng.choice(("GetObject", "GetObject", "GetObject", "PutObject", "HeadObject"))
        obj = f"events/dt=2026-11-01/part-{rng.randrange(10**5):05d}-{rng.getrandbits(32):08x}.snappy.parquet"
        params = {"bucketName": bucket, "Host": f"{bucket}.s3.us-east-1.amazonaws.com", "key": obj}
        source, data = "s3.amazonaws.com", True
        extra = {
            "additionalEventData": {
                "SignatureVersion": "SigV4",
                "CipherSuite": "TLS_AES_128_GCM_SHA256",
                "bytesTransferredIn": 0,
                "AuthenticationMethod": "AuthHeader",
                "x-amz-id-2": f"{rng.getrandbits(256):064x}",
                "bytesTransferredOut": rng.randrange(10**7),
            },
            "resources": [
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{obj}"},
                {"accountId": trail.ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
            ],
        }
        if name == "PutObject":
            response = {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-bucket-key-enabled": True}
    elif roll < 0.36:  # KMS, mostly on behalf of services
        identity, agent = who.role(rng, hour)
        name = rng.choice(("Decrypt", "GenerateDataKey", "Decrypt"))
        source = "kms.amazonaws.com"
        params = {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::{bucket}"}}
        if name == "GenerateDataKey":
            params |= {"keyId": "arn:aws:kms:us-east-1:123456789012:alias/prod-data", "keySpec": "AES_256"}
        extra = {
            "resources": [
                {
                    "accountId": trail.ACCOUNT,
                    "type": "AWS::KMS::Key",
                    "ARN": "arn:aws:kms:us-east-1:123456789012:key/6f1c9a2e-5b7d-4c3a-9e8f-0a1b2c3d4e5f",
                }
            ]
        }
    elif roll < 0.48:  # AWS services acting for the account (no access key; invokedBy)
        service = rng.choice(who.services)
        identity, agent = {"type": "AWSService", "invokedBy": service}, service
        role = rng.choice(("lambda-ingest", "ecs-task-orders", "eks-node-group", "config-recorder"))
        if rng.random() < 0.7:
            name, source = "AssumeRole", "sts.amazonaws.com"
            session = f"{rng.getrandbits(64):016x}"
            params = {"roleArn": f"arn:aws:iam::{trail.ACCOUNT}:role/{role}", "roleSessionName": session}
            response = _assumed(rng, role, session)
            extra = {
                "resources": [
                    {
                        "accountId": trail.ACCOUNT,
                        "type": "AWS::IAM::Role",
                        "ARN": f"arn:aws:iam::{trail.ACCOUNT}:role/{role}",
                    }
                ],
                "sharedEventID": str(uuid.UUID(int=rng.getrandbits(128))),
            }
        else:
            name, source = rng.choice(
                (
                    ("Decrypt", "kms.amazonaws.com"),
                    ("CreateNetworkInterface", "ec2.amazonaws.com"),
                    ("DescribeLogStreams", "logs.amazonaws.com"),
                )
            )
            params = (
                {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
                if name == "Decrypt"
                else {"subnetId": "subnet-0a1b2c3d4e5f60718"}
            )
    elif roll < 0.55:  # a partner account: cross-account reads, as an account or as its role sessions
        if rng.random() < 0.5:
            identity, agent = (
                {"type": "AWSAccount", "principalId": who.partner_user, "accountId": PARTNER},
                "aws-sdk-java/1.12.600",
            )
        else:
            identity, agent = who.role(rng, hour, index=1, account=PARTNER)
        name, source = rng.choice(
            (("GetObject", "s3.amazonaws.com"), ("Decrypt", "kms.amazonaws.com"), ("ListObjects", "s3.amazonaws.com"))
        )
        params = (
            {"bucketName": "shared-exports", "key": f"exports/{rng.randrange(10**6)}.csv.gz"}
            if source.startswith("s3")
            else {}
        )
        data = source.startswith("s3")
        extra = {"sharedEventID": str(uuid.UUID(int=rng.getrandbits(128)))}
    elif roll < 0.5505:  # console sign-ins (no access key) and, now and then, root
        if rng.random() < 0.9:
            user = rng.choice(who.users[:20])
            identity = {
                "type": "IAMUser",
                "principalId": user[1],
                "arn": f"arn:aws:iam::{trail.ACCOUNT}:user/{user[0]}",
                "accountId": trail.ACCOUNT,
                "userName": user[0],
            }
        else:
            identity = {
                "type": "Root",
                "principalId": trail.ACCOUNT,
                "arn": f"arn:aws:iam::{trail.ACCOUNT}:root",
                "accountId": trail.ACCOUNT,
            }
        agent = BROWSER
        name, source, params = "ConsoleLogin", "signin.amazonaws.com", None
        response = {"ConsoleLogin": "Success"}
        extra = {
            "additionalEventData": {
                "LoginTo": "https://console.aws.amazon.com/console/home",
                "MobileVersion": "No",
                "MFAIdentifier": f"arn:aws:iam::{trail.ACCOUNT}:mfa/{identity.get('userName', 'root')}",
                "MFAUsed": "Yes",
            },
            "eventType": "AwsConsoleSignIn",
        }
    elif roll < 0.5515:  # the root user's console session
        identity = {
            "type": "Root",
            "principalId": trail.ACCOUNT,
            "arn": f"arn:aws:iam::{trail.ACCOUNT}:root",
            "accountId": trail.ACCOUNT,
            "accessKeyId": _hour_key("root", hour),
            "sessionContext": _session_context(None, START + timedelta(hours=hour), mfa=True),
        }
        agent = "AWS Internal"
        name, source, params = rng.choice(
            (
                ("GetAccountSummary", "iam.amazonaws.com", None),
                ("DescribeAccountAttributes", "ec2.amazonaws.com", {"accountAttributeNameSet": {}}),
                ("GetBillingPreferences", "billingconsole.amazonaws.com", None),
            )
        )
    elif roll < 0.62:  # EC2: big describes in, instances out
        identity, agent = who.role(rng, hour, index=rng.choice((0, 3, 4)))
        source = "ec2.amazonaws.com"
        if rng.random() < 0.12:
            name = "RunInstances"
            n = rng.randint(1, 4)
            params = {
                "instancesSet": {"items": [{"imageId": "ami-0c7217cdde317cfec", "minCount": n, "maxCount": n}]},
                "instanceType": "m6i.large",
                "blockDeviceMapping": {},
                "monitoring": {"enabled": False},
                "disableApiTermination": False,
                "disableApiStop": False,
                "clientToken": str(uuid.UUID(int=rng.getrandbits(128))),
                "launchTemplate": {"launchTemplateId": "lt-0a1b2c3d4e5f60718", "version": "7"},
            }
            response = {
                "requestId": str(uuid.UUID(int=rng.getrandbits(128))),
                "reservationId": f"r-0{rng.getrandbits(60):015x}",
                "ownerId": trail.ACCOUNT,
                "groupSet": {},
                "instancesSet": {"items": [_instance(rng) for _ in range(n)]},
                "requesterId": "940372691376",
            }
        else:
            name = rng.choice(
                ("DescribeInstances", "DescribeInstances", "DescribeNetworkInterfaces", "DescribeSecurityGroups")
            )
            params = {
                "instancesSet": {},
                "filterSet": {
                    "items": [
                        {"name": "tag:kubernetes.io/cluster/prod", "valueSet": {"items": [{"value": "owned"}]}},
                        {
                            "name": "instance-state-name",
                            "valueSet": {"items": [{"value": v} for v in ("pending", "running", "stopping")]},
                        },
                    ]
                },
            }
    elif roll < 0.70:  # secrets, parameters, queues, tables
        identity, agent = (who.user if rng.random() < 0.5 else lambda r: who.role(r, hour))(rng)
        name, source, params = rng.choice(
            (
                (
                    "GetParameter",
                    "ssm.amazonaws.com",
                    {"name": f"/prod/orders/db-url-{rng.randrange(30)}", "withDecryption": True},
                ),
                ("GetSecretValue", "secretsmanager.amazonaws.com", {"secretId": f"prod/orders/{rng.randrange(30)}"}),
                ("GetParametersByPath", "ssm.amazonaws.com", {"path": "/prod/", "recursive": True, "withDecryption": True}),
                ("DescribeTable", "dynamodb.amazonaws.com", {"tableName": f"orders-{rng.randrange(8)}"}),
            )
        )
    elif roll < 0.80:  # logs and metrics
        identity, agent = who.role(rng, hour)
        name, source, params = rng.choice(
            (
                ("DescribeLogGroups", "logs.amazonaws.com", {"logGroupNamePrefix": "/aws/lambda/"}),
                (
                    "CreateLogStream",
                    "logs.amazonaws.com",
                    {"logGroupName": "/ecs/orders", "logStreamName": f"orders/app/{rng.getrandbits(128):032x}"},
                ),
                (
                    "DescribeAlarms",
                    "monitoring.amazonaws.com",
                    {"alarmNames": [f"orders-p99-{i}" for i in range(rng.randint(1, 12))]},
                ),
            )
        )
    elif roll < 0.88:  # the session tokens role workloads ask for
        identity, agent = who.role(rng, hour, index=rng.choice((0, 1, 3)))
        role = rng.choice(("orders-reader", "deploy", "crossaccount-audit"))
        session = f"botocore-session-{rng.randrange(10**10)}"
        name, source = "AssumeRole", "sts.amazonaws.com"
        params = {
            "roleArn": f"arn:aws:iam::{trail.ACCOUNT}:role/{role}",
            "roleSessionName": session,
            "durationSeconds": 3600,
        }
        response = _assumed(rng, role, session)
    elif roll < 0.93:  # IAM reads by people and the audit role
        identity, agent = who.role(rng, hour, index=rng.choice((4, 5, 6)))
        user = rng.choice(who.users)
        name, source, params = rng.choice(
            (
                ("ListAccessKeys", "iam.amazonaws.com", {"userName": user[0]}),
                ("GetAccessKeyLastUsed", "iam.amazonaws.com", {"accessKeyId": user[2]}),
                ("GetRole", "iam.amazonaws.com", {"roleName": "eks-node-group"}),
                ("ListAttachedUserPolicies", "iam.amazonaws.com", {"userName": user[0]}),
            )
        )
    else:  # everything else apps call: queues, topics, lambda, ecr
        identity, agent = who.user(rng)
        name, source, params = rng.choice(
            (
                ("SendMessage", "sqs.amazonaws.com", None),
                ("Publish", "sns.amazonaws.com", None),
                ("Invoke", "lambda.amazonaws.com", {"functionName": "orders-enrich"}),
                ("GetAuthorizationToken", "ecr.amazonaws.com", None),
                (
                    "BatchGetImage",
                    "ecr.amazonaws.com",
                    {
                        "registryId": trail.ACCOUNT,
                        "repositoryName": "orders",
                        "imageIds": [{"imageTag": "v2026.11.01"}],
                        "acceptedMediaTypes": [
                            "application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json",
                        ],
                    },
                ),
            )
        )
    event = trail.record(
        at,
        name,
        source,
        identity.get("accessKeyId", ""),
        "user/x",
        params=params,
        response=response,
        ip=agent if identity["type"] == "AWSService" else f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}",
        agent=agent,
        rng=rng,
    )
    event["userIdentity"] = identity
    event["eventVersion"] = "1.09" if data else "1.10"
    if identity["type"] == "AWSAccount" or identity.get("accountId") == PARTNER:
        event["sourceIPAddress"] = f"54.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    if data:
        event["managementEvent"], event["eventCategory"] = False, "Data"
        event["readOnly"] = name != "PutObject"
    if rng.random() < 0.004:  # throttling, denials
        event["errorCode"] = rng.choice(("ThrottlingException", "AccessDenied"))
        event["errorMessage"] = "Rate exceeded" if event["errorCode"] == "ThrottlingException" else "not authorized"
        event["responseElements"] = None
    event |= extra
    if identity["type"] != "AWSService":
        event["tlsDetails"] = _tls(f"{source.split('.')[0]}.us-east-1.amazonaws.com")
    return event


def _mention(rng: random.Random, at: datetime, hour: int) -> dict[str, Any]:
    """Someone else's record that names the CI key in its parameters (an admin or the audit role checking it)."""
    identity, agent = _principals().role(rng, hour, index=rng.choice((4, 6, 6, 6)))
    name, params = rng.choice(
        (
            ("GetAccessKeyLastUsed", {"accessKeyId": KEY}),
            ("GetAccessKeyLastUsed", {"accessKeyId": KEY}),
            ("UpdateAccessKey", {"userName": CI_USER, "accessKeyId": KEY, "status": "Active"}),
            ("GetAccessKeyInfo", {"accessKeyId": KEY}),
        )
    )
    source = "sts.amazonaws.com" if name == "GetAccessKeyInfo" else "iam.amazonaws.com"
    event = trail.record(
        at,
        name,
        source,
        identity["accessKeyId"],
        "user/x",
        params=params,
        ip=f"10.1.{rng.randrange(256)}.{rng.randrange(256)}",
        agent=agent,
        rng=rng,
    )
    event["userIdentity"] = identity
    event["eventVersion"] = "1.10"
    event["tlsDetails"] = _tls(f"{source.split('.')[0]}.amazonaws.com")
    return event


_CI_STEPS = [  # what a CI job does with the key: (event, source, params)
    ("GetCallerIdentity", "sts.amazonaws.com", None),
    ("GetAuthorizationToken", "ecr.amazonaws.com", None),
    ("PutObject", "s3.amazonaws.com", "artifact"),
    ("PutObject", "s3.amazonaws.com", "artifact"),
    ("GetObject", "s3.amazonaws.com", "artifact"),
    ("DescribeStacks", "cloudformation.amazonaws.com", {"stackName": "orders-prod"}),
    (
        "DescribeInstances",
        "ec2.amazonaws.com",
        {"instancesSet": {}, "filterSet": {"items": [{"name": "tag:app", "valueSet": {"items": [{"value": "orders"}]}}]}},
    ),
    ("UpdateService", "ecs.amazonaws.com", {"cluster": "prod", "service": "orders", "forceNewDeployment": True}),
    ("DescribeServices", "ecs.amazonaws.com", {"cluster": "prod", "services": ["orders"]}),
    ("GetParameter", "ssm.amazonaws.com", {"name": "/ci/orders/version", "withDecryption": False}),
]


def _assumed(rng: random.Random, role: str, session: str) -> dict[str, Any]:
    """AssumeRole's responseElements: a new session key (its token redacted, as CloudTrail logs it) and the role."""
    return {
        "credentials": {
            "accessKeyId": trail.fake_key("ASIA", rng),
            "sessionToken": "<redacted>",
            "expiration": "Nov 1, 2026, 11:59:59 PM",
        },
        "assumedRoleUser": {
            "assumedRoleId": f"AROA{rng.getrandbits(64):016X}:{session}",
            "arn": f"arn:aws:sts::{trail.ACCOUNT}:assumed-role/{role}/{session}",
        },
    }


def _target_event(rng: random.Random, seconds: float, kind: str) -> dict[str, Any]:
    at = _stamp(seconds)
    hour = int(seconds // 3600)
    ip = rng.choice(CI_IPS)
    if kind == "mint":
        made = {
            "credentials": {
                "accessKeyId": session_key(hour),
                "sessionToken": "<redacted>",
                "expiration": trail._time(at + timedelta(hours=12)),
            }
        }
        event = trail.record(
            at,
            "GetSessionToken",
            "sts.amazonaws.com",
            KEY,
            f"user/{CI_USER}",
            params={"durationSeconds": 43200},
            response=made,
            ip=ip,
            agent=CI_AGENT.format("sts.get-session-token"),
            rng=rng,
        )
    else:
        params: Any
        name, source, params = (
            ("GetCallerIdentity", "sts.amazonaws.com", None) if kind == "poll" else _CI_STEPS[rng.randrange(len(_CI_STEPS))]
        )
        if params == "artifact":
            params = {
                "bucketName": "ci-artifacts",
                "Host": "ci-artifacts.s3.us-east-1.amazonaws.com",
                "key": f"orders/build-{rng.randrange(10**5)}/bundle.tar.gz",
            }
        key = session_key(hour) if kind == "job-session" and _minted(seconds) else KEY
        event = trail.record(
            at,
            name,
            source,
            key,
            f"user/{CI_USER}",
            params=params,
            ip=ip,
            agent=CI_AGENT.format(source.split(".")[0]),
            rng=rng,
            error="AccessDenied" if rng.random() < 0.003 else None,
        )
        if source == "s3.amazonaws.com":
            event["managementEvent"], event["eventCategory"] = False, "Data"
        if key != KEY:  # a GetSessionToken session: the user's identity, with the session's context
            event["userIdentity"]["type"] = "IAMUser"
            event["userIdentity"]["sessionContext"] = _session_context(None, START + timedelta(hours=hour))
    event["userIdentity"]["principalId"] = CI_PRINCIPAL_ID
    event["eventVersion"] = "1.10"
    event["tlsDetails"] = _tls(f"{event['eventSource'].split('.')[0]}.us-east-1.amazonaws.com")
    return event


def _minted(seconds: float) -> bool:
    """Whether the hour's session key exists by then (its GetSessionToken comes before)."""
    hour = int(seconds // 3600)
    period = _plan().target[int(hour * 3600 // 300)]
    mint = next(at for at, kind in period if kind == "mint")
    return seconds > mint + 1


def _realistic(index: int, per_file: int, files: int, span: timedelta) -> list[tuple[str, list[dict[str, Any]]]]:
    """One 5-minute period: its files (one, or two or three for a busy period) and their records."""
    plan = _plan()
    rng = random.Random(f"realistic-{index}")
    base = index * 300
    hour = index // 12
    records = [_target_event(rng, seconds, kind) for seconds, kind in plan.target[index]]
    for _ in range(plan.counts[index] - len(records)):
        seconds = base + rng.uniform(0, 300)
        maker = _mention if rng.random() < MENTION_RATE else _noise_event
        records.append(maker(rng, _stamp(seconds), hour))
    at = START + PERIOD * index
    if index == PERIODS // 2:
        story, _ = trail.attack_story(KEY, CI_USER, at + timedelta(minutes=1))
        records += story
    shares = plan.shares[index]
    parts: list[list[dict[str, Any]]] = [[] for _ in shares]
    if len(shares) == 1:
        parts[0] = records
    else:
        for record in records:
            parts[rng.choices(range(len(shares)), shares)[0]].append(record)
    out = []
    for part, suffix in zip(parts, plan.suffixes[index], strict=True):
        part.sort(key=lambda r: r["eventTime"])
        out.append((trail.object_key(at, REGION, n=suffix), part))
    return out


def _one_file(
    make: Callable[[int, int, int, timedelta], list[dict[str, Any]]],
) -> Callable[[int, int, int, timedelta], list[tuple[str, list[dict[str, Any]]]]]:
    """A maker of one file per unit (today, principal), named for the unit's start."""

    def files(index: int, per_file: int, files: int, span: timedelta) -> list[tuple[str, list[dict[str, Any]]]]:
        return [(trail.object_key(START + span * index / files, n=index), make(index, per_file, files, span))]

    return files


CORPORA = [
    Corpus("today", KEY, 250, 1_000_000, timedelta(days=2), _one_file(_today), "the key in one file of 250"),
    Corpus(
        "realistic",
        KEY,
        PERIODS,  # periods: a busy one is written as 2 or 3 files
        1_000_000,
        timedelta(days=1),
        _realistic,
        "a CI key and its session keys, 2% in bursts; production-shaped files and principals",
        shape="prod2",
    ),
    Corpus(
        "principal",
        f"role/{ROLE}",
        288,
        1_000_000,
        timedelta(days=1),
        _one_file(_principal),
        "role sessions: 2% of every file",
    ),
]


def _write(args: tuple[str, int]) -> tuple[int, int, list[int]]:
    """One unit's files written: (records, the target's records, records per file)."""
    name, index = args
    corpus = next(c for c in CORPORA if c.name == name)
    total = ours = 0
    sizes = []
    for key, records in corpus.make(index, corpus.events // corpus.files, corpus.files, corpus.span):
        path = corpus.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # json.dump would encode in Python, many times slower; the production-shaped corpus is compact, as
        # CloudTrail writes its files
        separators = (",", ":") if corpus.shape else None
        text = json.dumps({"Records": records}, separators=separators)
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as handle:
            handle.write(text)
        total += len(records)
        ours += sum(1 for r in records if _is_ours(r, corpus.target))
        sizes.append(len(records))
    return total, ours, sizes


def _is_ours(record: dict[str, Any], target: str) -> bool:
    """Whether a record is the target's own (its caller), as the review counts it; a key named elsewhere is not."""
    identity = record.get("userIdentity") or {}
    if target.startswith("role/"):
        return f":assumed-role/{target.removeprefix('role/')}/" in (identity.get("arn") or "")
    key = identity.get("accessKeyId") or ""  # services, console sign-ins: no key
    return key == KEY or key.startswith("ASIABENCHSESSION")


def build(corpus: Corpus) -> tuple[list[Path], int, int]:
    """The corpus's files, its record count and how many records are the target's (generating it if needed)."""
    marker = corpus.root / f".complete-{corpus.events}-{corpus.files}{'-' + corpus.shape if corpus.shape else ''}"
    if not marker.exists():
        shutil.rmtree(corpus.root, ignore_errors=True)
        corpus.root.mkdir(parents=True)
        units = "five-minute periods" if corpus.make is _realistic else "files"
        print(f"generating {corpus.name}: {corpus.events:,} records in {corpus.files} {units} (once) ...", flush=True)
        started = time.perf_counter()
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            order = list(range(corpus.files))
            if corpus.make is _realistic:  # the busiest periods first, so that no worker is left with one at the end
                order.sort(key=lambda i: _plan().counts[i], reverse=True)
            counts = list(pool.map(_write, [(corpus.name, i) for i in order]))
        sizes = sorted(n for c in counts for n in c[2])
        marker.write_text(json.dumps([sum(c[0] for c in counts), sum(c[1] for c in counts)]))
        print(
            f"  {len(sizes)} files, records per file: min {sizes[0]:,}, median {sizes[len(sizes) // 2]:,}, "
            f"p95 {sizes[int(len(sizes) * 0.95)]:,}, max {sizes[-1]:,}",
            flush=True,
        )
        print(f"  done in {time.perf_counter() - started:.0f}s", flush=True)
    total, ours = json.loads(marker.read_text())
    return sorted(corpus.root.rglob("*.json.gz")), total, ours
