"""Slack actions through slack-sdk's WebClient (token from configuration, never from a playbook)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from integrations.context import ActionContext
from integrations.registry import ActionResult, Permission, action


class PostedMessage(ActionResult):
    channel: str
    ts: str | None = Field(None, description="The message's timestamp id; None when not posted (dry-run).")
    posted: bool
    text: str


def escape(text: str) -> str:
    """Slack mrkdwn escaping: an attacker-controlled value cannot become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_blocks(value: Any) -> Any:
    """Escape every `text` string inside Block Kit blocks."""
    if isinstance(value, dict):
        return {
            key: escape(child) if key == "text" and isinstance(child, str) else escape_blocks(child)
            for key, child in value.items()
        }
    if isinstance(value, list):
        return [escape_blocks(child) for child in value]
    return value


@action(
    "slack.post_message",
    mutates=False,
    permissions=[Permission("chat:write")],
    calls=["chat.postMessage"],
)
def post_message(
    ctx: ActionContext,
    text: Annotated[str, Field(description="Plain-text message (also the fallback for blocks).")],
    channel: Annotated[str | None, Field(description="Channel id or #name; the configured default.")] = None,
    blocks: Annotated[list[dict[str, Any]] | None, Field(description="Block Kit blocks.")] = None,
    thread_ts: Annotated[str | None, Field(description="Reply in this thread.")] = None,
) -> PostedMessage:
    """Post a message to a Slack channel (not in dry-run, where it reports what it would post)."""
    target = channel or ctx.slack_default_channel
    safe_text = escape(ctx.masker.mask(text))
    if ctx.dry_run:
        return PostedMessage(channel=target, posted=False, text=safe_text)
    kwargs: dict[str, Any] = {"channel": target, "text": safe_text}
    if blocks:
        kwargs["blocks"] = escape_blocks(ctx.masker.mask_data(blocks))
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    response = ctx.slack.chat_postMessage(**kwargs)
    return PostedMessage(channel=str(response["channel"]), ts=str(response["ts"]), posted=True, text=safe_text)
