"""GuardDuty actions: turn a detector the attacker disabled back on."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import action

DetectorId = Annotated[str, Field(pattern=r"^[a-z0-9]{1,300}$", description="The GuardDuty detector's id.")]
Region = Annotated[str | None, Field(description="The detector's region; the configured one when omitted.")]


# GuardDuty answers an unknown detector with BadRequestException (or ResourceNotFoundException): deleted
_GONE = ("BadRequestException", "ResourceNotFoundException")


def _disabled(client: Any, detector_id: str) -> bool:
    """Whether the detector is not enabled (a deleted one is gone: `converge`'s gone codes say so)."""
    return client.get_detector(DetectorId=detector_id).get("Status") != "ENABLED"


@action(
    "aws.guardduty.enable_detector",
    mutates=True,
    permissions=["guardduty:GetDetector", "guardduty:UpdateDetector"],
    calls=["guardduty:GetDetector", "guardduty:UpdateDetector"],
)
def enable_detector(ctx: ActionContext, detector_id: DetectorId, region: Region = None) -> Reverted:
    """Enable a GuardDuty detector again after the attacker disabled it (the logs show it was enabled before).

    A deleted detector is not recreated here (a new one has a new id and no history): the report says so.
    A lost answer: the detector's status is read again; ENABLED means done.
    """
    client = ctx.aws.client("guardduty", region)
    return converge(
        ctx,
        detector_id,
        lambda: _disabled(client, detector_id),
        lambda: client.update_detector(DetectorId=detector_id, Enable=True),
        f"enable GuardDuty detector {detector_id}",
        gone_codes=_GONE,
    )
