"""Slack actions through slack-sdk's WebClient against the Slack Web API stand-in."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flows.config import load_settings
from flows.engine.driver import build_context
from integrations import slack
from integrations.context import ActionContext, RunInfo, RunMode
from integrations.masking import SecretMasker


def slack_ctx(dry_run: bool = False) -> ActionContext:
    run = RunInfo(
        id="r",
        playbook="p",
        incident_id="inc-20261126-0301-ab12",
        mode=RunMode.DRY_RUN if dry_run else RunMode.LIVE,
        launched_by="t",
    )
    return build_context(load_settings(), run, SecretMasker(), logging.getLogger("stanch.test"))


@pytest.fixture
def standin(sandbox: Any) -> Any:
    return sandbox.slack


def test_messages_escape_attacker_text_and_mask_secrets(standin: Any) -> None:
    ctx = slack_ctx()
    text = "alert says <!channel> <https://evil.example|click> & wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    posted = slack.post_message(ctx, text=text, channel="#incident-response")
    [message] = standin.messages("incident-response")
    assert message["text"] == "alert says &lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; ***"
    assert posted.ts == message["ts"]
    reply = slack.post_thread_reply(ctx, thread_ts=posted.ts, text="step done", channel="#incident-response")
    assert standin.messages("incident-response")[1]["thread_ts"] == posted.ts and reply.posted
    slack.update_message(ctx, channel=posted.channel, ts=posted.ts, text="resolved <@U123>")
    assert standin.messages("incident-response")[0]["text"] == "resolved &lt;@U123&gt;"


def test_dry_run_posts_nothing(standin: Any) -> None:
    result = slack.post_message(slack_ctx(dry_run=True), text="hello")
    assert not result.posted and standin.messages("incident-response") == []


def test_incident_channel_is_created_once_with_topic_and_responders(standin: Any) -> None:
    ctx = slack_ctx()
    first = slack.create_incident_channel(ctx, responders=["U1", "U2"], topic="Leaked key <!here>")
    assert first.created and first.name == "inc-20261126-0301-ab12" and first.invited == ["U1", "U2"]
    again = slack.create_incident_channel(ctx, responders=["U1", "U2"], topic="Leaked key")
    assert not again.created and again.channel_id == first.channel_id, "idempotent when the channel exists"
    channel = standin.channels[first.channel_id]
    assert channel.topic == "Leaked key" and channel.members == ["U1", "U2"]


def test_upload_file_shares_a_report(standin: Any) -> None:
    result = slack.upload_file(
        slack_ctx(), content="# Review\n12 events", filename="review.md", channel="#incident-response"
    )
    assert result.uploaded and result.file_id in standin.files
    assert standin.files[result.file_id]["content"] == b"# Review\n12 events"


def test_a_rate_limit_is_waited_out(standin: Any) -> None:
    standin.ratelimit_next(2, retry_after=1)
    posted = slack.post_message(slack_ctx(), text="after two 429s")
    assert posted.posted
    assert [c.error for c in standin.calls[-3:]] == ["ratelimited", "ratelimited", None]


def test_a_wrong_channel_fails_with_slacks_error(standin: Any) -> None:
    from slack_sdk.errors import SlackApiError

    with pytest.raises(SlackApiError, match="channel_not_found"):
        slack.post_message(slack_ctx(), text="x", channel="#nowhere")
