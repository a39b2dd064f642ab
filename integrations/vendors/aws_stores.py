"""AWS stores as consumers: an SSM SecureString parameter, or another Secrets Manager secret.

(A credential's own store is `integrations.vendors.actions`' `_Store`; the SSM one uses `ssm_tag_value` here.)

Both go through the run's `AwsClients` (`settings.aws`), so a dry-run's read-only clients refuse any write.

SSM: `PutParameter` (SecureString, Overwrite) makes a new version; the version is labelled `stanch-<fingerprint>`
(`LabelParameterVersion`; a label sits on one version at a time), so a second write of the same value finds
the label on the current version and changes nothing. Verify: the current version is the one written.

Secrets Manager: `PutSecretValue` with `VersionStages=["AWSCURRENT"]` (AWS moves AWSPREVIOUS to the old version)
and a `ClientRequestToken` derived from the secret's ARN and the fingerprint, so a re-run finds its own version;
one that is there but not current is promoted (`UpdateSecretVersionStage`). With `json_key` the value replaces
one field of a JSON secret and keeps the others. Verify: AWSCURRENT is on the version written.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, ClassVar

import msgspec

from integrations.context import ReadOnlyRefusal
from integrations.vendors._api import check_fingerprint
from integrations.vendors.base import AdapterSettings, ConsumerWrite, SecretValue, VendorError, Verified

_NAMESPACE = uuid.UUID("2b0f3d0e-6c1a-4f5e-9d1b-7a4c8e2f6b13")


def _aws_code(exc: BaseException) -> str:
    response: Any = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def aws_error(place: str, operation: str, exc: Exception) -> VendorError:
    """A boto3 failure as a VendorError naming the place and AWS's error code (never the request)."""
    code = _aws_code(exc) or type(exc).__name__
    retryable = code in ("ThrottlingException", "Throttling", "InternalServerError", "InternalFailure", "ServiceUnavailable")
    return VendorError(f"{place}: {operation} failed ({code})", retryable=retryable)


# SSM tag values: letters, digits, spaces and `_.:/=+-@`, at most 256 characters (botocore's TagValue pattern).
_SSM_TAG_SAFE = re.compile(r"[A-Za-z0-9 _.:/=+-]")
_SSM_TAG_ESCAPED = re.compile(r"(?:@[0-9A-F]{2})+")
SSM_TAG_MAX = 256


def ssm_tag_value(text: str) -> str:
    """`text` as an SSM tag value: every other character (and `@` itself) as `@XX` per UTF-8 byte; cut at a whole
    character when it would pass 256 characters (`ssm_tag_text` then gives back a prefix of `text`)."""
    out: list[str] = []
    size = 0
    for char in text:
        piece = char if _SSM_TAG_SAFE.fullmatch(char) else "".join(f"@{b:02X}" for b in char.encode())
        if size + len(piece) > SSM_TAG_MAX:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def ssm_tag_text(value: str) -> str:
    """The text an `ssm_tag_value` stands for."""
    return _SSM_TAG_ESCAPED.sub(lambda m: bytes.fromhex(m.group(0).replace("@", "")).decode("utf-8", "replace"), value)


def ssm_label(fingerprint: str) -> str:
    """An SSM version label for a fingerprint: letters, digits, `.`, `-`, `_`; at most 100 characters."""
    return "stanch-" + re.sub(r"[^A-Za-z0-9._-]", "_", fingerprint)[:93]


