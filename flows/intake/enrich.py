"""What an alert leaves out, looked up: the user that owns a key (AWS), the key id a GitHub alert found.

Nothing here returns or logs a secret: from GitHub's answer only the AWS key id is kept.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from flows.config import Settings, error_summary

_log = logging.getLogger("stanch.intake")
_KEY_ID_RE = re.compile(r"\b(AKIA[A-Z0-9]{16})\b")
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
GITHUB_AWS_TYPES = ("aws_access_key_id", "aws_secret_access_key", "aws_temporary_access_key_id")


class EnrichError(RuntimeError):
    """A look-up that failed; the message names what was asked and why it failed (never a secret)."""


def key_owner(settings: Settings, access_key_id: str, account: str | None) -> str | None:
    """The IAM user that owns `access_key_id` (GetAccessKeyLastUsed), asked in the alert's account when it is
    configured under aws.accounts; None when the key is not found there."""
    from integrations.context import AwsClients

    target = account if account and account in settings.aws.accounts else None
    clients = AwsClients.from_settings(settings.aws, "intake", account=target, read_only=True)
    iam = clients.client("iam")
    try:
        answer = iam.get_access_key_last_used(AccessKeyId=access_key_id)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchEntity", "AccessDenied", "AccessDeniedException", "InvalidClientTokenId"):
            # AccessDenied is what IAM answers for a key of another account
            _log.info("no owner found for %s: %s", access_key_id, code)
            return None
        raise EnrichError(f"GetAccessKeyLastUsed for {access_key_id} failed: {error_summary(exc)}") from None
    name = answer.get("UserName")
    return str(name) if isinstance(name, str) and name else None


def github_key_id(api_url: str, token: str, repository: str, number: int, timeout: float = 10) -> str | None:
    """The AWS access key id of a GitHub secret-scanning alert (GET .../secret-scanning/alerts/{number}); only
    the key id is kept from the answer. None when the secret holds no AWS key id."""
    if not _REPO_RE.fullmatch(repository):
        raise EnrichError(f"repository {repository[:200]!r} is not owner/name")
    url = f"{api_url.rstrip('/')}/repos/{urllib.parse.quote(repository)}/secret-scanning/alerts/{int(number)}"
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise EnrichError("intake.github_api_url must be https (plain http only on loopback)")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "stanch-intake",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked above
            body = response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        raise EnrichError(f"GitHub answered {exc.code} for {repository} alert {number}") from None
    except (OSError, ValueError) as exc:
        raise EnrichError(f"GitHub could not be asked about {repository} alert {number}: {type(exc).__name__}") from None
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise EnrichError(f"GitHub's answer for {repository} alert {number} is not JSON") from None
    secret = data.get("secret") if isinstance(data, dict) else None
    found = _KEY_ID_RE.search(secret) if isinstance(secret, str) else None
    return found.group(1) if found else None
