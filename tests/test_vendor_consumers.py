"""Consumer adapters against local stand-ins over real HTTP, and moto's server for the AWS stores."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import vendor_support
from vendor_support import assert_no_secret, serving

from flows.sandbox.vendors.braintrust_api import BraintrustStandIn
from flows.sandbox.vendors.github_api import GitHubSecretsStandIn
from flows.sandbox.vendors.gitlab_api import GitLabStandIn
from flows.sandbox.vendors.kube_api import KubeStandIn
from integrations.context import AwsClients, HttpClient
from integrations.vendors.base import AdapterSettings, ConsumerWrite, SecretValue, VendorError
from integrations.vendors.consumers import CONSUMER_KINDS, consumer_class, make_consumer

NEW = "sk-proj-NEWvalue0123456789abcdefghijklmn"
NEWER = "sk-proj-NEWERvalue9876543210zyxwvutsrq"


def fp(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:32]


class Harness:
    """The run's side of an adapter: the token reader, the masker hook and the caller's record of markers."""

    def __init__(self, token: str):
        self.token = token
        self.registered: set[str] = set()
        self.markers: dict[tuple[str, str], str] = {}

    def settings(self, base_url: str | None = None, *, read_only: bool = False, aws: Any = None) -> AdapterSettings:
        return AdapterSettings(
            base_url=base_url,
            token_ref="token",
            read_secret=lambda _ref: SecretValue(self.token),
            http=HttpClient(read_only=read_only, timeout=5),
            aws=aws,
            register_secret=self.registered.add,
            recorded_marker=lambda place, fingerprint: self.markers.get((place, fingerprint)),
        )

    def record(self, consumer: Any, value: str, write: ConsumerWrite) -> None:
        self.markers[(consumer.describe(), fp(value))] = write.marker


caplog_all = vendor_support.caplog_all  # the fixture


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Logs at INFO and above (botocore's DEBUG lines show request bodies: a run never logs at that level)."""
    caplog.set_level(logging.INFO)
    return caplog


# ---------------------------------------------------------------- GitHub Actions


@pytest.fixture
def github() -> Iterator[GitHubSecretsStandIn]:
    with serving(GitHubSecretsStandIn()) as stand_in:
        stand_in.add_repository("acme/api", environments=("production",))
        stand_in.add_org("acme")
        yield stand_in


def test_github_repo_secret_is_sealed_to_the_public_key_and_opens_to_the_new_value(
    github: GitHubSecretsStandIn, caplog_all: pytest.LogCaptureFixture
) -> None:
    run = Harness(github.token)
    consumer = make_consumer(
        "github_actions", {"repository": "acme/api", "secret": "OPENAI_API_KEY"}, run.settings(github.base_url)
    )
    assert consumer.describe() == "github:acme/api secret OPENAI_API_KEY"

    github.clear_calls()
    planned = consumer.write(SecretValue(NEW), fp(NEW), dry_run=True)
    assert planned.changed and planned.dry_run and github.mutating_calls() == []

    write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert write.changed and write.marker.endswith("Z")
    assert github.secret_value(("repos", "acme/api"), "OPENAI_API_KEY") == NEW  # the stand-in opened the box
    assert consumer.verify(write, fp(NEW)).ok
    run.record(consumer, NEW, write)

    github.clear_calls()
    again = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert not again.changed and again.marker == write.marker and github.mutating_calls() == []

    # someone writes the secret after us: the recorded marker no longer matches, verify says so
    other = make_consumer(
        "github_actions",
        {"repository": "acme/api", "secret": "OPENAI_API_KEY"},
        Harness(github.token).settings(github.base_url),
    )
    other.write(SecretValue(NEWER), fp(NEWER), dry_run=False)
    assert not consumer.verify(write, fp(NEW)).ok
    assert consumer.write(SecretValue(NEW), fp(NEW), dry_run=False).changed
    assert github.secret_value(("repos", "acme/api"), "OPENAI_API_KEY") == NEW
    assert NEW in run.registered
    assert_no_secret(caplog_all.text + repr(write), NEW, NEWER, github.token)


