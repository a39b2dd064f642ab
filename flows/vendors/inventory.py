"""A vendor inventory (`vendors/NAME.yaml`, kind `Vendor`): what we gave a vendor or hold from it, and who uses it.

The one definition of the inventory's schema: `vendors/schema.json` is generated from these models (`write_schema`)
and a test keeps the two equal. `stanch validate` checks a `kind: Vendor` document through `check_document`, with
the same file:line:col problems as a playbook. This module is on the validate fast path: no Prefect, boto3 or
slack_sdk, and no adapter imports.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from flows.language.loader import Document, Problem, load_file

API_VERSION = "stanch/v1"
VENDOR_DIR = Path(__file__).resolve().parents[2] / "vendors"
SCHEMA_PATH = VENDOR_DIR / "schema.json"

Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"),
    Field(description="Lower-case letters, digits and dashes, starting and ending with a letter or digit."),
]
SecretsManagerId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9/_+=.@:-]+$"),
    Field(description="A Secrets Manager secret's name or ARN (a reference: never the value)."),
]
SsmName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048, pattern=r"^/?[A-Za-z0-9/_.-]+$"),
    Field(description="An SSM Parameter Store parameter name (a SecureString)."),
]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]
SecretName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"),
    Field(description="A CI secret or variable name: letters, digits and underscores."),
]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_url(value: str) -> str:
    if not re.match(r"^https://[^\s/]+", value) and not re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])[:/]", value):
        raise ValueError(f"{value!r} is not an https:// URL (plain http only on loopback, for stand-ins)")
    return value.rstrip("/")


class EnvEndpoint(_Strict):
    """A base URL taken from an environment variable when it is set (a sandbox, a proxy), else `default`."""

    env: EnvName
    default: str | None = None

    @model_validator(mode="after")
    def _default_is_a_url(self) -> EnvEndpoint:
        if self.default is not None:
            _check_url(self.default)
        return self


Endpoint = Annotated[
    str | EnvEndpoint,
    Field(description="The API's base URL (https://...), or {env: NAME, default: URL}."),
]


def _endpoint_checked(value: str | EnvEndpoint | None) -> str | EnvEndpoint | None:
    if isinstance(value, str):
        _check_url(value)
    return value


def resolve_endpoint(value: str | EnvEndpoint | None) -> str | None:
    """The base URL an endpoint names now (its environment variable when set, else its default)."""
    if value is None or isinstance(value, str):
        return value
    found = os.environ.get(value.env) or value.default
    return _check_url(found) if found else None


class Store(_Strict):
    """Where the current value lives (and its rotation's state): one of `secretsmanager` and `ssm` (a SecureString)."""

    secretsmanager: SecretsManagerId | None = None
    ssm: SsmName | None = None
    region: Region | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Store:
        if (self.secretsmanager is None) == (self.ssm is None):
            raise ValueError("name exactly one of `secretsmanager: SECRET_ID` and `ssm: /PARAMETER`")
        return self

    def describe(self) -> str:
        return f"secretsmanager:{self.secretsmanager}" if self.secretsmanager else f"ssm:{self.ssm}"


IssuerKind = Literal["braintrust", "openai", "anthropic", "github", "generic"]


class Issuer(_Strict):
    """Who mints and revokes the credential: the vendor itself or another provider."""

    kind: IssuerKind = Field(description="braintrust, openai, anthropic, github or generic (today's HTTP contract).")
    base_url: Endpoint | None = None
    admin_token: SecretsManagerId | None = Field(
        None, description="The Secrets Manager secret holding the issuer's admin token (a reference)."
    )
    manual_owner: str | None = Field(
        None,
        min_length=1,
        description="Who makes a new key by hand where the issuer has no API for it (an approver's name).",
    )
    options: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Issuer-specific settings (a project id, an organization...)."
    )

    _url = field_validator("base_url")(_endpoint_checked)


