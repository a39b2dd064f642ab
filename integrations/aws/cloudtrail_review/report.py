"""The review report (`stanch.review/v1`) and the event categories it sorts findings into."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from integrations.registry import ActionResult

SCHEMA = "stanch.review/v1"

# eventName -> category. The events an attacker uses to stay, hide, take data, read secrets or open doors.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "persistence": (
        "CreateUser",
        "CreateAccessKey",
        "CreateLoginProfile",
        "UpdateLoginProfile",
        "AttachUserPolicy",
        "PutUserPolicy",
        "AddUserToGroup",
        "CreateRole",
        "UpdateAssumeRolePolicy",
        "AttachRolePolicy",
        "PutRolePolicy",
        "CreatePolicyVersion",
        "SetDefaultPolicyVersion",
        "CreateVirtualMFADevice",
        "EnableMFADevice",
        "GetFederationToken",
        "CreateServiceSpecificCredential",
        "UploadSSHPublicKey",
    ),
    "defense_evasion": (
        "StopLogging",
        "DeleteTrail",
        "UpdateTrail",
        "PutEventSelectors",
        "DeleteDetector",
        "UpdateDetector",
        "DeleteFlowLogs",
        "DisableSecurityHub",
        "DeleteConfigRule",
        "StopConfigurationRecorder",
        "DeleteConfigurationRecorder",
        "PutBucketLogging",
        "DisassociateFromMasterAccount",
    ),
    "exfiltration": (
        "ModifySnapshotAttribute",
        "ModifyImageAttribute",
        "ModifyDBSnapshotAttribute",
        "PutBucketPolicy",
        "PutBucketAcl",
        "PutObjectAcl",
        "DeletePublicAccessBlock",
        "PutBucketPublicAccessBlock",
        "CreateSnapshot",
        "CopySnapshot",
        "SharedSnapshotCopyInitiated",
    ),
    "credential_access": (
        "GetSecretValue",
        "BatchGetSecretValue",
        "GetParameter",
        "GetParameters",
        "GetParametersByPath",
        "GetPasswordData",
        "GetSessionToken",
        "AssumeRole",
        "Decrypt",
    ),
    "network_exposure": (
        "AuthorizeSecurityGroupIngress",
        "AuthorizeSecurityGroupEgress",
        "CreateSecurityGroup",
        "ModifyInstanceAttribute",
        "CreateInternetGateway",
        "AttachInternetGateway",
        "CreateRoute",
        "ReplaceRoute",
        "AssociateAddress",
    ),
}
CATEGORY_OF = {name: category for category, names in CATEGORIES.items() for name in names}
DERIVING = ("GetSessionToken", "GetFederationToken", "AssumeRole")


class IpSeen(BaseModel):
    ip: str
    count: int
    first_seen: str
    last_seen: str


class Finding(BaseModel):
    category: str
    event_name: str
    event_id: str
    event_time: str
    access_key_id: str | None
    source_ip: str | None
    region: str | None
    error_code: str | None = Field(None, description="Set when the call failed: attempted, not done.")
    resources: list[str]


class DerivedKey(BaseModel):
    access_key_id: str
    parent: str
    via: str
    event_id: str
    event_time: str


class CreatedKey(BaseModel):
    access_key_id: str
    user_name: str | None
    created_with: str | None
    event_id: str


class Containable(BaseModel):
    """What the review says to contain: things the reviewed keys created or changed."""

    users: list[str] = Field(default_factory=list)
    access_keys: list[CreatedKey] = Field(default_factory=list)
    login_profiles: list[str] = Field(default_factory=list, description="Users given a console password.")
    roles: list[str] = Field(default_factory=list)
    attached_policies: list[dict[str, str]] = Field(default_factory=list, description="principal, policy_arn")


class Review(ActionResult):
    """The review report; its JSON form (`stanch review-logs --format json`) is the stable shape stanch.review/v1."""

    schema_: str = Field(SCHEMA, alias="schema")
    access_key_ids: list[str]
    principals: list[str] = Field(default_factory=list)
    derived_keys: list[DerivedKey]
    since: str | None
    until: str | None
    events_total: int
    first_event: str | None
    last_event: str | None
    events_by_name: dict[str, int]
    source_ips: list[IpSeen]
    user_agents: dict[str, int]
    regions: dict[str, int]
    error_codes: dict[str, int]
    findings: dict[str, list[Finding]]
    contain: Containable
    files_scanned: int
    bytes_scanned: int
    seconds: float

    model_config = {"populate_by_name": True, "extra": "forbid"}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
