"""Secrets Manager actions against moto's server, and vendor keys against the vendor API stand-in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_actions_aws import four_steps, make_ctx

from integrations.aws import secrets

PREFIX = "vendors/acme-ai/"
ADMIN = f"{PREFIX}admin-token"


def value(sandbox: Any, name: str, **selector: str) -> dict[str, str]:
    # moto answers a bare GetSecretValue with the first value, not AWSCURRENT's: always name the stage
    selector = selector or {"VersionStage": "AWSCURRENT"}
    raw = sandbox.client("secretsmanager").get_secret_value(SecretId=name, **selector)["SecretString"]
    return dict(json.loads(raw))


def test_list_secrets_by_vendor_tag_and_prefix(sandbox: Any) -> None:
    ctx = make_ctx(sandbox, False)
    found = secrets.list_secrets(ctx, tags={"vendor": "acme-ai"})
    assert [s.name for s in found.secrets] == [f"{PREFIX}batch-jobs", f"{PREFIX}chat-service", f"{PREFIX}ci-pipeline"]
    manual = secrets.list_secrets(ctx, tags={"vendor": "acme-ai", "rotation": "manual"})
    assert [s.name for s in manual.secrets] == [f"{PREFIX}ci-pipeline"]
    assert secrets.list_secrets(ctx, name_prefix="apps/").count == 1
    assert "api_key" not in found.model_dump_json()


def test_rotate_vendor_secret_four_steps_and_the_old_key_is_revoked(sandbox: Any) -> None:
    name = f"{PREFIX}chat-service"
    old = value(sandbox, name)
    urls = sandbox.vendor_urls()
    four_steps(
        sandbox,
        lambda ctx: secrets.rotate_vendor_secret(ctx, secret_id=name, admin_token_secret_id=ADMIN, **urls),
        lambda: value(sandbox, name)["key_id"],
    )
    new = value(sandbox, name)
    assert new["key_id"] != old["key_id"]
    assert sandbox.vendor.is_active(new["api_key"]) and not sandbox.vendor.is_active(old["api_key"])
    assert value(sandbox, name, VersionStage="AWSPREVIOUS")["key_id"] == old["key_id"]
    result = secrets.rotate_vendor_secret(make_ctx(sandbox, False), secret_id=name, admin_token_secret_id=ADMIN, **urls)
    assert result.status == "already-rotated"
    dumped = result.model_dump_json()
    assert new["api_key"] not in dumped and old["api_key"] not in dumped


def test_a_failed_revocation_is_finished_by_a_rerun_without_minting_again(sandbox: Any) -> None:
    name = f"{PREFIX}batch-jobs"
    old = value(sandbox, name)
    urls = sandbox.vendor_urls()
    broken = dict(urls, revoke_url=urls["revoke_url"].replace("/revoke", "/revoke-typo"))
    with pytest.raises(secrets.VendorError, match="answered 404"):
        secrets.rotate_vendor_secret(make_ctx(sandbox, False), secret_id=name, admin_token_secret_id=ADMIN, **broken)
    new = value(sandbox, name)
    assert new["key_id"] != old["key_id"] and sandbox.vendor.is_active(new["api_key"])
    assert sandbox.vendor.is_active(old["api_key"]), "not yet revoked"
    minted_before = len(sandbox.vendor.keys)
    result = secrets.rotate_vendor_secret(make_ctx(sandbox, False), secret_id=name, admin_token_secret_id=ADMIN, **urls)
    assert result.changed and result.old_key_revoked
    assert not sandbox.vendor.is_active(old["api_key"])
    assert len(sandbox.vendor.keys) == minted_before, "no second key was minted"
    assert value(sandbox, name)["key_id"] == new["key_id"]


def test_a_secret_without_vendor_api_waits_on_a_person_then_is_verified(sandbox: Any) -> None:
    name = f"{PREFIX}ci-pipeline"
    ctx = make_ctx(sandbox, False)
    waiting = secrets.rotate_vendor_secret(ctx, secret_id=name)
    assert waiting.status == "manual" and not waiting.changed
    with pytest.raises(RuntimeError, match="has no new version yet"):
        secrets.verify_rotation(ctx, secret_id=name, previous_version_id=str(waiting.previous_version_id))
    fresh = sandbox.vendor.mint("ci-pipeline")  # what the person does at the vendor's console...
    sandbox.client("secretsmanager").put_secret_value(
        SecretId=name, SecretString=json.dumps({"api_key": fresh.api_key, "key_id": fresh.key_id})
    )  # ...and in Secrets Manager
    checked = secrets.verify_rotation(
        ctx,
        secret_id=name,
        previous_version_id=str(waiting.previous_version_id),
        check_url=sandbox.vendor_urls()["check_url"],
    )
    assert checked.rotated and checked.checked


def test_vendor_endpoints_must_be_https_outside_loopback(sandbox: Any) -> None:
    with pytest.raises(ValueError, match="must be https://"):
        secrets.rotate_vendor_secret(
            make_ctx(sandbox, False),
            secret_id=f"{PREFIX}chat-service",
            mint_url="http://vendor.example.com/v1/keys",
            admin_token_secret_id=ADMIN,
        )


def test_rotate_secret_with_its_lambda_four_steps(sandbox: Any) -> None:
    sm = sandbox.client("secretsmanager")
    sm.create_secret(Name="db/password", SecretString="sandbox-db-password")
    sm.rotate_secret(SecretId="db/password", RotationRules={"AutomaticallyAfterDays": 30})
    pending = [v for v, s in sm.describe_secret(SecretId="db/password")["VersionIdsToStages"].items() if "AWSPENDING" in s]
    for version in pending:  # the setup's own rotation request, finished
        sm.update_secret_version_stage(SecretId="db/password", VersionStage="AWSPENDING", RemoveFromVersionId=version)

    def versions() -> list[str]:
        return sorted(sm.describe_secret(SecretId="db/password")["VersionIdsToStages"])

    four_steps(sandbox, lambda ctx: secrets.rotate_secret(ctx, secret_id="db/password"), versions)


@pytest.mark.parametrize("boundary", ["minted", "stored", "checked", "promoted", "revoked"])
def test_a_rerun_under_a_new_incident_finishes_the_vendor_rotation_without_minting_again(
    sandbox: Any, boundary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"{PREFIX}chat-service"
    old = value(sandbox, name)
    urls = sandbox.vendor_urls()
    before = len(sandbox.vendor.keys)

    def crash(step: str) -> None:
        if step == boundary:
            raise KeyboardInterrupt(step)  # a killed process: nothing after it runs

    monkeypatch.setattr(secrets, "_boundary", crash)
    with pytest.raises(KeyboardInterrupt):
        secrets.rotate_vendor_secret(
            make_ctx(sandbox, False, "inc-first"), secret_id=name, admin_token_secret_id=ADMIN, **urls
        )
    assert sandbox.vendor.is_active(value(sandbox, name)["api_key"]), "the secret's current key works"
    monkeypatch.undo()
    result = secrets.rotate_vendor_secret(
        make_ctx(sandbox, False, "inc-second"), secret_id=name, admin_token_secret_id=ADMIN, **urls
    )
    assert result.changed and result.old_key_revoked
    new = value(sandbox, name)
    assert new["key_id"] != old["key_id"] and sandbox.vendor.is_active(new["api_key"])
    assert not sandbox.vendor.is_active(old["api_key"])
    assert len(sandbox.vendor.keys) == before + 1, "exactly one key was minted"
    again = secrets.rotate_vendor_secret(
        make_ctx(sandbox, False, "inc-third"), secret_id=name, admin_token_secret_id=ADMIN, **urls
    )
    assert again.status == "already-rotated" and not again.changed
    assert len(sandbox.vendor.keys) == before + 1


def test_a_rotation_older_than_the_window_is_rotated_again(sandbox: Any) -> None:
    name = f"{PREFIX}chat-service"
    urls = sandbox.vendor_urls()
    first = secrets.rotate_vendor_secret(make_ctx(sandbox, False), secret_id=name, admin_token_secret_id=ADMIN, **urls)
    again = secrets.rotate_vendor_secret(
        make_ctx(sandbox, False, "inc-later"), secret_id=name, admin_token_secret_id=ADMIN, rotated_within_hours=0, **urls
    )
    assert again.status == "rotated" and again.previous_version_id == first.new_version_id