def test_github_environment_and_org_secrets(github: GitHubSecretsStandIn) -> None:
    run = Harness(github.token)
    env = make_consumer(
        "github_actions",
        {"repository": "acme/api", "environment": "production", "secret": "KEY"},
        run.settings(github.base_url),
    )
    org = make_consumer("github_actions", {"org": "acme", "secret": "KEY"}, run.settings(github.base_url))
    for consumer, scope in ((env, ("env", "acme/api", "production")), (org, ("orgs", "acme"))):
        write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
        assert github.secret_value(scope, "KEY") == NEW and consumer.verify(write, fp(NEW)).ok
    assert github.scopes[("orgs", "acme")]["KEY"]["visibility"] == "private"
    github.scopes[("orgs", "acme")]["KEY"]["visibility"] = "all"
    org.write(SecretValue(NEWER), fp(NEWER), dry_run=False)
    assert github.scopes[("orgs", "acme")]["KEY"]["visibility"] == "all"  # an existing visibility is kept
    with pytest.raises(ValueError, match="exactly one of repository"):
        make_consumer("github_actions", {"secret": "KEY"}, run.settings(github.base_url))
    with pytest.raises(ValueError, match="unknown field"):
        make_consumer("github_actions", {"secret": "KEY", "org": "acme", "colour": "red"}, run.settings(github.base_url))


def test_github_failures_name_the_secret_and_hold_no_value(github: GitHubSecretsStandIn) -> None:
    wrong = make_consumer(
        "github_actions", {"repository": "acme/api", "secret": "KEY"}, Harness("ghp_" + "w" * 36).settings(github.base_url)
    )
    with pytest.raises(VendorError, match=r"github: GET /repos/acme/api/actions/secrets/KEY answered 401") as refused:
        wrong.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert_no_secret(str(refused.value), NEW, "ghp_" + "w" * 36)
    missing = make_consumer(
        "github_actions", {"repository": "acme/nope", "secret": "KEY"}, Harness(github.token).settings(github.base_url)
    )
    with pytest.raises(VendorError, match="acme/nope/actions/secrets/public-key answered 404"):
        missing.write(SecretValue(NEW), fp(NEW), dry_run=False)
    ok = make_consumer(
        "github_actions", {"repository": "acme/api", "secret": "KEY"}, Harness(github.token).settings(github.base_url)
    )
    github.fail("/actions/secrets/KEY", 502)
    with pytest.raises(VendorError, match="answered 502") as failed:
        ok.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert failed.value.retryable and NEW not in str(failed.value)


# ---------------------------------------------------------------- GitLab


@pytest.fixture
def gitlab() -> Iterator[GitLabStandIn]:
    with serving(GitLabStandIn()) as stand_in:
        stand_in.add_project("acme/api")
        stand_in.add_group("acme")
        yield stand_in


def test_gitlab_variable_is_created_then_updated_masked_with_a_fingerprint_note(
    gitlab: GitLabStandIn, caplog_all: pytest.LogCaptureFixture
) -> None:
    run = Harness(gitlab.token)
    consumer = make_consumer("gitlab", {"project": "acme/api", "key": "OPENAI_API_KEY"}, run.settings(gitlab.base_url))
    gitlab.clear_calls()
    assert consumer.write(SecretValue(NEW), fp(NEW), dry_run=True).changed and gitlab.mutating_calls() == []

    created = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    variable = gitlab.variable(("projects", "acme/api"), "OPENAI_API_KEY")
    assert variable and variable["value"] == NEW and variable["masked"] and variable["raw"]
    assert [c.method for c in gitlab.mutating_calls()] == ["POST"]
    assert consumer.verify(created, fp(NEW)).ok

    gitlab.clear_calls()
    assert not consumer.write(SecretValue(NEW), fp(NEW), dry_run=False).changed
    assert gitlab.mutating_calls() == []

    updated = consumer.write(SecretValue(NEWER), fp(NEWER), dry_run=False)
    assert [c.method for c in gitlab.mutating_calls()] == ["PUT"]
    assert gitlab.variable(("projects", "acme/api"), "OPENAI_API_KEY")["value"] == NEWER  # type: ignore[index]
    assert consumer.verify(updated, fp(NEWER)).ok and not consumer.verify(created, fp(NEW)).ok

    group = make_consumer("gitlab", {"group": "acme", "key": "OPENAI_API_KEY"}, run.settings(gitlab.base_url))
    group.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert gitlab.variable(("groups", "acme"), "OPENAI_API_KEY")["value"] == NEW  # type: ignore[index]
    assert_no_secret(caplog_all.text + repr(created), NEW, NEWER, gitlab.token)


