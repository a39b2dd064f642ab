"""Alerts as facts a playbook can use: which key, which user, how sure we are that it leaked.

Known sources, each read through its model (`flows.alerts.models`): AWS Health AWS_RISK_CREDENTIALS_EXPOSED and
GuardDuty findings in their EventBridge envelope, GitHub secret_scanning_alert webhooks; any other JSON object
is a generic alert. An alert is attacker-controlled: it is bounded in size and depth, a malformed known alert
is an AlertError naming the field, and the raw alert is kept (`alert.raw`) with any field named `secret` removed
and credential-shaped strings masked: it becomes a flow parameter.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flows.alerts.models import EventBridgeEvent, GuardDutyDetail, HealthDetail, SecretScanningWebhook
from flows.language.model import ALERT_FACTS
from integrations.masking import CREDENTIAL_RE, MASK, looks_secret

MAX_BYTES = 1_000_000  # a GuardDuty finding is a few kilobytes; webhooks are smaller
MAX_DEPTH = 32  # a GuardDuty finding nests 8 levels
MAX_VALUES = 50_000  # values (objects, lists, scalars) in one alert

FACT_KEYS = (*ALERT_FACTS, "raw")  # the facts a playbook reads (one list, in the language), and the sanitized alert

_KEY_RE = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_M = TypeVar("_M", bound=BaseModel)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class AlertError(ValueError):
    """An alert that cannot be read; the message names the field and says what was expected."""

    def __init__(self, message: str):
        # field names come from the alert: one printable line whatever they hold
        super().__init__(_CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], message)[:2_000])


def load_alert_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in a file, within the size and depth limits; special files are refused unopened."""
    name = str(path)
    try:
        info = os.stat(name)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise AlertError(f"{kind}: refused without opening it")
        if info.st_size > MAX_BYTES:
            raise AlertError(f"the file is {info.st_size} bytes; an alert is at most {MAX_BYTES}")
        # O_NONBLOCK: a path swapped for a FIFO after the check still cannot hang the open.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise AlertError("not a regular file: refused")
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise AlertError(f"cannot read the file: {exc.strerror or exc}") from None
    return parse_alert(data)


