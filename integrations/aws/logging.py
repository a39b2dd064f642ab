"""Logging actions: restart a trail an attacker stopped, restore the event selectors it narrowed."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import action

Trail = Annotated[str, Field(pattern=r"^[A-Za-z0-9_:/.-]{3,256}$", description="The trail's name or ARN.")]
Region = Annotated[str | None, Field(description="The trail's home region; the configured one when omitted.")]
# CloudTrail's default: every management event, read and write.
ALL_MANAGEMENT_EVENTS: list[dict[str, Any]] = [{"ReadWriteType": "All", "IncludeManagementEvents": True}]


@action(
    "aws.logging.restart_logging",
    mutates=True,
    permissions=["cloudtrail:GetTrailStatus", "cloudtrail:StartLogging"],
    calls=["cloudtrail:GetTrailStatus", "cloudtrail:StartLogging"],
)
def restart_logging(ctx: ActionContext, trail: Trail, region: Region = None) -> Reverted:
    """Start a trail's logging again after an attacker stopped it.

    A lost answer: the trail's status is read again; logging means done.
    """
    client = ctx.aws.client("cloudtrail", region)
    return converge(
        ctx,
        trail,
        lambda: not client.get_trail_status(Name=trail)["IsLogging"],
        lambda: client.start_logging(Name=trail),
        f"restart logging of trail {trail}",
        gone_codes=(),
    )


def _selectors(client: Any, trail: str) -> list[dict[str, Any]]:
    found = client.get_event_selectors(TrailName=trail)
    return [
        {
            k: v
            for k, v in s.items()
            if k in ("ReadWriteType", "IncludeManagementEvents", "DataResources", "ExcludeManagementEventSources") and v
        }
        for s in found.get("EventSelectors") or []
    ]


@action(
    "aws.logging.restore_event_selectors",
    mutates=True,
    permissions=["cloudtrail:GetEventSelectors", "cloudtrail:PutEventSelectors"],
    calls=["cloudtrail:GetEventSelectors", "cloudtrail:PutEventSelectors"],
)
def restore_event_selectors(
    ctx: ActionContext,
    trail: Trail,
    event_selectors: Annotated[
        list[dict[str, Any]],
        Field(description="The selectors to restore (the API's form); by default every management event, read and write."),
    ] = ALL_MANAGEMENT_EVENTS,
    region: Region = None,
) -> Reverted:
    """Put a trail's event selectors back after an attacker narrowed what it records.

    A lost answer: the selectors are read again; the wanted ones in place means done.
    """
    client = ctx.aws.client("cloudtrail", region)
    wanted = [{k: v for k, v in s.items() if v} for s in event_selectors]
    return converge(
        ctx,
        trail,
        lambda: _selectors(client, trail) != wanted,
        lambda: client.put_event_selectors(TrailName=trail, EventSelectors=event_selectors),
        f"restore the event selectors of trail {trail}",
        gone_codes=(),
    )
