"""AWS actions, one module per service: iam, secrets, cloudtrail, ec2."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from integrations.registry import Permission

if TYPE_CHECKING:
    from integrations.context import ActionContext


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def on_secret(argument: str, *actions: str) -> list[Permission]:
    """Secrets Manager actions on the secret an argument names (by name or ARN; any secret when not literal)."""
    return [Permission(a, "arn:aws:secretsmanager:*:*:secret:{" + argument + "}*") for a in actions]


T = TypeVar("T")


def applied(ctx: ActionContext, what: str, call: Callable[[], T], landed: Callable[[], bool]) -> T | None:
    """Make a mutating AWS call; when it raises, re-read live state and carry on if the change is in place.

    AWS can apply a call and still answer with an error: a read timeout, or botocore's retry of the applied call
    refused because it no longer fits. Returns the call's response, or None when only live state says it applied.
    """
    from integrations.context import ReadOnlyRefusal

    try:
        return call()
    except ReadOnlyRefusal:
        raise
    except Exception as exc:
        try:
            in_place = landed()
        except Exception:  # the re-read failed too: we know nothing, so the original error stands
            in_place = False
        if not in_place:
            raise
        ctx.logger.warning(
            "%s: AWS answered %s, but live state shows it applied", what, error_code(exc) or type(exc).__name__
        )
        return None


def wait_until(ctx: ActionContext, what: str, check: Callable[[], bool], attempts: int, delay: float = 1.0) -> float:
    """Poll `check` (eventual consistency) at most `attempts` times; the seconds waited, logged. -1 if never true."""
    waited = 0.0
    for attempt in range(max(1, attempts)):
        if check():
            if waited:
                ctx.logger.info("%s after %.1f s (attempt %d of %d)", what, waited, attempt + 1, attempts)
            return waited
        if attempt + 1 < attempts:
            pause = min(delay * (attempt + 1), 5.0)
            ctx.logger.info("waiting %.1f s for AWS to agree that %s (attempt %d of %d)", pause, what, attempt + 1, attempts)
            time.sleep(pause)
            waited += pause
    return -1.0
