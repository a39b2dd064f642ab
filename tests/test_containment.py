"""What a review says to contain (`stanch.review/v2`): every category, and what the attacker already undid."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import random
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st
from test_actions_aws import four_steps, launch_instance, make_ctx

from flows.sandbox import trail
from integrations.aws import awslambda, cloudtrail, config_service, ec2, guardduty, iam, rds, rolesanywhere, s3
from integrations.aws import cloudtrail_review as engine
from integrations.aws import logging as logging_actions
from integrations.aws.cloudtrail_review import analysis
from integrations.aws.cloudtrail_review.events import slim

KEY = "AKIAEXAMPLEEXPOSED01"
ME = "user/ci-deployer"
OWN = trail.ACCOUNT
OUTSIDE = "999988887777"


class Story:
    """CloudTrail records in their documented shapes, one minute apart, made with the leaked key."""

    def __init__(self) -> None:
        self.at = datetime(2026, 11, 20, 9, tzinfo=UTC)
        self.rng = random.Random(3)
        self.records: list[dict[str, Any]] = []

    def __call__(
        self, name: str, source: str, params: dict[str, Any], response: dict[str, Any] | None = None, error: str = ""
    ) -> str:
        self.at += timedelta(minutes=1)
        made = trail.record(
            self.at, name, source, KEY, ME, params=params, response=response, error=error or None, rng=self.rng
        )
        self.records.append(made)
        return str(made["eventID"])

    def review(self, tmp_path: Path) -> dict[str, Any]:
        (tmp_path / "trail.json").write_text(json.dumps({"Records": self.records}))
        report = engine.review([KEY], scanner=engine.Scanner(engine.local_units(tmp_path)))
        data: dict[str, Any] = report.to_json()
        return data


def entry(contain: dict[str, Any], category: str, event_id: str) -> dict[str, Any]:
    [found] = [e for e in contain[category] if e["event_id"] == event_id]
    return found


IAM, EC2, S3, LAMBDA = "iam.amazonaws.com", "ec2.amazonaws.com", "s3.amazonaws.com", "lambda.amazonaws.com"


def test_every_category_is_listed_and_what_the_attacker_reverted_names_the_event_that_did(tmp_path: Path) -> None:
    s = Story()
    user = s("CreateUser", IAM, {"userName": "svc-x"}, {"user": {"userName": "svc-x"}})
    login = s("CreateLoginProfile", IAM, {"userName": "svc-x", "passwordResetRequired": False})
    deleted_login = s("DeleteLoginProfile", IAM, {"userName": "svc-x"})
    gone_user = s("DeleteUser", IAM, {"userName": "svc-x"})
    mfa = s("EnableMFADevice", IAM, {"userName": "ci-deployer", "serialNumber": "arn:aws:iam::123456789012:mfa/x"})
    inline = s("PutUserPolicy", IAM, {"userName": "ci-deployer", "policyName": "p", "policyDocument": '{"Statement": []}'})
    member = s("AddUserToGroup", IAM, {"groupName": "admins", "userName": "ci-deployer"})
    trust = s("UpdateAssumeRolePolicy", IAM, {"roleName": "ops", "policyDocument": '{"Statement": [{"Effect": "Allow"}]}'})
    anchor = s(
        "CreateTrustAnchor",
        "rolesanywhere.amazonaws.com",
        {"name": "a", "source": {"sourceType": "CERTIFICATE_BUNDLE"}},
        {"trustAnchor": {"trustAnchorId": "0f1e2d3c-aaaa-bbbb-cccc-111122223333", "name": "a"}},
    )
    ssh = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}
    rdp = {"ipProtocol": "tcp", "fromPort": 3389, "toPort": 3389, "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}
    opened = s("AuthorizeSecurityGroupIngress", EC2, {"groupId": "sg-1", "ipPermissions": {"items": [ssh, rdp]}})
    s("RevokeSecurityGroupIngress", EC2, {"groupId": "sg-1", "ipPermissions": {"items": [ssh]}})
    add = {"add": {"items": [{"userId": OUTSIDE}, {"userId": "111122223333"}]}}
    shared = s("ModifySnapshotAttribute", EC2, {"snapshotId": "snap-1", "createVolumePermission": add})
    s(
        "ModifySnapshotAttribute",
        EC2,
        {"snapshotId": "snap-1", "createVolumePermission": {"remove": {"items": [{"userId": OUTSIDE}]}}},
    )
    image = s("ModifyImageAttribute", EC2, {"imageId": "ami-1", "launchPermission": {"add": {"items": [{"group": "all"}]}}})
    db = s(
        "ModifyDBSnapshotAttribute",
        "rds.amazonaws.com",
        {"dBSnapshotIdentifier": "db1", "attributeName": "restore", "valuesToAdd": ["all"]},
    )
    public = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}
    own = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OWN}:root"}, "Action": "s3:*"}]}
    policy = s("PutBucketPolicy", S3, {"bucketName": "b", "bucketPolicy": public})
    removed_policy = s("DeleteBucketPolicy", S3, {"bucketName": "b"})
    s("PutBucketPolicy", S3, {"bucketName": "c", "bucketPolicy": own})
    acl = s("PutBucketAcl", S3, {"bucketName": "d", "x-amz-acl": ["public-read"]})
    perm = s(
        "AddPermission20150331v2",
        LAMBDA,
        {"functionName": "f", "statementId": "s1", "principal": "*", "action": "lambda:InvokeFunction"},
    )
    unperm = s("RemovePermission20150331v2", LAMBDA, {"functionName": "f", "statementId": "s1"})
    code = s("UpdateFunctionCode20150331v2", LAMBDA, {"functionName": "arn:aws:lambda:us-east-1:123456789012:function:g"})
    stopped = s("StopLogging", "cloudtrail.amazonaws.com", {"name": "arn:aws:cloudtrail:us-east-1:123456789012:trail/main"})
    started = s("StartLogging", "cloudtrail.amazonaws.com", {"name": "main"})
    selectors = s(
        "PutEventSelectors",
        "cloudtrail.amazonaws.com",
        {"trailName": "main", "eventSelectors": [{"readWriteType": "ReadOnly"}]},
    )
    flow = s("DeleteFlowLogs", EC2, {"DeleteFlowLogsRequest": {"FlowLogId": {"content": "fl-0abc", "tag": 1}}})
    detector = s("UpdateDetector", "guardduty.amazonaws.com", {"detectorId": "d1", "enable": False})
    run = s("RunInstances", EC2, {"instanceType": "p3.16xlarge"}, {"instancesSet": {"items": [{"instanceId": "i-1"}]}})
    command = s(
        "SendCommand",
        "ssm.amazonaws.com",
        {"instanceIds": ["i-2"], "documentName": "AWS-RunShellScript"},
        {"command": {"commandId": "c-1"}},
    )
    secret = s("GetSecretValue", "secretsmanager.amazonaws.com", {"secretId": "prod/db"})
    param = s("GetParameter", "ssm.amazonaws.com", {"name": "/prod/token", "withDecryption": True})
    failed = s("CreateUser", IAM, {"userName": "svc-denied"}, error="AccessDenied")

    review = s.review(tmp_path)
    assert review["schema"] == "stanch.review/v2"
    contain = review["contain"]
    assert entry(contain, "principals", user)["undone_by"] == gone_user
    assert entry(contain, "credentials", login)["undone_by"] == deleted_login, "the first undo names it"
    assert entry(contain, "credentials", mfa)["serial_number"].endswith("mfa/x")
    assert entry(contain, "principals", inline)["principal"] == "user/ci-deployer"
    assert entry(contain, "principals", member)["group_name"] == "admins"
    assert entry(contain, "principals", trust)["document"] == {"Statement": [{"Effect": "Allow"}]}
    assert entry(contain, "principals", anchor)["id"] == "0f1e2d3c-aaaa-bbbb-cccc-111122223333"
    rules = {e["rule"]["fromPort"]: e["undone_by"] for e in contain["exposure"] if e["event_id"] == opened}
    assert rules[22] is not None and rules[3389] is None, "only the exact rule revoked is undone"
    assert entry(contain, "exposure", shared)["undone_by"] is None, "a share removed from one of two accounts still stands"
    assert entry(contain, "exposure", image)["accounts"] == ["all"]
    assert entry(contain, "exposure", db)["db_snapshot_id"] == "db1"
    assert entry(contain, "exposure", policy) == {
        **entry(contain, "exposure", policy),
        "outside": ["*"],
        "undone_by": removed_policy,
    }
    assert [e["bucket"] for e in contain["exposure"] if e["kind"] == "bucket_policy"] == ["b"], "own account only: no entry"
    assert entry(contain, "exposure", acl)["grantees"] == ["public-read"]
    assert entry(contain, "exposure", perm)["undone_by"] == unperm
    assert entry(contain, "exposure", code)["function_name"] == "g"
    assert entry(contain, "logging", stopped)["undone_by"] == started
    assert entry(contain, "logging", selectors)["selectors"] == {"eventSelectors": [{"readWriteType": "ReadOnly"}]}
    assert entry(contain, "logging", flow)["flow_log_ids"] == ["fl-0abc"]
    assert entry(contain, "logging", detector)["change"] == "disabled"
    assert entry(contain, "compute", run)["instance_ids"] == ["i-1"]
    assert entry(contain, "compute", command)["instance_ids"] == ["i-2"]
    assert entry(contain, "secrets_read", secret)["secret_id"] == "prod/db"
    assert entry(contain, "secrets_read", param)["decrypted"] is True
    everything = [e["event_id"] for entries in contain.values() for e in entries]
    assert failed not in everything, "a failed attempt never becomes a containment entry"
    [attempt] = [f for f in review["findings"]["persistence"] if f["event_id"] == failed]
    assert attempt["error_code"] == "AccessDenied"


# ---------------------------------------------------------------- the actions that revert, against moto's server


def test_delete_inline_policy_four_steps_and_stanchs_own_policies_are_kept(sandbox: Any) -> None:
    iam_client = sandbox.client("iam")
    allow = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    iam_client.put_user_policy(UserName="alice", PolicyName="backdoor", PolicyDocument=allow)
    iam_client.put_user_policy(UserName="alice", PolicyName="keep-me", PolicyDocument=allow)

    def names() -> list[str]:
        return sorted(iam_client.list_user_policies(UserName="alice")["PolicyNames"])

    four_steps(sandbox, lambda ctx: iam.delete_inline_policy(ctx, principal="user/alice", policy_name="backdoor"), names)
    assert names() == ["keep-me"]
    iam.quarantine_principal(make_ctx(sandbox, False), principal="user/alice")
    kept = iam.delete_inline_policy(make_ctx(sandbox, False), principal="user/alice", policy_name=iam.QUARANTINE_POLICY)
    assert not kept.changed and kept.warnings and iam.QUARANTINE_POLICY in names()


def test_remove_user_from_group_four_steps(sandbox: Any) -> None:
    iam_client = sandbox.client("iam")
    iam_client.create_group(GroupName="admins")
    iam_client.add_user_to_group(GroupName="admins", UserName="alice")

    def groups() -> list[str]:
        return [g["GroupName"] for g in iam_client.list_groups_for_user(UserName="alice")["Groups"]]

    four_steps(sandbox, lambda ctx: iam.remove_user_from_group(ctx, group_name="admins", user_name="alice"), groups)
    assert groups() == []


def test_deactivate_mfa_device_four_steps(sandbox: Any) -> None:
    iam_client = sandbox.client("iam")
    serial = iam_client.create_virtual_mfa_device(VirtualMFADeviceName="attacker")["VirtualMFADevice"]["SerialNumber"]
    iam_client.enable_mfa_device(
        UserName="alice", SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
    )

    def devices() -> list[str]:
        return [d["SerialNumber"] for d in iam_client.list_mfa_devices(UserName="alice")["MFADevices"]]

    four_steps(sandbox, lambda ctx: iam.deactivate_mfa_device(ctx, serial_number=serial), devices)
    assert devices() == []


def _trust(principal: dict[str, str]) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    return {"Version": "2012-10-17", "Statement": [statement]}


ASSUME_EC2 = _trust({"Service": "ec2.amazonaws.com"})
ATTACKER_TRUST = _trust({"AWS": f"arn:aws:iam::{OUTSIDE}:root"})


def test_restore_trust_policy_four_steps_with_the_earlier_document_else_quarantine(sandbox: Any) -> None:
    iam_client = sandbox.client("iam")
    for role in ("ops", "ops-unknown"):
        iam_client.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(ASSUME_EC2))
        iam_client.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(ATTACKER_TRUST))

    def trust() -> Any:
        return iam_client.get_role(RoleName="ops")["Role"]["AssumeRolePolicyDocument"]

    four_steps(sandbox, lambda ctx: iam.restore_trust_policy(ctx, role_name="ops", document=ASSUME_EC2), trust)
    assert trust() == ASSUME_EC2

    def policies() -> list[str]:
        return list(iam_client.list_role_policies(RoleName="ops-unknown")["PolicyNames"])

    four_steps(sandbox, lambda ctx: iam.restore_trust_policy(ctx, role_name="ops-unknown"), policies)
    assert policies() == [iam.QUARANTINE_POLICY]


def _group(sandbox: Any) -> str:
    ec2_client = sandbox.client("ec2")
    vpc = ec2_client.describe_vpcs()["Vpcs"][0]["VpcId"]
    group = ec2_client.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    rules = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
    ]
    ec2_client.authorize_security_group_ingress(GroupId=group, IpPermissions=rules)
    return str(group)


def test_revoke_security_group_rule_four_steps_leaves_the_other_rules(sandbox: Any) -> None:
    group = _group(sandbox)
    ec2_client = sandbox.client("ec2")

    def rules() -> list[tuple[int, str]]:
        [found] = ec2_client.describe_security_groups(GroupIds=[group])["SecurityGroups"]
        return sorted((p["FromPort"], r["CidrIp"]) for p in found["IpPermissions"] for r in p["IpRanges"])

    rule = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIp": "0.0.0.0/0"}  # as the review gives it
    four_steps(sandbox, lambda ctx: ec2.revoke_security_group_rule(ctx, group_id=group, rule=rule), rules)
    assert rules() == [(5432, "10.0.0.0/8")]


def test_unshare_snapshot_and_unshare_image_four_steps(sandbox: Any) -> None:
    ec2_client = sandbox.client("ec2")
    volume = ec2_client.create_volume(AvailabilityZone=f"{sandbox.region}a", Size=1)["VolumeId"]
    snapshot = ec2_client.create_snapshot(VolumeId=volume)["SnapshotId"]
    ec2_client.modify_snapshot_attribute(
        SnapshotId=snapshot,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[OUTSIDE, "111122223333"],
    )

    def shared() -> list[str]:
        found = ec2_client.describe_snapshot_attribute(SnapshotId=snapshot, Attribute="createVolumePermission")
        return sorted(p.get("UserId", "") for p in found["CreateVolumePermissions"])

    four_steps(sandbox, lambda ctx: ec2.unshare_snapshot(ctx, snapshot_id=snapshot, accounts=[OUTSIDE]), shared)
    assert shared() == ["111122223333"], "only the attacker's account loses the share"
    instance, _ = launch_instance(sandbox)
    image = ec2_client.create_image(InstanceId=instance, Name="golden")["ImageId"]
    ec2_client.modify_image_attribute(
        ImageId=image, Attribute="launchPermission", LaunchPermission={"Add": [{"Group": "all"}]}
    )

    def launchers() -> list[str]:
        found = ec2_client.describe_image_attribute(ImageId=image, Attribute="launchPermission")["LaunchPermissions"]
        return sorted(p.get("Group") or p.get("UserId", "") for p in found)

    four_steps(sandbox, lambda ctx: ec2.unshare_image(ctx, image_id=image, accounts=["all"]), launchers)
    assert launchers() == []


def test_remove_outside_bucket_policy_statements_four_steps_keeps_the_rest(sandbox: Any) -> None:
    s3_client = sandbox.client("s3")
    s3_client.create_bucket(Bucket="customer-exports")
    objects = "arn:aws:s3:::customer-exports/*"
    own = {"Sid": "Pipeline", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OWN}:role/etl"}, "Resource": objects}
    public = {"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": objects}
    other = {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OUTSIDE}:root"}, "Resource": objects}
    own["Action"], other["Action"] = "s3:PutObject", "s3:*"
    policy = {"Version": "2012-10-17", "Statement": [own, public, other]}
    s3_client.put_bucket_policy(Bucket="customer-exports", Policy=json.dumps(policy))

    def sids() -> list[str]:
        return [s["Sid"] for s in json.loads(s3_client.get_bucket_policy(Bucket="customer-exports")["Policy"])["Statement"]]

    act = s3.remove_outside_bucket_policy_statements
    four_steps(sandbox, lambda ctx: act(ctx, bucket="customer-exports"), sids)
    assert sids() == ["Pipeline"], "the pipeline's own statement stays"


def _ours(sandbox: Any) -> dict[str, str]:
    """A VPC and an S3 endpoint in it in the sandbox account (the bucket's region), and our organization."""
    ec2_client = sandbox.client("ec2")
    vpc = ec2_client.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    endpoint = ec2_client.create_vpc_endpoint(
        VpcId=vpc, ServiceName=f"com.amazonaws.{sandbox.region}.s3", VpcEndpointType="Gateway"
    )["VpcEndpoint"]["VpcEndpointId"]
    org = sandbox.client("organizations").create_organization(FeatureSet="ALL")["Organization"]["Id"]
    return {"vpc": vpc, "vpce": endpoint, "org": org}


THEIR_ENDPOINT = "vpce-0123456789abcdef0"  # an endpoint in the attacker's account: AWS matches it all the same
THEIR_ORG = "o-zz9y8x7w6v"


def _conditional_bucket(sandbox: Any, bucket: str) -> list[dict[str, Any]]:
    """(a) public, no condition; `*` (b) in our org, (c) through our VPC endpoint, (d) from our VPC, (e) of another
    account, (f) through an endpoint that is not ours, (g) in another org; (h) Deny. The ids are real: looked up."""
    ours = _ours(sandbox)
    objects = f"arn:aws:s3:::{bucket}/*"
    base = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": objects}
    statements = [
        {"Sid": "Open", **base},
        {"Sid": "OrgRead", **base, "Condition": {"StringEquals": {"aws:PrincipalOrgID": ours["org"]}}},
        {"Sid": "EndpointRead", **base, "Condition": {"StringEquals": {"aws:sourceVpce": [ours["vpce"]]}}},
        {"Sid": "VpcRead", **base, "Condition": {"StringEquals": {"aws:SourceVpc": ours["vpc"]}}},
        {"Sid": "TheirAccount", **base, "Condition": {"StringEquals": {"aws:PrincipalAccount": OUTSIDE}}},
        {"Sid": "TheirEndpoint", **base, "Condition": {"StringEquals": {"aws:SourceVpce": THEIR_ENDPOINT}}},
        {"Sid": "TheirOrg", **base, "Condition": {"StringEquals": {"aws:PrincipalOrgID": THEIR_ORG}}},
        {
            "Sid": "NoPlainHttp",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": objects,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]
    sandbox.client("s3").create_bucket(Bucket=bucket)
    sandbox.client("s3").put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements})
    )
    return statements


