"""AWS actions against moto's server over HTTP: dry-run, apply, apply again, dry-run again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from integrations.aws import iam
from integrations.context import ActionContext, AwsClients, RunInfo
from integrations.masking import SecretMasker

# Mutating actions with a four-step test below (checked by test_standards).
FOUR_STEP_COVERED = {"aws.iam.deactivate_access_key"}


def make_ctx(sandbox: Any, dry_run: bool) -> ActionContext:
    return ActionContext(
        aws=AwsClients(region=sandbox.region, endpoint_url=sandbox.aws_endpoint),
        slack_factory=None,
        run=RunInfo(
            id="test",
            playbook="t",
            incident_id="inc-test",
            mode="dry-run" if dry_run else "live",
            launched_by="t",
        ),
        masker=SecretMasker(),
        logger=logging.getLogger("stanch.test"),
    )


def four_steps(sandbox: Any, act: Callable[[ActionContext], Any], observe: Callable[[], Any]) -> None:
    before = observe()
    dry = act(make_ctx(sandbox, dry_run=True))
    assert dry.changed and dry.dry_run, "dry-run reports the change it would make"
    assert observe() == before, "dry-run changes nothing"
    applied = act(make_ctx(sandbox, dry_run=False))
    assert applied.changed and not applied.dry_run
    after = observe()
    assert after != before
    again = act(make_ctx(sandbox, dry_run=False))
    assert not again.changed, "applying twice changes nothing the second time"
    assert observe() == after
    dry_again = act(make_ctx(sandbox, dry_run=True))
    assert not dry_again.changed, "dry-run after apply reports no change"


def test_deactivate_access_key_four_steps(sandbox: Any) -> None:
    key = sandbox.keys["ci-deployer"][0]
    four_steps(
        sandbox,
        lambda ctx: iam.deactivate_access_key(ctx, access_key_id=key, user_name="ci-deployer"),
        lambda: sandbox.key_states()[key],
    )
    assert sandbox.key_states()[key] == "ci-deployer: Inactive"


def test_deactivate_finds_the_owner_from_the_key(sandbox: Any) -> None:
    key = sandbox.keys["data-pipeline"][1]
    result = iam.deactivate_access_key(make_ctx(sandbox, False), access_key_id=key)
    assert result.user_name == "data-pipeline"
    states = sandbox.key_states()
    assert states[key] == "data-pipeline: Inactive"
    assert states[sandbox.keys["data-pipeline"][0]] == "data-pipeline: Active", "the other key is untouched"


def test_deactivate_a_key_of_another_user_fails_clearly(sandbox: Any) -> None:
    key = sandbox.keys["alice"][0]
    with pytest.raises(LookupError, match="is not a key of IAM user ci-deployer"):
        iam.deactivate_access_key(make_ctx(sandbox, False), access_key_id=key, user_name="ci-deployer")
    assert sandbox.key_states()[key] == "alice: Active"


def test_list_access_keys_reports_status_age_and_last_use(sandbox: Any) -> None:
    listed = iam.list_access_keys(make_ctx(sandbox, False), user_name="data-pipeline")
    assert listed.active == 2
    assert sorted(k.access_key_id for k in listed.keys) == sorted(sandbox.keys["data-pipeline"])
    assert all(k.status == "Active" and k.age_days == 0 for k in listed.keys)
    dumped = listed.model_dump_json()
    assert "SecretAccessKey" not in dumped
