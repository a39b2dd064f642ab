"""Alerts from each known source become the same facts; a malformed one is an error naming its field."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, STANCH

from flows.alerts import FACT_KEYS, AlertError, load_alert_file, normalize, parse_alert

ALERTS = FIXTURES / "alerts"
BAD = ALERTS / "bad"

# fixture -> words the error must contain (the field it names, what was expected)
EXPECTED = {
    "health-affected-entities-number.json": "AWS Health event: detail.affectedEntities: should be a list (got a number 5)",
    "health-entity-value-object.json": "detail.affectedEntities[0].entityValue: should be text (got an object",
    "health-detail-list.json": "EventBridge event: detail: should be an object (got a list",
    "guardduty-resource-string.json": "GuardDuty finding: detail.resource: should be an object (got text 'AccessKey')",
    "guardduty-access-key-details-list.json": "detail.resource.accessKeyDetails: should be an object (got a list",
    "guardduty-account-object.json": "EventBridge event: account: should be text (got an object",
    "github-repository-string.json": "GitHub secret scanning alert: repository: should be an object (got text",
    "github-secret-type-null.json": "GitHub secret scanning alert: alert.secret_type: should be text (got null)",
    "deep-nesting.json": "nested deeper than 32 levels (at x.x.x",
    "deeper-than-the-parser.json": "nested deeper than 32 levels",
    "not-an-object.json": "an alert is a JSON object, not a list",
    "huge-integer.json": "a number has more than 4300 digits",
    "newline-in-a-deep-key.json": "nested deeper than 32 levels (at a\\nb[0][0]",  # found by `make fuzz`
}


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ALERTS / name).read_text())
    return data


def test_every_bad_alert_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in BAD.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_alert_fixture_is_an_error_naming_its_field(name: str) -> None:
    with pytest.raises(AlertError) as caught:
        normalize(load_alert_file(BAD / name))
    message = str(caught.value)
    assert EXPECTED[name] in message, message
    assert "\n" not in message and "Traceback" not in message


def test_aws_health_exposure_is_confirmed_with_its_key() -> None:
    facts = normalize(sample("aws-health-risk-credentials-exposed.json"))
    assert tuple(facts) == FACT_KEYS
    assert {k: v for k, v in facts.items() if k != "raw"} == {
        "source": "aws.health",
        "kind": "AWS_RISK_CREDENTIALS_EXPOSED",
        "confirmed": True,
        "access_key_ids": ["ACCESS_KEY_ID_HERE"],
        "access_key_id": "ACCESS_KEY_ID_HERE",
        "user_name": None,
        "account": "123456789012",
        "region": "us-east-1",
        "severity": None,
        "repository": None,
    }


def test_guardduty_finding_names_key_user_and_severity_but_is_not_confirmed() -> None:
    facts = normalize(sample("guardduty-iam-anomalous-behavior.json"))
    assert facts["source"] == "aws.guardduty"
    assert facts["kind"] == "CredentialAccess:IAMUser/AnomalousBehavior"
    assert facts["confirmed"] is False
    assert facts["access_key_id"] == "AKIAIOSFODNN7EXAMPLE"
    assert facts["user_name"] == "ci-deployer"
    assert facts["severity"] == 5
    assert (facts["account"], facts["region"]) == ("123456789012", "us-east-1")


def test_github_secret_scanning_reopened_is_confirmed_and_its_secret_is_masked() -> None:
    raw = sample("github-secret-scanning-alert-reopened.json")
    raw["alert"]["secret"] = "ghp_" + "A1b2" * 9  # GitHub sends the leaked value itself
    raw["alert"]["note"] = "found aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in ci.yml"
    facts = normalize(raw)
    assert (facts["source"], facts["kind"], facts["confirmed"]) == ("github.secret_scanning", "adafruit_io_key", True)
    assert facts["repository"] == "Codertocat/Hello-World"
    dumped = json.dumps(facts)
    assert "A1b2A1b2" not in dumped and "wJalrXUtnFEMI" not in dumped
    assert facts["raw"]["alert"]["secret"] == "***"


def test_a_generic_alert_keeps_what_is_plainly_there_and_finds_key_ids() -> None:
    facts = normalize({"account": {"id": 1}, "region": "eu-west-1", "text": "key AKIAIOSFODNN7EXAMPLE leaked"})
    assert (facts["source"], facts["kind"], facts["account"], facts["region"]) == ("webhook", "generic", None, "eu-west-1")
    assert facts["access_key_ids"] == ["AKIAIOSFODNN7EXAMPLE"]


def test_lone_surrogates_in_an_alert_become_printable() -> None:
    raw = parse_alert('{"source": "aws.guardduty", "detail": {"type": "x\\ud800", "resource": {}}}')
    facts = normalize(raw)
    assert facts["kind"] == "x\ufffd"
    facts["kind"].encode("utf-8")


def test_an_alert_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "alert.json"
    os.mkfifo(fifo)
    with pytest.raises(AlertError, match="not a regular file: refused without opening it"):
        load_alert_file(fifo)


def test_plan_with_a_malformed_alert_names_the_field_without_a_traceback() -> None:
    proc = subprocess.run(
        [STANCH, "plan", "aws-access-key-compromise", "--alert", str(BAD / "guardduty-resource-string.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "guardduty-resource-string.json: GuardDuty finding: detail.resource: should be an object" in proc.stderr


def test_secret_named_fields_of_an_alert_are_masked_whatever_they_hold() -> None:
    from flows.alerts import sanitize

    clean = sanitize({"password": "hunter2", "Api-Key": "k-1", "nested": {"token": "t"}, "secret_type": "github_pat"})
    assert clean == {"password": "***", "Api-Key": "***", "nested": {"token": "***"}, "secret_type": "github_pat"}
