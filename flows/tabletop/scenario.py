"""A tabletop scenario (`playbooks/scenarios/NAME.yaml`, kind `Scenario`): a rehearsed breach, scored.

The one definition of the scenario's schema: `playbooks/scenarios/schema.json` is generated from these models
(`json_schema`, `python -m flows.tabletop.scenario`) and a test keeps the two equal. `stanch validate` checks a
`kind: Scenario` document through `check_document`, with the same file:line:col problems as a playbook.

A scenario names the alert to inject and the playbook it starts (or lets the playbooks' triggers decide), the
simulated account (users, keys, roles, policies, secrets, CloudTrail files with the attacker's activity), the
injects on the exercise clock, the approvers (scripted personas per gate, or live people) and the expected
outcomes with their time targets.

Values written `@sandbox:USER` (that user's first access key), `@sandbox:USER#N` (its key N) and
`@sandbox:trail` (the simulated trail's S3 location) stand for what the sandbox makes when it starts: access key
ids are random, so a scenario can only name them this way.

This module is on `stanch validate`'s fast path: no Prefect, boto3 or slack_sdk.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from flows.language.loader import Document, PathT, Problem
from flows.language.model import duration_seconds

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "playbooks" / "scenarios"
SCHEMA_PATH = SCENARIO_DIR / "schema.json"
SANDBOX_REF = re.compile(r"^@sandbox:(?P<name>[\w+=,.@-]+)(?:#(?P<index>\d+))?$")
BACKDOOR_USER = "svc-backup"  # the user the sandbox's attack story creates (flows.sandbox.trail.BACKDOOR_USER)


def _duration(value: str | int) -> str | int:
    duration_seconds(value)
    return value


Duration = Annotated[
    str | int,
    AfterValidator(_duration),
    Field(description="Seconds, or a number with s, m, h or d: 90s, 3m, 2h."),
]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")]
IamName = Annotated[str, StringConstraints(pattern=r"^[\w+=,.@-]{1,64}$")]
SandboxRef = Annotated[
    str,
    StringConstraints(pattern=SANDBOX_REF.pattern),
    Field(description="@sandbox:USER (its first key), @sandbox:USER#N (its key N)."),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Metadata(_Strict):
    name: Slug
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    tags: list[str] = Field(default_factory=list)


class AlertSpec(_Strict):
    """An alert: a real-format file (relative to the scenario's folder) or inline, with values set in it."""

    file: str | None = Field(None, description="A JSON alert file, relative to the scenario's folder.")
    inline: dict[str, Any] | None = Field(None, description="The alert itself, as the source sends it.")
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="Values to put in the alert, by path (detail.affectedEntities[0].entityValue): @sandbox refs "
        "name the simulated account's keys.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> AlertSpec:
        if (self.file is None) == (self.inline is None):
            raise ValueError("an alert is either `file` (a real-format alert file) or `inline`, not both or neither")
        return self


class User(_Strict):
    name: IamName
    keys: int = Field(1, ge=0, le=2, description="Access keys (IAM allows two).")
    tags: dict[str, str] = Field(default_factory=dict)
    secret: str | None = Field(None, description="A Secrets Manager secret holding the first key pair (a workload).")
    policies: list[str] = Field(default_factory=list, description="Managed policies to attach: ARNs or names below.")
    console_login: bool = False


class Role(_Strict):
    name: IamName
    trusted_service: str = Field("ec2.amazonaws.com", description="The service that may assume it.")
    policies: list[str] = Field(default_factory=list)


class Policy(_Strict):
    name: IamName
    document: dict[str, Any]


class Secret(_Strict):
    name: str = Field(min_length=1, max_length=512)
    value: str = Field(description="A made-up value: the sandbox holds no real secret.")
    tags: dict[str, str] = Field(default_factory=dict)


class Vendor(_Strict):
    name: Slug
    prefix: str
    keys: list[str]
    manual: list[str] = Field(default_factory=list)


class TrailEvent(_Strict):
    """One CloudTrail record, written in the real format (flows.sandbox.trail.record)."""

    ago: Duration = Field(description="How long before the exercise starts.")
    name: str = Field(description="The API call: CreateUser, GetSecretValue...")
    source: str = Field(description="The event source: iam.amazonaws.com...")
    key: str = Field(description="The access key that made the call (a @sandbox ref or a key id).")
    principal: str = Field(description="user/NAME or assumed-role/ROLE/SESSION.")
    params: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    error: str | None = None
    ip: str = "203.0.113.5"


class Attack(_Strict):
    """The sandbox's attack story by a user's first key, among ordinary traffic (flows.sandbox.trail)."""

    user: IamName
    hours_ago: int = Field(3, ge=1, le=72)
    noise: int = Field(200, ge=0, le=20000, description="Ordinary records from other keys around it.")
    role: str = Field("", description="A role whose stolen session is in the trail too.")
    wider: bool = Field(False, description="Also the wider attack: shares, bucket policy, trail selectors...")


class Trail(_Strict):
    bucket: str = "stanch-sandbox-cloudtrail"
    files: list[str] = Field(default_factory=list, description="Real-format CloudTrail files, relative to the scenario.")
    events: list[TrailEvent] = Field(default_factory=list)
    attack: Attack | None = None


class VendorBreach(_Strict):
    """A vendor's breach in the sandbox: stand-ins of the vendor's and the issuers' APIs and of every consumer
    its inventory lists, seeded with the current keys (flows.sandbox.vendor_env)."""

    vendor: Literal["acme-ai", "acme-ai-exercise"] = Field(
        description="The inventory the sandbox serves stand-ins for: vendors/acme-ai.yaml (three credentials, eleven "
        "consumers, one key made by hand) or vendors/acme-ai-exercise.yaml (four credentials, twelve consumers among "
        "them GitLab and SSM, two keys made by hand)."
    )
    failing_consumer: bool = Field(True, description="One consumer (a Deployment's rollout) fails to take the new key.")


class Environment(_Strict):
    region: str = "us-east-1"
    users: list[User] = Field(default_factory=list)
    roles: list[Role] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)
    secrets: list[Secret] = Field(default_factory=list)
    vendors: list[Vendor] = Field(default_factory=list)
    slack_channels: list[str] = Field(default_factory=lambda: ["incident-response", "security-escalations"])
    cloudtrail: Trail | None = None
    vendor_breach: VendorBreach | None = None


