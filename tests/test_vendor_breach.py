"""The vendor breach end to end in the sandbox: Acme AI (Braintrust-like) holding a platform key and two provider keys.

Real parts: moto for Secrets Manager, stand-ins speaking Braintrust's, OpenAI's, Anthropic's, GitHub's (sealed boxes
opened with its own private key) and Kubernetes' APIs over HTTP, a real Prefect API, the approval signatures.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from conftest import BackgroundRun, start_run
from test_actions_aws import four_steps, make_ctx

from flows.approvals.client import answer_gate
from flows.sandbox.vendor_env import FAILING_DEPLOYMENT, UNKNOWN_IP, VendorBreachEnv
from flows.sandbox.vendors.github_api import GitHubSecretsStandIn
from integrations.vendors import actions
from integrations.vendors.base import Minted, NotSupported, SecretValue, VendorError

PLAYBOOK = "vendor-breach-key-rotation"


@pytest.fixture
def breach(sandbox: Any) -> Iterator[VendorBreachEnv]:
    env = VendorBreachEnv(sandbox).start()
    yield env
    env.stop()


def answer(run: BackgroundRun, gate: str, opened: dict[str, Any] | None = None) -> dict[str, Any]:
    opened = opened or run.wait_for("gate_opened", timeout=120, gate=gate)
    run.wait_paused(gate=gate)
    assert run.run_id is not None
    verdict = answer_gate(run.run_id, gate, "dana", "approve", "test: checked")
    assert verdict.accepted, verdict.message
    return opened


def current(sandbox: Any, credential: str) -> str:
    text = sandbox.client("secretsmanager").get_secret_value(SecretId=f"acme-ai/{credential}")["SecretString"]
    return str(json.loads(text)["api_key"])


def everything_stored(run_id: str) -> str:
    """What Prefect's database holds of a run: parameters, states, task runs, logs, artifacts, run inputs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    flow_run_id = UUID(run_id)
    with get_client(sync_client=True) as client:
        time.sleep(1.0)  # logs reach the API in batches
        flow_run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        inputs = client.filter_flow_run_input(flow_run_id, key_prefix="stanch-", limit=500, exclude_keys=set())
    parts = [flow_run.model_dump_json()]
    parts += [t.model_dump_json() for t in tasks]
    parts += [log.message for log in logs]
    parts += [json.dumps(a.data, default=str) for a in artifacts]
    parts += [i.value for i in inputs]
    assert len(logs) > 20 and inputs, "the run's records were read"
    return "\n".join(parts)


