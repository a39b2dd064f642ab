"""Secrets Manager actions: find secrets, rotate vendor API keys stored in them, Lambda rotation.

A vendor key is rotated either through the vendor's API (mint, check, revoke endpoints, with an admin token
that itself lives in Secrets Manager) or by a person (the playbook's gate asks them to paste the new key; an
action then verifies a new version appeared). The key values never leave this module except into
Secrets Manager and the vendor's own endpoints.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from integrations.aws import error_code, on_secret
from integrations.context import ActionContext, HttpCallError
from integrations.registry import ActionResult, Change, Permission, action

SecretId = Annotated[str, Field(min_length=1, max_length=2048, description="A secret's ARN or name.")]
REVOKED_TAG = "stanch:revoked-version"
_NAMESPACE = uuid.UUID("7f0c5bde-5d55-4c8e-9a0f-3c1d2a6b9e41")


class SecretInfo(ActionResult):
    arn: str
    name: str
    tags: dict[str, str]
    rotation_enabled: bool
    last_changed: datetime | None = None


class SecretList(ActionResult):
    secrets: list[SecretInfo]
    count: int


@action(
    "aws.secrets.list_secrets",
    mutates=False,
    permissions=["secretsmanager:ListSecrets"],
    calls=["secretsmanager:ListSecrets"],
)
def list_secrets(
    ctx: ActionContext,
    tags: Annotated[dict[str, str], Field(description="Every tag given must match (key and value).")] = {},  # noqa: B006
    name_prefix: Annotated[str | None, Field(description="Only secrets whose name starts with this.")] = None,
    region: Annotated[str | None, Field(description="Defaults to the configured region.")] = None,
) -> SecretList:
    """Find secrets by tag and name prefix, for example every secret tagged vendor=<name>."""
    sm = ctx.aws.client("secretsmanager", region)
    filters: list[dict[str, Any]] = []
    if name_prefix:
        filters.append({"Key": "name", "Values": [name_prefix]})
    for key in tags:
        filters.append({"Key": "tag-key", "Values": [key]})
    found: list[SecretInfo] = []
    kwargs: dict[str, Any] = {"Filters": filters} if filters else {}
    for page in sm.get_paginator("list_secrets").paginate(**kwargs):
        for entry in page["SecretList"]:
            entry_tags = {t["Key"]: t["Value"] for t in entry.get("Tags", [])}
            # tag-key filters match keys only; the pairs are checked here
            if any(entry_tags.get(k) != v for k, v in tags.items()):
                continue
            if name_prefix and not entry["Name"].startswith(name_prefix):
                continue
            found.append(
                SecretInfo(
                    arn=entry["ARN"],
                    name=entry["Name"],
                    tags=entry_tags,
                    rotation_enabled=bool(entry.get("RotationEnabled")),
                    last_changed=entry.get("LastChangedDate"),
                )
            )
    found.sort(key=lambda s: s.name)
    return SecretList(secrets=found, count=len(found))


# ---------------------------------------------------------------- vendor keys


# Vendor HTTP goes through the run's context (`ctx.http`), which a dry-run makes refuse every call.
VendorError = HttpCallError


def _parse_vendor_value(text: str) -> dict[str, str]:
    """A vendor secret: JSON {"api_key": ..., "key_id": ...} or the bare key."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"api_key": text}
    if isinstance(value, dict) and isinstance(value.get("api_key"), str):
        return {k: str(v) for k, v in value.items()}
    return {"api_key": text}


def _secret_value(ctx: ActionContext, secret_id: str, **selector: str) -> dict[str, str]:
    sm = ctx.aws.client("secretsmanager")
    text = sm.get_secret_value(SecretId=secret_id, **selector)["SecretString"]
    value = _parse_vendor_value(text)
    ctx.masker.register(value["api_key"])
    ctx.masker.register(text)
    return value