class _Inject(_Strict):
    at: Duration = Field(description="When, on the exercise clock (3m: three minutes after the alert).")
    label: str = ""


class CreateAccessKey(_Inject):
    """The attacker makes another access key for a user (recorded in the trail, made in the account)."""

    do: Literal["create_access_key"]
    user: IamName
    by: str = Field(description="The attacker's key that makes the call (a @sandbox ref).")


class CreateUser(_Inject):
    """The attacker creates a user, with an access key and administrator rights unless `admin: false`."""

    do: Literal["create_user"]
    user: IamName
    admin: bool = True
    by: str


class AttachUserPolicy(_Inject):
    do: Literal["attach_user_policy"]
    user: IamName
    policy_arn: str
    by: str


class NewAlert(_Inject):
    """A new alert arrives: it starts another run (of `playbook`, or the one its triggers pick)."""

    do: Literal["alert"]
    alert: AlertSpec
    playbook: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)


class Note(_Inject):
    """Something the exercise tells its players (a vendor's notice, a journalist's call): on the timeline only."""

    do: Literal["note"]
    detail: str


VendorApi = Annotated[
    Literal["vendor", "openai", "anthropic", "github", "gitlab", "kubernetes"],
    Field(
        description="A stand-in of the vendor breach's sandbox: vendor (the breached vendor's own API), openai, "
        "anthropic, github, gitlab (acme-ai-exercise only), kubernetes."
    ),
]


