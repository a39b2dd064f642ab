"""The context injected into every action: clients, mode, logger, secret masker. Never module globals.

Every outside client of a run is made here: AWS (`AwsClients`), Slack (`slack_client`) and vendor HTTP
(`HttpClient`). So this is the one place where a dry-run (and later a tabletop) sees and stops every call:
a read-only context refuses any AWS operation that is not a read, any Slack method that writes and any
HTTP request at all, whatever an action forgets to check.

It is also where a run is recorded or replayed (flows.tabletop.replay): when a tape is active (`use_tape`, or
the STANCH_RECORD environment variable naming a bundle file, honoured only in the process STANCH_RECORD_PID
names), every call is handed to it with the step that made it. A recording tape keeps each request and answer; a
replaying tape answers from the recording and nothing is sent. A refused write is neither recorded nor answered:
it never left. Every secret value any SecretMasker learns is handed to the active tape too, so a recording is
masked of it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from integrations.masking import SecretMasker, on_register

if TYPE_CHECKING:
    from slack_sdk import WebClient


class RunMode(StrEnum):
    """How a run treats the world: `live` changes things; `dry-run` only reads and reports what it would do."""

    LIVE = "live"
    DRY_RUN = "dry-run"


class ReadOnlyRefusal(RuntimeError):
    """A call that would change something, refused because the run is read-only (dry-run)."""


# AWS operations that only read. Anything else is refused in a read-only context.
_READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Head", "Search", "Query", "Scan", "Select", "Simulate", "Check")
# Slack Web API methods that only read.
_SLACK_READ_SUFFIXES = (".list", ".info", ".history", ".replies", ".lookupByEmail", ".test")


def is_read_only_operation(name: str) -> bool:
    return name.startswith(_READ_PREFIXES)


# ---------------------------------------------------------------- recording and replay


class Tape(Protocol):
    """What the clients below hand each outside call to (flows.tabletop.replay's recorder and replayer).

    Requests and answers are plain JSON-shaped dicts (see the client hooks for their fields); the tape labels
    each call with its step (`current_unit`) and redacts secret values before anything is kept or compared."""

    replaying: bool

    def secret(self, value: str | None) -> None:
        """A credential this process holds (a token, an API key): masked wherever it appears."""

    def record(self, kind: str, operation: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Keep one call made for real (recording)."""

    def answer(self, kind: str, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """The recorded answer to a call (replaying); a synthetic error answer when the recording has none."""


_tape: Tape | None = None
_env_tapes: dict[str, Tape] = {}
_tape_lock = threading.Lock()
RECORD_ENV = "STANCH_RECORD"
RECORD_PID_ENV = "STANCH_RECORD_PID"  # STANCH_RECORD is honoured only in the process whose id this names
_ignored_env: set[str] = set()


def use_tape(tape: Tape | None) -> Tape | None:
    """Make `tape` this process's tape (None: no tape); the tape it replaces."""
    global _tape
    with _tape_lock:
        previous, _tape = _tape, tape
    return previous


def active_tape() -> Tape | None:
    """The tape in use: the one `use_tape` set, else a recorder for the bundle STANCH_RECORD names, else None.

    STANCH_RECORD is honoured only when STANCH_RECORD_PID names this very process (`STANCH_RECORD=x.jsonl
    STANCH_RECORD_PID=$$ exec stanch ...`): a variable left in a worker's environment, or inherited by a child
    process, would otherwise write every run the process makes into one bundle. Elsewhere it is ignored, once
    with a warning."""
    if _tape is not None:
        return _tape
    import os

    path = os.environ.get(RECORD_ENV)
    if not path:
        return None
    if os.environ.get(RECORD_PID_ENV, "").strip() != str(os.getpid()):
        if path not in _ignored_env:
            _ignored_env.add(path)
            logging.getLogger("stanch").warning(
                "%s is set but ignored: %s does not name this process (%d); record a run with `stanch run --record FILE`",
                RECORD_ENV,
                RECORD_PID_ENV,
                os.getpid(),
            )
        return None
    with _tape_lock:
        tape = _env_tapes.get(path)
        if tape is None:
            # Imported here: integrations never need flows, except to record a run the environment asks for.
            from flows.tabletop.replay import Recorder

            tape = _env_tapes[path] = Recorder.for_environment(path)
        return tape


def _tell_tape(value: str) -> None:
    """A value a SecretMasker learned: the active tape masks it too (a recording must not keep it in clear)."""
    tape = _tape  # only a tape already in use: learning a secret never starts a recording
    if tape is None and _env_tapes:
        tape = active_tape()
    if tape is not None:
        tape.secret(value)


on_register(_tell_tape)


def current_unit() -> tuple[str, str]:
    """(step, unit) of the call being made: the step id and its Prefect task run (`step[3]` for a fan-out's
    item), or ("(run)", "(run)") for a call the run makes outside any step (its incident thread), and
    ("(unattributed)", ...) on a thread that carries no run context at all."""
    from prefect.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    if task_ctx is not None:
        step = task_ctx.task.name
        name = task_ctx.task_run.name or step
        return step, name if name.startswith(f"{step}[") else step
    if FlowRunContext.get() is not None:
        return "(run)", "(run)"
    return "(unattributed)", "(unattributed)"


def to_json(value: Any) -> Any:
    """A botocore answer as JSON: datetimes and bytes tagged so `from_json` gives them back."""
    from datetime import datetime

    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, bytes | bytearray):
        import base64

        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "read"):
        return {"$stream": True}  # a file given as a request body: what it held is not kept
    return str(value)


