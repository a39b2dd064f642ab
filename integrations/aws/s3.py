"""S3 actions: take back what an attacker opened (bucket-policy statements that let outsiders in)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field

from integrations.aws import error_code
from integrations.aws.cloudtrail_review.analysis import outside_principals
from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import Permission, action

Bucket = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="A bucket name.")]


class BucketPolicyChange(Reverted):
    removed: list[dict[str, Any]] = Field(default=[], description="The statements removed (or that would be).")
    kept: int = Field(0, description="Statements left in the policy.")


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


def _outside(statement: dict[str, Any], account: str) -> bool:
    return bool(outside_principals({"Statement": [statement]}, account))


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

    A policy left with no statement is deleted. A lost answer: the policy is read again; no outside grant means done.
    """
    s3 = ctx.aws.client("s3")
    account = str(ctx.aws.client("sts").get_caller_identity()["Account"])
    policy = _policy(s3, bucket)
    statements = _statements(policy)
    removed = [s for s in statements if _outside(s, account)]
    kept = [s for s in statements if not _outside(s, account)]

    def revert() -> None:
        if kept:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({**(policy or {}), "Statement": kept}))
        else:
            s3.delete_bucket_policy(Bucket=bucket)

    names = ", ".join(str(s.get("Sid") or f"#{statements.index(s)}") for s in removed) or "none"
    done = converge(
        ctx,
        f"s3://{bucket}",
        lambda: any(_outside(s, account) for s in _statements(_policy(s3, bucket))),
        revert,
        f"remove statement(s) {names} granting outside principals from the policy of {bucket}, keeping {len(kept)}",
        gone_codes=("NoSuchBucket",),
    )
    return BucketPolicyChange(**done.model_dump(), removed=removed if done.changed else [], kept=len(kept))
