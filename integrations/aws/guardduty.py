"""GuardDuty actions: turn a detector the attacker disabled back on."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from integrations.aws import error_code
from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import action

DetectorId = Annotated[str, Field(pattern=r"^[a-z0-9]{1,300}$", description="The GuardDuty detector's id.")]
Region = Annotated[str | None, Field(description="The detector's region; the configured one when omitted.")]


def _disabled(client: Any, detector_id: str) -> bool:
    try:
        status = client.get_detector(DetectorId=detector_id).get("Status")
    except Exception as exc:
        # GuardDuty answers an unknown detector with BadRequestException: deleted, nothing to enable
        if error_code(exc) in ("BadRequestException", "ResourceNotFoundException"):
            return False
        raise
    return status != "ENABLED"


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
        gone_codes=("BadRequestException",),
    )