def from_json(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(str(value["$dt"]))
        if set(value) == {"$b64"}:
            import base64

            return base64.b64decode(str(value["$b64"]))
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def _tape_params(params: Any = None, model: Any = None, context: Any = None, **_: Any) -> None:
    """provide-client-params: the API parameters as the action gave them (before botocore adds tokens)."""
    if context is not None and model is not None and active_tape() is not None:
        context["stanch_tape_params"] = to_json(dict(params or {}))
        context["stanch_tape_operation"] = _aws_operation(model)


def _aws_operation(model: Any) -> str:
    return f"{model.service_model.service_name}:{model.name}"


def _tape_answer(model: Any = None, context: Any = None, **_: Any) -> Any:
    """before-call: when replaying, the recorded answer, so botocore sends nothing."""
    tape = active_tape()
    if tape is None or not tape.replaying or model is None:
        return None
    answer = tape.answer("aws", _aws_operation(model), {"params": (context or {}).get("stanch_tape_params", {})})
    if "error" in answer:
        from botocore.exceptions import EndpointConnectionError

        raise EndpointConnectionError(endpoint_url=f"(replayed: {answer['error']})")
    if context is not None:
        context["stanch_tape_answered"] = True
    parsed = from_json(answer.get("parsed") or {})
    if isinstance(parsed.get("Body"), bytes):
        import io

        from botocore.response import StreamingBody

        parsed["Body"] = StreamingBody(io.BytesIO(parsed["Body"]), len(parsed["Body"]))
    return _ReplayedHttp(int(answer.get("status", 200))), parsed


class _ReplayedHttp:
    """What botocore reads of an HTTP answer after a call (the status; no body: the answer is already parsed)."""

    def __init__(self, status_code: int):
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""
        self.text = ""


def _tape_record(http_response: Any = None, parsed: Any = None, model: Any = None, context: Any = None, **_: Any) -> None:
    """after-call: keep the call and its answer (a streamed body is read here and handed on as a fresh stream)."""
    tape = active_tape()
    context = context if context is not None else {}
    if tape is None or tape.replaying or context.get("stanch_tape_answered") or model is None:
        return
    if isinstance(parsed, dict) and hasattr(parsed.get("Body"), "read"):
        import io

        from botocore.response import StreamingBody

        data = parsed["Body"].read()
        parsed["Body"] = StreamingBody(io.BytesIO(data), len(data))
        kept = {**parsed, "Body": data}
    else:
        kept = parsed if isinstance(parsed, dict) else {}
    metadata = {k: v for k, v in (kept.get("ResponseMetadata") or {}).items() if k != "HTTPHeaders"}
    kept = {**kept, **({"ResponseMetadata": metadata} if metadata else {})}
    status = getattr(http_response, "status_code", 200)
    request = {"params": context.get("stanch_tape_params", {})}
    tape.record("aws", _aws_operation(model), request, {"status": status, "parsed": to_json(kept)})


def _tape_record_error(exception: Any = None, context: Any = None, **_: Any) -> None:
    """after-call-error: a call that got no answer at all (connection refused, timed out)."""
    tape = active_tape()
    context = context if context is not None else {}
    operation = context.get("stanch_tape_operation")
    if tape is None or tape.replaying or not operation:
        return
    request = {"params": context.get("stanch_tape_params", {})}
    tape.record("aws", operation, request, {"error": f"{type(exception).__name__}: {exception}"})


def _register_tape_hooks(events: Any) -> None:
    events.register("provide-client-params.*.*", _tape_params, unique_id="stanch-tape-params")
    events.register("before-call.*.*", _tape_answer, unique_id="stanch-tape-answer")
    events.register("after-call.*.*", _tape_record, unique_id="stanch-tape-record")
    events.register("after-call-error.*.*", _tape_record_error, unique_id="stanch-tape-error")


@dataclass(frozen=True)
class RunInfo:
    id: str
    playbook: str
    incident_id: str
    mode: RunMode
    launched_by: str
    trigger: str = "manual"
    sandbox: bool = False
    # True when the approval service vouched for `launched_by` (a launch made with an approver's token);
    # otherwise the name is only a claim (`--as`, the environment, the Prefect UI).
    launcher_verified: bool = False

    @property
    def dry_run(self) -> bool:
        return self.mode is RunMode.DRY_RUN

    def as_context(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "playbook": self.playbook,
            "incident_id": self.incident_id,
            "mode": self.mode.value,
            "launched_by": self.launched_by,
            "launcher_verified": self.launcher_verified,
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
    read_only: bool = False  # dry-run: every operation that is not a read is refused before it is sent
    # Refresh the responder role's credentials at least this often (None: only as AWS's expiry nears).
    max_credential_age: int | None = None
    # (event name, handler) pairs registered on every session: the seam for fault injection in tests
    # and tabletop exercises (for example throttling), never for changing what an action does.
    event_hooks: ClassVar[list[tuple[str, Callable[..., Any]]]] = []
    _session: Any = field(default=None, init=False, repr=False)
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(
        cls, aws: Any, session_label: str, account: str | None = None, region: str | None = None, read_only: bool = False
    ) -> AwsClients:
        """Clients as an installation's `aws` settings say: the responder role when set (the named account's
        when given), else the standard chain. The session name carries the run id, so CloudTrail ties calls
        to the run. KeyError names an account missing from `aws.accounts`."""
        role_arn, external_id = aws.role_arn, aws.external_id
        if account is not None:
            target = aws.accounts.get(account)
            if target is None:
                known = ", ".join(sorted(aws.accounts)) or "none"
                raise KeyError(f"account {account} is not configured under aws.accounts (configured: {known})")
            role_arn, external_id = target.role_arn, target.external_id
        return cls(
            region=region or aws.region,
            endpoint_url=aws.endpoint_url,
            role_arn=role_arn,
            external_id=external_id,
            session_name=f"stanch-{session_label}"[:64],
            read_only=read_only,
            max_credential_age=getattr(aws, "credential_max_age", None),
        )

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(retries={"mode": "adaptive", "max_attempts": self.max_attempts})

    def session(self) -> Any:
        """The boto3 session, made once. With a responder role its credentials refresh themselves before they
        expire, so a run that waits hours at a gate still acts with valid credentials."""
        import boto3

        with self._lock:
            if self._session is None:
                tape = active_tape()
                if tape is not None and tape.replaying:
                    # Nothing is sent, so no credential is looked for (no role, no instance metadata, no profile).
                    base = boto3.session.Session(
                        region_name=self.region,
                        aws_access_key_id="replay",
                        aws_secret_access_key="replay",  # noqa: S106 - a placeholder: a replay signs nothing
                    )
                else:
                    base = boto3.session.Session(region_name=self.region)
                    if self.role_arn:
                        base = self._assumed_session(base)
                self._register_hooks(base)
                self._session = base
            return self._session

    def _assumed_session(self, base: Any) -> Any:
        import boto3
        import botocore.session
        from botocore.credentials import RefreshableCredentials

        sts = base.client("sts", endpoint_url=self.endpoint_url, config=self._config())
        for event, handler in self.event_hooks:
            sts.meta.events.register(event, handler)

        def fetch() -> dict[str, str]:
            from datetime import UTC, datetime, timedelta

            params: dict[str, Any] = {"RoleArn": self.role_arn, "RoleSessionName": self.session_name[:64]}
            if self.external_id:
                params["ExternalId"] = self.external_id
            creds = sts.assume_role(**params)["Credentials"]
            expiry = creds["Expiration"]
            if self.max_credential_age is not None:
                expiry = min(expiry, datetime.now(UTC) + timedelta(seconds=self.max_credential_age))
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": expiry.isoformat(),
            }

        credentials: Any = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )
        if self.max_credential_age is not None:
            # botocore refreshes 10-15 minutes before expiry; short lifetimes refresh in their last quarter
            window = max(1, self.max_credential_age // 4)
            credentials._advisory_refresh_timeout = min(credentials._advisory_refresh_timeout, window)
            credentials._mandatory_refresh_timeout = min(credentials._mandatory_refresh_timeout, window)
        core: Any = botocore.session.get_session()
        core._credentials = credentials
        return boto3.session.Session(botocore_session=core, region_name=self.region)

    def _register_hooks(self, session: Any) -> None:
        for event, handler in self.event_hooks:
            session.events.register(event, handler)
        if self.read_only:
            session.events.register("before-call.*.*", _refuse_writes)
        _register_tape_hooks(session.events)  # after the refusal: a refused write is neither recorded nor answered

    def client_as(self, service: str, access_key_id: str, secret_access_key: str, region: str | None = None) -> Any:
        """A client that signs with the given key (to check a new key works), through the same endpoint and hooks."""
        import boto3

        session: Any = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region or self.region
        )
        self._register_hooks(session)
        return session.client(service, endpoint_url=self.endpoint_url, config=self._config())

    def client(self, service: str, region: str | None = None) -> Any:
        region = region or self.region
        key = (service, region)
        with self._lock:
            cached = self._clients.get(key)
        if cached is not None:
            return cached
        session = self.session()
        with self._lock:  # boto3 sessions are not thread-safe: clients are made one at a time
            cached = self._clients.get(key)
            if cached is None:
                cached = self._clients[key] = session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url, config=self._config()
                )
        return cached


