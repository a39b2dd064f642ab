"""Lambda actions: take back a permission statement an attacker added to a function's resource policy."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field

from integrations.aws import error_code
from integrations.aws.iam import Reverted, converge
from integrations.context import ActionContext
from integrations.registry import action


def _statement_ids(client: Any, function_name: str) -> set[str]:
    try:
        policy = json.loads(client.get_policy(FunctionName=function_name)["Policy"])
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":  # no policy, or no function: nothing is granted
            return set()
        raise
    raw = policy.get("Statement", [])
    return {str(s.get("Sid")) for s in (raw if isinstance(raw, list) else [raw]) if isinstance(s, dict)}


@action(
    "aws.awslambda.remove_permission",
    mutates=True,
    permissions=["lambda:GetPolicy", "lambda:RemovePermission"],
    calls=["lambda:GetPolicy", "lambda:RemovePermission"],
)
def remove_permission(
    ctx: ActionContext,
    function_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_:.-]{1,140}$", description="The function's name or ARN.")],
    statement_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="The statement's Sid.")],
    region: Annotated[str | None, Field(description="The function's region; the configured one when omitted.")] = None,
) -> Reverted:
    """Remove one statement from a function's resource policy (the permission an attacker added).

    A lost answer: the policy is read again; the statement gone means done.
    """
    client = ctx.aws.client("lambda", region)
    return converge(
        ctx,
        f"{function_name}:{statement_id}",
        lambda: statement_id in _statement_ids(client, function_name),
        lambda: client.remove_permission(FunctionName=function_name, StatementId=statement_id),
        f"remove permission {statement_id} from function {function_name}",
        gone_codes=("ResourceNotFoundException",),
    )


def _can_run(client: Any, function_name: str) -> bool:
    """Whether the function may run: its reserved concurrency is not 0 (a deleted one runs nothing: `converge`'s
    gone codes say so)."""
    found = client.get_function_concurrency(FunctionName=function_name)
    return found.get("ReservedConcurrentExecutions") != 0


@action(
    "aws.awslambda.disable_function",
    mutates=True,
    permissions=["lambda:GetFunctionConcurrency", "lambda:PutFunctionConcurrency"],
    calls=["lambda:GetFunctionConcurrency", "lambda:PutFunctionConcurrency"],
)
def disable_function(
    ctx: ActionContext,
    function_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_:.-]{1,140}$", description="The function's name or ARN.")],
    region: Annotated[str | None, Field(description="The function's region; the configured one when omitted.")] = None,
) -> Reverted:
    """Stop a function the attacker created from running: reserved concurrency 0 (code and logs are kept).

    Reversible: deleting the concurrency setting lets it run again. Deleting the function is left to a person
    once it has been examined. A lost answer: the concurrency is read again; 0 means done.
    """
    client = ctx.aws.client("lambda", region)
    return converge(
        ctx,
        function_name,
        lambda: _can_run(client, function_name),
        lambda: client.put_function_concurrency(FunctionName=function_name, ReservedConcurrentExecutions=0),
        f"set the reserved concurrency of function {function_name} to 0",
        gone_codes=("ResourceNotFoundException",),
    )
