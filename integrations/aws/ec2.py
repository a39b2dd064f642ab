"""EC2 actions for forensics-friendly containment: isolate an instance, snapshot its volumes."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import Field

from integrations.aws import applied, error_code
from integrations.aws.iam import Reverted, converge
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
    warnings: list[str] = Field(default=[], description="State found that Stanch did not leave: possible tampering.")


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except Exception as exc:
        if error_code(exc) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
            raise LookupError(f"instance {instance_id} does not exist in this account and region") from None
        raise
    return dict(reservations[0]["Instances"][0])


# What AWS puts on every new VPC security group.
_DEFAULT_EGRESS = {
    "IpProtocol": "-1",
    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
    "Ipv6Ranges": [],
    "PrefixListIds": [],
    "UserIdGroupPairs": [],
}


def _group_name(vpc_id: str) -> str:
    return f"stanch-isolation-{vpc_id}"


def _find_group(ec2: Any, vpc_id: str) -> dict[str, Any] | None:
    """The VPC's isolation group, found by its name (unique in a VPC), never by a tag anyone can set."""
    found = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [_group_name(vpc_id)]}]
    )["SecurityGroups"]
    return dict(found[0]) if found else None


def _close(ctx: ActionContext, ec2: Any, group: dict[str, Any]) -> list[str]:
    """Revoke every rule of the group (a lost answer or a concurrent revoke is read back); what was open."""
    group_id = str(group["GroupId"])
    opened = []
    for field, revoke in (
        ("IpPermissions", ec2.revoke_security_group_ingress),
        ("IpPermissionsEgress", ec2.revoke_security_group_egress),
    ):
        rules = group.get(field) or []
        if not rules:
            continue
        opened.append(f"{len(rules)} {'inbound' if field == 'IpPermissions' else 'outbound'} rule(s)")

        def closed(field: str = field) -> bool:
            return not ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0].get(field)

        try:
            applied(
                ctx,
                f"revoke the rules of {group_id}",
                functools.partial(revoke, GroupId=group_id, IpPermissions=rules),
                closed,
            )
        except Exception as exc:
            # Another isolation closed the same rule first: fine when nothing is left open.
            if error_code(exc) != "InvalidPermission.NotFound" or not closed():
                raise
    return opened


def _isolation_group(ctx: ActionContext, ec2: Any, vpc_id: str) -> tuple[str | None, list[str], bool]:
    """(the VPC's isolation group, created on first use and verified to have no rules; warnings; rules closed).

    Created without Stanch's tag, closed, then tagged: a crash in between leaves an untagged group that the next
    run finds by name and closes. Another isolation creating it at the same moment counts as found.
    """
    group = _find_group(ec2, vpc_id)
    warnings: list[str] = []
    fresh = group is None
    if group is None:
        if ctx.dry_run:
            return None, warnings, False
        try:
            applied(
                ctx,
                f"create {_group_name(vpc_id)}",
                lambda: ec2.create_security_group(
                    GroupName=_group_name(vpc_id),
                    Description="Stanch forensic isolation: no traffic in or out",
                    VpcId=vpc_id,
                ),
                lambda: _find_group(ec2, vpc_id) is not None,
            )
        except Exception as exc:
            if error_code(exc) != "InvalidGroup.Duplicate":  # made by a concurrent isolation: use it
                raise
        group = _find_group(ec2, vpc_id)
        if group is None:
            raise RuntimeError(f"the isolation group of {vpc_id} was created but cannot be found; run the step again")
    group_id = str(group["GroupId"])
    tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
    ingress, egress = group.get("IpPermissions") or [], group.get("IpPermissionsEgress") or []
    opened = [] if ctx.dry_run else _close(ctx, ec2, group)
    # AWS's default allow-all egress on a group without Stanch's tag is Stanch's own group, made by this run or
    # by one that stopped before closing it. Anything else open on the group is not Stanch's doing.
    own_default = not ingress and egress == [_DEFAULT_EGRESS] and (fresh or tags.get(ISOLATION_TAG) != "true")
    if (ingress or egress) and not own_default:
        verb = "would close" if ctx.dry_run else "closed"
        found = ", ".join(opened) or f"{len(ingress)} inbound, {len(egress)} outbound rule(s)"
        warnings.append(f"isolation group {group_id} allowed traffic ({found}): possible tampering; {verb} it")
        ctx.logger.warning("%s", warnings[-1])
    if not ctx.dry_run and tags.get(ISOLATION_TAG) != "true":
        tag = [{"Key": ISOLATION_TAG, "Value": "true"}]

        def tagged() -> bool:
            found = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
            return any(t["Key"] == ISOLATION_TAG and t["Value"] == "true" for t in found.get("Tags", []))

        applied(ctx, f"tag {group_id}", lambda: ec2.create_tags(Resources=[group_id], Tags=tag), tagged)
    return group_id, warnings, bool(opened) and not fresh


