"""The installation's configuration: one file, validated, environment overrides, references only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _no_stanch_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STANCH_"):
            monkeypatch.delenv(name)


def test_file_then_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "stanch.yaml"
    file.write_text(
        "aws:\n  region: eu-west-1\n  role_arn: arn:aws:iam::123456789012:role/responder\n"
        "slack:\n  default_channel: '#sec-incidents'\n  token: {secretsmanager_arn: 'arn:aws:secretsmanager:x'}\n"
        "approvers:\n  alice: {slack_user_id: U123}\n"
    )
    monkeypatch.setenv("STANCH_AWS__REGION", "us-west-2")
    settings = load_settings(file)
    assert settings.aws.region == "us-west-2"
    assert settings.aws.role_arn == "arn:aws:iam::123456789012:role/responder"
    assert settings.slack.default_channel == "#sec-incidents"
    assert settings.slack.token is not None and settings.slack.token.describe().startswith("secret arn:aws")
    assert settings.approvers["alice"].slack_user_id == "U123"


def test_a_secret_value_in_the_configuration_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "stanch.yaml"
    file.write_text("slack:\n  default_channel: 'xoxb-1234567890-abcdefghijkl'\n")
    with pytest.raises(ConfigError, match="looks like a credential; the configuration takes references only"):
        load_settings(file)


def test_errors_name_the_file_and_field(tmp_path: Path) -> None:
    file = tmp_path / "stanch.yaml"
    file.write_text("aws:\n  regoin: eu-west-1\nslack:\n  token: {env: A, prefect_block: b}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(file)
    text = str(info.value)
    assert f"{file}: aws.regoin: Extra inputs are not permitted" in text
    assert "exactly one of env, secretsmanager_arn, prefect_block" in text


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_playbook_dirs_are_searched_for_playbook_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.engine.launch import find_playbook

    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "our-runbook.yaml").write_text("kind: Playbook\n")
    config = tmp_path / "stanch.yaml"
    config.write_text(f"playbook_dirs: [{tmp_path / 'team'}]\n")
    monkeypatch.setenv("STANCH_CONFIG", str(config))
    assert find_playbook("our-runbook") == tmp_path / "team" / "our-runbook.yaml"
    assert find_playbook("aws-access-key-compromise").name == "aws-access-key-compromise.yaml"
