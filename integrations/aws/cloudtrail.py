"""Log review: what did a key do? CloudTrail events made with one or more access keys, and what they mean.

Sources: CloudTrail log files in S3 (`s3://bucket/prefix`, the real layout), local directories of the same
files (`.json`/`.json.gz`, `{"Records": [...]}` or a bare array), and the LookupEvents API (`lookup:`).
Derived credentials are followed: a GetSessionToken, GetFederationToken or AssumeRole made with a key yields
`ASIA...` keys whose events belong to the review too; a CreateAccessKey yields keys to contain (also followed).

Speed: files are streamed one at a time (memory is bounded by the largest file times the workers), each is
decompressed in C with the GIL released, and only files that contain one of the key ids as bytes are parsed;
so a review of millions of events costs about what decompressing them costs, spread over every core.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field

from integrations.context import ActionContext
from integrations.registry import ActionResult, action

SCHEMA = "stanch.review/v1"

# eventName -> category. The events an attacker uses to stay, hide, take data, read secrets or open doors.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "persistence": (
        "CreateUser",
        "CreateAccessKey",
        "CreateLoginProfile",
        "UpdateLoginProfile",
        "AttachUserPolicy",
        "PutUserPolicy",
        "AddUserToGroup",
        "CreateRole",
        "UpdateAssumeRolePolicy",
        "AttachRolePolicy",
        "PutRolePolicy",
        "CreatePolicyVersion",
        "SetDefaultPolicyVersion",
        "CreateVirtualMFADevice",
        "EnableMFADevice",
        "GetFederationToken",
        "CreateServiceSpecificCredential",
        "UploadSSHPublicKey",
    ),
    "defense_evasion": (
        "StopLogging",
        "DeleteTrail",
        "UpdateTrail",
        "PutEventSelectors",
        "DeleteDetector",
        "UpdateDetector",
        "DeleteFlowLogs",
        "DisableSecurityHub",
        "DeleteConfigRule",
        "StopConfigurationRecorder",
        "DeleteConfigurationRecorder",
        "PutBucketLogging",
        "DisassociateFromMasterAccount",
    ),
    "exfiltration": (
        "ModifySnapshotAttribute",
        "ModifyImageAttribute",
        "ModifyDBSnapshotAttribute",
        "PutBucketPolicy",
        "PutBucketAcl",
        "PutObjectAcl",
        "DeletePublicAccessBlock",
        "PutBucketPublicAccessBlock",
        "CreateSnapshot",
        "CopySnapshot",
        "SharedSnapshotCopyInitiated",
    ),
    "credential_access": (
        "GetSecretValue",
        "BatchGetSecretValue",
        "GetParameter",
        "GetParameters",
        "GetParametersByPath",
        "GetPasswordData",
        "GetSessionToken",
        "AssumeRole",
        "Decrypt",
    ),
    "network_exposure": (
        "AuthorizeSecurityGroupIngress",
        "AuthorizeSecurityGroupEgress",
        "CreateSecurityGroup",
        "ModifyInstanceAttribute",
        "CreateInternetGateway",
        "AttachInternetGateway",
        "CreateRoute",
        "ReplaceRoute",
        "AssociateAddress",
    ),
}
CATEGORY_OF = {name: category for category, names in CATEGORIES.items() for name in names}
DERIVING = ("GetSessionToken", "GetFederationToken", "AssumeRole")
_RESOURCE_KEY = re.compile(r"(?:name|id|arn|Name|Id|Arn|ARN)s?$")
_DATE_IN_KEY = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/")

AccessKeyIds = Annotated[
    list[Annotated[str, Field(pattern=r"^(AKIA|ASIA)[A-Z0-9]{12,124}$")]],
    Field(description="The access key ids to review."),
]
Principals = Annotated[
    list[Annotated[str, Field(pattern=r"^(role|user)/[\w+=,.@-]{1,64}$")]],
    Field(description="role/NAME (every session of the role) or user/NAME, reviewed like keys."),
]


# ---------------------------------------------------------------- report


class IpSeen(BaseModel):
    ip: str
    count: int
    first_seen: str
    last_seen: str


class Finding(BaseModel):
    category: str
    event_name: str
    event_id: str
    event_time: str
    access_key_id: str | None
    source_ip: str | None
    region: str | None
    error_code: str | None = Field(None, description="Set when the call failed: attempted, not done.")
    resources: list[str]


class DerivedKey(BaseModel):
    access_key_id: str
    parent: str
    via: str
    event_id: str
    event_time: str


class CreatedKey(BaseModel):
    access_key_id: str
    user_name: str | None
    created_with: str | None
    event_id: str


class Containable(BaseModel):
    """What the review says to contain: things the reviewed keys created or changed."""

    users: list[str] = Field(default_factory=list)
    access_keys: list[CreatedKey] = Field(default_factory=list)
    login_profiles: list[str] = Field(default_factory=list, description="Users given a console password.")
    roles: list[str] = Field(default_factory=list)
    attached_policies: list[dict[str, str]] = Field(default_factory=list, description="principal, policy_arn")


class Review(ActionResult):
    """The review report; its JSON form (`stanch review-logs --format json`) is the stable shape stanch.review/v1."""

    schema_: str = Field(SCHEMA, alias="schema")
    access_key_ids: list[str]
    principals: list[str] = Field(default_factory=list)
    derived_keys: list[DerivedKey]
    since: str | None
    until: str | None
    events_total: int
    first_event: str | None
    last_event: str | None
    events_by_name: dict[str, int]
    source_ips: list[IpSeen]
    user_agents: dict[str, int]
    regions: dict[str, int]
    error_codes: dict[str, int]
    findings: dict[str, list[Finding]]
    contain: Containable
    files_scanned: int
    bytes_scanned: int
    seconds: float

    model_config = {"populate_by_name": True, "extra": "forbid"}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class Unit:
    """One log file: a local path or an S3 object."""

    path: str
    bucket: str | None = None
    size: int = 0

    @property
    def day(self) -> str | None:
        """YYYY-MM-DD from CloudTrail's key layout (…/yyyy/mm/dd/…), when the path has it."""
        match = _DATE_IN_KEY.search(self.path.replace(os.sep, "/"))
        return f"{match.group(1)}-{match.group(2)}-{match.group(3)}" if match else None


