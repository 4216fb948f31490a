"""The shared parts of the CLI: the typer app, consoles, common options and helpers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from breakglass.flows.errors import BreakglassError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Incident-response playbooks for crypto protocols, run on Prefect.")
server_app = typer.Typer(no_args_is_help=True, help="The local Prefect server under $BREAKGLASS_HOME.")
app.add_typer(server_app, name="server")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

InventoryOpt = Annotated[Path | None, typer.Option("--inventory", "-i", help="inventory file", dir_okay=False)]
InputOpt = Annotated[list[str] | None, typer.Option("--input", help="NAME=VALUE, repeatable")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print exactly one JSON document on stdout")]
AsOpt = Annotated[str | None, typer.Option("--as", help="your roster name (who starts the run, or who votes)")]
IncidentOpt = Annotated[str | None, typer.Option("--incident", help="incident id (generated when absent)")]


def _home() -> Path:
    from breakglass.flows.home import home

    return home()


def _api() -> Any:
    """The installation's Prefect API, exported to the environment before Prefect is imported."""
    from breakglass.flows import server

    api = server.ensure(_home())
    os.environ.update(api.settings())
    return api


def _emit(document: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")


def _require_inventory(inventory: Path | None, command: str) -> Path:
    if inventory is None:
        raise BreakglassError(f"`breakglass {command}` needs --inventory FILE (e.g. playbooks/inventories/example.yaml)")
    return inventory
