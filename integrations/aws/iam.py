"""IAM actions: inventory, containment (deactivate, quarantine, revoke sessions, console login, detach) and rotation."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from integrations.aws import error_code, on_secret
from integrations.context import ActionContext
from integrations.registry import ActionResult, Change, Permission, action

AccessKeyId = Annotated[
    str,
    Field(pattern=r"^(AKIA|ASIA)[A-Z0-9]{12,124}$", description="An access key id (AKIA... or ASIA...)."),
]
UserName = Annotated[str, Field(pattern=r"^[\w+=,.@-]{1,64}$", description="An IAM user name.")]


def _on_user(*actions: str) -> list[Permission]:
    """IAM actions on the user named by the `user_name` argument (any user when it is known only at run time)."""
    return [Permission(a, "arn:aws:iam::*:user/{user_name}") for a in actions]


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
        *_on_user("iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"),
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
        *_on_user("iam:GetAccessKeyLastUsed", "iam:ListAccessKeys", "iam:UpdateAccessKey"),
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


# ---------------------------------------------------------------- principals

Principal = Annotated[
    str,
    Field(
        pattern=r"^(arn:aws[\w-]*:iam::\d{12}:)?(user|role)/([\w+=,.@/-]+)$",
        description="An IAM user or role: an ARN, or user/NAME, or role/NAME.",
    ),
]
QUARANTINE_POLICY = "StanchQuarantine"
REVOKE_POLICY = "AWSRevokeOlderSessions"  # the name the IAM console uses for the same policy


def parse_principal(principal: str) -> tuple[Literal["user", "role"], str]:
    """('user' | 'role', name) from an ARN or user/NAME or role/NAME (a path is dropped)."""
    tail = principal.split(":", 5)[-1] if principal.startswith("arn:") else principal
    kind, _, rest = tail.partition("/")
    if kind not in ("user", "role") or not rest:
        raise ValueError(f"{principal!r} is not an IAM user or role (user/NAME, role/NAME or an ARN)")
    return kind, rest.rsplit("/", 1)[-1]  # type: ignore[return-value]


def _get_inline(ctx: ActionContext, kind: str, name: str, policy: str) -> dict[str, Any] | None:
    iam = ctx.aws.client("iam")
    try:
        if kind == "user":
            doc = iam.get_user_policy(UserName=name, PolicyName=policy)["PolicyDocument"]
        else:
            doc = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":  # no such policy (or principal): nothing in place yet
            return None
        raise
    return json.loads(doc) if isinstance(doc, str) else dict(doc)


def _put_inline(ctx: ActionContext, kind: str, name: str, policy: str, document: dict[str, Any]) -> None:
    iam = ctx.aws.client("iam")
    body = json.dumps(document)
    if kind == "user":
        iam.put_user_policy(UserName=name, PolicyName=policy, PolicyDocument=body)
    else:
        iam.put_role_policy(RoleName=name, PolicyName=policy, PolicyDocument=body)


def _exists(ctx: ActionContext, kind: str, name: str) -> None:
    iam = ctx.aws.client("iam")
    try:
        if kind == "user":
            iam.get_user(UserName=name)
        else:
            iam.get_role(RoleName=name)
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            raise LookupError(f"IAM {kind} {name!r} does not exist in this account") from None
        raise


class PolicyChange(Change):
    principal: str
    policy_name: str


def _quarantine_document(incident_id: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StanchQuarantine",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
            }
        ],
        "Id": f"stanch-{incident_id}"[:128],
    }


# What putting an inline policy on a user or role needs (quarantine, session revocation).
_INLINE_POLICY_PERMISSIONS = [
    Permission("iam:GetUser", "arn:aws:iam::*:user/*"),
    Permission("iam:GetUserPolicy", "arn:aws:iam::*:user/*"),
    Permission("iam:PutUserPolicy", "arn:aws:iam::*:user/*"),
    Permission("iam:GetRole", "arn:aws:iam::*:role/*"),
    Permission("iam:GetRolePolicy", "arn:aws:iam::*:role/*"),
    Permission("iam:PutRolePolicy", "arn:aws:iam::*:role/*"),
]


@action(
    "aws.iam.quarantine_principal",
    mutates=True,
    permissions=_INLINE_POLICY_PERMISSIONS,
    calls=["iam:GetUserPolicy|GetRolePolicy", "iam:PutUserPolicy|PutRolePolicy"],
)
def quarantine_principal(ctx: ActionContext, principal: Principal) -> PolicyChange:
    """Deny everything to a user or role with an inline policy (lift it with aws.iam.lift_quarantine)."""
    kind, name = parse_principal(principal)
    _exists(ctx, kind, name)
    label = f"{kind}/{name}"
    result = functools.partial(PolicyChange, dry_run=ctx.dry_run, principal=label, policy_name=QUARANTINE_POLICY)
    if _get_inline(ctx, kind, name, QUARANTINE_POLICY) is not None:
        return result(changed=False, detail=f"{label} is already quarantined")
    if ctx.dry_run:
        return result(changed=True, detail=f"would attach deny-all policy {QUARANTINE_POLICY} to {label}")
    _put_inline(ctx, kind, name, QUARANTINE_POLICY, _quarantine_document(ctx.run.incident_id))
    ctx.logger.info("Quarantined %s with inline policy %s", label, QUARANTINE_POLICY)
    return result(changed=True, detail=f"attached deny-all policy {QUARANTINE_POLICY} to {label}")


@action(
    "aws.iam.lift_quarantine",
    mutates=True,
    permissions=[
        Permission("iam:GetUserPolicy", "arn:aws:iam::*:user/*"),
        Permission("iam:DeleteUserPolicy", "arn:aws:iam::*:user/*"),
        Permission("iam:GetRolePolicy", "arn:aws:iam::*:role/*"),
        Permission("iam:DeleteRolePolicy", "arn:aws:iam::*:role/*"),
    ],
    calls=["iam:GetUserPolicy|GetRolePolicy", "iam:DeleteUserPolicy|DeleteRolePolicy"],
)
def lift_quarantine(ctx: ActionContext, principal: Principal) -> PolicyChange:
    """Remove Stanch's quarantine policy from a user or role after recovery."""
    kind, name = parse_principal(principal)
    label = f"{kind}/{name}"
    result = functools.partial(PolicyChange, dry_run=ctx.dry_run, principal=label, policy_name=QUARANTINE_POLICY)
    if _get_inline(ctx, kind, name, QUARANTINE_POLICY) is None:
        return result(changed=False, detail=f"{label} is not quarantined")
    if ctx.dry_run:
        return result(changed=True, detail=f"would remove {QUARANTINE_POLICY} from {label}")
    iam = ctx.aws.client("iam")
    try:
        if kind == "user":
            iam.delete_user_policy(UserName=name, PolicyName=QUARANTINE_POLICY)
        else:
            iam.delete_role_policy(RoleName=name, PolicyName=QUARANTINE_POLICY)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":  # removed by someone else meanwhile: the goal is met
            raise
    return result(changed=True, detail=f"removed {QUARANTINE_POLICY} from {label}")


