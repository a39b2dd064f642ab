"""Answering gates: `stanch approve` and the approval service, `stanch serve`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flows.cli.common import (
    app,
    fail,
    out,
)


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The flow run id.")],
    gate: Annotated[str, typer.Option("--gate", help="The step id the gate guards.")],
    as_: Annotated[str, typer.Option("--as", help="Your approver identity.")],
    approve_: Annotated[bool, typer.Option("--approve", help="Approve the step.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the step.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the decision record.")] = "",
    service: Annotated[
        str | None, typer.Option("--service", help="The approval service (default from the configuration).")
    ] = None,
) -> None:
    """Answer a gate through the approval service, with your token ($STANCH_APPROVER_TOKEN)."""
    import os
    import urllib.error
    import urllib.request

    from flows.config import ConfigError, load_settings

    if approve_ == reject:
        raise fail("say --approve or --reject (one of them)", 2)
    if not reason.strip():
        raise fail("--reason is required: it goes into the decision record", 2)
    token = os.environ.get("STANCH_APPROVER_TOKEN", "")
    if not token:
        raise fail("set STANCH_APPROVER_TOKEN to your approver token (its SHA-256 is in the configuration)", 2)
    try:
        url = (service or load_settings().approvals.service_url).rstrip("/") + "/approve"
    except ConfigError as exc:
        raise fail(str(exc)) from None
    body = json.dumps(
        {"run_id": run_id, "gate": gate, "approver": as_, "decision": "approve" if approve_ else "reject", "reason": reason}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the configured approval service
        url, data=body, method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            result = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
        raise fail(f"the approval service refused: {detail}") from None
    except urllib.error.URLError as exc:
        raise fail(f"cannot reach the approval service at {url}: {exc.reason} (is `stanch serve` running?)") from None
    if not result.get("accepted"):
        raise fail(result.get("message", "the answer was not accepted"))
    out.print(result.get("message", "accepted"))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8480,
) -> None:
    """Run the approval service: Slack interactions, `stanch approve`, and /healthz."""
    from flows.approvals.service import serve as run_service

    run_service(host, port)
