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


class UpdatedMessage(ActionResult):
    channel: str
    ts: str
    updated: bool


@action(
    "slack.update_message",
    mutates=False,
    permissions=[Permission("chat:write")],
    calls=["chat.update"],
)
def update_message(
    ctx: ActionContext,
    channel: Annotated[str, Field(description="The channel id of the message.")],
    ts: Annotated[str, Field(description="The message's timestamp id.")],
    text: Annotated[str, Field(description="The new text.")],
    blocks: Annotated[list[dict[str, Any]] | None, Field(description="New Block Kit blocks.")] = None,
) -> UpdatedMessage:
    """Replace a message's text (and blocks) in place."""
    if ctx.dry_run:
        return UpdatedMessage(channel=channel, ts=ts, updated=False)
    kwargs: dict[str, Any] = {"channel": channel, "ts": ts, "text": escape(ctx.masker.mask(text))}
    if blocks:
        kwargs["blocks"] = escape_blocks(ctx.masker.mask_data(blocks))
    ctx.slack.chat_update(**kwargs)
    return UpdatedMessage(channel=channel, ts=ts, updated=True)


@action(
    "slack.post_thread_reply",
    mutates=False,
    permissions=[Permission("chat:write")],
    calls=["chat.postMessage (thread_ts)"],
)
def post_thread_reply(
    ctx: ActionContext,
    thread_ts: Annotated[str, Field(description="The thread's first message.")],
    text: Annotated[str, Field(description="The reply.")],
    channel: Annotated[str | None, Field(description="Channel id or #name; the configured default.")] = None,
) -> PostedMessage:
    """Reply in a thread (an incident's running log)."""
    result: PostedMessage = post_message(ctx, text=text, channel=channel, thread_ts=thread_ts)
    return result


class IncidentChannel(ActionResult):
    channel_id: str | None
    name: str
    created: bool
    invited: list[str]


def channel_name(incident_id: str) -> str:
    """Slack's rules: lower case, digits, dashes and underscores, at most 80 characters."""
    import re

    return re.sub(r"[^a-z0-9_-]+", "-", f"inc-{incident_id.lower().removeprefix('inc-')}")[:80].strip("-")


@action(
    "slack.create_incident_channel",
    mutates=False,
    permissions=[
        Permission("channels:manage"),
        Permission("channels:read"),
        Permission("channels:write.invites"),
        Permission("channels:write.topic"),
    ],
    calls=["conversations.create", "conversations.list (when it exists)", "conversations.setTopic", "conversations.invite"],
)
def create_incident_channel(
    ctx: ActionContext,
    responders: Annotated[list[str], Field(description="Slack user ids to invite.")] = [],  # noqa: B006
    topic: Annotated[str, Field(description="The channel topic.")] = "",
    name: Annotated[str | None, Field(description="Defaults to inc-<incident id>.")] = None,
) -> IncidentChannel:
    """Open (or find, when it exists) the incident's channel, set its topic and invite the responders."""
    from slack_sdk.errors import SlackApiError

    wanted = name or channel_name(ctx.run.incident_id)
    if ctx.dry_run:
        return IncidentChannel(channel_id=None, name=wanted, created=False, invited=[])
    created = True
    try:
        channel_id = str(ctx.slack.conversations_create(name=wanted)["channel"]["id"])
    except SlackApiError as exc:
        if exc.response.get("error") != "name_taken":
            raise
        # The channel exists (a re-run, or a person made it): use it.
        created = False
        channel_id = ""
        for page in ctx.slack.conversations_list(limit=200):
            match = next((c for c in page["channels"] if c["name"] == wanted), None)
            if match:
                channel_id = str(match["id"])
                break
        if not channel_id:
            raise LookupError(f"channel #{wanted} exists but this app cannot see it: invite the app to it") from None
    if topic:
        ctx.slack.conversations_setTopic(channel=channel_id, topic=escape(ctx.masker.mask(topic))[:250])
    invited: list[str] = []
    if responders:
        try:
            ctx.slack.conversations_invite(channel=channel_id, users=",".join(responders))
            invited = list(responders)
        except SlackApiError as exc:
            if exc.response.get("error") != "already_in_channel":
                raise
    return IncidentChannel(channel_id=channel_id, name=wanted, created=created, invited=invited)


class UploadedFile(ActionResult):
    file_id: str | None
    title: str
    uploaded: bool


@action(
    "slack.upload_file",
    mutates=False,
    permissions=[Permission("files:write")],
    calls=["files.getUploadURLExternal", "files.completeUploadExternal"],
)
def upload_file(
    ctx: ActionContext,
    content: Annotated[str, Field(description="The file's text, such as a review report (masked for secrets).")],
    filename: Annotated[str, Field(description="The file name, such as review.md.")],
    title: Annotated[str | None, Field(description="Shown in Slack; the file name by default.")] = None,
    channel: Annotated[str | None, Field(description="Channel id or #name; the configured default.")] = None,
) -> UploadedFile:
    """Upload a report (for example the review's markdown) to a channel."""
    if ctx.dry_run:
        return UploadedFile(file_id=None, title=title or filename, uploaded=False)
    target = channel or ctx.slack_default_channel
    if target.startswith("#"):
        info = ctx.slack.conversations_list(limit=1000)
        found = next((c for c in info["channels"] if c["name"] == target.lstrip("#")), None)
        if found is None:
            raise LookupError(f"no channel {target} visible to the app")
        target = str(found["id"])
    response = ctx.slack.files_upload_v2(
        content=ctx.masker.mask(content), filename=filename, title=title or filename, channel=target
    )
    files = response.get("files") or [response.get("file") or {}]
    return UploadedFile(
        file_id=str(files[0].get("id")) if files and files[0] else None, title=title or filename, uploaded=True
    )