def _day(stamp: str | None) -> str | None:
    return stamp[:10] if stamp else None


def local_units(root: Path) -> list[Unit]:
    if root.is_file():
        return [Unit(str(root), size=root.stat().st_size)]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or directory: {root}")
    files = [p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".json") or p.name.endswith(".json.gz"))]
    return [Unit(str(p), size=p.stat().st_size) for p in sorted(files)]


def s3_units(s3: Any, bucket: str, prefix: str, since: str | None, until: str | None) -> list[Unit]:
    units = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith(".json.gz") or key.endswith(".json"):
                unit = Unit(key, bucket=bucket, size=int(obj.get("Size", 0)))
                if _in_days(unit, since, until):
                    units.append(unit)
    return units


def _in_days(unit: Unit, since: str | None, until: str | None) -> bool:
    day = unit.day
    if day is None:
        return True
    return not ((since and day < _day(since)) or (until and day > _day(until)))  # type: ignore[operator]


def _records(raw: bytes) -> list[dict[str, Any]]:
    data = json.loads(raw)
    if isinstance(data, dict):
        records = data.get("Records", [])
    elif isinstance(data, list):
        records = data
    else:
        records = []
    return [r for r in records if isinstance(r, dict)]


_CHUNK = 1 << 16


def _search(data: bytes, needles: tuple[bytes, ...]) -> tuple[int, bool]:
    """(decompressed size, whether any needle occurs), inflating in small pieces.

    Small pieces keep memory bounded and are faster than one big inflate (no output reallocations); zlib
    frees the GIL while it inflates, so threads use every core.
    """
    if data[:2] != b"\x1f\x8b":
        return len(data), any(n in data for n in needles)
    inflater = zlib.decompressobj(47)
    keep = max(len(n) for n in needles) - 1 if needles else 0
    tail = b""
    size = 0
    for offset in range(0, len(data), _CHUNK):
        piece = inflater.decompress(data[offset : offset + _CHUNK])
        size += len(piece)
        window = tail + piece if tail else piece
        if any(n in window for n in needles):
            return size, True
        tail = window[-keep:] if keep else b""
    return size, False


