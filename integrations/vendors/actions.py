"""Vendor breach actions: rotate every credential of a vendor inventory (`vendors/NAME.yaml`) and prove it.

Each action takes the vendor's name and one credential id and works from live state, never from what an earlier
step said: the credential's store (a Secrets Manager secret, or an SSM SecureString parameter: `_SsmStore`) carries
the rotation's state on its versions and tags, so a re-run under any incident finishes what is left and rotates
nothing twice.

State on the store (a version is a Secrets Manager version id, or an SSM version number):
- tag `stanch:rotating-from` names the version being replaced (set when the rotation starts) and
  `stanch:revoked-version` names it once its key is revoked at the issuer (tags, not staging labels: a new
  AWSCURRENT moves labels, and a person's `put-secret-value` must not lose the record);
- tags `stanch:old-key-id` / `stanch:new-key-id` (the keys' ids at the issuer, never values),
  `stanch:consumers-verified` (`<new version>:<consumers hash>:<n>/<n>` when every consumer proved it holds the new
  value; the hash covers the sorted consumer list, so a consumer added to the inventory afterwards means verify
  again before anything is revoked) and `stanch:rotated-at`.

Values travel only inside `SecretValue` and into the issuer, the store and the consumers; every value is
registered with the run's masker as soon as it is read or minted, and no result carries one.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, computed_field

from integrations.aws import applied
from integrations.context import ActionContext
from integrations.registry import ActionResult, Change, Permission, action
from integrations.vendors._api import value_fingerprint
from integrations.vendors.base import (
    AdapterSettings,
    ConsumerWrite,
    ManualStepRequired,
    NotSupported,
    SecretValue,
    VendorError,
)

if TYPE_CHECKING:
    from flows.vendors.inventory import Credential, Vendor

VendorName = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", description="vendors/NAME.yaml"),
]
CredentialId = Annotated[str, Field(min_length=1, max_length=63, description="A credential's id in the vendor inventory.")]

OLD_TAG = "stanch:rotating-from"
REVOKED_TAG = "stanch:revoked-version"
OLD_KEY_TAG = "stanch:old-key-id"
NEW_KEY_TAG = "stanch:new-key-id"
VERIFIED_TAG = "stanch:consumers-verified"
ROTATED_TAG = "stanch:rotated-at"
_NAMESPACE = uuid.UUID("2b7e51a4-93c1-4d0e-8f3a-6c1b9e0d4a27")

# The store's AWS permissions, on the credential's own secret (any secret: the id comes from the inventory).
_STORE_READ = ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:ListSecretVersionIds")
_STORE_WRITE = ("secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage", "secretsmanager:TagResource")
_ADMIN_READ = Permission("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:*:*:secret:*")


# A store in SSM Parameter Store: the same state on the parameter (tags, a label on the replaced version). kms: a
# SecureString's key (a customer-managed key; the account's aws/ssm key needs no grant).
_SSM_READ = ("ssm:GetParameter", "ssm:ListTagsForResource", "kms:Decrypt")
_SSM_WRITE = (
    "ssm:GetParameterHistory",
    "ssm:PutParameter",
    "ssm:LabelParameterVersion",
    "ssm:AddTagsToResource",
    "kms:Encrypt",
)
_RESOURCES = {
    "secretsmanager": "arn:aws:secretsmanager:*:*:secret:*",
    "ssm": "arn:aws:ssm:*:*:parameter/*",
    "kms": "arn:aws:kms:*:*:key/*",
}


def _perms(*names: str) -> list[Permission]:
    """Permissions on the credentials' stores and consumers (any: the names come from the inventory), each once."""
    unique = dict.fromkeys(names)
    return [Permission(n, "*" if n == "ssm:DescribeParameters" else _RESOURCES[n.split(":")[0]]) for n in unique]


# ---------------------------------------------------------------- inventory, adapters and the store


def _vendor(ctx: ActionContext, name: str) -> Vendor:
    from flows.vendors.inventory import load_inventory

    return ctx.cached(("vendor-inventory", name), lambda: load_inventory(name)[0])  # type: ignore[no-any-return]


def _credential(ctx: ActionContext, vendor: str, credential: str) -> tuple[Vendor, Credential]:
    inventory = _vendor(ctx, vendor)
    return inventory, inventory.credential(credential)


def parse_value(text: str) -> tuple[str, str | None]:
    """A stored credential: JSON {"api_key": ..., "key_id": ...} or the bare key. (key, key id)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text, None
    if isinstance(data, dict) and isinstance(data.get("api_key"), str):
        key_id = data.get("key_id")
        return data["api_key"], str(key_id) if key_id else None
    return text, None


def _read_secret(ctx: ActionContext, ref: str) -> SecretValue:
    """An adapter's credential (an admin token), read once per run and registered with the masker."""

    def read() -> str:
        text = ctx.aws.client("secretsmanager").get_secret_value(SecretId=ref)["SecretString"]
        ctx.masker.register(text)
        return parse_value(str(text))[0]

    value = str(ctx.cached(("vendor-secret", ref), read))
    ctx.masker.register(value)
    return SecretValue(value)


def _settings(ctx: ActionContext, base_url: Any, token_ref: str | None, options: dict[str, Any]) -> AdapterSettings:
    from flows.vendors.inventory import resolve_endpoint

    return AdapterSettings(
        base_url=resolve_endpoint(base_url),
        token_ref=token_ref,
        read_secret=lambda ref: _read_secret(ctx, ref),
        http=ctx.http,
        aws=ctx.aws,
        register_secret=ctx.masker.register,
        options=dict(options),
    )


def _issuer(ctx: ActionContext, credential: Credential) -> Any:
    from integrations.vendors.issuers import make_issuer

    spec = credential.issuer
    return make_issuer(spec.kind, _settings(ctx, spec.base_url, spec.admin_token, spec.options))


def _issuer_class(credential: Credential) -> Any:
    """The issuer's class facts (can_mint, scopes) without building it."""
    from integrations.vendors.issuers import issuer_class

    return issuer_class(credential.issuer.kind, dict(credential.issuer.options))


def _consumer(ctx: ActionContext, vendor: Vendor, spec: Any, tags: dict[str, str] | None = None) -> Any:
    """The consumer adapter; `tags` (the store's) answer its question of the marker last recorded for a value."""
    from integrations.vendors.consumers import make_consumer

    base_url, token = vendor.connection(spec)
    settings = _settings(ctx, base_url, token, {})
    ca_file = vendor.ca_file(spec)
    if ca_file:
        import dataclasses

        settings.http = dataclasses.replace(ctx.http, ca_file=ca_file)  # a read-only client stays read-only
    recorded = tags or {}

    def recorded_marker(_place: str, fingerprint: str) -> str | None:
        return _recorded(recorded, spec, fingerprint)

    settings.recorded_marker = recorded_marker
    return make_consumer(spec.kind, spec.settings(), settings)


def _marker_tag(spec: Any) -> str:
    """The store's tag that records the marker of the last write to one consumer (GitHub secrets keep no note)."""
    return "stanch:marker:" + hashlib.sha256(spec.describe().encode()).hexdigest()[:24]


def _recorded(tags: dict[str, str], spec: Any, fingerprint: str) -> str | None:
    """The marker recorded when this value was last written to this consumer, or None."""
    mark, _, marker = tags.get(_marker_tag(spec), "").partition("|")
    return marker if mark == fingerprint and marker else None


def _written(tags: dict[str, str], spec: Any, fingerprint: str) -> bool:
    """Whether this value's write to this consumer is on record (with or without a marker)."""
    return tags.get(_marker_tag(spec), "").partition("|")[0] == fingerprint


def fingerprint(value: SecretValue) -> str:
    """A short hash of a value, to recognise it in notes and labels (never the value)."""
    return value_fingerprint(value.reveal())