class _Consumer(_Strict):
    def describe(self) -> str:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The fields an adapter needs, without `kind`, `base_url` and `token` (passed on their own)."""
        return self.model_dump(exclude={"kind", "base_url", "token"}, exclude_none=True)


class GithubActionsConsumer(_Consumer):
    """A GitHub Actions secret: of a repository (`repository`), of its environment (`repository` + `environment`) or
    of an organization (`org`)."""

    kind: Literal["github_actions"]
    repository: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")] | None = None
    org: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+$")] | None = None
    environment: str | None = Field(None, min_length=1)
    secret: SecretName
    visibility: Literal["all", "private", "selected"] | None = Field(None, description="An org secret's visibility.")
    base_url: Endpoint | None = None
    token: SecretsManagerId | None = Field(None, description="The secret holding a token that may write it.")

    @model_validator(mode="after")
    def _scope(self) -> GithubActionsConsumer:
        if (self.repository is None) == (self.org is None):
            raise ValueError("a GitHub Actions secret names exactly one of `repository: OWNER/NAME` and `org: NAME`")
        if self.environment and not self.repository:
            raise ValueError("an environment secret needs `repository` (environments belong to a repository)")
        return self

    _url = field_validator("base_url")(_endpoint_checked)

    def describe(self) -> str:
        where = (
            f"org {self.org}"
            if self.org
            else f"{self.repository}" + (f" env {self.environment}" if self.environment else "")
        )
        return f"github:{where} secret {self.secret}"


class GitlabConsumer(_Consumer):
    """A GitLab CI/CD variable of a project or group."""

    kind: Literal["gitlab"]
    project: str | None = Field(None, min_length=1, description="A project path (group/name) or id.")
    group: str | None = Field(None, min_length=1)
    key: SecretName = Field(description="The variable's key.")
    environment_scope: str = "*"
    protected: bool = False
    masked: bool = True
    base_url: Endpoint | None = None
    token: SecretsManagerId | None = None

    @model_validator(mode="after")
    def _scope(self) -> GitlabConsumer:
        if (self.project is None) == (self.group is None):
            raise ValueError("a GitLab variable names exactly one of `project` and `group`")
        return self

    _url = field_validator("base_url")(_endpoint_checked)

    def describe(self) -> str:
        return f"gitlab:{self.project or self.group} variable {self.key} ({self.environment_scope})"


K8sName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]


class KubernetesConsumer(_Consumer):
    """A key of a Kubernetes Secret, and the Deployments that mount it (restarted, rollout awaited)."""

    kind: Literal["kubernetes"]
    namespace: K8sName = "default"
    secret: K8sName
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$")]
    deployments: list[K8sName] = Field(default_factory=list)
    rollout_timeout: float = Field(300.0, gt=0, le=3600, description="Seconds to wait for each rollout.")
    poll_interval: float = Field(2.0, gt=0, le=60)
    base_url: Endpoint | None = Field(None, description="The cluster's API server.")
    token: SecretsManagerId | None = None

    _url = field_validator("base_url")(_endpoint_checked)

    def describe(self) -> str:
        deployments = f" restarting {', '.join(self.deployments)}" if self.deployments else ""
        return f"kubernetes:{self.namespace}/{self.secret}[{self.key}]{deployments}"


class SsmConsumer(_Consumer):
    """An SSM SecureString parameter."""

    kind: Literal["ssm"]
    name: SsmName
    key_id: str | None = Field(None, min_length=1, description="The KMS key of the SecureString (default: AWS's).")
    region: Region | None = None

    def describe(self) -> str:
        return f"ssm:{self.name}"


class SecretsManagerConsumer(_Consumer):
    """Another Secrets Manager secret (a new version; stages moved)."""

    kind: Literal["secretsmanager"]
    secret_id: SecretsManagerId
    json_key: str | None = Field(None, min_length=1, description="Set this key of a JSON secret, not the whole value.")
    region: Region | None = None

    def describe(self) -> str:
        return f"secretsmanager:{self.secret_id}" + (f"[{self.json_key}]" if self.json_key else "")


class BraintrustAiSecretConsumer(_Consumer):
    """A provider key stored at a Braintrust-like vendor (`/v1/ai_secret`), updated in place."""

    kind: Literal["braintrust_ai_secret"]
    name: str = Field(min_length=1, description="The stored secret's name at the vendor (OPENAI_API_KEY).")
    type: str | None = Field(None, min_length=1, description="The provider (openai), used when it must be created.")
    org_name: str | None = None
    base_url: Endpoint | None = None
    token: SecretsManagerId | None = Field(None, description="The vendor's admin token secret (a reference).")

    _url = field_validator("base_url")(_endpoint_checked)

    def describe(self) -> str:
        return f"braintrust_ai_secret:{self.name}"


class BraintrustEnvVarConsumer(_Consumer):
    """A provider key kept as an environment variable of a Braintrust-like vendor's object (`/v1/env_var`)."""

    kind: Literal["braintrust_env_var"]
    name: str = Field(min_length=1)
    object_type: Literal["organization", "project", "function"]
    object_id: str = Field(min_length=1)
    base_url: Endpoint | None = None
    token: SecretsManagerId | None = Field(None, description="The vendor's admin token secret (a reference).")

    _url = field_validator("base_url")(_endpoint_checked)

    def describe(self) -> str:
        return f"braintrust_env_var:{self.object_type}/{self.object_id}/{self.name}"