@pytest.mark.usefixtures("prefect_api")
def test_vendor_breach_rotates_every_key_updates_every_consumer_and_revokes_only_what_nothing_uses(
    sandbox: Any, breach: VendorBreachEnv
) -> None:
    env = breach
    old = dict(env.old)
    run = start_run(PLAYBOOK, {"vendor": "acme-ai", "grace_period": "1s"}, launched_by="erin", sandbox=True)
    # The issuer with no API to mint: its key owner is asked by name, to put the key into the secret.
    asked = run.wait_for("gate_opened", timeout=120, gate="ask-key-owner")
    assert "dana" in asked["message"] and "acme-ai/anthropic-provider-key" in asked["message"]
    assert "never paste it into Slack" in asked["message"]
    made = env.person_makes_new_key()
    answer(run, "ask-key-owner", asked)
    # ONE gate lists every credential ready to revoke, with its evidence; the one with a failed consumer is not.
    offered = answer(run, "revoke")["message"]
    assert "platform-api-key: " in offered and "anthropic-provider-key: " in offered
    assert "since every consumer switched" in offered or "every consumer verified" in offered, offered
    assert "Not ready, their old keys kept alive: openai-provider-key: not checked: not every consumer" in offered
    summary = run.result(timeout=180)
    assert summary.state == "Completed", summary.message
    new = {c: current(sandbox, c) for c in old}
    assert all(new[c] != old[c] for c in old)

    # Every consumer holds the new value (GitHub's stand-in opened the sealed box with its private key).
    gh, kube, bt = env.github, env.kube, env.braintrust
    assert gh.secret_value(("repos", "acme/evals"), "ACME_AI_API_KEY") == new["platform-api-key"]
    assert gh.secret_value(("env", "acme/evals", "production"), "OPENAI_API_KEY") == new["openai-provider-key"]
    assert gh.secret_value(("orgs", "acme"), "ANTHROPIC_API_KEY") == new["anthropic-provider-key"]
    assert kube.secret_value("chat", "acme-ai", "api-key") == new["platform-api-key"]
    assert kube.secret_value("batch", "openai", "api-key") == new["openai-provider-key"]
    assert kube.restarts("chat", "chat-api") == 1 and kube.restarts("chat", "eval-runner") == 1
    assert bt.ai_secret_value("OPENAI_API_KEY") == new["openai-provider-key"]
    assert bt.ai_secret_value("ANTHROPIC_API_KEY") == new["anthropic-provider-key"]
    sm = sandbox.client("secretsmanager")
    assert sm.get_secret_value(SecretId="apps/chat/acme-ai")["SecretString"] == new["platform-api-key"]
    assert sm.get_secret_value(SecretId="apps/chat/anthropic")["SecretString"] == new["anthropic-provider-key"]

    # Old keys: revoked where every consumer verified; the failed consumer keeps the OpenAI key alive.
    assert not bt.works(old["platform-api-key"]) and bt.works(new["platform-api-key"])
    assert not env.anthropic.works(old["anthropic-provider-key"]) and env.anthropic.works(new["anthropic-provider-key"])
    assert env.anthropic.keys[made]["status"] == "active"
    assert env.openai.works(old["openai-provider-key"]), "a consumer failed: its credential's old key stays alive"
    assert env.openai.works(new["openai-provider-key"])

    # The report: every credential, its consumers, what was done, what failed, the old keys' use.
    report = next(s for s in summary.steps if s.id == "summarize").outputs
    rows = {r["credential"]: r for r in report["credentials"]}
    assert rows["platform-api-key"]["old_key"].startswith("revoked")
    assert rows["anthropic-provider-key"]["minted"] == "made by hand, verified"
    assert rows["openai-provider-key"]["old_key"].startswith("KEPT ALIVE")
    [failure] = rows["openai-provider-key"]["failures"]
    assert FAILING_DEPLOYMENT in failure and "ProgressDeadlineExceeded" in failure
    statuses = {c["consumer"]: c["status"] for r in report["credentials"] for c in r["consumers"]}
    assert list(statuses.values()).count("failed") == 1 and list(statuses.values()).count("verified") == 10
    assert UNKNOWN_IP in rows["openai-provider-key"]["use_review"], "use from outside the known places is flagged"
    slack = sandbox.slack.messages("incident-response")[-1]["text"]
    assert "2 old key(s) revoked" in slack and "KEPT ALIVE" in slack and "UNKNOWN places: " + UNKNOWN_IP in slack

    # A re-run under another incident, once the Deployment is fixed: finishes what is left, rotates nothing twice.
    kube.failing_rollouts.clear()
    for stand_in in (bt, env.openai, env.anthropic, gh):
        stand_in.clear_calls()
    keys_before = (len(bt.service_tokens), len(env.anthropic.keys))
    again = start_run(PLAYBOOK, {"vendor": "acme-ai", "grace_period": "1s"}, launched_by="erin", incident_id="inc-again")
    offered_again = answer(again, "revoke")["message"]
    assert "openai-provider-key: " in offered_again and "platform-api-key: " not in offered_again
    second = again.result(timeout=180)
    assert second.state == "Completed", second.message
    assert again.index_of("gate_opened", gate="ask-key-owner") < 0, "nobody is asked for a key twice"
    assert (len(bt.service_tokens), len(env.anthropic.keys)) == keys_before, "nothing minted"
    assert [c for c in gh.mutating_calls()] == [], "GitHub secrets already holding the value are not written again"
    assert [c.method for c in bt.mutating_calls()] == [], "nothing at the vendor changed twice"
    assert [(c.method, c.path.rsplit("/", 1)[-1]) for c in env.openai.mutating_calls()] == [
        ("DELETE", env.old_key_ids["openai-provider-key"])
    ], "only the old OpenAI key, left alive by the first run, is revoked"
    assert not env.openai.works(old["openai-provider-key"])
    assert {c: current(sandbox, c) for c in old} == new, "no credential was rotated twice"

    # No secret value reached Slack, the summaries or Prefect's database.
    values = env.values()
    assert len(values) >= 11
    stored = everything_stored(str(run.run_id)) + everything_stored(str(again.run_id))
    shown = [
        m["text"]
        for ch in ("incident-response", "stanch-incidents", "security-escalations")
        for m in sandbox.slack.messages(ch)
    ]
    for text in (stored, *shown, summary.model_dump_json(), second.model_dump_json()):
        leaked = [v[:6] + "..." for v in values if v in text]
        assert not leaked, leaked


