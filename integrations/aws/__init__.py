"""AWS actions, one module per service: iam, secrets, cloudtrail, ec2."""

from __future__ import annotations

from typing import Any


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
