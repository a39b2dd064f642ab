"""Alerts as facts a playbook can use: which key, which user, how sure we are that it leaked.

Known sources: AWS Health AWS_RISK_CREDENTIALS_EXPOSED, GuardDuty findings, GitHub secret scanning
webhooks; anything else is kept as a generic webhook. The raw alert is kept (`alert.raw`) with any
field named `secret` removed and credential-shaped strings masked: it becomes a flow parameter.
"""

from __future__ import annotations

import re
from typing import Any

from integrations.masking import CREDENTIAL_RE, MASK, looks_secret

_KEY_RE = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")


def sanitize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if k.lower() == "secret" else sanitize(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    if isinstance(value, str) and looks_secret(value):
        return CREDENTIAL_RE.sub(MASK, value)
    return value


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """Facts from an alert: source, kind, confirmed, access_key_id(s), user_name, account, region, raw."""
    clean = sanitize(raw)
    facts: dict[str, Any] = {
        "source": "webhook",
        "kind": "generic",
        "confirmed": False,
        "access_key_ids": [],
        "access_key_id": None,
        "user_name": None,
        "account": None,
        "region": None,
        "raw": clean,
    }
    detail = clean.get("detail") if isinstance(clean.get("detail"), dict) else {}
    if clean.get("source") == "aws.health":
        facts.update(source="aws.health", kind=str(detail.get("eventTypeCode", "health")))
        facts["confirmed"] = detail.get("eventTypeCode") == "AWS_RISK_CREDENTIALS_EXPOSED"
        entities = detail.get("affectedEntities") or []
        facts["access_key_ids"] = [e["entityValue"] for e in entities if isinstance(e, dict) and e.get("entityValue")]
    elif clean.get("source") == "aws.guardduty":
        facts.update(source="aws.guardduty", kind=str(detail.get("type", "finding")))
        key = (detail.get("resource") or {}).get("accessKeyDetails") or {}
        if key.get("accessKeyId"):
            facts["access_key_ids"] = [key["accessKeyId"]]
        facts["user_name"] = key.get("userName")
        facts["severity"] = detail.get("severity")
    elif isinstance(clean.get("alert"), dict) and "secret_type" in clean["alert"]:
        facts.update(source="github.secret_scanning", kind=str(clean["alert"]["secret_type"]))
        facts["confirmed"] = clean.get("action") in ("created", "reopened")
        facts["repository"] = (clean.get("repository") or {}).get("full_name")
    if clean.get("account"):
        facts["account"] = str(clean["account"])
    if clean.get("region"):
        facts["region"] = str(clean["region"])
    if not facts["access_key_ids"]:
        facts["access_key_ids"] = sorted(set(_KEY_RE.findall(str(clean))))
    if facts["access_key_ids"]:
        facts["access_key_id"] = facts["access_key_ids"][0]
    return facts