def consumers_hash(vendor: Vendor, credential: Credential) -> str:
    """A hash of the credential's consumers (sorted; each with its settings and the connection it uses): a consumer
    added, removed or pointed elsewhere changes it."""
    entries = sorted(
        json.dumps(
            [spec.describe(), spec.model_dump(mode="json"), [str(part) for part in vendor.connection(spec)]],
            sort_keys=True,
        )
        for spec in credential.consumers
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def verified_record(vendor: Vendor, credential: Credential, version: str | None) -> str:
    """The `stanch:consumers-verified` record of every consumer of today's inventory holding `version`."""
    n = len(credential.consumers)
    return f"{version}:{consumers_hash(vendor, credential)}:{n}/{n}"


def _unverified_reason(vendor: Vendor, credential: Credential, state: StoreState) -> str | None:
    """Why the record does not allow revoking the old key (None: every consumer listed now verified the new key)."""
    record = state.tags.get(VERIFIED_TAG, "")
    if state.phase == "stored" and record == verified_record(vendor, credential, state.current):
        return None
    if state.phase == "stored" and record.startswith(f"{state.current}:"):
        return "the consumer list changed since every consumer verified the new key: run vendor.verify_consumers again"
    return "not every consumer verified the new key"


@dataclass
class StoreState:
    """The rotation's state, read from the store secret."""

    arn: str
    name: str
    current: str | None
    pending: str | None
    old: str | None  # the version being replaced (tag stanch:rotating-from)
    revoked: str | None  # the version whose key was revoked (tag stanch:revoked-version)
    tags: dict[str, str]

    @property
    def phase(self) -> Literal["idle", "started", "stored", "done"]:
        if self.old is None:
            return "idle"
        if self.revoked == self.old:
            return "done"
        if self.current == self.old:
            return "started"  # the new value is not stored yet (a person's part, or a crash before the store)
        return "stored"


class _Store:
    """The credential's store (the rotation's state lives on it): `_SecretsManagerStore` or `_SsmStore`."""

    ctx: ActionContext
    name: str

    def state(self) -> StoreState:
        raise NotImplementedError

    def text(self, version: str) -> str:
        """One version's stored text (read with decryption; registered with the masker before it is returned)."""
        raise NotImplementedError

    def value(self, version: str) -> tuple[SecretValue, str | None]:
        text = self.text(version)
        key, key_id = parse_value(text)
        self.ctx.masker.register(key)
        return SecretValue(key), key_id

    def is_json(self, version: str) -> bool:
        text = self.text(version)
        return parse_value(text)[1] is not None or text.lstrip().startswith("{")

    def put_current(self, text: str, token: str, what: str) -> str:
        """Store `text` as the new current version (once per `token`); the version's id."""
        raise NotImplementedError

    def move(self, stage: str, to: str | None, away_from: str | None) -> None:
        raise NotImplementedError

    def tag(self, **tags: str) -> None:
        raise NotImplementedError

    def created(self, version: str) -> datetime | None:
        raise NotImplementedError

    def check_writable(self) -> None:
        """Raise VendorError where a new version could not be stored (read from the last `state()`)."""

    def pin(self, version: str) -> None:
        """Keep the replaced version readable until its key is revoked (nothing to do where versions stay)."""

    def unpin(self, version: str) -> None:
        """The replaced version's key is revoked: it need not be kept any longer."""

    def put_hint(self) -> str:
        """The command a person uses to put a new key into the store (the value from a file, never an argument)."""
        raise NotImplementedError


def _store(ctx: ActionContext, credential: Credential) -> _Store:
    if credential.stored_in.ssm is not None:
        return _SsmStore(ctx, credential)
    return _SecretsManagerStore(ctx, credential)


class _SecretsManagerStore(_Store):
    """A Secrets Manager secret: versions with staging labels (AWSCURRENT, AWSPENDING), the state in its tags."""

    def __init__(self, ctx: ActionContext, credential: Credential):
        store = credential.stored_in
        self.ctx = ctx
        self.secret_id = store.secretsmanager or ""
        self.name = self.secret_id
        self.sm = ctx.aws.client("secretsmanager", store.region)

    def state(self) -> StoreState:
        described = self.sm.describe_secret(SecretId=self.secret_id)
        stages: dict[str, list[str]] = described.get("VersionIdsToStages", {})

        def holding(stage: str) -> str | None:
            return next((v for v, s in stages.items() if stage in s), None)

        tags = {t["Key"]: t["Value"] for t in described.get("Tags", [])}
        self.name = str(described["Name"])
        return StoreState(
            arn=str(described["ARN"]),
            name=str(described["Name"]),
            current=holding("AWSCURRENT"),
            pending=holding("AWSPENDING"),
            old=tags.get(OLD_TAG) or None,
            revoked=tags.get(REVOKED_TAG) or None,
            tags=tags,
        )

    def text(self, version: str) -> str:
        text = str(self.sm.get_secret_value(SecretId=self.secret_id, VersionId=version)["SecretString"])
        self.ctx.masker.register(text)
        return text

    def put_current(self, text: str, token: str, what: str) -> str:
        applied(
            self.ctx,
            what,
            lambda: self.sm.put_secret_value(
                SecretId=self.secret_id, ClientRequestToken=token, SecretString=text, VersionStages=["AWSCURRENT"]
            ),
            lambda: self.state().current == token,
        )
        return token

    def move(self, stage: str, to: str | None, away_from: str | None) -> None:
        """Move a staging label (to None: take it off `away_from`)."""
        params: dict[str, Any] = {"SecretId": self.secret_id, "VersionStage": stage}
        if to:
            params["MoveToVersionId"] = to
        if away_from and away_from != to:
            params["RemoveFromVersionId"] = away_from

        def landed() -> bool:
            now = self.state()
            holder = {"AWSPENDING": now.pending, "AWSCURRENT": now.current}.get(stage)
            return holder == to

        applied(self.ctx, f"move {stage} on {self.secret_id}", lambda: self.sm.update_secret_version_stage(**params), landed)

    def tag(self, **tags: str) -> None:
        pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
        applied(
            self.ctx,
            f"tag {self.secret_id}",
            lambda: self.sm.tag_resource(SecretId=self.secret_id, Tags=pairs),
            lambda: all(self.state().tags.get(k) == v for k, v in tags.items()),
        )

    def created(self, version: str) -> datetime | None:
        params: dict[str, Any] = {"SecretId": self.secret_id}
        while True:  # not pageable in botocore: follow NextToken by hand
            page = self.sm.list_secret_version_ids(**params)
            for entry in page["Versions"]:
                if entry["VersionId"] == version:
                    created = entry.get("CreatedDate")
                    return created if isinstance(created, datetime) else None
            if not page.get("NextToken"):
                return None
            params["NextToken"] = page["NextToken"]

    def put_hint(self) -> str:
        return f"aws secretsmanager put-secret-value --secret-id {self.name} --secret-string file://key.json"


class _SsmStore(_Store):
    """An SSM Parameter Store SecureString: numbered versions, the latest is the current value.

    The state is kept as on a Secrets Manager secret, in the parameter's tags (`AddTagsToResource`,
    ResourceType=Parameter; values escaped to SSM's tag characters by `ssm_tag_value`), and a version is named by
    its number. The replaced version is labelled `stanch-rotating-from` until its key is revoked: SSM keeps the
    last 100 versions but never drops a labelled one, so the old value stays readable (GitHub revokes by value).
    The new value is put as a new version (`PutParameter` SecureString, Overwrite, the current version's KMS key);
    SSM has no client request token, so a re-run knows its put by the version having moved past the replaced one
    (the state's phase), and a put whose answer was lost counts as applied when the latest version holds the text.
    There is no pending stage: a person's `put-parameter --overwrite` is current at once and checked afterwards.
    moto (the tests) supports every call used here: versions, `NAME:VERSION` and `NAME:LABEL` reads, labels (and
    their keeping a version past the 100th), parameter tags. It does not check tag values against SSM's character set
    (the tests check the escaping themselves) nor use the KMS key for real.
    """

    LABEL = "stanch-rotating-from"

    def __init__(self, ctx: ActionContext, credential: Credential):
        store = credential.stored_in
        self.ctx = ctx
        self.name = store.ssm or ""
        self.ssm = ctx.aws.client("ssm", store.region)
        self.place = f"{credential.id}: ssm parameter {store.ssm}"
        self.type = ""

    def _call(self, operation: str, call: Any) -> Any:
        """An SSM call whose failure is a VendorError naming the operation and AWS's code, never the request."""
        from integrations.context import ReadOnlyRefusal
        from integrations.vendors.aws_stores import aws_error

        try:
            return call()
        except (ReadOnlyRefusal, VendorError):
            raise
        except Exception as exc:
            raise aws_error(self.place, operation, exc) from None

    def _parameter(self, selector: str = "") -> dict[str, Any]:
        """The parameter's metadata (the latest version, or `:VERSION`), read without decryption; the (encrypted)
        value is dropped."""
        found = self._call("GetParameter", lambda: self.ssm.get_parameter(Name=self.name + selector, WithDecryption=False))
        parameter = dict(found["Parameter"])
        parameter.pop("Value", None)
        return parameter

    def state(self) -> StoreState:
        from integrations.vendors.aws_stores import ssm_tag_text

        parameter = self._parameter()
        self.type = str(parameter.get("Type", ""))
        listed = self._call(
            "ListTagsForResource",
            lambda: self.ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=self.name),
        )
        tags = {t["Key"]: ssm_tag_text(str(t.get("Value", ""))) for t in listed.get("TagList", [])}
        return StoreState(
            arn=str(parameter.get("ARN") or f"ssm:{self.name}"),
            name=self.name,
            current=str(parameter["Version"]),
            pending=None,
            old=tags.get(OLD_TAG) or None,
            revoked=tags.get(REVOKED_TAG) or None,
            tags=tags,
        )

    def text(self, version: str) -> str:
        found = self._call(
            "GetParameter", lambda: self.ssm.get_parameter(Name=f"{self.name}:{version}", WithDecryption=True)
        )
        text = str(found["Parameter"]["Value"])
        self.ctx.masker.register(text)
        return text

    def _history(self, version: str) -> dict[str, Any]:
        """One version's entry in GetParameterHistory (its KMS key and tier; the encrypted value dropped)."""
        params: dict[str, Any] = {"Name": self.name, "WithDecryption": False, "MaxResults": 50}
        while True:
            page = self._call("GetParameterHistory", lambda: self.ssm.get_parameter_history(**params))
            for entry in page.get("Parameters", []):
                if str(entry.get("Version")) == version:
                    return {k: v for k, v in entry.items() if k != "Value"}
            if not page.get("NextToken"):
                return {}
            params["NextToken"] = page["NextToken"]

    def check_writable(self) -> None:
        if self.type != "SecureString":
            raise VendorError(
                f"{self.place} is a {self.type or 'missing'} parameter: a credential is a SecureString "
                "(nothing was written: make it one, or name another parameter)"
            )

    def put_current(self, text: str, token: str, what: str) -> str:
        before = str(self.state().current)
        self.check_writable()
        params: dict[str, Any] = {"Name": self.name, "Value": text, "Type": "SecureString", "Overwrite": True}
        entry = self._history(before)
        if entry.get("KeyId"):  # the parameter's own KMS key (without it, AWS would use the account's aws/ssm key)
            params["KeyId"] = str(entry["KeyId"])
        if entry.get("Tier") == "Advanced":  # an advanced parameter stays one
            params["Tier"] = "Advanced"

        def landed() -> bool:
            latest = str(self.state().current)
            return latest != before and self.text(latest) == text

        answer = self._call(
            "PutParameter", lambda: applied(self.ctx, what, lambda: self.ssm.put_parameter(**params), landed)
        )
        return str(answer["Version"]) if answer else str(self.state().current)

    def move(self, stage: str, to: str | None, away_from: str | None) -> None:
        raise VendorError(f"{self.place}: SSM has no staging labels ({stage})")

    def tag(self, **tags: str) -> None:
        from integrations.vendors.aws_stores import ssm_tag_text, ssm_tag_value

        pairs = [{"Key": k, "Value": ssm_tag_value(v)} for k, v in tags.items()]  # "" clears, as on a secret
        kept = {p["Key"]: ssm_tag_text(p["Value"]) for p in pairs}
        self._call(
            "AddTagsToResource",
            lambda: applied(
                self.ctx,
                f"tag {self.name}",
                lambda: self.ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=self.name, Tags=pairs),
                lambda: all(self.state().tags.get(k) == v for k, v in kept.items()),
            ),
        )

    def created(self, version: str) -> datetime | None:
        when = self._parameter(f":{version}").get("LastModifiedDate")
        return when if isinstance(when, datetime) else None

    def pin(self, version: str) -> None:
        try:
            labelled = self._call(
                "LabelParameterVersion",
                lambda: self.ssm.label_parameter_version(Name=self.name, ParameterVersion=int(version), Labels=[self.LABEL]),
            )
        except VendorError as exc:
            if "ParameterVersionLabelLimitExceeded" not in str(exc):
                raise
            labelled = {"InvalidLabels": [self.LABEL]}
        if labelled.get("InvalidLabels"):  # ten labels on the version already: it ages out after 100 new versions
            self.ctx.logger.warning(
                "%s: version %s could not be labelled %s: it stays readable only while SSM keeps it",
                self.place,
                version,
                self.LABEL,
            )

    def unpin(self, version: str) -> None:
        try:  # the label only kept the old value readable: failing to take it off costs nothing now
            self._call(
                "UnlabelParameterVersion",
                lambda: self.ssm.unlabel_parameter_version(
                    Name=self.name, ParameterVersion=int(version), Labels=[self.LABEL]
                ),
            )
        except VendorError as exc:
            self.ctx.logger.warning("%s", exc)

    def put_hint(self) -> str:
        return f"aws ssm put-parameter --name {self.name} --type SecureString --overwrite --value file://key.json"


