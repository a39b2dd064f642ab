"""The alert formats Stanch knows, as pydantic models of the fields it reads.

Lenient where the real format is: unknown fields are kept, most fields are optional, and an account id or a
severity may come as text or a number. What a field Stanch reads must be (a list, an object, text) is enforced,
so a malformed alert is an error naming the field, never a crash further on.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True, frozen=True)


class EventBridgeEvent(_Lenient):
    """The envelope EventBridge wraps AWS Health events and GuardDuty findings in."""

    source: str
    detail_type: str | None = Field(None, alias="detail-type")
    account: str | None = None
    region: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class AffectedEntity(_Lenient):
    entityValue: str | None = None


class HealthDetail(_Lenient):
    """AWS Health event detail; AWS_RISK_CREDENTIALS_EXPOSED names the exposed key in affectedEntities."""

    eventTypeCode: str = "health"
    service: str | None = None
    affectedEntities: list[AffectedEntity] = Field(default_factory=list)


class AccessKeyDetails(_Lenient):
    accessKeyId: str | None = None
    userName: str | None = None
    principalId: str | None = None
    userType: str | None = None


class GuardDutyResource(_Lenient):
    resourceType: str | None = None
    accessKeyDetails: AccessKeyDetails | None = None


class GuardDutyDetail(_Lenient):
    """A GuardDuty finding (schemaVersion 2.0); IAM findings name the key and user in resource.accessKeyDetails."""

    type: str = "finding"
    severity: int | float | None = None
    accountId: str | None = None
    region: str | None = None
    resource: GuardDutyResource | None = None


class SecretScanningAlertBody(_Lenient):
    secret_type: str
    number: int | None = None


class Repository(_Lenient):
    full_name: str | None = None


class SecretScanningWebhook(_Lenient):
    """GitHub's secret_scanning_alert webhook body (created, reopened, resolved, revoked...)."""

    action: str | None = None
    alert: SecretScanningAlertBody
    repository: Repository | None = None
