"""IAM Roles Anywhere actions: disable a trust anchor an attacker created (certificates it trusts stop working)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import action


def _enabled(client: Any, trust_anchor_id: str) -> bool:
    """Whether the trust anchor is enabled (a deleted one trusts nothing: `converge`'s gone codes say so)."""
    return bool(client.get_trust_anchor(trustAnchorId=trust_anchor_id)["trustAnchor"].get("enabled"))


@action(
    "aws.rolesanywhere.disable_trust_anchor",
    mutates=True,
    permissions=["rolesanywhere:GetTrustAnchor", "rolesanywhere:DisableTrustAnchor"],
    calls=["rolesanywhere:GetTrustAnchor", "rolesanywhere:DisableTrustAnchor"],
)
def disable_trust_anchor(
    ctx: ActionContext,
    trust_anchor_id: Annotated[str, Field(pattern=r"^[a-f0-9-]{36}$", description="The trust anchor's id.")],
    region: Annotated[str | None, Field(description="The anchor's region; the configured one when omitted.")] = None,
) -> Reverted:
    """Disable a Roles Anywhere trust anchor, so sessions can no longer be made with the certificates it trusts.

    Kept, not deleted, for forensics. A lost answer: the anchor is read again; disabled means done. moto has no
    Roles Anywhere: its test runs against a stand-in and asserts the exact requests it received.
    """
    client = ctx.aws.client("rolesanywhere", region)
    return converge(
        ctx,
        trust_anchor_id,
        lambda: _enabled(client, trust_anchor_id),
        lambda: client.disable_trust_anchor(trustAnchorId=trust_anchor_id),
        f"disable Roles Anywhere trust anchor {trust_anchor_id}",
        gone_codes=("ResourceNotFoundException",),
    )