def _refuse_writes(model: Any = None, **_: Any) -> None:
    name = getattr(model, "name", "")
    if not is_read_only_operation(name):
        service = getattr(getattr(model, "service_model", None), "service_name", "aws")
        raise ReadOnlyRefusal(f"{service}:{name} refused: this run is a dry-run and changes nothing")


def slack_client(token: str, base_url: str = "https://slack.com/api/", read_only: bool = False) -> WebClient:
    """slack-sdk's WebClient with retries for 429 (Retry-After) and connection errors; read-only refuses writes.
    Every Web API call goes through `api_call`, where a tape records it or answers it."""
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

    class _TapedWebClient(WebClient):
        def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
            tape = active_tape()
            if tape is None:
                return super().api_call(api_method, **kwargs)
            return _slack_through_tape(tape, self, api_method, kwargs, super().api_call)

    class _ReadOnlyWebClient(_TapedWebClient):
        def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
            if not api_method.endswith(_SLACK_READ_SUFFIXES):
                raise ReadOnlyRefusal(f"slack {api_method} refused: this run is a dry-run and posts nothing")
            return super().api_call(api_method, **kwargs)

    cls = _ReadOnlyWebClient if read_only else _TapedWebClient
    return cls(
        token=token,
        base_url=base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3), ConnectionErrorRetryHandler()],
    )