Consumer = Annotated[
    GithubActionsConsumer
    | GitlabConsumer
    | KubernetesConsumer
    | SsmConsumer
    | SecretsManagerConsumer
    | BraintrustAiSecretConsumer
    | BraintrustEnvVarConsumer,
    Field(discriminator="kind"),
]
CONSUMER_KINDS = (
    "github_actions",
    "gitlab",
    "kubernetes",
    "ssm",
    "secretsmanager",
    "braintrust_ai_secret",
    "braintrust_env_var",
)

Place = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9:./_-]+$"),
    Field(description="A CIDR (203.0.113.0/24, 2001:db8::/32), an address, or a name the issuer reports."),
]


def place_matches(place: str | None, known: list[str]) -> bool:
    """Whether a place the issuer reported (an address or a name) is one of the known places."""
    if not place:
        return False
    try:
        address = ipaddress.ip_address(place)
    except ValueError:
        return place in known
    for entry in known:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class Credential(_Strict):
    """One credential shared with or issued by the vendor."""

    id: Slug
    description: str = ""
    issuer: Issuer
    stored_in: Store = Field(description="Where the current value lives (the source every consumer is fed from).")
    key_id: str | None = Field(
        None,
        min_length=1,
        description="The current key's id at the issuer, when the stored value does not say it "
        '(a stored JSON {"api_key": ..., "key_id": ...} does).',
    )
    consumers: list[Consumer] = Field(default_factory=list)
    known_places: list[Place] = Field(
        default_factory=list, description="Where it is normally used from; the vendor's list is added."
    )


class Connection(_Strict):
    """How consumers of one kind are reached, unless a consumer says otherwise: the API's base URL and the secret
    holding a token that may write there (a GitHub token with secrets:write, a Kubernetes service account's)."""

    base_url: Endpoint | None = None
    token: SecretsManagerId | None = None
    ca_file: str | None = Field(
        None,
        min_length=1,
        description="A PEM file of the certificate authorities to trust for this API instead of the system's (a "
        "Kubernetes cluster's own CA), as a path on the machine that runs the playbook.",
    )

    _url = field_validator("base_url")(_endpoint_checked)


class VendorMetadata(_Strict):
    name: Slug = Field(description="The vendor's name: the file is vendors/<name>.yaml.")
    title: str = Field(min_length=1)
    description: str = ""
    owner: str | None = None
    contact: str | None = None


class Vendor(_Strict):
    """A vendor inventory."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        title="Stanch vendor inventory",
        json_schema_extra={"$id": "https://stanch.dev/schema/stanch-v1-vendor.json"},
    )

    apiVersion: Literal["stanch/v1"]
    kind: Literal["Vendor"]
    metadata: VendorMetadata
    known_places: list[Place] = Field(default_factory=list, description="Places every credential is used from.")
    connections: dict[
        Literal["github_actions", "gitlab", "kubernetes", "braintrust_ai_secret", "braintrust_env_var"], Connection
    ] = Field(
        default_factory=dict,
        description="Per consumer kind: the base URL and token secret its consumers use unless they name their own.",
    )
    credentials: list[Credential] = Field(min_length=1)

    def ca_file(self, consumer: Any) -> str | None:
        """The CA bundle the consumer's API is checked against, when its connection names one."""
        return self.connections.get(consumer.kind, Connection()).ca_file

    def connection(self, consumer: Any) -> tuple[str | EnvEndpoint | None, str | None]:
        """(base URL, token secret) for a consumer: its own, else the vendor's `connections` for its kind."""
        shared = self.connections.get(consumer.kind, Connection())
        return (
            getattr(consumer, "base_url", None) or shared.base_url,
            getattr(consumer, "token", None) or shared.token,
        )

    def credential(self, credential_id: str) -> Credential:
        for item in self.credentials:
            if item.id == credential_id:
                return item
        known = ", ".join(c.id for c in self.credentials)
        raise KeyError(f"vendor {self.metadata.name} has no credential {credential_id!r} (it has: {known})")

    def places_of(self, credential: Credential) -> list[str]:
        return [*self.known_places, *credential.known_places]


