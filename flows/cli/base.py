"""The shared parts of the CLI: the typer app, consoles, common options and helpers."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from breakglass.flows.cli import words as cli_words
from breakglass.flows.errors import BreakglassError

cli_words.apply()
os.environ.setdefault("DO_NOT_TRACK", "1")  # no Prefect client telemetry (nor its notice) from breakglass processes

HELP = {"help_option_names": ["-h", "--help"]}
EXIT_CODES = ("Exit codes: 0 success · 1 bad input or usage (nothing was run) · 2 the command worked but found "
              "failure (a failed step, a gap, a failed check) · 3 a bug in breakglass · 130 interrupted (Ctrl-C). "
              "With --json every command prints exactly one JSON document on stdout, errors included: "
              '{"error": {"code": ..., "message": ...}}.')
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, context_settings=HELP,
                  rich_markup_mode=None,
                  help="Incident-response playbooks for crypto protocols, run on Prefect.\n\n"
                       "Examples: breakglass validate playbooks/ · breakglass drill guardian-key-compromise "
                       "--auto-approve\n\n" + EXIT_CODES)
server_app = typer.Typer(no_args_is_help=True, context_settings=HELP, rich_markup_mode=None,
                         help="The local Prefect server under $BREAKGLASS_HOME.")
app.add_typer(server_app, name="server")


def _version(value: bool) -> None:
    if value:
        from breakglass.flows import __version__

        out.print(f"breakglass {__version__}", markup=False)
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", "-V", is_eager=True, callback=_version,
                                                help="print the version and exit")] = False,
          verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's own log lines too (they are "
                                                "always in the run's artifacts/prefect.log)")] = False) -> None:
    """Incident-response playbooks for crypto protocols, run on Prefect."""
    if verbose:
        os.environ["BREAKGLASS_VERBOSE"] = "1"

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

InventoryOpt = Annotated[Path | None, typer.Option("--inventory", "-i", help="inventory file", dir_okay=False,
                                                   metavar="FILE")]
InputOpt = Annotated[list[str] | None, typer.Option("--input", help="NAME=VALUE, repeatable", metavar="NAME=VALUE")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print exactly one JSON document on stdout")]
AsOpt = Annotated[str | None, typer.Option("--as", help="your roster name (who starts the run)", metavar="NAME")]
VoterOpt = Annotated[str | None, typer.Option("--as", help="your roster name (who votes or acknowledges)", metavar="NAME")]
IncidentOpt = Annotated[str | None, typer.Option("--incident", help="incident id (generated when absent)", metavar="ID")]
IncidentArg = Annotated[str, typer.Argument(help="the incident id, e.g. INC-20261205-0001", metavar="INCIDENT")]


def _home() -> Path:
    from breakglass.flows.run.home import home

    return home()


def _api() -> Any:
    """The installation's Prefect API, exported to the environment before Prefect is imported."""
    from breakglass.flows.run import prefect_server as server

    started = time.monotonic()

    def starting() -> None:
        err.print("starting the local Prefect server (the first start takes 10-20 s while its database is created, "
                  "later ones 3-6 s)…", markup=False)

    api = server.ensure(_home(), on_start=starting)
    if time.monotonic() - started > 1.0:
        err.print(f"Prefect server ready in {time.monotonic() - started:.1f} s at {api.url.removesuffix('/api')}",
                  markup=False)
    os.environ.update(api.settings())
    return api


EMITTED: list[bool] = []  # a JSON document is on stdout already: an error after it adds no second one


def _emit(document: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
        EMITTED.append(True)


def _require_inventory(inventory: Path | None, command: str) -> Path:
    if inventory is None:
        raise BreakglassError(f"`breakglass {command}` needs --inventory FILE (e.g. playbooks/inventories/example.yaml)")
    return inventory
