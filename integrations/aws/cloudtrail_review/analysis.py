"""Analysis: derived keys, findings by category, what to contain; `review` puts a review together."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from integrations.aws.cloudtrail_review.events import child_key, created_key, is_ours
from integrations.aws.cloudtrail_review.report import (
    CATEGORIES,
    CATEGORY_OF,
    Containable,
    DerivedKey,
    Finding,
    IpSeen,
    Review,
    Skips,
)
from integrations.aws.cloudtrail_review.scanner import Scanner
from integrations.aws.cloudtrail_review.sources import Pacer, lookup_events

_RESOURCE_KEY = re.compile(r"(?:name|id|arn|Name|Id|Arn|ARN)s?$")


def _resources(event: dict[str, Any]) -> list[str]:
    found: list[str] = []
    # Iterative, not recursive: requestParameters nested a thousand deep must not end the review.
    todo: list[tuple[Any, str]] = [(event["requestParameters"], "")]
    while todo:
        value, key = todo.pop()
        if isinstance(value, dict):
            todo.extend((v, str(k)) for k, v in value.items())
        elif isinstance(value, list):
            todo.extend((v, key) for v in value)
        elif isinstance(value, str) and _RESOURCE_KEY.search(key) and key not in ("accessKeyId",):
            found.append(value)
    made = created_key(event)
    if made:
        found.append(made.access_key_id)
    return sorted(set(found))


def _name(params: dict[str, Any], key: str) -> str | None:
    """A parameter that names something, when it is a non-empty string (a record is attacker-shaped data)."""
    value = params.get(key)
    return value if isinstance(value, str) and value else None


def analyse(
    events: list[dict[str, Any]],
    asked: list[str],
    derived: list[DerivedKey],
    since: str | None,
    until: str | None,
    files: int,
    size: int,
    seconds: float,
    skips: Skips | None = None,
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
        user, role, policy = _name(params, "userName"), _name(params, "roleName"), _name(params, "policyArn")
        if name == "CreateUser" and user:
            contain.users.append(user)
        elif name in ("CreateLoginProfile", "UpdateLoginProfile") and user:
            contain.login_profiles.append(user)
        elif name == "CreateRole" and role:
            contain.roles.append(role)
        elif name in ("AttachUserPolicy", "AttachRolePolicy") and policy:
            who = f"user/{user}" if "userName" in params else f"role/{role}"
            contain.attached_policies.append({"principal": who, "policy_arn": policy})
        made = created_key(event)
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
        **(skips or Skips()).fields(),
    )


def derivations(events: list[dict[str, Any]], keys: Iterable[str]) -> list[DerivedKey]:
    """The keys made by the reviewed keys or principals (and by those, in turn), in time order."""
    known = set(keys)
    out: list[DerivedKey] = []
    for event in sorted(events, key=lambda e: (e["eventTime"], e["eventID"])):
        child = child_key(event)
        if child and child not in known and is_ours(event, known):
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
    skips = scanner.skips if scanner is not None else Skips()
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
            for event in lookup_events(lookup, todo, since, until, pacer, skips):
                events.setdefault(event["eventID"], event)
            todo = {d.access_key_id for d in derivations(list(events.values()), keys)} - asked
    found = list(events.values())
    files = scanner.files_scanned if scanner else 0
    size = scanner.bytes_scanned if scanner else 0
    derived = derivations(found, keys)
    return analyse(found, sorted(keys), derived, since, until, files, size, time.monotonic() - start, skips)
