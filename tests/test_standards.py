"""Standards every part keeps: one schema, declared permissions, dry-run and idempotency for mutations."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from conftest import PLAYBOOKS

from flows.language.model import json_schema
from integrations.registry import Change, load_actions


def test_committed_schema_matches_the_models() -> None:
    committed = json.loads((PLAYBOOKS / "schema.json").read_text())
    assert committed == json_schema(), "run `make schema` and commit playbooks/schema.json"


def test_every_playbook_points_editors_at_the_schema() -> None:
    for path in PLAYBOOKS.glob("*.yaml"):
        assert path.read_text().startswith("# yaml-language-server: $schema=./schema.json"), path


def test_every_action_declares_description_and_permissions() -> None:
    registry = load_actions()
    shipped = {
        "core.log",
        "core.fail",
        "core.assert",
        "aws.iam.list_access_keys",
        "aws.iam.deactivate_access_key",
        "slack.post_message",
    }
    assert shipped <= set(registry)
    for key, spec in registry.items():
        assert spec.description, f"{key} has no docstring"
        assert isinstance(spec.permissions, tuple), key
        if spec.service in ("aws", "slack"):
            assert spec.permissions, f"{key} declares no permissions"
            assert spec.calls, f"{key} declares no API calls"
        for permission in spec.permissions:
            if spec.service == "aws":
                service, _, name = permission.action.partition(":")
                assert service and name[:1].isupper(), f"{key}: {permission.action} is not an IAM action"


def test_every_mutating_action_returns_a_change_and_has_the_four_step_test() -> None:
    """A test named test_<action function>..._four_steps... exists and calls four_steps()."""
    tests: dict[str, str] = {}
    for path in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and "four_steps" in node.name:
                tests[node.name] = ast.unparse(node)
    for key, spec in load_actions().items():
        if spec.mutates:
            assert issubclass(spec.result_model, Change), key
            name = spec.func.__name__.rstrip("_")
            covering = [t for t, body in tests.items() if name in t and "four_steps(" in body]
            assert covering, f"{key} has no dry-run/apply/idempotency test (test_{name}_four_steps)"


def test_argument_models_forbid_unknown_arguments() -> None:
    for key, spec in load_actions().items():
        assert spec.args_model.model_config.get("extra") == "forbid", key
