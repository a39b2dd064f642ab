"""Analysis: derived keys, findings by category, what to contain; `review` puts a review together."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from typing import Any

from integrations.aws.cloudtrail_review.events import base_name, child_key, created_key, derived, is_ours
from integrations.aws.cloudtrail_review.report import (
    CATEGORIES,
    CATEGORY_OF,
    Containable,
    ContainEntry,
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
    ips: dict[str, list[Any]] = {}  # ip -> [count, first seen, last seen] (IpSeen made once per ip, at the end)
    findings: dict[str, list[Finding]] = {category: [] for category in CATEGORIES}
    for event in events:
        ip = event["sourceIPAddress"]
        if ip:
            seen = ips.get(ip)
            if seen is None:
                ips[ip] = [1, event["eventTime"], event["eventTime"]]
            else:
                seen[0] += 1
                seen[2] = event["eventTime"]
        category = CATEGORY_OF.get(base_name(event["eventName"]))
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
        source_ips=sorted(
            (IpSeen(ip=ip, count=count, first_seen=first, last_seen=last) for ip, (count, first, last) in ips.items()),
            key=lambda s: (-s.count, s.ip),
        ),
        user_agents=dict(Counter(e["userAgent"] or "" for e in events).most_common()),
        regions=dict(Counter(e["awsRegion"] or "" for e in events).most_common()),
        error_codes=dict(Counter(e["errorCode"] for e in events if e["errorCode"]).most_common()),
        findings={k: v for k, v in findings.items() if v},
        contain=containment(events),
        files_scanned=files,
        bytes_scanned=size,
        seconds=round(seconds, 3),
        **(skips or Skips()).fields(),
    )


# ---------------------------------------------------------------- what to contain, and what was undone

_ARN_TAIL = re.compile(r"[^/:]+$")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tail(value: Any) -> str | None:
    """The last part of a name or ARN (trail/main, arn:...:role/path/NAME -> NAME)."""
    text = _str(value)
    if text is None:
        return None
    match = _ARN_TAIL.search(text)
    return match.group(0) if match else text


def _items(value: Any) -> list[Any]:
    """CloudTrail's EC2 lists come as {"items": [...]}; other services log bare lists."""
    if isinstance(value, dict):
        value = value.get("items")
    return value if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v]


def _document(value: Any) -> dict[str, Any] | None:
    """A policy document logged as an object or as JSON text (URL-decoded or not)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        text = value if value.lstrip().startswith("{") else urllib.parse.unquote(value)
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _principal_of(params: dict[str, Any]) -> str | None:
    for field, kind in (("userName", "user"), ("roleName", "role"), ("groupName", "group")):
        name = _str(params.get(field))
        if name:
            return f"{kind}/{name}"
    return None


def _rules(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Security-group rules as (protocol, ports, one source each), so a revocation is matched exactly."""
    out: list[dict[str, Any]] = []
    for perm in _items(params.get("ipPermissions")):
        if not isinstance(perm, dict):
            continue
        base = {k: perm.get(k) for k in ("ipProtocol", "fromPort", "toPort") if perm.get(k) is not None}
        sources: list[dict[str, Any]] = []
        for field, key in (
            ("ipRanges", "cidrIp"),
            ("ipv6Ranges", "cidrIpv6"),
            ("prefixListIds", "prefixListId"),
            ("groups", "groupId"),
        ):
            for src in _items(perm.get(field)):
                if isinstance(src, dict) and _str(src.get(key)):
                    sources.append({key: src[key]})
        out.extend({**base, **src} for src in sources)  # a rule logged with no source names nothing to revoke
    if not out and _str(params.get("cidrIp")):  # the older flat form
        out.append(
            {
                "ipProtocol": params.get("ipProtocol"),
                "fromPort": params.get("fromPort"),
                "toPort": params.get("toPort"),
                "cidrIp": params["cidrIp"],
            }
        )
    return out