class SsmParameterConsumer:
    """Spec: `parameter` (or `name`: the parameter's name), `key_id` (a KMS key; default the account's aws/ssm
    key), `region`."""

    kind: ClassVar[str] = "ssm"
    scopes: ClassVar[tuple[str, ...]] = (
        "ssm:DescribeParameters",
        "ssm:GetParameter",
        "ssm:PutParameter",
        "ssm:LabelParameterVersion",
        "kms:Encrypt (the parameter's KMS key)",
    )

    class Spec(msgspec.Struct, forbid_unknown_fields=True):
        parameter: str | None = None
        name: str | None = None
        key_id: str | None = None
        region: str | None = None

    def __init__(self, spec: Spec, settings: AdapterSettings):
        if settings.aws is None:
            raise ValueError("ssm consumer: settings.aws (the run's AwsClients) is required")
        if bool(spec.parameter) == bool(spec.name):
            raise ValueError("ssm consumer: give the parameter's name once (parameter)")
        self.name: str = spec.parameter or spec.name or ""
        self.spec = spec
        self.settings = settings

    def describe(self) -> str:
        return f"ssm:{self.spec.region or self.settings.aws.region} parameter {self.name}"

    def _client(self) -> Any:
        return self.settings.aws.client("ssm", self.spec.region)

    def _versions(self, fingerprint: str) -> tuple[int | None, int | None]:
        """(current version, version labelled with the fingerprint); None where there is none."""
        ssm = self._client()
        try:
            found = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [self.name]}])
        except ReadOnlyRefusal:
            raise
        except Exception as exc:
            raise aws_error(self.describe(), "DescribeParameters", exc) from None
        entries = [p for p in found.get("Parameters", []) if p.get("Name") == self.name]
        if not entries:
            return None, None
        current = int(entries[0].get("Version", 0))
        try:
            labelled = ssm.get_parameter(Name=f"{self.name}:{ssm_label(fingerprint)}", WithDecryption=False)
            return current, int(labelled["Parameter"]["Version"])
        except ReadOnlyRefusal:
            raise
        except Exception as exc:
            if _aws_code(exc) in ("ParameterNotFound", "ParameterVersionLabelNotFound", "ParameterVersionNotFound"):
                return current, None
            raise aws_error(self.describe(), "GetParameter", exc) from None

    def write(self, value: SecretValue, fingerprint: str, *, dry_run: bool) -> ConsumerWrite:
        self.settings.register_secret(value.reveal())
        check_fingerprint(fingerprint)
        current, labelled = self._versions(fingerprint)
        if current is not None and labelled == current:
            return ConsumerWrite(
                changed=False, marker=str(current), detail=f"{self.describe()} version {current} holds it", dry_run=dry_run
            )
        if dry_run:
            return ConsumerWrite(changed=True, dry_run=True, detail=f"would put a new version of {self.describe()}")
        ssm = self._client()
        params: dict[str, Any] = {"Name": self.name, "Value": value.reveal(), "Type": "SecureString", "Overwrite": True}
        if self.spec.key_id:
            params["KeyId"] = self.spec.key_id
        try:
            version = int(ssm.put_parameter(**params)["Version"])
        except Exception as exc:
            raise aws_error(self.describe(), "PutParameter", exc) from None
        try:  # a crash before the label only costs a re-run one more (identical) version
            ssm.label_parameter_version(Name=self.name, ParameterVersion=version, Labels=[ssm_label(fingerprint)])
        except Exception as exc:
            raise aws_error(self.describe(), "LabelParameterVersion", exc) from None
        return ConsumerWrite(changed=True, marker=str(version), detail=f"put version {version} of {self.describe()}")

    def verify(self, write: ConsumerWrite, fingerprint: str) -> Verified:
        if write.dry_run:
            return Verified(ok=False, evidence=f"{self.describe()}: a dry-run wrote nothing")
        current, labelled = self._versions(fingerprint)
        if current is None:
            return Verified(ok=False, evidence=f"{self.describe()} does not exist")
        if labelled != current or str(current) != write.marker:
            return Verified(
                ok=False, evidence=f"{self.describe()} is at version {current}, not the version written ({write.marker})"
            )
        return Verified(ok=True, evidence=f"{self.describe()} version {current} is the one written")


