"""`stanch demo --vendor`: the vendor breach end to end in the sandbox, gates answered by a scripted approver.

Acme AI (a Braintrust-like AI platform) is breached. Its inventory (`vendors/acme-ai.yaml`) lists its platform
key and the OpenAI and Anthropic keys stored in its settings, each used from GitHub Actions, Kubernetes and
Secrets Manager. The run mints what it can, the key owner makes the Anthropic key by hand (put into its secret
by the demo, as a person would), every consumer is updated and verified, one (a Deployment whose rollout fails)
keeps its credential's old key alive, and the rest are revoked after one approval.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any, Literal

PLAYBOOK = "vendor-breach-key-rotation"


def run_vendor_demo(
    approver: str = "dana",
    reject: bool = False,
    grace_period: str = "3s",
    console: Any = None,
) -> int:
    """Run the vendor breach in a fresh sandbox and print, per credential, what happened to each consumer and
    whether the old key was revoked. Returns the exit code: 0 when the run ended as expected (Completed; with
    `reject`, Completed with nothing revoked)."""
    from flows.approvals.client import answer_gate
    from flows.cli.common import escape, new_table, out
    from flows.cli.running import Progress, print_summary, quiet_prefect_console
    from flows.engine.launch import run_playbook
    from flows.sandbox import Sandbox
    from flows.sandbox.vendor_env import FAILING_DEPLOYMENT, VENDOR, VendorBreachEnv

    c = console or out
    quiet_prefect_console()
    c.rule("[bold]Stanch demo: a vendor breach (Acme AI), in the sandbox")
    with Sandbox() as box, VendorBreachEnv(box) as env:
        c.print(
            f"Acme AI reports a breach. Its inventory lists {len(env.old)} credentials: "
            f"{', '.join(env.old)}. Consumers: GitHub Actions, Kubernetes, Secrets Manager and Acme AI's own stored "
            f"provider keys. The {FAILING_DEPLOYMENT} Deployment's rollout will fail; Anthropic keys are made by a "
            f"person. Demo approver [bold]{approver}[/] answers every gate.\n"
        )
        progress = Progress(c)

        def observer(kind: str, data: dict[str, Any]) -> None:
            progress(kind, data)
            if kind != "gate_opened" or not progress.run_id:
                return
            run_id, gate = progress.run_id, data["gate"]

            def answer() -> None:
                time.sleep(1.0)
                decision: Literal["approve", "reject"] = "reject" if reject else "approve"
                if gate == "ask-key-owner" and not reject:
                    c.print(f"    [dim]{approver} makes a new Anthropic key in its Console and puts it into the secret[/]")
                    env.person_makes_new_key()
                c.print(f"    [dim]demo approver {approver} answers: {decision}[/]")
                answer_gate(run_id, gate, approver, decision, "demo: done and checked", channel="demo")

            context = contextvars.copy_context()
            threading.Thread(target=context.run, args=(answer,), daemon=True).start()

        summary = run_playbook(
            PLAYBOOK,
            {"vendor": VENDOR, "grace_period": grace_period},
            launched_by="stanch-demo",
            trigger="demo",
            sandbox=True,
            observer=observer,
        )
        print_summary(summary, c)
        report = next((s.outputs for s in summary.steps if s.id == "summarize" and s.outputs), None)
        revoked = 0
        if report:
            table = new_table("credential", "consumer", "what happened", "old key", title="Per credential")
            for cred in report["credentials"]:
                first = True
                for consumer in cred["consumers"] or [{"consumer": "-", "status": "", "detail": ""}]:
                    written = consumer.get("written") or ""
                    happened = (f"{written}, " if written and written != consumer["status"] else "") + consumer["status"]
                    happened += f": {consumer['detail']}" if consumer["status"] == "failed" else ""
                    table.add_row(
                        escape(cred["credential"]) if first else "",
                        escape(consumer["consumer"]),
                        escape(happened),
                        escape(cred["old_key"]) if first else "",
                    )
                    first = False
                revoked += cred["old_key"].startswith("revoked")
            c.print(table)
        if env.openai.works(env.old["openai-provider-key"]):
            c.print("The OpenAI key's old value still works: its failed consumer keeps it alive until fixed and re-run.")
        if box.slack is not None:
            c.print("\nSlack messages the playbook posted (sandbox #incident-response):")
            for message in box.slack.messages("incident-response"):
                c.print(f"  • {escape(message['text'])}")
    if reject:
        return 0 if revoked == 0 else 1
    return 0 if summary.state == "Completed" and revoked > 0 else 1