class VendorOutage(_Inject):
    """The vendor reports that a rotation failed: from now on, every request to `api` whose path contains `path`
    answers `status` (the stand-in's `fail()`), until a `vendor_recovers` inject or `lasts` passes."""

    do: Literal["vendor_outage"]
    api: VendorApi
    path: str = Field(min_length=1, description="Part of the failing requests' path: /v1/ai_secret, deployments/NAME.")
    status: int = Field(503, ge=400, le=599, description="What the failing requests answer.")
    lasts: Duration | None = Field(None, description="The outage ends this long after it starts (default: until recovered).")
    detail: str = Field("", description="What the vendor's notice says (on the timeline).")


class VendorRecovers(_Inject):
    """The outage is over: the stand-in answers again (its `heal()`)."""

    do: Literal["vendor_recovers"]
    api: VendorApi
    path: str | None = Field(None, description="The outage's `path`; default: every outage of `api`.")
    detail: str = ""


Inject = Annotated[
    CreateAccessKey | CreateUser | AttachUserPolicy | NewAlert | Note | VendorOutage | VendorRecovers,
    Field(discriminator="do"),
]


class Persona(_Strict):
    """A scripted approver at one gate."""

    gate: str = Field(description="The gated step's id in the playbook.")
    who: str = Field(description="An approver the playbook's group for that gate names.")
    decision: Literal["approve", "reject", "none"] = Field(description="none: the persona never answers.")
    after: Duration = Field("2m", description="How long after the gate opens the persona answers.")
    reason: str = ""
    does: Literal["make_new_key"] | None = Field(
        None,
        description="What the persona does before answering (or, with decision none, instead of answering): "
        "make_new_key makes the key no issuer API can mint, at the issuer's console, and puts it into its secret "
        "(needs environment.vendor_breach).",
    )
    credential: str | None = Field(
        None,
        description="The credential whose key make_new_key makes (default: those of the inventory whose key "
        "`who` makes by hand).",
    )


class Approvers(_Strict):
    mode: Literal["scripted", "live"] = Field(
        "scripted", description="live: people answer through Slack or `stanch approve`, on wall time."
    )
    personas: list[Persona] = Field(default_factory=list)


class _Expect(_Strict):
    name: str = Field(min_length=1)
    within: Duration | None = Field(None, description="The time target, on the exercise clock.")


class KeyInactive(_Expect):
    check: Literal["key_inactive"]
    key: str = Field(description="@sandbox:USER or a key id.")


class Contained(_Expect):
    """The review found the user (a backdoor) and the response contained it: quarantined, every key inactive."""

    check: Literal["contained"]
    user: IamName


class NoCredentialLost(_Expect):
    """Every workload user keeps a working key, the one its secret holds."""

    check: Literal["no_credential_lost"]
    users: list[IamName] = Field(default_factory=list, description="Default: the users with a `secret`.")


class ChannelTold(_Expect):
    check: Literal["channel_told"]
    channel: str = "#incident-response"


class RotationVerified(_Expect):
    check: Literal["rotation_verified"]
    user: IamName
    secret: str


class StepState(_Expect):
    check: Literal["step"]
    step: str
    state: Literal["completed", "failed", "skipped", "rejected", "timed_out", "blocked", "not_run"] = "completed"


class RunState(_Expect):
    check: Literal["run"]
    state: Literal["Completed", "Cancelled", "Failed"]


class VendorKey(_Expect):
    """A vendor breach's credential (needs environment.vendor_breach), from the run's report and the stand-ins:
    made (a new key minted or made by hand, verified and stored), revoked (the old key no longer works) or
    kept_alive (a consumer failed: the old key still works, and the report in the channel says so)."""

    check: Literal["vendor_key"]
    credential: str = Field(description="A credential id of the inventory.")
    state: Literal["made", "revoked", "kept_alive"]


class KeyUseFlagged(_Expect):
    """The review of the old keys' use flagged a use from a place the inventory does not know."""

    check: Literal["key_use_flagged"]
    credential: str = Field(description="A credential id of the inventory.")
    place: str | None = Field(None, description="The unknown place (an address); default: any.")


Expectation = Annotated[
    KeyInactive
    | Contained
    | NoCredentialLost
    | ChannelTold
    | RotationVerified
    | StepState
    | RunState
    | VendorKey
    | KeyUseFlagged,
    Field(discriminator="check"),
]