def _old_key_id(ctx: ActionContext, store: _Store, state: StoreState, credential: Credential, issuer: Any) -> str | None:
    """The id at the issuer of the key being replaced: the stored JSON, the tag of the last rotation, the
    inventory, or the issuer's listing (the one active key whose hint ends the value)."""
    version = state.old or state.current
    if version is None:
        return None
    value, key_id = store.value(version)
    if key_id:
        return key_id
    last = state.tags.get(NEW_KEY_TAG, "")
    if last.startswith(f"{version}="):
        return last.split("=", 1)[1]
    if credential.key_id:
        return credential.key_id
    if issuer is None:
        return None
    tail = value.reveal()[-4:]
    try:
        listed = issuer.list_keys()
    except NotSupported as exc:  # generic, GitHub: no listing; the id stays unknown and a person revokes the key
        ctx.logger.warning("%s: the old key's id is unknown (%s): a person revokes it", credential.id, exc)
        return None
    matches = [k for k in listed if k.status == "active" and k.hint and tail.endswith(k.hint[-4:])]
    return matches[0].key_id if len(matches) == 1 else None


def _recent(store: _Store, state: StoreState, within: timedelta) -> bool:
    at = state.tags.get(ROTATED_TAG)
    if at:
        try:
            return datetime.now(UTC) - datetime.fromisoformat(at) <= within
        except ValueError:
            pass
    created = store.created(state.current) if state.current else None
    return created is not None and datetime.now(UTC) - created <= within


