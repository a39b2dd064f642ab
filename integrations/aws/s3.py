"""S3 actions: take back what an attacker opened (bucket-policy statements that let outsiders in)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
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
    reason: str = Field(description="Why it was kept, and any id not checked to be ours (for a person to check).")


class BucketPolicyChange(Reverted):
    removed: list[dict[str, Any]] = Field(default=[], description="The statements removed (or that would be).")
    kept: int = Field(0, description="Statements left in the policy.")
    kept_conditional: list[KeptStatement] = Field(
        default=[],
        description="Statements open to `*` kept because a condition narrows them to us (a warning for each not checked).",
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
# VPC and VPC-endpoint ids are looked up (see `_Ids`): ours, not ours, or not checkable (kept, for a person to check).
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

# Whether an id is ours: True, False, or the reason it could not be checked (the call refused or failed).
Verdict = bool | str
# (kind, id) -> Verdict, kind one of "org", "vpc", "vpce": `_Ids` asks AWS; a test may pass a table.
Lookup = Callable[[str, str], Verdict]


def _kind(key: str) -> str:
    return "org" if key in _ORG_KEYS else "vpce" if key == "aws:sourcevpce" else "vpc"


def _values(value: Any) -> list[str]:
    found = value if isinstance(value, list) else [value]
    return [str(v) for v in found if isinstance(v, str | int) and not isinstance(v, bool)]


def _ours(key: str, value: str, account: str, lookup: Lookup) -> Verdict:
    """Whether a condition value names us: True, False (not ours), or why the id it names was not checked."""
    if key in _OWN_VARIABLES.get(value.lower(), ()):
        return True
    if key in _ACCOUNT_KEYS:
        return value == account
    if key in _ARN_KEYS:
        parts = value.split(":")
        return value.startswith("arn:") and len(parts) > 5 and parts[4] == account
    fixed = value.split("/")[0] if key.endswith("orgpaths") else value  # o-id/r-id/ou-id/*: the org id is what counts
    if not fixed or any(c in fixed for c in "*?$"):
        return False  # a wildcard or a variable: anyone's
    return lookup(_kind(key), fixed.lower())  # ids are lower case; StringEqualsIgnoreCase matches either way


def _narrowing(statement: dict[str, Any], account: str, lookup: Lookup) -> tuple[list[str], list[str]] | None:
    """The narrowing condition keys of a statement and the values left unchecked (each with why), when every
    narrowing condition names us (or an id that could not be checked) and there is at least one; None otherwise
    (it is still outside)."""
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
            verdicts = [_ours(key, v, account, lookup) for v in values]
            if not values or False in verdicts:
                return None  # another account, organization or network, a wildcard, an ARN of no account: outside
            keys.append(str(name))
            unchecked += [f"{name} {v} ({why})" for v, why in zip(values, verdicts, strict=True) if isinstance(why, str)]
    return (keys, unchecked) if keys else None


def _open_to_everyone(statement: dict[str, Any], account: str) -> bool:
    """An Allow open only to `*` (every other principal ours): one that a condition may narrow to us."""
    return outside_principals({"Statement": [statement]}, account) == ["*"]


def _kept_conditional(statement: dict[str, Any], account: str, lookup: Lookup) -> tuple[list[str], list[str]] | None:
    """For an Allow open only to `*` whose condition narrows it to us: see `_narrowing`."""
    return _narrowing(statement, account, lookup) if _open_to_everyone(statement, account) else None


def _outside(statement: dict[str, Any], account: str, lookup: Lookup) -> bool:
    """An Allow lets the public or another account in, and no condition narrows it to us. Deny is never outside."""
    return (
        bool(outside_principals({"Statement": [statement]}, account))
        and _kept_conditional(statement, account, lookup) is None
    )


# Errors that say the id names nothing in our account (or cannot name anything): not ours. Compared in lower case
# (EC2 spells `InvalidVpcID` and `InvalidVpcId` both).
_NOT_FOUND = {
    "vpce": ("invalidvpcendpointid.notfound", "invalidvpcendpointid.malformed"),
    "vpc": ("invalidvpcid.notfound", "invalidvpcid.malformed"),
}
_CALLS = {"vpce": "ec2:DescribeVpcEndpoints", "vpc": "ec2:DescribeVpcs"}
_REFUSED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


class _Ids:
    """Whether the organization, VPC and VPC-endpoint ids a policy names are ours, asked of AWS once per id (and
    the bucket's region and our organization once) within one action call, and only when a policy names one.

    Ours: our organization's id, a VPC or endpoint that our account owns in the bucket's region (where the requests
    come through). Not ours: an id that the lookup says does not exist (an endpoint in another account, say), another
    organization's id, any organization id when we are in none. A refused or failed lookup: kept, named, for a person.
    """

    def __init__(self, ctx: ActionContext, bucket: str, account: str) -> None:
        self.ctx, self.bucket, self.account = ctx, bucket, account
        self.verdicts: dict[tuple[str, str], Verdict] = {}

    def __call__(self, kind: str, value: str) -> Verdict:
        if (kind, value) not in self.verdicts:
            self.verdicts[kind, value] = self._in_org(value) if kind == "org" else self._in_account(kind, value)
        return self.verdicts[kind, value]

    @functools.cached_property
    def _org(self) -> tuple[str, str]:
        """Our organization's id ('' when we are in none), or '' and why it is not known."""
        try:
            return str(self.ctx.aws.client("organizations").describe_organization()["Organization"]["Id"]).lower(), ""
        except Exception as exc:
            code = error_code(exc)
            if not code:
                raise
            if code == "AWSOrganizationsNotInUseException":
                return "", ""  # no organization: no organization id is ours
            return "", _why("organizations:DescribeOrganization", code)

    @functools.cached_property
    def _region(self) -> tuple[str, str]:
        """The bucket's region, or '' and why it is not known."""
        try:
            where = self.ctx.aws.client("s3").get_bucket_location(Bucket=self.bucket).get("LocationConstraint")
        except Exception as exc:
            if not error_code(exc):
                raise
            return "", _why("s3:GetBucketLocation", error_code(exc))
        return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(where, str(where)), ""

    def _in_org(self, value: str) -> Verdict:
        org, why = self._org
        return why or org == value

    def _in_account(self, kind: str, value: str) -> Verdict:
        region, why = self._region
        if why:
            return why
        ec2 = self.ctx.aws.client("ec2", region=region)
        try:
            if kind == "vpce":
                found = ec2.describe_vpc_endpoints(VpcEndpointIds=[value])["VpcEndpoints"]
            else:
                found = ec2.describe_vpcs(VpcIds=[value])["Vpcs"]
        except Exception as exc:
            code = error_code(exc)
            if not code:
                raise
            return code.lower() not in _NOT_FOUND[kind] and _why(_CALLS[kind], code)
        return any(f.get("OwnerId") == self.account for f in found)  # a VPC shared with us is another account's


def _why(call: str, code: str) -> str:
    return f"{call} {'refused' if code in _REFUSED else 'failed'}: {code}"


def _name(statement: dict[str, Any], index: int) -> str:
    return str(statement.get("Sid") or f"#{index}")


_UNCHECKED = "not checked to be ours (check by hand)"


_NETWORK_CHECK = (
    "a VPC or VPC endpoint of this account lets in whoever reaches it (peering, a transit gateway, a shared subnet):"
    " check it was not made during the exposure"
)


def _kept(statement: dict[str, Any], index: int, keys: list[str], unchecked: list[str]) -> KeptStatement:
    reason = f"open to * but narrowed by {', '.join(keys)} to this account, its organization or its network"
    if unchecked:
        reason += f"; {_UNCHECKED}: {', '.join(unchecked)}"
    elif any(key.lower() in _NETWORK_KEYS for key in keys):
        reason += f"; {_NETWORK_CHECK}"  # a holder of the leaked key could have made that endpoint here
    return KeptStatement(statement=_name(statement, index), condition_keys=keys, reason=reason)


@action(
    "aws.s3.remove_outside_bucket_policy_statements",
    mutates=True,
    permissions=[
        Permission("sts:GetCallerIdentity"),
        Permission("s3:GetBucketPolicy", "arn:aws:s3:::{bucket}"),
        Permission("s3:GetBucketLocation", "arn:aws:s3:::{bucket}"),
        Permission("ec2:DescribeVpcEndpoints"),
        Permission("ec2:DescribeVpcs"),
        Permission("organizations:DescribeOrganization"),
        Permission("s3:PutBucketPolicy", "arn:aws:s3:::{bucket}"),
        Permission("s3:DeleteBucketPolicy", "arn:aws:s3:::{bucket}"),
    ],
    calls=[
        "sts:GetCallerIdentity",
        "s3:GetBucketPolicy",
        "s3:GetBucketLocation, ec2:DescribeVpcEndpoints|DescribeVpcs (a statement narrowed by a VPC or endpoint id)",
        "organizations:DescribeOrganization (a statement narrowed by an organization id)",
        "s3:PutBucketPolicy or s3:DeleteBucketPolicy (none left)",
    ],
)
def remove_outside_bucket_policy_statements(ctx: ActionContext, bucket: Bucket) -> BucketPolicyChange:
    """Remove the bucket-policy statements that allow the public or other accounts in, keeping the rest.

    Kept, and listed in `kept_conditional`: a statement open to `*` whose condition narrows it to this account, its
    organization, a VPC or a VPC endpoint of this account (a pipeline's grant). Organization, VPC and endpoint ids are
    looked up (the VPCs and endpoints in the bucket's region): an id that is not ours (an endpoint in another account
    reaches the bucket too) leaves the statement outside, so it goes; an id the lookup was refused for keeps it, with
    a warning naming the refused call (check it by hand). Deny statements always stay. A policy left with no statement
    is deleted. A lost answer: the policy is read again; no outside grant means done.
    """
    s3 = ctx.aws.client("s3")
    account = str(ctx.aws.client("sts").get_caller_identity()["Account"])
    ids = _Ids(ctx, bucket, account)  # one verdict per id, for this call's decisions and its converge check alike
    policy = _policy(s3, bucket)
    statements = _statements(policy)
    outside = [_outside(s, account, ids) for s in statements]
    removed = [s for s, out in zip(statements, outside, strict=True) if out]
    kept = [s for s, out in zip(statements, outside, strict=True) if not out]
    conditional = [
        _kept(s, i, *narrowed)
        for i, s in enumerate(statements)
        if (narrowed := _kept_conditional(s, account, ids)) is not None
    ]
    warnings = [
        f"s3://{bucket} statement {k.statement} kept: {k.reason}"
        for k in conditional
        if _UNCHECKED in k.reason or _NETWORK_CHECK in k.reason
    ]
    for warning in warnings:
        ctx.logger.warning("%s", warning)

    def revert() -> None:
        if kept:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({**(policy or {}), "Statement": kept}))
        else:
            s3.delete_bucket_policy(Bucket=bucket)

    names = ", ".join(_name(s, i) for i, (s, out) in enumerate(zip(statements, outside, strict=True)) if out) or "none"
    note = f" ({', '.join(k.statement for k in conditional)} narrowed by a condition)" if conditional else ""
    done = converge(
        ctx,
        f"s3://{bucket}",
        lambda: any(_outside(s, account, ids) for s in _statements(_policy(s3, bucket))),
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