def _decompress(raw: bytes) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        return zlib.decompress(raw, 47)  # gzip; releases the GIL while it inflates
    return raw


def _slim(record: dict[str, Any]) -> dict[str, Any]:
    identity = record.get("userIdentity") or {}
    return {
        "eventID": record.get("eventID", ""),
        "eventTime": record.get("eventTime", ""),
        "eventName": record.get("eventName", ""),
        "eventSource": record.get("eventSource", ""),
        "awsRegion": record.get("awsRegion"),
        "sourceIPAddress": record.get("sourceIPAddress"),
        "userAgent": record.get("userAgent"),
        "errorCode": record.get("errorCode"),
        "accessKeyId": identity.get("accessKeyId"),
        "principal": identity.get("arn"),
        "requestParameters": record.get("requestParameters") or {},
        "responseElements": _public_response(record.get("responseElements")),
    }


def _public_response(response: Any) -> dict[str, Any]:
    """Response elements without secret material (session tokens, secret keys)."""
    if not isinstance(response, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in response.items():
        if key in ("credentials", "accessKey") and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k in ("accessKeyId", "userName", "expiration", "status")}
        elif key.lower() in ("sessiontoken", "secretaccesskey", "password"):
            continue
        else:
            out[key] = value
    return out


def _needle(target: str) -> bytes:
    """What a file must contain to hold events of a target: a key id, role/NAME or user/NAME."""
    kind, _, name = target.partition("/")
    if kind == "role":
        return f"assumed-role/{name}/".encode()
    if kind == "user":
        return f':user/{name}"'.encode()
    return target.encode()


def _is_ours(identity: dict[str, Any], targets: frozenset[str] | set[str]) -> bool:
    """Whether an event's caller is one of the targets (a key id, or the sessions of role/NAME, or user/NAME)."""
    if identity.get("accessKeyId") in targets:
        return True
    arn = identity.get("arn") or identity.get("principal") or ""
    if not arn:
        return False
    for target in targets:
        kind, _, name = target.partition("/")
        if (kind == "role" and f":assumed-role/{name}/" in arn) or (kind == "user" and arn.endswith(f":user/{name}")):
            return True
    return False


