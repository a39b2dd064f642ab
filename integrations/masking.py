"""Secret hygiene: find credential-shaped strings and registered secret values, and mask them."""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable
from typing import Any

MASK = "***"

# Shapes of credentials. Access key ids (AKIA/ASIA...) are identifiers, not secrets: they stay visible.
_PATTERNS = [
    # AWS secret access keys: 40 base64 characters mixing cases and digits.
    r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+=]{0,39}[a-z])(?=[A-Za-z0-9/+=]{0,39}[A-Z])"
    r"(?=[A-Za-z0-9/+=]{0,39}[0-9])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
    # AWS session tokens start with one of these base64 prefixes.
    r"(?:FwoGZXIvYXdz|IQoJb3JpZ2lu)[A-Za-z0-9/+=]{20,}",
    # Slack tokens and webhook URLs.
    r"xox[abposre]-[A-Za-z0-9-]{8,}",
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
    # GitHub tokens.
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"github_pat_[A-Za-z0-9_]{40,}",
    # Common vendor API keys (OpenAI-style sk-..., Stripe sk_live_...).
    r"sk-(?:proj-|live-)?[A-Za-z0-9_-]{20,}",
    r"sk_live_[A-Za-z0-9]{16,}",
    # PEM private keys.
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"ed25519-sk:[A-Za-z0-9_-]{43}",  # the approval service's private key (`stanch keys init`)
]
CREDENTIAL_RE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))


def looks_secret(text: str) -> bool:
    """True when the text contains something shaped like a credential."""
    return bool(CREDENTIAL_RE.search(text))


# Told of every value any masker learns (integrations.context hands each to the active recording tape, so a
# bundle is masked of everything the run's masker knows, whoever registered it).
_listeners: list[Callable[[str], None]] = []


def on_register(listener: Callable[[str], None]) -> None:
    """Call `listener(value)` for every secret value registered with any SecretMasker from now on (idempotent)."""
    if listener not in _listeners:
        _listeners.append(listener)


class SecretMasker:
    """Masks credential shapes and every value registered during a run."""

    def __init__(self, tell: bool = True) -> None:
        """`tell`: hand each value registered to the `on_register` listeners (False for a recorder's own masker)."""
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._tell = tell

    def register(self, value: str | None) -> None:
        if value and len(value) >= 6:
            with self._lock:
                self._values.add(value)
            if self._tell:  # told each time: a recording that began since the last time hears it too
                for listener in list(_listeners):
                    listener(value)

    def mask(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, MASK)
        return CREDENTIAL_RE.sub(MASK, text)

    def mask_data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {key: self.mask_data(child) for key, child in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_data(child) for child in value]
        return value


class MaskingFilter(logging.Filter):
    """A logging filter that rewrites each record with credential shapes and every active run's secrets masked.

    One filter serves every run in the process: runs add their maskers, so a run starting never takes away
    the masking of another that is still going (maskers are held weakly and leave with their run).
    """

    def __init__(self, *maskers: SecretMasker):
        super().__init__("stanch-masking")
        self.maskers: weakref.WeakSet[SecretMasker] = weakref.WeakSet(maskers)

    def mask(self, text: str) -> str:
        for masker in list(self.maskers):
            text = masker.mask(text)
        return CREDENTIAL_RE.sub(MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not take the log line with it
            message = str(record.msg)
        masked = self.mask(message)
        if masked != message or record.args:
            record.msg, record.args = masked, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_PROCESS_FILTER = MaskingFilter()


def install_log_masking(
    masker: SecretMasker,
    logger_names: tuple[str, ...] = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "stanch"),
) -> None:
    """Mask `masker`'s secrets in everything the named loggers and their handlers emit (idempotent)."""
    _PROCESS_FILTER.maskers.add(masker)
    for name in logger_names:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if _PROCESS_FILTER not in target.filters:
                target.addFilter(_PROCESS_FILTER)