def test_remove_outside_bucket_policy_statements_keeps_conditions_narrowing_to_us(sandbox: Any) -> None:
    statements = _conditional_bucket(sandbox, "org-exports")
    s3_client = sandbox.client("s3")

    def held() -> list[dict[str, Any]]:
        return list(json.loads(s3_client.get_bucket_policy(Bucket="org-exports")["Policy"])["Statement"])

    act = s3.remove_outside_bucket_policy_statements
    four_steps(sandbox, lambda ctx: act(ctx, bucket="org-exports"), held)
    assert held() == [statements[i] for i in (1, 2, 3, 7)], "our org, endpoint, VPC and the Deny stay; the rest go"
    again = act(make_ctx(sandbox, False), bucket="org-exports")
    assert not again.changed and again.removed == []
    kept = [(k.statement, k.condition_keys) for k in again.kept_conditional]
    assert kept == [
        ("OrgRead", ["aws:PrincipalOrgID"]),
        ("EndpointRead", ["aws:sourceVpce"]),
        ("VpcRead", ["aws:SourceVpc"]),
    ]
    assert not [k for k in again.kept_conditional if "check by hand" in k.reason], "each id was checked to be ours"
    # an endpoint or VPC of ours lets in whoever reaches it: one the key's holder made here would be a backdoor
    assert [w.split(" kept: ")[0] for w in again.warnings] == [
        "s3://org-exports statement EndpointRead",
        "s3://org-exports statement VpcRead",
    ]
    assert all("made during the exposure" in w for w in again.warnings)