class Scanner:
    """Scans units for events made with a set of keys, following derived keys as it meets them.

    Files are read in time order (CloudTrail's names sort by time) on a thread pool; decompression frees the
    GIL, so every core works. A key derived in one file is searched for in every later file; the few files
    already in flight when it was found are searched again for it afterwards.
    """

    def __init__(self, units: list[Unit], s3_factory: Any = None, workers: int | None = None):
        self.units = sorted(units, key=lambda u: (u.day or "", u.path))
        self.s3_factory = s3_factory
        self.workers = workers or os.cpu_count() or 1
        self.files_scanned = 0
        self.bytes_scanned = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._seen: set[Unit] = set()

    def _read(self, unit: Unit) -> bytes:
        if unit.bucket is None:
            with open(unit.path, "rb") as handle:
                return handle.read()
        s3 = getattr(self._local, "s3", None)
        if s3 is None:
            s3 = self._local.s3 = self.s3_factory()
        return bytes(s3.get_object(Bucket=unit.bucket, Key=unit.path)["Body"].read())

    def _scan_one(self, unit: Unit, keys: frozenset[str], since: str | None, until: str | None) -> list[dict[str, Any]]:
        data = self._read(unit)
        size, hit = _search(data, tuple(_needle(k) for k in keys))
        with self._lock:
            if unit not in self._seen:  # a file searched again for a late key counts once
                self._seen.add(unit)
                self.files_scanned += 1
                self.bytes_scanned += size
        if not hit:
            return []
        raw = _decompress(data)
        hits = []
        for record in _records(raw):
            if not _is_ours(record.get("userIdentity") or {}, keys):
                continue
            stamp = record.get("eventTime", "")
            if (since and stamp < since) or (until and stamp > until):
                continue
            hits.append(_slim(record))
        return hits

    def scan(self, keys: Iterable[str], since: str | None, until: str | None) -> list[dict[str, Any]]:
        """Every event made with `keys` or with keys they derived (GetSessionToken, CreateAccessKey...)."""
        wanted: set[str] = set(keys)
        found_day: dict[str, str] = {}  # derived key -> the day it was made
        used: dict[Unit, frozenset[str]] = {}
        hits: list[dict[str, Any]] = []

        def absorb(batch: list[dict[str, Any]]) -> None:
            with self._lock:
                hits.extend(batch)
                for event in batch:
                    child = _child_key(event)
                    if child and child not in wanted:
                        wanted.add(child)
                        found_day[child] = _day(event["eventTime"]) or ""

        def work(unit: Unit) -> None:
            with self._lock:
                snapshot = frozenset(wanted)
                used[unit] = snapshot
            absorb(self._scan_one(unit, snapshot, since, until))

        self._run(work, self.units)
        # Files read while a key was still unknown, dated on or after the day it was made, are read again.
        while True:
            with self._lock:
                late = {
                    unit: frozenset(k for k in wanted - seen if unit.day is None or unit.day >= found_day.get(k, ""))
                    for unit, seen in used.items()
                }
            todo = [(unit, missing) for unit, missing in late.items() if missing]
            if not todo:
                break
            for unit, missing in todo:
                with self._lock:
                    used[unit] = used[unit] | missing
                absorb(self._scan_one(unit, missing, since, until))
        return hits

    def _run(self, work: Any, units: list[Unit]) -> None:
        if len(units) <= 2 or self.workers == 1:
            for unit in units:
                work(unit)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="stanch-review") as pool:
            for _ in pool.map(work, units):
                pass


