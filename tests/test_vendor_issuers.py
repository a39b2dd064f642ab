"""Issuer adapters against local stand-ins speaking each vendor's API over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import vendor_support
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_support import assert_no_secret, serving

from flows.sandbox.vendor_api import VendorStandIn
from flows.sandbox.vendors.anthropic_api import AnthropicStandIn
from flows.sandbox.vendors.braintrust_api import BraintrustStandIn
from flows.sandbox.vendors.github_api import GitHubSecretsStandIn
from flows.sandbox.vendors.openai_api import OpenAIStandIn
from integrations.context import HttpCallError, HttpClient
from integrations.vendors.base import (
    AdapterSettings,
    ManualStepRequired,
    NotSupported,
    SecretValue,
    VendorError,
)
from integrations.vendors.issuers import ISSUER_KINDS, issuer_class, make_issuer


class Secrets:
    """The run's secret reader and masker hook, as the actions give them: references to values, and every value
    an adapter registered (tests assert none of them leaks)."""

    def __init__(self, **refs: str):
        self.refs = dict(refs)
        self.registered: set[str] = set()

    def read(self, ref: str) -> SecretValue:
        return SecretValue(self.refs[ref])

    def settings(self, base_url: str | None, *, read_only: bool = False, **options: Any) -> AdapterSettings:
        return AdapterSettings(
            base_url=base_url,
            token_ref="admin",
            read_secret=self.read,
            http=HttpClient(read_only=read_only, timeout=5),
            register_secret=self.registered.add,
            options=options,
        )


caplog_all = vendor_support.caplog_all  # the fixture


def _status(http: HttpClient, method: str, url: str, token: str | None, **kwargs: Any) -> int:
    """The HTTP status a stand-in answers a raw call (200 for any 2xx)."""
    try:
        http.call(method, url, token, **kwargs)
    except HttpCallError as exc:
        return exc.status or 0
    return 200


# ---------------------------------------------------------------- Braintrust


@pytest.fixture
def braintrust() -> Iterator[BraintrustStandIn]:
    with serving(BraintrustStandIn()) as stand_in:
        yield stand_in


def test_braintrust_user_key_is_listed_checked_and_deleted_but_minted_by_a_person(
    braintrust: BraintrustStandIn, caplog_all: pytest.LogCaptureFixture
) -> None:
    key_id, value = braintrust.add_api_key("ci")
    secrets = Secrets(admin=braintrust.admin_token)
    issuer = make_issuer("braintrust", secrets.settings(braintrust.base_url))
    assert issuer.can_mint is False
    with pytest.raises(ManualStepRequired, match="Settings > API keys"):
        issuer.mint("ci", "rotation-1")
    listed = {k.key_id: k for k in issuer.list_keys()}
    assert listed[key_id].name == "ci" and listed[key_id].hint.endswith(value[-4:])
    assert issuer.check(SecretValue(value)) is True

    braintrust.clear_calls()
    assert issuer.revoke(key_id, dry_run=True) is True
    assert braintrust.mutating_calls() == []
    assert issuer.revoke(key_id, dry_run=False) is True
    assert issuer.check(SecretValue(value)) is False
    assert issuer.key(key_id) is None
    assert issuer.revoke(key_id, dry_run=False) is False  # already deleted: nothing to do
    with pytest.raises(NotSupported):
        issuer.usage(key_id, datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
    assert value in secrets.registered
    assert_no_secret(caplog_all.text + repr(listed), value, braintrust.admin_token)


def test_braintrust_service_token_is_minted_once_per_idempotency_key(braintrust: BraintrustStandIn) -> None:
    secrets = Secrets(admin=braintrust.admin_token)
    issuer = make_issuer(
        "braintrust", secrets.settings(braintrust.base_url, key_type="service_token", service_account_id="sa-1")
    )
    assert issuer.can_mint is True
    first = issuer.mint("evals", "rotation-7")
    assert first.value.reveal() in secrets.registered and "***" in repr(first)
    assert issuer.check(first.value) is True
    # the first answer was "lost": minting again under the same key leaves one token, the new one
    second = issuer.mint("evals", "rotation-7")
    assert [k.key_id for k in issuer.list_keys()] == [second.key_id]
    assert issuer.check(first.value) is False and issuer.check(second.value) is True
    assert issuer.revoke(second.key_id, dry_run=False) is True
    assert issuer.list_keys() == []


def test_braintrust_mint_the_next_day_finds_the_orphan_by_its_idempotency_key(braintrust: BraintrustStandIn) -> None:
    """A crash between mint and store, re-run after midnight UTC: the orphan (named with yesterday's date by an
    older release) is found by the stable `[idempotency key]` suffix and deleted; one working token is left."""
    secrets = Secrets(admin=braintrust.admin_token)
    issuer = make_issuer(
        "braintrust", secrets.settings(braintrust.base_url, key_type="service_token", service_account_id="sa-1")
    )
    lost = issuer.mint("stanch-evals-20261126", "rotation-8")  # its answer was lost: the value is nowhere
    kept = issuer.mint("stanch-evals", "rotation-8")
    assert [k.key_id for k in issuer.list_keys()] == [kept.key_id]
    assert issuer.check(lost.value) is False and issuer.check(kept.value) is True
    other = issuer.mint("stanch-evals", "rotation-9")  # another rotation's token is not an orphan of this one
    assert {k.key_id for k in issuer.list_keys()} == {kept.key_id, other.key_id}


def test_braintrust_errors_name_the_place_and_hold_no_secret(braintrust: BraintrustStandIn) -> None:
    good = Secrets(admin=braintrust.admin_token)
    wrong = Secrets(admin="sk-bt-not-a-real-admin-token-000000")
    with pytest.raises(VendorError, match=r"braintrust: GET /v1/api_key answered 401") as refused:
        make_issuer("braintrust", wrong.settings(braintrust.base_url)).list_keys()
    assert not refused.value.retryable
    assert_no_secret(str(refused.value), "sk-bt-not-a-real-admin-token-000000")

    issuer = make_issuer("braintrust", good.settings(braintrust.base_url))
    braintrust.fail("/v1/api_key")
    with pytest.raises(VendorError, match="answered 500") as failed:
        issuer.list_keys()
    assert failed.value.retryable
    braintrust.fail("/v1/api_key", 200)  # a 200 with a body that is not a list of keys
    with pytest.raises(VendorError, match=r"unexpected shape: Object missing required field `objects`"):
        issuer.list_keys()
    braintrust.heal()
    with pytest.raises(VendorError, match="service_account_id"):
        make_issuer("braintrust", good.settings(braintrust.base_url, key_type="service_token")).mint("x", "k")
    with pytest.raises(ValueError, match="key_type"):
        make_issuer("braintrust", good.settings(braintrust.base_url, key_type="robot"))


def test_braintrust_stand_in_refuses_what_the_api_refuses(braintrust: BraintrustStandIn) -> None:
    """A user API key cannot create service tokens (the reference: "User API keys cannot be used"), and a list
    takes only its documented query parameters: the stand-in fails a call the real API would fail."""
    _, user_key = braintrust.add_api_key("person")
    as_user = Secrets(admin=user_key).settings(braintrust.base_url, key_type="service_token", service_account_id="sa-1")
    with pytest.raises(VendorError, match=r"POST /v1/service_token answered 403") as refused:
        make_issuer("braintrust", as_user).mint("evals", "rotation-1")
    assert_no_secret(str(refused.value), user_key)
    assert braintrust.service_tokens == {}
    http = HttpClient(timeout=5)
    assert _status(http, "GET", f"{braintrust.base_url}/v1/api_key?limit=10", braintrust.admin_token) == 200
    assert _status(http, "GET", f"{braintrust.base_url}/v1/api_key?page_size=10", braintrust.admin_token) == 400
    assert _status(http, "GET", f"{braintrust.base_url}/v1/project?limit=1&cursor=x", braintrust.admin_token) == 400


# ---------------------------------------------------------------- OpenAI


@pytest.fixture
def openai() -> Iterator[OpenAIStandIn]:
    with serving(OpenAIStandIn()) as stand_in:
        yield stand_in


def test_openai_mints_a_service_account_key_lists_reports_usage_and_revokes(
    openai: OpenAIStandIn, caplog_all: pytest.LogCaptureFixture
) -> None:
    old_id, old_value = openai.add_key("prod")
    now = int(datetime.now(UTC).timestamp())
    openai.record_use(old_id, now - 3600, requests=7)
    openai.record_use(old_id, now - 600, requests=1, ip="203.0.113.9")
    openai.record_use(old_id, now - 40 * 86400, requests=3)  # before the window
    secrets = Secrets(admin=openai.admin_token)
    issuer = make_issuer("openai", secrets.settings(openai.base_url, project_id=openai.project))

    minted = issuer.mint("prod", "rotation-1")
    assert minted.value.reveal().startswith("sk-svcacct-") and issuer.check(minted.value)
    keys = {k.key_id: k for k in issuer.list_keys()}
    assert set(keys) == {old_id, minted.key_id}
    assert keys[old_id].last_used_at == datetime.fromtimestamp(now - 600, UTC)
    assert_no_secret(repr(keys), old_value, minted.value.reveal())

    used = issuer.usage(old_id, datetime.now(UTC) - timedelta(days=2), datetime.now(UTC))
    assert sum(u.count for u in used if u.action == "completions") == 8
    assert {u.place for u in used if u.action != "completions"} == {"203.0.113.9", None}

    openai.clear_calls()
    assert issuer.revoke(old_id, dry_run=True) is True
    assert openai.mutating_calls() == []
    assert issuer.revoke(old_id, dry_run=False) is True
    assert issuer.check(SecretValue(old_value)) is False
    assert issuer.revoke(old_id, dry_run=False) is False
    assert_no_secret(caplog_all.text, old_value, minted.value.reveal(), openai.admin_token)


def test_openai_revokes_a_service_account_key_by_deleting_its_service_account(openai: OpenAIStandIn) -> None:
    """The API refuses to delete a service account's key by itself ("an error if the key belonged to a service
    account"): the issuer deletes the service account, which takes the key with it."""
    issuer = make_issuer("openai", Secrets(admin=openai.admin_token).settings(openai.base_url, project_id=openai.project))
    minted = issuer.mint("batch", "rotation-3")
    key_url = f"{openai.base_url}/v1/organization/projects/{openai.project}/api_keys/{minted.key_id}"
    assert _status(HttpClient(timeout=5), "DELETE", key_url, openai.admin_token) == 400  # what the old issuer sent
    openai.clear_calls()
    assert issuer.revoke(minted.key_id, dry_run=False) is True
    assert [c.method for c in openai.mutating_calls()] == ["DELETE"]
    assert "/service_accounts/" in openai.mutating_calls()[0].path
    assert openai.accounts == {} and issuer.check(minted.value) is False
    assert issuer.key(minted.key_id) is None
    assert issuer.revoke(minted.key_id, dry_run=False) is False


