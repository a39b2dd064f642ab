"""AWS Config actions: start a configuration recorder the attacker stopped."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import action

RecorderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,256}$", description="The configuration recorder's name.")]
Region = Annotated[str | None, Field(description="The recorder's region; the configured one when omitted.")]


def _stopped(client: Any, name: str) -> bool:
    """Whether the recorder is not recording (a deleted one is gone: `converge`'s gone codes say so)."""
    found = client.describe_configuration_recorder_status(ConfigurationRecorderNames=[name])
    return not all(s.get("recording") for s in found.get("ConfigurationRecordersStatus", []))


@action(
    "aws.config_service.start_recorder",
    mutates=True,
    permissions=["config:DescribeConfigurationRecorderStatus", "config:StartConfigurationRecorder"],
    calls=["config:DescribeConfigurationRecorderStatus", "config:StartConfigurationRecorder"],
)
def start_recorder(ctx: ActionContext, recorder_name: RecorderName, region: Region = None) -> Reverted:
    """Start an AWS Config recorder again after the attacker stopped it (the logs show it was recording).

    A deleted recorder is not recreated here (its recording group is not in the logs): the report says so.
    A lost answer: the recorder's status is read again; recording means done.
    """
    client = ctx.aws.client("config", region)
    return converge(
        ctx,
        recorder_name,
        lambda: _stopped(client, recorder_name),
        lambda: client.start_configuration_recorder(ConfigurationRecorderName=recorder_name),
        f"start AWS Config recorder {recorder_name}",
        gone_codes=("NoSuchConfigurationRecorderException",),
    )