class SessionRevocation(PolicyChange):
    issued_before: datetime


def _revoke_document(before: datetime) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": before.strftime("%Y-%m-%dT%H:%M:%SZ")}},
            }
        ],
    }


def _revoked_before(document: dict[str, Any] | None) -> datetime | None:
    if not document:
        return None
    try:
        text = document["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


@action(
    "aws.iam.revoke_sessions",
    mutates=True,
    permissions=_INLINE_POLICY_PERMISSIONS,
    calls=["iam:GetUserPolicy|GetRolePolicy", "iam:PutUserPolicy|PutRolePolicy"],
)
def revoke_sessions(
    ctx: ActionContext,
    principal: Principal,
    issued_before: Annotated[
        datetime | None, Field(description="Deny temporary credentials issued before this time; default now.")
    ] = None,
) -> SessionRevocation:
    """Deny every temporary credential of a role or user issued before a time (aws:TokenIssueTime)."""
    kind, name = parse_principal(principal)
    _exists(ctx, kind, name)
    before = (issued_before or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    label = f"{kind}/{name}"
    current = _revoked_before(_get_inline(ctx, kind, name, REVOKE_POLICY))
    result = functools.partial(SessionRevocation, dry_run=ctx.dry_run, principal=label, policy_name=REVOKE_POLICY)
    if current is not None and current >= before:
        detail = f"sessions of {label} issued before {current:%Y-%m-%dT%H:%M:%SZ} are already revoked"
        return result(changed=False, issued_before=current, detail=detail)
    if ctx.dry_run:
        detail = f"would revoke sessions of {label} issued before {before:%Y-%m-%dT%H:%M:%SZ}"
        return result(changed=True, issued_before=before, detail=detail)
    _put_inline(ctx, kind, name, REVOKE_POLICY, _revoke_document(before))
    detail = f"revoked sessions of {label} issued before {before:%Y-%m-%dT%H:%M:%SZ}"
    return result(changed=True, issued_before=before, detail=detail)


class LoginProfileChange(Change):
    user_name: str


@action(
    "aws.iam.disable_console_login",
    mutates=True,
    permissions=[
        *_on_user("iam:GetLoginProfile", "iam:DeleteLoginProfile"),
    ],
    calls=["iam:GetLoginProfile", "iam:DeleteLoginProfile"],
)
def disable_console_login(ctx: ActionContext, user_name: UserName) -> LoginProfileChange:
    """Delete a user's console password (login profile), so the console is closed to it."""
    iam = ctx.aws.client("iam")
    try:
        iam.get_login_profile(UserName=user_name)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return LoginProfileChange(
            changed=False, dry_run=ctx.dry_run, detail=f"{user_name} has no console login", user_name=user_name
        )
    if ctx.dry_run:
        return LoginProfileChange(
            changed=True, dry_run=True, detail=f"would delete the console login of {user_name}", user_name=user_name
        )
    try:
        iam.delete_login_profile(UserName=user_name)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":  # deleted meanwhile: the goal is met
            raise
    return LoginProfileChange(changed=True, detail=f"deleted the console login of {user_name}", user_name=user_name)


class DetachChange(Change):
    principal: str
    policy_arn: str


@action(
    "aws.iam.detach_policy",
    mutates=True,
    permissions=[
        Permission("iam:ListAttachedUserPolicies", "arn:aws:iam::*:user/*"),
        Permission("iam:DetachUserPolicy", "arn:aws:iam::*:user/*"),
        Permission("iam:ListAttachedRolePolicies", "arn:aws:iam::*:role/*"),
        Permission("iam:DetachRolePolicy", "arn:aws:iam::*:role/*"),
    ],
    calls=["iam:ListAttachedUserPolicies|ListAttachedRolePolicies", "iam:DetachUserPolicy|DetachRolePolicy"],
)
def detach_policy(
    ctx: ActionContext,
    principal: Principal,
    policy_arn: Annotated[str, Field(pattern=r"^arn:aws[\w-]*:iam::(\d{12}|aws):policy/.+$")],
) -> DetachChange:
    """Detach a managed policy from a user or role."""
    kind, name = parse_principal(principal)
    iam = ctx.aws.client("iam")
    label = f"{kind}/{name}"
    if kind == "user":
        pages = iam.get_paginator("list_attached_user_policies").paginate(UserName=name)
    else:
        pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
    attached = {p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]}
    base = {"principal": label, "policy_arn": policy_arn}
    if policy_arn not in attached:
        return DetachChange(changed=False, dry_run=ctx.dry_run, detail=f"{policy_arn} is not attached to {label}", **base)
    if ctx.dry_run:
        return DetachChange(changed=True, dry_run=True, detail=f"would detach {policy_arn} from {label}", **base)
    try:
        if kind == "user":
            iam.detach_user_policy(UserName=name, PolicyArn=policy_arn)
        else:
            iam.detach_role_policy(RoleName=name, PolicyArn=policy_arn)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":  # detached meanwhile: the goal is met
            raise
    return DetachChange(changed=True, detail=f"detached {policy_arn} from {label}", **base)


# ---------------------------------------------------------------- rotation

ROTATION_TAG = "stanch:rotation"


class RotationCrash(BaseException):
    """Raised by tests at a step boundary to stand for a killed process (no cleanup runs)."""


def _boundary(name: str) -> None:
    """A step boundary of the rotation: the crash tests make this raise RotationCrash."""


class Rotation(Change):
    user_name: str
    secret_id: str
    old_access_key_id: str
    new_access_key_id: str | None = None
    removed_access_key_id: str | None = None
    verified: bool = False
    state: Literal["rotated", "already-rotated", "would-rotate"]


def _secret_pair(ctx: ActionContext, secret_id: str, stage: str) -> tuple[dict[str, str], str] | None:
    """(the stored key pair, version id) at a stage, or None when no version has that stage."""
    sm = ctx.aws.client("secretsmanager")
    try:
        response = sm.get_secret_value(SecretId=secret_id, VersionStage=stage)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException" and stage != "AWSCURRENT":
            return None
        raise
    text = response.get("SecretString") or ""
    try:
        pair = json.loads(text)
    except ValueError:
        pair = None
    if not isinstance(pair, dict) or "AccessKeyId" not in pair or "SecretAccessKey" not in pair:
        raise ValueError(f"secret {secret_id} ({stage}) must hold JSON with AccessKeyId and SecretAccessKey")
    ctx.masker.register(pair["SecretAccessKey"])
    return pair, str(response["VersionId"])


def _user_keys(ctx: ActionContext, user_name: str) -> dict[str, dict[str, Any]]:
    iam = ctx.aws.client("iam")
    pages = iam.get_paginator("list_access_keys").paginate(UserName=user_name)
    return {m["AccessKeyId"]: m for page in pages for m in page["AccessKeyMetadata"]}


def _rotation_mark(ctx: ActionContext, user_name: str) -> set[str] | None:
    """The keys the user had when this incident's rotation began (a user tag), if it began.

    A key the user has now that is in neither this set nor the secret was made by an interrupted attempt.
    """
    tags = ctx.aws.client("iam").list_user_tags(UserName=user_name)["Tags"]
    for tag in tags:
        if tag["Key"] == ROTATION_TAG:
            incident, _, before = tag["Value"].partition("|")
            if incident == ctx.run.incident_id:
                return {k for k in before.split(",") if k}
    return None


def _verify_key(ctx: ActionContext, user_name: str, pair: dict[str, str], attempts: int) -> None:
    """STS GetCallerIdentity with the new key: it must work and be the user's (IAM takes seconds to agree)."""
    import time

    sts = ctx.aws.client_as("sts", pair["AccessKeyId"], pair["SecretAccessKey"])
    last: Exception | None = None
    for attempt in range(max(1, attempts)):
        try:
            arn = sts.get_caller_identity()["Arn"]
        except Exception as exc:  # InvalidClientTokenId until IAM has propagated the key
            last = exc
            time.sleep(min(1.0 * (attempt + 1), 5.0))
            continue
        if not arn.endswith(f":user/{user_name}") and f"/{user_name}" not in arn:
            raise RuntimeError(f"the new key authenticates as {arn}, not as user {user_name}")
        return
    reason = (error_code(last) or str(last)) if last else "unknown"
    raise RuntimeError(f"the new key {pair['AccessKeyId']} did not authenticate: {reason}")


@action(
    "aws.iam.rotate_access_key",
    mutates=True,
    permissions=[
        *_on_user(
            "iam:ListAccessKeys",
            "iam:CreateAccessKey",
            "iam:UpdateAccessKey",
            "iam:DeleteAccessKey",
            "iam:ListUserTags",
            "iam:TagUser",
            "iam:UntagUser",
        ),
        *on_secret(
            "secret_id",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:DescribeSecret",
        ),
        Permission("sts:GetCallerIdentity", "*"),
    ],
    calls=[
        "iam:ListAccessKeys",
        "iam:TagUser",
        "iam:CreateAccessKey",
        "secretsmanager:PutSecretValue (AWSPENDING)",
        "sts:GetCallerIdentity (with the new key)",
        "secretsmanager:UpdateSecretVersionStage (AWSCURRENT)",
        "iam:UpdateAccessKey (old key Inactive)",
    ],
)
def rotate_access_key(
    ctx: ActionContext,
    user_name: UserName,
    secret_id: Annotated[str, Field(description="The secret that stores the user's key pair (ARN or name).")],
    access_key_id: Annotated[AccessKeyId, Field(description="The key to rotate away from (the exposed one).")],
    remove_key_id: Annotated[
        str | None,
        Field(description="When the user already has two keys: which other key to delete first (use a gate)."),
    ] = None,
    verify_attempts: Annotated[int, Field(ge=1, le=60)] = 10,
) -> Rotation:
    """Rotate a user's key stored in Secrets Manager, never leaving zero working keys; the old key ends Inactive.

    Steps: tag the user, create the new key, store it as AWSPENDING, verify it with STS, promote it to
    AWSCURRENT, deactivate the old key. A re-run resumes where a crash stopped; a failure before the old key
    is deactivated leaves the old key working and removes the half-made new key. Deleting the old key is a
    separate step (aws.iam.delete_access_key) after a grace period or a gate.
    """
    iam = ctx.aws.client("iam")
    sm = ctx.aws.client("secretsmanager")
    base = {"user_name": user_name, "secret_id": secret_id, "old_access_key_id": access_key_id}
    keys = _user_keys(ctx, user_name)
    current = _secret_pair(ctx, secret_id, "AWSCURRENT")
    if current is None:
        raise LookupError(f"secret {secret_id} has no current version")
    current_pair, current_version = current
    if current_pair["AccessKeyId"] != access_key_id:
        # Promoted already (by us or a person): what remains is to make sure the old key is Inactive.
        new_id = current_pair["AccessKeyId"]
        if new_id not in keys:
            raise LookupError(f"secret {secret_id} holds key {new_id}, which user {user_name} does not have")
        old_status = keys.get(access_key_id, {}).get("Status")
        if old_status != "Active":
            if not ctx.dry_run and _rotation_mark(ctx, user_name) is not None:
                _untag(ctx, user_name)  # a crash after the last step left the mark behind
            return Rotation(
                changed=False,
                dry_run=ctx.dry_run,
                state="already-rotated",
                new_access_key_id=new_id,
                verified=True,
                detail=f"{user_name} already rotated to {new_id}; {access_key_id} is not active",
                **base,
            )
        if ctx.dry_run:
            return Rotation(
                changed=True,
                dry_run=True,
                state="would-rotate",
                new_access_key_id=new_id,
                detail=f"would deactivate {access_key_id} of {user_name} (the secret already holds {new_id})",
                **base,
            )
        _clear_pending(ctx, secret_id, current_version)
        iam.update_access_key(UserName=user_name, AccessKeyId=access_key_id, Status="Inactive")
        _boundary("deactivated")
        _untag(ctx, user_name)
        return Rotation(
            changed=True,
            state="rotated",
            new_access_key_id=new_id,
            verified=True,
            detail=f"{user_name}: {new_id} is current; deactivated {access_key_id}",
            **base,
        )
    if access_key_id not in keys:
        raise LookupError(f"access key {access_key_id} is not a key of IAM user {user_name}")
    pending = _secret_pair(ctx, secret_id, "AWSPENDING")
    pending_id = pending[0]["AccessKeyId"] if pending else None
    if pending and pending_id not in keys:
        pending = None  # a pending version whose key is gone: start again
    mark = _rotation_mark(ctx, user_name)
    orphans = [k for k in keys if mark is not None and k not in mark and k != pending_id]
    others = [k for k in keys if k not in (access_key_id, pending_id) and k not in orphans]
    if ctx.dry_run:
        steps = []
        if orphans:
            steps.append(f"delete half-made key(s) {', '.join(orphans)}")
        if others and not pending:
            steps.append(f"delete {remove_key_id or '(choose with remove_key_id)'}")
        steps.append(f"{'verify pending' if pending else 'create'} a new key, store it in {secret_id}")
        steps.append(f"promote it and deactivate {access_key_id}")
        return Rotation(changed=True, dry_run=True, state="would-rotate", detail="would " + "; ".join(steps), **base)
    for orphan in orphans:
        # Created by a crashed attempt of this rotation and never stored: nobody can be using it.
        iam.delete_access_key(UserName=user_name, AccessKeyId=orphan)
        ctx.logger.warning("Deleted half-made key %s of %s left by an interrupted rotation", orphan, user_name)
    removed = None
    if others and not pending:
        if remove_key_id is None:
            raise RuntimeError(
                f"user {user_name} already has two keys ({access_key_id} and {others[0]}); IAM allows two, so "
                "say which other key to delete with remove_key_id, behind an approval gate"
            )
        if remove_key_id == access_key_id or remove_key_id not in others:
            raise ValueError(f"remove_key_id must be {others[0]}, the user's other key, not {remove_key_id}")
        iam.update_access_key(UserName=user_name, AccessKeyId=remove_key_id, Status="Inactive")
        iam.delete_access_key(UserName=user_name, AccessKeyId=remove_key_id)
        removed = remove_key_id
    if mark is None:
        before = ",".join(sorted(k for k in keys if k != removed))
        iam.tag_user(UserName=user_name, Tags=[{"Key": ROTATION_TAG, "Value": f"{ctx.run.incident_id}|{before}"}])
        _boundary("tagged")
    created_here: str | None = None
    try:
        if pending:
            new_pair, new_version = pending
        else:
            made = iam.create_access_key(UserName=user_name)["AccessKey"]
            new_pair = {"AccessKeyId": made["AccessKeyId"], "SecretAccessKey": made["SecretAccessKey"]}
            ctx.masker.register(new_pair["SecretAccessKey"])
            created_here = new_pair["AccessKeyId"]
            _boundary("created")
            stored = sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(new_pair), VersionStages=["AWSPENDING"])
            new_version = str(stored["VersionId"])
            _boundary("stored")
        _verify_key(ctx, user_name, new_pair, verify_attempts)
        _boundary("verified")
        sm.update_secret_version_stage(
            SecretId=secret_id,
            VersionStage="AWSCURRENT",
            MoveToVersionId=new_version,
            RemoveFromVersionId=current_version,
        )
    except Exception:
        # Not promoted: the old key still works and stays current; remove what this attempt made.
        if created_here:
            try:
                iam.delete_access_key(UserName=user_name, AccessKeyId=created_here)
            except Exception as cleanup:
                ctx.logger.error("could not delete the half-made key %s: %s", created_here, cleanup)
        raise
    _boundary("promoted")
    _clear_pending(ctx, secret_id, new_version)
    iam.update_access_key(UserName=user_name, AccessKeyId=access_key_id, Status="Inactive")
    _boundary("deactivated")
    _untag(ctx, user_name)
    new_id = new_pair["AccessKeyId"]
    ctx.logger.info("Rotated %s: %s is current and verified; %s is Inactive", user_name, new_id, access_key_id)
    return Rotation(
        changed=True,
        state="rotated",
        new_access_key_id=new_id,
        removed_access_key_id=removed,
        verified=True,
        detail=f"{user_name}: new key {new_id} stored and verified; {access_key_id} deactivated",
        **base,
    )


