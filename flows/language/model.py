"""The playbook language (apiVersion ``stanch/v1``): the one definition of its schema.

`stanch schema` prints the JSON Schema generated from these models and `playbooks/schema.json` is
that output, committed; a test keeps the two equal.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

API_VERSION = "stanch/v1"

Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"),
    Field(description="Lower-case letters, digits and dashes, starting and ending with a letter or digit."),
]
InputName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$"),
    Field(description="A snake_case name, usable in expressions as inputs.<name>."),
]
ActionKey = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9]*(?:\.[a-z][a-z0-9_]*)+$"),
    Field(description="A registered action, such as aws.iam.deactivate_access_key."),
]
_DURATION_RE = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
Duration = Annotated[
    str | int,
    Field(
        description="Seconds as an integer, or a number with a unit: 30s, 15m, 2h, 1d.",
        json_schema_extra={"pattern": _DURATION_RE.pattern},
    ),
]
Expression = Annotated[
    str,
    StringConstraints(pattern=r"^\s*\$\{\{[\s\S]*\}\}\s*$"),
    Field(description="An expression: ${{ ... }}."),
]


def duration_seconds(value: str | int) -> int:
    """Seconds in a Duration; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as 30s, 15m, 2h, 1d")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    match = _DURATION_RE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration: use seconds or a number with s, m, h or d (15m)")
    return int(match.group(1)) * _UNITS[match.group(2)]


Phase = Literal["contain", "rotate", "review", "notify", "eradicate", "recover"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False, frozen=True)


def _check_duration(value: str | int | None) -> str | int | None:
    if value is not None:
        duration_seconds(value)
    return value


class Metadata(_Strict):
    name: Slug = Field(description="The playbook's name; the Prefect flow is named after it.")
    title: str = Field(min_length=1)
    description: str = ""
    severity: Literal["low", "medium", "high", "critical"]
    tags: list[str] = Field(default_factory=list)
    owner: str | None = None


class Approval(_Strict):
    """A human-approval gate before a step."""

    from_: Slug = Field(alias="from", description="The approver group (a key of `approvers`).")
    min_approvals: int = Field(1, ge=1, le=10, description="Distinct people who must approve.")
    timeout: Duration = Field(description="How long the gate waits. Required: there is no default.")
    on_timeout: Literal["reject", "escalate", "continue"] = Field(
        "reject",
        description="reject: the step and what needs it do not run; escalate: ask `escalate_to` for a "
        "second period, then reject; continue: skip the step and go on. Never an approval.",
    )
    escalate_to: Slug | None = Field(None, description="The group asked when on_timeout is escalate.")
    escalation_timeout: Duration | None = Field(None, description="Defaults to `timeout`.")
    message: str = ""
    separate_duties: bool | Literal["strict"] = Field(
        True,
        description="true: whoever launched the run (as verified, or as claimed) may not approve it; strict: also "
        "refuse every approval while the launcher is unverified (a launch that only claims a name).",
    )

    _durations = field_validator("timeout", "escalation_timeout")(_check_duration)

    @model_validator(mode="after")
    def _escalation_needs_group(self) -> Approval:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ValueError("on_timeout: escalate needs `escalate_to`, the group to escalate to")
        return self


class AwsTarget(_Strict):
    """Where a step's AWS calls go, when not the installation's default account and region."""

    account: str | None = Field(
        None, pattern=r"^\d{12}$", description="An account configured under aws.accounts (its responder role)."
    )
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")


class Step(_Strict):
    id: Slug
    name: str | None = None
    uses: ActionKey
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="The action's arguments.")
    needs: list[Slug] = Field(default_factory=list)
    when: Expression | None = Field(None, description="Run the step only when this is true.")
    for_each: Expression | None = Field(None, description="A list; the step runs once per item (`item`).")
    max_concurrency: int = Field(4, ge=1, le=64)
    phase: Phase
    retries: int = Field(0, ge=0, le=10)
    retry_delay: Duration = "5s"
    timeout: Duration | None = None
    on_failure: Literal["abort", "continue"] = "abort"
    always: bool = Field(
        False,
        description="Run even when a step it needs failed, was rejected or was blocked (a final report). "
        "Not after an abort.",
    )
    approval: Approval | None = None
    aws: AwsTarget | None = Field(None, description="This step's AWS account and region, when not the default.")

    _durations = field_validator("retry_delay", "timeout")(_check_duration)

    @property
    def display_name(self) -> str:
        return self.name or self.id


AlertSource = Literal["aws.health", "aws.guardduty", "github.secret_scanning", "webhook"]
ALERT_FACTS = (
    "source",
    "kind",
    "confirmed",
    "access_key_ids",
    "access_key_id",
    "user_name",
    "account",
    "region",
    "severity",
    "repository",
)


class Trigger(_Strict):
    """An alert that starts this playbook (`stanch serve`'s alert intake), and how its facts become inputs."""

    source: AlertSource | list[AlertSource] = Field(
        description="Where the alert comes from: aws.health, aws.guardduty, github.secret_scanning or webhook "
        "(a generic alert)."
    )
    kind: str | list[str] = Field(
        "*",
        description="The alert's kind (AWS Health eventTypeCode, GuardDuty finding type, GitHub secret_type), "
        "or shell-style patterns of it: CredentialAccess:IAMUser/*.",
    )
    match: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict,
        description="Alert facts that must equal these values: {confirmed: true, account: '123456789012'}.",
    )
    when: Expression | None = Field(None, description="Start only when this is true; it may name only `alert`.")
    inputs: dict[InputName, Any] = Field(
        default_factory=dict,
        description="Inputs from the alert's facts: `access_key_id: ${{ alert.access_key_id }}`. An input not "
        "named here is taken from the fact of the same name when the alert has it.",
    )

    @property
    def sources(self) -> list[str]:
        return [self.source] if isinstance(self.source, str) else list(self.source)

    @property
    def kinds(self) -> list[str]:
        return [self.kind] if isinstance(self.kind, str) else list(self.kind)


class Playbook(_Strict):
    """A breach-response playbook."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        title="Stanch playbook",
        json_schema_extra={"$id": "https://stanch.dev/schema/stanch-v1.json"},
    )

    apiVersion: Literal["stanch/v1"]
    kind: Literal["Playbook"]
    metadata: Metadata
    inputs: dict[InputName, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named inputs, each a JSON Schema fragment; an input without `default` is required.",
    )
    approvers: dict[Slug, list[str]] = Field(default_factory=dict, description="Named groups of approver identities.")
    triggers: list[Trigger] = Field(
        default_factory=list, description="Alerts that start this playbook; the first that matches sets the inputs."
    )
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def required_inputs(self) -> list[str]:
        return [name for name, schema in self.inputs.items() if "default" not in schema]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the language, as committed in playbooks/schema.json."""
    schema = Playbook.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
