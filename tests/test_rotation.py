"""Rotating an access key stored in Secrets Manager: never zero working keys, resumable after a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_actions_aws import four_steps, make_ctx

from integrations.aws import iam

USER = "svc-app"
SECRET = "apps/svc-app/aws"


@pytest.fixture
def stored_key(sandbox: Any) -> str:
    """A workload user whose only key is stored in a secret; returns that key's id."""
    client = sandbox.client("iam")
    client.create_user(UserName=USER)
    made = client.create_access_key(UserName=USER)["AccessKey"]
    pair = {"AccessKeyId": made["AccessKeyId"], "SecretAccessKey": made["SecretAccessKey"]}
    sandbox.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps(pair))
    return str(made["AccessKeyId"])


def keys(sandbox: Any) -> dict[str, str]:
    metas = sandbox.client("iam").list_access_keys(UserName=USER)["AccessKeyMetadata"]
    return {m["AccessKeyId"]: m["Status"] for m in metas}


def stored(sandbox: Any, stage: str = "AWSCURRENT") -> str:
    value = sandbox.client("secretsmanager").get_secret_value(SecretId=SECRET, VersionStage=stage)
    return str(json.loads(value["SecretString"])["AccessKeyId"])


def stages(sandbox: Any) -> list[str]:
    described = sandbox.client("secretsmanager").describe_secret(SecretId=SECRET)
    return sorted(s for v in described["VersionIdsToStages"].values() for s in v)


def rotate(sandbox: Any, old: str, dry_run: bool = False, **extra: Any) -> iam.Rotation:
    return iam.rotate_access_key(make_ctx(sandbox, dry_run), user_name=USER, secret_id=SECRET, access_key_id=old, **extra)


def assert_rotated(sandbox: Any, old: str) -> None:
    current = stored(sandbox)
    assert current != old
    assert keys(sandbox) == {old: "Inactive", current: "Active"}, "exactly the old key and one new key"
    assert "AWSPENDING" not in stages(sandbox)
    tags = sandbox.client("iam").list_user_tags(UserName=USER)["Tags"]
    assert not [t for t in tags if t["Key"].startswith(iam.ROTATION_TAG_PREFIX)]


def test_rotate_access_key_four_steps(sandbox: Any, stored_key: str) -> None:
    four_steps(sandbox, lambda ctx: rotate_with(ctx, stored_key), lambda: (stored(sandbox), keys(sandbox)))
    assert_rotated(sandbox, stored_key)


def rotate_with(ctx: Any, old: str) -> iam.Rotation:
    return iam.rotate_access_key(ctx, user_name=USER, secret_id=SECRET, access_key_id=old)