@action(
    "aws.ec2.isolate_instance",
    mutates=True,
    permissions=[
        "ec2:DescribeInstances",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:CreateTags",
        "ec2:ModifyInstanceAttribute",
    ],
    calls=[
        "ec2:DescribeInstances",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup (once per VPC)",
        "ec2:RevokeSecurityGroupEgress|RevokeSecurityGroupIngress",
        "ec2:CreateTags",
        "ec2:ModifyInstanceAttribute",
    ],
)
def isolate_instance(ctx: ActionContext, instance_id: InstanceId, region: Region = None) -> Isolation:
    """Move an instance into an isolation security group with no rules; its previous groups are kept in a tag.

    The group is found by name and its rules checked on every run: any rule found is revoked and reported as
    possible tampering. Lost answers: creating the group, revoking a rule, tagging and moving the instance
    are each read back and counted done when in place; a concurrent creation of the group counts as found.
    """
    ec2 = ctx.aws.client("ec2", region)
    instance = _instance(ec2, instance_id)
    groups = [g["GroupId"] for g in instance.get("SecurityGroups", [])]
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    isolation, warnings, closed = _isolation_group(ctx, ec2, instance["VpcId"])
    # The tag is only trusted once the instance sits in isolation (a crash after tagging): before that, the
    # live groups are what must be restored, whatever a tag says.
    isolated = isolation is not None and groups == [isolation]
    previous = ([g for g in tags.get(PREVIOUS_GROUPS_TAG, "").split(",") if g] if isolated else []) or groups
    base = {
        "instance_id": instance_id,
        "isolation_group_id": isolation,
        "previous_group_ids": previous,
        "warnings": warnings,
    }
    if isolated:
        open_rules = closed or bool(warnings)
        detail = f"{instance_id} is already isolated" + ("; closed rules found open on its group" if open_rules else "")
        return Isolation(changed=open_rules, dry_run=ctx.dry_run, detail=detail, **base)
    if ctx.dry_run:
        return Isolation(
            changed=True, dry_run=True, detail=f"would move {instance_id} from {', '.join(groups)} to isolation", **base
        )
    if isolation is None:  # only dry-run leaves it uncreated
        raise RuntimeError("no isolation security group")
    # Record the groups first, so a crash between the two calls still knows what to restore.
    record = [{"Key": PREVIOUS_GROUPS_TAG, "Value": ",".join(previous)}]
    applied(
        ctx,
        f"tag {instance_id} with its groups",
        lambda: ec2.create_tags(Resources=[instance_id], Tags=record),
        lambda: any(t == record[0] for t in _instance(ec2, instance_id).get("Tags", [])),
    )
    applied(
        ctx,
        f"move {instance_id} to {isolation}",
        lambda: ec2.modify_instance_attribute(InstanceId=instance_id, Groups=[isolation]),
        lambda: [g["GroupId"] for g in _instance(ec2, instance_id).get("SecurityGroups", [])] == [isolation],
    )
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
    """Snapshot every EBS volume of an instance for forensics, tagged with the incident id (once per incident).

    A lost answer: the snapshot is looked up by its incident tag and volume; found means done.
    """
    ec2 = ctx.aws.client("ec2", region)
    instance = _instance(ec2, instance_id)
    volumes = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m]
    incident = ctx.run.incident_id
    mine = [{"Name": "tag:stanch:incident", "Values": [incident]}]

    def volume_filter(*ids: str) -> dict[str, Any]:
        return {"Name": "volume-id", "Values": list(ids) or ["-"]}

    existing = ec2.describe_snapshots(OwnerIds=["self"], Filters=[*mine, volume_filter(*volumes)])["Snapshots"]
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
        # A lost answer: the snapshot carries the incident tag from its creation, so it is found again.
        def taken(volume: str = volume) -> list[dict[str, Any]]:
            return list(ec2.describe_snapshots(OwnerIds=["self"], Filters=[*mine, volume_filter(volume)])["Snapshots"])

        def found(taken: Any = taken) -> bool:
            return bool(taken())

        snapshot = applied(
            ctx,
            f"snapshot {volume}",
            functools.partial(
                ec2.create_snapshot,
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
            ),
            found,
        )
        done[volume] = snapshot["SnapshotId"] if snapshot else taken()[0]["SnapshotId"]
    return Snapshots(
        changed=True,
        snapshot_ids=sorted(done.values()),
        detail=f"snapshotted {', '.join(missing)} of {instance_id}",
        **base,
    )