def _admin_token(ctx: ActionContext, secret_id: str) -> str:
    """The vendor admin token, read once per run (a fan-out over hundreds of keys shares it)."""

    def read() -> str:
        sm = ctx.aws.client("secretsmanager")
        return str(sm.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"])

    token = ctx.cached(("vendor-admin-token", secret_id), read)
    ctx.masker.register(token)
    return token


class VendorRotation(Change):
    secret: str
    status: Literal["rotated", "already-rotated", "manual", "would-rotate"]
    new_version_id: str | None = None
    previous_version_id: str | None = None
    checked: bool = False
    old_key_revoked: bool = False


@action(
    "aws.secrets.rotate_vendor_secret",
    mutates=True,
    permissions=[
        *on_secret(
            "secret_id",
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:TagResource",
        ),
        *on_secret("admin_token_secret_id", "secretsmanager:GetSecretValue"),
    ],
    calls=[
        "POST mint_url (vendor)",
        "secretsmanager:PutSecretValue (AWSPENDING)",
        "GET check_url (vendor, with the new key)",
        "secretsmanager:UpdateSecretVersionStage (AWSCURRENT)",
        "POST revoke_url (vendor, the old key)",
    ],
)
def rotate_vendor_secret(
    ctx: ActionContext,
    secret_id: SecretId,
    mint_url: Annotated[
        str | None, Field(description="The vendor's endpoint that creates a key; none means a person rotates it.")
    ] = None,
    revoke_url: Annotated[str | None, Field(description="Revokes a key; {key_id} is replaced by the old key's id.")] = None,
    check_url: Annotated[str | None, Field(description="Answers 2xx when called with a working key.")] = None,
    admin_token_secret_id: Annotated[
        str | None, Field(description="The secret holding the vendor admin token used to mint and revoke.")
    ] = None,
) -> VendorRotation:
    """Rotate a vendor API key stored in a secret: mint, store (AWSPENDING), check, promote, revoke the old key.

    With no mint_url the rotation waits on a person (status `manual`): the playbook's gate asks them to put a
    new key into the secret, then aws.secrets.verify_rotation checks it. Re-running resumes a partial rotation;
    the mint call carries an idempotency key, so a crash between minting and storing does not mint twice.
    """
    sm = ctx.aws.client("secretsmanager")
    described = sm.describe_secret(SecretId=secret_id)
    name = str(described["Name"])
    stages: dict[str, list[str]] = described.get("VersionIdsToStages", {})
    token = str(uuid.uuid5(_NAMESPACE, f"{ctx.run.incident_id}|{described['ARN']}"))
    current_version = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
    revoked_tag = {t["Key"]: t["Value"] for t in described.get("Tags", [])}.get(REVOKED_TAG)
    base: dict[str, Any] = {"secret": name}
    if mint_url is None:
        return VendorRotation(
            changed=False,
            dry_run=ctx.dry_run,
            status="manual",
            previous_version_id=current_version,
            detail=f"{name}: waits on a person to put a new key into the secret (no vendor API configured)",
            **base,
        )
    if not admin_token_secret_id:
        raise ValueError("a vendor API rotation needs admin_token_secret_id (the secret holding the admin token)")
    for url in (mint_url, revoke_url, check_url):
        if url:
            ctx.http.check_url(url)
    ours = stages.get(token)
    if ours is not None and "AWSCURRENT" in ours:
        previous = next((v for v, s in stages.items() if "AWSPREVIOUS" in s), None)
        if not revoke_url or revoked_tag == previous or previous is None:
            return VendorRotation(
                changed=False,
                dry_run=ctx.dry_run,
                status="already-rotated",
                new_version_id=token,
                previous_version_id=previous,
                checked=True,
                old_key_revoked=bool(revoke_url),
                detail=f"{name} is already rotated for {ctx.run.incident_id}",
                **base,
            )
    if ctx.dry_run:
        return VendorRotation(
            changed=True,
            dry_run=True,
            status="would-rotate",
            previous_version_id=current_version,
            detail=f"would mint a new key for {name}, check it, promote it and revoke the old one",
            **base,
        )
    admin = _admin_token(ctx, admin_token_secret_id)
    if ours is None:
        old = _secret_value(ctx, secret_id, VersionStage="AWSCURRENT")
        minted = ctx.http.call("POST", mint_url, admin, {"name": name}, idempotency=token)
        new = _parse_vendor_value(json.dumps(minted)) if isinstance(minted, dict) else {}
        if not new.get("api_key"):
            raise VendorError(f"the vendor's mint endpoint answered without an api_key for {name}")
        ctx.masker.register(new["api_key"])
        sm.put_secret_value(
            SecretId=secret_id, ClientRequestToken=token, SecretString=json.dumps(new), VersionStages=["AWSPENDING"]
        )
        previous_version = current_version
    else:
        new = _secret_value(ctx, secret_id, VersionId=token)
        previous_version = current_version if "AWSCURRENT" not in ours else None
        if previous_version is None:
            previous_version = next((v for v, s in stages.items() if "AWSPREVIOUS" in s), None)
        old = _secret_value(ctx, secret_id, VersionId=previous_version) if previous_version else {}
    checked = False
    if check_url:
        ctx.http.call("GET", check_url, new["api_key"])
        checked = True
    if "AWSCURRENT" not in (ours or []):
        sm.update_secret_version_stage(
            SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=current_version
        )
        sm.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=token)
    revoked = False
    if revoke_url and old.get("api_key"):
        url = revoke_url.replace("{key_id}", old.get("key_id", ""))
        ctx.http.call("POST", url, admin, {"key_id": old.get("key_id"), "api_key": old["api_key"]})
        sm.tag_resource(SecretId=secret_id, Tags=[{"Key": REVOKED_TAG, "Value": str(previous_version)}])
        revoked = True
    ctx.logger.info("Rotated vendor key in %s (checked: %s, old key revoked: %s)", name, checked, revoked)
    return VendorRotation(
        changed=True,
        status="rotated",
        new_version_id=token,
        previous_version_id=previous_version,
        checked=checked,
        old_key_revoked=revoked,
        detail=f"{name}: new key stored{' and checked' if checked else ''}{'; old key revoked' if revoked else ''}",
        **base,
    )