# ---------------------------------------------------------------- load the inventory


class ConsumerInfo(ActionResult):
    kind: str
    place: str


class CredentialInfo(ActionResult):
    id: str
    issuer: str
    store: str
    manual_owner: str | None = None
    can_mint: bool = Field(description="False: a person makes the new key (the playbook asks them at a gate).")
    consumers: list[ConsumerInfo]
    known_places: list[str]


class Inventory(ActionResult):
    vendor: str
    title: str
    credentials: list[CredentialInfo]
    count: int


@action("vendor.load_inventory", mutates=False, permissions=[], calls=["reads vendors/NAME.yaml"])
def load_inventory(ctx: ActionContext, vendor: VendorName) -> Inventory:
    """Read and check the vendor's inventory: every credential, its issuer, store and consumers."""
    inventory = _vendor(ctx, vendor)
    items = []
    for cred in inventory.credentials:
        cls = _issuer_class(cred)
        items.append(
            CredentialInfo(
                id=cred.id,
                issuer=cred.issuer.kind,
                store=cred.stored_in.describe(),
                manual_owner=cred.issuer.manual_owner,
                can_mint=bool(cls.can_mint),
                consumers=[ConsumerInfo(kind=c.kind, place=c.describe()) for c in cred.consumers],
                known_places=inventory.places_of(cred),
            )
        )
    return Inventory(vendor=vendor, title=inventory.metadata.title, credentials=items, count=len(items))


# ---------------------------------------------------------------- mint and store


class MintResult(Change):
    credential: str
    status: Literal["minted", "stored", "manual", "already-rotated", "would-mint", "would-ask"]
    owner: str | None = Field(None, description="Who makes the key by hand (status manual).")
    store: str = ""
    old_key_id: str | None = None
    new_key_id: str | None = None


@action(
    "vendor.mint_new_key",
    mutates=True,
    permissions=[*_perms(*_STORE_READ, *_STORE_WRITE, *_SSM_READ, *_SSM_WRITE), _ADMIN_READ],
    calls=[
        "issuer: create a key (Braintrust POST /v1/service_token, OpenAI project service account, generic mint)",
        "issuer: check the new key",
        "secretsmanager:TagResource (stanch:rotating-from: the replaced version)",
        "secretsmanager:PutSecretValue (the new key, AWSCURRENT)",
        "secretsmanager:TagResource",
        "SSM store: ssm:LabelParameterVersion (stanch-rotating-from on the replaced version), "
        "ssm:AddTagsToResource (stanch:rotating-from), ssm:PutParameter (SecureString, a new version)",
    ],
)
def mint_new_key(
    ctx: ActionContext,
    vendor: VendorName,
    credential: CredentialId,
    rotated_within_hours: Annotated[
        float,
        Field(ge=0, le=720, description="A rotation finished less than this long ago counts as this one."),
    ] = 72,
) -> MintResult:
    """Start a credential's rotation: mark the old version, mint a new key, check it, store it as current.

    Where the issuer cannot mint (Anthropic, Braintrust user keys) the status is `manual` and a person puts the new
    key into the store (the playbook's gate asks them); vendor.verify_new_key checks their work. The mint's
    idempotency key derives from the replaced version, so a re-run under any incident mints nothing new.
    """
    _, cred = _credential(ctx, vendor, credential)
    store = _store(ctx, cred)
    state = store.state()
    base: dict[str, Any] = {"credential": cred.id, "store": state.name, "owner": cred.issuer.manual_owner}
    phase = state.phase
    if phase == "done" and _recent(store, state, timedelta(hours=rotated_within_hours)):
        return MintResult(
            changed=False,
            dry_run=ctx.dry_run,
            status="already-rotated",
            detail=f"{cred.id}: rotated and its old key revoked already",
            **base,
        )
    if phase == "stored":
        return MintResult(
            changed=False,
            dry_run=ctx.dry_run,
            status="stored",
            old_key_id=state.tags.get(OLD_KEY_TAG),
            detail=f"{cred.id}: a new key is stored already (an earlier run); nothing minted",
            **base,
        )
    can_mint = bool(_issuer_class(cred).can_mint)
    store.check_writable()
    if ctx.dry_run:
        status: Literal["would-mint", "would-ask"] = "would-mint" if can_mint else "would-ask"
        what = "mint a new key" if can_mint else f"ask {cred.issuer.manual_owner or 'a person'} for a new key"
        return MintResult(changed=True, dry_run=True, status=status, detail=f"would {what} for {cred.id}", **base)
    issuer = _issuer(ctx, cred)
    if phase in ("idle", "done"):
        if state.current is None:
            raise VendorError(f"{cred.id}: {state.name} has no current value to rotate away from")
        old_key = _old_key_id(ctx, store, state, cred, issuer)
        store.pin(state.current)  # SSM: labelled, so the old value stays readable until its key is revoked
        # one call: the replaced version, its key, and the last rotation's record cleared (now history)
        store.tag(**{OLD_TAG: state.current, OLD_KEY_TAG: old_key or "unknown", REVOKED_TAG: "", VERIFIED_TAG: ""})
        state = store.state()
    old_key = state.tags.get(OLD_KEY_TAG)
    if not getattr(issuer, "can_mint", True):
        who = cred.issuer.manual_owner or "a person"
        return MintResult(
            changed=phase != "started",
            status="manual",
            old_key_id=old_key,
            detail=f"{cred.id}: waits on {who} to make a new key and put it into {state.name}",
            **base,
        )
    token = str(uuid.uuid5(_NAMESPACE, f"rotate|{state.arn}|{state.old}"))
    try:
        # no date in the name: the issuer finds an orphan of a lost answer by this name on any later day
        minted = issuer.mint(f"stanch-{cred.id}", token)
    except ManualStepRequired as exc:
        return MintResult(
            changed=True,
            status="manual",
            old_key_id=old_key,
            detail=f"{cred.id}: {exc}; waits on {cred.issuer.manual_owner or 'a person'}",
            **base,
        )
    ctx.masker.register(minted.value.reveal())
    if not issuer.check(minted.value):
        raise VendorError(f"{cred.id}: the new key {minted.key_id} does not work at the issuer; nothing was stored")
    as_json = state.old is not None and store.is_json(state.old)
    text = json.dumps({"api_key": minted.value.reveal(), "key_id": minted.key_id}) if as_json else minted.value.reveal()
    ctx.masker.register(text)
    version = store.put_current(text, token, f"store the new key of {cred.id}")
    store.tag(**{NEW_KEY_TAG: f"{version}={minted.key_id}"})
    ctx.logger.info("Minted and stored a new key for %s (issuer key %s)", cred.id, minted.key_id)
    return MintResult(
        changed=True,
        status="minted",
        old_key_id=old_key,
        new_key_id=minted.key_id,
        detail=f"{cred.id}: new key {minted.key_id} minted, checked and stored in {state.name}",
        **base,
    )


class NewKeyCheck(Change):
    credential: str
    verified: bool
    new_key_id: str | None = None