# ---------------------------------------------------------------- each mutating action: dry-run, apply, idempotent


def _tags(sandbox: Any, credential: str) -> dict[str, str]:
    described = sandbox.client("secretsmanager").describe_secret(SecretId=f"acme-ai/{credential}")
    return {t["Key"]: t["Value"] for t in described.get("Tags", []) if t["Value"]}


def test_mint_new_key_four_steps(sandbox: Any, breach: VendorBreachEnv) -> None:
    four_steps(
        sandbox,
        lambda ctx: actions.mint_new_key(ctx, vendor="acme-ai", credential="openai-provider-key"),
        lambda: current(sandbox, "openai-provider-key"),
    )
    assert breach.openai.works(current(sandbox, "openai-provider-key")), "the stored key works at the issuer"
    manual = actions.mint_new_key(make_ctx(sandbox, False), vendor="acme-ai", credential="anthropic-provider-key")
    assert manual.status == "manual" and manual.owner == "dana"
    assert current(sandbox, "anthropic-provider-key") == breach.old["anthropic-provider-key"], "nothing minted by hand"


def test_verify_new_key_four_steps(sandbox: Any, breach: VendorBreachEnv) -> None:
    ctx = make_ctx(sandbox, False)
    actions.mint_new_key(ctx, vendor="acme-ai", credential="anthropic-provider-key")
    with pytest.raises(VendorError, match="has no new version yet: put the new key into it"):
        actions.verify_new_key(ctx, vendor="acme-ai", credential="anthropic-provider-key")
    made = breach.person_makes_new_key()
    four_steps(
        sandbox,
        lambda ctx: actions.verify_new_key(ctx, vendor="acme-ai", credential="anthropic-provider-key"),
        lambda: _tags(sandbox, "anthropic-provider-key").get(actions.NEW_KEY_TAG, ""),
    )
    assert _tags(sandbox, "anthropic-provider-key")[actions.NEW_KEY_TAG].endswith("=" + made)


def test_push_to_consumers_four_steps(sandbox: Any, breach: VendorBreachEnv) -> None:
    actions.mint_new_key(make_ctx(sandbox, False), vendor="acme-ai", credential="platform-api-key")
    new = current(sandbox, "platform-api-key")

    def held() -> tuple[Any, ...]:
        sm = sandbox.client("secretsmanager")
        return (
            breach.github.secret_value(("repos", "acme/evals"), "ACME_AI_API_KEY"),
            breach.kube.secret_value("chat", "acme-ai", "api-key"),
            sm.get_secret_value(SecretId="apps/chat/acme-ai")["SecretString"],
        )

    four_steps(sandbox, lambda ctx: actions.push_to_consumers(ctx, vendor="acme-ai", credential="platform-api-key"), held)
    assert held() == (new, new, new)


def test_verify_consumers_four_steps(sandbox: Any, breach: VendorBreachEnv) -> None:
    ctx = make_ctx(sandbox, False)
    actions.mint_new_key(ctx, vendor="acme-ai", credential="platform-api-key")
    pushed = actions.push_to_consumers(ctx, vendor="acme-ai", credential="platform-api-key")
    writes = [o.model_dump() for o in pushed.consumers]
    four_steps(
        sandbox,
        lambda ctx: actions.verify_consumers(ctx, vendor="acme-ai", credential="platform-api-key", writes=writes),
        lambda: _tags(sandbox, "platform-api-key").get(actions.VERIFIED_TAG, ""),
    )


