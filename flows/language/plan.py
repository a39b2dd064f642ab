"""`stanch plan` and `stanch graph`: what a run would do, computed offline (no network, no credentials)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flows.language import expressions
from flows.language.model import Playbook, Step, duration_seconds
from integrations.registry import ActionSpec, get_action


@dataclass
class PlannedStep:
    step: Step
    spec: ActionSpec
    args: dict[str, Any]  # literal values, or the expression text where it depends on the run
    dynamic: set[str] = field(default_factory=set)
    when: str | None = None


def topological(playbook: Playbook) -> list[Step]:
    """Steps in an order where each comes after what it needs (stable: file order among equals)."""
    done: set[str] = set()
    ordered: list[Step] = []
    remaining = list(playbook.steps)
    while remaining:
        for step in remaining:
            if all(n in done for n in step.needs):
                ordered.append(step)
                done.add(step.id)
                remaining.remove(step)
                break
        else:  # a cycle; validation reports it, the plan lists the rest in file order
            ordered.extend(remaining)
            break
    return ordered


def _static_context(inputs: dict[str, Any], alert: dict[str, Any] | None, launched_by: str) -> dict[str, Any]:
    return {
        "inputs": inputs,
        "alert": alert or {},
        "run": {
            "id": "<run id>",
            "playbook": "",
            "incident_id": "<incident id>",
            "mode": "live",
            "launched_by": launched_by,
            "launcher_verified": False,
            "trigger": "manual",
            "sandbox": False,
            "dry_run": False,
        },
    }


def _resolve(value: Any, context: dict[str, Any]) -> tuple[Any, bool]:
    """(value, dynamic): expressions that need steps or items stay as text."""
    if isinstance(value, str) and expressions.has_expression(value):
        parsed = expressions.parse(value)
        if any(ref[0] in ("steps", "item", "index") for ref in parsed.references):
            return value.strip(), True
        try:
            return expressions.evaluate_string(value, context), False
        except expressions.ExpressionError:
            return value.strip(), True
    if isinstance(value, dict):
        out, dyn = {}, False
        for key, child in value.items():
            out[key], d = _resolve(child, context)
            dyn = dyn or d
        return out, dyn
    if isinstance(value, list):
        items = [_resolve(child, context) for child in value]
        return [i[0] for i in items], any(i[1] for i in items)
    return value, False


def build_plan(
    playbook: Playbook, inputs: dict[str, Any], alert: dict[str, Any] | None = None, launched_by: str = "you"
) -> list[PlannedStep]:
    context = _static_context(inputs, alert, launched_by)
    context["run"]["playbook"] = playbook.metadata.name
    planned = []
    for step in topological(playbook):
        spec = get_action(step.uses)
        args: dict[str, Any] = {}
        dynamic: set[str] = set()
        for name, value in step.with_.items():
            args[name], is_dynamic = _resolve(value, context)
            if is_dynamic:
                dynamic.add(name)
        when = None
        if step.when:
            resolved, is_dynamic = _resolve(step.when, context)
            when = str(resolved) if is_dynamic else f"{step.when.strip()} -> {expressions.truthy(resolved)}"
        planned.append(PlannedStep(step, spec, args, dynamic, when))
    return planned


def iam_policy(planned: list[PlannedStep]) -> dict[str, Any]:
    """The least-privilege IAM policy a run needs, from the actions' declared permissions."""
    by_resource: dict[str, set[str]] = {}
    for item in planned:
        for permission in item.spec.permissions:
            # AWS permissions only: Slack scopes are not IAM; other services' actions (a vendor breach's stores in
            # Secrets Manager or SSM) declare theirs on AWS resources or as `*`.
            if item.spec.service != "aws" and not (
                permission.resource.startswith("arn:aws:") or (permission.resource == "*" and _is_iam(permission.action))
            ):
                continue
            for resource in _fill(permission.resource, item):
                by_resource.setdefault(resource, set()).add(permission.action)
    # Merge resources that need the same actions into one statement.
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for resource, names in sorted(by_resource.items()):
        by_actions.setdefault(tuple(sorted(names)), []).append(resource)
    statements = []
    for i, (actions, resources) in enumerate(sorted(by_actions.items())):
        statements.append(
            {
                "Sid": f"Stanch{i + 1}",
                "Effect": "Allow",
                "Action": list(actions) if len(actions) > 1 else actions[0],
                "Resource": resources if len(resources) > 1 else resources[0],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _is_iam(action: str) -> bool:
    """An IAM action name (`ssm:DescribeParameters`), not a Slack scope (`chat:write`) or a vendor token scope."""
    service, _, name = action.partition(":")
    return bool(service) and service.islower() and name[:1].isupper()


def _fill(template: str, item: PlannedStep) -> list[str]:
    """Resource ARNs for one permission: literal arguments fill their braces, others become `*`."""
    import re

    names = re.findall(r"\{(\w+)\}", template)
    if not names:
        return [template]
    out = template
    for name in names:
        value = item.args.get(name)
        if name in item.dynamic or value in (None, "") or item.step.for_each is not None:
            value = "*"
        elif str(value).startswith("arn:") and template.startswith("arn:"):
            return [str(value)]  # the argument is the resource's ARN itself
        out = out.replace("{" + name + "}", str(value))
    return [out.replace("**", "*")]


def mermaid(playbook: Playbook) -> str:
    """A Mermaid flowchart: steps, dependencies and gates."""

    def node(step_id: str) -> str:
        return step_id.replace("-", "_")

    lines = ["flowchart TD"]
    for step in playbook.steps:
        label = f"{step.display_name}<br/><small>{step.uses} · {step.phase}</small>"
        if step.for_each:
            label += "<br/><small>for each item</small>"
        lines.append(f'    {node(step.id)}["{_quote(label)}"]')
        target = node(step.id)
        if step.approval:
            gate = f"gate_{node(step.id)}"
            a = step.approval
            text = f"approval: {a.from_} x{a.min_approvals}<br/>timeout {a.timeout} → {a.on_timeout}"
            lines.append(f'    {gate}{{{{"{_quote(text)}"}}}}')
            lines.append(f"    {gate} --> {target}")
            target = gate
        for need in step.needs:
            arrow = f"-- {_quote(step.when.strip())} -->" if step.when else "-->"
            lines.append(f"    {node(need)} {arrow} {target}")
        if not step.needs and step.when:
            lines.append(f'    {node(step.id)}_when(["when {_quote(step.when.strip())}"]) -.-> {target}')
    lines.append("    classDef gate fill:#fde68a,stroke:#b45309")
    gated = [f"gate_{node(s.id)}" for s in playbook.steps if s.approval]
    if gated:
        lines.append(f"    class {','.join(gated)} gate")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return text.replace('"', "#quot;")


def gate_summary(step: Step) -> str:
    a = step.approval
    if a is None:
        return ""
    text = f"{a.min_approvals} approval(s) from {a.from_} within {duration_seconds(a.timeout)}s; on timeout {a.on_timeout}"
    if a.on_timeout == "escalate":
        text += f" to {a.escalate_to}"
    if a.separate_duties:
        text += "; not the launcher"
    return text
