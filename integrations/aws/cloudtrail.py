"""The actions on CloudTrail: `review_key_activity` (a thin layer over the review engine, `cloudtrail_review`)
and `watch_key_use` (after containment: does any credential still work?)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field

from integrations.aws.cloudtrail_review import Review, normalize_time, review, scanner_for
from integrations.context import ActionContext
from integrations.registry import ActionResult, action

AccessKeyIds = Annotated[
    list[Annotated[str, Field(pattern=r"^(AKIA|ASIA)[A-Z0-9]{12,124}$")]],
    Field(description="The access key ids to review."),
]
Principals = Annotated[
    list[Annotated[str, Field(pattern=r"^(role|user)/[\w+=,.@-]{1,64}$")]],
    Field(description="role/NAME (every session of the role) or user/NAME, reviewed like keys."),
]
Regions = Annotated[
    list[Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]] | None,
    Field(description="LookupEvents regions; default every region in the configuration's aws.regions."),
]


def configured_regions(ctx: ActionContext) -> list[str]:
    """aws.regions from the installation's configuration, else the clients' region."""
    try:
        # The context carries one region; the list lives in the configuration (read lazily: validate never gets here).
        from flows.config import load_settings

        regions = list(load_settings().aws.regions)
    except Exception:  # no readable configuration: the one region the clients use
        regions = []
    return regions or [ctx.aws.region]


class RegionsLookup:
    """LookupEvents over several regions, paged as one: the page token carries the region's index.

    CloudTrail's LookupEvents answers for one region only, and an attacker works where nobody looks.
    """

    def __init__(self, clients: list[Any]) -> None:
        self.clients = clients

    def lookup_events(self, **params: Any) -> dict[str, Any]:
        index, _, inner = str(params.pop("NextToken", "0:")).partition(":")
        at = int(index)
        page: dict[str, Any] = self.clients[at].lookup_events(**params, **({"NextToken": inner} if inner else {}))
        token = page.get("NextToken")
        if token:
            following: str | None = f"{at}:{token}"
        else:
            following = f"{at + 1}:" if at + 1 < len(self.clients) else None
        return {"Events": page.get("Events", []), **({"NextToken": following} if following else {})}


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
    region: Annotated[str | None, Field(description="One LookupEvents region instead of every configured one.")] = None,
) -> Review:
    """Review what keys (or a role's sessions) did in CloudTrail, following derived credentials."""
    targets = [*access_key_ids, *principals]
    if not targets:
        raise ValueError("name at least one access key id or principal to review")
    start, end = normalize_time(since), normalize_time(until)
    if source == "lookup":
        regions = [region] if region else configured_regions(ctx)
        return review(targets, start, end, lookup=RegionsLookup([ctx.aws.client("cloudtrail", r) for r in regions]))
    return review(targets, start, end, scanner=scanner_for(source, ctx.aws.client, start, end))


class Attempt(ActionResult):
    access_key_id: str | None
    event_name: str
    event_id: str
    event_time: str
    error_code: str | None
    source_ip: str | None
    region: str | None


class KeyUseWatch(ActionResult):
    """What the contained credentials tried after containment: denied attempts only (a success fails the step)."""

    access_key_ids: list[str]
    regions: list[str]
    since: str
    watched_until: str
    attempts: list[Attempt] = Field(description="Calls made after containment and denied.")
    polls: int


def _used_since(ctx: ActionContext, source: str, keys: list[str], since: str, regions: list[str]) -> list[Attempt]:
    """Every call made with the keys (and what they derived) since `since`."""
    from integrations.aws.cloudtrail_review.sources import Pacer, lookup_events

    if source == "lookup":
        lookup = RegionsLookup([ctx.aws.client("cloudtrail", r) for r in regions])
        events = list(lookup_events(lookup, keys, since, None, Pacer()))
    else:
        events = list(scanner_for(source, ctx.aws.client, since, None).scan(keys, since, None))
    return [
        Attempt(
            access_key_id=e["accessKeyId"],
            event_name=e["eventName"],
            event_id=e["eventID"],
            event_time=e["eventTime"],
            error_code=e["errorCode"],
            source_ip=e["sourceIPAddress"],
            region=e["awsRegion"],
        )
        for e in sorted(events, key=lambda e: (e["eventTime"], e["eventID"]))
        if e["eventTime"] >= since
    ]


@action(
    "aws.cloudtrail.watch_key_use",
    mutates=False,
    permissions=["cloudtrail:LookupEvents", "s3:ListBucket", "s3:GetObject"],
    calls=["cloudtrail:LookupEvents in every region (or s3:ListObjectsV2 + s3:GetObject), every poll"],
)
def watch_key_use(
    ctx: ActionContext,
    access_key_ids: AccessKeyIds,
    source: Annotated[str, Field(description="`lookup` (LookupEvents) or s3://bucket/prefix of the trail.")] = "lookup",
    since: Annotated[str | None, Field(description="When containment took effect; default when the step starts.")] = None,
    window_seconds: Annotated[
        int, Field(ge=0, le=86400, description="How long to watch; CloudTrail delivers events up to ~15 min late.")
    ] = 1200,
    poll_seconds: Annotated[int, Field(ge=1, le=3600, description="Time between looks.")] = 60,
    regions: Regions = None,
) -> KeyUseWatch:
    """Watch for any use of contained keys and their derived credentials after containment, for a window.

    Denied calls are reported as attempts. A successful call means a credential still works: the step fails,
    naming the events.
    """
    start = normalize_time(since) or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    where = regions or configured_regions(ctx)
    deadline = time.monotonic() + window_seconds
    polls = 0
    attempts: list[Attempt] = []
    while True:
        polls += 1
        seen = _used_since(ctx, source, access_key_ids, start, where)
        worked = [a for a in seen if not a.error_code]
        if worked:
            listed = "; ".join(
                f"{a.event_name} by {a.access_key_id} at {a.event_time} from {a.source_ip} ({a.region}, event {a.event_id})"
                for a in worked[:20]
            )
            raise RuntimeError(
                f"a contained credential still works: {len(worked)} successful call(s) since {start}: {listed}"
            )
        attempts = seen
        if time.monotonic() >= deadline:
            break
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
    end = datetime.now(UTC)
    return KeyUseWatch(
        access_key_ids=access_key_ids,
        regions=where,
        since=start,
        watched_until=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        attempts=attempts,
        polls=polls,
    )