def test_revoke_old_key_four_steps_only_after_every_consumer_verified(sandbox: Any, breach: VendorBreachEnv) -> None:
    ctx = make_ctx(sandbox, False)
    old = breach.old["platform-api-key"]
    actions.mint_new_key(ctx, vendor="acme-ai", credential="platform-api-key")
    with pytest.raises(VendorError, match="not every consumer verified the new one"):
        actions.revoke_old_key(ctx, vendor="acme-ai", credential="platform-api-key")
    assert breach.braintrust.works(old), "refused: the old key stays alive"
    pushed = actions.push_to_consumers(ctx, vendor="acme-ai", credential="platform-api-key")
    actions.verify_consumers(
        ctx, vendor="acme-ai", credential="platform-api-key", writes=[o.model_dump() for o in pushed.consumers]
    )
    four_steps(
        sandbox,
        lambda ctx: actions.revoke_old_key(ctx, vendor="acme-ai", credential="platform-api-key"),
        lambda: breach.braintrust.works(old),
    )
    assert not breach.braintrust.works(old) and breach.braintrust.works(current(sandbox, "platform-api-key"))


# ---------------------------------------------------------------- a tiny inventory: the record, generic and GitHub


TINY = """\
apiVersion: stanch/v1
kind: Vendor
metadata: {{name: tiny, title: Tiny vendor}}
credentials:
  - id: api-key
    issuer: {issuer}
    stored_in: {store}
{key_id}    consumers:
{consumers}
"""
TINY_OLD = "tiny-old-value-0123456789abcdef"
SSM_NAME = "/tiny/api-key"
SSM_STORE = "{ssm: /tiny/api-key}"


class GenericLike:
    """An issuer speaking the generic contract: mints, checks and revokes; lists, looks up and reports nothing."""

    kind = "generic"
    can_mint = True
    scopes: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.names: list[str] = []
        self.revoked: list[str] = []
        self.revoke_error: Exception | None = None

    def mint(self, name: str, idempotency_key: str) -> Minted:
        self.names.append(name)
        return Minted(key_id=f"key-new-{len(self.names)}", value=SecretValue(f"tiny-new-{idempotency_key}"), name=name)

    def check(self, value: SecretValue) -> bool:
        return True

    def list_keys(self) -> list[Any]:
        raise NotSupported("vendor: the generic contract lists no keys")

    def key(self, key_id: str) -> Any:
        raise NotSupported("vendor: the generic contract looks up no key")

    def usage(self, key_id: str, start: Any, end: Any) -> list[Any]:
        raise NotSupported("vendor: the generic contract reports no usage")

    def revoke(self, key_id: str, *, dry_run: bool) -> bool:
        if self.revoke_error:
            raise self.revoke_error
        self.revoked.append(key_id)
        return True


class Tiny:
    def __init__(self, sandbox: Any, folder: Any):
        self.sandbox, self.folder = sandbox, folder
        sm = sandbox.client("secretsmanager")
        sm.create_secret(Name="tiny/api-key", SecretString=TINY_OLD)
        for name in ("app/one", "app/two"):
            sm.create_secret(Name=name, SecretString="placeholder")

    def write(self, issuer: str, consumers: list[str], key_id: str | None = None, store: str = "") -> None:
        listed = "\n".join(f"      - {{kind: secretsmanager, secret_id: {c}}}" for c in consumers)
        key = f"    key_id: {key_id}\n" if key_id else ""
        text = TINY.format(issuer=issuer, consumers=listed, key_id=key, store=store or "{secretsmanager: tiny/api-key}")
        (self.folder / "tiny.yaml").write_text(text, encoding="utf-8")

    def ctx(self) -> Any:
        return make_ctx(self.sandbox, False)  # a new context reads the inventory afresh

    def rotate_consumers(self) -> None:
        ctx = self.ctx()
        pushed = actions.push_to_consumers(ctx, vendor="tiny", credential="api-key")
        assert pushed.consumers_failed == 0, pushed
        checked = actions.verify_consumers(
            ctx, vendor="tiny", credential="api-key", writes=[o.model_dump() for o in pushed.consumers]
        )
        assert checked.all_verified, checked

    def put(self, store: str, value: str) -> None:
        """A person's put of a new value: a new version of the secret, or of the SSM parameter."""
        if store == "ssm":
            self.sandbox.client("ssm").put_parameter(Name=SSM_NAME, Value=value, Type="SecureString", Overwrite=True)
        else:
            self.sandbox.client("secretsmanager").put_secret_value(SecretId="tiny/api-key", SecretString=value)

    def tags(self) -> dict[str, str]:
        described = self.sandbox.client("secretsmanager").describe_secret(SecretId="tiny/api-key")
        return {t["Key"]: t["Value"] for t in described.get("Tags", []) if t["Value"]}