def test_remove_outside_bucket_policy_statements_reports_what_it_keeps_and_removes(sandbox: Any) -> None:
    """moto's server answers and records the organizations, EC2 and S3 look-ups (asserted from its request log)."""
    statements = _conditional_bucket(sandbox, "org-reports")
    s3_client = sandbox.client("s3")
    dry = s3.remove_outside_bucket_policy_statements(make_ctx(sandbox, True), bucket="org-reports")
    assert dry.changed and dry.dry_run
    assert json.loads(s3_client.get_bucket_policy(Bucket="org-reports")["Policy"])["Statement"] == statements
    sandbox.record_aws()
    done = s3.remove_outside_bucket_policy_statements(make_ctx(sandbox, False), bucket="org-reports")
    asked = sandbox.aws_operations()
    for result in (dry, done):
        assert [s["Sid"] for s in result.removed] == ["Open", "TheirAccount", "TheirEndpoint", "TheirOrg"]
        assert [k.statement for k in result.kept_conditional] == ["OrgRead", "EndpointRead", "VpcRead"]
        assert result.kept == 4 and len(result.warnings) == 2, "our endpoint and VPC: checked, and flagged"
        assert "OrgRead, EndpointRead, VpcRead narrowed by a condition" in result.detail
    looked_up = [op for op in asked if op.startswith(("ec2:", "organizations:"))]
    assert sorted(looked_up) == sorted(
        ["ec2:DescribeVpcEndpoints", "ec2:DescribeVpcEndpoints", "ec2:DescribeVpcs", "organizations:DescribeOrganization"]
    ), "one look-up per id, none again for the check after the change"


