"""Housekeeping commands: ``schema`` (JSON Schemas and editor modelines), ``version`` and ``server`` (the local
Prefect server: start, stop, and status with its UI and how to log in)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from breakglass.flows import __version__
from breakglass.flows.cli.base import JsonOpt, _emit, _home, app, err, out, server_app
from breakglass.flows.errors import BreakglassError


@app.command()
def schema(what: Annotated[str, typer.Argument(help="'playbook' (playbooks and inventories) or 'run-record'",
                                                metavar="WHAT")] = "playbook",
           install: Annotated[list[Path] | None, typer.Option(
               "--install", help="add a yaml-language-server modeline for editor completion to these YAML files",
               metavar="FILE")] = None,
           as_json: JsonOpt = False) -> int:
    """Print a JSON Schema (the output is JSON, with or without --json); or, with --install FILE, point your
    editor at it.

    Examples: breakglass schema > schema.json · breakglass schema --install mine.yaml"""
    from breakglass.flows.spec import schema as schema_mod

    if install:
        from breakglass.flows.language import modeline

        done = [modeline.install(path) for path in install]
        _emit({"installed": [str(p) for p, changed in done if changed],
               "unchanged": [str(p) for p, changed in done if not changed]}, as_json)
        for path, changed in done if not as_json else []:
            err.print(f"{path}: {'modeline added' if changed else 'already has a schema modeline'}", markup=False)
        return 0
    if what not in ("playbook", "run-record"):
        raise BreakglassError(f"unknown schema {what!r}: choose 'playbook' or 'run-record'")
    sys.stdout.write(schema_mod.dumps(schema_mod.spec_schema() if what == "playbook" else schema_mod.record_schema()))
    return 0


@server_app.command("start")
def server_start(
    database: Annotated[str | None, typer.Option(
        "--database", envvar="BREAKGLASS_DATABASE_URL", show_envvar=True,
        help="postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB for the production topology (prefer the environment "
             "variable: a command line is visible to every user of the machine)")] = None,
    host: Annotated[str, typer.Option("--host", help="listen address; 0.0.0.0 to let workers on other machines in "
                                                     "(keep it on a private network)")] = "127.0.0.1",
    as_json: JsonOpt = False,
) -> int:
    """Start the local Prefect server (SQLite under $BREAKGLASS_HOME/prefect, or Postgres) unless it runs."""
    from breakglass.flows.run import prefect_server as server

    api = server.start(_home(), database=database, host=host)
    where = server.redact_url(database) if database else "SQLite"
    err.print(f"Prefect API at {api.url} on {where} (UI at {api.url.removesuffix('/api')}; "
              "`breakglass server status` says how to log in)", markup=False)
    _emit({"api": api.url, "ui": api.url.removesuffix("/api"), "database": where}, as_json)
    return 0


@server_app.command("stop")
def server_stop(as_json: JsonOpt = False) -> int:
    """Stop the local Prefect server."""
    from breakglass.flows.run import prefect_server as server

    stopped = server.stop(_home())
    err.print("stopped" if stopped else "not running", markup=False)
    _emit({"stopped": stopped}, as_json)
    return 0


@server_app.command("status")
def server_status(as_json: JsonOpt = False) -> int:
    """Say which Prefect API this installation uses, whether it answers, its UI URL and how to log in to it.

    Example: breakglass server status --json"""
    from breakglass.flows.run import prefect_server as server

    doc = server.status(_home())
    if as_json:
        _emit(doc, True)
        return 0
    if doc.get("api") is None:
        out.print("Prefect server: not running (breakglass starts it on first need, or: breakglass server start)",
                  markup=False)
        return 0
    kind = "local server managed by breakglass" if doc["managed"] else "configured by PREFECT_API_URL"
    answers = "answers" if doc.get("healthy") else "does NOT answer"
    lines = [f"Prefect API: {doc['api']} ({kind}); it {answers}", f"UI: {doc['ui']}", f"log in: {doc['login']}"]
    if doc.get("pid"):
        lines.append(f"process {doc['pid']} · database {doc['database']} · log {doc['log']}")
    for line in lines:
        out.print(line, markup=False)
    return 0


@app.command()
def version(as_json: JsonOpt = False) -> int:
    """Print the version (also: breakglass --version)."""
    if as_json:
        _emit({"version": __version__}, True)
    else:
        out.print(f"breakglass {__version__}", markup=False)
    return 0