def test_gitlab_refusals_are_clear(gitlab: GitLabStandIn) -> None:
    consumer = make_consumer("gitlab", {"project": "acme/api", "key": "K"}, Harness(gitlab.token).settings(gitlab.base_url))
    unmaskable = "has a space in it"
    with pytest.raises(VendorError, match="masked GitLab variable needs 8\\+ characters") as refused:
        consumer.write(SecretValue(unmaskable), fp(unmaskable), dry_run=False)
    assert_no_secret(str(refused.value), unmaskable)
    wrong = make_consumer(
        "gitlab", {"project": "acme/api", "key": "K"}, Harness("glpat-wrong-000000").settings(gitlab.base_url)
    )
    with pytest.raises(VendorError, match=r"gitlab: GET /api/v4/projects/acme%2Fapi/variables/K answered 401"):
        wrong.write(SecretValue(NEW), fp(NEW), dry_run=False)


def test_gitlab_verify_hashes_the_value_held_not_the_note(gitlab: GitLabStandIn) -> None:
    consumer = make_consumer(
        "gitlab", {"project": "acme/api", "key": "OPENAI_API_KEY"}, Harness(gitlab.token).settings(gitlab.base_url)
    )
    write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    held = gitlab.owners[("projects", "acme/api")][("OPENAI_API_KEY", "*")]
    held["value"] = NEWER  # someone changed the value and kept our note
    changed = consumer.verify(write, fp(NEW))
    assert not changed.ok and "holds another value" in changed.evidence
    assert_no_secret(changed.evidence, NEW, NEWER)
    held["value"] = NEW
    assert consumer.verify(write, fp(NEW)).ok
    del held["value"]  # a hidden variable: GitLab shows no value, only the note can speak, and the evidence says so
    hidden = consumer.verify(write, fp(NEW))
    assert hidden.ok and "judged by its fingerprint note only" in hidden.evidence
    assert not consumer.verify(write, fp(NEWER)).ok


# ---------------------------------------------------------------- Kubernetes


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with serving(KubeStandIn(rollout_seconds=0.2)) as stand_in:
        stand_in.add_secret("prod", "openai", {"api-key": "sk-proj-OLDvalue0123456789abcdefghijk"})
        stand_in.add_deployment("prod", "api", secret="openai", how="volume")
        stand_in.add_deployment("prod", "worker", secret="openai", how="env")
        stand_in.add_deployment("prod", "web")  # does not use the secret
        yield stand_in


KUBE_SPEC = {"namespace": "prod", "secret": "openai", "key": "api-key", "rollout_timeout": 10, "poll_interval": 0.05}


def test_kubernetes_secret_is_patched_its_deployments_restarted_and_rolled_out(
    kube: KubeStandIn, caplog_all: pytest.LogCaptureFixture
) -> None:
    consumer = make_consumer("kubernetes", KUBE_SPEC, Harness(kube.token).settings(kube.base_url))
    kube.clear_calls()
    planned = consumer.write(SecretValue(NEW), fp(NEW), dry_run=True)
    assert planned.changed and "restart api, worker" in planned.detail and kube.mutating_calls() == []

    write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert kube.secret_value("prod", "openai", "api-key") == NEW
    assert (kube.restarts("prod", "api"), kube.restarts("prod", "worker"), kube.restarts("prod", "web")) == (1, 1, 0)
    verified = consumer.verify(write, fp(NEW))
    assert verified.ok and "api@2" in verified.evidence and "worker@2" in verified.evidence

    kube.clear_calls()
    again = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert not again.changed and kube.mutating_calls() == []
    assert_no_secret(caplog_all.text + repr(write) + verified.evidence, NEW)


