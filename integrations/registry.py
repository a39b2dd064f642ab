"""The action registry: a decorator that records facts about a typed function, and nothing else.

Importing this module is cheap (no boto3, no slack_sdk, no Prefect): `stanch validate` loads it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

ACTION_MODULES = (
    "integrations.core",
    "integrations.aws.iam",
    "integrations.aws.ec2",
    "integrations.aws.secrets",
    "integrations.aws.cloudtrail",
    "integrations.aws.s3",
    "integrations.aws.awslambda",
    "integrations.aws.rds",
    "integrations.aws.logging",
    "integrations.aws.rolesanywhere",
    "integrations.aws.guardduty",
    "integrations.aws.config_service",
    "integrations.slack",
    "integrations.vendors.actions",
)


@dataclass(frozen=True)
class Permission:
    """An IAM action (or a Slack scope) an action needs, and the resource it applies to.

    `resource` may name arguments in braces (`arn:aws:iam::*:user/{user_name}`); a policy built from
    a playbook fills them from literal arguments and uses `*` where the value is known only at run time.
    """

    action: str
    resource: str = "*"


class ActionResult(BaseModel):
    """Base of every action's result: small, typed, JSON-able, never a secret value."""

    # Built on first use: `stanch validate` imports every action but uses the result models of none.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Change(ActionResult):
    """Result of a mutating action. `changed` is what it did (or, in dry-run, would do)."""

    changed: bool = Field(description="The action changed something (or would, in dry-run).")
    dry_run: bool = False
    detail: str = Field("", description="What changed, or would change, in one line.")


@dataclass(frozen=True)
class ActionSpec:
    key: str
    func: Callable[..., ActionResult]
    description: str
    mutates: bool
    permissions: tuple[Permission, ...]
    calls: tuple[str, ...]
    secret_args: frozenset[str]
    secret_results: frozenset[str]
    arg_fields: dict[str, tuple[Any, Any]]
    result_model: type[ActionResult]

    @functools.cached_property
    def args_model(self) -> type[BaseModel]:
        """The arguments as a pydantic model (extra="forbid"), built from the signature on first use."""
        model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            "Args_" + self.key.replace(".", "_"),
            __config__=ConfigDict(extra="forbid", strict=False),
            **self.arg_fields,
        )
        return model

    @property
    def service(self) -> str:
        return self.key.split(".", 1)[0]

    def validate_args(self, args: dict[str, Any]) -> BaseModel:
        return self.args_model.model_validate(args)

    def outputs(self, result: ActionResult) -> dict[str, Any]:
        """The result as plain data for expressions and records, without secret fields."""
        return result.model_dump(mode="json", exclude=set(self.secret_results))


_REGISTRY: dict[str, ActionSpec] = {}
F = TypeVar("F", bound=Callable[..., Any])


def action(
    key: str,
    *,
    mutates: bool,
    permissions: Sequence[str | Permission],
    calls: Sequence[str] = (),
    secret_args: Sequence[str] = (),
    secret_results: Sequence[str] = (),
) -> Callable[[F], F]:
    """Register a typed function as the action `key`. The function itself is returned unchanged."""

    def register(func: F) -> F:
        if key in _REGISTRY:
            raise ValueError(f"action {key!r} is registered twice")
        hints = typing.get_type_hints(func, include_extras=True)
        result_model = hints.get("return")
        if not (isinstance(result_model, type) and issubclass(result_model, ActionResult)):
            raise TypeError(f"action {key}: the return annotation must be an ActionResult model")
        if mutates and not issubclass(result_model, Change):
            raise TypeError(f"action {key}: a mutating action returns a Change (with `changed`)")
        fields: dict[str, Any] = {}
        params = list(inspect.signature(func).parameters.values())
        if not params or params[0].name != "ctx":
            raise TypeError(f"action {key}: the first parameter must be `ctx` (the ActionContext)")
        for param in params[1:]:
            if param.name not in hints:
                raise TypeError(f"action {key}: argument {param.name!r} has no type annotation")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (hints[param.name], default)
        for name in (*secret_args, *secret_results):
            if name not in fields and name not in result_model.model_fields:
                raise ValueError(f"action {key}: secret field {name!r} is neither an argument nor a result")
        doc = inspect.getdoc(func) or ""
        spec = ActionSpec(
            key=key,
            func=func,
            description=doc.splitlines()[0].strip() if doc else "",
            mutates=mutates,
            permissions=tuple(p if isinstance(p, Permission) else Permission(p) for p in permissions),
            calls=tuple(calls),
            secret_args=frozenset(secret_args),
            secret_results=frozenset(secret_results),
            arg_fields=fields,
            result_model=result_model,
        )
        _REGISTRY[key] = spec
        return func

    return register


def load_actions() -> dict[str, ActionSpec]:
    """Import every action module (idempotent) and return the registry."""
    for module in ACTION_MODULES:
        importlib.import_module(module)
    return _REGISTRY


def get_action(key: str) -> ActionSpec:
    registry = load_actions()
    try:
        return registry[key]
    except KeyError:
        raise KeyError(f"unknown action {key!r}") from None