def _clear_pending(ctx: ActionContext, secret_id: str, version: str) -> None:
    """Take AWSPENDING off a version once it is current (it matters to nobody then)."""
    sm = ctx.aws.client("secretsmanager")
    stages = sm.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})
    if "AWSPENDING" in stages.get(version, []):
        sm.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=version)


def _untag(ctx: ActionContext, user_name: str) -> None:
    ctx.aws.client("iam").untag_user(UserName=user_name, TagKeys=[ROTATION_TAG])


class KeyDeletion(Change):
    user_name: str
    access_key_id: str


@action(
    "aws.iam.delete_access_key",
    mutates=True,
    permissions=[
        *_on_user("iam:GetAccessKeyLastUsed", "iam:ListAccessKeys", "iam:DeleteAccessKey"),
        *on_secret("secret_id", "secretsmanager:GetSecretValue"),
    ],
    calls=["iam:ListAccessKeys", "secretsmanager:GetSecretValue", "iam:DeleteAccessKey"],
)
def delete_access_key(
    ctx: ActionContext,
    access_key_id: AccessKeyId,
    user_name: Annotated[UserName | None, Field(description="Found from the key when omitted.")] = None,
    secret_id: Annotated[
        str | None, Field(description="A secret that must not hold this key (checked before deleting).")
    ] = None,
) -> KeyDeletion:
    """Delete an Inactive access key for good (after a grace period or a gate); an Active key is refused."""
    iam = ctx.aws.client("iam")
    if user_name is None:
        try:
            user_name = owner_of_key(ctx, access_key_id)
        except Exception as exc:
            if error_code(exc) in ("NoSuchEntity", "InvalidClientTokenId") or isinstance(exc, LookupError):
                return KeyDeletion(
                    changed=False,
                    dry_run=ctx.dry_run,
                    detail=f"{access_key_id} no longer exists",
                    user_name="",
                    access_key_id=access_key_id,
                )
            raise
    keys = _user_keys(ctx, user_name)
    base = {"user_name": user_name, "access_key_id": access_key_id}
    if access_key_id not in keys:
        return KeyDeletion(changed=False, dry_run=ctx.dry_run, detail=f"{access_key_id} is already deleted", **base)
    if keys[access_key_id]["Status"] == "Active":
        raise RuntimeError(f"{access_key_id} of {user_name} is Active: deactivate it first and let it rest")
    if secret_id:
        stored = _secret_pair(ctx, secret_id, "AWSCURRENT")
        if stored and stored[0]["AccessKeyId"] == access_key_id:
            raise RuntimeError(f"{access_key_id} is the key {secret_id} holds as current; rotate first")
    if ctx.dry_run:
        return KeyDeletion(changed=True, dry_run=True, detail=f"would delete {access_key_id} of {user_name}", **base)
    try:
        iam.delete_access_key(UserName=user_name, AccessKeyId=access_key_id)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":  # deleted meanwhile: the goal is met
            raise
    return KeyDeletion(changed=True, detail=f"deleted {access_key_id} of {user_name}", **base)