@action(
    "vendor.verify_new_key",
    mutates=True,
    permissions=[*_perms(*_STORE_READ, *_STORE_WRITE, *_SSM_READ, "ssm:AddTagsToResource"), _ADMIN_READ],
    calls=[
        "secretsmanager:GetSecretValue or ssm:GetParameter (WithDecryption)",
        "issuer: check the new key",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:TagResource or ssm:AddTagsToResource",
    ],
)
def verify_new_key(ctx: ActionContext, vendor: VendorName, credential: CredentialId) -> NewKeyCheck:
    """Check the key a person put into the store: a new version, not the old key, working at the issuer."""
    _, cred = _credential(ctx, vendor, credential)
    store = _store(ctx, cred)
    state = store.state()
    if state.phase in ("stored", "done") and state.tags.get(NEW_KEY_TAG, "").startswith(f"{state.current}="):
        return NewKeyCheck(
            changed=False,
            dry_run=ctx.dry_run,
            credential=cred.id,
            verified=True,
            new_key_id=state.tags[NEW_KEY_TAG].split("=", 1)[1],
            detail=f"{cred.id}: checked already",
        )
    if ctx.dry_run:
        return NewKeyCheck(
            changed=True,
            dry_run=True,
            credential=cred.id,
            verified=False,
            detail=f"would check the new key a person put into {state.name}",
        )
    if state.phase == "idle":
        raise VendorError(f"{cred.id}: no rotation was started for {state.name}: run vendor.mint_new_key first")
    new_version = state.current
    if state.current == state.old and state.pending and state.pending != state.old:
        new_version = state.pending  # put with --version-stages AWSPENDING: promoted below once it works
    if new_version is None or new_version == state.old:
        raise VendorError(f"{cred.id}: {state.name} has no new version yet: put the new key into it ({store.put_hint()})")
    value, key_id = store.value(new_version)
    old_value, _ = store.value(state.old) if state.old else (None, None)
    if old_value is not None and value == old_value:
        raise VendorError(f"{cred.id}: the new version of {state.name} holds the old key: make a new key at the issuer")
    issuer = _issuer(ctx, cred)
    if not issuer.check(value):
        raise VendorError(f"{cred.id}: the key put into {state.name} does not work at the issuer ({cred.issuer.kind})")
    if new_version != state.current:
        store.move("AWSCURRENT", new_version, state.current)
        store.move("AWSPENDING", None, new_version)
    store.tag(**{NEW_KEY_TAG: f"{new_version}={key_id or 'unknown'}"})
    return NewKeyCheck(
        changed=True,
        credential=cred.id,
        verified=True,
        new_key_id=key_id,
        detail=f"{cred.id}: the new key in {state.name} works at {cred.issuer.kind}",
    )


# ---------------------------------------------------------------- consumers


class ConsumerOutcome(ActionResult):
    consumer: str
    kind: str
    status: Literal["updated", "unchanged", "would-update", "verified", "failed", "waiting"]
    marker: str = ""
    detail: str = ""
    written: str = Field("", description="In the report: what the push did before the verification's status.")

    @property
    def shown(self) -> str:
        return f"{self.written}, {self.status}" if self.written and self.written != self.status else self.status


class PushResult(Change):
    credential: str
    status: Literal["pushed", "waiting", "already-rotated", "would-push"]
    consumers: list[ConsumerOutcome]
    consumers_failed: int = 0


def _new_value(ctx: ActionContext, cred: Credential) -> tuple[_Store, StoreState, SecretValue | None]:
    store = _store(ctx, cred)
    state = store.state()
    if state.phase != "stored" or state.current is None:
        return store, state, None
    return store, state, store.value(state.current)[0]


@action(
    "vendor.push_to_consumers",
    mutates=True,
    permissions=[
        *_perms(
            *_STORE_READ,
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:TagResource",
            *_SSM_READ,
            "ssm:AddTagsToResource",
            "ssm:DescribeParameters",
            "ssm:PutParameter",
            "ssm:LabelParameterVersion",
            "kms:Encrypt",
        ),
        _ADMIN_READ,
    ],
    calls=[
        "GitHub: PUT actions secrets (sealed box; token scope secrets:write)",
        "GitLab: PUT CI/CD variables (api scope)",
        "Kubernetes: PATCH secrets, PATCH deployments (restart), GET rollout status",
        "ssm:PutParameter (SecureString)",
        "secretsmanager:PutSecretValue",
        "Braintrust: PUT /v1/ai_secret",
    ],
)
def push_to_consumers(ctx: ActionContext, vendor: VendorName, credential: CredentialId) -> PushResult:
    """Write the credential's new value to every consumer. A consumer that fails is reported, never skipped.

    Each write carries the value's fingerprint, so pushing again changes nothing where the value is in place.
    """
    inventory, cred = _credential(ctx, vendor, credential)
    store, state, value = _new_value(ctx, cred)
    places = [c.describe() for c in cred.consumers]
    if ctx.dry_run and state.phase != "done":
        # A dry-run calls no consumer: where this value's write is on record it is in place, else it would be made
        # (and where the dry-run minted nothing, every write would be).
        mark = fingerprint(value) if value is not None else ""
        would = [
            ConsumerOutcome(
                consumer=c.describe(),
                kind=c.kind,
                status="unchanged" if mark and _written(state.tags, c, mark) else "would-update",
            )
            for c in cred.consumers
        ]
        pending = sum(o.status == "would-update" for o in would)
        return PushResult(
            changed=pending > 0,
            dry_run=True,
            credential=cred.id,
            status="would-push",
            consumers=would,
            detail=f"would write the new {cred.id} key to {pending} of {len(places)} consumer(s)",
        )
    if value is None:
        status: Literal["waiting", "already-rotated"] = "already-rotated" if state.phase == "done" else "waiting"
        outcome = [
            ConsumerOutcome(consumer=p, kind=c.kind, status="waiting") for p, c in zip(places, cred.consumers, strict=True)
        ]
        why = "its old key is revoked already" if status == "already-rotated" else "no new key is stored yet"
        return PushResult(
            changed=False,
            dry_run=ctx.dry_run,
            credential=cred.id,
            status=status,
            consumers=outcome if status == "waiting" else [],
            detail=f"{cred.id}: nothing pushed: {why}",
        )
    mark = fingerprint(value)
    outcomes: list[ConsumerOutcome] = []
    for spec in cred.consumers:
        place = spec.describe()
        try:
            if ctx.dry_run:
                outcomes.append(ConsumerOutcome(consumer=place, kind=spec.kind, status="would-update"))
                continue
            adapter = _consumer(ctx, inventory, spec, state.tags)
            wrote: ConsumerWrite = adapter.write(value, mark, dry_run=False)
            if not _written(state.tags, spec, mark) or _recorded(state.tags, spec, mark) != (wrote.marker or None):
                store.tag(**{_marker_tag(spec): f"{mark}|{wrote.marker[:200]}"})
            outcomes.append(
                ConsumerOutcome(
                    consumer=place,
                    kind=spec.kind,
                    status="updated" if wrote.changed else "unchanged",
                    marker=ctx.masker.mask(wrote.marker),
                    detail=ctx.masker.mask(wrote.detail),
                )
            )
        except Exception as exc:  # one consumer's failure is reported and keeps the old key alive
            message = ctx.masker.mask(f"{type(exc).__name__}: {exc}")
            ctx.logger.error("Could not update %s with the new %s key: %s", place, cred.id, message)
            outcomes.append(ConsumerOutcome(consumer=place, kind=spec.kind, status="failed", detail=message))
    failed = sum(o.status == "failed" for o in outcomes)  # not `failed`: the engine reads that as the item's own
    changed = any(o.status in ("updated", "would-update") for o in outcomes)
    counts = f"{sum(o.status == 'updated' for o in outcomes)} updated, {failed} failed of {len(outcomes)}"
    return PushResult(
        changed=changed,
        dry_run=ctx.dry_run,
        credential=cred.id,
        status="would-push" if ctx.dry_run else "pushed",
        consumers=outcomes,
        consumers_failed=failed,
        detail=f"{cred.id}: {counts}",
    )


class VerifyResult(Change):
    credential: str
    status: Literal["verified", "failed", "waiting", "already-rotated", "would-verify"]
    consumers: list[ConsumerOutcome]
    verified: int = 0
    total: int = 0
    all_verified: bool = False
    verified_at: datetime | None = None