def test_kubernetes_rerun_after_a_failed_restart_finishes_only_what_is_left(kube: KubeStandIn) -> None:
    consumer = make_consumer(
        "kubernetes", {**KUBE_SPEC, "deployments": ["api", "worker"]}, Harness(kube.token).settings(kube.base_url)
    )
    kube.fail("deployments/worker")
    with pytest.raises(VendorError, match=r"kubernetes: GET /apis/apps/v1/namespaces/prod/deployments/worker answered 500"):
        consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    kube.heal()
    kube.fail("deployments/worker", 200)  # answers garbage for a while: a clear shape error, no traceback
    with pytest.raises(VendorError, match="unexpected shape"):
        consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    kube.heal()
    write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert write.changed and consumer.verify(write, fp(NEW)).ok
    assert (kube.restarts("prod", "api"), kube.restarts("prod", "worker")) == (1, 1)
    assert NEW not in write.detail


def test_kubernetes_failed_or_slow_rollout_is_reported_not_verified(kube: KubeStandIn) -> None:
    kube.fail_rollout("worker")
    consumer = make_consumer("kubernetes", KUBE_SPEC, Harness(kube.token).settings(kube.base_url))
    write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    failed = consumer.verify(write, fp(NEW))
    assert not failed.ok and "worker rollout failed (ProgressDeadlineExceeded)" in failed.evidence

    kube.failing_rollouts.clear()
    kube.rollout_seconds = 30
    slow = make_consumer("kubernetes", {**KUBE_SPEC, "rollout_timeout": 0.3}, Harness(kube.token).settings(kube.base_url))
    write = slow.write(SecretValue(NEWER), fp(NEWER), dry_run=False)
    late = slow.verify(write, fp(NEWER))
    assert not late.ok and "not done within 0.3 s" in late.evidence


def test_kubernetes_verify_hashes_the_value_held_not_the_annotation(kube: KubeStandIn) -> None:
    import base64

    consumer = make_consumer("kubernetes", KUBE_SPEC, Harness(kube.token).settings(kube.base_url))
    write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert consumer.verify(write, fp(NEW)).ok
    # someone puts another value into the data key; the fingerprint annotation stays
    kube.secrets[("prod", "openai")]["data"]["api-key"] = base64.b64encode(NEWER.encode()).decode()
    changed = consumer.verify(write, fp(NEW))
    assert not changed.ok and "holds another value" in changed.evidence
    assert_no_secret(changed.evidence, NEW, NEWER)


