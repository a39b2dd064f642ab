"""Vendor inventories (`vendors/NAME.yaml`): one schema, problems at their place, the CLI table and --discover."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT

from flows.language.validate import check_file, check_text
from flows.vendors.inventory import json_schema, load_inventory, place_matches

GOOD = """\
apiVersion: stanch/v1
kind: Vendor
metadata:
  name: tiny
  title: Tiny vendor
credentials:
  - id: api-key
    issuer: {kind: generic}
    stored_in: {secretsmanager: tiny/api-key}
    consumers:
      - {kind: github_actions, repository: acme/app, secret: TINY_KEY}
"""


def test_committed_schema_matches_the_model() -> None:
    committed = json.loads((ROOT / "vendors" / "schema.json").read_text())
    assert committed == json_schema(), "regenerate it with flows.vendors.inventory.write_schema()"


def test_the_shipped_inventory_validates_and_points_editors_at_the_schema() -> None:
    path = ROOT / "vendors" / "acme-ai.yaml"
    checked = check_file(path)
    assert checked.ok and checked.kind == "Vendor", [str(p) for p in checked.problems]
    assert path.read_text().startswith("# yaml-language-server: $schema=./schema.json")
    vendor, _ = load_inventory("acme-ai")
    assert [c.id for c in vendor.credentials] == ["platform-api-key", "openai-provider-key", "anthropic-provider-key"]
    kinds = {c.kind for cred in vendor.credentials for c in cred.consumers}
    assert {"github_actions", "kubernetes", "secretsmanager", "braintrust_ai_secret"} <= kinds
    # the tabletop's larger inventory: twelve places, GitLab and SSM among them, two keys made by hand
    exercise = ROOT / "vendors" / "acme-ai-exercise.yaml"
    assert check_file(exercise).ok, [str(p) for p in check_file(exercise).problems]
    bigger, _ = load_inventory("acme-ai-exercise")
    assert sum(len(c.consumers) for c in bigger.credentials) == 12
    assert {"gitlab", "ssm"} <= {c.kind for cred in bigger.credentials for c in cred.consumers}


def test_a_good_inventory_has_no_problems() -> None:
    assert check_text(GOOD, "tiny.yaml").problems == []
    # a credential's current value may live in SSM Parameter Store (a SecureString) as well as in Secrets Manager
    in_ssm = GOOD.replace("{secretsmanager: tiny/api-key}", "{ssm: /tiny/api-key, region: eu-west-1}")
    assert check_text(in_ssm, "tiny.yaml").problems == []


@pytest.mark.parametrize(
    ("old", "new", "line", "col", "words"),
    [
        # schema: an unknown field, named with what is allowed
        ("    stored_in:", "    stord_in: {secretsmanager: x}\n    stored_in:", 9, 5, "unknown field 'stord_in'"),
        # schema: a missing field, placed at its parent
        ("    issuer: {kind: generic}\n", "", 7, 5, "missing required field 'issuer'"),
        # schema: an unknown consumer kind
        ("{kind: github_actions,", "{kind: jenkins,", 11, 10, "unknown consumer kind: use one of github_actions"),
        # schema: a consumer that names both scopes
        ("repository: acme/app,", "repository: acme/app, org: acme,", 11, 9, "exactly one of `repository"),
        # schema: a store that names neither place
        ("{secretsmanager: tiny/api-key}", "{region: us-east-1}", 9, 5, "name exactly one of `secretsmanager"),
        # schema: an issuer URL over plain http to somewhere else
        ("{kind: generic}", "{kind: generic, base_url: 'http://vendor.example'}", 8, 29, "not an https:// URL"),
        # meaning: an issuer with an admin API but no admin token
        ("{kind: generic}", "{kind: openai}", 8, 5, "issuer openai needs `admin_token`"),
        # meaning: an SSM parameter that is also listed as a consumer of the credential it stores
        (
            "{secretsmanager: tiny/api-key}\n    consumers:\n"
            "      - {kind: github_actions, repository: acme/app, secret: TINY_KEY}",
            "{ssm: /tiny/api-key}\n    consumers:\n      - {kind: ssm, name: /tiny/api-key}",
            11,
            9,
            "the credential's own store",
        ),
        # meaning: a place that looks like a CIDR but is not one
        ("    consumers:", "    known_places: [10.0.0.0/33]\n    consumers:", 10, 20, "not a CIDR"),
        # meaning: a consumer listed twice
        (
            "secret: TINY_KEY}\n",
            "secret: TINY_KEY}\n      - {kind: github_actions, repository: acme/app, secret: TINY_KEY}\n",
            12,
            9,
            "listed twice",
        ),
        # loader: a duplicate key
        ("  title: Tiny vendor\n", "  title: Tiny vendor\n  title: Again\n", 6, 3, "duplicate key 'title'"),
    ],
)
def test_bad_inventory_names_file_line_col_and_the_fix(old: str, new: str, line: int, col: int, words: str) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    problems = check_text(text, "vendors/tiny.yaml").problems
    assert problems, "the broken inventory passed"
    shown = [str(p) for p in problems]
    assert any(p.startswith(f"vendors/tiny.yaml:{line}:{col}: ") and words in p for p in shown), shown


def test_an_inventory_in_vendors_is_named_after_its_file(tmp_path: Any) -> None:
    folder = tmp_path / "vendors"
    folder.mkdir()
    (folder / "other.yaml").write_text(GOOD)
    problems = [str(p) for p in check_file(folder / "other.yaml").problems]
    assert len(problems) == 1 and ":4:3: the inventory of 'tiny' must be vendors/tiny.yaml" in problems[0], problems


def test_places_match_cidrs_addresses_and_names() -> None:
    known = ["203.0.113.0/24", "2001:db8::/32", "ci-runners"]
    assert place_matches("203.0.113.9", known) and place_matches("2001:db8::1", known)
    assert place_matches("ci-runners", known)
    assert not place_matches("198.51.100.7", known) and not place_matches(None, known)


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    import flows.cli  # noqa: F401 - registers every command
    from flows.cli.common import app, out

    # The shared console was made by whichever test printed first, with that moment's width: widen it for tables.
    out.file  # noqa: B018 - makes the console
    console = out._console
    width = console.width
    console.width = 200
    try:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    finally:
        console.width = width


def test_inventory_prints_every_credential_and_consumer_as_a_table() -> None:
    result = _cli("vendor", "inventory", "acme-ai")
    assert result.exit_code == 0, result.output
    for words in (
        "platform-api-key",
        "anthropic (by hand: dana)",
        "secretsmanager:acme-ai/openai-provider-key",
        "github:acme/evals env production secret OPENAI_API_KEY",
        "kubernetes:batch/openai[api-key] restarting batch-worker",
        "braintrust_ai_secret:ANTHROPIC_API_KEY",
        "203.0.113.0/24",
    ):
        assert words in result.output, (words, result.output)


def test_an_unknown_vendor_says_which_file_to_write() -> None:
    result = _cli("vendor", "inventory", "no-such-vendor")
    assert result.exit_code == 1
    assert "write vendors/no-such-vendor.yaml" in result.output


@pytest.fixture
def braintrust(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from flows.sandbox.vendors.braintrust_api import BraintrustStandIn

    stand_in = BraintrustStandIn().start()
    monkeypatch.setenv("STANCH_VENDOR_URL_ACME_AI", stand_in.base_url)
    sandbox.client("secretsmanager").create_secret(Name="acme-ai/admin/platform", SecretString=stand_in.admin_token)
    yield stand_in
    stand_in.stop()


def test_discover_adds_tagged_secrets_and_the_vendors_stored_provider_keys(sandbox: Any, braintrust: Any) -> None:
    sm = sandbox.client("secretsmanager")
    listed = "sk-sandbox-openai-" + "a" * 24
    braintrust.add_ai_secret("OPENAI_API_KEY", listed, "openai")  # in the inventory
    hidden = "sk-sandbox-gemini-" + "b" * 24
    braintrust.add_ai_secret("GEMINI_API_KEY", hidden, "gemini")  # not: found
    sm.create_secret(Name="acme-ai/platform-api-key", SecretString="x" * 20, Tags=[{"Key": "vendor", "Value": "acme-ai"}])
    sm.create_secret(Name="teams/forgotten-acme", SecretString="y" * 20, Tags=[{"Key": "vendor", "Value": "acme-ai"}])
    sm.create_secret(Name="teams/other-vendor", SecretString="z" * 20, Tags=[{"Key": "vendor", "Value": "other"}])
    result = _cli("vendor", "inventory", "acme-ai", "--discover")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "discovered" in out and "teams/forgotten-acme" in out and "GEMINI_API_KEY" in out
    assert "teams/other-vendor" not in out, "another vendor's secret is not this vendor's"
    assert out.count("tagged vendor=acme-ai") == 1 + 3, "the inventory's own store is not found again"  # + seeded keys
    assert "OPENAI_API_KEY (updated" not in out, "a stored key the inventory lists is not found again"
    assert "Added" in out and "stored_in:" in out, "what was added is shown, ready to paste"
    assert listed not in out and hidden not in out and braintrust.admin_token not in out
    assert [c.method for c in braintrust.mutating_calls()] == [], "discovery only reads"
