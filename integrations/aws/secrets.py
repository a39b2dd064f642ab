"""Secrets Manager actions: find secrets, rotate vendor API keys stored in them, Lambda rotation.

A vendor key is rotated either through the vendor's API (mint, check, revoke endpoints, with an admin token
that itself lives in Secrets Manager) or by a person (the playbook's gate asks them to paste the new key; an
action then verifies a new version appeared). The key values never leave this module except into
Secrets Manager and the vendor's own endpoints.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from integrations.aws import applied, error_code, on_secret
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


def _boundary(name: str) -> None:
    """A step boundary of the vendor rotation: the crash tests make this raise (a killed process)."""


def _version_for(arn: str, replaced_version: str | None) -> str:
    """The version id (and mint idempotency key) of the rotation away from one version's key: keyed by the
    credential replaced, not by the incident, so a re-run under any incident resumes the same rotation."""
    return str(uuid.uuid5(_NAMESPACE, f"rotate|{arn}|{replaced_version}"))


def _stages_of(ctx: ActionContext, secret_id: str) -> dict[str, list[str]]:
    return dict(ctx.aws.client("secretsmanager").describe_secret(SecretId=secret_id).get("VersionIdsToStages", {}))


def _created(ctx: ActionContext, secret_id: str, version: str) -> datetime | None:
    sm = ctx.aws.client("secretsmanager")
    params: dict[str, Any] = {"SecretId": secret_id}
    while True:  # not pageable in botocore: follow NextToken by hand
        page = sm.list_secret_version_ids(**params)
        for entry in page["Versions"]:
            if entry["VersionId"] == version:
                created = entry.get("CreatedDate")
                return created if isinstance(created, datetime) else None
        if not page.get("NextToken"):
            return None
        params["NextToken"] = page["NextToken"]


@action(
    "aws.secrets.rotate_vendor_secret",
    mutates=True,
    permissions=[
        *on_secret(
            "secret_id",
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "secretsmanager:ListSecretVersionIds",
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
        "secretsmanager:TagResource",
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
    rotated_within_hours: Annotated[
        float,
        Field(
            ge=0,
            le=720,
            description="A rotation Stanch promoted less than this long ago counts as this one (a re-run under "
            "any incident finishes it and mints nothing); an older one is rotated again.",
        ),
    ] = 24,
) -> VendorRotation:
    """Rotate a vendor API key stored in a secret: mint, store (AWSPENDING), check, promote, revoke the old key.

    With no mint_url the rotation waits on a person (status `manual`): the playbook's gate asks them to put a
    new key into the secret, then aws.secrets.verify_rotation checks it. The rotation is keyed by the version it
    replaces (its new version id and the mint's idempotency key derive from it), so a re-run under any incident
    resumes it and mints nothing new. Lost answers: a store, promote or tag whose answer is lost is read back
    and counted done when in place; a lost mint answer is asked again with the same idempotency key.
    """
    sm = ctx.aws.client("secretsmanager")
    described = sm.describe_secret(SecretId=secret_id)
    name = str(described["Name"])
    arn = str(described["ARN"])
    stages: dict[str, list[str]] = described.get("VersionIdsToStages", {})
    current_version = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
    previous = next((v for v, s in stages.items() if "AWSPREVIOUS" in s), None)
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
    # Live state decides: is the current version Stanch's rotation away from the previous one, recently?
    promoted = previous is not None and current_version == _version_for(arn, previous)
    if promoted and current_version:
        created = _created(ctx, secret_id, current_version)
        age = datetime.now(UTC) - created if created else timedelta(0)
        promoted = age <= timedelta(hours=rotated_within_hours)
    replaced = previous if promoted else current_version
    token = _version_for(arn, replaced)
    if promoted and (not revoke_url or revoked_tag == previous):
        return VendorRotation(
            changed=False,
            dry_run=ctx.dry_run,
            status="already-rotated",
            new_version_id=token,
            previous_version_id=previous,
            checked=True,
            old_key_revoked=bool(revoke_url),
            detail=f"{name}: the key of version {previous} is already replaced" + (" and revoked" if revoke_url else ""),
            **base,
        )
    if ctx.dry_run:
        return VendorRotation(
            changed=True,
            dry_run=True,
            status="would-rotate",
            previous_version_id=replaced,
            detail=f"would {'revoke the old key of' if promoted else 'mint a new key for'} {name}"
            + ("" if promoted else ", check it, promote it and revoke the old one"),
            **base,
        )
    admin = _admin_token(ctx, admin_token_secret_id)
    old = _secret_value(ctx, secret_id, VersionId=replaced) if replaced else {}
    if token not in stages:
        minted = ctx.http.call("POST", mint_url, admin, {"name": name}, idempotency=token)
        new = _parse_vendor_value(json.dumps(minted)) if isinstance(minted, dict) else {}
        if not new.get("api_key"):
            raise VendorError(f"the vendor's mint endpoint answered without an api_key for {name}")
        ctx.masker.register(new["api_key"])
        _boundary("minted")
        applied(
            ctx,
            f"store the new key of {name} as AWSPENDING",
            lambda: sm.put_secret_value(
                SecretId=secret_id, ClientRequestToken=token, SecretString=json.dumps(new), VersionStages=["AWSPENDING"]
            ),
            lambda: token in _stages_of(ctx, secret_id),
        )
        _boundary("stored")
    else:
        new = _secret_value(ctx, secret_id, VersionId=token)
    checked = False
    if check_url:
        ctx.http.call("GET", check_url, new["api_key"])
        checked = True
        _boundary("checked")
    if not promoted:
        applied(
            ctx,
            f"promote the new key of {name}",
            lambda: sm.update_secret_version_stage(
                SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=current_version
            ),
            lambda: "AWSCURRENT" in _stages_of(ctx, secret_id).get(token, []),
        )
        _boundary("promoted")
    if "AWSPENDING" in _stages_of(ctx, secret_id).get(token, []):
        applied(
            ctx,
            f"take AWSPENDING off the new version of {name}",
            lambda: sm.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=token),
            lambda: "AWSPENDING" not in _stages_of(ctx, secret_id).get(token, []),
        )
    revoked = False
    if revoke_url and old.get("api_key"):
        url = revoke_url.replace("{key_id}", old.get("key_id", ""))
        ctx.http.call("POST", url, admin, {"key_id": old.get("key_id"), "api_key": old["api_key"]})
        _boundary("revoked")
        tag = [{"Key": REVOKED_TAG, "Value": str(replaced)}]

        def tagged() -> bool:
            found = sm.describe_secret(SecretId=secret_id).get("Tags", [])
            return any(t == tag[0] for t in found)

        applied(ctx, f"record the revocation on {name}", lambda: sm.tag_resource(SecretId=secret_id, Tags=tag), tagged)
        revoked = True
    ctx.logger.info("Rotated vendor key in %s (checked: %s, old key revoked: %s)", name, checked, revoked)
    return VendorRotation(
        changed=True,
        status="rotated",
        new_version_id=token,
        previous_version_id=replaced,
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
    """Start a secret's own rotation (its rotation Lambda), once per incident.

    A lost answer: the request token is looked for among the secret's versions; found means started.
    """
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
        applied(
            ctx,
            f"start the rotation of {name}",
            lambda: sm.rotate_secret(SecretId=secret_id, ClientRequestToken=token),
            lambda: token in sm.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {}),
        )
    except Exception as exc:
        if error_code(exc) != "InvalidRequestException":
            raise
        raise RuntimeError(f"{name}: a rotation is already in progress") from None
    return LambdaRotation(changed=True, secret=name, version_id=token, detail=f"rotated {name} with its Lambda")
