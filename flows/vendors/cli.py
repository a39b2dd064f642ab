"""`stanch vendor inventory NAME [--discover]`: a vendor's credentials and who uses them, as a table."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flows.cli.common import app, err, escape, fail, new_table, out

vendor_app = typer.Typer(
    name="vendor",
    help="Vendor breaches: the inventory of what we gave a vendor and who uses it.",
    no_args_is_help=True,
)
app.add_typer(vendor_app, name="vendor")


@vendor_app.command("inventory")
def inventory(
    name: Annotated[str, typer.Argument(help="The vendor's name (vendors/NAME.yaml) or an inventory file.")],
    discover: Annotated[
        bool,
        typer.Option(
            "--discover",
            help="Also find secrets tagged vendor=NAME and the provider keys the vendor stores, and show what is added.",
        ),
    ] = False,
) -> None:
    """Print a vendor's inventory: each credential, its issuer, where its value lives and its consumers."""
    from flows.vendors.inventory import InventoryError, load_inventory

    try:
        vendor, path = load_inventory(name)
    except InventoryError as exc:
        raise fail(str(exc)) from None
    table = new_table(title=f"{vendor.metadata.title} ({path.name})", show_lines=True)
    for column in ("credential", "issuer", "stored in", "consumers", "known places"):
        table.add_column(column, overflow="fold")
    for cred in vendor.credentials:
        issuer = cred.issuer.kind + (f" (by hand: {cred.issuer.manual_owner})" if cred.issuer.manual_owner else "")
        consumers = "\n".join(c.describe() for c in cred.consumers) or "-"
        places = "\n".join(vendor.places_of(cred)) or "-"
        table.add_row(escape(cred.id), escape(issuer), escape(cred.stored_in.describe()), escape(consumers), escape(places))
    if not discover:
        out.print(table)
        return
    found = _discover(vendor)
    for item in found:
        table.add_row(
            f"[green]+ {escape(str(item.suggestion['id']))}[/]",
            escape(str(item.suggestion["issuer"]["kind"])),
            escape(item.name if item.source == "secretsmanager tag" else "?"),
            escape(item.name if item.source != "secretsmanager tag" else "-"),
            f"[green]discovered[/]: {escape(item.detail)}",
        )
    out.print(table)
    if not found:
        out.print("Discovered nothing the inventory does not list.")
        return
    import yaml

    out.print(f"\n[bold]Added {len(found)} discovered item(s)[/] (from {', '.join(sorted({f.source for f in found}))}).")
    out.print(f"To keep them, add to `credentials:` in {path.name} and complete them:")
    out.print(escape(yaml.safe_dump([f.suggestion for f in found], sort_keys=False)), end="")


def _discover(vendor: Any) -> list[Any]:
    from flows.config import load_settings
    from flows.vendors import discover
    from integrations.context import AwsClients, HttpClient
    from integrations.masking import SecretMasker
    from integrations.vendors.base import SecretValue

    settings = load_settings()
    clients = AwsClients.from_settings(settings.aws, "vendor-discover", read_only=True)
    masker = SecretMasker()
    found = []
    try:
        found += discover.tagged_secrets(vendor, clients.client("secretsmanager"))
    except Exception as exc:
        err.print(f"[yellow]note:[/] could not list tagged secrets: {escape(masker.mask(str(exc)))}")

    def read_secret(ref: str) -> SecretValue:
        from integrations.vendors.actions import parse_value

        text = str(clients.client("secretsmanager").get_secret_value(SecretId=ref)["SecretString"])
        masker.register(text)
        return SecretValue(parse_value(text)[0])

    try:
        found += discover.stored_provider_keys(vendor, read_secret, HttpClient())
    except Exception as exc:
        err.print(f"[yellow]note:[/] could not list the vendor's stored provider keys: {escape(masker.mask(str(exc)))}")
    return found