def test_openai_stand_in_takes_array_parameters_as_the_sdk_encodes_them(openai: OpenAIStandIn) -> None:
    """`api_key_ids[]=`, `group_by[]=` (openai-python's bracketed arrays); an undocumented name answers 400."""
    http = HttpClient(timeout=5)
    base = f"{openai.base_url}/v1/organization"
    good = "usage/completions?start_time=0&api_key_ids%5B%5D=k&group_by%5B%5D=api_key_id"
    assert _status(http, "GET", f"{base}/{good}", openai.admin_token) == 200
    bad = (
        "usage/completions?start_time=0&api_key_ids=k&group_by=api_key_id",  # what the old issuer sent
        "usage/completions?api_key_ids%5B%5D=k",  # start_time is required
        "audit_logs?actor_ids=k",
        f"projects/{openai.project}/api_keys?starting_after=x",
        f"projects/{openai.project}/api_keys?limit=101",
    )
    assert [_status(http, "GET", f"{base}/{query}", openai.admin_token) for query in bad] == [400] * len(bad)


def test_openai_mint_under_the_same_idempotency_key_leaves_one_service_account(openai: OpenAIStandIn) -> None:
    issuer = make_issuer("openai", Secrets(admin=openai.admin_token).settings(openai.base_url, project_id=openai.project))
    first = issuer.mint("batch", "rotation-9")
    second = issuer.mint("batch", "rotation-9")
    assert len(openai.accounts) == 1
    assert not issuer.check(first.value) and issuer.check(second.value)


