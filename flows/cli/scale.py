"""Scale-out commands: ``deploy`` (playbooks as Prefect deployments in a work pool) and ``worker``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breakglass.flows.cli.base import JsonOpt, _api, _emit, _home, app, err, out
from breakglass.flows.errors import BreakglassError

PoolOpt = Annotated[str, typer.Option("--pool", help="the Prefect work pool (type 'breakglass')")]
PlaybooksOpt = Annotated[Path, typer.Option("--playbooks", help="folder of playbooks", file_okay=False)]


@app.command()
def deploy(pool: PoolOpt, inventory: Annotated[Path, typer.Option("--inventory", "-i", dir_okay=False,
                                                                  help="the inventory the playbooks are checked against")],
           playbooks: PlaybooksOpt = Path("playbooks"), as_json: JsonOpt = False) -> int:
    """Register each playbook as a Prefect deployment in a work pool (created if missing).

    Example: breakglass deploy --pool breakglass --inventory inventories/mainnet.yaml --playbooks playbooks/"""
    from breakglass.flows.scale import deploy as deploy_mod
    from breakglass.flows.spec.validate import load_playbook

    books = {}
    for path in sorted(playbooks.glob("*.yaml")):
        book, _ = load_playbook(path, inventory)
        books[book.name] = (path, book)
    if not books:
        raise BreakglassError(f"no playbooks (*.yaml) in {playbooks}")
    api = _api()
    done = deploy_mod.deploy(api, pool, books)
    if as_json:
        _emit({"pool": pool, "api": api.url, "deployments": done}, True)
    else:
        for name, ident in done.items():
            out.print(f"{deploy_mod.FLOW}/{name}  {ident}", markup=False)
        err.print(f"{len(done)} deployment(s) in pool '{pool}' on {api.url}; start workers with "
                  f"`breakglass worker --pool {pool}`", markup=False)
    return 0


@app.command()
def worker(pool: PoolOpt,
           inventory: Annotated[Path | None, typer.Option("--inventory", "-i", dir_okay=False,
                                                          help="unlock this inventory's signers at start")] = None,
           playbooks: PlaybooksOpt = Path("playbooks"),
           concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="runs at once in this worker")] = 20,
           poll: Annotated[float, typer.Option("--poll", min=0.1, help="seconds between polls of the pool")] = 1.0,
           crash_after: Annotated[float, typer.Option("--crash-after", min=5, help="seconds without a heartbeat "
                                                      "before a run is marked Crashed and handed back")] = 90.0,
           name: Annotated[str | None, typer.Option("--name", help="worker name in Prefect")] = None,
           as_json: JsonOpt = False) -> int:
    """Run a Prefect worker that executes breakglass runs, with this machine's signers unlocked once.

    Example: breakglass worker --pool breakglass --inventory inventories/mainnet.yaml"""
    from breakglass.flows.scale import worker as worker_mod

    home, api = _home(), _api()
    keys = worker_mod.KeyRing()
    count = keys.preload(inventory, playbooks if playbooks.is_dir() else None) if inventory else 0
    err.print(f"breakglass worker on pool '{pool}' · {api.url} · home {home} · {count} signer(s) unlocked · "
              f"crash after {crash_after:g}s", markup=False)
    worker_mod.main(pool=pool, home=home, api=api, keys=keys, concurrency=concurrency, poll=poll,
                    crash_after=crash_after, name=name)
    return 0