def test_bucket_policy_ids_are_looked_up_once_only_when_named_and_a_refused_look_up_is_left_to_a_person(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_least_privilege import set_auth

    s3_client = sandbox.client("s3")
    objects = "arn:aws:s3:::plain-exports/*"
    base = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": objects}
    s3_client.create_bucket(Bucket="plain-exports")
    plain = [{"Sid": "Open", **base}, {"Sid": "Ours", **base, "Condition": {"StringEquals": {"aws:SourceAccount": OWN}}}]
    s3_client.put_bucket_policy(Bucket="plain-exports", Policy=json.dumps({"Statement": plain}))
    sandbox.record_aws()
    act = s3.remove_outside_bucket_policy_statements
    assert [s["Sid"] for s in act(make_ctx(sandbox, False), bucket="plain-exports").removed] == ["Open"]
    assert not [op for op in sandbox.aws_operations() if op.startswith(("ec2:", "organizations:"))], "no id: no look-up"

    endpoint = _ours(sandbox)["vpce"]
    named_twice = [
        {"Sid": f"Read{n}", **base, "Condition": {"StringEquals": {"aws:SourceVpce": endpoint, "aws:SourceVpc": vpc}}}
        for n, vpc in enumerate(["vpc-0aaaaaaaaaaaaaaaa", "vpc-0aaaaaaaaaaaaaaaa"])
    ]
    s3_client.put_bucket_policy(Bucket="plain-exports", Policy=json.dumps({"Statement": named_twice}))
    sandbox.record_aws()
    gone = act(make_ctx(sandbox, False), bucket="plain-exports")
    assert [s["Sid"] for s in gone.removed] == ["Read0", "Read1"], "a VPC id that does not exist is not ours"
    asked = [op for op in sandbox.aws_operations() if op.startswith("ec2:")]
    assert sorted(asked) == ["ec2:DescribeVpcEndpoints", "ec2:DescribeVpcs"], "each id looked up once per call"

    sandbox.client("organizations").delete_organization()
    in_org = {"Sid": "OrgRead", **base, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}}
    s3_client.put_bucket_policy(Bucket="plain-exports", Policy=json.dumps({"Statement": [in_org]}))
    assert act(make_ctx(sandbox, False), bucket="plain-exports").removed == [in_org], "we are in no organization"

    # A responder allowed everything but the endpoint look-up: the statement is kept, and the refusal named.
    through = {"Sid": "EndpointRead", **base, "Condition": {"StringEquals": {"aws:SourceVpce": THEIR_ENDPOINT}}}
    s3_client.put_bucket_policy(Bucket="plain-exports", Policy=json.dumps({"Statement": [through]}))
    iam_client = sandbox.client("iam")
    iam_client.create_user(UserName="stanch-responder")
    made = iam_client.create_access_key(UserName="stanch-responder")["AccessKey"]
    allowed = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    refused = {"Effect": "Deny", "Action": "ec2:DescribeVpcEndpoints", "Resource": "*"}
    document = json.dumps({"Version": "2012-10-17", "Statement": [allowed, refused]})
    iam_client.put_user_policy(UserName="stanch-responder", PolicyName="stanch", PolicyDocument=document)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", made["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", made["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    set_auth(sandbox, "0")
    try:
        kept = act(make_ctx(sandbox, False), bucket="plain-exports")
    finally:
        set_auth(sandbox, "inf")
    assert not kept.changed and kept.removed == [] and [k.statement for k in kept.kept_conditional] == ["EndpointRead"]
    [warning] = kept.warnings
    assert "check by hand" in warning and THEIR_ENDPOINT in warning and "ec2:DescribeVpcEndpoints refused" in warning


_VERDICTS: dict[tuple[str, str], bool | str] = {
    ("org", "o-a1b2c3d4e5"): True,
    ("org", THEIR_ORG): False,
    ("vpc", "vpc-1a2b3c4d"): True,
    ("vpce", "vpce-1a2b3c4d"): True,
    ("vpce", THEIR_ENDPOINT): False,
    ("vpce", "vpce-0badc0ffee0000000"): "ec2:DescribeVpcEndpoints refused: UnauthorizedOperation",
}


