"""The `stanch` command line. Prefect is imported only by the commands that run or answer flows.

One module per group of commands; each registers its commands on the shared Typer app.
"""

from __future__ import annotations

import importlib
import sys

if sys.argv[1:2] == ["review-logs"]:  # its workers start reading before the commands are imported
    from flows.cli import review_start

    review_start.early(sys.argv[2:])

from flows.cli.common import app, err, escape

# Each module registers its commands on `app`; this order is the order `stanch --help` lists them in.
for _module in (
    "flows.cli.authoring",
    "flows.cli.review",
    "flows.cli.running",
    "flows.cli.approvals",
    "flows.cli.stack",
    "flows.vendors.cli",
    "flows.tabletop.cli",
    "flows.tabletop.report_cli",
    "flows.tabletop.replay_cli",
):
    importlib.import_module(_module)


def main() -> None:
    import os

    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("STANCH_DEBUG"):
            raise
        from integrations.masking import SecretMasker

        err.print(f"[bold red]error:[/] {escape(SecretMasker().mask(f'{type(exc).__name__}: {exc}'))}")
        err.print("[dim](set STANCH_DEBUG=1 to see where it happened)[/]")
        sys.exit(1)