def _shared(params: dict[str, Any], field: str, op: str) -> list[str]:
    """Accounts (or "all") added to or removed from a snapshot's or image's permission list."""
    block = params.get(field)
    change = block.get(op) if isinstance(block, dict) else None
    out: list[str] = []
    for item in _items(change):
        if isinstance(item, dict):
            out += _strings(item.get("userId")) + _strings(item.get("group"))
    # ModifySnapshotAttribute/ModifyImageAttribute also take userIds + operationType at the top level
    if params.get("operationType") == op:
        out += _strings(params.get("userId")) + [u for x in _items(params.get("userIds")) for u in _strings(x)]
    return sorted(set(out))


def outside_principals(document: dict[str, Any], account: str | None) -> list[str]:
    """Who an Allow in a policy lets in from outside the account: "*", other accounts, services' wildcards."""
    statements = document.get("Statement")
    found: set[str] = set()
    for st in statements if isinstance(statements, list) else [statements]:
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal")
        values: list[str] = []
        if principal == "*":
            values = ["*"]
        elif isinstance(principal, dict):
            for kind in ("AWS", "CanonicalUser", "Federated"):
                values += _strings(principal.get(kind))
        for value in values:
            if value == "*" or not account or _principal_account(value) != account:
                found.add(value)
    return sorted(found)


def _principal_account(value: str) -> str | None:
    """The account a policy principal names: a bare account id, or the account field of an ARN (never a match
    anywhere in the text: `role/123456789012-x` of another account is not ours)."""
    if value.isdigit():
        return value
    parts = value.split(":")
    return parts[4] if value.startswith("arn:") and len(parts) > 5 else None


_PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
_GROUP_URIS = ("acs.amazonaws.com/groups/global/AllUsers", "acs.amazonaws.com/groups/global/AuthenticatedUsers")


def _acl_grantees(params: dict[str, Any]) -> list[str]:
    """Grantees of a bucket ACL outside the bucket's owner: the public groups and other accounts."""
    found = {a for a in _strings(params.get("x-amz-acl")) if a in _PUBLIC_ACLS}
    policy = params.get("AccessControlPolicy")
    if isinstance(policy, dict):
        owner = policy.get("Owner", {}).get("ID") if isinstance(policy.get("Owner"), dict) else None
        acl = policy.get("AccessControlList")
        grants = acl.get("Grant") if isinstance(acl, dict) else None
        for grant in grants if isinstance(grants, list) else [grants]:
            grantee = grant.get("Grantee") if isinstance(grant, dict) else None
            if not isinstance(grantee, dict):
                continue
            uri, cid = _str(grantee.get("URI")), _str(grantee.get("ID"))
            if uri and uri.endswith(_GROUP_URIS):
                found.add(uri)
            elif cid and cid != owner:
                found.add(cid)
    for header in ("x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-full-control", "x-amz-grant-read-acp"):
        found.update(g for g in _strings(params.get(header)) if any(u in g for u in _GROUP_URIS))
    return sorted(found)


def _response(event: dict[str, Any], *path: str) -> Any:
    value: Any = event["responseElements"]
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


Made = tuple[str, dict[str, Any]]  # (category, entry fields: kind and ids)


