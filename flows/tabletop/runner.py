"""Run a tabletop scenario: the real playbook, through the same engine, against the sandbox, scored.

`run_exercise` starts the sandbox seeded as the scenario says, injects the alert, launches the playbook
(`flows.engine.launch.run_playbook`, tagged `tabletop`), fires the injects on the exercise clock, has scripted
personas answer gates through the real signed-approval path (as `stanch demo` does), then scores the expected
outcomes against the simulated account and the run's records, and hands both to the after-action report.

A scripted exercise runs on a `VirtualClock` (flows.engine.clock): whenever every run is only waiting at its
gates, time jumps to the next inject, answer or deadline. A live one (people answer with `stanch approve`) keeps
wall time.

Safety: for the exercise, this process sees no AWS, Slack or vendor setting but the sandbox's. The
environment is stripped of every AWS_* and STANCH_* setting (the approval keys excepted, in live mode), the
configuration file is replaced by one holding only approver identities, AWS's shared config and credential files
are empty ones, and, once the sandbox serves, a process-wide guard (a Python audit hook) refuses any connection
or name lookup that is not the sandbox's or the Prefect API's. Every client comes from integrations/context.py,
so they all point there.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from flows.engine import clock
from flows.engine.clock import VirtualClock
from flows.language.model import duration_seconds
from flows.tabletop.scenario import (
    SANDBOX_REF,
    AlertSpec,
    AttachUserPolicy,
    ChannelTold,
    Contained,
    CreateAccessKey,
    CreateUser,
    Inject,
    KeyInactive,
    KeyUseFlagged,
    NewAlert,
    NoCredentialLost,
    Note,
    RotationVerified,
    RunState,
    Scenario,
    StepState,
    VendorKey,
    VendorOutage,
    VendorRecovers,
    load_scenario,
)

Say = Callable[[str], None]
# Timeline events the after-action report takes from the exercise (the rest it reads from the run's records):
# `persona` is what a scripted persona did, with who (`actor`), their part (`role`), the gate (`ref`) and what
# (`status`: approved, rejected, refused, sent, late, made_key); the report puts an answer the run recorded at the
# record's time.
REPORT_KINDS = ("alert", "attacker", "inject", "persona")

# Kept from the caller's environment: who runs it, debugging, liveness tuning; the approval keys only in live mode.
_KEEP = {"STANCH_USER", "STANCH_DEBUG", "STANCH_HEARTBEAT_SECONDS", "STANCH_STALE_SECONDS"}
_KEEP_LIVE = {"STANCH_APPROVAL_PUBLIC_KEY", "STANCH_APPROVAL_PRIVATE_KEY", "STANCH_SLACK_SIGNING_SECRET"}
_PROXIES = {"http_proxy", "https_proxy", "all_proxy", "ftp_proxy"}


class ExerciseError(Exception):
    """An exercise that cannot start; the message says what to fix."""


@dataclass
class Exercise:
    """What an exercise did: its run, the timeline on the exercise clock, each expected outcome."""

    scenario: Scenario
    file: str
    started_at: datetime  # T0 on the exercise clock: the alert
    ended_at: datetime | None = None
    run_id: str | None = None
    summary: Any = None
    runs: list[str] = field(default_factory=list)
    summaries: list[Any] = field(default_factory=list)  # of every run, the first launched first
    events: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # connections the guard refused
    wall_seconds: float = 0.0
    skipped_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    vendor_env: Any = field(default=None, repr=False)  # the vendor breach's stand-ins, for scoring

    def offset(self, at: datetime | None) -> str:
        """`T+0:03:12` on the exercise clock."""
        if at is None:
            return "not reached"
        seconds = max(0, int((at - self.started_at).total_seconds()))
        return f"T+{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def event(self, at: datetime, kind: str, label: str, detail: str = "", **more: str) -> None:
        """One event on the exercise clock; `more`: the report's other fields (actor, role, ref, status)."""
        self.events.append({"at": at.isoformat(), "kind": kind, "label": label, "detail": detail, **more})

    @property
    def met(self) -> bool:
        return all(o["met"] for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        """The exercise in the report's shape, for when the report module is not there."""
        summary = self.summary
        return {
            "kind": "tabletop",
            "scenario": self.scenario.metadata.name,
            "title": self.scenario.metadata.title,
            "run_id": self.run_id,
            "runs": self.runs,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "state": getattr(summary, "state", None),
            "message": getattr(summary, "message", None),
            "steps": [s.model_dump(mode="json") for s in getattr(summary, "steps", [])],
            "outcomes": self.outcomes,
            "events": sorted(self.events, key=lambda e: e["at"]),
            "wall_seconds": round(self.wall_seconds, 1),
            "exercise_seconds": round(self.wall_seconds + self.skipped_seconds, 1),
        }


# ---------------------------------------------------------------- isolation


@contextlib.contextmanager
def isolated_environment(folder: Path, live: bool) -> Iterator[None]:
    """This process's environment for the exercise: no AWS, Slack, vendor or proxy setting of the caller's."""
    saved = dict(os.environ)
    config = _approver_config(saved.get("STANCH_CONFIG") or ("stanch.yaml" if Path("stanch.yaml").exists() else None))
    keep = _KEEP | (_KEEP_LIVE if live else set())
    for name in list(os.environ):
        upper = name.upper()
        dropped = upper.startswith("AWS_") or name.lower() in _PROXIES
        if upper.startswith("STANCH_") and upper not in keep:
            dropped = True
        if dropped:
            del os.environ[name]
    (folder / "aws-config").write_text("")
    (folder / "aws-credentials").write_text("")
    (folder / "stanch.yaml").write_text(json.dumps(config))  # JSON is YAML
    os.environ.update(
        {
            "STANCH_CONFIG": str(folder / "stanch.yaml"),
            "AWS_CONFIG_FILE": str(folder / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(folder / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost,::1",
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _approver_config(path: str | None) -> dict[str, Any]:
    """Only who the approvers are (and where gates are asked), from the caller's configuration: nothing that
    names an endpoint, a role or a credential reaches the exercise."""
    if not path or not Path(path).is_file():
        return {}
    from flows.language.loader import YamlError, parse_yaml

    try:
        doc, _ = parse_yaml(Path(path).read_text(encoding="utf-8"), path)
    except (YamlError, OSError, UnicodeDecodeError):
        return {}
    data = doc.data if isinstance(doc.data, dict) else {}
    approvals: dict[str, Any] = data["approvals"] if isinstance(data.get("approvals"), dict) else {}
    kept: dict[str, Any] = {}
    if isinstance(data.get("approvers"), dict):
        kept["approvers"] = data["approvers"]
    picked = {k: approvals[k] for k in ("channel", "escalation_channel") if isinstance(approvals.get(k), str)}
    if picked:
        kept["approvals"] = picked
    return kept


class SandboxOnly(ConnectionRefusedError):
    """A connection the tabletop guard refused: it goes somewhere other than the sandbox."""


class _Guard:
    """A process-wide audit hook (installed once; idle unless an exercise is on) refusing every connection and
    name lookup but to the sandbox's servers (moto, the Slack and vendor stand-ins) and the Prefect API, by
    address and port: anything else listening on loopback is refused too."""

    installed = False
    lock = threading.Lock()
    allowed: set[tuple[str, int]] = set()
    hosts: set[str] = set()
    active = False
    refused: list[str] = []

    @classmethod
    def install(cls) -> None:
        with cls.lock:
            if not cls.installed:
                sys.addaudithook(cls._hook)
                cls.installed = True

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if not cls.active:
            return
        if event == "socket.connect":
            address = args[1]
            if not isinstance(address, tuple) or len(address) < 2:
                return  # a Unix socket: local by nature
            host, port = str(address[0]), int(address[1])
            if (host, port) in cls.allowed or (host in cls.hosts and host not in _LOOPBACK):
                return
            cls.refused.append(f"{host}:{port}")
            raise SandboxOnly(f"tabletop: {host}:{port} is not the sandbox; the connection was refused")
        if event == "socket.getaddrinfo":
            host = args[0]
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name in _LOOPBACK or name in cls.hosts or host is None:
                return
            cls.refused.append(f"lookup {name}")
            raise SandboxOnly(f"tabletop: {name} is not the sandbox; the lookup was refused")

    @classmethod
    def allow_url(cls, url: str) -> None:
        parsed = urlparse(url)
        host = parsed.hostname or ""
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        for name in {host, *(_LOOPBACK if host in _LOOPBACK else ())}:
            cls.allowed.add((name, port))
        if host not in _LOOPBACK:
            cls.hosts.add(host)  # --record-to a remote Prefect server: the caller's own choice


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@contextlib.contextmanager
def sandbox_only(urls: list[str]) -> Iterator[list[str]]:
    """Refuse, in this whole process, every connection but to `urls` (and the ones added later with
    `_Guard.allow_url`); yields the list of what was refused."""
    _Guard.install()
    with _Guard.lock:
        _Guard.allowed, _Guard.hosts, _Guard.refused = set(), set(), []
        for url in urls:
            _Guard.allow_url(url)
        _Guard.active = True
    try:
        yield _Guard.refused
    finally:
        _Guard.active = False


@contextlib.contextmanager
def prefect_server(record_to: str | None, folder: Path) -> Iterator[str]:
    """The Prefect API the exercise records to: `record_to`, else a temporary local server of its own."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    if record_to:
        with temporary_settings(updates={PREFECT_API_URL: record_to.rstrip("/")}):
            yield record_to
        return
    import socket

    from prefect.server.api.server import SubprocessASGIServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    database = "sqlite+aiosqlite:///" + str(folder / "prefect.db")
    with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: database}):
        server = SubprocessASGIServer(port=port)
        server.start(timeout=90)
        try:
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                yield server.api_url
        finally:
            server.stop()


# ---------------------------------------------------------------- the simulated account


def _fixture(scenario: Scenario, folder: Path, base: Path) -> Path:
    """The sandbox fixture (flows/sandbox/fixture.yaml's format) for the scenario's environment."""
    env = scenario.environment
    spec: dict[str, Any] = {
        "region": env.region,
        "users": [
            {"name": u.name, "keys": u.keys, "tags": u.tags, **({"secret": u.secret} if u.secret else {})} for u in env.users
        ],
        "secrets": [{"name": s.name, "value": s.value, "tags": s.tags} for s in env.secrets],
        "vendors": [v.model_dump() for v in env.vendors],
        "slack": {"channels": sorted({c.lstrip("#") for c in [*env.slack_channels, "stanch-incidents"]})},
    }
    trail = env.cloudtrail
    if trail is not None:
        spec["cloudtrail"] = {"bucket": trail.bucket, "files": [str((base / f).resolve()) for f in trail.files]}
        if trail.attack is not None:
            a = trail.attack
            spec["cloudtrail"]["scenario"] = {"user": a.user, "hours_ago": a.hours_ago, "noise": a.noise, "role": a.role}
    path = folder / "fixture.yaml"
    path.write_text(json.dumps(spec))
    return path


def _seed_more(box: Any, scenario: Scenario, start: datetime) -> None:
    """What the sandbox fixture cannot say: policies, roles, logins, the wider attack, listed trail events."""
    from flows.sandbox import trail

    env = scenario.environment
    iam = box.client("iam")
    arns: dict[str, str] = {}
    for policy in env.policies:
        arns[policy.name] = iam.create_policy(PolicyName=policy.name, PolicyDocument=json.dumps(policy.document))["Policy"][
            "Arn"
        ]
    for user in env.users:
        for name in user.policies:
            iam.attach_user_policy(UserName=user.name, PolicyArn=arns.get(name, name))
        if user.console_login:
            iam.create_login_profile(UserName=user.name, Password=f"Tabletop-{secrets.token_hex(8)}!")
    existing = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    for role in env.roles:
        if role.name not in existing:
            statement = {"Effect": "Allow", "Principal": {"Service": role.trusted_service}, "Action": "sts:AssumeRole"}
            trust = {"Version": "2012-10-17", "Statement": [statement]}
            iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=json.dumps(trust))
        for name in role.policies:
            iam.attach_role_policy(RoleName=role.name, PolicyArn=arns.get(name, name))
    spec = env.cloudtrail
    if spec is None:
        return
    if spec.attack is not None and spec.attack.wider:
        box.seed_wide_attack(spec.bucket)
    if spec.events:
        records = [
            trail.record(
                start - timedelta(seconds=duration_seconds(e.ago)),
                e.name,
                e.source,
                resolve(box, e.key),
                e.principal,
                params=resolve(box, e.params),
                response=resolve(box, e.response),
                error=e.error,
                ip=e.ip,
                region=env.region,
            )
            for e in sorted(spec.events, key=lambda e: -duration_seconds(e.ago))
        ]
        _put_records(box, spec.bucket, records, n=9000)


def _put_records(box: Any, bucket: str, records: list[dict[str, Any]], n: int) -> None:
    import gzip

    from flows.sandbox import datetime_of, trail

    s3 = box.client("s3")
    with contextlib.suppress(Exception):
        s3.create_bucket(Bucket=bucket)
    box.cloudtrail_bucket = box.cloudtrail_bucket or bucket
    at = datetime_of(records[0]["eventTime"])
    body = gzip.compress(json.dumps({"Records": records}).encode())
    s3.put_object(Bucket=bucket, Key=trail.object_key(at, region=records[0]["awsRegion"], n=n), Body=body)


def resolve(box: Any, value: Any) -> Any:
    """`@sandbox:...` references replaced by what the sandbox made, anywhere in a value."""
    if isinstance(value, dict):
        return {k: resolve(box, v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(box, v) for v in value]
    if not isinstance(value, str) or not value.startswith("@sandbox:"):
        return value
    if value == "@sandbox:trail":
        return f"s3://{box.cloudtrail_bucket}/AWSLogs/"
    match = SANDBOX_REF.match(value)
    if match is None:
        raise ExerciseError(f"{value!r}: write @sandbox:USER, @sandbox:USER#N or @sandbox:trail")
    user, index = match.group("name"), int(match.group("index") or 0)
    keys = box.keys.get(user) or []
    if index >= len(keys):
        raise ExerciseError(f"{value}: the sandbox has {len(keys)} key(s) for {user!r}")
    return keys[index]


def build_alert(box: Any, spec: AlertSpec, base: Path) -> dict[str, Any]:
    """The alert as its source sends it, with the scenario's values set (references resolved)."""
    from flows.alerts import load_alert_file

    data: dict[str, Any] = load_alert_file(base / spec.file) if spec.file else json.loads(json.dumps(spec.inline))
    for path, value in spec.set.items():
        _set_path(data, path, resolve(box, value))
    return data


def _set_path(data: Any, path: str, value: Any) -> None:
    import re

    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        parts.append(int(index) if index else name)
    node = data
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


# ---------------------------------------------------------------- running


@dataclass
class _Play:
    """The exercise while it runs: what the observer, the personas and the injects share."""

    exercise: Exercise
    clock: VirtualClock
    box: Any
    base: Path
    say: Say
    live: bool
    vendor_env: Any = None  # flows.sandbox.vendor_env.VendorBreachEnv, for a vendor breach
    run_ids: dict[str, str] = field(default_factory=dict)  # incident id -> flow run id
    playbooks: dict[str, Any] = field(default_factory=dict)  # incident id -> the playbook its run runs
    threads: list[threading.Thread] = field(default_factory=list)
    summaries: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def t(self) -> str:
        return self.exercise.offset(self.clock.now())

    def note(
        self, kind: str, label: str, detail: str = "", at: datetime | None = None, shown: str = "", **more: str
    ) -> None:
        """An event of the exercise, said on the console (as `shown`, when given, else its label)."""
        at = at or self.clock.now()
        with self.lock:
            self.exercise.event(at, kind, label, detail, **more)
        self.say(f"[{self.exercise.offset(at)}] {shown or label}" + (f": {detail}" if detail else ""))

    def role(self, incident: str, gate: str, who: str) -> str:
        """The persona's part at the gate: the approver group of the run's playbook that asks them."""
        from flows.tabletop.report import approver_role

        playbook = self.playbooks.get(incident)
        step = next((s for s in getattr(playbook, "steps", []) if s.id == gate), None)
        if playbook is None or step is None or step.approval is None:
            return ""
        approval = {"from": step.approval.from_, "escalate_to": step.approval.escalate_to}
        return approver_role(playbook.approvers, approval, who)

    def persona(self, incident: str, persona: Any, status: str, label: str, detail: str, shown: str = "") -> None:
        """What a scripted persona did, on the persona's lane of the report (who, their part, the gate, what)."""
        role = self.role(incident, persona.gate, persona.who)
        who = f"{persona.who} ({role})" if role else persona.who
        self.note("persona", f"{who} {label}", detail, shown=shown or f"{persona.who} {label}",
                  actor=persona.who, role=role, ref=persona.gate, status=status)  # fmt: skip

    def observer(self, incident: str) -> Callable[[str, dict[str, Any]], None]:
        def observe(kind: str, data: dict[str, Any]) -> None:
            if kind == "run_started":
                self.run_ids[incident] = data["run_id"]
                self.say(f"[{self.t()}] run {data['run_id']} ({data['name']})")
            elif kind == "step_started":
                self.say(f"[{self.t()}]   ▶ {data['step']}")
            elif kind == "step_finished":
                record = data["record"]
                text = record.detail or record.reason
                self.say(f"[{self.t()}]   ■ {record.id}: {record.state}" + (f" — {text}" if text else ""))
            elif kind == "gate_opened":
                self._gate_opened(incident, data)
            elif kind == "gate_escalated":
                self.note("gate", f"gate {data['gate']} escalated to {data['group']}", f"until {data['deadline']:%H:%M:%S}")
                self.clock.at(data["deadline"], f"deadline of {data['gate']}", key=f"{incident}:deadline:{data['gate']}")
            elif kind == "gate_answer":
                record = data["record"]
                verdict = "accepted" if record.accepted else f"refused: {record.refusal}"
                self.say(f"[{self.t()}]     {record.approver} → {record.decision} ({verdict})")
            elif kind == "gate_closed":
                self.clock.cancel(f"{incident}:deadline:{data['gate']}")
                self.note("gate", f"gate {data['gate']} {data['status']}", data.get("message") or "")

        return observe

    def _gate_opened(self, incident: str, data: dict[str, Any]) -> None:
        gate = data["gate"]
        self.note("gate", f"gate {gate} opened", f"asks {data['group']} ({', '.join(data['members'])})")
        self.clock.at(data["deadline"], f"deadline of {gate}", key=f"{incident}:deadline:{gate}")
        if self.live:
            run_id = self.run_ids.get(incident, "RUN")
            self.say(f"    answer: stanch approve {run_id} --gate {gate} --as NAME --approve|--reject --reason TEXT")
            return
        personas = [p for p in self.exercise.scenario.approvers.personas if p.gate == gate]
        if not personas:
            self.say(f"    no persona answers gate {gate}: it waits for its deadline")
        opened = self.clock.now()
        for persona in personas:
            at = opened + timedelta(seconds=duration_seconds(persona.after))
            if persona.decision == "none":
                also = f" (does {persona.does} after {persona.after})" if persona.does else ""
                self.say(f"    {persona.who} will not answer gate {gate}{also}")
                if persona.does is not None:  # does their part, and leaves the answer to someone else
                    does = functools.partial(self._does, incident, persona)
                    self.clock.at(at, f"{persona.who} {persona.does} ({gate})", does)
                continue
            self.clock.at(at, f"{persona.who} answers {gate}", self._answer(incident, persona.gate, persona))

    def _does(self, incident: str, persona: Any) -> None:
        """A persona's part besides the answer: make_new_key makes each key no issuer API can mint (the persona's,
        or the one named) at the issuer's console and puts it into its secret."""
        if persona.does != "make_new_key" or self.vendor_env is None:
            return
        owners = self.vendor_env.manual_credentials()
        credentials = [persona.credential] if persona.credential else [c for c, o in owners.items() if o == persona.who]
        for credential in credentials or list(owners):
            self.vendor_env.person_makes_new_key(credential)
            self.persona(
                incident,
                persona,
                "made_key",
                f"made the new key for credential {credential} by hand",
                f"at the issuer's console, and stored it in the key's secret (the key is not shown); gate {persona.gate}",
                shown=f"{persona.who} makes the new key at the issuer's console and stores it: {credential}",
            )

    def _answer(self, incident: str, gate: str, persona: Any) -> Callable[[], None]:
        def answer() -> None:
            from flows.approvals.client import ApprovalError, answer_gate, open_gates

            run_id = self.run_ids.get(incident)
            if run_id is None:
                return
            for _ in range(50):  # the run lists the gate just after telling us it opened
                if any(g.get("gate") == gate for g in open_gates(run_id)):
                    break
                time.sleep(0.1)
            if persona.decision == "approve":
                self._does(incident, persona)  # the person's part: a key made at the console, stored
            decision: Literal["approve", "reject"] = persona.decision
            try:
                verdict = answer_gate(run_id, gate, persona.who, decision, persona.reason or f"tabletop: {decision}",
                                      channel="tabletop")  # fmt: skip
            except ApprovalError as exc:
                self.persona(incident, persona, "late", f"answered gate {gate} too late ({decision})", str(exc),
                             shown=f"{persona.who} answered {gate} too late")  # fmt: skip
                return
            verb = "approved" if decision == "approve" else "rejected"
            # as the run judged it: refused (its policy or the signature), or not said in time
            status = {True: verb, False: "refused", None: "sent"}[verdict.accepted]
            label = f"{verb} gate {gate}" if verdict.accepted else f"{decision} at gate {gate}: {status}"
            detail = f"{persona.reason} ({verdict.message})" if persona.reason else verdict.message
            self.persona(incident, persona, status, label, detail, shown=f"{persona.who} {verb} {gate}")

        return answer

    # ---------------------------------------------------------------- injects

    def schedule(self, inject: Inject, start: datetime) -> None:
        at = start + timedelta(seconds=duration_seconds(inject.at))
        label = inject.label or _inject_label(inject)
        self.clock.at(at, label, lambda: self._fire(inject, label))

    def _fire(self, inject: Inject, label: str) -> None:
        from flows.sandbox import trail

        at = self.clock.now()
        if isinstance(inject, Note):
            self.note("inject", label, inject.detail, at)
            return
        if isinstance(inject, NewAlert):
            self.note("alert", label, "a new alert arrives", at)
            self.start_run(build_alert(self.box, inject.alert, self.base), inject.playbook, inject.inputs)
            return
        if isinstance(inject, VendorOutage | VendorRecovers):
            self._vendor_inject(inject, label, at)
            return
        iam = self.box.client("iam")
        by = resolve(self.box, inject.by)
        made: dict[str, Any] = {}
        records: list[tuple[str, dict[str, Any], dict[str, Any] | None]]
        if isinstance(inject, CreateUser):
            iam.create_user(UserName=inject.user)
            key = iam.create_access_key(UserName=inject.user)["AccessKey"]["AccessKeyId"]
            self.box.keys.setdefault(inject.user, []).append(key)
            if inject.admin:
                iam.attach_user_policy(UserName=inject.user, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
            records = [("CreateUser", {"userName": inject.user}, None)]
            records.append(("CreateAccessKey", {"userName": inject.user}, {"accessKey": {"accessKeyId": key}}))
            made = {"user": inject.user, "key": key}
        elif isinstance(inject, CreateAccessKey):
            key = iam.create_access_key(UserName=inject.user)["AccessKey"]["AccessKeyId"]
            self.box.keys.setdefault(inject.user, []).append(key)
            response = {"accessKey": {"accessKeyId": key, "userName": inject.user, "status": "Active"}}
            records = [("CreateAccessKey", {"userName": inject.user}, response)]
            made = {"key": key}
        else:
            assert isinstance(inject, AttachUserPolicy)  # noqa: S101 - the union's last member
            iam.attach_user_policy(UserName=inject.user, PolicyArn=inject.policy_arn)
            records = [("AttachUserPolicy", {"userName": inject.user, "policyArn": inject.policy_arn}, None)]
        principal = _principal_of(self.box, by)
        # The simulated account keeps wall time, as the actions reading it do (a review's `since`, a session
        # revocation's cut-off): the trail gets the wall time of the call, the timeline the exercise's.
        wall = clock.WALL.now()
        written = [
            trail.record(wall, name, "iam.amazonaws.com", by, principal, params=params, response=response)
            for name, params, response in records
        ]
        if self.box.cloudtrail_bucket:
            _put_records(self.box, self.box.cloudtrail_bucket, written, n=9500 + len(self.exercise.events))
        detail = ", ".join(f"{k} {v}" for k, v in made.items()) or inject.user
        self.note("attacker", label, f"{detail} (by {by}, in the trail)", at)

    def _vendor_inject(self, inject: VendorOutage | VendorRecovers, label: str, at: datetime) -> None:
        """A stand-in of the vendor breach fails a path (the vendor reports a failed rotation), or answers again."""
        if self.vendor_env is None:  # the scenario's check refuses it; a scenario object built by hand may not
            self.note("inject", f"not applied: {label}", "the exercise has no vendor breach")
            return
        if isinstance(inject, VendorRecovers):
            self.vendor_env.recover(inject.api, inject.path)
            where = f"requests to {inject.path}" if inject.path else "every request"
            self.note("inject", label, inject.detail or f"{inject.api}: {where} answer again", at)
            return
        self.vendor_env.outage(inject.api, inject.path, inject.status)
        what = f"{inject.api}: requests to {inject.path} answer {inject.status}"
        if inject.lasts is not None:
            until = at + timedelta(seconds=duration_seconds(inject.lasts))
            what += f" for {inject.lasts}"
            heal = VendorRecovers(at=inject.at, do="vendor_recovers", api=inject.api, path=inject.path)
            done = f"{_inject_label(heal)} ({inject.lasts} after the outage began)"
            self.clock.at(until, done, lambda: self._vendor_inject(heal, done, self.clock.now()))
        self.note("inject", label, f"{inject.detail} ({what})" if inject.detail else what, at)

    # ---------------------------------------------------------------- runs

    def start_run(self, alert: dict[str, Any] | None, playbook: str | None, inputs: dict[str, Any]) -> None:
        """Launch a run of the exercise on its own thread, counted among the clock's actors from now on."""
        from prefect import tags

        from flows.engine.launch import LaunchError, run_playbook

        chosen, values = _choose_playbook(playbook, alert, resolve(self.box, inputs))
        incident = f"tabletop-{self.exercise.scenario.metadata.name[:40]}-{secrets.token_hex(2)}"
        self.playbooks[incident] = chosen
        self.clock.add_actor()

        def target() -> None:
            try:
                with tags("tabletop", f"scenario:{self.exercise.scenario.metadata.name}"):
                    summary = run_playbook(
                        chosen,
                        values,
                        alert=alert,
                        incident_id=incident,
                        trigger="tabletop",
                        launched_by="stanch-tabletop",
                        sandbox=True,
                        observer=self.observer(incident),
                    )
                with self.lock:
                    self.summaries.append(summary)
                self.note("run", f"run {summary.run_id} ended {summary.state}", summary.message)
            except LaunchError as exc:
                self.note("run", f"a run of {chosen.metadata.name} did not start", str(exc))
                with self.lock:
                    self.exercise.problems.append(str(exc))
            except Exception as exc:  # a crash of the run: reported with the exercise, never a traceback
                self.note("run", "a run crashed", f"{type(exc).__name__}: {exc}")
                with self.lock:
                    self.exercise.problems.append(f"a run crashed: {type(exc).__name__}: {exc}")
            finally:
                self.clock.remove_actor()

        context = contextvars.copy_context()  # the exercise's Prefect settings and observer reach the run
        thread = threading.Thread(target=context.run, args=(target,), name=f"stanch-tabletop-{incident}", daemon=True)
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def wait_runs(self) -> None:
        while True:
            with self.lock:
                alive = [t for t in self.threads if t.is_alive()]
            if not alive:
                return
            for thread in alive:
                thread.join(timeout=1.0)


def _inject_label(inject: Inject) -> str:
    if isinstance(inject, CreateAccessKey):
        return f"The attacker creates another access key for {inject.user}"
    if isinstance(inject, CreateUser):
        return f"The attacker creates user {inject.user}"
    if isinstance(inject, AttachUserPolicy):
        return f"The attacker attaches {inject.policy_arn.rsplit('/', 1)[-1]} to {inject.user}"
    if isinstance(inject, NewAlert):
        return "A new alert"
    if isinstance(inject, VendorOutage):
        return f"The {inject.api} API fails requests to {inject.path}"
    if isinstance(inject, VendorRecovers):
        return f"The {inject.api} API answers again"
    return "Inject"


def _principal_of(box: Any, key: str) -> str:
    for user, keys in box.keys.items():
        if key in keys:
            return f"user/{user}"
    return "user/unknown"


def _choose_playbook(name: str | None, alert: dict[str, Any] | None, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The named playbook, or the first whose triggers match the alert, with the trigger's inputs under the
    scenario's."""
    from flows.engine.launch import LaunchError, load_named

    if name is not None:
        try:
            return load_named(name), dict(inputs)
        except LaunchError as exc:
            raise ExerciseError(str(exc)) from None
    from flows.alerts import AlertError, normalize
    from flows.config import load_settings
    from flows.intake.routing import RouteError, first_trigger, trigger_inputs, triggered_playbooks

    try:
        facts = normalize(alert or {})
    except AlertError as exc:
        raise ExerciseError(f"the alert cannot be used: {exc}") from None
    for playbook in triggered_playbooks(load_settings().playbook_dirs):
        index = first_trigger(playbook, facts)
        if index is not None:
            try:
                return playbook, {**trigger_inputs(playbook, index, facts), **inputs}
            except RouteError as exc:
                raise ExerciseError(str(exc)) from None
    raise ExerciseError(f"no playbook's triggers match the alert ({facts.get('source')} {facts.get('kind')})")


def run_exercise(
    path: str | Path,
    *,
    live_approvers: bool = False,
    record_to: str | None = None,
    html: Path | None = None,
    json_file: Path | None = None,
    say: Say = print,
) -> Exercise:
    """Run the scenario at `path` to its end, score it and write the after-action report (while the Prefect
    server it recorded to still runs). ExerciseError (or ScenarioError) before it starts."""
    from flows.sandbox import Sandbox

    scenario = load_scenario(path)
    base = Path(path).resolve().parent
    live = live_approvers or scenario.approvers.mode == "live"
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stanch-tabletop-")))
        stack.enter_context(isolated_environment(folder, live))
        api = stack.enter_context(prefect_server(record_to, folder))
        stack.callback(_flush_prefect_logs)  # while the server still runs
        # moto in a process of its own: a fresh account (moto's state is per process, and a test session has its
        # own sandbox in this one). The guard starts once the sandbox serves: from then on only it and Prefect.
        box = Sandbox(fixture=_fixture(scenario, folder, base), separate_process=True)
        box.start()
        stack.callback(box.stop)
        urls = [api, box.aws_endpoint, box.slack.base_url if box.slack else "", box.vendor.base_url if box.vendor else ""]
        vendor_env = None
        if scenario.environment.vendor_breach is not None:
            from flows.sandbox.vendor_env import VendorBreachEnv

            breach = scenario.environment.vendor_breach
            vendor_env = VendorBreachEnv(box, fail_consumer=breach.failing_consumer, inventory=breach.vendor).start()
            stack.callback(vendor_env.stop)
            urls += list(vendor_env.environ().values())
        refused = stack.enter_context(sandbox_only([url for url in urls if url]))
        virtual = VirtualClock(jumps=not live)
        stack.callback(virtual.close)
        stack.enter_context(clock.using(virtual))
        start = virtual.now()
        _seed_more(box, scenario, start)
        exercise = Exercise(scenario=scenario, file=str(path), started_at=start, vendor_env=vendor_env)
        play = _Play(exercise, virtual, box, base, say, live, vendor_env)
        say(
            f"Tabletop {scenario.metadata.name}: {scenario.metadata.title}\n"
            f"  sandbox AWS {box.aws_endpoint}, Prefect {api}; "
            + ("live approvers, wall time" if live else "scripted approvers, virtual time")
        )
        alert = build_alert(box, scenario.alert, base) if scenario.alert is not None else None
        limit = duration_seconds(scenario.limit)
        for inject in scenario.injects:
            if duration_seconds(inject.at) <= limit:
                play.schedule(inject, start)
        exercise.event(start, "alert", _alert_label(alert), scenario.playbook or "routed by the playbooks' triggers")
        started_wall = time.monotonic()
        play.start_run(alert, scenario.playbook, scenario.inputs)
        play.wait_runs()
        exercise.ended_at = virtual.now()
        for label in virtual.errors:
            exercise.problems.append(label)
            say(f"  problem: {label}")
        for pending in virtual.pending():
            exercise.event(exercise.ended_at, "inject", f"not reached: {pending}", "the exercise ended first")
        order = list(play.run_ids.values())
        exercise.summaries = sorted(play.summaries, key=lambda s: order.index(s.run_id) if s.run_id in order else 99)
        exercise.runs = [s.run_id for s in exercise.summaries]
        main = next((s for s in play.summaries if s.run_id == play.run_ids.get(_first(play))), None)
        exercise.summary = main or (play.summaries[0] if play.summaries else None)
        exercise.run_id = exercise.summary.run_id if exercise.summary else None
        exercise.outcomes = [score(exercise, box, e) for e in scenario.expect]
        exercise.skipped_seconds = virtual.skipped
        exercise.refused = list(refused)
        exercise.wall_seconds = time.monotonic() - started_wall
        if html is not None or json_file is not None:
            after_action(exercise, html, json_file, say)
    return exercise


def _flush_prefect_logs() -> None:
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)


def _first(play: _Play) -> str:
    return next(iter(play.run_ids), "")


def _alert_label(alert: dict[str, Any] | None) -> str:
    if alert is None:
        return "The exercise starts (no alert: a person launches the playbook)"
    from flows.alerts import normalize

    facts = normalize(alert)
    return f"Alert: {facts.get('source')} {facts.get('kind')}"


# ---------------------------------------------------------------- scoring


def score(exercise: Exercise, box: Any, expected: Any) -> dict[str, Any]:
    """One expected outcome: met or missed, with the actual time on the exercise clock and the evidence."""
    met, at, evidence = _CHECKS[type(expected)](exercise, box, expected)
    target = f"within {expected.within}" if expected.within is not None else "by the end"
    if met and expected.within is not None:
        limit = exercise.started_at + timedelta(seconds=duration_seconds(expected.within))
        if at is None or at > limit:
            met = False
            evidence += f"; too late: the target was {exercise.offset(limit)}"
    return {"name": expected.name, "met": met, "target": target, "actual": exercise.offset(at), "evidence": evidence}


def _steps(exercise: Exercise) -> list[Any]:
    """The steps of every run of the exercise (an injected alert starts its own)."""
    return [step for summary in exercise.summaries for step in summary.steps]


def _first_step(exercise: Exercise, uses: tuple[str, ...], mentions: str = "") -> Any:
    found = [
        s
        for s in _steps(exercise)
        if s.uses in uses
        and s.state == "completed"
        and s.finished_at
        and (not mentions or mentions in json.dumps(s.outputs))
    ]
    return min(found, key=lambda s: s.finished_at) if found else None


def _key_states(box: Any) -> dict[str, str]:
    return {k: v.split(": ", 1)[1] for k, v in box.key_states().items()}


def _check_key_inactive(exercise: Exercise, box: Any, e: KeyInactive) -> tuple[bool, datetime | None, str]:
    key = resolve(box, e.key)
    state = _key_states(box).get(key, "deleted")
    step = _first_step(exercise, ("aws.iam.deactivate_access_key", "aws.iam.rotate_access_key"), key)
    how = f"by step {step.id} at {exercise.offset(step.finished_at)}" if step else "by no step of the run"
    return state in ("Inactive", "deleted"), step.finished_at if step else None, f"key {key} is {state} ({how})"


def _check_contained(exercise: Exercise, box: Any, e: Contained) -> tuple[bool, datetime | None, str]:
    from integrations.aws.iam import QUARANTINE_POLICY, REVOKE_POLICY

    review = _first_step(exercise, ("aws.cloudtrail.review_key_activity",), e.user)
    iam = box.client("iam")
    try:
        inline = iam.list_user_policies(UserName=e.user)["PolicyNames"]
    except iam.exceptions.NoSuchEntityException:
        return True, None, f"user {e.user} no longer exists"
    # Only Stanch's deny-all counts: AWS's managed *Quarantine* policies deny some actions, not every one.
    quarantined = QUARANTINE_POLICY in inline
    keys = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=e.user)["AccessKeyMetadata"]}
    active = sorted(k for k, s in keys.items() if s == "Active")
    try:
        iam.get_login_profile(UserName=e.user)
        login = True
    except iam.exceptions.NoSuchEntityException:
        login = False
    sessions_revoked = REVOKE_POLICY in inline
    steps = [
        _first_step(exercise, (action,), e.user)
        for action in (
            "aws.iam.quarantine_principal",
            "aws.iam.deactivate_access_key",
            "aws.iam.disable_console_login",
            "aws.iam.revoke_sessions",
        )
    ]
    finished = [s.finished_at for s in steps if s is not None]
    parts = [
        f"the review {'found' if review else 'did not find'} {e.user}",
        "quarantined (deny-all)" if quarantined else "not quarantined",
        f"active keys: {', '.join(active) or 'none'}" + (" (denied by the quarantine)" if active and quarantined else ""),
    ]
    if not quarantined:
        parts.append("console login still works" if login else "no console login")
        parts.append("older sessions revoked" if sessions_revoked else "sessions NOT revoked (they may still work)")
    # Without the deny-all, a user is contained only with no key, no login and its sessions cut off.
    met = review is not None and (quarantined or (not active and not login and sessions_revoked))
    done = max(finished) if met and finished else None  # contained when the last of its steps finished
    return met, done, "; ".join(parts)


def _check_no_credential_lost(exercise: Exercise, box: Any, e: NoCredentialLost) -> tuple[bool, datetime | None, str]:
    users = e.users or [u.name for u in exercise.scenario.environment.users if u.secret]
    secret_of = {u.name: u.secret for u in exercise.scenario.environment.users}
    states = _key_states(box)
    lost: list[str] = []
    fine: list[str] = []
    for user in users:
        secret = secret_of.get(user)
        iam_keys = {
            k["AccessKeyId"]: k["Status"] for k in box.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
        }
        if secret:
            stored = json.loads(
                box.client("secretsmanager").get_secret_value(SecretId=secret, VersionStage="AWSCURRENT")["SecretString"]
            )
            current = stored.get("AccessKeyId", "")
            (fine if states.get(current) == "Active" else lost).append(
                f"{user}: the key in {secret} is {states.get(current, 'gone')}"
            )
        elif "Active" in iam_keys.values():
            fine.append(f"{user}: has an active key")
        else:
            lost.append(f"{user}: no active key")
    return not lost, exercise.ended_at, "; ".join(lost + fine) or "no workload user"


def _check_channel_told(exercise: Exercise, box: Any, e: ChannelTold) -> tuple[bool, datetime | None, str]:
    channel = e.channel.lstrip("#")
    messages = box.slack.messages(channel) if box.slack else []
    # The step's outputs name the channel by Slack's id; the stand-in's messages are read by name.
    step = _first_step(exercise, ("slack.post_message",), '"posted": true')
    told = bool(messages) and step is not None
    return (
        told,
        step.finished_at if step else None,
        f"{len(messages)} message(s) in #{channel}" + (f", first by step {step.id}" if step else ""),
    )


def _check_rotation(exercise: Exercise, box: Any, e: RotationVerified) -> tuple[bool, datetime | None, str]:
    step = _first_step(exercise, ("aws.iam.rotate_access_key",), e.user)
    if step is None:
        states = {s.id: s.state for s in _steps(exercise) if s.uses == "aws.iam.rotate_access_key"}
        return (
            False,
            None,
            f"no rotation completed ({', '.join(f'{k}: {v}' for k, v in states.items()) or 'no rotation step'})",
        )
    outputs = step.outputs if isinstance(step.outputs, dict) else {}
    stored = json.loads(
        box.client("secretsmanager").get_secret_value(SecretId=e.secret, VersionStage="AWSCURRENT")["SecretString"]
    )
    state = _key_states(box).get(stored.get("AccessKeyId", ""), "gone")
    verified = bool(outputs.get("verified")) and state == "Active"
    return (
        verified,
        step.finished_at,
        (
            f"{e.secret} holds {stored.get('AccessKeyId')} ({state}); the new key was "
            + ("verified" if outputs.get("verified") else "NOT verified")
            + f" by step {step.id}"
        ),
    )


def _check_step(exercise: Exercise, box: Any, e: StepState) -> tuple[bool, datetime | None, str]:
    record = next((s for s in _steps(exercise) if s.id == e.step), None)
    if record is None:
        return False, None, f"step {e.step} did not run"
    detail = record.detail or record.reason
    return record.state == e.state, record.finished_at, f"step {e.step} {record.state}" + (f": {detail}" if detail else "")


def _check_run(exercise: Exercise, box: Any, e: RunState) -> tuple[bool, datetime | None, str]:
    state = getattr(exercise.summary, "state", "not run")
    return state == e.state, exercise.ended_at, f"the run ended {state}: {getattr(exercise.summary, 'message', '')}"


def _vendor_item(exercise: Exercise, uses: str, credential: str) -> tuple[Any, dict[str, Any]]:
    """The completed step of `uses` whose outputs hold the credential's item, and that item."""
    for step in sorted(_steps(exercise), key=lambda s: s.finished_at or exercise.started_at):
        items = step.outputs if isinstance(step.outputs, list) else [step.outputs]
        for item in items:
            if step.uses == uses and isinstance(item, dict) and item.get("credential") == credential:
                return step, item
    return None, {}


def _vendor_row(exercise: Exercise, credential: str) -> tuple[Any, dict[str, Any]]:
    """The run's report step and its row for the credential (vendor.report)."""
    for step in _steps(exercise):
        if step.uses == "vendor.report" and isinstance(step.outputs, dict):
            rows = [r for r in step.outputs.get("credentials", []) if r.get("credential") == credential]
            return step, rows[0] if rows else {}
    return None, {}


def _told(box: Any, *words: str) -> bool:
    """Whether a message in the incident channel holds every word (the run's report)."""
    messages = box.slack.messages("incident-response") if box.slack else []
    return any(all(w in str(m.get("text", "")) for w in words) for m in messages)


def _check_vendor_key(exercise: Exercise, box: Any, e: VendorKey) -> tuple[bool, datetime | None, str]:
    env = exercise.vendor_env
    if env is None or e.credential not in env.old:
        return False, None, f"the sandbox holds no credential {e.credential}"
    report, row = _vendor_row(exercise, e.credential)
    if not row:
        return False, None, f"the run reported nothing of {e.credential}"
    old_works = env.old_key_works(e.credential)
    if e.state == "made":
        step, item = _vendor_item(exercise, "vendor.verify_new_key", e.credential)
        if not item.get("verified"):
            step, item = _vendor_item(exercise, "vendor.mint_new_key", e.credential)
        new = env.current(e.credential) != env.old[e.credential]
        made = row.get("minted") in ("minted", "made by hand, verified") and new
        how = f" (step {step.id} at {exercise.offset(step.finished_at)})" if step else ""
        return made, step.finished_at if step else None, f"{e.credential}: new key {row.get('minted')}{how}"
    if e.state == "revoked":
        step, item = _vendor_item(exercise, "vendor.revoke_old_key", e.credential)
        revoked = str(row.get("old_key", "")).startswith("revoked") and not old_works
        where = "no longer works at its issuer" if not old_works else "STILL WORKS at its issuer"
        evidence = f"{e.credential}: old key {row.get('old_key')}; the old key {where}"
        return revoked, step.finished_at if step and item.get("status") == "revoked" else None, evidence
    kept = str(row.get("old_key", "")).startswith("KEPT ALIVE") and old_works
    told = _told(box, e.credential, "KEPT ALIVE")
    failures = "; ".join(row.get("failures", [])) or "no failure reported"
    evidence = (
        f"{e.credential}: old key {row.get('old_key')}; it {'still works' if old_works else 'NO LONGER WORKS'} at its "
        f"issuer; failures: {failures}; {'reported' if told else 'NOT reported'} in #incident-response"
    )
    return kept and told, report.finished_at if report else None, evidence


def _check_key_use_flagged(exercise: Exercise, box: Any, e: KeyUseFlagged) -> tuple[bool, datetime | None, str]:
    step, review = _vendor_item(exercise, "vendor.review_key_use", e.credential)
    if step is None:
        return False, None, f"the use of {e.credential}'s old key was not reviewed"
    places = [str(p) for p in review.get("unknown_places", [])]
    flagged = e.place in places if e.place else bool(places)
    told = _told(box, e.credential, "UNKNOWN places")
    evidence = (
        f"{e.credential}: {review.get('uses', 0)} use(s) reviewed; unknown places: {', '.join(places) or 'none'}"
        + (f" (partial: {review['partial']})" if review.get("partial") else "")
        + ("; in the report to #incident-response" if told else "")
    )
    return flagged, step.finished_at, evidence


_CHECKS: dict[type, Callable[[Exercise, Any, Any], tuple[bool, datetime | None, str]]] = {
    KeyInactive: _check_key_inactive,
    Contained: _check_contained,
    NoCredentialLost: _check_no_credential_lost,
    ChannelTold: _check_channel_told,
    RotationVerified: _check_rotation,
    StepState: _check_step,
    RunState: _check_run,
    VendorKey: _check_vendor_key,
    KeyUseFlagged: _check_key_use_flagged,
}


# ---------------------------------------------------------------- the after-action report


def after_action(exercise: Exercise, html: Path | None, json_file: Path | None, say: Say = print) -> None:
    """The after-action report (flows.tabletop.report) as HTML, JSON and a Prefect artifact; without that module,
    the exercise's own JSON in the report's shape."""
    scenario = exercise.scenario.model_dump(mode="json", by_alias=True)
    for secret in scenario["environment"]["secrets"]:
        secret["value"] = "(made up for the exercise; not shown)"  # never a secret's value in a report
    try:
        from flows.tabletop import report as report_module
    except ImportError:
        report_module = None  # type: ignore[assignment]
    if report_module is None or exercise.run_id is None:
        if json_file is not None:
            json_file.write_text(json.dumps(exercise.as_json(), indent=2, default=str))
            say(f"exercise JSON: {json_file}")
        if html is not None:
            say("the after-action HTML needs flows.tabletop.report, which is not installed here")
        return
    # The report reads steps, gates and accepted decisions from the run's records: only what they do not hold.
    extra = [e for e in exercise.events if e["kind"] in REPORT_KINDS]
    report = report_module.collect(exercise.run_id, scenario=scenario, outcomes=exercise.outcomes, extra_events=extra)
    with contextlib.suppress(Exception):  # the artifact is a copy; the files are the report
        report_module.publish_artifact(report, exercise.run_id)
    if html is not None:
        html.write_text(report_module.render_html(report), encoding="utf-8")
        say(f"after-action report: {html}")
    if json_file is not None:
        data = report_module.to_json(report)
        json_file.write_text(data if isinstance(data, str) else json.dumps(data, indent=2, default=str))
        say(f"after-action JSON: {json_file}")