def test_openai_mint_the_next_day_finds_the_orphan_by_its_idempotency_key(openai: OpenAIStandIn) -> None:
    issuer = make_issuer("openai", Secrets(admin=openai.admin_token).settings(openai.base_url, project_id=openai.project))
    lost = issuer.mint("stanch-batch-20261126", "rotation-5")  # an older release put the date in the name
    kept = issuer.mint("stanch-batch", "rotation-5")
    assert len(openai.accounts) == 1
    assert not issuer.check(lost.value) and issuer.check(kept.value)


def test_openai_project_key_is_not_an_admin_key(openai: OpenAIStandIn) -> None:
    _, project_key = openai.add_key("app")
    issuer = make_issuer("openai", Secrets(admin=project_key).settings(openai.base_url, project_id=openai.project))
    with pytest.raises(VendorError, match="answered 403: the credential lacks the permission") as refused:
        issuer.list_keys()
    assert_no_secret(str(refused.value), project_key)
    with pytest.raises(ValueError, match="project_id"):
        make_issuer("openai", Secrets(admin="x").settings(openai.base_url))


# ---------------------------------------------------------------- Anthropic


@pytest.fixture
def anthropic() -> Iterator[AnthropicStandIn]:
    with serving(AnthropicStandIn()) as stand_in:
        yield stand_in


