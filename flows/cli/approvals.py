"""Approvals and trust: `stanch approve`, `stanch serve`, `stanch keys init`, `stanch audit`, `stanch launch`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import app, err, escape, fail, load_playbook_arg, out, parse_inputs

keys_app = typer.Typer(help="The approval service's signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

VERIFIED = {True: "verified by the approval service", False: "an unverified claim"}
ServiceOpt = Annotated[str | None, typer.Option("--service", help="The approval service (default from the configuration).")]


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The flow run id.")],
    gate: Annotated[str, typer.Option("--gate", help="The step id the gate guards.")],
    as_: Annotated[str, typer.Option("--as", help="Your approver identity.")],
    approve_: Annotated[bool, typer.Option("--approve", help="Approve the step.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the step.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the decision record.")] = "",
    service: ServiceOpt = None,
) -> None:
    """Answer a gate through the approval service, with your token ($STANCH_APPROVER_TOKEN)."""
    from flows.approvals.client import ApprovalError, call_service
    from flows.config import ConfigError

    if approve_ == reject:
        raise fail("say --approve or --reject (one of them)", 2)
    if not reason.strip():
        raise fail("--reason is required: it goes into the decision record", 2)
    token = os.environ.get("STANCH_APPROVER_TOKEN", "")
    if not token:
        raise fail("set STANCH_APPROVER_TOKEN to your approver token (its SHA-256 is in the configuration)", 2)
    body = {
        "run_id": run_id,
        "gate": gate,
        "approver": as_,
        "decision": "approve" if approve_ else "reject",
        "reason": reason,
    }
    try:
        result = call_service("/approve", body, token, service)
    except (ApprovalError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if not result.get("accepted"):
        raise fail(result.get("message", "the answer was not accepted"))
    out.print(result.get("message", "accepted"))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8480,
) -> None:
    """Run the approval service: Slack interactions, `stanch approve`, verified launches, and /healthz."""
    from flows.approvals.service import serve as run_service

    run_service(host, port)


@keys_app.command("init")
def keys_init(
    dir_: Annotated[Path, typer.Option("--dir", help="Where to write the pair.")] = Path(".stanch/keys"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing pair.")] = False,
) -> None:
    """Make the approval service's Ed25519 key pair: the private key for `stanch serve` only, the public key for
    every runner, worker and deployment."""
    from flows.approvals.signing import generate, key_id, load_public

    private_path, public_path = dir_ / "approval.key", dir_ / "approval.pub"
    if not force and (private_path.exists() or public_path.exists()):
        raise fail(f"{dir_} already holds a pair; pass --force to replace it (keep the old public key for audits)")
    private, public = generate()
    dir_.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private + "\n")
    public_path.write_text(public + "\n")
    out.print(f"Wrote {private_path} (private: only the approval service may read it) and {public_path} (public).")
    out.print(f"Key id {key_id(load_public(public))}. Reference them like every other secret, for example:")
    out.print(f'  stanch serve:  export STANCH_APPROVAL_PRIVATE_KEY="$(cat {private_path})"')
    out.print(f'  every runner:  export STANCH_APPROVAL_PUBLIC_KEY="$(cat {public_path})"')
    out.print("or store them in Secrets Manager: approvals.private_key: {secretsmanager_arn: ...}.")
    out.print("To change keys: new pair; the old public key as approvals.previous_public_key during the change-over, then")
    out.print("in approvals.retired_public_keys, so `stanch audit` still verifies the decisions it signed.")


@app.command()
def audit(
    run_id: Annotated[str, typer.Argument(help="The flow run id (or an incident id that names one run).")],
) -> None:
    """Re-verify every recorded gate decision of a run against the service's public keys; exits 1 when any fails."""
    from flows.approvals.audit import audit_run
    from flows.config import ConfigError
    from flows.engine.launch import LaunchError

    try:
        report = audit_run(run_id)
    except (LaunchError, ConfigError) as exc:
        raise fail(str(exc)) from None
    out.print(
        f"run {report.run_id} ({escape(report.playbook)}, incident {escape(report.incident_id)}), launched by "
        f"{escape(report.launched_by)} ({VERIFIED[report.launcher_verified]})"
    )
    for row in report.rows:  # one line each: readable in a terminal of any width, and by scripts
        verdict = "accepted" if row.accepted == "yes" else "refused"
        out.print(
            f"  {row.at} UTC  gate {escape(row.gate)}: {row.decision} by {escape(row.approver)} via {row.channel}, "
            f"{verdict}, reason {escape(repr(row.reason))}: {escape(row.check)}",
            soft_wrap=True,
        )
    if report.failures:
        err.print(f"[bold red]{report.failures} decision(s) do not verify[/]: the records were altered or forged")
        raise typer.Exit(1)
    out.print(f"every one of {len(report.rows)} decision(s) verifies")


@app.command()
def launch(
    playbook: Annotated[str, typer.Argument(help="A playbook name (a deployment `<name>/default` runs it).")],
    input: Annotated[list[str] | None, typer.Option("--input", "-i", help="An input as name=value (repeatable).")] = None,
    as_: Annotated[str | None, typer.Option("--as", help="Your approver identity (with STANCH_APPROVER_TOKEN).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report changes without making them.")] = False,
    incident_id: Annotated[str | None, typer.Option("--incident-id", help="Defaults to a new id.")] = None,
    service: ServiceOpt = None,
) -> None:
    """Start a playbook as a deployment run on the Prefect server (a worker runs it). With STANCH_APPROVER_TOKEN the
    approval service vouches for you as the launcher; without it, the launcher is only a claim."""
    from prefect.deployments import run_deployment

    from flows.approvals.client import ApprovalError
    from flows.engine.flow import new_incident_id
    from flows.engine.launch import LaunchError, prepare

    pb = load_playbook_arg(playbook)
    try:
        pb, values, _ = prepare(pb, parse_inputs(pb, input), None)
    except LaunchError as exc:
        raise fail(str(exc)) from None
    incident = incident_id or new_incident_id()
    try:
        launched_by, proof = verified_launcher(pb.metadata.name, incident, as_, service)
    except ApprovalError as exc:
        raise fail(str(exc)) from None
    parameters: dict[str, Any] = {
        "inputs": values,
        "mode": "dry-run" if dry_run else "live",
        "incident_id": incident,
        "trigger": "launch",
        "launched_by": launched_by,
        "launch_proof": proof,
    }
    flow_run: Any = run_deployment(f"{pb.metadata.name}/default", parameters=parameters, timeout=0)
    out.print(f"run {flow_run.id} ({incident}) scheduled; launched by {launched_by} ({VERIFIED[proof is not None]})")


def verified_launcher(playbook: str, incident: str, as_: str | None, service: str | None = None) -> tuple[str, str | None]:
    """(launcher, the service's proof or None): with STANCH_APPROVER_TOKEN the service vouches for the name."""
    from flows.approvals.client import launch_proof
    from flows.engine.launch import current_user

    name = as_ or current_user()
    token = os.environ.get("STANCH_APPROVER_TOKEN", "")
    if not token:
        return name, None
    return name, launch_proof(playbook, incident, name, token, service)
