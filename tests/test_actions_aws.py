"""AWS actions against moto's server over HTTP: dry-run, apply, apply again, dry-run again."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from integrations.aws import iam
from integrations.context import ActionContext, AwsClients, RunInfo, RunMode
from integrations.masking import SecretMasker


def make_ctx(sandbox: Any, dry_run: bool, incident: str = "inc-test") -> ActionContext:
    return ActionContext(
        aws=AwsClients(region=sandbox.region, endpoint_url=sandbox.aws_endpoint),
        slack_factory=None,
        run=RunInfo(
            id="test",
            playbook="t",
            incident_id=incident,
            mode=RunMode.DRY_RUN if dry_run else RunMode.LIVE,
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


ASSUME_EC2 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


def inline_policies(sandbox: Any, principal: str) -> list[str]:
    kind, name = principal.split("/")
    client = sandbox.client("iam")
    if kind == "user":
        return sorted(client.list_user_policies(UserName=name)["PolicyNames"])
    return sorted(client.list_role_policies(RoleName=name)["PolicyNames"])


@pytest.mark.parametrize("principal", ["user/alice", "role/app-role"])
def test_quarantine_principal_and_lift_quarantine_four_steps(sandbox: Any, principal: str) -> None:
    sandbox.client("iam").create_role(RoleName="app-role", AssumeRolePolicyDocument=ASSUME_EC2)
    four_steps(
        sandbox,
        lambda ctx: iam.quarantine_principal(ctx, principal=principal),
        lambda: inline_policies(sandbox, principal),
    )
    assert inline_policies(sandbox, principal) == ["StanchQuarantine"]
    kind, name = principal.split("/")
    client = sandbox.client("iam")
    raw = (
        client.get_user_policy(UserName=name, PolicyName="StanchQuarantine")
        if kind == "user"
        else client.get_role_policy(RoleName=name, PolicyName="StanchQuarantine")
    )["PolicyDocument"]
    document = raw if isinstance(raw, dict) else json.loads(raw)
    assert document["Statement"][0] == {"Sid": "StanchQuarantine", "Effect": "Deny", "Action": "*", "Resource": "*"}
    four_steps(
        sandbox, lambda ctx: iam.lift_quarantine(ctx, principal=principal), lambda: inline_policies(sandbox, principal)
    )
    assert inline_policies(sandbox, principal) == []


def test_quarantine_of_a_missing_principal_is_a_clear_error(sandbox: Any) -> None:
    with pytest.raises(LookupError, match="IAM user 'ghost' does not exist"):
        iam.quarantine_principal(make_ctx(sandbox, False), principal="arn:aws:iam::123456789012:user/ghost")


def test_revoke_sessions_four_steps(sandbox: Any) -> None:
    sandbox.client("iam").create_role(RoleName="app-role", AssumeRolePolicyDocument=ASSUME_EC2)
    when = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    four_steps(
        sandbox,
        lambda ctx: iam.revoke_sessions(ctx, principal="role/app-role", issued_before=when),
        lambda: inline_policies(sandbox, "role/app-role"),
    )
    raw = sandbox.client("iam").get_role_policy(RoleName="app-role", PolicyName="AWSRevokeOlderSessions")
    document = raw["PolicyDocument"] if isinstance(raw["PolicyDocument"], dict) else json.loads(raw["PolicyDocument"])
    assert document["Statement"][0]["Condition"] == {"DateLessThan": {"aws:TokenIssueTime": "2026-11-26T03:00:00Z"}}
    earlier = iam.revoke_sessions(make_ctx(sandbox, False), principal="role/app-role", issued_before=when.replace(hour=1))
    assert not earlier.changed, "an earlier cut-off is already covered"
    later = iam.revoke_sessions(make_ctx(sandbox, False), principal="role/app-role")
    assert later.changed and later.issued_before > when


def test_disable_console_login_four_steps(sandbox: Any) -> None:
    client = sandbox.client("iam")
    client.create_login_profile(UserName="alice", Password="Sandbox-Only-Passw0rd!")

    def has_login() -> bool:
        try:
            client.get_login_profile(UserName="alice")
            return True
        except client.exceptions.NoSuchEntityException:
            return False

    four_steps(sandbox, lambda ctx: iam.disable_console_login(ctx, user_name="alice"), has_login)
    assert not has_login()


def test_detach_policy_four_steps(sandbox: Any) -> None:
    client = sandbox.client("iam")
    arn = client.create_policy(
        PolicyName="attacker-admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )["Policy"]["Arn"]
    client.attach_user_policy(UserName="alice", PolicyArn=arn)

    def attached() -> list[str]:
        return [p["PolicyArn"] for p in client.list_attached_user_policies(UserName="alice")["AttachedPolicies"]]

    four_steps(sandbox, lambda ctx: iam.detach_policy(ctx, principal="user/alice", policy_arn=arn), attached)
    assert attached() == []


def launch_instance(sandbox: Any) -> tuple[str, list[str]]:
    ec2 = sandbox.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SecurityGroupIds=[web])["Instances"][0]
    groups = [g["GroupId"] for g in instance["SecurityGroups"]]
    return instance["InstanceId"], groups


def test_isolate_instance_four_steps_keeps_the_previous_groups(sandbox: Any) -> None:
    instance_id, groups = launch_instance(sandbox)
    ec2 = sandbox.client("ec2")

    def current_groups() -> list[str]:
        found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        return [g["GroupId"] for g in found["SecurityGroups"]]

    four_steps(sandbox, lambda ctx: iso(ctx, instance_id), current_groups)
    result = iso(make_ctx(sandbox, False), instance_id)
    assert result.previous_group_ids == groups
    [isolation] = current_groups()
    assert isolation == result.isolation_group_id
    described = ec2.describe_security_groups(GroupIds=[isolation])["SecurityGroups"][0]
    assert described["IpPermissions"] == [] and described["IpPermissionsEgress"] == []
    assert not result.warnings, "the group Stanch made itself is no cause for alarm"


def iso(ctx: ActionContext, instance_id: str) -> Any:
    from integrations.aws import ec2

    return ec2.isolate_instance(ctx, instance_id=instance_id)


def test_snapshot_volumes_four_steps_tagged_with_the_incident(sandbox: Any) -> None:
    from integrations.aws import ec2 as ec2_actions

    instance_id, _ = launch_instance(sandbox)
    ec2 = sandbox.client("ec2")

    def snapshots() -> list[str]:
        found = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:stanch:incident", "Values": ["inc-test"]}])
        return sorted(s["SnapshotId"] for s in found["Snapshots"])

    four_steps(sandbox, lambda ctx: ec2_actions.snapshot_volumes(ctx, instance_id=instance_id), snapshots)
    assert len(snapshots()) >= 1


def test_the_responder_role_is_assumed_with_the_run_id_in_its_session_name(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.config import Settings

    monkeypatch.delenv("STANCH_AWS__ROLE_ARN")  # the sandbox's "no role" would override the settings below
    from integrations.context import AwsClients

    iam = sandbox.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName="stanch-responder", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    settings = Settings(
        aws={
            "endpoint_url": sandbox.aws_endpoint,
            "role_arn": role,
            "external_id": "stanch",
            "accounts": {"210987654321": {"role_arn": "arn:aws:iam::210987654321:role/stanch-responder"}},
        }
    )
    clients = AwsClients.from_settings(settings.aws, "0b6f3b1e-run")
    arn = clients.client("sts").get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/stanch-responder/stanch-0b6f3b1e-run"
    other = AwsClients.from_settings(settings.aws, "0b6f3b1e-run", account="210987654321", region="eu-west-1")
    assert other.role_arn == "arn:aws:iam::210987654321:role/stanch-responder" and other.region == "eu-west-1"
    with pytest.raises(KeyError, match=r"account 111111111111 is not configured under aws\.accounts"):
        AwsClients.from_settings(settings.aws, "run", account="111111111111")
