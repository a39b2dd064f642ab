"""Core actions that touch no outside service."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field

from integrations.context import ActionContext
from integrations.registry import ActionResult, action


class Logged(ActionResult):
    message: str


class Asserted(ActionResult):
    passed: bool


class Waited(ActionResult):
    seconds: float


class ActionFailed(Exception):
    """Raised by core.fail and core.assert; its message is the playbook author's."""


@action("core.log", mutates=False, permissions=())
def log(
    ctx: ActionContext,
    message: Annotated[str, Field(description="The text to log (masked for secrets).")],
    level: Annotated[Literal["debug", "info", "warning", "error"], Field(description="Log level.")] = "info",
) -> Logged:
    """Write a line to the run's log."""
    text = ctx.masker.mask(message)
    getattr(ctx.logger, level)(text)
    return Logged(message=text)


@action("core.fail", mutates=False, permissions=())
def fail(
    ctx: ActionContext,
    message: Annotated[str, Field(description="Why the run stops.")],
) -> Logged:
    """Fail the step on purpose, with a message."""
    raise ActionFailed(ctx.masker.mask(message))


@action("core.assert", mutates=False, permissions=())
def assert_(
    ctx: ActionContext,
    condition: Annotated[bool, Field(description="Must be true for the step to succeed.")],
    message: Annotated[str, Field(description="Said when the condition is false.")] = "assertion failed",
) -> Asserted:
    """Fail the step unless a condition holds."""
    if not condition:
        raise ActionFailed(ctx.masker.mask(message))
    return Asserted(passed=True)


@action("core.wait", mutates=False, permissions=())
def wait(
    ctx: ActionContext,
    seconds: Annotated[float, Field(ge=0, le=3600, description="How long to wait, in seconds.")],
) -> Waited:
    """Wait, for example for IAM's eventual consistency before verifying a change (skipped in dry-run)."""
    if not ctx.dry_run:
        time.sleep(seconds)
    return Waited(seconds=0 if ctx.dry_run else seconds)