@pytest.mark.parametrize(
    ("condition", "kept"),
    [
        ({"stringequals": {"AWS:PRINCIPALACCOUNT": OWN}}, True),
        ({"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/*"]}}, True),
        ({"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": [f"{THEIR_ORG}/r-ab12/*"]}}, False),
        ({"StringEquals": {"aws:PrincipalOrgID": THEIR_ORG}}, False),
        ({"StringEquals": {"aws:SourceVpc": "vpc-1a2b3c4d"}}, True),
        ({"StringEqualsIgnoreCase": {"aws:SourceVpce": "VPCE-1A2B3C4D"}}, True),
        ({"StringEquals": {"aws:SourceVpce": THEIR_ENDPOINT}}, False),
        ({"StringEquals": {"aws:SourceVpce": ["vpce-1a2b3c4d", THEIR_ENDPOINT]}}, False),
        ({"StringEquals": {"aws:SourceVpce": "vpce-0badc0ffee0000000"}}, True),  # not checkable: kept, with a warning
        ({"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{OWN}:role/etl-*"}}, True),
        ({"ArnEquals": {"aws:SourceArn": f"arn:aws:cloudfront::{OWN}:distribution/E1"}}, True),
        ({"StringEquals": {"aws:SourceAccount": [OWN, OUTSIDE]}}, False),
        ({"StringEquals": {"aws:PrincipalAccount": "${aws:ResourceAccount}"}}, True),
        ({"StringEquals": {"aws:SourceVpc": "vpc-1a2b3c4d", "aws:SourceOwner": OUTSIDE}}, False),
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/etl"}}, False),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::someone-elses-bucket"}}, False),
        ({"StringLike": {"aws:PrincipalOrgID": "o-*"}}, False),
        ({"StringNotEquals": {"aws:PrincipalAccount": OWN}}, False),
        ({"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1a2b3c4d"}}, False),
        ({"ForAllValues:StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}, False),
        ({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, False),
    ],
)
def test_bucket_policy_statement_kept_only_when_a_condition_narrows_it_to_us(condition: Any, kept: bool) -> None:
    """Ids get the verdicts a look-up would give (a KeyError: an id looked up that needs none, a wildcard say)."""

    def lookup(kind: str, value: str) -> bool | str:
        return _VERDICTS[kind, value]

    statement = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Condition": condition}
    assert s3._outside(statement, OWN, lookup) is not kept
    foreign = {**statement, "Principal": {"AWS": ["*", f"arn:aws:iam::{OUTSIDE}:root"]}}
    assert s3._outside(foreign, OWN, lookup), "a named outside principal goes whatever the condition"
    assert not s3._outside({**statement, "Effect": "Deny", "Condition": {}}, OWN, lookup), "a Deny always stays"
    narrowed = s3._kept_conditional(statement, OWN, lookup)
    unchecked = narrowed[1] if narrowed else []
    assert bool(unchecked) == ("vpce-0badc0ffee0000000" in json.dumps(condition)), "only a refused look-up is left"


def _function(sandbox: Any) -> None:
    role = sandbox.client("iam").create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(ASSUME_EC2))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    client = sandbox.client("lambda")
    client.create_function(
        FunctionName="exporter",
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    for sid, principal in (("attacker", OUTSIDE), ("events", "events.amazonaws.com")):
        client.add_permission(FunctionName="exporter", StatementId=sid, Action="lambda:InvokeFunction", Principal=principal)


def test_remove_permission_four_steps(sandbox: Any) -> None:
    _function(sandbox)
    client = sandbox.client("lambda")

    def statements() -> list[str]:
        return sorted(s["Sid"] for s in json.loads(client.get_policy(FunctionName="exporter")["Policy"])["Statement"])

    four_steps(
        sandbox, lambda ctx: awslambda.remove_permission(ctx, function_name="exporter", statement_id="attacker"), statements
    )
    assert statements() == ["events"]


def test_unshare_db_snapshot_four_steps(sandbox: Any) -> None:
    client = sandbox.client("rds")
    client.create_db_instance(
        DBInstanceIdentifier="orders", DBInstanceClass="db.t3.micro", Engine="postgres",
        MasterUsername="admin", MasterUserPassword="sandbox-only-pass", AllocatedStorage=20,
    )  # fmt: skip
    client.create_db_snapshot(DBInstanceIdentifier="orders", DBSnapshotIdentifier="orders-snap")
    client.modify_db_snapshot_attribute(
        DBSnapshotIdentifier="orders-snap", AttributeName="restore", ValuesToAdd=[OUTSIDE, "111122223333"]
    )

    def restorers() -> list[str]:
        found = client.describe_db_snapshot_attributes(DBSnapshotIdentifier="orders-snap")["DBSnapshotAttributesResult"]
        return sorted(
            v for a in found["DBSnapshotAttributes"] if a["AttributeName"] == "restore" for v in a["AttributeValues"]
        )

    four_steps(
        sandbox, lambda ctx: rds.unshare_db_snapshot(ctx, db_snapshot_id="orders-snap", accounts=[OUTSIDE]), restorers
    )
    assert restorers() == ["111122223333"]


def _trail(sandbox: Any) -> Any:
    sandbox.client("s3").create_bucket(Bucket="org-trail")
    client = sandbox.client("cloudtrail")
    client.create_trail(Name="main", S3BucketName="org-trail")
    return client


def test_restart_logging_four_steps(sandbox: Any) -> None:
    client = _trail(sandbox)
    client.stop_logging(Name="main")
    four_steps(
        sandbox,
        lambda ctx: logging_actions.restart_logging(ctx, trail="main"),
        lambda: client.get_trail_status(Name="main")["IsLogging"],
    )
    assert client.get_trail_status(Name="main")["IsLogging"]


def test_restore_event_selectors_four_steps(sandbox: Any) -> None:
    client = _trail(sandbox)
    client.put_event_selectors(
        TrailName="main", EventSelectors=[{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": False}]
    )

    def selectors() -> Any:
        return client.get_event_selectors(TrailName="main")["EventSelectors"]

    four_steps(sandbox, lambda ctx: logging_actions.restore_event_selectors(ctx, trail="main"), selectors)
    [restored] = selectors()
    assert restored["ReadWriteType"] == "All" and restored["IncludeManagementEvents"] is True


# ---------------------------------------------------------------- logging and compute the attacker changed


def test_enable_detector_four_steps(sandbox: Any) -> None:
    client = sandbox.client("guardduty")
    detector = client.create_detector(Enable=True)["DetectorId"]
    client.update_detector(DetectorId=detector, Enable=False)  # what the attacker did
    four_steps(
        sandbox,
        lambda ctx: guardduty.enable_detector(ctx, detector_id=detector),
        lambda: client.get_detector(DetectorId=detector)["Status"],
    )
    assert client.get_detector(DetectorId=detector)["Status"] == "ENABLED"
    client.delete_detector(DetectorId=detector)
    gone = guardduty.enable_detector(make_ctx(sandbox, False), detector_id=detector)
    assert not gone.changed, "a deleted detector is reported, not recreated"


def test_start_recorder_four_steps(sandbox: Any) -> None:
    client = sandbox.client("config")
    sandbox.client("s3").create_bucket(Bucket="config-history")
    client.put_configuration_recorder(
        ConfigurationRecorder={"name": "default", "roleARN": f"arn:aws:iam::{OWN}:role/config-recorder"}
    )
    client.put_delivery_channel(DeliveryChannel={"name": "default", "s3BucketName": "config-history"})
    client.start_configuration_recorder(ConfigurationRecorderName="default")
    client.stop_configuration_recorder(ConfigurationRecorderName="default")  # what the attacker did

    def recording() -> bool:
        [status] = client.describe_configuration_recorder_status()["ConfigurationRecordersStatus"]
        return bool(status["recording"])

    four_steps(sandbox, lambda ctx: config_service.start_recorder(ctx, recorder_name="default"), recording)
    assert recording()


def test_stop_instances_four_steps(sandbox: Any) -> None:
    instance, _ = launch_instance(sandbox)
    client = sandbox.client("ec2")

    def state() -> str:
        return str(client.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"])

    gone = "i-0000000000000dead"  # terminated and gone: left out, not an error
    four_steps(sandbox, lambda ctx: ec2.stop_instances(ctx, instance_ids=[instance, gone]), state)
    assert state() in ("stopping", "stopped")


def test_disable_function_four_steps(sandbox: Any) -> None:
    _function(sandbox)
    client = sandbox.client("lambda")

    def reserved() -> Any:
        return client.get_function_concurrency(FunctionName="exporter").get("ReservedConcurrentExecutions")

    four_steps(sandbox, lambda ctx: awslambda.disable_function(ctx, function_name="exporter"), reserved)
    assert reserved() == 0
    assert not awslambda.disable_function(make_ctx(sandbox, False), function_name="never-made").changed


# ---------------------------------------------------------------- the sandbox's wider attack, reviewed


def test_the_wider_sandbox_attack_is_reviewed_with_what_the_attacker_undid(sandbox: Any) -> None:
    ids = sandbox.seed_wide_attack()
    report = cloudtrail.review_key_activity(
        make_ctx(sandbox, False),
        access_key_ids=[sandbox.scenario["key"]],
        source=f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/",
    ).to_json()
    contain = report["contain"]
    kinds = {c: sorted({e["kind"] for e in entries}) for c, entries in contain.items()}
    assert all(kinds.values()), f"every category has an entry: {kinds}"
    undone = sorted(e["kind"] for entries in contain.values() for e in entries if e["undone_by"])
    assert undone == ["access_key", "image_share", "instances", "lambda_permission", "security_group_rule", "user"]
    [trust] = [e for e in contain["principals"] if e["kind"] == "trust_policy" and e["role_name"] == "svc-escalation"]
    assert trust["previous_document"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    [unknown] = [e for e in contain["principals"] if e["kind"] == "trust_policy" and e["role_name"] == ids["role"]]
    assert unknown["previous_document"] is None, "the role's trust policy before the attack is not in the logs"


# ---------------------------------------------------------------- every region, and watching after containment


def test_lookup_reviews_every_configured_region() -> None:
    records = json.loads(
        (Path(__file__).parent / "fixtures" / "cloudtrail" / "stratus-sts-federation-token.json").read_text()
    )
    leaked, derived = "AKIA6V1GNZTT65XQH36M", "ASIASTJKC5GCM7ZE6LUP"

    def event(record: dict[str, Any]) -> dict[str, Any]:
        return {"EventId": record["eventID"], "EventName": record["eventName"], "CloudTrailEvent": json.dumps(record)}

    east, west = (
        boto3.client("cloudtrail", region_name=r, aws_access_key_id="x", aws_secret_access_key="y")
        for r in ("us-east-1", "eu-west-1")
    )
    by_key = {"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": leaked}], "MaxResults": 50}
    of_derived = {"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": derived}], "MaxResults": 50}
    with Stubber(east) as in_east, Stubber(west) as in_west:
        in_east.add_response("lookup_events", {"Events": [event(records[0])]}, by_key)
        in_west.add_response("lookup_events", {"Events": [], "NextToken": "w2"}, by_key)
        in_west.add_response("lookup_events", {"Events": []}, {**by_key, "NextToken": "w2"})
        in_east.add_response("lookup_events", {"Events": []}, of_derived)
        in_west.add_response("lookup_events", {"Events": [event(records[1])]}, of_derived)
        report = engine.review([leaked], lookup=cloudtrail.RegionsLookup([east, west]))
        in_east.assert_no_pending_responses()
        in_west.assert_no_pending_responses()
    assert report.events_total == 2, "the derived key's call in eu-west-1 is found"
    assert [d.access_key_id for d in report.derived_keys] == [derived]


def _deliver_later(sandbox: Any, records: list[dict[str, Any]], delay: float) -> threading.Timer:
    """CloudTrail's delivery delay: the file lands in the bucket while the watch is on."""

    def put() -> None:
        body = gzip.compress(json.dumps({"Records": records}).encode())
        key = trail.object_key(datetime.now(UTC), n=4242)
        sandbox.client("s3").put_object(Bucket=sandbox.cloudtrail_bucket, Key=key, Body=body)

    timer = threading.Timer(delay, put)
    timer.start()
    return timer


def test_watch_reports_denied_attempts_and_fails_loudly_on_a_success(sandbox: Any) -> None:
    key, session = sandbox.scenario["key"], sandbox.scenario["session_key"]
    source = f"s3://{sandbox.cloudtrail_bucket}/AWSLogs/"
    since = datetime.now(UTC).replace(microsecond=0)
    later = since + timedelta(seconds=1)
    denied = trail.record(later, "ListBuckets", "s3.amazonaws.com", session, "user/ci-deployer", error="AccessDenied")
    timer = _deliver_later(sandbox, [denied], 0.5)
    watched = cloudtrail.watch_key_use(
        make_ctx(sandbox, False),
        access_key_ids=[key, session],
        source=source,
        since=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        window_seconds=2,
        poll_seconds=1,
    )
    timer.join()
    assert watched.polls >= 2 and watched.regions == ["us-east-1"]
    assert [(a.event_name, a.error_code, a.access_key_id) for a in watched.attempts] == [
        ("ListBuckets", "AccessDenied", session)
    ]
    worked = trail.record(later, "GetCallerIdentity", "sts.amazonaws.com", session, "user/ci-deployer")
    _deliver_later(sandbox, [denied, worked], 0).join()
    with pytest.raises(
        RuntimeError, match=rf"still works: 1 successful call\(s\) .*GetCallerIdentity by {session}.*{worked['eventID']}"
    ):
        cloudtrail.watch_key_use(
            make_ctx(sandbox, False),
            access_key_ids=[key, session],  # the review's derived keys: minted before the window, so named
            source=source,
            since=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            window_seconds=5,
            poll_seconds=1,
        )


# ---------------------------------------------------------------- AWS's own quarantine policies


@pytest.fixture
def aws_managed_policies(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's IAM with AWS's managed policies (off by default: loading them makes every reset slower).

    The sandbox's moto server runs in this process, so its setting is this process's environment."""
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    sandbox.reset()
    yield
    monkeypatch.delenv("MOTO_IAM_LOAD_MANAGED_POLICIES")
    sandbox.reset()


@pytest.mark.usefixtures("aws_managed_policies")
def test_quarantine_principal_with_aws_managed_policy_four_steps_keeps_and_reports_aws_quarantine(sandbox: Any) -> None:
    iam_client = sandbox.client("iam")
    v2 = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"
    iam_client.attach_user_policy(UserName="ci-deployer", PolicyArn=v2)  # what AWS does when it finds a key in public

    def attached() -> list[str]:
        return sorted(
            p["PolicyArn"] for p in iam_client.list_attached_user_policies(UserName="ci-deployer")["AttachedPolicies"]
        )

    four_steps(
        sandbox, lambda ctx: iam.quarantine_principal(ctx, principal="user/ci-deployer", policy="aws-managed"), attached
    )
    assert attached() == [v2, iam.AWS_QUARANTINE_LATEST]
    inline = iam.quarantine_principal(make_ctx(sandbox, False), principal="user/ci-deployer")
    assert inline.aws_quarantine == [v2, iam.AWS_QUARANTINE_LATEST], "AWS's policies are reported"
    kept = iam.detach_policy(make_ctx(sandbox, False), principal="user/ci-deployer", policy_arn=v2)
    assert not kept.changed and "kept AWS's quarantine" in kept.detail and v2 in attached()
    listed = iam.list_access_keys(make_ctx(sandbox, False), user_name="ci-deployer")
    assert listed.aws_quarantine == [v2, iam.AWS_QUARANTINE_LATEST]


# ---------------------------------------------------------------- Roles Anywhere (moto has none: a stand-in)


class RolesAnywhereStandIn(http.server.ThreadingHTTPServer):
    """The two Roles Anywhere calls the action makes, over HTTP as the service's REST API takes them."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RolesAnywhereHandler)
        self.anchors: dict[str, bool] = {}
        self.requests: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def region(self) -> str:
        return "us-east-1"

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RolesAnywhereHandler(http.server.BaseHTTPRequestHandler):
    server: RolesAnywhereStandIn

    def _answer(self, disable: bool) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        anchor = self.path.split("/")[2]
        body: dict[str, Any]
        if anchor not in self.server.anchors:
            body, status = {"message": "not found"}, 404
            self.send_response(status)
            self.send_header("x-amzn-ErrorType", "ResourceNotFoundException")
        else:
            if disable:
                self.server.anchors[anchor] = False
            body, status = {"trustAnchor": {"trustAnchorId": anchor, "enabled": self.server.anchors[anchor]}}, 200
            self.send_response(status)
        data = json.dumps(body).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(disable=False)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(disable=True)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_disable_trust_anchor_four_steps_against_a_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    stand_in = RolesAnywhereStandIn()
    anchor = "0f1e2d3c-aaaa-bbbb-cccc-111122223333"
    stand_in.anchors[anchor] = True
    try:
        four_steps(
            stand_in,
            lambda ctx: rolesanywhere.disable_trust_anchor(ctx, trust_anchor_id=anchor),
            lambda: stand_in.anchors[anchor],
        )
        assert stand_in.requests.count(f"POST /trustanchor/{anchor}/disable") == 1, stand_in.requests
        gone = rolesanywhere.disable_trust_anchor(
            make_ctx(stand_in, False), trust_anchor_id="0" * 8 + "-0000-0000-0000-" + "0" * 12
        )
        assert not gone.changed
    finally:
        stand_in.shutdown()


# ---------------------------------------------------------------- attacker-shaped records


_HANDLED = [
    ("CreateAccessKey", "iam"), ("CreateLoginProfile", "iam"), ("EnableMFADevice", "iam"), ("CreateVirtualMFADevice", "iam"),
    ("GetFederationToken", "sts"), ("AssumeRole", "sts"), ("CreateUser", "iam"), ("DeleteUser", "iam"),
    ("PutRolePolicy", "iam"), ("AttachGroupPolicy", "iam"), ("UpdateAssumeRolePolicy", "iam"), ("CreateRole", "iam"),
    ("CreateTrustAnchor", "rolesanywhere"), ("AuthorizeSecurityGroupIngress", "ec2"), ("RevokeSecurityGroupIngress", "ec2"),
    ("ModifySnapshotAttribute", "ec2"), ("ModifyImageAttribute", "ec2"), ("ModifyDBSnapshotAttribute", "rds"),
    ("PutBucketPolicy", "s3"), ("PutBucketAcl", "s3"), ("AddPermission20150331v2", "lambda"), ("StopLogging", "cloudtrail"),
    ("PutEventSelectors", "cloudtrail"), ("DeleteFlowLogs", "ec2"), ("UpdateDetector", "guardduty"),
    ("PutConfigurationRecorder", "config"), ("RunInstances", "ec2"), ("TerminateInstances", "ec2"), ("SendCommand", "ssm"),
    ("GetParameters", "ssm"), ("BatchGetSecretValue", "secretsmanager"),
]  # fmt: skip
_KEYS = [
    "userName", "roleName", "groupName", "policyArn", "policyName", "serialNumber", "groupId", "ipPermissions", "items",
    "ipRanges", "cidrIp", "snapshotId", "createVolumePermission", "add", "remove", "userId", "group", "imageId",
    "launchPermission", "bucketName", "bucketPolicy", "Statement", "Principal", "Effect", "functionName", "statementId",
    "name", "trailName", "detectorId", "enable", "instancesSet", "instanceId", "credentials", "accessKeyId", "accessKey",
    "policyDocument", "dBSnapshotIdentifier", "valuesToAdd", "attributeName", "secretIdList", "names", "command",
]  # fmt: skip
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(["*", "all", "fl-0abc", "0.0.0.0/0"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_HANDLED), _json, _json), min_size=1, max_size=8))
def test_any_shape_of_parameters_never_stops_the_containment_list(calls: list[tuple[tuple[str, str], Any, Any]]) -> None:
    events = []
    for n, ((name, service), params, response) in enumerate(calls):
        made = trail.record(datetime(2026, 11, 20, 9, n, tzinfo=UTC), name, f"{service}.amazonaws.com", KEY, ME)
        made["requestParameters"], made["responseElements"] = params, response
        events.append(slim(made))
    contain = analysis.containment(events).model_dump(mode="json")
    for entries in contain.values():
        for entry in entries:
            assert entry["undone_by"] is None or entry["undone_by"] in {e["eventID"] for e in events}


