"""IAM actions: list, deactivate (and, in the AWS issue, quarantine, revoke and rotate)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field

from integrations.aws import error_code
from integrations.context import ActionContext
from integrations.registry import ActionResult, Change, Permission, action

AccessKeyId = Annotated[
    str,
    Field(pattern=r"^(AKIA|ASIA)[A-Z0-9]{12,124}$", description="An access key id (AKIA... or ASIA...)."),
]
UserName = Annotated[str, Field(pattern=r"^[\w+=,.@-]{1,64}$", description="An IAM user name.")]


class AccessKeyInfo(ActionResult):
    access_key_id: str
    status: Literal["Active", "Inactive"]
    created_at: datetime
    age_days: int
    last_used_at: datetime | None = None
    last_used_service: str | None = None
    last_used_region: str | None = None


class AccessKeyList(ActionResult):
    user_name: str
    keys: list[AccessKeyInfo]
    active: int


class KeyStatusChange(Change):
    user_name: str
    access_key_id: str
    previous_status: str
    status: str


def owner_of_key(ctx: ActionContext, access_key_id: str) -> str:
    """The IAM user that owns an access key (GetAccessKeyLastUsed names it)."""
    response = ctx.aws.client("iam").get_access_key_last_used(AccessKeyId=access_key_id)
    user = response.get("UserName")
    if not user:
        raise LookupError(f"access key {access_key_id} belongs to no IAM user of this account")
    return str(user)


@action(
    "aws.iam.list_access_keys",
    mutates=False,
    permissions=[
        Permission("iam:ListAccessKeys", "arn:aws:iam::*:user/{user_name}"),
        Permission("iam:GetAccessKeyLastUsed", "arn:aws:iam::*:user/{user_name}"),
    ],
    calls=["iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"],
)
def list_access_keys(ctx: ActionContext, user_name: UserName) -> AccessKeyList:
    """List a user's access keys with status, age and last use."""
    iam = ctx.aws.client("iam")
    now = datetime.now(UTC)
    keys: list[AccessKeyInfo] = []
    for page in iam.get_paginator("list_access_keys").paginate(UserName=user_name):
        for meta in page["AccessKeyMetadata"]:
            used = iam.get_access_key_last_used(AccessKeyId=meta["AccessKeyId"]).get("AccessKeyLastUsed", {})
            created = meta["CreateDate"]
            keys.append(
                AccessKeyInfo(
                    access_key_id=meta["AccessKeyId"],
                    status=meta["Status"],
                    created_at=created,
                    age_days=max(0, (now - created).days),
                    last_used_at=used.get("LastUsedDate"),
                    last_used_service=used.get("ServiceName") if used.get("ServiceName") != "N/A" else None,
                    last_used_region=used.get("Region") if used.get("Region") != "N/A" else None,
                )
            )
    return AccessKeyList(user_name=user_name, keys=keys, active=sum(1 for k in keys if k.status == "Active"))


@action(
    "aws.iam.deactivate_access_key",
    mutates=True,
    permissions=[
        Permission("iam:GetAccessKeyLastUsed", "arn:aws:iam::*:user/{user_name}"),
        Permission("iam:ListAccessKeys", "arn:aws:iam::*:user/{user_name}"),
        Permission("iam:UpdateAccessKey", "arn:aws:iam::*:user/{user_name}"),
    ],
    calls=["iam:GetAccessKeyLastUsed", "iam:ListAccessKeys", "iam:UpdateAccessKey"],
)
def deactivate_access_key(
    ctx: ActionContext,
    access_key_id: AccessKeyId,
    user_name: Annotated[UserName | None, Field(description="The key's user; found from the key when omitted.")] = None,
) -> KeyStatusChange:
    """Set an access key Inactive (reversible; the key stays for forensics and can be re-enabled)."""
    iam = ctx.aws.client("iam")
    user = user_name or owner_of_key(ctx, access_key_id)
    status = None
    for page in iam.get_paginator("list_access_keys").paginate(UserName=user):
        for meta in page["AccessKeyMetadata"]:
            if meta["AccessKeyId"] == access_key_id:
                status = meta["Status"]
    if status is None:
        raise LookupError(f"access key {access_key_id} is not a key of IAM user {user}")
    if status == "Inactive":
        return KeyStatusChange(
            changed=False,
            dry_run=ctx.dry_run,
            detail=f"{access_key_id} of {user} is already Inactive",
            user_name=user,
            access_key_id=access_key_id,
            previous_status=status,
            status="Inactive",
        )
    if ctx.dry_run:
        return KeyStatusChange(
            changed=True,
            dry_run=True,
            detail=f"would set {access_key_id} of {user} Inactive",
            user_name=user,
            access_key_id=access_key_id,
            previous_status=status,
            status=status,
        )
    try:
        iam.update_access_key(UserName=user, AccessKeyId=access_key_id, Status="Inactive")
    except Exception as exc:
        # Someone deleted the key between our read and our write: nothing left to deactivate.
        if error_code(exc) != "NoSuchEntity":
            raise
        return KeyStatusChange(
            changed=False,
            detail=f"{access_key_id} of {user} was deleted meanwhile",
            user_name=user,
            access_key_id=access_key_id,
            previous_status=status,
            status="Deleted",
        )
    ctx.logger.info("Deactivated access key %s of %s", access_key_id, user)
    return KeyStatusChange(
        changed=True,
        detail=f"set {access_key_id} of {user} Inactive",
        user_name=user,
        access_key_id=access_key_id,
        previous_status=status,
        status="Inactive",
    )