def json_schema() -> dict[str, Any]:
    """The inventory's JSON Schema, as committed in vendors/schema.json."""
    schema = Vendor.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def write_schema(path: Path = SCHEMA_PATH) -> None:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- checking


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[tuple[str | int, ...], bool]:
    from flows.language.validate import _data_path as playbook_data_path

    return playbook_data_path(data, loc)


def check_document(doc: Document) -> list[Problem]:
    """Every problem of a vendor inventory, each at its file:line:col with what to fix."""
    problems: list[Problem] = []
    data = doc.data
    try:
        vendor = Vendor.model_validate(data)
    except ValidationError as exc:
        return _schema_problems(doc, exc)
    problems.extend(_meaning_problems(doc, vendor))
    return problems


def _schema_problems(doc: Document, exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for error in exc.errors(include_url=False):
        path, _exists = _data_path(doc.data, tuple(error["loc"]))
        kind = error["type"]
        name = path[-1] if path else ""
        if kind == "missing":
            problems.append(doc.problem(path, f"missing required field {name!r}", at=path[:-1]))
            continue
        if kind == "extra_forbidden":
            problems.append(doc.problem(path, f"unknown field {name!r}: {_allowed(doc.data, path[:-1])}"))
            continue
        if kind == "union_tag_invalid":
            problems.append(doc.problem((*path, "kind"), f"unknown consumer kind: use one of {', '.join(CONSUMER_KINDS)}"))
            continue
        if kind == "union_tag_not_found":
            problems.append(doc.problem(path, f"a consumer needs `kind`: one of {', '.join(CONSUMER_KINDS)}", at=path))
            continue
        if path in seen:
            continue  # one message per value (a failed str | object union reports each branch)
        seen.add(path)
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(doc.problem(path, message))
    return problems


def _allowed(data: Any, path: tuple[str | int, ...]) -> str:
    node = data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return "see vendors/schema.json"
    model: Any = None
    names = [p for p in path if isinstance(p, str)]
    if not path:
        model = Vendor
    elif names[-1:] == ["metadata"]:
        model = VendorMetadata
    elif names[-1:] == ["issuer"]:
        model = Issuer
    elif names[-1:] == ["stored_in"]:
        model = Store
    elif names[-1:] == ["credentials"]:
        model = Credential
    elif names[-1:] == ["consumers"] and isinstance(node, dict):
        kinds = {
            "github_actions": GithubActionsConsumer,
            "gitlab": GitlabConsumer,
            "kubernetes": KubernetesConsumer,
            "ssm": SsmConsumer,
            "secretsmanager": SecretsManagerConsumer,
            "braintrust_ai_secret": BraintrustAiSecretConsumer,
            "braintrust_env_var": BraintrustEnvVarConsumer,
        }
        model = kinds.get(str(node.get("kind")))
    if model is None:
        return "see vendors/schema.json"
    return "allowed: " + ", ".join(model.model_fields)


def _meaning_problems(doc: Document, vendor: Vendor) -> list[Problem]:
    problems: list[Problem] = []
    stem = Path(doc.file).stem
    if stem != vendor.metadata.name and Path(doc.file).parent.name == "vendors":
        problems.append(
            doc.problem(
                ("metadata", "name"),
                f"the inventory of {vendor.metadata.name!r} must be vendors/{vendor.metadata.name}.yaml "
                f"(the playbook finds it by name): rename the file or the vendor",
            )
        )
    ids: dict[str, int] = {}
    stores: dict[str, int] = {}
    for index, credential in enumerate(vendor.credentials):
        where = ("credentials", index)
        if credential.id in ids:
            problems.append(
                doc.problem(
                    (*where, "id"),
                    f"duplicate credential id {credential.id!r} (first at credentials[{ids[credential.id]}])",
                )
            )
        ids.setdefault(credential.id, index)
        store = credential.stored_in.describe()
        if store in stores:
            problems.append(
                doc.problem(
                    (*where, "stored_in"),
                    f"credentials[{stores[store]}] is stored in {store} too: each credential has its own store",
                )
            )
        stores.setdefault(store, index)
        if credential.issuer.kind != "generic" and credential.issuer.admin_token is None:
            problems.append(
                doc.problem(
                    (*where, "issuer"),
                    f"issuer {credential.issuer.kind} needs `admin_token`: the Secrets Manager secret holding its "
                    "admin token (to list, check usage and revoke keys)",
                )
            )
        seen: dict[str, int] = {}
        for n, consumer in enumerate(credential.consumers):
            text = consumer.describe()
            if text in seen:
                problems.append(
                    doc.problem(
                        (*where, "consumers", n), f"consumer {text} is listed twice (first at consumers[{seen[text]}])"
                    )
                )
            seen.setdefault(text, n)
            if isinstance(consumer, SecretsManagerConsumer | SsmConsumer):
                target = consumer.describe().split("[", 1)[0]
                if target == store:
                    problems.append(
                        doc.problem(
                            (*where, "consumers", n),
                            f"{target} is the credential's own store: it is updated by the rotation, "
                            "remove it from consumers",
                        )
                    )
        for n, place in enumerate(credential.known_places):
            problems.extend(_place_problems(doc, (*where, "known_places", n), place))
    for n, place in enumerate(vendor.known_places):
        problems.extend(_place_problems(doc, ("known_places", n), place))
    return problems


def _place_problems(doc: Document, path: tuple[str | int, ...], place: str) -> list[Problem]:
    if "/" in place or re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:.]*", place):
        try:
            ipaddress.ip_network(place, strict=False)
        except ValueError:
            return [doc.problem(path, f"{place!r} is not a CIDR or an address (203.0.113.0/24, 2001:db8::/32)")]
    return []