@pytest.fixture
def tiny(sandbox: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    monkeypatch.setenv("STANCH_VENDOR_DIR", str(tmp_path))
    return Tiny(sandbox, tmp_path)


@pytest.fixture
def generic(monkeypatch: pytest.MonkeyPatch) -> GenericLike:
    issuer = GenericLike()
    monkeypatch.setattr(actions, "_issuer", lambda _ctx, _cred: issuer)
    return issuer


def test_a_consumer_listed_after_verification_means_verify_again_before_revoking(tiny: Tiny, generic: GenericLike) -> None:
    tiny.write("{kind: generic}", ["app/one"], key_id="key-old")
    minted = actions.mint_new_key(tiny.ctx(), vendor="tiny", credential="api-key")
    assert minted.status == "minted"
    assert generic.names == ["stanch-api-key"], "no date in the name: a re-run the next day finds the orphan"
    tiny.rotate_consumers()
    current = tiny.sandbox.client("secretsmanager").describe_secret(SecretId="tiny/api-key")
    version = next(v for v, s in current["VersionIdsToStages"].items() if "AWSCURRENT" in s)
    assert re.fullmatch(rf"{version}:[0-9a-f]{{16}}:1/1", tiny.tags()[actions.VERIFIED_TAG])

    # a consumer added to the inventory after the verification: nothing is revoked until it verified too
    tiny.write("{kind: generic}", ["app/one", "app/two"], key_id="key-old")
    with pytest.raises(VendorError, match="the consumer list changed since every consumer verified"):
        actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key")
    unused = actions.check_old_key_unused(tiny.ctx(), vendor="tiny", credential="api-key", grace_period=1)
    assert not unused.ready and "consumer list changed" in unused.evidence
    # the same count of consumers, another place: refused too (a count alone would have let it through)
    tiny.write("{kind: generic}", ["app/two"], key_id="key-old")
    with pytest.raises(VendorError, match="consumer list changed"):
        actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key")
    assert generic.revoked == []

    tiny.write("{kind: generic}", ["app/one", "app/two"], key_id="key-old")
    tiny.rotate_consumers()
    assert tiny.tags()[actions.VERIFIED_TAG].endswith(":2/2")
    revoked = actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key")
    assert revoked.status == "revoked" and generic.revoked == ["key-old"]


def test_a_generic_issuer_works_through_the_actions_and_unknowns_go_to_a_person(tiny: Tiny, generic: GenericLike) -> None:
    # a bare stored value and no key_id: the old key's id is unknown (no listing), minting still works
    tiny.write("{kind: generic}", ["app/one"])
    assert actions.mint_new_key(tiny.ctx(), vendor="tiny", credential="api-key").status == "minted"
    assert tiny.tags()[actions.OLD_KEY_TAG] == "unknown"
    tiny.rotate_consumers()
    unused = actions.check_old_key_unused(tiny.ctx(), vendor="tiny", credential="api-key", grace_period=1)
    assert not unused.ready and "a person checks and revokes it" in unused.evidence
    manual = actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key")
    assert manual.status == "manual" and generic.revoked == []

    # the key's id known: no lookup, no usage at the issuer; offered at the gate on the verification, and said so
    tiny.sandbox.client("secretsmanager").tag_resource(
        SecretId="tiny/api-key", Tags=[{"Key": actions.OLD_KEY_TAG, "Value": "key-old"}]
    )
    started = time.monotonic()
    unused = actions.check_old_key_unused(tiny.ctx(), vendor="tiny", credential="api-key", grace_period=30)
    assert time.monotonic() - started < 5, "nothing to watch: no waiting"
    assert unused.ready and unused.use_unknown and "use unknown" in unused.evidence and "a person confirms" in unused.line
    generic.revoke_error = NotSupported("vendor: no revoke_url configured")
    refused = actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key")
    assert refused.status == "manual" and "a person revokes key-old" in refused.detail
    generic.revoke_error = None
    revoked = actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key")
    assert revoked.status == "revoked" and generic.revoked == ["key-old"]

    # the report: the unknown use is shown; an unused-check item that failed outright is counted, never lost
    report = actions.report(
        tiny.ctx(),
        vendor="tiny",
        unused=[unused.model_dump(), {"failed": True, "error": "VendorError: boom"}],
        revoked=[revoked.model_dump()],
    )
    assert "its use unknown at the issuer" in report.credentials[0].old_key
    assert report.with_failures == 1 and "1 step item(s) failed" in report.text


@pytest.mark.parametrize("store", ["secretsmanager", "ssm"])
def test_github_revokes_the_stores_old_version_by_value_never_the_new_token(tiny: Tiny, store: str) -> None:
    github = GitHubSecretsStandIn().start()
    try:
        old, new = github.add_leaked_token(), github.add_leaked_token()
        tiny.put(store, old)
        issuer = f"{{kind: github, base_url: '{github.base_url}', admin_token: tiny/unused}}"
        tiny.write(issuer, ["app/one"], store=SSM_STORE if store == "ssm" else "")
        assert actions.mint_new_key(tiny.ctx(), vendor="tiny", credential="api-key").status == "manual"
        tiny.put(store, new)  # the token's owner made a new one
        assert actions.verify_new_key(tiny.ctx(), vendor="tiny", credential="api-key").verified
        tiny.rotate_consumers()
        unused = actions.check_old_key_unused(tiny.ctx(), vendor="tiny", credential="api-key", grace_period=1)
        assert unused.ready and unused.use_unknown, unused
        revoked = actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key")
        assert revoked.status == "revoked", revoked
        assert github.revoked == [old], "the old version's token, read by its version id"
        assert github.leaked.get(new), "the new token (the store's current value) still works"
        again = actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key")
        assert again.status == "already-revoked" and github.revoked == [old]
    finally:
        github.stop()


# ---------------------------------------------------------------- a credential stored in SSM Parameter Store


def ssm_view(sandbox: Any) -> tuple[Any, ...]:
    """All the rotation can change in AWS: the parameter's versions (values, labels), its tags, the consumer."""
    ssm = sandbox.client("ssm")
    history = ssm.get_parameter_history(Name=SSM_NAME, WithDecryption=True)["Parameters"]
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=SSM_NAME)["TagList"]
    consumer = sandbox.client("secretsmanager").get_secret_value(SecretId="app/one")["SecretString"]
    versions = [(h["Version"], h["Value"], sorted(h.get("Labels", []))) for h in history]
    return versions, sorted((t["Key"], t["Value"]) for t in tags), consumer


