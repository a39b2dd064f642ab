"""The review report (`stanch.review/v2`) and the event categories it sorts findings into."""

from __future__ import annotations

import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.registry import ActionResult

SCHEMA = "stanch.review/v2"

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
        "CreatePolicy",
        "PutGroupPolicy",
        "AttachGroupPolicy",
        "CreateInstanceProfile",
        "AddRoleToInstanceProfile",
        "CreateTrustAnchor",
        "AddPermission",
        "UpdateFunctionCode",
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
        "DeleteLogGroup",
        "PutConfigurationRecorder",
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
    "execution": ("RunInstances", "SendCommand", "CreateFunction", "StartSession"),
}
CATEGORY_OF = {name: category for category, names in CATEGORIES.items() for name in dict.fromkeys(names)}
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


class ContainEntry(BaseModel):
    """One thing the reviewed credentials made or changed: its `kind`, the ids that name it (user_name,
    role_name, policy_arn, group_id, bucket...), the event that did it, and the later event that undid it."""

    model_config = ConfigDict(extra="allow")

    kind: str
    event_id: str
    event_time: str
    region: str | None = None
    undone_by: str | None = Field(
        None,
        description="Event id of a later successful call by the reviewed or derived credentials that reverted it; "
        "null: still stands as far as this review saw (it sees only those credentials' events).",
    )


class Containable(BaseModel):
    """What to contain, by category; each entry's `undone_by` says whether the attacker already reverted it."""

    model_config = ConfigDict(extra="forbid")

    credentials: list[ContainEntry] = Field(
        default_factory=list, description="access keys, login profiles, MFA devices, sessions minted, roles assumed"
    )
    principals: list[ContainEntry] = Field(
        default_factory=list,
        description="users, roles, policies, attachments, inline policies, group memberships, trust policies, "
        "instance profiles, Roles Anywhere trust anchors and profiles",
    )
    exposure: list[ContainEntry] = Field(
        default_factory=list,
        description="security-group rules, snapshot/AMI/RDS-snapshot shares, bucket policies and ACLs, Lambda "
        "permissions and code",
    )
    logging: list[ContainEntry] = Field(
        default_factory=list, description="trails stopped or deleted, selectors, flow logs, log groups, GuardDuty, Config"
    )
    compute: list[ContainEntry] = Field(default_factory=list, description="instances, SSM commands, functions")
    secrets_read: list[ContainEntry] = Field(default_factory=list, description="secrets and parameters read: rotate them")


class SkippedFile(BaseModel):
    file: str = Field(description="s3://bucket/key, a local path, or LookupEvents.")
    reason: str


class SkippedRecord(BaseModel):
    file: str
    index: int = Field(description="The record's position in the file's Records (from 0).")
    reason: str


MAX_LISTED = 100  # skipped files (and records) listed in a report; the totals count every one


class Skips:
    """What a review could not read, collected across the scanner's threads (each file or record once)."""

    _REMEMBERED = 100_000  # records remembered to count each once when a file is read again for a later key

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.records: dict[tuple[str, int], str] = {}
        self.files_total = 0
        self.records_total = 0
        self._file_names: set[str] = set()
        self._record_ids: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def file(self, name: str, reason: str) -> None:
        with self._lock:
            if name in self._file_names:
                return
            self._file_names.add(name)
            self.files_total += 1
            if len(self.files) < MAX_LISTED:
                self.files[name] = reason

    def record(self, name: str, index: int, reason: str) -> None:
        with self._lock:
            if (name, index) in self._record_ids:
                return
            if len(self._record_ids) < self._REMEMBERED:
                self._record_ids.add((name, index))
            self.records_total += 1
            if len(self.records) < MAX_LISTED:
                self.records[(name, index)] = reason

    def skipped_file(self, name: str) -> bool:
        with self._lock:
            return name in self._file_names

    def fields(self) -> dict[str, Any]:
        """The report's fields for what was skipped."""
        with self._lock:
            return {
                "partial": bool(self.files_total or self.records_total),
                "files_skipped": [SkippedFile(file=f, reason=r) for f, r in sorted(self.files.items())],
                "records_skipped": [SkippedRecord(file=f, index=i, reason=r) for (f, i), r in sorted(self.records.items())],
                "files_skipped_total": self.files_total,
                "records_skipped_total": self.records_total,
            }


class Review(ActionResult):
    """The review report; its JSON form (`stanch review-logs --format json`) is the stable shape stanch.review/v2."""

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
    files_scanned: int = Field(description="Files read or tried, the skipped ones included.")
    bytes_scanned: int
    seconds: float
    partial: bool = Field(False, description="True when a file or a record could not be read (see the skipped lists).")
    files_skipped: list[SkippedFile] = Field(default_factory=list)
    records_skipped: list[SkippedRecord] = Field(default_factory=list)
    files_skipped_total: int = 0
    records_skipped_total: int = 0

    model_config = {"populate_by_name": True, "extra": "forbid"}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
