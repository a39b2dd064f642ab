"""One CloudTrail record: the slim form the review keeps, who made it, and the keys it made."""

from __future__ import annotations

import json
import re
from typing import Any

from integrations.aws.cloudtrail_review.report import DERIVING, CreatedKey


class BadRecord(ValueError):
    """A record the review cannot use; the message says which field and why."""


_EVENT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
KEY_ID = re.compile(r"(AKIA|ASIA)[A-Z0-9]{12,124}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    kinds: dict[type, str] = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return kinds.get(type(value), "a number")


def _text(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None or isinstance(value, str):
        return value
    raise BadRecord(f"{name} is {_kind(value)}, not a string")


def _required(record: dict[str, Any], name: str) -> str:
    value = _text(record, name)
    if not value:
        raise BadRecord(
            f"{name} is missing" if name not in record else f"{name} is {_kind(value) if value is None else 'empty'}"
        )
    return value


def identity_of(record: Any) -> dict[str, Any]:
    """A record's userIdentity, checked as far as telling whose record it is needs (BadRecord if it cannot be told)."""
    if not isinstance(record, dict):
        raise BadRecord(f"the record is {_kind(record)}, not an object")
    identity = record.get("userIdentity")
    if identity is None:
        return {}
    if not isinstance(identity, dict):
        raise BadRecord(f"userIdentity is {_kind(identity)}, not an object")
    for name in ("accessKeyId", "arn"):
        value = identity.get(name)
        if value is not None and not isinstance(value, str):
            raise BadRecord(f"userIdentity.{name} is {_kind(value)}, not a string")
    return identity


_TEXTS = ("eventID", "eventTime", "eventName", "eventSource", "awsRegion", "sourceIPAddress", "userAgent", "errorCode")


def slim(record: dict[str, Any], identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields the review keeps, checked (BadRecord names the first that is wrong). `identity`: the record's
    `identity_of`, when the caller has it already."""
    if identity is None:
        identity = identity_of(record)
    # The common case in one look: every text field a string (the four required ones non-empty) or null.
    get = record.get
    event_id, stamp, name, source, region, ip, agent, error = map(get, _TEXTS)
    account = get("recipientAccountId")
    if (
        event_id
        and name
        and source
        and type(event_id) is str
        and type(stamp) is str
        and type(name) is str
        and type(source) is str
        and (region is None or type(region) is str)
        and (ip is None or type(ip) is str)
        and (agent is None or type(agent) is str)
        and (error is None or type(error) is str)
        and (account is None or type(account) is str)
        and _EVENT_TIME.fullmatch(stamp)
    ):
        params = get("requestParameters")
        response = get("responseElements")
        return {
            "eventID": event_id,
            "eventTime": stamp,
            "eventName": name,
            "eventSource": source,
            "awsRegion": region,
            "sourceIPAddress": ip,
            "userAgent": agent,
            "errorCode": error,
            "accessKeyId": identity.get("accessKeyId"),
            "principal": identity.get("arn"),
            "account": account,
            "requestParameters": params if type(params) is dict else {},
            "responseElements": {} if response is None else public_response(response),
        }
    return _slim_checked(record, identity)


def _slim_checked(record: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """slim, field by field, so that BadRecord names the first field that is wrong."""
    stamp = _required(record, "eventTime")
    if not _EVENT_TIME.fullmatch(stamp):
        raise BadRecord(f"eventTime {stamp[:40]!r} is not CloudTrail's time form (2024-11-30T08:43:17Z)")
    params = record.get("requestParameters")
    return {
        "eventID": _required(record, "eventID"),
        "eventTime": stamp,
        "eventName": _required(record, "eventName"),
        "eventSource": _required(record, "eventSource"),
        "awsRegion": _text(record, "awsRegion"),
        "sourceIPAddress": _text(record, "sourceIPAddress"),
        "userAgent": _text(record, "userAgent"),
        "errorCode": _text(record, "errorCode"),
        "accessKeyId": identity.get("accessKeyId"),
        "principal": identity.get("arn"),
        "account": _text(record, "recipientAccountId"),  # to tell an outside principal from the account's own
        # Some services log parameters that are not an object; the event still counts, with none.
        "requestParameters": params if isinstance(params, dict) else {},
        "responseElements": public_response(record.get("responseElements")),
    }


MAX_ENCODED_RESPONSE = 1 << 20  # a responseElements logged as JSON text is a few KB; more is not decoded


def public_response(response: Any) -> dict[str, Any]:
    """Response elements without secret material (session tokens, secret keys).

    CloudTrail logs them as an object, as null (reads, failures), or for some services as a string: JSON text
    of an object is decoded (and filtered like one); any other string counts as none.
    """
    if isinstance(response, str) and response.lstrip().startswith("{") and len(response) <= MAX_ENCODED_RESPONSE:
        try:
            response = json.loads(response)
        except (ValueError, RecursionError):  # not JSON after all: nothing the review can use
            return {}
    if not isinstance(response, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in response.items():
        if key in ("credentials", "accessKey"):
            if isinstance(value, dict):  # only the public fields, and only as strings: keys are followed from them
                out[key] = {
                    k: v
                    for k, v in value.items()
                    if k in ("accessKeyId", "userName", "expiration", "status") and isinstance(v, str)
                }
        elif key.lower() in ("sessiontoken", "secretaccesskey", "password"):
            continue
        else:
            out[key] = value
    return out


_API_VERSION = re.compile(r"(?<=[A-Za-z])20\d{6}(?:v\d+)?$")


def base_name(event_name: str) -> str:
    """The API name without the version Lambda appends in CloudTrail (AddPermission20150331v2 -> AddPermission)."""
    return _API_VERSION.sub("", event_name)


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
        made = (event["responseElements"].get("credentials") or {}).get("accessKeyId")
        return made if made and KEY_ID.fullmatch(made) else None  # a made-up "key" must not widen the review
    return None


def created_key(event: dict[str, Any]) -> CreatedKey | None:
    if event["eventName"] == "CreateAccessKey" and not event["errorCode"]:
        made = event["responseElements"].get("accessKey") or {}
        if made.get("accessKeyId") and KEY_ID.fullmatch(made["accessKeyId"]):
            asked = event["requestParameters"].get("userName")
            return CreatedKey(
                access_key_id=made["accessKeyId"],
                user_name=made.get("userName") or (asked if isinstance(asked, str) else None),
                created_with=event["accessKeyId"],
                event_id=event["eventID"],
            )
    return None


def child_key(event: dict[str, Any]) -> str | None:
    """A key this event made: temporary credentials, or a new access key."""
    made = created_key(event)
    return made.access_key_id if made else derived(event)