def _would_verify(cred: Credential) -> VerifyResult:
    return VerifyResult(
        changed=True,
        dry_run=True,
        credential=cred.id,
        status="would-verify",
        consumers=[],
        total=len(cred.consumers),
        detail=f"would verify {len(cred.consumers)} consumer(s) of {cred.id}",
    )


@action(
    "vendor.verify_consumers",
    mutates=True,
    permissions=[
        *_perms(*_STORE_READ, "secretsmanager:TagResource", *_SSM_READ, "ssm:AddTagsToResource", "ssm:DescribeParameters"),
        _ADMIN_READ,
    ],
    calls=[
        "GitHub: GET the secret's updated_at",
        "GitLab: GET the variable",
        "Kubernetes: GET the secret and the deployments' rollout",
        "ssm:GetParameter",
        "secretsmanager:DescribeSecret",
        "secretsmanager:TagResource or ssm:AddTagsToResource (stanch:consumers-verified)",
    ],
)
def verify_consumers(
    ctx: ActionContext,
    vendor: VendorName,
    credential: CredentialId,
    writes: Annotated[
        list[dict[str, Any]],
        Field(description="The consumers' outcomes from vendor.push_to_consumers (their markers)."),
    ] = [],  # noqa: B006 - pydantic copies defaults
) -> VerifyResult:
    """Prove each consumer holds the new value (and a workload runs with it); record it on the store when all do.

    Only a credential every consumer verified may have its old key revoked (vendor.revoke_old_key checks the record).
    """
    inventory, cred = _credential(ctx, vendor, credential)
    store, state, value = _new_value(ctx, cred)
    record = verified_record(inventory, cred, state.current)
    done_before = state.tags.get(VERIFIED_TAG) == record
    if ctx.dry_run and state.phase != "done" and not done_before:
        return _would_verify(cred)
    if value is None:
        status: Literal["waiting", "already-rotated"] = "already-rotated" if state.phase == "done" else "waiting"
        return VerifyResult(
            changed=False,
            dry_run=ctx.dry_run,
            credential=cred.id,
            status=status,
            consumers=[],
            detail=f"{cred.id}: nothing to verify ({status})",
        )
    mark = fingerprint(value)
    if state.tags.get(VERIFIED_TAG) == record:
        return VerifyResult(
            changed=False,
            dry_run=ctx.dry_run,
            credential=cred.id,
            status="verified",
            consumers=[],
            verified=len(cred.consumers),
            total=len(cred.consumers),
            all_verified=True,
            verified_at=_tag_time(state.tags.get(ROTATED_TAG)),
            detail=f"{cred.id}: every consumer verified already",
        )
    if ctx.dry_run:
        return _would_verify(cred)
    given = {str(w.get("consumer")): w for w in writes if isinstance(w, dict)}
    outcomes: list[ConsumerOutcome] = []
    for spec in cred.consumers:
        place = spec.describe()
        pushed = given.get(place, {})
        if pushed.get("status") == "failed":
            outcomes.append(
                ConsumerOutcome(
                    consumer=place, kind=spec.kind, status="failed", detail=f"not updated: {pushed.get('detail', '')}"
                )
            )
            continue
        write = ConsumerWrite(changed=pushed.get("status") == "updated", marker=str(pushed.get("marker", "")))
        try:
            proof = _consumer(ctx, inventory, spec, state.tags).verify(write, mark)
        except Exception as exc:
            proof = None
            detail = ctx.masker.mask(f"{type(exc).__name__}: {exc}")
        else:
            detail = ctx.masker.mask(proof.evidence)
        ok = proof is not None and proof.ok
        outcomes.append(
            ConsumerOutcome(consumer=place, kind=spec.kind, status="verified" if ok else "failed", detail=detail)
        )
    verified = sum(o.status == "verified" for o in outcomes)
    total = len(outcomes)
    now = datetime.now(UTC)
    if verified == total:
        store.tag(**{VERIFIED_TAG: record, ROTATED_TAG: now.isoformat(timespec="seconds")})
    for o in outcomes:
        if o.status == "failed":
            ctx.logger.error("%s does not hold the new %s key: %s (the old key stays alive)", o.consumer, cred.id, o.detail)
    return VerifyResult(
        changed=verified == total,
        credential=cred.id,
        status="verified" if verified == total else "failed",
        consumers=outcomes,
        verified=verified,
        total=total,
        all_verified=verified == total,
        verified_at=now if verified == total else None,
        detail=f"{cred.id}: {verified} of {total} consumer(s) verified" + ("" if verified == total else "; old key kept"),
    )


def _tag_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


# ---------------------------------------------------------------- the old key: unused? review, revoke


class UnusedCheck(ActionResult):
    credential: str
    ready: bool = Field(description="Every consumer verified and the old key unused over the grace period.")
    use_unknown: bool = Field(
        False,
        description="The issuer shows neither the old key nor its use (generic, GitHub): offered for revocation on "
        "the consumers' verification alone, for a person to confirm at the gate.",
    )
    old_key_id: str | None = None
    last_used_at: datetime | None = None
    switched_at: datetime | None = None
    evidence: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def line(self) -> str:
        """`credential: evidence`, for a gate's message."""
        return f"{self.credential}: {self.evidence}"