class Scenario(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        title="Stanch tabletop scenario",
        json_schema_extra={"$id": "https://stanch.dev/schema/stanch-v1-scenario.json"},
    )

    apiVersion: Literal["stanch/v1"]
    kind: Literal["Scenario"]
    metadata: Metadata
    playbook: str | None = Field(None, description="The playbook the alert starts (a name or a path).")
    route: bool = Field(False, description="Let the playbooks' triggers pick the playbook for the alert.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="Inputs beyond what the alert gives.")
    alert: AlertSpec | None = None
    environment: Environment = Field(default_factory=Environment)
    injects: list[Inject] = Field(default_factory=list)
    approvers: Approvers = Field(default_factory=Approvers)
    expect: list[Expectation] = Field(default_factory=list)
    limit: Duration = Field("4h", description="The exercise ends after this long on its clock.")

    @model_validator(mode="after")
    def _one_playbook(self) -> Scenario:
        if self.route == (self.playbook is not None):
            raise ValueError("name the `playbook` the alert starts, or set `route: true` to let triggers decide")
        if self.route and self.alert is None:
            raise ValueError("`route: true` needs an `alert` for the triggers to match")
        return self


_MODELS: tuple[type[BaseModel], ...] = (
    Metadata, AlertSpec, User, Role, Policy, Secret, Vendor, TrailEvent, Attack, Trail, VendorBreach, Environment,
    CreateAccessKey, CreateUser, AttachUserPolicy, NewAlert, Note, VendorOutage, VendorRecovers, Persona, Approvers,
    KeyInactive, Contained, NoCredentialLost, ChannelTold, RotationVerified, StepState, RunState, VendorKey,
    KeyUseFlagged,
)  # fmt: skip


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenarios, as committed in playbooks/scenarios/schema.json."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------- checking


def check_document(doc: Document) -> list[Problem]:
    """Every problem of a scenario, each at its file:line:col with what to fix."""
    try:
        scenario = Scenario.model_validate(doc.data)
    except ValidationError as exc:
        return _schema_problems(doc, exc)
    return meaning_problems(doc, scenario)


def _schema_problems(doc: Document, exc: ValidationError) -> list[Problem]:
    from flows.language.validate import _data_path

    problems: list[Problem] = []
    seen: set[PathT] = set()
    tags = set(_tags("do")) | set(_tags("check"))
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        # a discriminated union names its member after the list index: not a place in the document
        loc = tuple(p for i, p in enumerate(loc) if not (p in tags and i and isinstance(loc[i - 1], int)))
        path, _ = _data_path(doc.data, loc)
        kind, name = error["type"], (path[-1] if path else "")
        if kind == "missing":
            problems.append(doc.problem(path, f"missing required field {name!r}", at=path[:-1]))
        elif kind == "extra_forbidden":
            problems.append(doc.problem(path, f"unknown field {name!r}{_close_field(str(name))}"))
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            tag = "do" if "injects" in path else "check"
            options = _tags(tag)
            problems.append(doc.problem((*path, tag), f"`{tag}` must be one of {', '.join(options)}", at=path))
        elif path not in seen:
            seen.add(path)
            message = str(error["msg"]).removeprefix("Value error, ")
            if kind == "string_pattern_mismatch" and "@sandbox" in str(error.get("ctx", {}).get("pattern", "")):
                message = "write @sandbox:USER or @sandbox:USER#N (a user of the environment)"
            problems.append(doc.problem(path, message))
    return problems


def _close_field(name: str) -> str:
    import difflib

    fields = sorted({f for model in _MODELS for f in model.model_fields})
    close = difflib.get_close_matches(name, fields, n=1)
    return f"; did you mean {close[0]!r}?" if close else " (see playbooks/scenarios/schema.json)"


def _tags(tag: str) -> list[str]:
    union = Inject if tag == "do" else Expectation
    members = union.__origin__.__args__  # type: ignore[attr-defined]
    return [m.model_fields[tag].annotation.__args__[0] for m in members]


def meaning_problems(doc: Document, scenario: Scenario, base: Path | None = None) -> list[Problem]:
    """What the schema cannot see: the playbook and its gates, files, the sandbox names the scenario uses."""
    folder = base or Path(doc.file).resolve().parent
    problems: list[Problem] = []
    playbook = _playbook_of(doc, scenario, problems)
    if scenario.alert is not None:
        problems.extend(_alert_problems(doc, scenario.alert, ("alert",), folder))
    problems.extend(_environment_problems(doc, scenario, folder))
    problems.extend(_vendor_problems(doc, scenario))
    users = _known_users(scenario)
    for path, value in _strings(doc.data):
        if isinstance(value, str) and value.startswith("@sandbox:") and value != "@sandbox:trail":
            problems.extend(_ref_problems(doc, path, value, users))
    for n, inject in enumerate(scenario.injects):
        if isinstance(inject, NewAlert):
            problems.extend(_alert_problems(doc, inject.alert, ("injects", n, "alert"), folder))
            if inject.playbook is not None:
                _load_playbook(doc, inject.playbook, ("injects", n, "playbook"), problems)
    if duration_seconds(max((i.at for i in scenario.injects), key=duration_seconds, default=0)) > duration_seconds(
        scenario.limit
    ):
        problems.append(doc.problem(("limit",), "an inject comes after the exercise's `limit`: raise the limit"))
    if playbook is not None:
        others = [
            _load_playbook(doc, i.playbook, (), []) for i in scenario.injects if isinstance(i, NewAlert) and i.playbook
        ]
        problems.extend(_playbook_problems(doc, scenario, playbook, [o for o in others if o is not None]))
    return problems


def _vendor_problems(doc: Document, scenario: Scenario) -> list[Problem]:
    """Personas' keys, vendor outages and vendor outcomes against the vendor breach's sandbox and inventory."""
    from flows.sandbox.vendor_env import INVENTORIES, MANUAL

    problems: list[Problem] = []
    breach = scenario.environment.vendor_breach
    needs = "needs a vendor breach in the sandbox: add environment.vendor_breach"
    credentials = _inventory_credentials(breach.vendor) if breach is not None else []
    manual = MANUAL.get(breach.vendor, {}) if breach is not None else {}
    inventory = breach.vendor if breach is not None else "the sandbox"
    for n, persona in enumerate(scenario.approvers.personas):
        where = ("approvers", "personas", n)
        if persona.does == "make_new_key" and breach is None:
            problems.append(doc.problem((*where, "does"), f"make_new_key {needs}"))
        elif persona.credential is not None and persona.does is None:
            problems.append(doc.problem((*where, "credential"), "`credential` names the key `does: make_new_key` makes"))
        elif persona.credential is not None and persona.credential not in manual:
            problems.append(
                doc.problem(
                    (*where, "credential"),
                    f"{persona.credential!r} is not a key made by hand in {inventory} "
                    f"(those are: {', '.join(manual) or 'none'})",
                )
            )
        elif persona.does == "make_new_key" and persona.credential is None and persona.who not in manual.values():
            problems.append(
                doc.problem(
                    (*where, "who"),
                    f"{persona.who} makes no key by hand in {inventory} (owners: "
                    f"{', '.join(f'{c}: {o}' for c, o in manual.items()) or 'none'}); name the `credential`",
                )
            )
    down: set[str] = set()
    for n, inject in sorted(enumerate(scenario.injects), key=lambda item: duration_seconds(item[1].at)):
        if not isinstance(inject, VendorOutage | VendorRecovers):
            continue
        if breach is None:
            problems.append(doc.problem(("injects", n, "do"), f"{inject.do} {needs}"))
            continue
        served = INVENTORIES[breach.vendor]
        if inject.api not in served:
            problems.append(
                doc.problem(
                    ("injects", n, "api"),
                    f"the {breach.vendor} sandbox has no {inject.api} API (it has: {', '.join(served)})",
                )
            )
        elif isinstance(inject, VendorOutage):
            down.add(inject.api)
        elif inject.api not in down:
            problems.append(doc.problem(("injects", n, "api"), f"no vendor_outage of {inject.api} comes before this"))
    for n, expected in enumerate(scenario.expect):
        if not isinstance(expected, VendorKey | KeyUseFlagged):
            continue
        if breach is None:
            problems.append(doc.problem(("expect", n, "check"), f"{expected.check} {needs}"))
        elif credentials and expected.credential not in credentials:
            problems.append(
                doc.problem(
                    ("expect", n, "credential"),
                    f"{breach.vendor} has no credential {expected.credential!r} (it has: {', '.join(credentials)})",
                )
            )
    return problems


def _inventory_credentials(name: str) -> list[str]:
    from flows.vendors.inventory import InventoryError, load_inventory

    try:
        return [c.id for c in load_inventory(name)[0].credentials]
    except (InventoryError, FileNotFoundError):
        return []  # `stanch validate vendors/` names the inventory's own problems


def _playbook_of(doc: Document, scenario: Scenario, problems: list[Problem]) -> Any:
    if scenario.playbook is not None:
        return _load_playbook(doc, scenario.playbook, ("playbook",), problems)
    return None  # routed: the triggers pick at run time (and the runner says which)


def _load_playbook(doc: Document, name: str, path: PathT, problems: list[Problem]) -> Any:
    from flows.language.validate import PlaybookError, load_playbook, resolve_playbook_path

    try:
        return load_playbook(resolve_playbook_path(name, [Path(doc.file).resolve().parent.parent]))
    except FileNotFoundError:
        problems.append(doc.problem(path, f"no playbook named {name!r}: name one in playbooks/ (or give its path)"))
    except PlaybookError as exc:
        problems.append(doc.problem(path, f"playbook {name!r} has {len(exc.problems)} problem(s): run stanch validate"))
    return None


def _playbook_problems(doc: Document, scenario: Scenario, playbook: Any, others: list[Any]) -> list[Problem]:
    """Personas, inputs and expected steps against the playbook (personas also against the playbooks that
    injected alerts start: a persona answers its gate in whichever run opens it)."""
    problems: list[Problem] = []
    gates = {s.id: s.approval for s in playbook.steps if s.approval is not None}
    for other in others:
        gates.update({s.id: s.approval for s in other.steps if s.approval is not None and s.id not in gates})
    approvers = {**{k: v for o in others for k, v in o.approvers.items()}, **playbook.approvers}
    steps = {s.id for s in playbook.steps}
    name = playbook.metadata.name
    for n, persona in enumerate(scenario.approvers.personas):
        approval = gates.get(persona.gate)
        if approval is None:
            listed = ", ".join(sorted(gates)) or "none"
            problems.append(
                doc.problem(("approvers", "personas", n, "gate"), f"{name} has no gate {persona.gate!r} (gates: {listed})")
            )
            continue
        groups = [g for g in (approval.from_, approval.escalate_to) if g]
        members = sorted({m for g in groups for m in approvers.get(g, [])})
        if persona.who not in members:
            problems.append(
                doc.problem(
                    ("approvers", "personas", n, "who"),
                    f"{persona.who!r} may not answer gate {persona.gate} (groups {' or '.join(groups)}: "
                    f"{', '.join(members)}); pick one of them",
                )
            )
    for name_, _ in scenario.inputs.items():
        if name_ not in playbook.inputs:
            problems.append(
                doc.problem(
                    ("inputs", name_), f"{name} has no input {name_!r} (inputs: {', '.join(sorted(playbook.inputs))})"
                )
            )
    for n, expected in enumerate(scenario.expect):
        if isinstance(expected, StepState) and expected.step not in steps:
            problems.append(doc.problem(("expect", n, "step"), f"{name} has no step {expected.step!r}"))
    return problems


def _alert_problems(doc: Document, alert: AlertSpec, path: PathT, folder: Path) -> list[Problem]:
    from flows.alerts import AlertError, load_alert_file, normalize

    if alert.file is None:
        try:
            normalize(dict(alert.inline or {}))
        except AlertError as exc:
            return [doc.problem((*path, "inline"), f"the alert cannot be used: {exc}")]
        return []
    file = folder / alert.file
    if not file.is_file():
        return [doc.problem((*path, "file"), f"no alert file {alert.file} (paths are relative to the scenario's folder)")]
    try:
        normalize(load_alert_file(file))
    except AlertError as exc:
        return [doc.problem((*path, "file"), f"{alert.file}: {exc}")]
    return []


def _environment_problems(doc: Document, scenario: Scenario, folder: Path) -> list[Problem]:
    problems: list[Problem] = []
    env = scenario.environment
    names = {p.name for p in env.policies}
    attached = [("users", n, u.policies) for n, u in enumerate(env.users)]
    attached += [("roles", n, r.policies) for n, r in enumerate(env.roles)]
    for kind, n, policies in attached:
        for m, policy in enumerate(policies):
            if not policy.startswith("arn:") and policy not in names:
                problems.append(
                    doc.problem(
                        ("environment", kind, n, "policies", m),
                        f"no policy {policy!r} under environment.policies (or give a managed policy's ARN)",
                    )
                )
    users = [u.name for u in env.users]
    for n, name in enumerate(users):
        if name in users[:n]:
            problems.append(doc.problem(("environment", "users", n, "name"), f"user {name!r} is listed twice"))
    trail = env.cloudtrail
    if trail is not None:
        for n, file in enumerate(trail.files):
            if not (folder / file).is_file():
                problems.append(
                    doc.problem(
                        ("environment", "cloudtrail", "files", n),
                        f"no CloudTrail file {file} (paths are relative to the scenario's folder)",
                    )
                )
        if trail.attack is not None and trail.attack.user not in users:
            problems.append(
                doc.problem(
                    ("environment", "cloudtrail", "attack", "user"),
                    f"the attack uses {trail.attack.user!r}'s key: list that user under environment.users",
                )
            )
    return problems


def _known_users(scenario: Scenario) -> dict[str, int]:
    """User name -> how many keys it has when the exercise needs them."""
    users = {u.name: u.keys for u in scenario.environment.users}
    trail = scenario.environment.cloudtrail
    if trail is not None and trail.attack is not None:
        users.setdefault(BACKDOOR_USER, 1)
    for inject in scenario.injects:
        if isinstance(inject, CreateUser):
            users.setdefault(inject.user, 1)
        elif isinstance(inject, CreateAccessKey):
            users[inject.user] = users.get(inject.user, 0) + 1
    return users


def _ref_problems(doc: Document, path: PathT, value: str, users: dict[str, int]) -> list[Problem]:
    match = SANDBOX_REF.match(value)
    if match is None:
        return [doc.problem(path, f"{value!r}: write @sandbox:USER, @sandbox:USER#N or @sandbox:trail")]
    name, index = match.group("name"), int(match.group("index") or 0)
    if name not in users:
        known = ", ".join(sorted(users)) or "none"
        return [doc.problem(path, f"{value}: the environment has no user {name!r} (users: {known})")]
    if index >= users[name]:
        return [doc.problem(path, f"{value}: {name} has {users[name]} key(s); number them from #0")]
    return []


def _strings(value: Any, path: PathT = ()) -> list[tuple[PathT, Any]]:
    if isinstance(value, dict):
        return [item for key, child in value.items() for item in _strings(child, (*path, key))]
    if isinstance(value, list):
        return [item for i, child in enumerate(value) for item in _strings(child, (*path, i))]
    return [(path, value)]


def load_scenario(path: str | Path) -> Scenario:
    """The scenario at `path`, or ScenarioError listing every problem (file:line:col: what to fix)."""
    from flows.language.loader import load_file

    doc, problems = load_file(path)
    if doc is None or problems:
        raise ScenarioError(problems)
    data = doc.data
    if not isinstance(data, dict) or data.get("kind") != "Scenario":
        raise ScenarioError([doc.problem(("kind",), "not a scenario: a scenario has `kind: Scenario`")])
    found = check_document(doc)
    if found:
        raise ScenarioError(found)
    return Scenario.model_validate(data)


class ScenarioError(Exception):
    """A scenario that cannot be run; str() lists every problem, one per line."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


if __name__ == "__main__":
    print(schema_text(), end="")
