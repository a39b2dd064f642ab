"""AWS actions, one module per service: iam, secrets, cloudtrail, ec2."""

from __future__ import annotations

from typing import Any

from integrations.registry import Permission


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def on_secret(argument: str, *actions: str) -> list[Permission]:
    """Secrets Manager actions on the secret an argument names (by name or ARN; any secret when not literal)."""
    return [Permission(a, "arn:aws:secretsmanager:*:*:secret:{" + argument + "}*") for a in actions]