def test_a_credential_stored_in_ssm_rotates_end_to_end_and_a_rerun_changes_nothing(tiny: Tiny, generic: GenericLike) -> None:
    sandbox, ssm = tiny.sandbox, tiny.sandbox.client("ssm")
    old = json.dumps({"api_key": TINY_OLD, "key_id": "key-old"})
    ssm.put_parameter(Name=SSM_NAME, Value=old, Type="SecureString")
    tiny.write("{kind: generic}", ["app/one"], store=SSM_STORE)
    results: list[Any] = []

    # a dry-run of every step says what it would do and writes nothing
    before = ssm_view(sandbox)
    dry = make_ctx(sandbox, True)
    results.append(actions.push_to_consumers(dry, vendor="tiny", credential="api-key"))
    results.append(actions.verify_consumers(dry, vendor="tiny", credential="api-key"))
    results.append(actions.revoke_old_key(dry, vendor="tiny", credential="api-key"))
    assert [r.status for r in results] == ["would-push", "would-verify", "would-revoke"]
    assert ssm_view(sandbox) == before

    # mint: dry-run, apply, again (nothing minted twice), dry-run again; the new key is version 2
    def mint(ctx: Any) -> Any:
        results.append(actions.mint_new_key(ctx, vendor="tiny", credential="api-key"))
        return results[-1]

    four_steps(
        sandbox,
        mint,
        lambda: ssm.get_parameter(Name=SSM_NAME)["Parameter"]["Version"],
    )
    assert generic.names == ["stanch-api-key"]
    new = json.loads(ssm.get_parameter(Name=SSM_NAME, WithDecryption=True)["Parameter"]["Value"])
    assert new["key_id"] == "key-new-1" and new["api_key"].startswith("tiny-new-"), "stored as JSON, as the old one"
    pinned = ssm.get_parameter(Name=f"{SSM_NAME}:stanch-rotating-from", WithDecryption=True)["Parameter"]
    assert (pinned["Version"], pinned["Value"]) == (1, old), "the old version is labelled: kept until revoked"
    state = actions._store(tiny.ctx(), actions._credential(tiny.ctx(), "tiny", "api-key")[1]).state()
    assert (state.phase, state.old, state.current) == ("stored", "1", "2")
    assert state.tags[actions.OLD_KEY_TAG] == "key-old" and state.tags[actions.NEW_KEY_TAG] == "2=key-new-1"

    # push and verify: the consumer holds the new key; the record (escaped to SSM's tag characters) reads back
    tiny.rotate_consumers()
    assert sandbox.client("secretsmanager").get_secret_value(SecretId="app/one")["SecretString"] == new["api_key"]
    raw = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=SSM_NAME)["TagList"]
    assert all(re.fullmatch(r"[A-Za-z0-9 _.:/=+@-]{0,256}", t["Value"]) for t in raw), raw
    state = actions._store(tiny.ctx(), actions._credential(tiny.ctx(), "tiny", "api-key")[1]).state()
    assert re.fullmatch(r"2:[0-9a-f]{16}:1/1", state.tags[actions.VERIFIED_TAG])
    assert any(v.startswith("sha256:") and "|" in v for k, v in state.tags.items() if k.startswith("stanch:marker:"))

    # the old key: unused (the generic issuer shows no use: a person confirms), then revoked; the label comes off
    results.append(actions.check_old_key_unused(tiny.ctx(), vendor="tiny", credential="api-key", grace_period=1))
    assert results[-1].ready and results[-1].use_unknown
    results.append(actions.revoke_old_key(tiny.ctx(), vendor="tiny", credential="api-key"))
    assert results[-1].status == "revoked" and generic.revoked == ["key-old"]
    history = ssm.get_parameter_history(Name=SSM_NAME)["Parameters"]
    assert [(h["Version"], h.get("Labels", [])) for h in history] == [(1, []), (2, [])]

    # a re-run under another incident: every step finds its work done and changes nothing
    after = ssm_view(sandbox)
    again = make_ctx(sandbox, False, incident="inc-again")
    rerun: list[Any] = [
        actions.mint_new_key(again, vendor="tiny", credential="api-key"),
        actions.push_to_consumers(again, vendor="tiny", credential="api-key"),
        actions.verify_consumers(again, vendor="tiny", credential="api-key"),
        actions.revoke_old_key(again, vendor="tiny", credential="api-key"),
    ]
    assert [(r.status, r.changed) for r in rerun] == [
        ("already-rotated", False),
        ("already-rotated", False),
        ("already-rotated", False),
        ("already-revoked", False),
    ]
    assert ssm_view(sandbox) == after
    assert generic.names == ["stanch-api-key"] and generic.revoked == ["key-old"], "nothing minted or revoked twice"
    shown = "\n".join(r.model_dump_json() for r in [*results, *rerun])
    assert TINY_OLD not in shown and new["api_key"] not in shown, "no value in a result"


