"""S3 actions: take back what an attacker opened (bucket-policy statements that let outsiders in)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field

from integrations.aws import error_code
from integrations.aws.cloudtrail_review.analysis import outside_principals
from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import ActionResult, Permission, action

Bucket = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="A bucket name.")]


class KeptStatement(ActionResult):
    """A statement open to `*` that a condition narrows to this account, its organization or a VPC: kept."""

    statement: str = Field(description="The statement's Sid, or #index in the policy when it has none.")
    condition_keys: list[str] = Field(description="The narrowing condition keys, as the policy spells them.")
    reason: str = Field(description="Why it was kept, and what a person should check.")


class BucketPolicyChange(Reverted):
    removed: list[dict[str, Any]] = Field(default=[], description="The statements removed (or that would be).")
    kept: int = Field(0, description="Statements left in the policy.")
    kept_conditional: list[KeptStatement] = Field(
        default=[], description="Statements open to `*` kept because a condition narrows them to us: check each."
    )


def _policy(s3: Any, bucket: str) -> dict[str, Any] | None:
    try:
        text = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except Exception as exc:
        if error_code(exc) in ("NoSuchBucketPolicy", "NoSuchBucket"):
            return None
        raise
    found = json.loads(text)
    return found if isinstance(found, dict) else None


def _statements(policy: dict[str, Any] | None) -> list[dict[str, Any]]:
    raw = (policy or {}).get("Statement", [])
    return [s for s in (raw if isinstance(raw, list) else [raw]) if isinstance(s, dict)]


# Condition keys that, tested with a positive operator, narrow a `*` principal to one account, organization or
# network. IAM compares key names without regard to case. Accounts and ARNs are checked against ours; organization,
# VPC and VPC-endpoint ids cannot be without more permissions, so they are kept and reported for a person to check.
_ACCOUNT_KEYS = frozenset({"aws:principalaccount", "aws:sourceaccount", "aws:sourceowner"})
_ARN_KEYS = frozenset({"aws:principalarn", "aws:sourcearn"})
_ORG_KEYS = frozenset({"aws:principalorgid", "aws:principalorgpaths", "aws:sourceorgid", "aws:sourceorgpaths"})
_NETWORK_KEYS = frozenset({"aws:sourcevpce", "aws:sourcevpc"})
_KEYS = _ACCOUNT_KEYS | _ARN_KEYS | _ORG_KEYS | _NETWORK_KEYS
# The policy variables that stand for the bucket's own account and organization: ours, checked.
_OWN_VARIABLES = {"${aws:resourceaccount}": _ACCOUNT_KEYS, "${aws:resourceorgid}": frozenset({"aws:principalorgid"})}
# A missing key fails these, so a request from outside (which has none of these keys) is refused. Not the negated
# operators, not `...IfExists` and not `ForAllValues:` (each is true when the key is missing).
_NARROWING_OPERATORS = frozenset({"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike"})


def _values(value: Any) -> list[str]:
    found = value if isinstance(value, list) else [value]
    return [str(v) for v in found if isinstance(v, str | int) and not isinstance(v, bool)]


def _ours(key: str, value: str, account: str) -> bool | None:
    """Whether a condition value names us: True (checked), None (a fixed id not checkable here), False (not ours)."""
    if key in _OWN_VARIABLES.get(value.lower(), ()):
        return True
    if key in _ACCOUNT_KEYS:
        return value == account
    if key in _ARN_KEYS:
        parts = value.split(":")
        return value.startswith("arn:") and len(parts) > 5 and parts[4] == account
    fixed = value.split("/")[0] if key.endswith("orgpaths") else value  # o-id/r-id/ou-id/*: the org id is what counts
    return None if fixed and not any(c in fixed for c in "*?$") else False


def _narrowing(statement: dict[str, Any], account: str) -> tuple[list[str], list[str]] | None:
    """The narrowing condition keys of a statement and the values left unchecked, when every narrowing condition
    names us (or an id not checkable here) and there is at least one; None otherwise (it is still outside)."""
    condition = statement.get("Condition")
    keys: list[str] = []
    unchecked: list[str] = []
    for operator, tests in condition.items() if isinstance(condition, dict) else []:
        base = str(operator).lower().removeprefix("foranyvalue:")
        if base not in _NARROWING_OPERATORS or not isinstance(tests, dict):
            continue
        for name, value in tests.items():
            key = str(name).lower()
            if key not in _KEYS:
                continue
            values = _values(value)
            verdicts = [_ours(key, v, account) for v in values]
            if not values or False in verdicts:
                return None  # another account, a wildcard, an ARN of no account: a grant outside
            keys.append(str(name))
            unchecked += [f"{name} {v}" for v, ours in zip(values, verdicts, strict=True) if ours is None]
    return (keys, unchecked) if keys else None


def _kept_conditional(statement: dict[str, Any], account: str) -> tuple[list[str], list[str]] | None:
    """For an Allow open only to `*` (every other principal ours) whose condition narrows it to us: see `_narrowing`."""
    if outside_principals({"Statement": [statement]}, account) != ["*"]:
        return None
    return _narrowing(statement, account)


def _outside(statement: dict[str, Any], account: str) -> bool:
    """An Allow lets the public or another account in, and no condition narrows it to us. Deny is never outside."""
    return bool(outside_principals({"Statement": [statement]}, account)) and _kept_conditional(statement, account) is None


def _name(statement: dict[str, Any], index: int) -> str:
    return str(statement.get("Sid") or f"#{index}")


def _kept(statement: dict[str, Any], index: int, keys: list[str], unchecked: list[str]) -> KeptStatement:
    reason = f"open to * but narrowed by {', '.join(keys)} to this account, its organization or its network"
    if unchecked:
        reason += f"; not checked to be ours (check by hand): {', '.join(unchecked)}"
    return KeptStatement(statement=_name(statement, index), condition_keys=keys, reason=reason)


@action(
    "aws.s3.remove_outside_bucket_policy_statements",
    mutates=True,
    permissions=[
        Permission("sts:GetCallerIdentity"),
        Permission("s3:GetBucketPolicy", "arn:aws:s3:::{bucket}"),
        Permission("s3:PutBucketPolicy", "arn:aws:s3:::{bucket}"),
        Permission("s3:DeleteBucketPolicy", "arn:aws:s3:::{bucket}"),
    ],
    calls=["sts:GetCallerIdentity", "s3:GetBucketPolicy", "s3:PutBucketPolicy or s3:DeleteBucketPolicy (none left)"],
)
def remove_outside_bucket_policy_statements(ctx: ActionContext, bucket: Bucket) -> BucketPolicyChange:
    """Remove the bucket-policy statements that allow the public or other accounts in, keeping the rest.

    Kept, and listed in `kept_conditional` with a warning: a statement open to `*` whose condition narrows it to
    this account, its organization, a VPC or a VPC endpoint (a pipeline's grant). Deny statements always stay.
    A policy left with no statement is deleted. A lost answer: the policy is read again; no outside grant means done.
    """
    s3 = ctx.aws.client("s3")
    account = str(ctx.aws.client("sts").get_caller_identity()["Account"])
    policy = _policy(s3, bucket)
    statements = _statements(policy)
    removed = [s for s in statements if _outside(s, account)]
    kept = [s for s in statements if not _outside(s, account)]
    conditional = [
        _kept(s, i, *narrowed) for i, s in enumerate(statements) if (narrowed := _kept_conditional(s, account)) is not None
    ]
    warnings = [f"s3://{bucket} statement {k.statement} kept: {k.reason}" for k in conditional]
    for warning in warnings:
        ctx.logger.warning("%s", warning)

    def revert() -> None:
        if kept:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({**(policy or {}), "Statement": kept}))
        else:
            s3.delete_bucket_policy(Bucket=bucket)

    names = ", ".join(_name(s, i) for i, s in enumerate(statements) if _outside(s, account)) or "none"
    note = f" ({', '.join(k.statement for k in conditional)} narrowed by a condition)" if conditional else ""
    done = converge(
        ctx,
        f"s3://{bucket}",
        lambda: any(_outside(s, account) for s in _statements(_policy(s3, bucket))),
        revert,
        f"remove statement(s) {names} granting outside principals from the policy of {bucket}, keeping {len(kept)}" + note,
        gone_codes=("NoSuchBucket",),
    )
    return BucketPolicyChange(
        **{**done.model_dump(), "warnings": done.warnings + warnings},
        removed=removed if done.changed else [],
        kept=len(kept),
        kept_conditional=conditional,
    )