# ---------------------------------------------------------------- reverting exposure

GroupId = Annotated[str, Field(pattern=r"^sg-[0-9a-f]{1,17}$", description="A security group id.")]
AnyRegion = Annotated[str | None, Field(description="The resource's region; the configured region when omitted.")]
Accounts = Annotated[
    list[Annotated[str, Field(pattern=r"^(\d{12}|all)$")]],
    Field(min_length=1, description="Account ids (or `all`, the public) to remove from the share."),
]
_SOURCES = {"cidrIp": ("IpRanges", "CidrIp"), "cidrIpv6": ("Ipv6Ranges", "CidrIpv6"),
            "prefixListId": ("PrefixListIds", "PrefixListId"), "groupId": ("UserIdGroupPairs", "GroupId")}  # fmt: skip


def _permission(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as the review logs it (CloudTrail's names, one source) in the API's IpPermissions form."""
    protocol = str(rule.get("ipProtocol", "-1"))
    out: dict[str, Any] = {"IpProtocol": protocol}
    if protocol not in ("-1", "all"):
        start: Any = rule.get("fromPort")
        end: Any = rule.get("toPort")
        if start is not None:  # CloudTrail may log a single port with fromPort only
            out["FromPort"], out["ToPort"] = int(start), int(start if end is None else end)
    sources = [(k, v) for k, v in rule.items() if k in _SOURCES]
    if len(sources) != 1:
        raise ValueError("a rule names exactly one source: cidrIp, cidrIpv6, prefixListId or groupId")
    key, value = sources[0]
    field, name = _SOURCES[key]
    out[field] = [{name: value}]
    return out


def _rule_open(ec2: Any, group_id: str, direction: str, wanted: dict[str, Any]) -> bool:
    """Whether the rule is in the group (a deleted group has no rules: `converge`'s gone codes say so)."""
    [group] = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    field = next(f for f in ("IpRanges", "Ipv6Ranges", "PrefixListIds", "UserIdGroupPairs") if f in wanted)
    name = next(iter(wanted[field][0]))
    for perm in group["IpPermissions" if direction == "ingress" else "IpPermissionsEgress"]:
        same = all(perm.get(k) == wanted.get(k) for k in ("IpProtocol", "FromPort", "ToPort"))
        if same and any(src.get(name) == wanted[field][0][name] for src in perm.get(field, [])):
            return True
    return False


@action(
    "aws.ec2.revoke_security_group_rule",
    mutates=True,
    permissions=["ec2:DescribeSecurityGroups", "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"],
    calls=["ec2:DescribeSecurityGroups", "ec2:RevokeSecurityGroupIngress|RevokeSecurityGroupEgress"],
)
def revoke_security_group_rule(
    ctx: ActionContext,
    group_id: GroupId,
    rule: Annotated[
        dict[str, Any],
        Field(description="The exact rule, as the review gives it: ipProtocol, fromPort, toPort and one source."),
    ],
    direction: Annotated[Literal["ingress", "egress"], Field(description="Which side the rule is on.")] = "ingress",
    region: AnyRegion = None,
) -> Reverted:
    """Revoke the one security-group rule an attacker added, leaving the group's other rules alone.

    A lost answer: the group is read again; the rule gone means done.
    """
    ec2 = ctx.aws.client("ec2", region)
    wanted = _permission(rule)
    revoke = ec2.revoke_security_group_ingress if direction == "ingress" else ec2.revoke_security_group_egress
    source = next(iter(next(v for k, v in wanted.items() if isinstance(v, list))[0].values()))
    ports = f"{wanted.get('FromPort', 'all')}-{wanted.get('ToPort', 'all')}"
    return converge(
        ctx,
        f"{group_id}:{direction}:{wanted['IpProtocol']}:{ports}:{source}",
        lambda: _rule_open(ec2, group_id, direction, wanted),
        lambda: revoke(GroupId=group_id, IpPermissions=[wanted]),
        f"remove the {direction} rule {wanted['IpProtocol']} {ports} from {source} of {group_id}",
        gone_codes=("InvalidPermission.NotFound", "InvalidGroup.NotFound"),
    )


def _shared_with(ec2: Any, kind: str, ident: str) -> set[str]:
    try:
        if kind == "snapshot":
            found = ec2.describe_snapshot_attribute(SnapshotId=ident, Attribute="createVolumePermission")
            perms = found.get("CreateVolumePermissions", [])
        else:
            found = ec2.describe_image_attribute(ImageId=ident, Attribute="launchPermission")
            perms = found.get("LaunchPermissions", [])
    except Exception as exc:
        if error_code(exc) in ("InvalidSnapshot.NotFound", "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"):
            return set()  # deleted: shared with nobody
        raise
    return {p.get("UserId") or p.get("Group") or "" for p in perms} - {""}


def _unshare(ctx: ActionContext, kind: str, ident: str, accounts: list[str], region: str | None) -> Reverted:
    ec2 = ctx.aws.client("ec2", region)
    wanted = set(accounts)
    still = sorted(_shared_with(ec2, kind, ident) & wanted)
    items = [{"Group": "all"} if a == "all" else {"UserId": a} for a in still]

    def revert() -> None:
        if kind == "snapshot":  # the OperationType form: every EC2 endpoint (and moto) takes it
            users = [a for a in still if a != "all"]
            ec2.modify_snapshot_attribute(
                SnapshotId=ident,
                Attribute="createVolumePermission",
                OperationType="remove",
                **({"UserIds": users} if users else {}),
                **({"GroupNames": ["all"]} if "all" in still else {}),
            )
        else:
            ec2.modify_image_attribute(ImageId=ident, Attribute="launchPermission", LaunchPermission={"Remove": items})

    return converge(
        ctx,
        f"{ident}:{','.join(sorted(wanted))}",
        lambda: bool(_shared_with(ec2, kind, ident) & wanted),
        revert,
        f"remove the share of {kind} {ident} with {', '.join(still) or 'nobody'}",
        gone_codes=("InvalidSnapshot.NotFound", "InvalidAMIID.NotFound"),
    )


@action(
    "aws.ec2.unshare_snapshot",
    mutates=True,
    permissions=["ec2:DescribeSnapshotAttribute", "ec2:ModifySnapshotAttribute"],
    calls=["ec2:DescribeSnapshotAttribute", "ec2:ModifySnapshotAttribute"],
)
def unshare_snapshot(
    ctx: ActionContext,
    snapshot_id: Annotated[str, Field(pattern=r"^snap-[0-9a-f]{8,17}$")],
    accounts: Accounts,
    region: AnyRegion = None,
) -> Reverted:
    """Remove an EBS snapshot's create-volume permission for the accounts an attacker shared it with.

    A lost answer: the permission is read again; none of the accounts left means done.
    """
    return _unshare(ctx, "snapshot", snapshot_id, accounts, region)


@action(
    "aws.ec2.unshare_image",
    mutates=True,
    permissions=["ec2:DescribeImageAttribute", "ec2:ModifyImageAttribute"],
    calls=["ec2:DescribeImageAttribute", "ec2:ModifyImageAttribute"],
)
def unshare_image(
    ctx: ActionContext,
    image_id: Annotated[str, Field(pattern=r"^ami-[0-9a-f]{8,17}$")],
    accounts: Accounts,
    region: AnyRegion = None,
) -> Reverted:
    """Remove an AMI's launch permission for the accounts an attacker shared it with.

    A lost answer: the permission is read again; none of the accounts left means done.
    """
    return _unshare(ctx, "image", image_id, accounts, region)


# ---------------------------------------------------------------- instances the attacker launched

_RUNNING = ("pending", "running")


def _running(ec2: Any, instance_ids: list[str]) -> list[str]:
    """Which of the instances are pending or running (one that is gone runs nothing)."""
    running = []
    for instance_id in instance_ids:
        try:
            if str(_instance(ec2, instance_id)["State"]["Name"]) in _RUNNING:
                running.append(instance_id)
        except LookupError:  # terminated long ago, or never in this region
            continue
    return running


@action(
    "aws.ec2.stop_instances",
    mutates=True,
    permissions=["ec2:DescribeInstances", "ec2:StopInstances"],
    calls=["ec2:DescribeInstances", "ec2:StopInstances"],
)
def stop_instances(
    ctx: ActionContext,
    instance_ids: Annotated[list[InstanceId], Field(min_length=1, max_length=1000, description="The instances.")],
    region: Region = None,
) -> Reverted:
    """Stop instances the attacker launched (their volumes stay for forensics; start them again to undo).

    Stopped, stopping or terminated instances are left as they are. A lost answer: the instances' states are
    read again; none pending or running means done.
    """
    ec2 = ctx.aws.client("ec2", region)
    return converge(
        ctx,
        ", ".join(instance_ids),
        lambda: bool(_running(ec2, instance_ids)),
        lambda: ec2.stop_instances(InstanceIds=_running(ec2, instance_ids)),
        f"stop instance(s) {', '.join(instance_ids)}",
        gone_codes=("InvalidInstanceID.NotFound",),  # terminated and gone meanwhile: nothing runs
    )
