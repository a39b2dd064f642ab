"""AWS's real failure modes: answers lost after the change was applied, state planted by an attacker, races.

A lost answer is made with the botocore event hook (`AwsClients.event_hooks`): the request reaches moto and is
applied, then the caller gets a read timeout. Each mutating call of each action is hit in turn, the action is
run again, and the end state must equal a fault-free run's.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from test_actions_aws import ASSUME_EC2, make_ctx

from integrations.aws import awslambda, iam, rds, s3, secrets
from integrations.aws import ec2 as ec2_actions
from integrations.aws import logging as logging_actions
from integrations.context import AwsClients, is_read_only_operation


@dataclass
class LostAnswer:
    """An `after-call` hook: counts mutating calls and, for the chosen one, raises a read timeout after AWS
    applied it (the answer is lost on its way back)."""

    fail_at: int | None = None
    calls: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, model: Any = None, **_: Any) -> None:
        name = getattr(model, "name", "")
        if is_read_only_operation(name):
            return
        with self.lock:
            index = len(self.calls)
            self.calls.append(name)
            if index != self.fail_at:
                return
            self.lost.append(name)
        raise ReadTimeoutError(endpoint_url="http://aws.invalid/")


@pytest.fixture
def lost() -> Iterator[LostAnswer]:
    hook = LostAnswer()
    entry = ("after-call", hook)
    AwsClients.event_hooks.append(entry)
    try:
        yield hook
    finally:
        AwsClients.event_hooks.remove(entry)


@dataclass
class Scenario:
    """set up (with a unique suffix) -> the action, and what its end state looks like (ids normalised)."""

    setup: Callable[[Any, str], Any]
    act: Callable[[Any, Any], Any]
    observe: Callable[[Any, Any], Any]
    invariant: Callable[[Any, Any], None] = lambda box, made: None


def _doc(raw: Any) -> Any:
    return raw if isinstance(raw, dict) else json.loads(raw)


# ---------------------------------------------------------------- scenarios


def _user(box: Any, n: str, keys: int = 1) -> tuple[str, list[str]]:
    client = box.client("iam")
    name = f"fm-{n}"
    client.create_user(UserName=name)
    return name, [client.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"] for _ in range(keys)]


def _statuses(box: Any, user: str) -> dict[str, str]:
    return {m["AccessKeyId"]: m["Status"] for m in box.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]}


def _rotation_setup(box: Any, n: str) -> dict[str, str]:
    client = box.client("iam")
    user = f"fm-rot-{n}"
    client.create_user(UserName=user)
    made = client.create_access_key(UserName=user)["AccessKey"]
    pair = {"AccessKeyId": made["AccessKeyId"], "SecretAccessKey": made["SecretAccessKey"]}
    box.client("secretsmanager").create_secret(Name=f"fm/{user}", SecretString=json.dumps(pair))
    return {"user": user, "secret": f"fm/{user}", "old": made["AccessKeyId"]}


def _current_key(box: Any, secret: str) -> str:
    value = box.client("secretsmanager").get_secret_value(SecretId=secret, VersionStage="AWSCURRENT")
    return str(json.loads(value["SecretString"])["AccessKeyId"])


def _rotation_state(box: Any, made: dict[str, str]) -> Any:
    keys = _statuses(box, made["user"])
    current = _current_key(box, made["secret"])
    stages = box.client("secretsmanager").describe_secret(SecretId=made["secret"])["VersionIdsToStages"]
    tags = box.client("iam").list_user_tags(UserName=made["user"])["Tags"]
    return {
        "old": keys.get(made["old"]),
        "keys": len(keys),
        "current is new and Active": current != made["old"] and keys.get(current) == "Active",
        "stages": sorted(s for v in stages.values() for s in v),
        "marks": [t["Key"] for t in tags if t["Key"].startswith(iam.ROTATION_TAG_PREFIX)],
    }


def _current_is_active(box: Any, made: dict[str, str]) -> None:
    current = _current_key(box, made["secret"])
    assert _statuses(box, made["user"]).get(current) == "Active", "the secret's current key must work"


def _vendor_setup(box: Any, n: str) -> dict[str, Any]:
    key = box.vendor.mint(f"fm-{n}")
    name = f"vendors/acme-ai/fm-{n}"
    box.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"api_key": key.api_key, "key_id": key.key_id})
    )
    return {"secret": name, "old": key, "urls": box.vendor_urls()}


def _vendor_state(box: Any, made: dict[str, Any]) -> Any:
    sm = box.client("secretsmanager")
    current = json.loads(sm.get_secret_value(SecretId=made["secret"], VersionStage="AWSCURRENT")["SecretString"])
    described = sm.describe_secret(SecretId=made["secret"])
    return {
        "current works": box.vendor.is_active(current["api_key"]),
        "old revoked": not box.vendor.is_active(made["old"].api_key),
        "minted": len([k for k in box.vendor.keys.values() if k.name == made["secret"]]),
        "stages": sorted(s for v in described["VersionIdsToStages"].values() for s in v),
        "revocation recorded": any(t["Key"] == secrets.REVOKED_TAG for t in described.get("Tags", [])),
    }


def _instance_setup(box: Any, n: str) -> dict[str, Any]:
    ec2 = box.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    web = ec2.create_security_group(GroupName=f"web-{n}", Description="web", VpcId=vpc)["GroupId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet, SecurityGroupIds=[web])
    return {"vpc": vpc, "web": web, "instance": instance["Instances"][0]["InstanceId"]}


def _isolation_state(box: Any, made: dict[str, Any]) -> Any:
    ec2 = box.client("ec2")
    found = ec2.describe_instances(InstanceIds=[made["instance"]])["Reservations"][0]["Instances"][0]
    groups = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [made["vpc"]]},
            {"Name": "group-name", "Values": [f"stanch-isolation-{made['vpc']}"]},
        ]
    )["SecurityGroups"]
    [group] = groups
    tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
    return {
        "in isolation only": [g["GroupId"] for g in found["SecurityGroups"]] == [group["GroupId"]],
        "rules": (group["IpPermissions"], group["IpPermissionsEgress"]),
        "group tagged": {t["Key"]: t["Value"] for t in group.get("Tags", [])}.get(ec2_actions.ISOLATION_TAG),
        "previous kept": tags.get(ec2_actions.PREVIOUS_GROUPS_TAG) == made["web"],
    }


def _role(box: Any, n: str) -> str:
    box.client("iam").create_role(RoleName=f"fm-role-{n}", AssumeRolePolicyDocument=ASSUME_EC2)
    return f"fm-role-{n}"


WHEN = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def _login(box: Any, n: str) -> str:
    user, _ = _user(box, n, keys=0)
    box.client("iam").create_login_profile(UserName=user, Password="Sandbox-Only-Passw0rd!")
    return user


def _profile(box: Any, user: str) -> bool:
    client = box.client("iam")
    try:
        client.get_login_profile(UserName=user)
    except client.exceptions.NoSuchEntityException:
        return False
    return True


def _resting_key(box: Any, n: str) -> tuple[str, str]:
    user, [_active, resting] = _user(box, n, keys=2)
    box.client("iam").update_access_key(UserName=user, AccessKeyId=resting, Status="Inactive")
    return user, resting


def _attached(box: Any, n: str) -> tuple[str, str]:
    user, _ = _user(box, n, keys=0)
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    arn = box.client("iam").create_policy(PolicyName=f"fm-admin-{n}", PolicyDocument=json.dumps(allow))["Policy"]["Arn"]
    box.client("iam").attach_user_policy(UserName=user, PolicyArn=arn)
    return user, arn


def _quarantined(box: Any, n: str) -> str:
    user, _ = _user(box, n, keys=0)
    iam.quarantine_principal(make_ctx(box, False), principal=f"user/{user}")
    return user


def _snapshot_count(box: Any, instance: str) -> int:
    found = box.client("ec2").describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:stanch:instance", "Values": [instance]}]
    )["Snapshots"]
    return len(found)


def _lambda_secret(box: Any, n: str) -> str:
    sm = box.client("secretsmanager")
    name = f"fm/db-{n}"
    sm.create_secret(Name=name, SecretString="sandbox-db-password")
    sm.rotate_secret(SecretId=name, RotationRules={"AutomaticallyAfterDays": 30})
    for version, stages in sm.describe_secret(SecretId=name)["VersionIdsToStages"].items():
        if "AWSPENDING" in stages:
            sm.update_secret_version_stage(SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=version)
    return name


# ---------------------------------------------------------------- what an attacker changed, to revert

OUTSIDE = "999988887777"


def _inline(box: Any, n: str) -> str:
    user, _ = _user(box, n, keys=0)
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    box.client("iam").put_user_policy(UserName=user, PolicyName="backdoor", PolicyDocument=json.dumps(allow))
    return user


def _member(box: Any, n: str) -> str:
    user, _ = _user(box, n, keys=0)
    box.client("iam").create_group(GroupName=f"fm-admins-{n}")
    box.client("iam").add_user_to_group(GroupName=f"fm-admins-{n}", UserName=user)
    return user


def _groups(box: Any, user: str) -> list[str]:
    return [g["GroupName"] for g in box.client("iam").list_groups_for_user(UserName=user)["Groups"]]


def _mfa(box: Any, n: str) -> tuple[str, str]:
    user, _ = _user(box, n, keys=0)
    client = box.client("iam")
    serial = client.create_virtual_mfa_device(VirtualMFADeviceName=f"fm-{n}")["VirtualMFADevice"]["SerialNumber"]
    client.enable_mfa_device(UserName=user, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321")
    return user, serial


def _changed_trust(box: Any, n: str) -> str:
    role = _role(box, n)
    outside = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OUTSIDE}:root"}, "Action": "sts:AssumeRole"}
    box.client("iam").update_assume_role_policy(
        RoleName=role, PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [outside]})
    )
    return role


def _open_group(box: Any, n: str) -> str:
    ec2 = box.client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName=f"fm-db-{n}", Description="db", VpcId=vpc)["GroupId"]
    rules = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=rules)
    return str(group)


def _ingress(box: Any, group: str) -> Any:
    return box.client("ec2").describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]


def _shared_snapshot(box: Any, n: str) -> str:
    ec2 = box.client("ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{box.region}a", Size=1)["VolumeId"]
    snapshot = str(ec2.create_snapshot(VolumeId=volume)["SnapshotId"])
    ec2.modify_snapshot_attribute(
        SnapshotId=snapshot, Attribute="createVolumePermission", OperationType="add", UserIds=[OUTSIDE]
    )
    return snapshot


def _open_bucket(box: Any, n: str) -> str:
    bucket = f"fm-exports-{n}"
    box.client("s3").create_bucket(Bucket=bucket)
    public = {
        "Sid": "Open",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    box.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [public]}))
    return bucket


def _bucket_policy(box: Any, bucket: str) -> Any:
    client = box.client("s3")
    try:
        return json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    except client.exceptions.ClientError:
        return None


def _permitted_function(box: Any, n: str) -> str:
    import io
    import zipfile

    role = box.client("iam").create_role(RoleName=f"fm-fn-{n}", AssumeRolePolicyDocument=ASSUME_EC2)["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    client = box.client("lambda")
    name = f"fm-fn-{n}"
    client.create_function(
        FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler", Code={"ZipFile": code.getvalue()}
    )
    client.add_permission(FunctionName=name, StatementId="attacker", Action="lambda:InvokeFunction", Principal=OUTSIDE)
    return name


def _function_sids(box: Any, name: str) -> Any:
    client = box.client("lambda")
    try:
        return [s["Sid"] for s in json.loads(client.get_policy(FunctionName=name)["Policy"])["Statement"]]
    except client.exceptions.ResourceNotFoundException:
        return []


def _shared_db_snapshot(box: Any, n: str) -> str:
    client = box.client("rds")
    client.create_db_instance(
        DBInstanceIdentifier=f"fm-db-{n}",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="sandbox-only-pass",
        AllocatedStorage=20,
    )
    client.create_db_snapshot(DBInstanceIdentifier=f"fm-db-{n}", DBSnapshotIdentifier=f"fm-snap-{n}")
    client.modify_db_snapshot_attribute(DBSnapshotIdentifier=f"fm-snap-{n}", AttributeName="restore", ValuesToAdd=[OUTSIDE])
    return f"fm-snap-{n}"


def _restorers(box: Any, snapshot: str) -> Any:
    found = box.client("rds").describe_db_snapshot_attributes(DBSnapshotIdentifier=snapshot)["DBSnapshotAttributesResult"]
    return sorted(v for a in found["DBSnapshotAttributes"] for v in a["AttributeValues"])


def _stopped_trail(box: Any, n: str) -> str:
    box.client("s3").create_bucket(Bucket=f"fm-trail-{n}")
    client = box.client("cloudtrail")
    client.create_trail(Name=f"fm-trail-{n}", S3BucketName=f"fm-trail-{n}")
    client.put_event_selectors(
        TrailName=f"fm-trail-{n}", EventSelectors=[{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": False}]
    )
    return f"fm-trail-{n}"


SCENARIOS: dict[str, Scenario] = {
    "deactivate_access_key": Scenario(
        lambda box, n: _user(box, n),
        lambda ctx, m: iam.deactivate_access_key(ctx, access_key_id=m[1][0], user_name=m[0]),
        lambda box, m: sorted(_statuses(box, m[0]).values()),
    ),
    "quarantine_principal": Scenario(
        lambda box, n: _role(box, n),
        lambda ctx, role: iam.quarantine_principal(ctx, principal=f"role/{role}"),
        lambda box, role: _doc(
            box.client("iam").get_role_policy(RoleName=role, PolicyName=iam.QUARANTINE_POLICY)["PolicyDocument"]
        ),
    ),
    "lift_quarantine": Scenario(
        _quarantined,
        lambda ctx, user: iam.lift_quarantine(ctx, principal=f"user/{user}"),
        lambda box, user: box.client("iam").list_user_policies(UserName=user)["PolicyNames"],
    ),
    "revoke_sessions": Scenario(
        lambda box, n: _role(box, n),
        lambda ctx, role: iam.revoke_sessions(ctx, principal=f"role/{role}", issued_before=WHEN),
        lambda box, role: _doc(
            box.client("iam").get_role_policy(RoleName=role, PolicyName=iam.REVOKE_POLICY)["PolicyDocument"]
        ),
    ),
    "disable_console_login": Scenario(
        _login, lambda ctx, user: iam.disable_console_login(ctx, user_name=user), lambda box, user: _profile(box, user)
    ),
    "detach_policy": Scenario(
        _attached,
        lambda ctx, m: iam.detach_policy(ctx, principal=f"user/{m[0]}", policy_arn=m[1]),
        lambda box, m: box.client("iam").list_attached_user_policies(UserName=m[0])["AttachedPolicies"],
    ),
    "delete_access_key": Scenario(
        _resting_key,
        lambda ctx, m: iam.delete_access_key(ctx, access_key_id=m[1], user_name=m[0]),
        lambda box, m: sorted(_statuses(box, m[0]).values()),
    ),
    "rotate_access_key": Scenario(
        _rotation_setup,
        lambda ctx, m: iam.rotate_access_key(ctx, user_name=m["user"], secret_id=m["secret"], access_key_id=m["old"]),
        _rotation_state,
        _current_is_active,
    ),
    "rotate_vendor_secret": Scenario(
        _vendor_setup,
        lambda ctx, m: secrets.rotate_vendor_secret(
            ctx, secret_id=m["secret"], admin_token_secret_id="vendors/acme-ai/admin-token", **m["urls"]
        ),
        _vendor_state,
    ),
    "rotate_secret": Scenario(
        _lambda_secret,
        lambda ctx, name: secrets.rotate_secret(ctx, secret_id=name),
        lambda box, name: len(box.client("secretsmanager").describe_secret(SecretId=name)["VersionIdsToStages"]),
    ),
    "isolate_instance": Scenario(
        _instance_setup, lambda ctx, m: ec2_actions.isolate_instance(ctx, instance_id=m["instance"]), _isolation_state
    ),
    "snapshot_volumes": Scenario(
        _instance_setup,
        lambda ctx, m: ec2_actions.snapshot_volumes(ctx, instance_id=m["instance"]),
        lambda box, m: _snapshot_count(box, m["instance"]),
    ),
    "delete_inline_policy": Scenario(
        _inline,
        lambda ctx, user: iam.delete_inline_policy(ctx, principal=f"user/{user}", policy_name="backdoor"),
        lambda box, user: box.client("iam").list_user_policies(UserName=user)["PolicyNames"],
    ),
    "remove_user_from_group": Scenario(
        _member,
        lambda ctx, user: iam.remove_user_from_group(ctx, group_name=f"fm-admins-{user[3:]}", user_name=user),
        _groups,
    ),
    "deactivate_mfa_device": Scenario(
        _mfa,
        lambda ctx, m: iam.deactivate_mfa_device(ctx, serial_number=m[1], user_name=m[0]),
        lambda box, m: box.client("iam").list_mfa_devices(UserName=m[0])["MFADevices"],
    ),
    "restore_trust_policy": Scenario(
        _changed_trust,
        lambda ctx, role: iam.restore_trust_policy(ctx, role_name=role, document=json.loads(ASSUME_EC2)),
        lambda box, role: box.client("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"],
    ),
    "revoke_security_group_rule": Scenario(
        _open_group,
        lambda ctx, group: ec2_actions.revoke_security_group_rule(
            ctx, group_id=group, rule={"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIp": "0.0.0.0/0"}
        ),
        _ingress,
    ),
    "unshare_snapshot": Scenario(
        _shared_snapshot,
        lambda ctx, snap: ec2_actions.unshare_snapshot(ctx, snapshot_id=snap, accounts=[OUTSIDE]),
        lambda box, snap: box.client("ec2").describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")[
            "CreateVolumePermissions"
        ],
    ),
    "remove_outside_bucket_policy_statements": Scenario(
        _open_bucket, lambda ctx, bucket: s3.remove_outside_bucket_policy_statements(ctx, bucket=bucket), _bucket_policy
    ),
    "remove_permission": Scenario(
        _permitted_function,
        lambda ctx, name: awslambda.remove_permission(ctx, function_name=name, statement_id="attacker"),
        _function_sids,
    ),
    "unshare_db_snapshot": Scenario(
        _shared_db_snapshot,
        lambda ctx, snap: rds.unshare_db_snapshot(ctx, db_snapshot_id=snap, accounts=[OUTSIDE]),
        _restorers,
    ),
    "restart_logging": Scenario(
        lambda box, n: (box.client("cloudtrail").stop_logging(Name=_stopped_trail(box, n)), f"fm-trail-{n}")[1],
        lambda ctx, trail: logging_actions.restart_logging(ctx, trail=trail),
        lambda box, trail: box.client("cloudtrail").get_trail_status(Name=trail)["IsLogging"],
    ),
    "restore_event_selectors": Scenario(
        _stopped_trail,
        lambda ctx, trail: logging_actions.restore_event_selectors(ctx, trail=trail),
        lambda box, trail: box.client("cloudtrail").get_event_selectors(TrailName=trail)["EventSelectors"],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_lost_answer_at_every_mutating_call_then_a_rerun_ends_as_a_clean_run(
    sandbox: Any, lost: LostAnswer, name: str
) -> None:
    scenario = SCENARIOS[name]
    made = scenario.setup(sandbox, "clean")
    scenario.act(make_ctx(sandbox, False), made)
    expected = scenario.observe(sandbox, made)
    mutating = list(lost.calls)
    assert mutating, f"{name} made no mutating call"
    for index, operation in enumerate(mutating):
        lost.calls.clear()
        lost.fail_at = index
        made = scenario.setup(sandbox, str(index))
        # Raised only where the answer itself was needed (a new key's secret): the re-run finishes.
        with contextlib.suppress(ReadTimeoutError):
            scenario.act(make_ctx(sandbox, False), made)
        lost.fail_at = None
        assert lost.lost[-1:] == [operation], f"the fault hit {lost.lost[-1:]}, not {operation}"
        scenario.invariant(sandbox, made)
        scenario.act(make_ctx(sandbox, False), made)
        assert scenario.observe(sandbox, made) == expected, f"{name}: answer to {operation} (call {index}) lost"
        scenario.invariant(sandbox, made)


# ---------------------------------------------------------------- planted state

ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def test_a_planted_allow_all_policy_under_the_quarantine_name_is_replaced_and_reported(sandbox: Any) -> None:
    user, _ = _user(sandbox, "planted-q", keys=0)
    client = sandbox.client("iam")
    client.put_user_policy(UserName=user, PolicyName=iam.QUARANTINE_POLICY, PolicyDocument=json.dumps(ALLOW_ALL))
    result = iam.quarantine_principal(make_ctx(sandbox, False), principal=f"user/{user}")
    assert result.changed and "possible tampering" in result.warnings[0]
    document = _doc(client.get_user_policy(UserName=user, PolicyName=iam.QUARANTINE_POLICY)["PolicyDocument"])
    assert document["Statement"] == [{"Sid": "StanchQuarantine", "Effect": "Deny", "Action": "*", "Resource": "*"}]
    again = iam.quarantine_principal(make_ctx(sandbox, False), principal=f"user/{user}")
    assert not again.changed and not again.warnings


def test_a_planted_revocation_policy_with_allow_is_replaced_and_reported(sandbox: Any) -> None:
    role = _role(sandbox, "planted-r")
    planted = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2099-01-01T00:00:00Z"}},
            }
        ],
    }
    client = sandbox.client("iam")
    client.put_role_policy(RoleName=role, PolicyName=iam.REVOKE_POLICY, PolicyDocument=json.dumps(planted))
    dry = iam.revoke_sessions(make_ctx(sandbox, True), principal=f"role/{role}", issued_before=WHEN)
    assert dry.changed and dry.warnings, "a far-future Allow is not taken for a revocation"
    result = iam.revoke_sessions(make_ctx(sandbox, False), principal=f"role/{role}", issued_before=WHEN)
    assert result.changed and "possible tampering" in result.warnings[0]
    document = _doc(client.get_role_policy(RoleName=role, PolicyName=iam.REVOKE_POLICY)["PolicyDocument"])
    assert document["Statement"][0]["Effect"] == "Deny"
    assert document["Statement"][0]["Condition"] == {"DateLessThan": {"aws:TokenIssueTime": "2026-11-26T03:00:00Z"}}


def test_a_planted_isolation_group_with_open_egress_is_closed_and_reported(sandbox: Any) -> None:
    made = _instance_setup(sandbox, "planted-g")
    ec2 = sandbox.client("ec2")
    planted = ec2.create_security_group(
        GroupName=f"stanch-isolation-{made['vpc']}",
        Description="looks like Stanch's",
        VpcId=made["vpc"],
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": ec2_actions.ISOLATION_TAG, "Value": "true"}]}
        ],
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=planted,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    result = ec2_actions.isolate_instance(make_ctx(sandbox, False), instance_id=made["instance"])
    assert result.isolation_group_id == planted
    assert "possible tampering" in result.warnings[0] and "1 inbound" in result.warnings[0]
    assert _isolation_state(sandbox, made) == {
        "in isolation only": True,
        "rules": ([], []),
        "group tagged": "true",
        "previous kept": True,
    }
    # Opened again after the instance is isolated: the next run still closes it, and says so.
    ec2.authorize_security_group_egress(
        GroupId=planted, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    again = ec2_actions.isolate_instance(make_ctx(sandbox, False), instance_id=made["instance"])
    assert again.changed and again.warnings
    assert _isolation_state(sandbox, made)["rules"] == ([], [])


def test_a_group_left_open_by_a_crash_before_it_was_closed_is_closed_without_alarm(sandbox: Any) -> None:
    made = _instance_setup(sandbox, "crashed-g")
    ec2 = sandbox.client("ec2")
    # What a crash between creating and closing leaves: Stanch's name, AWS's default egress, no tag.
    ec2.create_security_group(GroupName=f"stanch-isolation-{made['vpc']}", Description="d", VpcId=made["vpc"])
    result = ec2_actions.isolate_instance(make_ctx(sandbox, False), instance_id=made["instance"])
    assert result.changed and not result.warnings
    assert _isolation_state(sandbox, made)["rules"] == ([], [])


def test_a_planted_resume_mark_listing_fewer_keys_deletes_no_legitimate_key(sandbox: Any) -> None:
    made = _rotation_setup(sandbox, "planted-mark")
    client = sandbox.client("iam")
    legit_pair = client.create_access_key(UserName=made["user"])["AccessKey"]
    legit = legit_pair["AccessKeyId"]
    # Another workload of the same user uses it (a signed request records the key's last use).
    AwsClients(region=sandbox.region, endpoint_url=sandbox.aws_endpoint).client_as(
        "sts", legit, legit_pair["SecretAccessKey"]
    ).get_caller_identity()
    stamp = int(datetime.now(UTC).timestamp())
    planted = {"Key": iam.rotation_tag(made["old"]), "Value": f"v1 {stamp} {made['old']}"}  # omits `legit`
    client.tag_user(UserName=made["user"], Tags=[planted])
    dry = iam.rotate_access_key(
        make_ctx(sandbox, True), user_name=made["user"], secret_id=made["secret"], access_key_id=made["old"]
    )
    assert dry.warnings and "possible tampering" in dry.warnings[0] and "half-made" not in dry.detail
    with pytest.raises(RuntimeError, match=r"already has two keys .*possible tampering") as raised:
        iam.rotate_access_key(
            make_ctx(sandbox, False), user_name=made["user"], secret_id=made["secret"], access_key_id=made["old"]
        )
    assert legit in str(raised.value)
    assert _statuses(sandbox, made["user"]) == {made["old"]: "Active", legit: "Active"}, "no key was deleted"
    tags = client.list_user_tags(UserName=made["user"])["Tags"]
    assert planted not in tags, "the planted mark is removed"
    assert _current_key(sandbox, made["secret"]) == made["old"]


def test_a_mark_in_a_foreign_format_is_ignored_and_reported(sandbox: Any) -> None:
    made = _rotation_setup(sandbox, "foreign-mark")
    client = sandbox.client("iam")
    client.tag_user(UserName=made["user"], Tags=[{"Key": iam.rotation_tag(made["old"]), "Value": "anything"}])
    result = iam.rotate_access_key(
        make_ctx(sandbox, False), user_name=made["user"], secret_id=made["secret"], access_key_id=made["old"]
    )
    assert result.state == "rotated" and "not in Stanch's format" in result.warnings[0]
    assert _rotation_state(sandbox, made)["marks"] == []


# ---------------------------------------------------------------- races


def test_two_isolations_in_one_vpc_at_once_share_one_group(sandbox: Any) -> None:
    first = _instance_setup(sandbox, "race")
    ec2 = sandbox.client("ec2")
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [first["vpc"]]}])["Subnets"][0]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    second = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet, SecurityGroupIds=[first["web"]])
    instances = [first["instance"], second["Instances"][0]["InstanceId"]]
    # Both reach CreateSecurityGroup before either sends it: one gets InvalidGroup.Duplicate.
    barrier = threading.Barrier(2, timeout=20)
    creates: list[str] = []

    def together(model: Any = None, **_: Any) -> None:
        if getattr(model, "name", "") == "CreateSecurityGroup":
            creates.append("sent")
            barrier.wait()

    entry = ("before-call.ec2", together)
    AwsClients.event_hooks.append(entry)
    results: dict[str, Any] = {}

    def isolate(instance_id: str) -> None:
        try:
            results[instance_id] = ec2_actions.isolate_instance(make_ctx(sandbox, False), instance_id=instance_id)
        except Exception as exc:  # surfaced by the assertion below
            results[instance_id] = exc

    try:
        threads = [threading.Thread(target=isolate, args=(i,)) for i in instances]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        AwsClients.event_hooks.remove(entry)
    assert len(creates) == 2, "both isolations tried to create the group"
    assert all(not isinstance(r, Exception) for r in results.values()), results
    groups = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [first["vpc"]]},
            {"Name": "group-name", "Values": [f"stanch-isolation-{first['vpc']}"]},
        ]
    )["SecurityGroups"]
    assert len(groups) == 1 and groups[0]["IpPermissions"] == [] and groups[0]["IpPermissionsEgress"] == []
    for instance_id in instances:
        found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        assert [g["GroupId"] for g in found["SecurityGroups"]] == [groups[0]["GroupId"]]
        assert results[instance_id].isolation_group_id == groups[0]["GroupId"]