def _slack_through_tape(tape: Tape, client: Any, method: str, kwargs: dict[str, Any], send: Callable[..., Any]) -> Any:
    """One Slack Web API call recorded (request arguments, answer's status and data) or answered from the tape."""
    from slack_sdk.errors import SlackApiError, SlackClientError
    from slack_sdk.web.slack_response import SlackResponse

    tape.secret(client.token)
    arguments = kwargs.get("json") or kwargs.get("params") or kwargs.get("data") or {}
    request = {"args": to_json(dict(arguments)) if isinstance(arguments, dict) else str(arguments)}
    if tape.replaying:
        answer = tape.answer("slack", method, request)
        if "error" in answer:
            raise SlackClientError(f"{method} failed (replayed): {answer['error']}")
        response = SlackResponse(
            client=client,
            http_verb="POST",
            api_url=f"{client.base_url}{method}",
            req_args={},
            data=answer.get("data") or {},
            headers={},
            status_code=int(answer.get("status", 200)),
        )
        return response.validate()
    try:
        result = send(method, **kwargs)
    except SlackApiError as exc:
        tape.record("slack", method, request, {"status": exc.response.status_code, "data": exc.response.data})
        raise
    except Exception as exc:
        tape.record("slack", method, request, {"error": f"{type(exc).__name__}: {exc}"})
        raise
    data = result.data if isinstance(result.data, dict) else {}
    tape.record("slack", method, request, {"status": result.status_code, "data": data})
    return result