class VersionCheck(ActionResult):
    secret: str
    rotated: bool
    current_version_id: str
    checked: bool = False


@action(
    "aws.secrets.verify_rotation",
    mutates=False,
    permissions=[
        *on_secret("secret_id", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"),
    ],
    calls=["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "GET check_url (vendor)"],
)
def verify_rotation(
    ctx: ActionContext,
    secret_id: SecretId,
    previous_version_id: Annotated[str, Field(description="The version that was current before the rotation.")],
    check_url: Annotated[str | None, Field(description="Answers 2xx when called with a working key.")] = None,
) -> VersionCheck:
    """Check that a person's rotation happened: a new current version, and (where offered) that the key works."""
    sm = ctx.aws.client("secretsmanager")
    described = sm.describe_secret(SecretId=secret_id)
    stages: dict[str, list[str]] = described.get("VersionIdsToStages", {})
    current = next((v for v, s in stages.items() if "AWSCURRENT" in s), "")
    if ctx.dry_run:  # a dry-run rotated nothing, so there is nothing to check and no key to use
        return VersionCheck(
            secret=str(described["Name"]), rotated=current != previous_version_id, current_version_id=current
        )
    if current == previous_version_id:
        raise RuntimeError(f"{described['Name']} has no new version yet: put the new key into the secret first")
    checked = False
    if check_url:
        value = _secret_value(ctx, secret_id, VersionStage="AWSCURRENT")
        ctx.http.call("GET", check_url, value["api_key"])
        checked = True
    return VersionCheck(secret=str(described["Name"]), rotated=True, current_version_id=current, checked=checked)


class LambdaRotation(Change):
    secret: str
    version_id: str | None = None


@action(
    "aws.secrets.rotate_secret",
    mutates=True,
    permissions=[
        *on_secret("secret_id", "secretsmanager:DescribeSecret", "secretsmanager:RotateSecret"),
        Permission("lambda:InvokeFunction", "*"),
    ],
    calls=["secretsmanager:DescribeSecret", "secretsmanager:RotateSecret"],
)
def rotate_secret(ctx: ActionContext, secret_id: SecretId) -> LambdaRotation:
    """Start a secret's own rotation (its rotation Lambda), once per incident."""
    sm = ctx.aws.client("secretsmanager")
    described = sm.describe_secret(SecretId=secret_id)
    name = str(described["Name"])
    if not described.get("RotationEnabled") and not described.get("RotationLambdaARN"):
        raise RuntimeError(f"{name} has no rotation Lambda: use aws.secrets.rotate_vendor_secret instead")
    token = str(uuid.uuid5(_NAMESPACE, f"lambda|{ctx.run.incident_id}|{described['ARN']}"))
    if token in described.get("VersionIdsToStages", {}):
        return LambdaRotation(
            changed=False, dry_run=ctx.dry_run, secret=name, version_id=token, detail=f"{name} already rotated"
        )
    if ctx.dry_run:
        return LambdaRotation(changed=True, dry_run=True, secret=name, detail=f"would rotate {name} with its Lambda")
    try:
        sm.rotate_secret(SecretId=secret_id, ClientRequestToken=token)
    except Exception as exc:
        if error_code(exc) != "InvalidRequestException":
            raise
        raise RuntimeError(f"{name}: a rotation is already in progress") from None
    return LambdaRotation(changed=True, secret=name, version_id=token, detail=f"rotated {name} with its Lambda")
