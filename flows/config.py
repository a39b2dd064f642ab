"""One configuration file per installation (`stanch.yaml`), validated by pydantic, with environment overrides.

It never holds a secret value, only references: an environment variable name, a Secrets Manager ARN or a
Prefect Secret block name. Environment overrides use the prefix STANCH_ and `__` between levels, e.g.
STANCH_AWS__ROLE_ARN or STANCH_SLACK__DEFAULT_CHANNEL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from integrations.masking import looks_secret

CONFIG_ENV = "STANCH_CONFIG"
DEFAULT_CONFIG = "stanch.yaml"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and field."""


class SecretRef(BaseModel):
    """Where a secret lives. Exactly one of the three."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = Field(None, description="An environment variable name.")
    secretsmanager_arn: str | None = Field(None, pattern=r"^arn:aws[\w-]*:secretsmanager:")
    prefect_block: str | None = Field(None, description="The name of a Prefect Secret block.")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [v for v in (self.env, self.secretsmanager_arn, self.prefect_block) if v]
        if len(given) != 1:
            raise ValueError("a secret reference names exactly one of env, secretsmanager_arn, prefect_block")
        return self

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.secretsmanager_arn:
            return f"secret {self.secretsmanager_arn}"
        return f"Prefect Secret block {self.prefect_block}"

    def resolve(self, aws_client_factory: Any = None) -> str | None:
        """The secret's value, or None when it is not set. Callers register it with the masker.

        Raises ConfigError, naming the reference (never a value), when it cannot be read.
        """
        if self.env:
            return os.environ.get(self.env) or None
        if self.secretsmanager_arn:
            if aws_client_factory is None:
                raise ConfigError(f"reading {self.describe()} needs AWS access")
            # A secret is read in its own region, which the ARN names; the configured region may differ.
            region = self.secretsmanager_arn.split(":")[3] or None
            try:
                sm = aws_client_factory("secretsmanager", region)
                found = sm.get_secret_value(SecretId=self.secretsmanager_arn)
            except Exception as exc:
                raise ConfigError(f"cannot read {self.describe()}: {error_summary(exc)}") from None
            if not isinstance(found.get("SecretString"), str):
                raise ConfigError(f"{self.describe()} has no SecretString (a binary secret cannot be used here)")
            return found["SecretString"] or None
        try:
            from prefect.blocks.system import Secret

            block: Any = Secret.load(str(self.prefect_block))
            value = block.get()
        except Exception as exc:
            raise ConfigError(f"cannot read {self.describe()}: {error_summary(exc)}") from None
        return str(value) if value else None


def error_summary(exc: BaseException) -> str:
    """An exception as one line for a message: its type and the first 300 characters of its text."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class AwsAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role_arn: str = Field(description="The responder role to assume in that account.")
    external_id: str | None = None


class AwsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = "us-east-1"
    regions: list[str] = Field(default_factory=lambda: ["us-east-1"], description="Regions a review covers.")
    role_arn: str | None = Field(None, description="The responder role to assume; never the exposed principal.")
    external_id: str | None = None
    endpoint_url: str | None = Field(None, description="Only for the sandbox or a local AWS stand-in.")
    credential_max_age: int | None = Field(
        None, ge=1, description="Refresh the responder role's credentials at least this often (seconds)."
    )
    accounts: dict[str, AwsAccount] = Field(
        default_factory=dict, description="Other accounts a step may name (`aws: {account: ...}`), by account id."
    )


class SlackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretRef | None = Field(default_factory=lambda: SecretRef(env="STANCH_SLACK_TOKEN"))
    signing_secret: SecretRef | None = Field(default_factory=lambda: SecretRef(env="STANCH_SLACK_SIGNING_SECRET"))
    default_channel: str = "#incident-response"
    incident_channel: str | None = Field(None, description="Where each run's incident thread goes; the default channel.")
    incident_thread: bool = Field(True, description="Keep an incident thread per run (when a token is configured).")
    base_url: str = Field("https://slack.com/api/", description="Only changed for the sandbox or tests.")


class ApprovalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    private_key: SecretRef | None = Field(
        default_factory=lambda: SecretRef(env="STANCH_APPROVAL_PRIVATE_KEY"),
        description="The approval service's Ed25519 private key (`stanch keys init`): only `stanch serve` needs it.",
    )
    public_key: SecretRef | None = Field(
        default_factory=lambda: SecretRef(env="STANCH_APPROVAL_PUBLIC_KEY"),
        description="The service's public key: runners accept only decisions it verifies.",
    )
    previous_public_key: SecretRef | None = Field(
        None, description="During a key change-over: the old public key, still accepted for new decisions."
    )
    retired_public_keys: list[str] = Field(
        default_factory=list, description="Public keys no longer accepted, kept so `stanch audit` verifies old decisions."
    )
    service_url: str = Field("http://127.0.0.1:8480", description="Where `stanch approve` sends answers.")
    allow_unsigned: bool = Field(
        False, description="Development only: accept unsigned answers, and only when AWS is the local sandbox."
    )
    channel: str | None = Field(None, description="Where gates ask for approval; the incident channel by default.")
    escalation_channel: str | None = Field(None, description="Where escalations go; the approval channel by default.")
    state_path: str = Field(
        ".stanch/service.sqlite3",
        description="The approval service's own state (Slack signatures seen, so a replay is refused after a "
        "restart): a SQLite file, relative to the working directory unless absolute.",
    )


class IntakeSettings(BaseModel):
    """Alert intake in `stanch serve`: each endpoint refuses everything until its secret reference is set."""

    model_config = ConfigDict(extra="forbid")

    route: Literal["runner", "deployment", "event"] = Field(
        "runner",
        description="runner: alert runs start in the service's warm runner (lowest latency, recorded on the Prefect "
        "server); deployment: as deployment runs `<playbook>/default`, executed by any worker; event: the service "
        "emits a `stanch.alert.routed` Prefect event and the deployment triggers of prefect.yaml start the runs.",
    )
    runner_threads: int = Field(8, ge=1, le=64, description="Alert runs the warm runner executes at once.")
    sandbox: bool = Field(False, description="Start alert runs in sandbox mode (deployment runs: the worker's sandbox).")
    eventbridge_token: SecretRef | None = Field(
        default_factory=lambda: SecretRef(env="STANCH_INTAKE_EVENTBRIDGE_TOKEN"),
        description="The shared token an EventBridge API destination sends in X-Stanch-Token.",
    )
    generic_secret: SecretRef | None = Field(
        default_factory=lambda: SecretRef(env="STANCH_INTAKE_GENERIC_SECRET"),
        description="The HMAC key of generic alerts (X-Stanch-Signature: sha256=HMAC(timestamp.body)).",
    )
    github_secret: SecretRef | None = Field(
        default_factory=lambda: SecretRef(env="STANCH_INTAKE_GITHUB_SECRET"),
        description="The GitHub webhook secret (X-Hub-Signature-256).",
    )
    github_token: SecretRef | None = Field(
        default_factory=lambda: SecretRef(env="STANCH_GITHUB_TOKEN"),
        description="A GitHub token that may read secret-scanning alerts, to learn a leaked AWS key's id.",
    )
    github_api_url: str = Field("https://api.github.com", description="Only changed for the sandbox or tests.")
    sns_enabled: bool = Field(False, description="Take AWS alerts through an SNS HTTPS subscription.")
    sns_topic_arns: list[str] = Field(
        default_factory=list,
        description="The SNS topics accepted (their ARNs); with none, the SNS endpoint refuses every message (any "
        "AWS account can sign a message to its own topic).",
    )
    sns_cert_host: str = Field(
        r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$",
        description="A regular expression the host of an SNS signing certificate's URL must match (https only).",
    )
    sns_cert_https: bool = Field(True, description="Only tests turn this off, to serve a local certificate.")
    deliveries_days: int = Field(7, ge=1, le=90, description="How long a delivery id is remembered (replays refused).")


class ApproverIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_user_id: str | None = None
    email: str | None = None
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="Hash of a CLI token.")


class Settings(BaseSettings):
    """An installation's configuration."""

    model_config = SettingsConfigDict(env_prefix="STANCH_", env_nested_delimiter="__", extra="forbid")

    aws: AwsSettings = Field(default_factory=AwsSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    approvers: dict[str, ApproverIdentity] = Field(default_factory=dict)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    playbook_dirs: list[str] = Field(default_factory=list)
    ui_url: str | None = Field(None, description="Prefect UI base URL for links; from PREFECT_UI_URL if unset.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init arguments).
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _no_secret_values(self) -> Settings:
        for path, value in _strings(self.model_dump()):
            if looks_secret(value):
                raise ValueError(
                    f"{path} holds what looks like a credential; the configuration takes references "
                    "only ({env: VAR}, {secretsmanager_arn: ...} or {prefect_block: ...})"
                )
        return self


def approval_private_key(settings: Settings) -> Any:
    """The service's signing key (an Ed25519 private key object), or None when not set; ConfigError when unreadable."""
    from flows.approvals.signing import ApprovalKeyError, load_private

    value = resolve_secret(settings, "approvals.private_key")
    if not value:
        return None
    try:
        return load_private(value, "approvals.private_key")
    except ApprovalKeyError as exc:
        raise ConfigError(str(exc)) from None


def approval_public_keys(settings: Settings, audit: bool = False) -> dict[str, Any]:
    """The public keys decisions are checked with, by key id: the current one and, during a change-over, the
    previous one; with `audit`, also the retired ones (old decisions still verify, new ones never do)."""
    from flows.approvals.signing import ApprovalKeyError, public_keys

    texts = [resolve_secret(settings, "approvals.public_key"), resolve_secret(settings, "approvals.previous_public_key")]
    if audit:
        texts += settings.approvals.retired_public_keys
    try:
        return public_keys(*[t for t in texts if t])
    except ApprovalKeyError as exc:
        raise ConfigError(str(exc)) from None


def resolve_secret(settings: Settings, field: str, aws_client: Any = None) -> str | None:
    """The value behind the secret reference at `field` (e.g. `slack.token`), or None when unset or not configured.

    Raises ConfigError naming the field and the reference when it cannot be read (never the value).
    """
    section, _, name = field.partition(".")
    ref = getattr(getattr(settings, section), name)
    if ref is None:
        return None
    try:
        return ref.resolve(aws_client or aws_client_factory(settings))  # type: ignore[no-any-return]
    except ConfigError as exc:
        raise ConfigError(f"{field}: {exc}") from None


def aws_client_factory(settings: Settings) -> Any:
    """AWS clients for reading the configuration's own secret references (the responder role when set)."""
    from integrations.context import AwsClients

    return AwsClients.from_settings(settings.aws, "config").client


def is_local_sandbox(settings: Settings) -> bool:
    """True when AWS is the local sandbox (a loopback endpoint), never a real account."""
    from urllib.parse import urlparse

    host = urlparse(settings.aws.endpoint_url or "").hostname
    return host in ("127.0.0.1", "localhost", "::1")


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _strings(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, f"{path}[{i}]")]
    return []


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from `path`, $STANCH_CONFIG or ./stanch.yaml (optional), then the environment."""
    from flows.language.loader import YamlError, parse_yaml

    explicit = path or os.environ.get(CONFIG_ENV)
    file = Path(explicit) if explicit else Path(DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            doc, problems = parse_yaml(file.read_text(encoding="utf-8"), str(file))
        except YamlError as exc:
            raise ConfigError(str(exc)) from None
        if problems:
            raise ConfigError("\n".join(str(p) for p in problems))
        if doc.data is not None and not isinstance(doc.data, dict):
            raise ConfigError(f"{file}: the configuration is a YAML mapping")
        data = doc.data or {}
    elif explicit:
        raise ConfigError(f"configuration file {file} does not exist")
    try:
        return Settings(**data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"])
            lines.append(f"{file}: {where}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None