# ---------------------------------------------------------------- the flagship on the wide attack, end to end

WIDE_GATES = (
    "approve-containment",
    "approve-role-sessions",
    "approve-exposure",
    "approve-bucket-policies",
    "approve-logging",
    "approve-compute",
    "approve-secret-rotation",
)
# Each kind a review lists, and what the flagship does with it when it still stands.
HANDLED_BY = {
    "access_key": "deactivate-created-keys", "login_profile": "disable-created-logins",
    "mfa_device": "deactivate-mfa-devices", "session": "revoke-user-sessions", "assumed_role": "revoke-role-sessions",
    "user": "quarantine-created-users", "role": "quarantine-created-roles", "attached_policy": "detach-attached-policies",
    "inline_policy": "delete-inline-policies", "group_membership": "remove-group-memberships",
    "trust_policy": "restore-trust-policies", "security_group_rule": "revoke-security-group-rules",
    "snapshot_share": "unshare-snapshots", "db_snapshot_share": "unshare-db-snapshots",
    "bucket_policy": "revert-bucket-policies", "lambda_permission": "remove-lambda-permissions",
    "trail_stopped": "restart-logging", "event_selectors": "restore-event-selectors",
    "guardduty_detector": "enable-guardduty-detectors", "config_recorder": "start-config-recorders",
    "instances": "stop-launched-instances", "function": "disable-created-functions",
    # reported, not changed: a person acts on them
    "ssm_command": "report", "flow_logs_deleted": "report", "log_group_deleted": "report",
    "secret": "approve-secret-rotation", "parameter": "approve-secret-rotation",
}  # fmt: skip