@pytest.mark.parametrize("boundary", ["tagged", "created", "stored", "verified", "promoted", "deactivated"])
def test_a_crash_at_each_boundary_then_a_rerun_converges(
    sandbox: Any, stored_key: str, boundary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_boundary = iam._boundary

    def crash(name: str) -> None:
        if name == boundary:
            raise iam.RotationCrash(name)

    monkeypatch.setattr(iam, "_boundary", crash)
    with pytest.raises(iam.RotationCrash):
        rotate(sandbox, stored_key)
    # At the moment of the crash a working key is stored: the secret's current key is Active.
    assert keys(sandbox)[stored(sandbox)] == "Active"
    monkeypatch.setattr(iam, "_boundary", real_boundary)
    result = rotate(sandbox, stored_key)
    assert result.changed is (boundary != "deactivated")
    assert_rotated(sandbox, stored_key)
    again = rotate(sandbox, stored_key)
    assert not again.changed and again.state == "already-rotated"
    assert len(keys(sandbox)) == 2, "no key was left behind or made twice"


def test_a_failure_before_deactivation_keeps_the_old_key_and_removes_the_new(
    sandbox: Any, stored_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any) -> None:
        raise RuntimeError("the new key did not authenticate: InvalidClientTokenId")

    monkeypatch.setattr(iam, "_verify_key", refuse)
    with pytest.raises(RuntimeError, match="did not authenticate"):
        rotate(sandbox, stored_key)
    assert keys(sandbox) == {stored_key: "Active"}
    assert stored(sandbox) == stored_key


def test_two_keys_need_an_explicit_choice_of_which_to_delete(sandbox: Any, stored_key: str) -> None:
    other = sandbox.client("iam").create_access_key(UserName=USER)["AccessKey"]["AccessKeyId"]
    with pytest.raises(RuntimeError, match=f"already has two keys \\({stored_key} and {other}\\)"):
        rotate(sandbox, stored_key)
    assert keys(sandbox) == {stored_key: "Active", other: "Active"}, "nothing is guessed or removed"
    with pytest.raises(ValueError, match="remove_key_id must be"):
        rotate(sandbox, stored_key, remove_key_id=stored_key)
    result = rotate(sandbox, stored_key, remove_key_id=other)
    assert result.removed_access_key_id == other
    assert_rotated(sandbox, stored_key)


def test_delete_access_key_four_steps_and_refusals(sandbox: Any, stored_key: str) -> None:
    with pytest.raises(RuntimeError, match="is Active: deactivate it first"):
        iam.delete_access_key(make_ctx(sandbox, False), access_key_id=stored_key, user_name=USER)
    rotate(sandbox, stored_key)
    new = stored(sandbox)
    sandbox.client("iam").update_access_key(UserName=USER, AccessKeyId=new, Status="Inactive")
    with pytest.raises(RuntimeError, match="is the key apps/svc-app/aws holds as current"):
        iam.delete_access_key(make_ctx(sandbox, False), access_key_id=new, user_name=USER, secret_id=SECRET)
    sandbox.client("iam").update_access_key(UserName=USER, AccessKeyId=new, Status="Active")
    four_steps(
        sandbox,
        lambda ctx: iam.delete_access_key(ctx, access_key_id=stored_key, user_name=USER, secret_id=SECRET),
        lambda: keys(sandbox),
    )
    assert keys(sandbox) == {new: "Active"}


@pytest.mark.parametrize("boundary", ["tagged", "created", "stored", "verified", "promoted", "deactivated"])
def test_a_rerun_under_a_new_incident_finishes_the_rotation_and_mints_no_second_usable_key(
    sandbox: Any, stored_key: str, boundary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.context import AwsClients, is_read_only_operation

    broken: list[str] = []

    def current_works(model: Any = None, **_: Any) -> None:
        # After every change either run makes: the key the secret hands out is Active.
        if not is_read_only_operation(getattr(model, "name", "")) and keys(sandbox).get(stored(sandbox)) != "Active":
            broken.append(model.name)

    def crash(name: str) -> None:
        if name == boundary:
            raise iam.RotationCrash(name)

    entry = ("after-call", current_works)
    AwsClients.event_hooks.append(entry)
    sandbox.record_aws()
    try:
        monkeypatch.setattr(iam, "_boundary", crash)
        with pytest.raises(iam.RotationCrash):
            iam.rotate_access_key(
                make_ctx(sandbox, False, "inc-first"), user_name=USER, secret_id=SECRET, access_key_id=stored_key
            )
        made_first = [k for k in keys(sandbox) if k != stored_key]
        monkeypatch.undo()
        result = iam.rotate_access_key(
            make_ctx(sandbox, False, "inc-second"), user_name=USER, secret_id=SECRET, access_key_id=stored_key
        )
    finally:
        AwsClients.event_hooks.remove(entry)
    assert result.state == ("already-rotated" if boundary == "deactivated" else "rotated")
    assert_rotated(sandbox, stored_key)
    assert not broken, f"the secret's current key was not Active after {broken}"
    creates = sandbox.aws_operations().count("iam:CreateAccessKey")
    if boundary == "created":
        # The first key's secret died with the process before it was stored: nobody can hold it, so it is
        # deleted (never stored, never used) and one more is made. Every other boundary reuses the first.
        assert creates == 2 and result.deleted_half_made == made_first
    else:
        assert creates == 1, "no second key was minted"
        assert made_first in ([], [stored(sandbox)])