def test_kubernetes_two_secrets_feeding_one_deployment_keep_a_note_each(kube: KubeStandIn) -> None:
    kube.add_secret("prod", "anthropic", {"api-key": "sk-ant-OLDvalue0123456789abcdefghij"})
    pod = kube.deployments[("prod", "api")]["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "more", "secret": {"secretName": "anthropic"}})  # api mounts both Secrets
    settings = Harness(kube.token).settings(kube.base_url)
    openai = make_consumer("kubernetes", {**KUBE_SPEC, "deployments": ["api"]}, settings)
    anthropic = make_consumer("kubernetes", {**KUBE_SPEC, "secret": "anthropic", "deployments": ["api"]}, settings)
    first = openai.write(SecretValue(NEW), fp(NEW), dry_run=False)
    second = anthropic.write(SecretValue(NEWER), fp(NEWER), dry_run=False)
    assert anthropic.verify(second, fp(NEWER)).ok
    kept = openai.verify(first, fp(NEW))
    assert kept.ok, kept.evidence  # the second write did not overwrite the first one's note on the Deployment
    kube.clear_calls()
    assert not openai.write(SecretValue(NEW), fp(NEW), dry_run=False).changed and kube.mutating_calls() == []
    annotations = kube.deployments[("prod", "api")]["spec"]["template"]["metadata"]["annotations"]
    assert sorted(v for k, v in annotations.items() if k.startswith("stanch.dev/fp-")) == sorted([fp(NEW), fp(NEWER)])


def test_kubernetes_read_only_token_is_refused_writes(kube: KubeStandIn) -> None:
    consumer = make_consumer("kubernetes", KUBE_SPEC, Harness(kube.read_only_token).settings(kube.base_url))
    with pytest.raises(VendorError, match=r"PATCH /api/v1/namespaces/prod/secrets/openai answered 403") as refused:
        consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert_no_secret(str(refused.value), NEW, kube.read_only_token)
    missing = make_consumer("kubernetes", {**KUBE_SPEC, "secret": "nope"}, Harness(kube.token).settings(kube.base_url))
    with pytest.raises(VendorError, match="does not exist"):
        missing.write(SecretValue(NEW), fp(NEW), dry_run=False)


# ---------------------------------------------------------------- Braintrust stored provider keys


def test_braintrust_ai_secret_is_updated_in_place_never_posted() -> None:
    with serving(BraintrustStandIn()) as braintrust:
        braintrust.add_ai_secret("OPENAI_API_KEY", "sk-proj-OLDvalue0123456789abcdefghijk")
        run = Harness(braintrust.admin_token)
        consumer = make_consumer(
            "braintrust_ai_secret", {"name": "OPENAI_API_KEY", "type": "openai"}, run.settings(braintrust.base_url)
        )
        write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
        assert braintrust.ai_secret_value("OPENAI_API_KEY") == NEW
        assert [c.method for c in braintrust.mutating_calls()] == ["PATCH"]
        assert consumer.verify(write, fp(NEW)).ok
        braintrust.clear_calls()
        assert not consumer.write(SecretValue(NEW), fp(NEW), dry_run=False).changed
        assert braintrust.mutating_calls() == []

        fresh = make_consumer(
            "braintrust_ai_secret", {"name": "ANTHROPIC_API_KEY", "type": "anthropic"}, run.settings(braintrust.base_url)
        )
        assert fresh.write(SecretValue(NEWER), fp(NEWER), dry_run=True).changed and braintrust.mutating_calls() == []
        fresh.write(SecretValue(NEWER), fp(NEWER), dry_run=False)
        assert [c.method for c in braintrust.mutating_calls()] == ["PUT"]  # created by PUT, never POST
        assert braintrust.ai_secret_value("ANTHROPIC_API_KEY") == NEWER

        env = make_consumer(
            "braintrust_env_var",
            {"name": "OPENAI_API_KEY", "object_type": "project", "object_id": "p1"},
            run.settings(braintrust.base_url),
        )
        written = env.write(SecretValue(NEW), fp(NEW), dry_run=False)
        run.record(env, NEW, written)
        assert braintrust.env_var_value("OPENAI_API_KEY") == NEW and env.verify(written, fp(NEW)).ok
        assert not env.write(SecretValue(NEW), fp(NEW), dry_run=False).changed


# ---------------------------------------------------------------- AWS stores (moto's server)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    os.environ.pop("AWS_SESSION_TOKEN", None)
    yield f"http://{host}:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_ssm_parameter_gets_a_labelled_new_version_once(moto_endpoint: str, caplog_info: pytest.LogCaptureFixture) -> None:
    aws = AwsClients(region="us-east-1", endpoint_url=moto_endpoint, max_attempts=2)
    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/ci/openai", Value="sk-proj-OLDvalue0123456789abcdefghijk", Type="SecureString")
    run = Harness("unused")
    consumer = make_consumer("ssm", {"parameter": "/ci/openai"}, run.settings(aws=aws))

    read_only = AwsClients(region="us-east-1", endpoint_url=moto_endpoint, read_only=True, max_attempts=2)
    planned = make_consumer("ssm", {"parameter": "/ci/openai"}, run.settings(aws=read_only)).write(
        SecretValue(NEW), fp(NEW), dry_run=True
    )
    assert planned.changed and ssm.get_parameter(Name="/ci/openai")["Parameter"]["Version"] == 1

    write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert write.changed and write.marker == "2"
    assert ssm.get_parameter(Name="/ci/openai", WithDecryption=True)["Parameter"]["Value"] == NEW
    assert consumer.verify(write, fp(NEW)).ok
    again = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert not again.changed and ssm.get_parameter(Name="/ci/openai")["Parameter"]["Version"] == 2

    newer = consumer.write(SecretValue(NEWER), fp(NEWER), dry_run=False)
    assert newer.marker == "3" and not consumer.verify(write, fp(NEW)).ok and consumer.verify(newer, fp(NEWER)).ok
    assert_no_secret(caplog_info.text + repr(newer), NEW, NEWER)


def test_secrets_manager_new_version_takes_awscurrent_once(moto_endpoint: str) -> None:
    aws = AwsClients(region="us-east-1", endpoint_url=moto_endpoint, max_attempts=2)
    sm = aws.client("secretsmanager")
    sm.create_secret(Name="app/openai", SecretString='{"api_key": "sk-proj-OLDvalue0123456789abcdefghijk", "org": "acme"}')
    run = Harness("unused")
    consumer = make_consumer("secretsmanager", {"secret_id": "app/openai", "json_key": "api_key"}, run.settings(aws=aws))

    read_only = AwsClients(region="us-east-1", endpoint_url=moto_endpoint, read_only=True, max_attempts=2)
    dry = make_consumer("secretsmanager", {"secret_id": "app/openai", "json_key": "api_key"}, run.settings(aws=read_only))
    assert dry.write(SecretValue(NEW), fp(NEW), dry_run=True).changed
    assert len(sm.describe_secret(SecretId="app/openai")["VersionIdsToStages"]) == 1

    write = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    stages = sm.describe_secret(SecretId="app/openai")["VersionIdsToStages"]
    assert stages[write.marker] == ["AWSCURRENT"] and ["AWSPREVIOUS"] in stages.values()
    import json

    current = sm.get_secret_value(SecretId="app/openai", VersionStage="AWSCURRENT")["SecretString"]
    assert json.loads(current) == {"api_key": NEW, "org": "acme"}
    assert consumer.verify(write, fp(NEW)).ok
    assert not consumer.write(SecretValue(NEW), fp(NEW), dry_run=False).changed

    # another value goes in, then this one again: its own version is promoted back, not written anew
    consumer.write(SecretValue(NEWER), fp(NEWER), dry_run=False)
    assert not consumer.verify(write, fp(NEW)).ok
    back = consumer.write(SecretValue(NEW), fp(NEW), dry_run=False)
    assert back.marker == write.marker and consumer.verify(back, fp(NEW)).ok
    current = sm.get_secret_value(SecretId="app/openai", VersionStage="AWSCURRENT")["SecretString"]
    assert json.loads(current)["api_key"] == NEW

    missing = make_consumer("secretsmanager", {"secret_id": "app/missing"}, run.settings(aws=aws))
    with pytest.raises(VendorError, match=r"secret app/missing: DescribeSecret failed \(ResourceNotFoundException\)"):
        missing.write(SecretValue(NEW), fp(NEW), dry_run=False)


def test_every_consumer_kind_lists_its_scopes_and_refuses_a_bad_spec() -> None:
    for kind in CONSUMER_KINDS:
        cls = consumer_class(kind)
        assert cls.kind == kind and cls.scopes and all(isinstance(s, str) and s for s in cls.scopes)
    with pytest.raises(ValueError, match="unknown consumer kind"):
        consumer_class("vault")
    with pytest.raises(ValueError, match="consumer kind gitlab: Object missing required field `key`"):
        make_consumer("gitlab", {"project": "acme/api"}, Harness("t").settings("https://gitlab.invalid"))
    # the spec may also come in the settings' options (the actions' way of calling)
    settings = Harness("t").settings("https://gitlab.invalid")
    settings.options = {"project": "acme/api", "key": "K"}
    assert make_consumer("gitlab", settings).describe() == "gitlab:project acme/api variable K"


def test_a_cluster_behind_its_own_ca_is_reached_with_the_connections_ca_file(tmp_path: Any) -> None:
    """A Kubernetes API with a private CA: trusted through `connections.kubernetes.ca_file`, refused without it."""
    import http.server
    import ssl
    import threading
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from integrations.context import HttpCallError, HttpClient

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca_file = tmp_path / "cluster-ca.pem"
    ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = tmp_path / "cluster.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"kind": "APIVersions"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(ca_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://localhost:{server.server_address[1]}/api"
    try:
        assert HttpClient(ca_file=str(ca_file)).call("GET", url, "token") == {"kind": "APIVersions"}
        with pytest.raises(HttpCallError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            HttpClient(timeout=5).call("GET", url, "token")
    finally:
        server.shutdown()
        server.server_close()

    from flows.vendors.inventory import Connection, load_inventory

    vendor, _ = load_inventory("acme-ai")
    kube = Connection.model_validate({"base_url": url, "ca_file": str(ca_file)})
    vendor = vendor.model_copy(update={"connections": {**vendor.connections, "kubernetes": kube}})
    consumer = next(c for cred in vendor.credentials for c in cred.consumers if c.kind == "kubernetes")
    assert vendor.ca_file(consumer) == str(ca_file)
