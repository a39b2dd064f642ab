"""Secret hygiene: credential shapes and registered values are masked in text and logs."""

from __future__ import annotations

import logging

from integrations.masking import MASK, MaskingFilter, SecretMasker, looks_secret

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_credential_shapes_are_found_and_identifiers_are_not() -> None:
    assert looks_secret(f"secret={AWS_SECRET}")
    assert looks_secret("xoxb-1234567890-abcdefghij")
    assert looks_secret("ghp_" + "a1B2" * 9)
    assert looks_secret("sk-proj-" + "Ab3" * 10)
    assert not looks_secret("AKIAIOSFODNN7EXAMPLE")  # an access key id is an identifier
    assert not looks_secret("da39a3ee5e6b4b0d3255bfef95601890afd80709")  # a SHA-1, not a key
    assert not looks_secret("arn:aws:secretsmanager:us-east-1:123456789012:secret:vendors/acme-AbCdEf")


def test_registered_values_are_masked_wherever_they_appear() -> None:
    masker = SecretMasker()
    masker.register("plain-looking-value-42")
    assert masker.mask("got plain-looking-value-42 and " + AWS_SECRET) == f"got {MASK} and {MASK}"
    assert masker.mask_data({"a": ["plain-looking-value-42"]}) == {"a": [MASK]}


def test_logging_filter_masks_messages_arguments_and_tracebacks() -> None:
    masker = SecretMasker()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(MaskingFilter(masker))
    logger = logging.getLogger("stanch.test.masking")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("key %s", AWS_SECRET)
    try:
        raise ValueError(AWS_SECRET)
    except ValueError:
        logger.exception("boom")
    assert records[0].getMessage() == f"key {MASK}"
    assert AWS_SECRET not in (records[1].exc_text or "")
    assert records[1].exc_info is None


def test_a_second_run_does_not_take_away_the_first_runs_masking() -> None:
    from integrations.masking import install_log_masking

    first, second = SecretMasker(), SecretMasker()
    first.register("first-run-secret-value")
    install_log_masking(first, ("stanch.test.two-runs",))
    install_log_masking(second, ("stanch.test.two-runs",))
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("stanch.test.two-runs")
    logger.addHandler(Keep())
    logger.propagate = False
    logger.warning("leaked first-run-secret-value")
    assert records == [f"leaked {MASK}"]


def test_every_registered_value_is_told_to_the_listeners_and_a_quiet_masker_tells_nothing() -> None:
    """What a run's masker learns reaches the recording tape (integrations.context listens here)."""
    from integrations.masking import _listeners, on_register

    heard: list[str] = []
    on_register(heard.append)
    on_register(heard.append)  # idempotent
    try:
        masker = SecretMasker()
        masker.register("minted-key-value-01")
        masker.register("short")  # too short to be masked: not told
        SecretMasker(tell=False).register("recorder-own-value-02")
    finally:
        _listeners.remove(heard.append)
    assert heard == ["minted-key-value-01"]


def test_a_value_registered_during_a_recording_reaches_the_active_tape() -> None:
    from flows.tabletop.replay import Redactor
    from integrations.context import use_tape

    class Tape:
        replaying = False

        def __init__(self) -> None:
            self.redactor = Redactor()

        def secret(self, value: str | None) -> None:
            self.redactor.secret(value)

    tape = Tape()
    previous = use_tape(tape)  # type: ignore[arg-type]
    try:
        SecretMasker().register("run-masker-learned-03")
    finally:
        use_tape(previous)
    SecretMasker().register("after-the-recording-04")
    import base64

    encoded = base64.b64encode(b"run-masker-learned-03").decode()
    assert tape.redactor.redact({"a": f"run-masker-learned-03 {encoded}", "b": "after-the-recording-04"}) == {
        "a": f"{MASK} {MASK}",
        "b": "after-the-recording-04",
    }