def parse_alert(data: str | bytes) -> dict[str, Any]:
    """A JSON alert body to a dict, within the size and depth limits."""
    if len(data) > MAX_BYTES:
        raise AlertError(f"the alert is over {MAX_BYTES} bytes")
    try:
        value = json.loads(data)
    except RecursionError:
        raise AlertError(f"nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise AlertError(f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise AlertError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        if "digits" in str(exc):
            raise AlertError("a number has more than 4300 digits") from None
        raise AlertError(f"not usable JSON: {' '.join(str(exc).split())[:120]}") from None
    if not isinstance(value, dict):
        raise AlertError(f"an alert is a JSON object, not {_json_type(value)}")
    check_bounds(value)
    return value


def check_bounds(value: Any) -> None:
    """AlertError when a value nests deeper than MAX_DEPTH or holds more than MAX_VALUES values (no recursion)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    count = 0
    while stack:
        node, path = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise AlertError(f"the alert holds more than {MAX_VALUES} values")
        if len(path) > MAX_DEPTH:
            raise AlertError(f"nested deeper than {MAX_DEPTH} levels (at {_format(path[:MAX_DEPTH])})")
        if isinstance(node, dict):
            stack.extend((child, (*path, str(key))) for key, child in node.items())
        elif isinstance(node, list | tuple):
            stack.extend((child, (*path, i)) for i, child in enumerate(node))


# Field names whose values are credentials whatever they look like (a generic alert's `password`, GitHub's `secret`).
SECRET_FIELDS = frozenset(
    {
        "secret",
        "password",
        "passwd",
        "token",
        "api_key",
        "apikey",
        "private_key",
        "secret_access_key",
        "secretaccesskey",
        "session_token",
        "sessiontoken",
        "access_token",
        "refresh_token",
        "client_secret",
        "authorization",
        "credentials",
    }
)


def sanitize(value: Any) -> Any:
    """The value with secret-named fields masked and credential-shaped strings masked (bounded input only)."""
    if isinstance(value, dict):
        return {
            _text(k): (MASK if _text(k).lower().replace("-", "_") in SECRET_FIELDS else sanitize(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    if isinstance(value, str):
        value = _text(value)
        return CREDENTIAL_RE.sub(MASK, value) if looks_secret(value) else value
    return value


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """Facts from an alert: source, kind, confirmed, access_key_id(s), user_name, account, region, severity,
    repository, raw. Raises AlertError for an alert too large or deep, or a known alert with a malformed field."""
    if not isinstance(raw, dict):
        raise AlertError(f"an alert is a JSON object, not {_json_type(raw)}")
    check_bounds(raw)
    clean: dict[str, Any] = sanitize(raw)
    facts: dict[str, Any] = dict.fromkeys(FACT_KEYS)
    facts.update(source="webhook", kind="generic", confirmed=False, access_key_ids=[], raw=clean)
    source = clean.get("source")
    if source in ("aws.health", "aws.guardduty"):
        event = _model(EventBridgeEvent, clean, "EventBridge event", ())
        facts.update(account=event.account, region=event.region)
        if source == "aws.health":
            health = _model(HealthDetail, event.detail, "AWS Health event", ("detail",))
            facts.update(source="aws.health", kind=health.eventTypeCode)
            facts["confirmed"] = health.eventTypeCode == "AWS_RISK_CREDENTIALS_EXPOSED"
            facts["access_key_ids"] = [e.entityValue for e in health.affectedEntities if e.entityValue]
        else:
            finding = _model(GuardDutyDetail, event.detail, "GuardDuty finding", ("detail",))
            facts.update(source="aws.guardduty", kind=finding.type, severity=finding.severity)
            key = finding.resource.accessKeyDetails if finding.resource else None
            if key is not None:
                facts["access_key_ids"] = [key.accessKeyId] if key.accessKeyId else []
                facts["user_name"] = key.userName
    elif isinstance(clean.get("alert"), dict) and "secret_type" in clean["alert"]:
        hook = _model(SecretScanningWebhook, clean, "GitHub secret scanning alert", ())
        facts.update(source="github.secret_scanning", kind=hook.alert.secret_type)
        facts["confirmed"] = hook.action in ("created", "reopened")
        facts["repository"] = hook.repository.full_name if hook.repository else None
    else:
        # A generic alert is whatever a webhook sends: take what is plainly there, ignore the rest.
        for name in ("account", "region", "kind", "user_name"):
            if isinstance(clean.get(name), str | int) and not isinstance(clean.get(name), bool) and clean.get(name):
                facts[name] = str(clean[name])[:200]
        if clean.get("confirmed") is True:  # a SIEM rule or a vendor's notice may say the key is known to be out
            facts["confirmed"] = True
    if not facts["access_key_ids"]:
        facts["access_key_ids"] = sorted(set(_KEY_RE.findall(json.dumps(clean, default=str))))
    if facts["access_key_ids"]:
        facts["access_key_id"] = facts["access_key_ids"][0]
    return facts


def _model(model: type[_M], data: Any, what: str, prefix: tuple[str | int, ...]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AlertError(_describe(exc, what, data, prefix)) from None


def _describe(exc: ValidationError, what: str, data: Any, prefix: tuple[str | int, ...]) -> str:
    """One line per malformed field: where it is, what was expected and what came."""
    lines = []
    for error in exc.errors(include_url=False)[:5]:
        path, node = list(prefix), data
        for part in error["loc"]:
            in_dict = isinstance(node, dict) and part in node
            if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
                node = node[part]
            elif error["type"] == "missing" and isinstance(node, dict):
                node = None
            else:
                continue  # a pydantic union tag such as 'float'
            path.append(part)
        where = _format(tuple(path)) or "the alert"
        if error["type"] == "missing":
            lines.append(f"{what}: {where} is missing")
        else:
            got = error.get("input")
            shown = "" if got is None else " " + repr(got)[:60] + ("..." if len(repr(got)) > 60 else "")
            expected = _EXPECTED.get(error["type"], error["msg"])
            lines.append(f"{what}: {where}: {expected} (got {_json_type(got)}{shown})")
    return "; ".join(lines)


_EXPECTED = {
    "model_type": "should be an object",
    "dict_type": "should be an object",
    "model_attributes_type": "should be an object",
    "list_type": "should be a list",
    "string_type": "should be text",
}


def _format(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _text(value: Any) -> str:
    """Text safe to print and store: lone surrogates (valid in JSON, not in UTF-8) become U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    return _SURROGATE_RE.sub("\ufffd", text) if _SURROGATE_RE.search(text) else text


__all__ = ["FACT_KEYS", "AlertError", "check_bounds", "load_alert_file", "normalize", "parse_alert", "sanitize"]