class SecretsManagerConsumer:
    """Spec: `secret_id` (name or ARN), `json_key` (replace one field of a JSON secret), `region`."""

    kind: ClassVar[str] = "secretsmanager"
    scopes: ClassVar[tuple[str, ...]] = (
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue (with json_key only)",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "kms:GenerateDataKey, kms:Decrypt (a customer-managed KMS key only)",
    )

    class Spec(msgspec.Struct, forbid_unknown_fields=True):
        secret_id: str
        json_key: str | None = None
        region: str | None = None

    def __init__(self, spec: Spec, settings: AdapterSettings):
        if settings.aws is None:
            raise ValueError("secretsmanager consumer: settings.aws (the run's AwsClients) is required")
        self.spec = spec
        self.settings = settings

    def describe(self) -> str:
        field = f" field {self.spec.json_key}" if self.spec.json_key else ""
        return f"secretsmanager:{self.spec.region or self.settings.aws.region} secret {self.spec.secret_id}{field}"

    def _client(self) -> Any:
        return self.settings.aws.client("secretsmanager", self.spec.region)

    def _described(self) -> dict[str, Any]:
        try:
            return dict(self._client().describe_secret(SecretId=self.spec.secret_id))
        except ReadOnlyRefusal:
            raise
        except Exception as exc:
            raise aws_error(self.describe(), "DescribeSecret", exc) from None

    def _token(self, arn: str, fingerprint: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"consumer|{arn}|{self.spec.json_key or ''}|{fingerprint}"))

    def _value(self, value: SecretValue) -> str:
        if not self.spec.json_key:
            return value.reveal()
        try:
            text = self._client().get_secret_value(SecretId=self.spec.secret_id, VersionStage="AWSCURRENT")["SecretString"]
        except Exception as exc:
            raise aws_error(self.describe(), "GetSecretValue", exc) from None
        self.settings.register_secret(text)
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise VendorError(f"{self.describe()}: the current value is not a JSON object, so json_key cannot apply")
        document[self.spec.json_key] = value.reveal()
        combined = json.dumps(document)
        self.settings.register_secret(combined)
        return combined

    def write(self, value: SecretValue, fingerprint: str, *, dry_run: bool) -> ConsumerWrite:
        self.settings.register_secret(value.reveal())
        check_fingerprint(fingerprint)
        described = self._described()
        stages: dict[str, list[str]] = described.get("VersionIdsToStages", {})
        token = self._token(str(described["ARN"]), fingerprint)
        current = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
        if current == token:
            return ConsumerWrite(changed=False, marker=token, detail=f"{self.describe()} already holds it", dry_run=dry_run)
        if dry_run:
            verb = "promote the version holding it in" if token in stages else "put a new version of"
            return ConsumerWrite(changed=True, dry_run=True, detail=f"would {verb} {self.describe()}")
        sm = self._client()
        try:
            if token in stages:  # written earlier, then replaced: make it current again
                sm.update_secret_version_stage(
                    SecretId=self.spec.secret_id,
                    VersionStage="AWSCURRENT",
                    MoveToVersionId=token,
                    RemoveFromVersionId=current,
                )
            else:
                sm.put_secret_value(
                    SecretId=self.spec.secret_id,
                    ClientRequestToken=token,
                    SecretString=self._value(value),
                    VersionStages=["AWSCURRENT"],
                )
        except VendorError:
            raise
        except Exception as exc:
            raise aws_error(self.describe(), "PutSecretValue", exc) from None
        return ConsumerWrite(changed=True, marker=token, detail=f"{self.describe()}: version {token} is AWSCURRENT")

    def verify(self, write: ConsumerWrite, fingerprint: str) -> Verified:
        if write.dry_run:
            return Verified(ok=False, evidence=f"{self.describe()}: a dry-run wrote nothing")
        stages: dict[str, list[str]] = self._described().get("VersionIdsToStages", {})
        if "AWSCURRENT" not in stages.get(write.marker, []):
            return Verified(
                ok=False, evidence=f"{self.describe()}: AWSCURRENT is not on the version written ({write.marker})"
            )
        return Verified(ok=True, evidence=f"{self.describe()}: AWSCURRENT is on version {write.marker}")
