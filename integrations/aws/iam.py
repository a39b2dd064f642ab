"""IAM actions: inventory, containment (deactivate, quarantine, revoke sessions, console login, detach) and rotation."""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from integrations.aws import applied, error_code, on_secret, wait_until
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
    aws_quarantine: list[str] = Field(
        default=[], description="AWS's quarantine policies (AWSCompromisedKeyQuarantine*) on the user: kept."
    )


class KeyStatusChange(Change):
    user_name: str
    access_key_id: str
    previous_status: str
    status: str


def _key_status(ctx: ActionContext, user_name: str, access_key_id: str) -> str | None:
    """A key's status now ("Active" | "Inactive"), or None when the user has no such key."""
    meta = _user_keys(ctx, user_name).get(access_key_id)
    return str(meta["Status"]) if meta else None


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
        *_on_user("iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:ListAttachedUserPolicies"),
    ],
    calls=["iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:ListAttachedUserPolicies"],
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
    quarantine = aws_quarantine_of(ctx, "user", user_name)
    active = sum(1 for k in keys if k.status == "Active")
    return AccessKeyList(user_name=user_name, keys=keys, active=active, aws_quarantine=quarantine)


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
    """Set an access key Inactive (reversible; the key stays for forensics and can be re-enabled).

    A lost answer: the key's status is read again; Inactive means done, anything else re-raises the error.
    """
    iam = ctx.aws.client("iam")
    user = user_name or owner_of_key(ctx, access_key_id)
    status = _key_status(ctx, user, access_key_id)
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
        applied(
            ctx,
            f"deactivate {access_key_id}",
            lambda: iam.update_access_key(UserName=user, AccessKeyId=access_key_id, Status="Inactive"),
            lambda: _key_status(ctx, user, access_key_id) == "Inactive",
        )
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
    warnings: list[str] = Field(default=[], description="State found that Stanch did not leave: possible tampering.")
    waited_seconds: float = Field(default=0.0, description="How long IAM took to show the policy in place.")
    aws_quarantine: list[str] = Field(
        default=[], description="AWS's own quarantine policies (AWSCompromisedKeyQuarantine*) found attached: kept."
    )


# AWS attaches these itself when it finds a key in public; Stanch keeps them and reports them.
AWS_QUARANTINE_POLICIES = ("AWSCompromisedKeyQuarantine", "AWSCompromisedKeyQuarantineV2", "AWSCompromisedKeyQuarantineV3")
AWS_QUARANTINE_LATEST = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"


def is_aws_quarantine(policy_arn: str) -> bool:
    return policy_arn.rsplit("/", 1)[-1] in AWS_QUARANTINE_POLICIES and ":iam::aws:policy/" in policy_arn


def _attached(ctx: ActionContext, kind: str, name: str) -> set[str]:
    iam = ctx.aws.client("iam")
    if kind == "user":
        pages = iam.get_paginator("list_attached_user_policies").paginate(UserName=name)
    else:
        pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
    return {p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]}


def aws_quarantine_of(ctx: ActionContext, kind: str, name: str) -> list[str]:
    """AWS's quarantine policies attached to a user or role."""
    return sorted(arn for arn in _attached(ctx, kind, name) if is_aws_quarantine(arn))


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


def _same_policy(found: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether a policy found in the account is Stanch's document (its `Id` names the incident and may differ)."""
    if found is None:
        return False
    found_id = found.get("Id")
    if found_id is not None and not (isinstance(found_id, str) and found_id.startswith("stanch-")):
        return False
    strip = {k: v for k, v in wanted.items() if k != "Id"}
    return {k: v for k, v in found.items() if k != "Id"} == strip


def _put_policy_checked(
    ctx: ActionContext, kind: str, name: str, policy: str, document: dict[str, Any], attempts: int = 5
) -> float:
    """Put an inline policy, accept a lost answer when the document is in place, and wait (bounded) until IAM
    shows it. The seconds waited; RuntimeError when IAM never shows it."""
    label = f"{kind}/{name}"

    def in_place() -> bool:
        return _same_policy(_get_inline(ctx, kind, name, policy), document)

    applied(ctx, f"put {policy} on {label}", lambda: _put_inline(ctx, kind, name, policy, document), in_place)
    waited = wait_until(ctx, f"{policy} is in place on {label}", in_place, attempts)
    if waited < 0:
        raise RuntimeError(f"IAM accepted {policy} for {label} but does not show it; run the step again")
    return waited


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
    permissions=[
        *_INLINE_POLICY_PERMISSIONS,
        Permission("iam:ListAttachedUserPolicies", "arn:aws:iam::*:user/*"),
        Permission("iam:AttachUserPolicy", "arn:aws:iam::*:user/*"),
        Permission("iam:ListAttachedRolePolicies", "arn:aws:iam::*:role/*"),
        Permission("iam:AttachRolePolicy", "arn:aws:iam::*:role/*"),
    ],
    calls=[
        "iam:ListAttachedUserPolicies|ListAttachedRolePolicies",
        "iam:GetUserPolicy|GetRolePolicy",
        "iam:PutUserPolicy|PutRolePolicy, or iam:AttachUserPolicy|AttachRolePolicy (AWS's policy)",
    ],
)
def quarantine_principal(
    ctx: ActionContext,
    principal: Principal,
    policy: Annotated[
        Literal["stanch", "aws-managed"],
        Field(
            description="stanch: an inline deny-all (lift_quarantine removes it); aws-managed: attach AWS's "
            "AWSCompromisedKeyQuarantineV3, which denies what attackers use and leaves the rest working."
        ),
    ] = "stanch",
) -> PolicyChange:
    """Deny everything to a user or role with an inline policy, or attach AWS's quarantine policy instead.

    AWS's own quarantine policies found attached are kept and reported. A policy already under Stanch's name
    counts only when it is Stanch's exact document; anything else is replaced and reported as possible
    tampering. A lost answer: the policy is read back; in place means done. IAM takes seconds to show and apply
    a policy: the read-back waits (bounded) and says so.
    """
    kind, name = parse_principal(principal)
    _exists(ctx, kind, name)
    label = f"{kind}/{name}"
    found_aws = aws_quarantine_of(ctx, kind, name)
    if found_aws:
        ctx.logger.info("%s carries AWS's quarantine policy %s: kept", label, ", ".join(found_aws))
    if policy == "aws-managed":
        return _attach_aws_quarantine(ctx, kind, name, found_aws)
    result = functools.partial(
        PolicyChange, dry_run=ctx.dry_run, principal=label, policy_name=QUARANTINE_POLICY, aws_quarantine=found_aws
    )
    document = _quarantine_document(ctx.run.incident_id)
    found = _get_inline(ctx, kind, name, QUARANTINE_POLICY)
    if _same_policy(found, document):
        return result(changed=False, detail=f"{label} is already quarantined")
    warnings = []
    if found is not None:
        warnings.append(f"{label} had a policy named {QUARANTINE_POLICY} that is not Stanch's deny-all: possible tampering")
        ctx.logger.warning("%s; replacing it", warnings[0])
    verb = "replace the policy with" if found is not None else "attach"
    if ctx.dry_run:
        return result(changed=True, warnings=warnings, detail=f"would {verb} deny-all policy {QUARANTINE_POLICY} on {label}")
    waited = _put_policy_checked(ctx, kind, name, QUARANTINE_POLICY, document)
    ctx.logger.info("Quarantined %s with inline policy %s", label, QUARANTINE_POLICY)
    done = "replaced the planted policy with" if found is not None else "attached"
    return result(
        changed=True,
        warnings=warnings,
        waited_seconds=waited,
        detail=f"{done} deny-all policy {QUARANTINE_POLICY} on {label}",
    )