class Pacer:
    """At most one call per `interval` seconds, across every pass of a review."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.last = 0.0

    def wait(self) -> None:
        delay = self.interval - (time.monotonic() - self.last)
        if delay > 0:
            time.sleep(delay)
        self.last = time.monotonic()


def lookup_events(
    cloudtrail: Any, keys: Iterable[str], since: str | None, until: str | None, pacer: Pacer | None = None
) -> Iterator[dict[str, Any]]:
    """Events by access key through LookupEvents: 50 a page, at most 2 calls a second (the API's limit)."""
    pacer = pacer or Pacer()
    for key in sorted(set(keys)):
        params: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": key}],
            "MaxResults": 50,
        }
        if since:
            params["StartTime"] = _parse_time(since)
        if until:
            params["EndTime"] = _parse_time(until)
        while True:
            pacer.wait()
            page = cloudtrail.lookup_events(**params)
            for event in page.get("Events", []):
                record = json.loads(event["CloudTrailEvent"])
                if (record.get("userIdentity") or {}).get("accessKeyId") == key:
                    yield _slim(record)
            token = page.get("NextToken")
            if not token:
                break
            params["NextToken"] = token


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def normalize_time(value: str | datetime | None) -> str | None:
    """CloudTrail's eventTime form (2024-11-30T08:43:17Z), from a datetime, a date or an ISO string."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return f"{text}T00:00:00Z"
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text!r} is not a time: use 2024-11-30 or 2024-11-30T08:43:17Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- analysis


def _derived(event: dict[str, Any]) -> str | None:
    if event["eventName"] in DERIVING and not event["errorCode"]:
        creds = event["responseElements"].get("credentials") or {}
        return creds.get("accessKeyId")
    return None


def _created_key(event: dict[str, Any]) -> CreatedKey | None:
    if event["eventName"] == "CreateAccessKey" and not event["errorCode"]:
        made = event["responseElements"].get("accessKey") or {}
        if made.get("accessKeyId"):
            return CreatedKey(
                access_key_id=made["accessKeyId"],
                user_name=made.get("userName") or event["requestParameters"].get("userName"),
                created_with=event["accessKeyId"],
                event_id=event["eventID"],
            )
    return None


def _resources(event: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and _RESOURCE_KEY.search(key) and key not in ("accessKeyId",):
            found.append(value)

    walk(event["requestParameters"])
    made = _created_key(event)
    if made:
        found.append(made.access_key_id)
    return sorted(set(found))


def analyse(
    events: list[dict[str, Any]],
    asked: list[str],
    derived: list[DerivedKey],
    since: str | None,
    until: str | None,
    files: int,
    size: int,
    seconds: float,
) -> Review:
    events = sorted(events, key=lambda e: (e["eventTime"], e["eventID"]))
    ips: dict[str, IpSeen] = {}
    findings: dict[str, list[Finding]] = {category: [] for category in CATEGORIES}
    contain = Containable()
    for event in events:
        ip = event["sourceIPAddress"]
        if ip:
            seen = ips.get(ip)
            if seen is None:
                ips[ip] = IpSeen(ip=ip, count=1, first_seen=event["eventTime"], last_seen=event["eventTime"])
            else:
                seen.count += 1
                seen.last_seen = event["eventTime"]
        category = CATEGORY_OF.get(event["eventName"])
        if category:
            findings[category].append(
                Finding(
                    category=category,
                    event_name=event["eventName"],
                    event_id=event["eventID"],
                    event_time=event["eventTime"],
                    access_key_id=event["accessKeyId"],
                    source_ip=ip,
                    region=event["awsRegion"],
                    error_code=event["errorCode"],
                    resources=_resources(event),
                )
            )
        if event["errorCode"]:
            continue
        params = event["requestParameters"]
        name = event["eventName"]
        if name == "CreateUser" and params.get("userName"):
            contain.users.append(params["userName"])
        elif name in ("CreateLoginProfile", "UpdateLoginProfile") and params.get("userName"):
            contain.login_profiles.append(params["userName"])
        elif name == "CreateRole" and params.get("roleName"):
            contain.roles.append(params["roleName"])
        elif name in ("AttachUserPolicy", "AttachRolePolicy") and params.get("policyArn"):
            who = f"user/{params['userName']}" if "userName" in params else f"role/{params.get('roleName')}"
            contain.attached_policies.append({"principal": who, "policy_arn": params["policyArn"]})
        made = _created_key(event)
        if made:
            contain.access_keys.append(made)
    contain.users = sorted(set(contain.users))
    contain.login_profiles = sorted(set(contain.login_profiles))
    contain.roles = sorted(set(contain.roles))
    return Review(
        access_key_ids=[a for a in asked if "/" not in a],
        principals=[a for a in asked if "/" in a],
        derived_keys=derived,
        since=since,
        until=until,
        events_total=len(events),
        first_event=events[0]["eventTime"] if events else None,
        last_event=events[-1]["eventTime"] if events else None,
        events_by_name=dict(Counter(f"{e['eventSource'].split('.')[0]}:{e['eventName']}" for e in events).most_common()),
        source_ips=sorted(ips.values(), key=lambda s: (-s.count, s.ip)),
        user_agents=dict(Counter(e["userAgent"] or "" for e in events).most_common()),
        regions=dict(Counter(e["awsRegion"] or "" for e in events).most_common()),
        error_codes=dict(Counter(e["errorCode"] for e in events if e["errorCode"]).most_common()),
        findings={k: v for k, v in findings.items() if v},
        contain=contain,
        files_scanned=files,
        bytes_scanned=size,
        seconds=round(seconds, 3),
    )


def _child_key(event: dict[str, Any]) -> str | None:
    """A key this event made: temporary credentials, or a new access key."""
    made = _created_key(event)
    return made.access_key_id if made else _derived(event)


def derivations(events: list[dict[str, Any]], keys: Iterable[str]) -> list[DerivedKey]:
    """The keys made by the reviewed keys or principals (and by those, in turn), in time order."""
    known = set(keys)
    out: list[DerivedKey] = []
    for event in sorted(events, key=lambda e: (e["eventTime"], e["eventID"])):
        child = _child_key(event)
        if child and child not in known and _is_ours(event, known):
            known.add(child)
            out.append(
                DerivedKey(
                    access_key_id=child,
                    parent=event["accessKeyId"],
                    via=event["eventName"],
                    event_id=event["eventID"],
                    event_time=event["eventTime"],
                )
            )
    return out


def review(
    keys: list[str],  # access key ids, and role/NAME or user/NAME for every session of a principal
    since: str | None = None,
    until: str | None = None,
    scanner: Scanner | None = None,
    lookup: Any = None,
) -> Review:
    """Every event made with `keys` (and the keys derived from them) in [since, until], analysed."""
    start = time.monotonic()
    events: dict[str, dict[str, Any]] = {}
    if scanner is not None:
        for event in scanner.scan(keys, since, until):
            events.setdefault(event["eventID"], event)
    else:
        if any("/" in k for k in keys):
            raise ValueError("reviewing a role's or user's sessions needs the CloudTrail files (s3:// or a directory)")
        asked: set[str] = set()
        todo = set(keys)
        pacer = Pacer()
        while todo:
            asked |= todo
            for event in lookup_events(lookup, todo, since, until, pacer):
                events.setdefault(event["eventID"], event)
            todo = {d.access_key_id for d in derivations(list(events.values()), keys)} - asked
    found = list(events.values())
    files = scanner.files_scanned if scanner else 0
    size = scanner.bytes_scanned if scanner else 0
    return analyse(found, sorted(keys), derivations(found, keys), since, until, files, size, time.monotonic() - start)


def scanner_for(source: str, ctx_client: Any, since: str | None, until: str | None, workers: int | None = None) -> Scanner:
    """A scanner over `s3://bucket/prefix` or a local file or directory."""
    if source.startswith("s3://"):
        bucket, _, prefix = source.removeprefix("s3://").partition("/")
        s3 = ctx_client("s3")
        return Scanner(s3_units(s3, bucket, prefix, since, until), s3_factory=lambda: ctx_client("s3"), workers=workers)
    return Scanner(local_units(Path(source)), workers=workers)


@action(
    "aws.cloudtrail.review_key_activity",
    mutates=False,
    permissions=["s3:ListBucket", "s3:GetObject", "cloudtrail:LookupEvents"],
    calls=["s3:ListObjectsV2 + s3:GetObject (log files)", "or cloudtrail:LookupEvents (50 a call, 2 calls a second)"],
)
def review_key_activity(
    ctx: ActionContext,
    source: Annotated[
        str,
        Field(description="s3://bucket/prefix of CloudTrail files, a local directory, or `lookup` for LookupEvents."),
    ],
    access_key_ids: AccessKeyIds = [],  # noqa: B006 - pydantic copies defaults
    principals: Principals = [],  # noqa: B006
    since: Annotated[str | None, Field(description="Start of the window (2024-11-30 or ISO time).")] = None,
    until: Annotated[str | None, Field(description="End of the window.")] = None,
    region: Annotated[str | None, Field(description="LookupEvents region; defaults to the configured one.")] = None,
) -> Review:
    """Review what keys (or a role's sessions) did in CloudTrail, following derived credentials."""
    targets = [*access_key_ids, *principals]
    if not targets:
        raise ValueError("name at least one access key id or principal to review")
    start, end = normalize_time(since), normalize_time(until)
    if source == "lookup":
        return review(targets, start, end, lookup=ctx.aws.client("cloudtrail", region))
    return review(targets, start, end, scanner=scanner_for(source, ctx.aws.client, start, end))


def write_corpus_file(path: Path, records: list[dict[str, Any]]) -> None:
    """Write records as CloudTrail does (gzipped {"Records": [...]}); used by the sandbox, tests and bench."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump({"Records": records}, handle)
