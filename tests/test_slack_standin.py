"""The Slack stand-in answers slack-sdk's real WebClient the way Slack does."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from flows.sandbox.slack_api import SlackStandIn


@pytest.fixture
def standin(sandbox: Any) -> SlackStandIn:
    assert sandbox.slack is not None
    return sandbox.slack


def test_post_message_is_recorded(standin: SlackStandIn) -> None:
    client = WebClient(token=standin.token, base_url=standin.base_url)
    response = client.chat_postMessage(channel="#incident-response", text="hello")
    assert response["ok"] and response["channel"].startswith("C")
    assert [m["text"] for m in standin.messages("incident-response")] == ["hello"]
    assert standin.calls[-1].method == "chat.postMessage"


def test_bad_token_and_unknown_channel_are_refused_as_slack_does(standin: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as bad_auth:
        WebClient(token="xoxb-wrong", base_url=standin.base_url).auth_test()
    assert bad_auth.value.response["error"] == "invalid_auth"
    client = WebClient(token=standin.token, base_url=standin.base_url)
    with pytest.raises(SlackApiError) as missing:
        client.chat_postMessage(channel="#nowhere", text="x")
    assert missing.value.response["error"] == "channel_not_found"


def test_rate_limit_is_retried_after_retry_after(standin: SlackStandIn) -> None:
    client = WebClient(
        token=standin.token,
        base_url=standin.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    standin.ratelimit_next(1, retry_after=1)
    response = client.chat_postMessage(channel="#incident-response", text="after a 429")
    assert response["ok"]
    assert [c.error for c in standin.calls[-2:]] == ["ratelimited", None]