def _made(event: dict[str, Any], name: str, service: str) -> list[Made]:
    """What a successful event made or changed that may need containing."""
    p = event["requestParameters"]
    user, role, group = _str(p.get("userName")), _str(p.get("roleName")), _str(p.get("groupName"))
    who = _principal_of(p)
    out: list[Made] = []
    if name == "CreateAccessKey":
        made = created_key(event)
        if made:
            out.append(
                ("credentials", {"kind": "access_key", "access_key_id": made.access_key_id, "user_name": made.user_name})
            )
    elif name in ("CreateLoginProfile", "UpdateLoginProfile") and user:
        out.append(("credentials", {"kind": "login_profile", "user_name": user, "changed": name == "UpdateLoginProfile"}))
    elif name == "CreateVirtualMFADevice":
        serial = _str(_response(event, "virtualMFADevice", "serialNumber"))
        if serial:
            out.append(("credentials", {"kind": "mfa_device", "serial_number": serial, "user_name": None}))
    elif name in ("EnableMFADevice", "ResyncMFADevice") and _str(p.get("serialNumber")):
        out.append(("credentials", {"kind": "mfa_device", "serial_number": p["serialNumber"], "user_name": user}))
    elif name in ("GetSessionToken", "GetFederationToken", "AssumeRole"):
        key = derived(event)
        if key and name == "AssumeRole":
            arn = _str(p.get("roleArn"))
            out.append(
                (
                    "credentials",
                    {
                        "kind": "assumed_role",
                        "access_key_id": key,
                        "role_arn": arn,
                        "role_name": _tail(arn),
                        "session_name": _str(p.get("roleSessionName")),
                    },
                )
            )
        elif key:
            owner = _tail(event.get("principal")) if ":user/" in (event.get("principal") or "") else None
            out.append(
                (
                    "credentials",
                    {
                        "kind": "session",
                        "access_key_id": key,
                        "via": name,
                        "user_name": owner,
                        "federated_user": _str(p.get("name")),
                        "issued_at": event["eventTime"],
                    },
                )
            )
    elif name == "CreateUser" and user:
        out.append(("principals", {"kind": "user", "user_name": user}))
    elif name == "CreateRole" and role:
        out.append(
            ("principals", {"kind": "role", "role_name": role, "document": _document(p.get("assumeRolePolicyDocument"))})
        )
    elif name == "CreatePolicy":
        arn = _str(_response(event, "policy", "arn"))
        out.append(("principals", {"kind": "policy", "policy_arn": arn, "policy_name": _str(p.get("policyName"))}))
    elif name == "CreatePolicyVersion" and _str(p.get("policyArn")):
        version = _str(_response(event, "policyVersion", "versionId"))
        out.append(("principals", {"kind": "policy_version", "policy_arn": p["policyArn"], "version_id": version}))
    elif name in ("AttachUserPolicy", "AttachRolePolicy", "AttachGroupPolicy") and who and _str(p.get("policyArn")):
        out.append(("principals", {"kind": "attached_policy", "principal": who, "policy_arn": p["policyArn"]}))
    elif name in ("PutUserPolicy", "PutRolePolicy", "PutGroupPolicy") and who and _str(p.get("policyName")):
        out.append(
            (
                "principals",
                {
                    "kind": "inline_policy",
                    "principal": who,
                    "policy_name": p["policyName"],
                    "document": _document(p.get("policyDocument")),
                },
            )
        )
    elif name == "AddUserToGroup" and user and group:
        out.append(("principals", {"kind": "group_membership", "group_name": group, "user_name": user}))
    elif name == "UpdateAssumeRolePolicy" and role:
        out.append(
            (
                "principals",
                {
                    "kind": "trust_policy",
                    "role_name": role,
                    "document": _document(p.get("policyDocument")),
                    "previous_document": None,
                },
            )
        )
    elif name in ("CreateInstanceProfile", "AddRoleToInstanceProfile") and _str(p.get("instanceProfileName")):
        out.append(
            (
                "principals",
                {"kind": "instance_profile", "instance_profile_name": p["instanceProfileName"], "role_name": role},
            )
        )
    elif service == "rolesanywhere" and name in ("CreateTrustAnchor", "CreateProfile"):
        kind, field = (
            ("trust_anchor", "trustAnchor") if name == "CreateTrustAnchor" else ("roles_anywhere_profile", "profile")
        )
        ident = _str(_response(event, field, f"{field}Id"))
        if ident:
            out.append(("principals", {"kind": kind, "id": ident, "name": _str(p.get("name"))}))
    elif name in ("AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress") and _str(p.get("groupId")):
        direction = "ingress" if name.endswith("Ingress") else "egress"
        rule_ids = [
            r["securityGroupRuleId"]
            for r in _items(_response(event, "securityGroupRuleSet"))
            if isinstance(r, dict) and _str(r.get("securityGroupRuleId"))
        ]
        for rule in _rules(p):
            out.append(
                (
                    "exposure",
                    {
                        "kind": "security_group_rule",
                        "group_id": p["groupId"],
                        "direction": direction,
                        "rule": rule,
                        "rule_ids": rule_ids,
                    },
                )
            )
    elif name == "ModifySnapshotAttribute" and _str(p.get("snapshotId")):
        accounts = _shared(p, "createVolumePermission", "add")
        if accounts:
            out.append(("exposure", {"kind": "snapshot_share", "snapshot_id": p["snapshotId"], "accounts": accounts}))
    elif name == "ModifyImageAttribute" and _str(p.get("imageId")):
        accounts = _shared(p, "launchPermission", "add")
        if accounts:
            out.append(("exposure", {"kind": "image_share", "image_id": p["imageId"], "accounts": accounts}))
    elif name in ("ModifyDBSnapshotAttribute", "ModifyDBClusterSnapshotAttribute"):
        ident = _str(p.get("dBSnapshotIdentifier")) or _str(p.get("dBClusterSnapshotIdentifier"))
        accounts = sorted(set(_strings(p.get("valuesToAdd"))))
        if ident and accounts and p.get("attributeName") == "restore":
            kind = "db_snapshot_share" if name == "ModifyDBSnapshotAttribute" else "db_cluster_snapshot_share"
            out.append(("exposure", {"kind": kind, "db_snapshot_id": ident, "accounts": accounts}))
    elif name == "PutBucketPolicy" and _str(p.get("bucketName")):
        document = _document(p.get("bucketPolicy")) or _document(p.get("policy"))
        outside = outside_principals(document, event.get("account")) if document else []
        if outside:
            out.append(("exposure", {"kind": "bucket_policy", "bucket": p["bucketName"], "outside": outside}))
    elif name == "PutBucketAcl" and _str(p.get("bucketName")):
        grantees = _acl_grantees(p)
        if grantees:
            out.append(("exposure", {"kind": "bucket_acl", "bucket": p["bucketName"], "grantees": grantees}))
    elif service == "lambda" and name == "AddPermission" and _str(p.get("functionName")):
        out.append(
            (
                "exposure",
                {
                    "kind": "lambda_permission",
                    "function_name": _tail(p["functionName"]),
                    "statement_id": _str(p.get("statementId")),
                    "principal": _str(p.get("principal")),
                },
            )
        )
    elif service == "lambda" and name == "UpdateFunctionCode" and _str(p.get("functionName")):
        out.append(("exposure", {"kind": "function_code", "function_name": _tail(p["functionName"])}))
    elif name in ("StopLogging", "DeleteTrail") and _tail(p.get("name")):
        kind = "trail_stopped" if name == "StopLogging" else "trail_deleted"
        out.append(("logging", {"kind": kind, "trail_name": _tail(p.get("name")), "trail": _str(p.get("name"))}))
    elif name == "PutEventSelectors" and _tail(p.get("trailName")):
        selectors = {k: p[k] for k in ("eventSelectors", "advancedEventSelectors") if k in p}
        out.append(
            (
                "logging",
                {
                    "kind": "event_selectors",
                    "trail_name": _tail(p["trailName"]),
                    "trail": p["trailName"],
                    "selectors": selectors,
                },
            )
        )
    elif name == "DeleteFlowLogs":
        ids = sorted(set(re.findall(r"fl-[0-9a-f]+", json.dumps(p))))
        if ids:
            out.append(("logging", {"kind": "flow_logs_deleted", "flow_log_ids": ids}))
    elif name == "DeleteLogGroup" and _str(p.get("logGroupName")):
        out.append(("logging", {"kind": "log_group_deleted", "log_group_name": p["logGroupName"]}))
    elif service == "guardduty" and name in ("DeleteDetector", "UpdateDetector") and _str(p.get("detectorId")):
        if name == "DeleteDetector" or p.get("enable") is False or "dataSources" in p or "features" in p:
            change = "deleted" if name == "DeleteDetector" else ("disabled" if p.get("enable") is False else "changed")
            out.append(("logging", {"kind": "guardduty_detector", "detector_id": p["detectorId"], "change": change}))
    elif service == "config" and name in (
        "StopConfigurationRecorder",
        "DeleteConfigurationRecorder",
        "PutConfigurationRecorder",
    ):
        recorder = p.get("configurationRecorder")
        named = _str(p.get("configurationRecorderName")) or (
            _str(recorder.get("name")) if isinstance(recorder, dict) else None
        )
        change = {"StopConfigurationRecorder": "stopped", "DeleteConfigurationRecorder": "deleted"}.get(name, "changed")
        out.append(("logging", {"kind": "config_recorder", "recorder_name": named, "change": change}))
    elif name == "RunInstances":
        ids = [
            i["instanceId"]
            for i in _items(_response(event, "instancesSet"))
            if isinstance(i, dict) and _str(i.get("instanceId"))
        ]
        if ids:
            out.append(("compute", {"kind": "instances", "instance_ids": ids}))
    elif name == "SendCommand":
        command = _str(_response(event, "command", "commandId"))
        out.append(
            (
                "compute",
                {
                    "kind": "ssm_command",
                    "command_id": command,
                    "instance_ids": _strings(p.get("instanceIds")),
                    "document_name": _str(p.get("documentName")),
                },
            )
        )
    elif service == "lambda" and name == "CreateFunction" and _str(p.get("functionName")):
        out.append(("compute", {"kind": "function", "function_name": _tail(p["functionName"])}))
    elif name == "GetSecretValue" and _str(p.get("secretId")):
        out.append(("secrets_read", {"kind": "secret", "secret_id": p["secretId"]}))
    elif name == "BatchGetSecretValue":
        for secret in _strings(p.get("secretIdList")):
            out.append(("secrets_read", {"kind": "secret", "secret_id": secret}))
    elif service == "ssm" and name in ("GetParameter", "GetParameters", "GetParametersByPath"):
        names = _strings(p.get("name")) + _strings(p.get("names")) + _strings(p.get("path"))
        for param in names:
            out.append(
                (
                    "secrets_read",
                    {
                        "kind": "parameter" if name != "GetParametersByPath" else "parameter_path",
                        "name": param,
                        "decrypted": bool(p.get("withDecryption")),
                    },
                )
            )
    return out