def test_anthropic_keys_are_deactivated_never_minted_and_usage_is_reported(
    anthropic: AnthropicStandIn, caplog_all: pytest.LogCaptureFixture
) -> None:
    key_id, value = anthropic.add_key("backend")
    anthropic.record_use(key_id, datetime.now(UTC) - timedelta(hours=3), tokens=1200)
    anthropic.record_use("apikey_other", datetime.now(UTC) - timedelta(hours=3), tokens=99)
    issuer = make_issuer("anthropic", Secrets(admin=anthropic.admin_token).settings(anthropic.base_url))
    assert issuer.can_mint is False
    with pytest.raises(ManualStepRequired, match="Console"):
        issuer.mint("backend", "rotation-1")
    [listed] = issuer.list_keys()
    assert listed.key_id == key_id and listed.status == "active" and listed.hint.endswith(value[-4:])
    assert issuer.check(SecretValue(value)) is True

    used = issuer.usage(key_id, datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
    assert [(u.key_id, u.count) for u in used] == [(key_id, 1200)]

    anthropic.clear_calls()
    assert issuer.revoke(key_id, dry_run=True) is True
    assert anthropic.mutating_calls() == []
    assert issuer.revoke(key_id, dry_run=False) is True
    assert anthropic.keys[key_id]["status"] == "inactive"
    assert issuer.check(SecretValue(value)) is False
    assert issuer.revoke(key_id, dry_run=False) is False
    assert issuer.revoke("apikey_missing", dry_run=False) is False
    assert_no_secret(caplog_all.text, value, anthropic.admin_token)


def test_anthropic_failures_are_vendor_errors(anthropic: AnthropicStandIn) -> None:
    _, normal_key = anthropic.add_key("app")
    with pytest.raises(VendorError, match="403") as refused:
        make_issuer("anthropic", Secrets(admin=normal_key).settings(anthropic.base_url)).list_keys()
    assert_no_secret(str(refused.value), normal_key)
    issuer = make_issuer("anthropic", Secrets(admin=anthropic.admin_token).settings(anthropic.base_url))
    anthropic.fail("usage_report", 503)
    with pytest.raises(VendorError, match=r"usage_report/messages answered 503") as failed:
        issuer.usage("apikey_x", datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
    assert failed.value.retryable
    with pytest.raises(ValueError, match="revoke_status"):
        make_issuer("anthropic", Secrets(admin="x").settings(anthropic.base_url, revoke_status="deleted"))


def test_anthropic_stand_in_refuses_undocumented_query_parameters(anthropic: AnthropicStandIn) -> None:
    http = HttpClient(timeout=5)
    headers = {"x-api-key": anthropic.admin_token, "anthropic-version": "2023-06-01"}
    base = f"{anthropic.base_url}/v1/organizations"
    assert _status(http, "GET", f"{base}/api_keys?limit=1000&status=active", None, headers=headers) == 200
    start = "starting_at=2026-01-01T00:00:00Z"
    good = f"usage_report/messages?{start}&api_key_ids%5B%5D=k&group_by%5B%5D=api_key_id"
    assert _status(http, "GET", f"{base}/{good}", None, headers=headers) == 200
    bad = (
        "api_keys?after=x",  # OpenAI's cursor name, not Anthropic's after_id
        "api_keys?status=revoked",
        "api_keys?limit=1001",
        f"usage_report/messages?{start}&api_key_ids=k",
        f"usage_report/messages?{start}&group_by%5B%5D=key",
    )
    assert [_status(http, "GET", f"{base}/{query}", None, headers=headers) for query in bad] == [400] * len(bad)


def test_anthropic_usage_counts_cache_writes() -> None:
    """The report lists cache writes apart (`cache_creation`); they are tokens the key spent."""
    from integrations.vendors.anthropic import _Result

    result = msgspec.convert(
        {
            "api_key_id": "apikey_1",
            "uncached_input_tokens": 10,
            "cache_creation": {"ephemeral_1h_input_tokens": 3, "ephemeral_5m_input_tokens": 2},
            "cache_read_input_tokens": 4,
            "output_tokens": 1,
        },
        _Result,
    )
    assert result.tokens() == 20


# ---------------------------------------------------------------- GitHub revocation


@pytest.fixture
def github() -> Iterator[GitHubSecretsStandIn]:
    with serving(GitHubSecretsStandIn()) as stand_in:
        yield stand_in


def test_github_revokes_a_leaked_token_by_value_unauthenticated_once(
    github: GitHubSecretsStandIn, caplog_all: pytest.LogCaptureFixture
) -> None:
    leaked = github.add_leaked_token()
    secrets = Secrets(admin="unused", **{"arn:aws:secretsmanager:us-east-1:1:secret:leaked": leaked})
    issuer = make_issuer("github", secrets.settings(github.base_url))
    assert issuer.can_mint is False
    for unsupported in (issuer.list_keys, lambda: issuer.key("x")):
        with pytest.raises(NotSupported):
            unsupported()
    with pytest.raises(ManualStepRequired):
        issuer.mint("x", "y")

    assert issuer.revoke("arn:aws:secretsmanager:us-east-1:1:secret:leaked", dry_run=True) is True
    assert github.mutating_calls() == [] and github.revoked == []
    assert issuer.revoke("arn:aws:secretsmanager:us-east-1:1:secret:leaked", dry_run=False) is True
    assert github.revoked == [leaked]  # the stand-in answers 403 to an authenticated revoke: it was anonymous
    assert issuer.check(SecretValue(leaked)) is False
    github.clear_calls()
    assert issuer.revoke("arn:aws:secretsmanager:us-east-1:1:secret:leaked", dry_run=False) is False
    assert github.mutating_calls() == []
    assert leaked in secrets.registered
    assert_no_secret(caplog_all.text, leaked)


def test_github_revocation_refusal_is_a_clear_error(github: GitHubSecretsStandIn) -> None:
    leaked = github.add_leaked_token()
    # github.com refuses an authenticated revocation (403): the error says so, without the token
    issuer = make_issuer("github", Secrets(admin=github.token).settings(github.base_url, authenticated=True))
    with pytest.raises(VendorError, match=r"github: POST /credentials/revoke answered 403") as refused:
        issuer.revoke_value(SecretValue(leaked), dry_run=False)  # type: ignore[attr-defined]
    assert_no_secret(str(refused.value), leaked, github.token)
    github.fail("/credentials/revoke", 422)
    anonymous = make_issuer("github", Secrets(admin="unused").settings(github.base_url))
    with pytest.raises(VendorError, match="answered 422"):
        anonymous.revoke_value(SecretValue(leaked), dry_run=False)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- generic (today's contract)


@pytest.fixture
def vendor() -> Iterator[VendorStandIn]:
    with serving(VendorStandIn()) as stand_in:
        yield stand_in


def test_generic_issuer_speaks_the_sandbox_vendor_contract(vendor: VendorStandIn) -> None:
    base = vendor.base_url
    options: dict[str, Any] = {
        "mint_url": f"{base}/v1/keys",
        "check_url": f"{base}/v1/check",
        "revoke_url": f"{base}/v1/keys/{{key_id}}/revoke",
    }
    issuer = make_issuer("generic", Secrets(admin=vendor.admin_token).settings(None, **options))
    first = issuer.mint("ci", "idem-1")
    again = issuer.mint("ci", "idem-1")  # the vendor honours Idempotency-Key: the same key
    assert first == again and issuer.check(first.value)
    vendor.calls.clear()
    assert issuer.revoke(first.key_id, dry_run=True) is True and vendor.calls == []
    assert issuer.revoke(first.key_id, dry_run=False) is True
    assert issuer.check(first.value) is False
    assert issuer.revoke("key_unknown", dry_run=False) is False  # 404: no such key
    with pytest.raises(NotSupported):
        issuer.usage(first.key_id, datetime.now(UTC), datetime.now(UTC))
    wrong = make_issuer("generic", Secrets(admin="not-the-admin-token").settings(None, **options))
    with pytest.raises(VendorError, match=r"vendor: POST /v1/keys answered 401") as refused:
        wrong.mint("ci", "idem-2")
    assert_no_secret(str(refused.value), "not-the-admin-token")
    manual = make_issuer("generic", Secrets(admin="x").settings(None))
    with pytest.raises(ManualStepRequired):
        manual.mint("ci", "idem-3")


def test_a_dry_run_client_sends_nothing_and_revokes_are_reported_as_would() -> None:
    """With the run's read-only client (a dry-run) even reads are refused: revokes say they would act."""
    secrets = Secrets(admin="token-unused-in-dry-run", leaked="ghp_" + "x" * 36)
    for kind, options in (
        ("braintrust", {}),
        ("openai", {"project_id": "proj_x"}),
        ("anthropic", {}),
        ("github", {}),
    ):
        issuer = make_issuer(kind, secrets.settings("https://vendor.invalid", read_only=True, **options))
        assert issuer.revoke("leaked" if kind == "github" else "key_1", dry_run=True) is True


def test_every_issuer_kind_lists_its_scopes() -> None:
    for kind in ISSUER_KINDS:
        cls = issuer_class(kind)
        assert cls.kind == kind and cls.scopes and all(isinstance(s, str) and s for s in cls.scopes)
    assert issuer_class("braintrust", {"key_type": "service_token"}).can_mint is True
    with pytest.raises(ValueError, match="unknown issuer kind"):
        issuer_class("stripe")


# ---------------------------------------------------------------- any answer at all


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
_SHAPED = st.fixed_dictionaries(
    {
        "data": st.lists(
            st.dictionaries(st.sampled_from(["id", "name", "status", "created_at", "last_used_at"]), _JSON), max_size=3
        )
    },
    optional={"has_more": _JSON, "last_id": _JSON, "objects": _JSON},
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=_JSON | _SHAPED)
def test_any_answer_to_a_listing_is_keys_or_a_vendor_error(
    openai: OpenAIStandIn, anthropic: AnthropicStandIn, braintrust: BraintrustStandIn, answer: Any
) -> None:
    """Whatever a vendor answers (JSON of any shape), an adapter gives keys or a VendorError naming the place,
    never another exception, and the error quotes none of the answer's text."""
    issuers = [
        (
            openai,
            "/api_keys",
            make_issuer("openai", Secrets(admin=openai.admin_token).settings(openai.base_url, project_id=openai.project)),
        ),
        (
            anthropic,
            "/api_keys",
            make_issuer("anthropic", Secrets(admin=anthropic.admin_token).settings(anthropic.base_url)),
        ),
        (
            braintrust,
            "/v1/api_key",
            make_issuer("braintrust", Secrets(admin=braintrust.admin_token).settings(braintrust.base_url)),
        ),
    ]
    for stand_in, resource, issuer in issuers:
        stand_in.fail(resource, 200, answer)
        try:
            keys = issuer.list_keys()
        except VendorError as exc:
            assert exc.args[0].split(":")[0] in ("openai", "anthropic", "braintrust")
            echoed = [s for s in _strings(answer) if len(s) >= 8 and s in str(exc)]
            assert echoed == []
        else:
            assert all(isinstance(k.key_id, str) for k in keys)
        finally:
            stand_in.heal()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]  # keys may name a field: values must not show
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