def test_an_ssm_store_that_is_not_a_securestring_is_refused_before_any_write(tiny: Tiny, generic: GenericLike) -> None:
    ssm = tiny.sandbox.client("ssm")
    ssm.put_parameter(Name=SSM_NAME, Value=TINY_OLD, Type="String")
    tiny.write("{kind: generic}", ["app/one"], key_id="key-old", store=SSM_STORE)
    with pytest.raises(VendorError, match="is a String parameter: a credential is a SecureString") as caught:
        actions.mint_new_key(tiny.ctx(), vendor="tiny", credential="api-key")
    assert TINY_OLD not in str(caught.value)
    assert ssm.get_parameter(Name=SSM_NAME)["Parameter"]["Version"] == 1, "no new version"
    assert tiny.sandbox.client("ssm").list_tags_for_resource(ResourceType="Parameter", ResourceId=SSM_NAME)["TagList"] == []
    assert generic.names == [], "nothing minted"


def test_ssm_tag_values_keep_to_ssms_characters_and_read_back() -> None:
    from integrations.vendors.aws_stores import ssm_tag_text, ssm_tag_value

    for text in ("sha256:0a1b|2026-11-27T14:55:18Z", "secret@123", "ü|ß~%", "x" * 300, "@41"):
        value = ssm_tag_value(text)
        assert re.fullmatch(r"[A-Za-z0-9 _.:/=+@-]{0,256}", value), value
        back = ssm_tag_text(value)
        assert back == text if len(text) < 100 else text.startswith(back) and len(back) == 256