Undo = tuple[tuple[str, ...], dict[str, Any]]  # (kinds it reverts, ids that must match)


def _undoes(event: dict[str, Any], name: str, service: str) -> list[Undo]:
    """What a successful event reverts: entries of these kinds whose ids match."""
    p = event["requestParameters"]
    user, role, group = _str(p.get("userName")), _str(p.get("roleName")), _str(p.get("groupName"))
    who = _principal_of(p)
    of_user = ("user", "access_key", "login_profile", "mfa_device", "group_membership")
    if name == "DeleteUser" and user:
        return [(of_user, {"user_name": user}), (("attached_policy", "inline_policy"), {"principal": f"user/{user}"})]
    if name == "DeleteRole" and role:
        return [
            (("role", "trust_policy", "instance_profile"), {"role_name": role}),
            (("attached_policy", "inline_policy"), {"principal": f"role/{role}"}),
        ]
    if name == "DeleteAccessKey" and _str(p.get("accessKeyId")):
        return [(("access_key",), {"access_key_id": p["accessKeyId"]})]
    if name == "DeleteLoginProfile" and user:
        return [(("login_profile",), {"user_name": user})]
    if name in ("DeactivateMFADevice", "DeleteVirtualMFADevice") and _str(p.get("serialNumber")):
        return [(("mfa_device",), {"serial_number": p["serialNumber"]})]
    if name == "DeletePolicy" and _str(p.get("policyArn")):
        return [(("policy", "policy_version", "attached_policy"), {"policy_arn": p["policyArn"]})]
    if name == "DeletePolicyVersion" and _str(p.get("policyArn")):
        return [(("policy_version",), {"policy_arn": p["policyArn"], "version_id": _str(p.get("versionId"))})]
    if name in ("DetachUserPolicy", "DetachRolePolicy", "DetachGroupPolicy") and who:
        return [(("attached_policy",), {"principal": who, "policy_arn": _str(p.get("policyArn"))})]
    if name in ("DeleteUserPolicy", "DeleteRolePolicy", "DeleteGroupPolicy") and who:
        return [(("inline_policy",), {"principal": who, "policy_name": _str(p.get("policyName"))})]
    if name == "RemoveUserFromGroup" and user and group:
        return [(("group_membership",), {"group_name": group, "user_name": user})]
    if name == "DeleteGroup" and group:
        return [
            (("group_membership",), {"group_name": group}),
            (("attached_policy", "inline_policy"), {"principal": f"group/{group}"}),
        ]
    if name in ("DeleteInstanceProfile", "RemoveRoleFromInstanceProfile") and _str(p.get("instanceProfileName")):
        return [(("instance_profile",), {"instance_profile_name": p["instanceProfileName"]})]
    if service == "rolesanywhere" and name in ("DeleteTrustAnchor", "DisableTrustAnchor"):
        return [(("trust_anchor",), {"id": _str(p.get("trustAnchorId"))})]
    if service == "rolesanywhere" and name in ("DeleteProfile", "DisableProfile"):
        return [(("roles_anywhere_profile",), {"id": _str(p.get("profileId"))})]
    if name in ("RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress") and _str(p.get("groupId")):
        direction = "ingress" if name.endswith("Ingress") else "egress"
        out: list[Undo] = [
            (("security_group_rule",), {"group_id": p["groupId"], "direction": direction, "rule": rule})
            for rule in _rules(p)
        ]
        for rule_id in [x for i in _items(p.get("securityGroupRuleIds")) for x in _strings(i)]:
            out.append((("security_group_rule",), {"group_id": p["groupId"], "rule_ids": [rule_id]}))
        return out
    if name == "DeleteSecurityGroup" and _str(p.get("groupId")):
        return [(("security_group_rule",), {"group_id": p["groupId"]})]
    if name == "ModifySnapshotAttribute" and _str(p.get("snapshotId")):
        return [
            (
                ("snapshot_share",),
                {"snapshot_id": p["snapshotId"], "accounts": _shared(p, "createVolumePermission", "remove")},
            )
        ]
    if name in ("ResetSnapshotAttribute", "DeleteSnapshot") and _str(p.get("snapshotId")):
        return [(("snapshot_share",), {"snapshot_id": p["snapshotId"]})]
    if name == "ModifyImageAttribute" and _str(p.get("imageId")):
        return [(("image_share",), {"image_id": p["imageId"], "accounts": _shared(p, "launchPermission", "remove")})]
    if name in ("ResetImageAttribute", "DeregisterImage") and _str(p.get("imageId")):
        return [(("image_share",), {"image_id": p["imageId"]})]
    if name in ("ModifyDBSnapshotAttribute", "ModifyDBClusterSnapshotAttribute"):
        ident = _str(p.get("dBSnapshotIdentifier")) or _str(p.get("dBClusterSnapshotIdentifier"))
        removed = sorted(set(_strings(p.get("valuesToRemove"))))
        return (
            [(("db_snapshot_share", "db_cluster_snapshot_share"), {"db_snapshot_id": ident, "accounts": removed})]
            if removed
            else []
        )
    if name in ("DeleteDBSnapshot", "DeleteDBClusterSnapshot"):
        ident = _str(p.get("dBSnapshotIdentifier")) or _str(p.get("dBClusterSnapshotIdentifier"))
        return [(("db_snapshot_share", "db_cluster_snapshot_share"), {"db_snapshot_id": ident})]
    if name == "DeleteBucketPolicy" and _str(p.get("bucketName")):
        return [(("bucket_policy",), {"bucket": p["bucketName"]})]
    if name == "PutBucketPolicy" and _str(p.get("bucketName")):  # replaced by a policy that lets no outsider in
        document = _document(p.get("bucketPolicy")) or _document(p.get("policy"))
        if document is not None and not outside_principals(document, event.get("account")):
            return [(("bucket_policy",), {"bucket": p["bucketName"]})]
    if name == "PutBucketAcl" and _str(p.get("bucketName")) and not _acl_grantees(p):
        return [(("bucket_acl",), {"bucket": p["bucketName"]})]
    if service == "lambda" and name == "RemovePermission" and _str(p.get("functionName")):
        return [
            (("lambda_permission",), {"function_name": _tail(p["functionName"]), "statement_id": _str(p.get("statementId"))})
        ]
    if service == "lambda" and name == "DeleteFunction" and _str(p.get("functionName")):
        return [(("function", "function_code", "lambda_permission"), {"function_name": _tail(p["functionName"])})]
    if name == "StartLogging" and _tail(p.get("name")):
        return [(("trail_stopped",), {"trail_name": _tail(p.get("name"))})]
    if name == "TerminateInstances":
        ids = [i["instanceId"] for i in _items(p.get("instancesSet")) if isinstance(i, dict) and _str(i.get("instanceId"))]
        return [(("instances",), {"instance_ids": sorted(ids)})] if ids else []
    if service == "guardduty" and name == "UpdateDetector" and p.get("enable") is True:
        return [(("guardduty_detector",), {"detector_id": _str(p.get("detectorId")), "change": "disabled"})]
    if service == "config" and name == "StartConfigurationRecorder":
        return [(("config_recorder",), {"recorder_name": _str(p.get("configurationRecorderName")), "change": "stopped"})]
    return []