@action(
    "vendor.check_old_key_unused",
    mutates=False,
    permissions=[*_perms("secretsmanager:DescribeSecret", "ssm:GetParameter", "ssm:ListTagsForResource"), _ADMIN_READ],
    calls=["issuer: the old key's last_used_at (key listing)", "issuer: per-key usage report"],
)
def check_old_key_unused(
    ctx: ActionContext,
    vendor: VendorName,
    credential: CredentialId,
    grace_period: Annotated[
        str | int, Field(description="Watch the old key this long after the switch: 15m, 1h (seconds as a number).")
    ] = "15m",
    poll_every: Annotated[int, Field(ge=1, le=3600, description="Seconds between looks at the issuer.")] = 60,
) -> UnusedCheck:
    """Watch the old key at the issuer over a grace period, once every consumer verified the new one.

    Any use after the switch means something still holds it (a consumer not in the inventory): not ready to revoke."""
    from flows.language.model import duration_seconds

    inventory, cred = _credential(ctx, vendor, credential)
    store = _store(ctx, cred)
    state = store.state()
    old_key = state.tags.get(OLD_KEY_TAG)
    base: dict[str, Any] = {"credential": cred.id, "old_key_id": old_key}
    if ctx.dry_run and state.phase != "done":  # the path a rotation takes: watched, then offered at the gate
        return UnusedCheck(
            ready=True, evidence=f"would watch the old key for {grace_period} after every consumer switched", **base
        )
    unverified = _unverified_reason(inventory, cred, state)
    if unverified is not None:
        why = {"done": "its old key is revoked already", "idle": "no rotation started", "started": "no new key yet"}
        reason = why.get(state.phase, unverified)
        return UnusedCheck(ready=False, evidence=f"not checked: {reason}", **base)
    switched = _tag_time(state.tags.get(ROTATED_TAG)) or datetime.now(UTC)
    by_value = bool(getattr(_issuer_class(cred), "revokes_by_value", False))
    unknown_use = (
        f"use unknown: {cred.issuer.kind} shows neither the old key nor its use; every consumer verified the new "
        "key: a person confirms the old one is unused before approving its revocation"
    )
    if by_value:  # GitHub: revoked by the old version's value, no id needed; nothing at the issuer shows its use
        ctx.logger.warning("%s: %s", cred.id, unknown_use)
        return UnusedCheck(ready=True, use_unknown=True, switched_at=switched, evidence=unknown_use, **base)
    if not old_key or old_key == "unknown":
        return UnusedCheck(
            ready=False,
            switched_at=switched,
            evidence="the old key's id at the issuer is unknown: a person checks and revokes it",
            **base,
        )
    issuer = _issuer(ctx, cred)
    grace = duration_seconds(grace_period)
    deadline = switched + timedelta(seconds=grace)
    slack = timedelta(seconds=2)  # the issuer's clock and ours
    last: datetime | None = None
    no_usage = no_lookup = False
    while True:
        try:
            info = issuer.key(old_key)
        except NotSupported:  # generic: no lookup of one key; usage (if any) and the verification speak
            info, no_lookup = None, True
        if info is None and not no_lookup:
            return UnusedCheck(
                ready=True, switched_at=switched, evidence=f"key {old_key} is no longer listed at {cred.issuer.kind}", **base
            )
        last = info.last_used_at if info is not None else None
        try:
            report = issuer.usage(old_key, switched + slack, datetime.now(UTC))
        except NotSupported:
            report, no_usage = [], True  # only last_used_at (if any) and the consumers' verification speak
        if no_usage and no_lookup:  # nothing at the issuer to watch: said so, for the person at the gate
            ctx.logger.warning("%s: %s", cred.id, unknown_use)
            return UnusedCheck(
                ready=True, use_unknown=True, switched_at=switched, evidence=f"key {old_key}: {unknown_use}", **base
            )
        used = [u for u in report if u.at > switched + slack]
        if (last is not None and last > switched + slack) or used:
            when = max([*(u.at for u in used), *([last] if last else [])])
            return UnusedCheck(
                ready=False,
                last_used_at=last,
                switched_at=switched,
                evidence=f"key {old_key} was used at {when:%Y-%m-%d %H:%M:%S} UTC, after every consumer "
                "switched: something outside the inventory still holds it",
                **base,
            )
        now = datetime.now(UTC)
        if now >= deadline:
            break
        time.sleep(min(poll_every, max(0.5, (deadline - now).total_seconds())))
    shown = f"last used {last:%Y-%m-%d %H:%M:%S} UTC" if last else "no last use reported"
    if no_usage and last is None:
        shown = f"{cred.issuer.kind} reports no per-key usage: every consumer verified the new key"
    return UnusedCheck(
        ready=True,
        last_used_at=last,
        switched_at=switched,
        evidence=f"key {old_key}: {shown}; unused for {grace}s since every consumer switched at {switched:%H:%M:%S} UTC",
        **base,
    )


class UseRecord(ActionResult):
    at: datetime
    place: str | None = None
    action: str = ""
    count: int = 1
    known_place: bool


class UseReview(ActionResult):
    credential: str
    key_id: str | None = None
    since: datetime
    uses: int = 0
    records: list[UseRecord]
    unknown_places: list[str]
    partial: str = Field("", description="Why the review is incomplete, when it is.")


@action(
    "vendor.review_key_use",
    mutates=False,
    permissions=[*_perms("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", *_SSM_READ), _ADMIN_READ],
    calls=["issuer: per-key usage report or audit log (OpenAI usage and audit logs, Anthropic usage report...)"],
)
def review_key_use(
    ctx: ActionContext,
    vendor: VendorName,
    credential: CredentialId,
    exposed_since: Annotated[
        datetime | None, Field(description="Start of the exposure window (default: 30 days ago).")
    ] = None,
    max_records: Annotated[int, Field(ge=1, le=1000)] = 50,
) -> UseReview:
    """Review use of the old key in the exposure window, flagging places outside the inventory's known places.

    From the issuer's usage or audit API; a review the issuer cannot give is reported as partial, never fatal."""
    inventory, cred = _credential(ctx, vendor, credential)
    since = exposed_since or datetime.now(UTC) - timedelta(days=30)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    store = _store(ctx, cred)
    state = store.state()

    def partial(why: str, key_id: str | None = None) -> UseReview:
        return UseReview(credential=cred.id, key_id=key_id, since=since, records=[], unknown_places=[], partial=why)

    if ctx.dry_run:
        return partial("not reviewed in a dry-run (no issuer call)")
    issuer = _issuer(ctx, cred)
    key_id = state.tags.get(OLD_KEY_TAG) if state.phase != "idle" else None
    if not key_id or key_id == "unknown":
        key_id = _old_key_id(ctx, store, state, cred, issuer)
    if not key_id:
        return partial("the old key's id at the issuer is unknown")
    try:
        found = issuer.usage(key_id, since, datetime.now(UTC))
    except VendorError as exc:
        return partial(ctx.masker.mask(str(exc)), key_id)
    from flows.vendors.inventory import place_matches

    places = inventory.places_of(cred)
    records = [
        UseRecord(at=u.at, place=u.place, action=u.action, count=u.count, known_place=place_matches(u.place, places))
        for u in sorted(found, key=lambda u: u.at)
    ]
    unknown = sorted({r.place for r in records if r.place and not r.known_place})
    if unknown:
        ctx.logger.warning("%s: the old key was used from places outside the inventory: %s", cred.id, ", ".join(unknown))
    return UseReview(
        credential=cred.id,
        key_id=key_id,
        since=since,
        uses=sum(r.count for r in records),
        records=records[-max_records:],
        unknown_places=unknown,
    )


class Revocation(Change):
    credential: str
    status: Literal["revoked", "already-revoked", "would-revoke", "refused", "manual"]
    old_key_id: str | None = None


@action(
    "vendor.revoke_old_key",
    mutates=True,
    permissions=[
        *_perms(
            *_STORE_READ,
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:TagResource",
            *_SSM_READ,
            "ssm:AddTagsToResource",
            "ssm:UnlabelParameterVersion",
        ),
        _ADMIN_READ,
    ],
    calls=[
        "issuer: revoke the old key (Braintrust DELETE /v1/api_key/{id}, OpenAI DELETE project key, Anthropic set "
        "inactive, GitHub credential revocation, generic revoke)",
        "secretsmanager:TagResource or ssm:AddTagsToResource (stanch:revoked-version)",
        "SSM store: ssm:UnlabelParameterVersion (the replaced version need not be kept)",
    ],
)
def revoke_old_key(ctx: ActionContext, vendor: VendorName, credential: CredentialId) -> Revocation:
    """Revoke the replaced key at the issuer, only once every consumer verified the new one; record it on the store."""
    inventory, cred = _credential(ctx, vendor, credential)
    store = _store(ctx, cred)
    state = store.state()
    old_key = state.tags.get(OLD_KEY_TAG)
    base: dict[str, Any] = {"credential": cred.id, "old_key_id": old_key}
    if state.phase == "done":
        return Revocation(
            changed=False,
            dry_run=ctx.dry_run,
            status="already-revoked",
            detail=f"{cred.id}: old key {old_key} revoked already",
            **base,
        )
    if ctx.dry_run:
        return Revocation(
            changed=True,
            dry_run=True,
            status="would-revoke",
            detail=f"would revoke {old_key or 'the old key'} at {cred.issuer.kind} once every consumer verified the new one",
            **base,
        )
    unverified = _unverified_reason(inventory, cred, state)
    if unverified is not None:
        raise VendorError(
            f"{cred.id}: refusing to revoke the old key: not every consumer verified the new one ({unverified}; "
            "vendor.verify_consumers records it); the old key stays alive"
        )
    if getattr(_issuer_class(cred), "revokes_by_value", False) and state.old:
        # GitHub identifies a token by its value: the store's OLD version, read by its version id (never the
        # secret's current value, which is the new token)
        old_value, _ = store.value(state.old)
        try:
            worked = _issuer(ctx, cred).revoke_value(old_value, dry_run=False)  # False: it no longer worked
        except (ManualStepRequired, NotSupported) as exc:
            return Revocation(changed=False, status="manual", detail=f"{cred.id}: {exc}", **base)
        store.tag(**{REVOKED_TAG: str(state.old)})
        store.unpin(str(state.old))
        what = f"the token of version {state.old} of {state.name}"
        ctx.logger.info("Revoked the old %s key (%s) at %s", cred.id, what, cred.issuer.kind)
        return Revocation(
            changed=True,
            status="revoked" if worked else "already-revoked",
            detail=f"{cred.id}: {what} {'revoked' if worked else 'no longer worked'} at {cred.issuer.kind}",
            **base,
        )
    if not old_key or old_key == "unknown":
        return Revocation(
            changed=False,
            dry_run=ctx.dry_run,
            status="manual",
            detail=f"{cred.id}: the old key's id is unknown: a person revokes it at {cred.issuer.kind}",
            **base,
        )
    try:
        _issuer(ctx, cred).revoke(old_key, dry_run=False)
    except (ManualStepRequired, NotSupported) as exc:
        return Revocation(
            changed=False, status="manual", detail=f"{cred.id}: {exc}: a person revokes {old_key} at the issuer", **base
        )
    store.tag(**{REVOKED_TAG: str(state.old)})
    if state.old:
        store.unpin(state.old)
    ctx.logger.info("Revoked the old %s key %s at %s", cred.id, old_key, cred.issuer.kind)
    return Revocation(
        changed=True, status="revoked", detail=f"{cred.id}: old key {old_key} revoked at {cred.issuer.kind}", **base
    )


