"""One CloudTrail record: the slim form the review keeps, who made it, and the keys it made."""

from __future__ import annotations

from typing import Any

from integrations.aws.cloudtrail_review.report import DERIVING, CreatedKey


def slim(record: dict[str, Any]) -> dict[str, Any]:
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
        "responseElements": public_response(record.get("responseElements")),
    }


def public_response(response: Any) -> dict[str, Any]:
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


def needle(target: str) -> bytes:
    """What a file must contain to hold events of a target: a key id, role/NAME or user/NAME."""
    kind, _, name = target.partition("/")
    if kind == "role":
        return f"assumed-role/{name}/".encode()
    if kind == "user":
        return f':user/{name}"'.encode()
    return target.encode()


def is_ours(identity: dict[str, Any], targets: frozenset[str] | set[str]) -> bool:
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


def derived(event: dict[str, Any]) -> str | None:
    if event["eventName"] in DERIVING and not event["errorCode"]:
        creds = event["responseElements"].get("credentials") or {}
        return creds.get("accessKeyId")
    return None


def created_key(event: dict[str, Any]) -> CreatedKey | None:
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


def child_key(event: dict[str, Any]) -> str | None:
    """A key this event made: temporary credentials, or a new access key."""
    made = created_key(event)
    return made.access_key_id if made else derived(event)
