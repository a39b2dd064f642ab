"""The context injected into every action: clients, mode, logger, secret masker. Never module globals."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from integrations.masking import SecretMasker

if TYPE_CHECKING:
    from slack_sdk import WebClient


@dataclass(frozen=True)
class RunInfo:
    id: str
    playbook: str
    incident_id: str
    mode: str  # "live" or "dry-run"
    launched_by: str
    trigger: str = "manual"
    sandbox: bool = False

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry-run"

    def as_context(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "playbook": self.playbook,
            "incident_id": self.incident_id,
            "mode": self.mode,
            "launched_by": self.launched_by,
            "trigger": self.trigger,
            "sandbox": self.sandbox,
            "dry_run": self.dry_run,
        }


@dataclass
class AwsClients:
    """boto3 clients through the standard credential chain, optionally as an assumed responder role.

    The response must never run as the compromised principal, so a responder role is the norm in
    production; adaptive retries absorb throttling.
    """

    region: str = "us-east-1"
    endpoint_url: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    session_name: str = "stanch"
    max_attempts: int = 8
    # (event name, handler) pairs registered on every session: the seam for fault injection in tests
    # and tabletop exercises (for example throttling), never for changing what an action does.
    event_hooks: ClassVar[list[tuple[str, Callable[..., Any]]]] = []
    _session: Any = field(default=None, init=False, repr=False)
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(retries={"mode": "adaptive", "max_attempts": self.max_attempts})

    def session(self) -> Any:
        import boto3

        with self._lock:
            if self._session is None:
                base = boto3.session.Session(region_name=self.region)
                if self.role_arn:
                    sts = base.client("sts", endpoint_url=self.endpoint_url, config=self._config())
                    params: dict[str, Any] = {
                        "RoleArn": self.role_arn,
                        "RoleSessionName": self.session_name[:64],
                    }
                    if self.external_id:
                        params["ExternalId"] = self.external_id
                    creds = sts.assume_role(**params)["Credentials"]
                    base = boto3.session.Session(
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"],
                        region_name=self.region,
                    )
                for event, handler in self.event_hooks:
                    base.events.register(event, handler)
                self._session = base
            return self._session

    def client(self, service: str, region: str | None = None) -> Any:
        region = region or self.region
        key = (service, region)
        with self._lock:
            cached = self._clients.get(key)
        if cached is not None:
            return cached
        client = self.session().client(service, region_name=region, endpoint_url=self.endpoint_url, config=self._config())
        with self._lock:
            self._clients[key] = client
        return client


@dataclass
class ActionContext:
    """What an action may use. Built by the runtime per run; the sandbox and tests build their own."""

    aws: AwsClients
    slack_factory: Callable[[], WebClient] | None
    run: RunInfo
    masker: SecretMasker
    logger: logging.Logger | logging.LoggerAdapter[Any]
    slack_default_channel: str = "#incident-response"
    _slack: Any = field(default=None, init=False, repr=False)
    # init fields, so dataclasses.replace (a step's own logger) shares them with the run's context
    shared_cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    shared_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value computed once per run and shared by its steps (held in memory only, never persisted)."""
        with self.shared_lock:
            if key in self.shared_cache:
                return self.shared_cache[key]
        value = make()
        with self.shared_lock:
            return self.shared_cache.setdefault(key, value)

    @property
    def dry_run(self) -> bool:
        return self.run.dry_run

    @property
    def slack(self) -> WebClient:
        if self._slack is None:
            if self.slack_factory is None:
                raise RuntimeError("Slack is not configured: set slack.token in the Stanch configuration")
            self._slack = self.slack_factory()
        return self._slack