@pytest.mark.usefixtures("prefect_api")
def test_the_flagship_on_the_wide_attack_leaves_nothing_standing_and_denies_the_federation_token(sandbox: Any) -> None:
    from test_playbooks import answer, assert_federation_token_denied, start_flagship_on_health_alert

    from flows.approvals.client import open_gates

    ids = sandbox.seed_wide_attack()
    key, user = sandbox.scenario["key"], sandbox.scenario["user"]
    run = start_flagship_on_health_alert(sandbox)
    asked = {gate: run.wait_for("gate_opened", timeout=90, gate=gate)["message"] for gate in WIDE_GATES}
    assert run.run_id is not None
    assert set(WIDE_GATES) <= {g["gate"] for g in open_gates(run.run_id)}, "each blast radius has its gate, all at once"
    for gate, listed in {  # each gate lists exactly what it will change
        "approve-containment": ["user/alice", "ops-admins", ids["mfa_serial"], "svc-escalation"],
        "approve-role-sessions": [ids["role"]],
        "approve-exposure": [ids["group"], ids["snapshot"], ids["db_snapshot"], "ops"],
        "approve-bucket-policies": [ids["bucket"], "granted to *"],
        "approve-logging": [f"Restart logging of trails {ids['trail']}", ids["detector"], "recorders default"],
        "approve-compute": [ids["instance"], ids["created_function"], f"ran on instances {ids['ssm_target']}"],
        "approve-secret-rotation": ["prod/db/password", "/prod/api/token"],
    }.items():
        assert all(w in asked[gate] for w in listed), (gate, listed, asked[gate])
    assert "ami-" not in asked["approve-exposure"], "a share the attacker undid is not offered"
    assert "i-0feedfacecafe0001" not in asked["approve-compute"], "an instance the attacker terminated is not offered"
    for gate in WIDE_GATES:
        answer(run, gate)
    summary = run.result(timeout=180)
    assert summary.state == "Completed", summary.message
    got = {s.id: s.state for s in summary.steps}
    review = next(s for s in summary.steps if s.id == "review").outputs
    contain = review["contain"]
    standing = {e["kind"] for entries in contain.values() for e in entries if not e["undone_by"]}
    assert not standing - set(HANDLED_BY), f"kinds nothing deals with: {standing - set(HANDLED_BY)}"
    assert all(got[HANDLED_BY[kind]] == "completed" for kind in standing), got
    # two keys at the alert, the other the attacker's: the leaked key deactivated at once, the attacker's key
    # contained and removed after the review, the workload's key rotated without a gate
    assert got["deactivate-now"] == "completed" and got["rotate-key-now"] == "skipped" and got["rotate-key"] == "skipped"
    assert got["rotate-key-removing-attacker-key"] == "completed"
    keys = sandbox.key_states()
    assert ids["attacker_key"] not in keys and keys[key] == f"{user}: Inactive"
    sm = sandbox.client("secretsmanager")
    stored = json.loads(sm.get_secret_value(SecretId="workloads/ci-deployer/aws", VersionStage="AWSCURRENT")["SecretString"])
    assert keys[stored["AccessKeyId"]] == f"{user}: Active"
    assert_federation_token_denied(sandbox, review)
    ec2_client, lam = sandbox.client("ec2"), sandbox.client("lambda")
    [instance] = ec2_client.describe_instances(InstanceIds=[ids["instance"]])["Reservations"][0]["Instances"]
    assert instance["State"]["Name"] in ("stopping", "stopped")
    [target] = ec2_client.describe_instances(InstanceIds=[ids["ssm_target"]])["Reservations"][0]["Instances"]
    assert target["State"]["Name"] == "running", "an instance an SSM command ran on is reported, not stopped"
    assert lam.get_function_concurrency(FunctionName=ids["created_function"])["ReservedConcurrentExecutions"] == 0
    assert sandbox.client("guardduty").get_detector(DetectorId=ids["detector"])["Status"] == "ENABLED"
    [recorder] = sandbox.client("config").describe_configuration_recorder_status()["ConfigurationRecordersStatus"]
    assert recorder["recording"]
    iam_client = sandbox.client("iam")
    assert iam_client.list_groups_for_user(UserName="alice")["Groups"] == []
    assert iam_client.list_user_policies(UserName="alice")["PolicyNames"] == []
    assert sandbox.client("cloudtrail").get_trail_status(Name=ids["trail"])["IsLogging"]
    report = sandbox.slack.messages("incident-response")[-1]["text"]
    for words in (
        "report: Contained: the key and the sessions minted from it are cut off.",
        "compute completed, secrets completed",
        f"SSM commands ran on: {ids['ssm_target']}.",
        "/aws/vpc/flow-logs deleted, flow logs fl-0a1b2c3d4e5f6a7b8 deleted",
        "Already undone by the attacker (left alone): user, access_key, security_group_rule, image_share, "
        "lambda_permission, instances.",
        "Parameters read, to rotate: /prod/api/token.",
        "Standing, with no step of this playbook for them (a person's job): nothing.",
        f"Rotation: {user}: new key",
        f"{key} deactivated; {ids['attacker_key']} deleted to make room.",
    ):
        assert words in report, (words, report)
    # the after-action report agrees: contained, when the last containment step ended (long after the key)
    from flows.tabletop.report import collect

    measures = collect(summary.run_id).measures
    assert measures.time_to_contain.verdict == "contained", measures.time_to_contain.note
    assert measures.key_deactivated.seconds < measures.time_to_contain.seconds  # type: ignore[operator]


def test_a_gone_error_code_counts_only_when_a_read_shows_the_change_gone() -> None:
    """GuardDuty's BadRequestException means "no such detector" and also "bad request": taken at its word only
    when a read shows the change no longer stands."""
    import logging
    from types import SimpleNamespace

    from botocore.exceptions import ClientError

    from integrations.aws.iam import converge

    ctx: Any = SimpleNamespace(dry_run=False, logger=logging.getLogger("test"))
    refused = ClientError({"Error": {"Code": "BadRequestException", "Message": "bad"}}, "UpdateDetector")

    def revert() -> None:
        raise refused

    with pytest.raises(ClientError):  # still disabled after the "gone" answer: the failure stands
        converge(ctx, "detector d", lambda: True, revert, "enable detector d", gone_codes=("BadRequestException",))
    reads = iter([True, True, False])  # before; applied's re-read; the read after the "gone" answer
    done = converge(ctx, "detector d", lambda: next(reads), revert, "enable detector d", gone_codes=("BadRequestException",))
    assert done.changed