# Header names that carry a credential: their values are never recorded.
_CREDENTIAL_HEADER = re.compile(r"(?i)auth|key|token|secret|cookie|signature|password")


class HttpCallError(RuntimeError):
    """An HTTP endpoint refused or failed; the message never holds a credential. `status` is the HTTP status
    (None when no answer came), so callers can treat 404 on a delete as already done."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HttpClient:
    """JSON over HTTPS to vendor APIs (http only on loopback, for stand-ins). Read-only sends nothing at all:
    even a GET made with a key is a use of that key the vendor logs."""

    read_only: bool = False
    timeout: float = 15.0
    ca_file: str | None = None  # a PEM bundle to trust instead of the system's (a cluster's own CA, say)

    @staticmethod
    def check_url(url: str) -> None:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
        if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
            raise ValueError(f"vendor endpoints must be https:// (got {parsed.scheme}://{parsed.hostname})")

    def call(
        self,
        method: str,
        url: str,
        token: str | None,
        body: Any = None,
        idempotency: str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send one request; the JSON answer (None for an empty body).

        Args:
            token: sent as `Authorization: Bearer`; None when `headers` carry the credential (`x-api-key`...).
            headers: extra headers, e.g. an API version; their values are never put in an error message.
            content_type: for a body, e.g. `application/merge-patch+json` for a Kubernetes patch.
        """
        self.check_url(url)
        if self.read_only:
            raise ReadOnlyRefusal(f"{method} {url} refused: this run is a dry-run and calls no vendor")
        tape = active_tape()
        if tape is None:
            return self._send(method, url, token, body, idempotency, headers, content_type)
        tape.secret(token)
        for name, value in (headers or {}).items():
            if _CREDENTIAL_HEADER.search(name):
                tape.secret(value)
        request = {
            "url": url,
            "body": to_json(body),
            "token": token is not None,
            # header values only where they carry no credential (an API version, say)
            "headers": {k: "***" if _CREDENTIAL_HEADER.search(k) else v for k, v in sorted((headers or {}).items())},
            "content_type": content_type if body is not None else None,
        }
        if tape.replaying:
            answer = tape.answer("http", method, request)
            if "error" in answer:
                raise HttpCallError(str(answer["error"]), answer.get("status"))
            return from_json(answer.get("body"))
        try:
            result = self._send(method, url, token, body, idempotency, headers, content_type)
        except HttpCallError as exc:
            tape.record("http", method, request, {"error": str(exc), "status": exc.status})
            raise
        tape.record("http", method, request, {"status": 200, "body": to_json(result)})
        return result

    def _send(
        self,
        method: str,
        url: str,
        token: str | None,
        body: Any,
        idempotency: str | None,
        headers: dict[str, str] | None,
        content_type: str,
    ) -> Any:
        import urllib.error  # here, not at the top: `stanch validate` imports the actions and needs no HTTP
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - scheme checked in call
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if idempotency:
            request.add_header("Idempotency-Key", idempotency)
        try:
            context = None
            if self.ca_file:
                import ssl

                context = ssl.create_default_context(cafile=self.ca_file)
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:  # noqa: S310 - scheme checked in call
                text = response.read().decode()
                return json.loads(text) if text.strip() else None
        except urllib.error.HTTPError as exc:
            raise HttpCallError(f"{method} {url} answered {exc.code} {exc.reason}", exc.code) from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise HttpCallError(f"{method} {url} failed: {getattr(exc, 'reason', exc)}") from None
        except ValueError:
            raise HttpCallError(f"{method} {url} answered something that is not JSON") from None


@dataclass
class ActionContext:
    """What an action may use. Built by the runtime per run; the sandbox and tests build their own."""

    aws: AwsClients
    slack_factory: Callable[[], WebClient] | None
    run: RunInfo
    masker: SecretMasker
    logger: logging.Logger | logging.LoggerAdapter[Any]
    slack_default_channel: str = "#incident-response"
    http: HttpClient = field(default_factory=HttpClient)
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
