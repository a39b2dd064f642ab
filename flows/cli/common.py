"""What every `stanch` command shares: the Typer app, consoles, errors and reading playbooks, inputs and alerts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

app = typer.Typer(
    name="stanch",
    help="Breach-response playbooks: validate, plan, run (with approval gates) and answer gates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _LazyConsole:
    """rich's Console, made on first use: importing rich costs ~45 ms that `stanch validate` never needs."""

    def __init__(self, **options: Any):
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


out: Any = _LazyConsole(highlight=False, emoji=False, soft_wrap=True)
err: Any = _LazyConsole(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def escape(text: str) -> str:
    """rich markup escaped (rich imported on first use)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def new_table(*headers: str, **options: Any) -> Table:
    from rich.table import Table

    return Table(*headers, **options)


InputOpt = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="An input as name=value (repeatable).", show_default=False),
]
AlertOpt = Annotated[
    Path | None, typer.Option("--alert", help="An alert JSON file (AWS Health, GuardDuty, GitHub, webhook).")
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given, and every *.yaml/*.yml under a directory (special files too: the loader refuses them by type)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


def load_playbook_arg(playbook: str) -> Any:
    from flows.engine.launch import LaunchError, load_named

    try:
        return load_named(playbook)
    except LaunchError as exc:
        raise fail(str(exc)) from None


def parse_inputs(playbook: Any, pairs: list[str] | None) -> dict[str, Any]:
    from flows.engine.launch import coerce_input

    values: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise fail(f"--input {pair!r}: write name=value")
        values[name.strip()] = coerce_input(playbook, name.strip(), text)
    return values


def read_alert(path: Path | None) -> dict[str, Any] | None:
    """The alert in a JSON file, checked against its source's format; a clear error naming the field otherwise."""
    if path is None:
        return None
    from flows.alerts import AlertError, load_alert_file, normalize

    try:
        data = load_alert_file(path)
        normalize(data)  # a malformed known alert fails here, naming its field, before anything starts
    except AlertError as exc:
        raise fail(f"--alert {path}: {exc}") from None
    return data