def _attach_aws_quarantine(ctx: ActionContext, kind: str, name: str, found_aws: list[str]) -> PolicyChange:
    label = f"{kind}/{name}"
    result = functools.partial(
        PolicyChange, principal=label, policy_name=AWS_QUARANTINE_LATEST.rsplit("/", 1)[-1], aws_quarantine=found_aws
    )
    if AWS_QUARANTINE_LATEST in found_aws:
        return result(changed=False, dry_run=ctx.dry_run, detail=f"{label} already carries AWS's quarantine policy")
    if ctx.dry_run:
        return result(changed=True, dry_run=True, detail=f"would attach {AWS_QUARANTINE_LATEST} to {label}")
    iam = ctx.aws.client("iam")

    def attach() -> None:
        if kind == "user":
            iam.attach_user_policy(UserName=name, PolicyArn=AWS_QUARANTINE_LATEST)
        else:
            iam.attach_role_policy(RoleName=name, PolicyArn=AWS_QUARANTINE_LATEST)

    applied(
        ctx,
        f"attach {AWS_QUARANTINE_LATEST} to {label}",
        attach,
        lambda: AWS_QUARANTINE_LATEST in _attached(ctx, kind, name),
    )
    return result(
        changed=True,
        dry_run=False,
        aws_quarantine=sorted({*found_aws, AWS_QUARANTINE_LATEST}),
        detail=f"attached {AWS_QUARANTINE_LATEST} to {label}",
    )


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
    """Remove Stanch's quarantine policy from a user or role after recovery.

    A lost answer: the policy is read again; gone means done.
    """
    kind, name = parse_principal(principal)
    label = f"{kind}/{name}"
    result = functools.partial(PolicyChange, dry_run=ctx.dry_run, principal=label, policy_name=QUARANTINE_POLICY)
    if _get_inline(ctx, kind, name, QUARANTINE_POLICY) is None:
        return result(changed=False, detail=f"{label} is not quarantined")
    if ctx.dry_run:
        return result(changed=True, detail=f"would remove {QUARANTINE_POLICY} from {label}")
    iam = ctx.aws.client("iam")

    def delete() -> None:
        if kind == "user":
            iam.delete_user_policy(UserName=name, PolicyName=QUARANTINE_POLICY)
        else:
            iam.delete_role_policy(RoleName=name, PolicyName=QUARANTINE_POLICY)

    try:
        applied(
            ctx,
            f"remove {QUARANTINE_POLICY} from {label}",
            delete,
            lambda: _get_inline(ctx, kind, name, QUARANTINE_POLICY) is None,
        )
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
    """The cut-off of a revocation policy, only when the policy is exactly Stanch's (Deny, *, *, that condition)."""
    if not document:
        return None
    try:
        text = document["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return when if document == _revoke_document(when) else None


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
    """Deny every temporary credential of a role or user issued before a time (aws:TokenIssueTime).

    A policy under the revocation name counts only when it is exactly the deny-before document (effect Deny,
    every action and resource); anything else is replaced and reported as possible tampering. A lost answer:
    the policy is read back; the new cut-off in place means done. The read-back waits (bounded) for IAM.
    """
    kind, name = parse_principal(principal)
    _exists(ctx, kind, name)
    before = (issued_before or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    label = f"{kind}/{name}"
    found = _get_inline(ctx, kind, name, REVOKE_POLICY)
    current = _revoked_before(found)
    result = functools.partial(SessionRevocation, dry_run=ctx.dry_run, principal=label, policy_name=REVOKE_POLICY)
    if current is not None and current >= before:
        detail = f"sessions of {label} issued before {current:%Y-%m-%dT%H:%M:%SZ} are already revoked"
        return result(changed=False, issued_before=current, detail=detail)
    warnings = []
    if found is not None and current is None:
        warnings.append(f"{label} had a policy named {REVOKE_POLICY} that is not a session revocation: possible tampering")
        ctx.logger.warning("%s; replacing it", warnings[0])
    if ctx.dry_run:
        detail = f"would revoke sessions of {label} issued before {before:%Y-%m-%dT%H:%M:%SZ}"
        return result(changed=True, issued_before=before, warnings=warnings, detail=detail)
    waited = _put_policy_checked(ctx, kind, name, REVOKE_POLICY, _revoke_document(before))
    detail = f"revoked sessions of {label} issued before {before:%Y-%m-%dT%H:%M:%SZ}"
    return result(changed=True, issued_before=before, warnings=warnings, waited_seconds=waited, detail=detail)


class LoginProfileChange(Change):
    user_name: str


def _has_login(ctx: ActionContext, user_name: str) -> bool:
    try:
        ctx.aws.client("iam").get_login_profile(UserName=user_name)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return False
    return True


@action(
    "aws.iam.disable_console_login",
    mutates=True,
    permissions=[
        *_on_user("iam:GetLoginProfile", "iam:DeleteLoginProfile"),
    ],
    calls=["iam:GetLoginProfile", "iam:DeleteLoginProfile"],
)
def disable_console_login(ctx: ActionContext, user_name: UserName) -> LoginProfileChange:
    """Delete a user's console password (login profile), so the console is closed to it.

    A lost answer: the login profile is read again; gone means done.
    """
    iam = ctx.aws.client("iam")
    if not _has_login(ctx, user_name):
        return LoginProfileChange(
            changed=False, dry_run=ctx.dry_run, detail=f"{user_name} has no console login", user_name=user_name
        )
    if ctx.dry_run:
        return LoginProfileChange(
            changed=True, dry_run=True, detail=f"would delete the console login of {user_name}", user_name=user_name
        )
    try:
        applied(
            ctx,
            f"delete the console login of {user_name}",
            lambda: iam.delete_login_profile(UserName=user_name),
            lambda: not _has_login(ctx, user_name),
        )
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
    """Detach a managed policy from a user or role.

    A lost answer: the attached policies are listed again; no longer attached means done.
    """
    kind, name = parse_principal(principal)
    iam = ctx.aws.client("iam")
    label = f"{kind}/{name}"

    def attached() -> set[str]:
        if kind == "user":
            pages = iam.get_paginator("list_attached_user_policies").paginate(UserName=name)
        else:
            pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
        return {p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]}

    base = {"principal": label, "policy_arn": policy_arn}
    if is_aws_quarantine(policy_arn):  # AWS's own containment: never undone by a clean-up step
        return DetachChange(changed=False, dry_run=ctx.dry_run, detail=f"kept AWS's quarantine policy on {label}", **base)
    if policy_arn not in attached():
        return DetachChange(changed=False, dry_run=ctx.dry_run, detail=f"{policy_arn} is not attached to {label}", **base)
    if ctx.dry_run:
        return DetachChange(changed=True, dry_run=True, detail=f"would detach {policy_arn} from {label}", **base)

    def detach() -> None:
        if kind == "user":
            iam.detach_user_policy(UserName=name, PolicyArn=policy_arn)
        else:
            iam.detach_role_policy(RoleName=name, PolicyArn=policy_arn)

    try:
        applied(ctx, f"detach {policy_arn} from {label}", detach, lambda: policy_arn not in attached())
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":  # detached meanwhile: the goal is met
            raise
    return DetachChange(changed=True, detail=f"detached {policy_arn} from {label}", **base)


# ---------------------------------------------------------------- rotation

# The resume mark is a user tag keyed by the key being replaced, so a re-run under any incident finds it.
# It is only a hint: every deletion is decided from live state (see _half_made).
ROTATION_TAG_PREFIX = "stanch:rotation:"
_NAMESPACE = uuid.UUID("1d8f2c4e-93a7-4b51-8e0d-6a2f7c9b3e15")
_CLOCK_SKEW = timedelta(minutes=5)
# A half-made key is created right after the mark is (re)written; older keys are not this rotation's.
_CREATE_WINDOW = timedelta(minutes=15)


def rotation_tag(old_access_key_id: str) -> str:
    return f"{ROTATION_TAG_PREFIX}{old_access_key_id}"


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
    deleted_half_made: list[str] = Field(default=[], description="Keys an interrupted attempt made and never stored.")
    verified: bool = False
    waited_seconds: float = Field(default=0.0, description="How long STS took to accept the new key.")
    warnings: list[str] = Field(default=[], description="State found that Stanch did not leave: possible tampering.")
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
    pair = _parse_pair(response.get("SecretString") or "")
    if pair is None:
        raise ValueError(f"secret {secret_id} ({stage}) must hold JSON with AccessKeyId and SecretAccessKey")
    ctx.masker.register(pair["SecretAccessKey"])
    return pair, str(response["VersionId"])


def _parse_pair(text: str) -> dict[str, str] | None:
    try:
        pair = json.loads(text)
    except ValueError:
        return None
    if not isinstance(pair, dict) or "AccessKeyId" not in pair or "SecretAccessKey" not in pair:
        return None
    return {"AccessKeyId": str(pair["AccessKeyId"]), "SecretAccessKey": str(pair["SecretAccessKey"])}


def _stored_keys(ctx: ActionContext, secret_id: str) -> set[str]:
    """Every access key id a version of the secret with a stage label holds (what a reader can reach)."""
    sm = ctx.aws.client("secretsmanager")
    found: set[str] = set()
    params: dict[str, Any] = {"SecretId": secret_id}
    while True:  # not pageable in botocore: follow NextToken by hand
        page = sm.list_secret_version_ids(**params)
        for version in page["Versions"]:
            if not version.get("VersionStages"):
                continue
            text = sm.get_secret_value(SecretId=secret_id, VersionId=version["VersionId"]).get("SecretString") or ""
            pair = _parse_pair(text)
            if pair is not None:
                ctx.masker.register(pair["SecretAccessKey"])
                found.add(pair["AccessKeyId"])
        if not page.get("NextToken"):
            return found
        params["NextToken"] = page["NextToken"]


def _stages(ctx: ActionContext, secret_id: str) -> dict[str, list[str]]:
    described = ctx.aws.client("secretsmanager").describe_secret(SecretId=secret_id)
    return dict(described.get("VersionIdsToStages", {}))


def _user_keys(ctx: ActionContext, user_name: str) -> dict[str, dict[str, Any]]:
    iam = ctx.aws.client("iam")
    pages = iam.get_paginator("list_access_keys").paginate(UserName=user_name)
    return {m["AccessKeyId"]: m for page in pages for m in page["AccessKeyMetadata"]}


def _never_used(ctx: ActionContext, access_key_id: str) -> bool:
    used = ctx.aws.client("iam").get_access_key_last_used(AccessKeyId=access_key_id).get("AccessKeyLastUsed", {})
    return not used.get("LastUsedDate")


@dataclass(frozen=True)
class _Mark:
    started: datetime
    keys: frozenset[str]


def _read_mark(ctx: ActionContext, user_name: str, old: str) -> tuple[_Mark | None, str | None]:
    """(the resume mark of the rotation away from `old`, or None; why it cannot be Stanch's, or None)."""
    tags = ctx.aws.client("iam").list_user_tags(UserName=user_name)["Tags"]
    value = next((t["Value"] for t in tags if t["Key"] == rotation_tag(old)), None)
    if value is None:
        return None, None
    version, _, rest = value.partition(" ")
    stamp, _, listed = rest.partition(" ")
    if version != "v1" or not stamp.isdigit():
        return None, "its value is not in Stanch's format"
    return _Mark(datetime.fromtimestamp(int(stamp), UTC), frozenset(listed.split())), None


def _mark_problem(mark: _Mark, keys: dict[str, dict[str, Any]]) -> str | None:
    """Why a mark cannot be what Stanch wrote, given the keys the user has now; None when it is consistent."""
    if mark.started > datetime.now(UTC) + _CLOCK_SKEW:
        return "it is dated in the future"
    for key_id, meta in keys.items():
        if key_id not in mark.keys and meta["CreateDate"] < mark.started - _CLOCK_SKEW:
            return f"it omits {key_id}, which existed before the rotation it claims began"
    return None


def _write_mark(ctx: ActionContext, user_name: str, old: str, keys: list[str]) -> None:
    value = " ".join(["v1", str(int(datetime.now(UTC).timestamp())), *sorted(keys)])
    tag = {"Key": rotation_tag(old), "Value": value}

    def written() -> bool:
        tags = ctx.aws.client("iam").list_user_tags(UserName=user_name)["Tags"]
        return any(t == tag for t in tags)

    applied(
        ctx,
        f"tag {user_name} with the rotation mark",
        lambda: ctx.aws.client("iam").tag_user(UserName=user_name, Tags=[tag]),
        written,
    )


def _remove_mark(ctx: ActionContext, user_name: str, old: str) -> None:
    def gone() -> bool:
        tags = ctx.aws.client("iam").list_user_tags(UserName=user_name)["Tags"]
        return not any(t["Key"] == rotation_tag(old) for t in tags)

    if gone():
        return
    iam = ctx.aws.client("iam")
    applied(
        ctx,
        f"remove the rotation mark of {user_name}",
        lambda: iam.untag_user(UserName=user_name, TagKeys=[rotation_tag(old)]),
        gone,
    )


def _half_made(
    ctx: ActionContext, key_id: str, meta: dict[str, Any], mark: _Mark | None, secret_id: str, stored: set[str]
) -> bool:
    """Whether live state proves a key is an interrupted attempt's: made after the rotation began (a consistent
    mark, and within minutes of it), held by no version of the secret, and never used."""
    if mark is None or key_id in mark.keys or key_id in stored:
        return False
    created = meta["CreateDate"]
    if not (mark.started - _CLOCK_SKEW <= created <= mark.started + _CREATE_WINDOW):
        return False
    return _never_used(ctx, key_id)


def _discard_half_made(ctx: ActionContext, user_name: str, key_id: str, secret_id: str) -> bool:
    """Delete a key this attempt made, only when live state shows no labelled version holds it and it was never
    used. Whether it is gone."""
    if key_id in _stored_keys(ctx, secret_id) or not _never_used(ctx, key_id):
        ctx.logger.warning("kept key %s of %s: the secret holds it or it has been used", key_id, user_name)
        return False
    iam = ctx.aws.client("iam")
    applied(
        ctx,
        f"delete half-made key {key_id}",
        lambda: iam.delete_access_key(UserName=user_name, AccessKeyId=key_id),
        lambda: key_id not in _user_keys(ctx, user_name),
    )
    ctx.logger.warning("Deleted half-made key %s of %s (never stored, never used)", key_id, user_name)
    return True


def _verify_key(ctx: ActionContext, user_name: str, pair: dict[str, str], attempts: int) -> float:
    """STS GetCallerIdentity with the new key: it must work and be the user's. IAM takes seconds to agree, so
    this waits (bounded, logged); the seconds waited."""
    sts = ctx.aws.client_as("sts", pair["AccessKeyId"], pair["SecretAccessKey"])
    last: list[Exception] = []
    arn: list[str] = []

    def accepted() -> bool:
        try:
            arn.append(sts.get_caller_identity()["Arn"])
        except Exception as exc:  # InvalidClientTokenId until IAM has propagated the key
            last.append(exc)
            return False
        return True

    waited = wait_until(ctx, f"STS accepts the new key {pair['AccessKeyId']}", accepted, attempts)
    if waited < 0:
        reason = (error_code(last[-1]) or type(last[-1]).__name__) if last else "unknown"
        raise RuntimeError(f"the new key {pair['AccessKeyId']} did not authenticate after {attempts} attempts: {reason}")
    if not arn[-1].endswith(f":user/{user_name}") and f"/{user_name}" not in arn[-1]:
        raise RuntimeError(f"the new key authenticates as {arn[-1]}, not as user {user_name}")
    return waited


@action(
    "aws.iam.rotate_access_key",
    mutates=True,
    permissions=[
        *_on_user(
            "iam:ListAccessKeys",
            "iam:GetAccessKeyLastUsed",
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
            "secretsmanager:ListSecretVersionIds",
        ),
        Permission("sts:GetCallerIdentity", "*"),
    ],
    calls=[
        "iam:ListAccessKeys",
        "secretsmanager:ListSecretVersionIds",
        "iam:TagUser",
        "iam:CreateAccessKey",
        "secretsmanager:PutSecretValue (AWSPENDING)",
        "sts:GetCallerIdentity (with the new key)",
        "secretsmanager:UpdateSecretVersionStage (AWSCURRENT)",
        "iam:UpdateAccessKey (old key Inactive)",
        "iam:UntagUser",
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

    Steps: mark the user (a tag keyed by the old key), create the new key, store it as AWSPENDING, verify it
    with STS (bounded wait), promote it to AWSCURRENT, deactivate the old key, remove the mark. A re-run under
    any incident finishes what the live state shows is left and mints no second key once one is stored.
    Lost answers: a tag, store, promote, deactivate or delete whose answer is lost is read back and counted
    done when in place; a lost CreateAccessKey leaves a key nobody holds, which the re-run deletes. A key is
    deleted only when live state proves it half-made (made after the mark, held by no secret version, never
    used). Deleting the old key is a separate step (aws.iam.delete_access_key).
    """
    iam = ctx.aws.client("iam")
    sm = ctx.aws.client("secretsmanager")
    old = access_key_id
    base = {"user_name": user_name, "secret_id": secret_id, "old_access_key_id": old}
    keys = _user_keys(ctx, user_name)
    current = _secret_pair(ctx, secret_id, "AWSCURRENT")
    if current is None:
        raise LookupError(f"secret {secret_id} has no current version")
    current_pair, current_version = current
    if current_pair["AccessKeyId"] != old:
        return _finish_promoted(ctx, user_name, secret_id, old, current_pair["AccessKeyId"], current_version, keys)
    if old not in keys:
        raise LookupError(f"access key {old} is not a key of IAM user {user_name}")
    pending = _secret_pair(ctx, secret_id, "AWSPENDING")
    if pending and (pending[0]["AccessKeyId"] not in keys or pending[0]["AccessKeyId"] == old):
        pending = None  # a pending version whose key is gone (or is the old key): start again
    pending_id = pending[0]["AccessKeyId"] if pending else None
    warnings: list[str] = []
    candidates = [k for k in keys if k not in (old, pending_id)]
    stored = _stored_keys(ctx, secret_id) if candidates else set()
    mark, problem = _read_mark(ctx, user_name, old)
    if mark is not None:
        problem = _mark_problem(mark, keys)
        # A key the rotation made is stored by it or was never used: a used, unstored key it omits predates it.
        used = [k for k in candidates if k not in mark.keys and k not in stored and not _never_used(ctx, k)]
        if problem is None and used:
            problem = f"it omits {used[0]}, a key in use that no rotation step made"
    if problem:
        warnings.append(f"the resume mark on {user_name} is not Stanch's ({problem}): possible tampering; ignored")
        ctx.logger.warning("%s", warnings[-1])
        mark = None
    half = [k for k in candidates if _half_made(ctx, k, keys[k], mark, secret_id, stored)]
    others = [k for k in candidates if k not in half]
    if ctx.dry_run:
        steps = []
        if half:
            steps.append(f"delete half-made key(s) {', '.join(half)}")
        if others and not pending:
            steps.append(f"delete {remove_key_id or '(choose with remove_key_id)'}")
        steps.append(f"{'verify pending' if pending else 'create'} a new key, store it in {secret_id}")
        steps.append(f"promote it and deactivate {old}")
        return Rotation(
            changed=True, dry_run=True, state="would-rotate", warnings=warnings, detail="would " + "; ".join(steps), **base
        )
    if problem:
        _remove_mark(ctx, user_name, old)  # a mark Stanch did not write guides nothing, now or later
    deleted = [k for k in half if _discard_half_made(ctx, user_name, k, secret_id)]
    removed = None
    if others and not pending:
        if remove_key_id is None:
            note = f" ({'; '.join(warnings)})" if warnings else ""
            raise RuntimeError(
                f"user {user_name} already has two keys ({old} and {others[0]}); IAM allows two, so "
                f"say which other key to delete with remove_key_id, behind an approval gate{note}"
            )
        if remove_key_id == old or remove_key_id not in others:
            raise ValueError(f"remove_key_id must be {others[0]}, the user's other key, not {remove_key_id}")
        gone = functools.partial(lambda k: k not in _user_keys(ctx, user_name), remove_key_id)
        applied(
            ctx,
            f"deactivate {remove_key_id}",
            lambda: iam.update_access_key(UserName=user_name, AccessKeyId=remove_key_id, Status="Inactive"),
            lambda: _key_status(ctx, user_name, remove_key_id) in ("Inactive", None),
        )
        applied(
            ctx,
            f"delete {remove_key_id}",
            lambda: iam.delete_access_key(UserName=user_name, AccessKeyId=remove_key_id),
            gone,
        )
        removed = remove_key_id
    if pending:
        new_pair, new_version = pending
    else:
        # Written afresh before every create, so a half-made key is always made within minutes of its mark.
        _write_mark(ctx, user_name, old, [k for k in keys if k not in (removed, *deleted)])
        _boundary("tagged")
        made = iam.create_access_key(UserName=user_name)["AccessKey"]
        new_pair = {"AccessKeyId": made["AccessKeyId"], "SecretAccessKey": made["SecretAccessKey"]}
        ctx.masker.register(new_pair["SecretAccessKey"])
        _boundary("created")
        new_version = _store_pending(ctx, user_name, secret_id, new_pair)
        _boundary("stored")
    new_id = new_pair["AccessKeyId"]
    try:
        waited = _verify_key(ctx, user_name, new_pair, verify_attempts)
    except Exception:
        # Not promoted: the old key still works and stays current. Take the pending stage off the version,
        # then delete the key only if live state shows no labelled version holds it and it was never used.
        _unstage(ctx, secret_id, new_version, "AWSPENDING")
        _discard_half_made(ctx, user_name, new_id, secret_id)
        raise
    _boundary("verified")
    applied(
        ctx,
        f"promote {new_id} to AWSCURRENT in {secret_id}",
        lambda: sm.update_secret_version_stage(
            SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=new_version, RemoveFromVersionId=current_version
        ),
        lambda: "AWSCURRENT" in _stages(ctx, secret_id).get(new_version, []),
    )
    _boundary("promoted")
    _unstage(ctx, secret_id, new_version, "AWSPENDING")
    _deactivate(ctx, user_name, old)
    _boundary("deactivated")
    _remove_mark(ctx, user_name, old)
    ctx.logger.info("Rotated %s: %s is current and verified; %s is Inactive", user_name, new_id, old)
    return Rotation(
        changed=True,
        state="rotated",
        new_access_key_id=new_id,
        removed_access_key_id=removed,
        deleted_half_made=deleted,
        verified=True,
        waited_seconds=waited,
        warnings=warnings,
        detail=f"{user_name}: new key {new_id} stored and verified; {old} deactivated"
        + (f"; {removed} deleted to make room" if removed else ""),
        **base,
    )


def _store_pending(ctx: ActionContext, user_name: str, secret_id: str, pair: dict[str, str]) -> str:
    """Put a new pair as AWSPENDING under a version id derived from the key, so a lost answer is found again.
    A store that did not happen leaves a key nobody holds: it is deleted at once."""
    sm = ctx.aws.client("secretsmanager")
    arn = str(sm.describe_secret(SecretId=secret_id)["ARN"])
    version = str(uuid.uuid5(_NAMESPACE, f"{arn}|{pair['AccessKeyId']}"))
    try:
        applied(
            ctx,
            f"store {pair['AccessKeyId']} as AWSPENDING in {secret_id}",
            lambda: sm.put_secret_value(
                SecretId=secret_id, ClientRequestToken=version, SecretString=json.dumps(pair), VersionStages=["AWSPENDING"]
            ),
            lambda: "AWSPENDING" in _stages(ctx, secret_id).get(version, []),
        )
    except Exception:
        _discard_half_made(ctx, user_name, pair["AccessKeyId"], secret_id)
        raise
    return version


def _unstage(ctx: ActionContext, secret_id: str, version: str, stage: str) -> None:
    """Take a stage off a version (AWSPENDING once it is current, or when its key failed verification)."""
    sm = ctx.aws.client("secretsmanager")
    if stage not in _stages(ctx, secret_id).get(version, []):
        return
    applied(
        ctx,
        f"take {stage} off a version of {secret_id}",
        lambda: sm.update_secret_version_stage(SecretId=secret_id, VersionStage=stage, RemoveFromVersionId=version),
        lambda: stage not in _stages(ctx, secret_id).get(version, []),
    )


def _deactivate(ctx: ActionContext, user_name: str, key_id: str) -> None:
    iam = ctx.aws.client("iam")
    applied(
        ctx,
        f"deactivate {key_id}",
        lambda: iam.update_access_key(UserName=user_name, AccessKeyId=key_id, Status="Inactive"),
        lambda: _key_status(ctx, user_name, key_id) == "Inactive",
    )


def _finish_promoted(
    ctx: ActionContext,
    user_name: str,
    secret_id: str,
    old: str,
    new_id: str,
    current_version: str,
    keys: dict[str, dict[str, Any]],
) -> Rotation:
    """The secret already holds another key (promoted by Stanch or a person): make sure the old key is Inactive."""
    base = {"user_name": user_name, "secret_id": secret_id, "old_access_key_id": old, "new_access_key_id": new_id}
    if new_id not in keys:
        raise LookupError(f"secret {secret_id} holds key {new_id}, which user {user_name} does not have")
    if keys[new_id]["Status"] != "Active":
        raise RuntimeError(f"secret {secret_id} holds key {new_id}, which is Inactive: fix the secret before rotating")
    if keys.get(old, {}).get("Status") != "Active":
        if not ctx.dry_run:
            _unstage(ctx, secret_id, current_version, "AWSPENDING")
            _remove_mark(ctx, user_name, old)  # a crash after the last step left them behind
        return Rotation(
            changed=False,
            dry_run=ctx.dry_run,
            state="already-rotated",
            verified=True,
            detail=f"{user_name} already rotated to {new_id}; {old} is not active",
            **base,
        )
    if ctx.dry_run:
        return Rotation(
            changed=True,
            dry_run=True,
            state="would-rotate",
            detail=f"would deactivate {old} of {user_name} (the secret already holds {new_id})",
            **base,
        )
    _unstage(ctx, secret_id, current_version, "AWSPENDING")
    _deactivate(ctx, user_name, old)
    _boundary("deactivated")
    _remove_mark(ctx, user_name, old)
    return Rotation(
        changed=True,
        state="rotated",
        verified=True,
        detail=f"{user_name}: {new_id} is current; deactivated {old}",
        **base,
    )


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
    """Delete an Inactive access key for good (after a grace period or a gate); an Active key is refused.

    A lost answer: the user's keys are listed again; the key gone means done.
    """
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
    user = user_name
    try:
        applied(
            ctx,
            f"delete {access_key_id}",
            lambda: iam.delete_access_key(UserName=user, AccessKeyId=access_key_id),
            lambda: _key_status(ctx, user, access_key_id) is None,
        )
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":  # deleted meanwhile: the goal is met
            raise
    return KeyDeletion(changed=True, detail=f"deleted {access_key_id} of {user_name}", **base)


# ---------------------------------------------------------------- reverting what an attacker changed

GroupMember = Annotated[
    str,
    Field(pattern=r"^(user|role|group)/[A-Za-z0-9_+=,.@-]{1,128}$", description="user/NAME, role/NAME or group/NAME."),
]
PolicyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_+=,.@-]{1,128}$", description="An inline policy's name.")]
GroupName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_+=,.@-]{1,128}$", description="An IAM group name.")]
RoleName = Annotated[str, Field(pattern=r"^[\w+=,.@-]{1,64}$", description="An IAM role name.")]


class Reverted(Change):
    """A change an attacker made, reverted (or already gone)."""

    target: str = Field(description="What was reverted, in one name: user/NAME:policy, group:user, a serial...")
    warnings: list[str] = Field(default=[], description="State found that needs a person's eye.")


def converge(
    ctx: ActionContext,
    target: str,
    present: Any,
    revert: Any,
    doing: str,
    gone_codes: tuple[str, ...] = ("NoSuchEntity",),
) -> Reverted:
    """The shared shape of a revert: read, say what it would do (dry-run), do it, read back after a lost answer.

    `present()` tells whether the change still stands; `doing` is the verb phrase ("delete inline policy p of
    user/x"). An error whose code is in `gone_codes` means the resource is gone: a read that meets one counts as
    "not in place", and a change that meets one is done once a read shows the change no longer stands.
    """
    if not _still_present(present, gone_codes):
        return Reverted(changed=False, dry_run=ctx.dry_run, target=target, detail=f"nothing to do: {target} is not in place")
    if ctx.dry_run:
        return Reverted(changed=True, dry_run=True, target=target, detail=f"would {doing}")
    try:
        applied(ctx, doing, revert, lambda: not present())
    except Exception as exc:
        if error_code(exc) not in gone_codes or _still_present(present, gone_codes):
            raise  # a "gone" code is taken at its word only when a read shows the change no longer stands
    ctx.logger.info("Reverted: %s", doing)
    past = (
        doing.replace("delete ", "deleted ", 1).replace("remove ", "removed ", 1).replace("deactivate ", "deactivated ", 1)
    )
    return Reverted(changed=True, target=target, detail=past)


def _still_present(present: Any, gone_codes: tuple[str, ...]) -> bool:
    try:
        return bool(present())
    except Exception as exc:
        if error_code(exc) in gone_codes:
            return False
        raise


def _inline_names(ctx: ActionContext, kind: str, name: str) -> set[str]:
    iam = ctx.aws.client("iam")
    try:
        if kind == "user":
            pages = iam.get_paginator("list_user_policies").paginate(UserName=name)
        elif kind == "role":
            pages = iam.get_paginator("list_role_policies").paginate(RoleName=name)
        else:
            pages = iam.get_paginator("list_group_policies").paginate(GroupName=name)
        return {p for page in pages for p in page["PolicyNames"]}
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":  # the principal itself is gone: so is its policy
            return set()
        raise


@action(
    "aws.iam.delete_inline_policy",
    mutates=True,
    permissions=[
        Permission("iam:ListUserPolicies", "arn:aws:iam::*:user/*"),
        Permission("iam:DeleteUserPolicy", "arn:aws:iam::*:user/*"),
        Permission("iam:ListRolePolicies", "arn:aws:iam::*:role/*"),
        Permission("iam:DeleteRolePolicy", "arn:aws:iam::*:role/*"),
        Permission("iam:ListGroupPolicies", "arn:aws:iam::*:group/*"),
        Permission("iam:DeleteGroupPolicy", "arn:aws:iam::*:group/*"),
    ],
    calls=[
        "iam:ListUserPolicies|ListRolePolicies|ListGroupPolicies",
        "iam:DeleteUserPolicy|DeleteRolePolicy|DeleteGroupPolicy",
    ],
)
def delete_inline_policy(ctx: ActionContext, principal: GroupMember, policy_name: PolicyName) -> Reverted:
    """Delete an inline policy an attacker put on a user, role or group (Stanch's own policies are kept).

    A lost answer: the principal's inline policies are listed again; gone means done.
    """
    kind, _, name = principal.partition("/")
    target = f"{principal}:{policy_name}"
    if policy_name in (QUARANTINE_POLICY, REVOKE_POLICY):
        # An attacker's policy under Stanch's name is replaced by quarantine_principal / revoke_sessions instead.
        return Reverted(
            changed=False,
            dry_run=ctx.dry_run,
            target=target,
            detail=f"kept {policy_name} on {principal}: it is a name Stanch uses for containment",
            warnings=[f"{policy_name} on {principal} was put by the reviewed credentials: check its document"],
        )
    iam = ctx.aws.client("iam")

    def revert() -> None:
        if kind == "user":
            iam.delete_user_policy(UserName=name, PolicyName=policy_name)
        elif kind == "role":
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        else:
            iam.delete_group_policy(GroupName=name, PolicyName=policy_name)

    return converge(
        ctx,
        target,
        lambda: policy_name in _inline_names(ctx, kind, name),
        revert,
        f"delete inline policy {policy_name} of {principal}",
    )


def _in_group(ctx: ActionContext, group_name: str, user_name: str) -> bool:
    iam = ctx.aws.client("iam")
    try:
        pages = iam.get_paginator("list_groups_for_user").paginate(UserName=user_name)
        return any(g["GroupName"] == group_name for page in pages for g in page["Groups"])
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return False
        raise


@action(
    "aws.iam.remove_user_from_group",
    mutates=True,
    permissions=[
        *_on_user("iam:ListGroupsForUser"),
        Permission("iam:RemoveUserFromGroup", "arn:aws:iam::*:group/{group_name}"),
    ],
    calls=["iam:ListGroupsForUser", "iam:RemoveUserFromGroup"],
)
def remove_user_from_group(ctx: ActionContext, group_name: GroupName, user_name: UserName) -> Reverted:
    """Take a user out of a group an attacker added it to.

    A lost answer: the user's groups are listed again; not a member means done.
    """
    iam = ctx.aws.client("iam")
    return converge(
        ctx,
        f"{group_name}:{user_name}",
        lambda: _in_group(ctx, group_name, user_name),
        lambda: iam.remove_user_from_group(GroupName=group_name, UserName=user_name),
        f"remove {user_name} from group {group_name}",
    )


def _mfa_owner(ctx: ActionContext, serial_number: str, user_name: str | None) -> str | None:
    """The user a device is enabled for, or None when it is enabled for nobody (or gone)."""
    iam = ctx.aws.client("iam")
    if user_name:
        try:
            pages = iam.get_paginator("list_mfa_devices").paginate(UserName=user_name)
            found = any(d["SerialNumber"] == serial_number for page in pages for d in page["MFADevices"])
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            found = False
        return user_name if found else None
    for page in iam.get_paginator("list_virtual_mfa_devices").paginate(AssignmentStatus="Assigned"):
        for device in page["VirtualMFADevices"]:
            if device["SerialNumber"] == serial_number:
                return str(device.get("User", {}).get("UserName") or "") or None
    return None


@action(
    "aws.iam.deactivate_mfa_device",
    mutates=True,
    permissions=[
        Permission("iam:ListMFADevices", "arn:aws:iam::*:user/*"),
        Permission("iam:ListVirtualMFADevices"),
        Permission("iam:DeactivateMFADevice", "arn:aws:iam::*:user/*"),
    ],
    calls=["iam:ListMFADevices|ListVirtualMFADevices", "iam:DeactivateMFADevice"],
)
def deactivate_mfa_device(
    ctx: ActionContext,
    serial_number: Annotated[
        str, Field(pattern=r"^[A-Za-z0-9_+=/:,.@-]{9,256}$", description="The device's serial or ARN.")
    ],
    user_name: Annotated[UserName | None, Field(description="Its user; found from the device when omitted.")] = None,
) -> Reverted:
    """Deactivate an MFA device an attacker enabled, so it no longer satisfies MFA for the user.

    The device itself is kept for forensics. A lost answer: the user's devices are listed again.
    """
    iam = ctx.aws.client("iam")
    owner = _mfa_owner(ctx, serial_number, user_name)
    return converge(
        ctx,
        serial_number,
        lambda: _mfa_owner(ctx, serial_number, owner) is not None if owner else False,
        lambda: iam.deactivate_mfa_device(UserName=owner, SerialNumber=serial_number),
        f"deactivate MFA device {serial_number} of {owner or 'nobody'}",
    )


def _trust_document(ctx: ActionContext, role_name: str) -> dict[str, Any]:
    try:
        document = ctx.aws.client("iam").get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            raise LookupError(f"IAM role {role_name!r} does not exist in this account") from None
        raise
    if isinstance(document, str):
        from urllib.parse import unquote

        document = json.loads(unquote(document))
    return dict(document)


class TrustRestore(Reverted):
    how: Literal["restored", "quarantined", "unchanged"] = Field(
        description="restored: the earlier document is back; quarantined: none was known, so the role denies all."
    )


@action(
    "aws.iam.restore_trust_policy",
    mutates=True,
    permissions=[
        Permission("iam:GetRole", "arn:aws:iam::*:role/{role_name}"),
        Permission("iam:UpdateAssumeRolePolicy", "arn:aws:iam::*:role/{role_name}"),
        *_INLINE_POLICY_PERMISSIONS,
    ],
    calls=["iam:GetRole", "iam:UpdateAssumeRolePolicy", "or iam:GetRolePolicy + iam:PutRolePolicy (quarantine)"],
)
def restore_trust_policy(
    ctx: ActionContext,
    role_name: RoleName,
    document: Annotated[
        dict[str, Any] | None,
        Field(description="The trust policy before the attacker's change (from the review); none: quarantine the role."),
    ] = None,
) -> TrustRestore:
    """Put a role's trust policy back to the document before an attacker changed it, or quarantine the role.

    A lost answer: the role's trust policy is read again; the earlier document in place means done.
    """
    target = f"role/{role_name}"
    if not document:
        done = quarantine_principal(ctx, principal=target)
        how: Literal["restored", "quarantined", "unchanged"] = "quarantined" if done.changed else "unchanged"
        detail = done.detail + " (no earlier trust policy in the logs to restore)"
        return TrustRestore(
            changed=done.changed, dry_run=ctx.dry_run, target=target, how=how, detail=detail, warnings=done.warnings
        )
    iam = ctx.aws.client("iam")
    body = json.dumps(document)
    result = converge(
        ctx,
        target,
        lambda: _trust_document(ctx, role_name) != document,
        lambda: iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=body),
        f"restore the trust policy of {target}",
    )
    detail = f"restored the trust policy of {target}" if result.changed and not ctx.dry_run else result.detail
    return TrustRestore(
        changed=result.changed,
        dry_run=ctx.dry_run,
        target=target,
        how="restored" if result.changed else "unchanged",
        detail=detail if result.changed else f"the trust policy of {target} is already the earlier document",
    )
