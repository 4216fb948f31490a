"""What `serve` does with its own runs when it starts again after a crash (kill -9, OOM, a reboot).

`serve` marks every run it starts in-process with ``owner.json``. At start it looks for those runs
that are not finished and whose runner lock is free (the process that ran them is gone), and
continues each through ``entry.execute(resume=True)``: the same path as `breakglass resume`. The
journal is reconciled with the chain before a step acts again, so a pause that went out before
the crash is found, not sent a second time; a gate waits again with the votes it had, and votes
sent to the dead flow run are still read. Runs handed to a work pool are left to the reaper.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from breakglass.flows.engine import entry
from breakglass.flows.run import audit
from breakglass.flows.run.runstore import RunHandle, RunLocked, Store

log = logging.getLogger("breakglass.serve")
FINISHED = ("completed", "cancelled", "failed")


def stranded(home: Path, owner: str) -> Iterator[tuple[RunHandle, str, str]]:
    """(handle, "<incident>/<run>", its status) of every unfinished run of ``owner`` whose runner is gone."""
    for handle in Store(home).owned(owner):
        try:
            record = handle.load()
            handed_off = (handle.dir / "handoff.json").exists()  # a pool's run (deploy.handed_off), without importing Prefect
            if record.status in FINISHED or handed_off or handle.is_locked():
                continue
        except (OSError, ValueError) as exc:
            log.warning("run %s: cannot read its record (%s); not resumed", handle.dir, exc)
            continue
        yield handle, f"{record.incident}/{handle.dir.name}", record.status


def resume(handle: RunHandle, key: str, was: str, api: Any, home: Path, keys: dict[str, Any],
           after: Callable[[], None] | None = None) -> None:
    """Continue one run in this process; never raises (logged, and `breakglass resume` remains)."""
    try:
        audit.append(handle.dir.parent.parent, "run.resumed", run=handle.dir.name, by="serve",
                     reason=f"serve restarted; the run was {was} and its runner was gone")
        entry.execute(handle, api, home, resume=True, keys=keys)
    except RunLocked as exc:  # `breakglass resume` was quicker: the run is theirs
        log.info("run %s: %s", key, exc)
    except BaseException as exc:  # noqa: BLE001 - logged; `breakglass resume` remains
        log.error("resume of run %s failed: %s; continue it with `breakglass resume %s`", key, exc, key.split("/")[0])
    finally:
        if after is not None:
            after()
