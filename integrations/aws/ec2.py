"""EC2 actions for forensics-friendly containment: isolate an instance, snapshot its volumes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from integrations.aws import error_code
from integrations.context import ActionContext
from integrations.registry import Change, action

InstanceId = Annotated[str, Field(pattern=r"^i-[0-9a-f]{8,17}$", description="An EC2 instance id.")]
Region = Annotated[str | None, Field(description="The instance's region; the configured region when omitted.")]
ISOLATION_TAG = "stanch:isolation"
PREVIOUS_GROUPS_TAG = "stanch:previous-security-groups"


class Isolation(Change):
    instance_id: str
    isolation_group_id: str | None
    previous_group_ids: list[str] = Field(description="The groups the instance had: restore them after recovery.")


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except Exception as exc:
        if error_code(exc) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
            raise LookupError(f"instance {instance_id} does not exist in this account and region") from None
        raise
    return dict(reservations[0]["Instances"][0])


def _isolation_group(ec2: Any, vpc_id: str, create: bool) -> str | None:
    """The VPC's isolation group (no inbound, no outbound rules), created on first use."""
    found = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": f"tag:{ISOLATION_TAG}", "Values": ["true"]}]
    )["SecurityGroups"]
    if found:
        return str(found[0]["GroupId"])
    if not create:
        return None
    group = ec2.create_security_group(
        GroupName=f"stanch-isolation-{vpc_id}",
        Description="Stanch forensic isolation: no traffic in or out",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": ISOLATION_TAG, "Value": "true"}]}],
    )
    group_id = str(group["GroupId"])
    # A new group allows all egress by default: take that rule away.
    egress = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0].get("IpPermissionsEgress", [])
    if egress:
        ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=egress)
    return group_id


@action(
    "aws.ec2.isolate_instance",
    mutates=True,
    permissions=[
        "ec2:DescribeInstances",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:CreateTags",
        "ec2:ModifyInstanceAttribute",
    ],
    calls=[
        "ec2:DescribeInstances",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup (once per VPC)",
        "ec2:CreateTags",
        "ec2:ModifyInstanceAttribute",
    ],
)
def isolate_instance(ctx: ActionContext, instance_id: InstanceId, region: Region = None) -> Isolation:
    """Move an instance into an isolation security group with no rules; its previous groups are kept in a tag."""
    ec2 = ctx.aws.client("ec2", region)
    instance = _instance(ec2, instance_id)
    groups = [g["GroupId"] for g in instance.get("SecurityGroups", [])]
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    previous = [g for g in tags.get(PREVIOUS_GROUPS_TAG, "").split(",") if g] or groups
    isolation = _isolation_group(ec2, instance["VpcId"], create=not ctx.dry_run)
    base = {"instance_id": instance_id, "isolation_group_id": isolation, "previous_group_ids": previous}
    if isolation is not None and groups == [isolation]:
        return Isolation(changed=False, dry_run=ctx.dry_run, detail=f"{instance_id} is already isolated", **base)
    if ctx.dry_run:
        return Isolation(
            changed=True, dry_run=True, detail=f"would move {instance_id} from {', '.join(groups)} to isolation", **base
        )
    if isolation is None:  # only dry-run leaves it uncreated
        raise RuntimeError("no isolation security group")
    # Record the groups first, so a crash between the two calls still knows what to restore.
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": PREVIOUS_GROUPS_TAG, "Value": ",".join(previous)}])
    ec2.modify_instance_attribute(InstanceId=instance_id, Groups=[isolation])
    ctx.logger.info("Isolated %s in %s (was %s)", instance_id, isolation, ", ".join(previous))
    return Isolation(changed=True, detail=f"moved {instance_id} from {', '.join(groups)} to {isolation}", **base)


class Snapshots(Change):
    instance_id: str
    snapshot_ids: list[str]
    volume_ids: list[str]


@action(
    "aws.ec2.snapshot_volumes",
    mutates=True,
    permissions=["ec2:DescribeInstances", "ec2:DescribeSnapshots", "ec2:CreateSnapshot", "ec2:CreateTags"],
    calls=["ec2:DescribeInstances", "ec2:DescribeSnapshots", "ec2:CreateSnapshot (one per volume)"],
)
def snapshot_volumes(ctx: ActionContext, instance_id: InstanceId, region: Region = None) -> Snapshots:
    """Snapshot every EBS volume of an instance for forensics, tagged with the incident id (once per incident)."""
    ec2 = ctx.aws.client("ec2", region)
    instance = _instance(ec2, instance_id)
    volumes = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m]
    incident = ctx.run.incident_id
    existing = ec2.describe_snapshots(
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag:stanch:incident", "Values": [incident]},
            {"Name": "volume-id", "Values": volumes or ["-"]},
        ],
    )["Snapshots"]
    done = {s["VolumeId"]: s["SnapshotId"] for s in existing}
    missing = [v for v in volumes if v not in done]
    base = {"instance_id": instance_id, "volume_ids": volumes}
    if not missing:
        return Snapshots(
            changed=False,
            dry_run=ctx.dry_run,
            snapshot_ids=sorted(done.values()),
            detail=f"{instance_id}: {len(done)} volume(s) already snapshotted for {incident}",
            **base,
        )
    if ctx.dry_run:
        return Snapshots(
            changed=True,
            dry_run=True,
            snapshot_ids=sorted(done.values()),
            detail=f"would snapshot {', '.join(missing)} of {instance_id}",
            **base,
        )
    for volume in missing:
        snapshot = ec2.create_snapshot(
            VolumeId=volume,
            Description=f"Stanch forensics {incident} {instance_id}",
            TagSpecifications=[
                {
                    "ResourceType": "snapshot",
                    "Tags": [
                        {"Key": "stanch:incident", "Value": incident},
                        {"Key": "stanch:instance", "Value": instance_id},
                    ],
                }
            ],
        )
        done[volume] = snapshot["SnapshotId"]
    return Snapshots(
        changed=True,
        snapshot_ids=sorted(done.values()),
        detail=f"snapshotted {', '.join(missing)} of {instance_id}",
        **base,
    )