# ---------------------------------------------------------------- the report


class CredentialReport(ActionResult):
    credential: str
    issuer: str
    minted: str
    consumers: list[ConsumerOutcome]
    old_key: str = Field(description="revoked, kept alive (why), waits on a person...")
    waits_on: str = ""
    failures: list[str]
    use_review: str = ""


class VendorReport(ActionResult):
    vendor: str
    credentials: list[CredentialReport]
    revoked: int
    waiting: int
    with_failures: int
    text: str


def _by_credential(outputs: list[Any]) -> dict[str, dict[str, Any]]:
    return {str(o["credential"]): o for o in outputs if isinstance(o, dict) and o.get("credential")}


@action("vendor.report", mutates=False, permissions=[], calls=[])
def report(
    ctx: ActionContext,
    vendor: VendorName,
    minted: list[Any] = [],  # noqa: B006 - pydantic copies defaults
    verified_by_hand: list[Any] = [],  # noqa: B006
    pushed: list[Any] = [],  # noqa: B006
    verified: list[Any] = [],  # noqa: B006
    unused: list[Any] = [],  # noqa: B006
    revoked: list[Any] = [],  # noqa: B006
    reviewed: list[Any] = [],  # noqa: B006
    revoke_gate: Annotated[str, Field(description="The revoke step's state (rejected, timed_out...).")] = "",
) -> VendorReport:
    """One report of the vendor breach: every credential, its consumers, what was done, what waits, what failed."""
    inventory = _vendor(ctx, vendor)
    mint, by_hand, push, check, quiet, gone, seen = (
        _by_credential(x) for x in (minted, verified_by_hand, pushed, verified, unused, revoked, reviewed)
    )
    rows: list[CredentialReport] = []
    for index, cred in enumerate(inventory.credentials):
        failed: list[str] = []
        # the mint step runs over every credential in inventory order: a failed item is known by its place
        at = minted[index] if index < len(minted) and isinstance(minted[index], dict) else {}
        m = mint.get(cred.id) or (at if at.get("failed") else {})
        minted_text = str(m.get("status", "not run"))
        waits = ""
        if m.get("status") == "manual":
            hand = by_hand.get(cred.id)
            if hand and hand.get("verified"):
                minted_text = "made by hand, verified"
            else:
                waits = f"{cred.issuer.manual_owner or 'a person'}: a new key into {cred.stored_in.describe()}"
        consumers = {
            c.describe(): ConsumerOutcome(consumer=c.describe(), kind=c.kind, status="waiting") for c in cred.consumers
        }
        for source in (push.get(cred.id, {}), check.get(cred.id, {})):
            for o in source.get("consumers", []) or []:
                if isinstance(o, dict) and o.get("consumer") in consumers and o.get("status") != "waiting":
                    before = consumers[o["consumer"]]
                    now = ConsumerOutcome.model_validate(o)
                    if before.status in ("updated", "unchanged", "would-update"):
                        now.written = before.status
                    consumers[o["consumer"]] = now
        for o in consumers.values():
            if o.status == "failed":
                failed.append(f"{o.consumer}: {o.detail}")
        r = gone.get(cred.id, {})
        u = quiet.get(cred.id, {})
        if r.get("status") in ("revoked", "already-revoked"):
            old = f"revoked ({r.get('old_key_id')})"
        elif r.get("status") == "manual":
            old = "waits on a person to revoke it"
            waits = waits or str(r.get("detail", ""))
        elif m.get("status") == "already-rotated":
            old = "revoked by an earlier run"
        elif failed:
            old = "KEPT ALIVE: a consumer does not hold the new key"
        elif u and not u.get("ready"):
            old = f"KEPT ALIVE: {u.get('evidence', '')}"
        elif u.get("ready") and revoke_gate in ("rejected", "timed_out", "blocked"):
            old = f"KEPT ALIVE: revocation {revoke_gate}"
        else:
            old = "not revoked"
        if u.get("use_unknown") and old.startswith("revoked"):
            old += ", its use unknown at the issuer: confirmed by a person at the gate"
        for source in (m, by_hand, r, push.get(cred.id, {}), check.get(cred.id, {}), u, seen.get(cred.id, {})):
            if source.get("failed"):
                failed.append(str(source.get("error", "failed")))
        review = seen.get(cred.id, {})
        review_text = ""
        if review:
            review_text = f"{review.get('uses', 0)} use(s) since {str(review.get('since', ''))[:10]}"
            if review.get("unknown_places"):
                review_text += f", from UNKNOWN places: {', '.join(review['unknown_places'])}"
            if review.get("partial"):
                review_text += f" (partial: {review['partial']})"
        rows.append(
            CredentialReport(
                credential=cred.id,
                issuer=cred.issuer.kind,
                minted=minted_text,
                consumers=list(consumers.values()),
                old_key=old,
                waits_on=waits,
                failures=failed,
                use_review=review_text,
            )
        )
    # Items that failed outright carry no credential id: count them so nothing is lost.
    stray = sum(
        1
        for group in (verified_by_hand, pushed, verified, unused, revoked, reviewed)
        for o in group
        if isinstance(o, dict) and o.get("failed") and not o.get("credential")
    )
    lines = [f"{inventory.metadata.title}: {len(rows)} credential(s)."]
    for row in rows:
        consumers_text = "; ".join(f"{c.consumer} {c.shown}" for c in row.consumers) or "no consumers"
        line = (
            f"- {row.credential} ({row.issuer}): new key {row.minted}; consumers: {consumers_text}; old key {row.old_key}."
        )
        if row.waits_on:
            line += f" Waits on {row.waits_on}."
        if row.failures:
            line += f" Failed: {' | '.join(row.failures)}."
        if row.use_review:
            line += f" Old key use: {row.use_review}."
        lines.append(line)
    if stray:
        lines.append(f"{stray} step item(s) failed before naming their credential: see the run.")
    text = ctx.masker.mask("\n".join(lines))
    return VendorReport(
        vendor=vendor,
        credentials=rows,
        revoked=sum(r.old_key.startswith("revoked") for r in rows),
        waiting=sum(bool(r.waits_on) for r in rows),
        with_failures=sum(bool(r.failures) for r in rows) + stray,
        text=text,
    )
