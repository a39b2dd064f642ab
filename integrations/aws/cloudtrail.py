"""The action `aws.cloudtrail.review_key_activity`: a thin layer over the review engine (`cloudtrail_review`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from integrations.aws.cloudtrail_review import Review, normalize_time, review, scanner_for
from integrations.context import ActionContext
from integrations.registry import action

AccessKeyIds = Annotated[
    list[Annotated[str, Field(pattern=r"^(AKIA|ASIA)[A-Z0-9]{12,124}$")]],
    Field(description="The access key ids to review."),
]
Principals = Annotated[
    list[Annotated[str, Field(pattern=r"^(role|user)/[\w+=,.@-]{1,64}$")]],
    Field(description="role/NAME (every session of the role) or user/NAME, reviewed like keys."),
]


@action(
    "aws.cloudtrail.review_key_activity",
    mutates=False,
    permissions=["s3:ListBucket", "s3:GetObject", "cloudtrail:LookupEvents"],
    calls=["s3:ListObjectsV2 + s3:GetObject (log files)", "or cloudtrail:LookupEvents (50 a call, 2 calls a second)"],
)
def review_key_activity(
    ctx: ActionContext,
    source: Annotated[
        str,
        Field(description="s3://bucket/prefix of CloudTrail files, a local directory, or `lookup` for LookupEvents."),
    ],
    access_key_ids: AccessKeyIds = [],  # noqa: B006 - pydantic copies defaults
    principals: Principals = [],  # noqa: B006
    since: Annotated[str | None, Field(description="Start of the window (2024-11-30 or ISO time).")] = None,
    until: Annotated[str | None, Field(description="End of the window.")] = None,
    region: Annotated[str | None, Field(description="LookupEvents region; defaults to the configured one.")] = None,
) -> Review:
    """Review what keys (or a role's sessions) did in CloudTrail, following derived credentials."""
    targets = [*access_key_ids, *principals]
    if not targets:
        raise ValueError("name at least one access key id or principal to review")
    start, end = normalize_time(since), normalize_time(until)
    if source == "lookup":
        return review(targets, start, end, lookup=ctx.aws.client("cloudtrail", region))
    return review(targets, start, end, scanner=scanner_for(source, ctx.aws.client, start, end))