# ---------------------------------------------------------------- loading


class InventoryError(Exception):
    """An inventory that cannot be used; str() lists every problem, one per line."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message if not problems else "\n".join(str(p) for p in problems))
        self.problems = problems or []


def search_dirs() -> list[Path]:
    """Where inventories are looked for: $STANCH_VENDOR_DIR (os.pathsep-separated), ./vendors, the shipped ones."""
    dirs = [Path(p) for p in os.environ.get("STANCH_VENDOR_DIR", "").split(os.pathsep) if p]
    return [*dirs, Path.cwd() / "vendors", VENDOR_DIR]


def find_inventory(name: str) -> Path:
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", name):
        raise InventoryError(f"{name!r} is not a vendor name (lower-case letters, digits, dashes) or a .yaml file")
    for folder in search_dirs():
        for suffix in (".yaml", ".yml"):
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
    raise InventoryError(
        f"no inventory for vendor {name!r}: write vendors/{name}.yaml (kind: Vendor; see docs/vendor-breach.md)"
    )


def load_inventory(name: str) -> tuple[Vendor, Path]:
    """The vendor's inventory by name (or path), checked; InventoryError lists every problem."""
    path = find_inventory(name)
    doc, problems = load_file(path)
    if doc is None or problems:
        raise InventoryError(str(path), problems)
    if not isinstance(doc.data, dict) or doc.data.get("kind") != "Vendor":
        raise InventoryError(str(path), [doc.problem(("kind",), "a vendor inventory has `kind: Vendor`")])
    problems = check_document(doc)
    if problems:
        raise InventoryError(str(path), problems)
    return Vendor.model_validate(doc.data), path


def dump(vendor: Vendor) -> dict[str, Any]:
    """The inventory as plain data (YAML-ready), defaults left out."""
    return vendor.model_dump(mode="json", exclude_defaults=True)