def _matches(entry: ContainEntry, want: dict[str, Any]) -> bool:
    ids = entry.model_extra or {}
    for key, value in want.items():
        have = ids.get(key)
        if key in ("accounts", "rule_ids", "instance_ids") and isinstance(value, list):
            # a revocation must cover everything the entry granted (a partial removal leaves it standing)
            if key == "rule_ids":
                if not value or not set(value) & set(have or []):
                    return False
            elif not value or not set(have or []) <= set(value):
                return False
        elif have != value:
            return False
    return True


def containment(events: list[dict[str, Any]]) -> Containable:
    """What the events made or changed, by category, each with the later event that reverted it (or None).

    Events are in time order; failed calls make and undo nothing (they stay findings).
    """
    contain = Containable()
    entries: list[ContainEntry] = []
    for event in events:
        if event["errorCode"]:
            continue
        name = base_name(event["eventName"])
        service = event["eventSource"].split(".", 1)[0]
        for undo_kinds, want in _undoes(event, name, service):
            for entry in entries:
                if entry.undone_by is None and entry.kind in undo_kinds and _matches(entry, want):
                    entry.undone_by = event["eventID"]
        for category, fields in _made(event, name, service):
            entry = ContainEntry(
                event_id=event["eventID"], event_time=event["eventTime"], region=event["awsRegion"], **fields
            )
            entries.append(entry)
            getattr(contain, category).append(entry)
    _previous_trust(contain)
    return contain


def _previous_trust(contain: Containable) -> None:
    """A trust policy's earlier document, when the reviewed events set it (CreateRole or an earlier change)."""
    last: dict[str, Any] = {}
    for entry in contain.principals:
        extra = entry.model_extra or {}
        if entry.kind in ("role", "trust_policy") and extra.get("role_name"):
            if entry.kind == "trust_policy":
                extra["previous_document"] = last.get(extra["role_name"])
            last[extra["role_name"]] = extra.get("document")


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
