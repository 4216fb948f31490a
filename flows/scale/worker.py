"""``breakglass worker --pool NAME``: a Prefect worker that executes breakglass runs.

Prefect's process worker starts a Python process per flow run, which would import Prefect and
unlock every signer again on the path of every incident. This worker is a long-lived process
instead: it unlocks the signers of its own environment once (keys never travel in Prefect
parameters or job variables: a flow run carries only ``<incident>/<run id>``), and executes each
flow run of the pool in a thread, straight into the run's existing record under the shared
``$BREAKGLASS_HOME``.

It also watches for crashed runs (``reaper``): a run whose runner stopped beating its heart is
marked Crashed and handed to the pool again, so another worker continues it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from prefect.client.orchestration import get_client
from prefect.states import Failed
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

from breakglass.flows.effects import unlock as signers
from breakglass.flows.engine import entry
from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.prefect_server import Api
from breakglass.flows.run.runstore import Store
from breakglass.flows.scale import reaper
from breakglass.flows.spec.validate import load_playbook

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory

log = logging.getLogger("breakglass.worker")
TYPE = "breakglass"


class KeyRing:
    """Signers unlocked once per process, from this machine's environment, reused by every run that names them."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def preload(self, inventory_path: Path, playbooks: Path | None) -> int:
        from breakglass.flows.spec.validate import load_inventory

        inventory = load_inventory(inventory_path)
        names: set[str] = set()
        for path in sorted(playbooks.glob("*.yaml")) if playbooks else []:
            book, _ = load_playbook(path, inventory_path)
            names |= entry.needed_signers(book)
        self.for_run(inventory, names, None)
        return len(names)

    def for_run(self, inventory: Inventory, names: set[str], bindings: Any) -> dict[str, Any]:
        if inventory.is_drill:  # fixture keys: cheap, and bound to the drill's chain
            return signers.unlock(inventory, names, bindings, None)
        out: dict[str, Any] = {}
        with self._lock:
            missing = [n for n in sorted(names) if (n, _spec(inventory, n)) not in self._keys]
            if missing:
                for name, key in signers.unlock(inventory, missing, bindings, None).items():
                    self._keys[(name, _spec(inventory, name))] = key
            for name in names:
                out[name] = self._keys[(name, _spec(inventory, name))]
        return out


def _spec(inventory: Inventory, name: str) -> str:
    spec = inventory.signers.get(name)
    return spec.model_dump_json() if spec is not None else ""


class BreakglassResult(BaseWorkerResult):
    pass


class BreakglassWorker(BaseWorker[BaseJobConfiguration, BaseVariables, BreakglassResult]):
    type = TYPE
    job_configuration = BaseJobConfiguration
    job_configuration_variables = BaseVariables
    _description = "Executes breakglass playbook runs in a long-lived process that holds its own signers."

    def __init__(self, *, pool: str, home: Path, api: Api, keys: KeyRing, concurrency: int, **kwargs: Any) -> None:
        super().__init__(work_pool_name=pool, limit=concurrency, **kwargs)
        self.home, self.api, self.keys = home, api, keys
        self._threads = anyio.CapacityLimiter(concurrency)

    async def run(self, flow_run: Any, configuration: BaseJobConfiguration,
                  task_status: anyio.abc.TaskStatus[Any] | None = None) -> BreakglassResult:
        if task_status is not None:
            task_status.started(f"{socket.gethostname()}:{os.getpid()}")
        code = await anyio.to_thread.run_sync(self.execute, flow_run, limiter=self._threads)
        return BreakglassResult(identifier=str(flow_run.id), status_code=code)

    def execute(self, flow_run: Any) -> int:
        from breakglass.flows.engine.runner import settings

        params = flow_run.parameters or {}
        key = str(params.get("run", ""))
        with settings(self.api):
            return self._execute(flow_run, key, params)

    def _execute(self, flow_run: Any, key: str, params: dict[str, Any]) -> int:
        try:
            handle = Store(self.home).handle(key)
            playbook, inventory = load_playbook(handle.dir / "playbook.yaml", handle.dir / "inventory.yaml")
            assert inventory is not None
            keys = self.keys.for_run(inventory, entry.needed_signers(playbook), handle.bindings())
            log.info("run %s: executing flow run %s", key, flow_run.id)
            entry.execute(handle, self.api, self.home, resume=bool(params.get("resume")), keys=keys, flow_run=flow_run)
        except BreakglassError as exc:  # said in Prefect, where the responder looks; never a traceback
            log.error("run %s: %s", key, exc)
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(flow_run.id, Failed(message=f"breakglass: {exc}"), force=True)
        return 0


def main(*, pool: str, home: Path, api: Api, keys: KeyRing, concurrency: int, poll: float, crash_after: float,
         name: str | None) -> None:
    from prefect.settings import PREFECT_WORKER_PREFETCH_SECONDS, PREFECT_WORKER_QUERY_SECONDS, temporary_settings

    from breakglass.flows.engine.runner import settings

    stop = threading.Event()
    with settings(api), temporary_settings(updates={PREFECT_WORKER_QUERY_SECONDS: poll,
                                                    PREFECT_WORKER_PREFETCH_SECONDS: 0}):
        watcher = threading.Thread(target=reaper.watch, args=(api, home, crash_after, stop), daemon=True,
                                   name="breakglass-reaper")
        watcher.start()
        worker = BreakglassWorker(pool=pool, home=home, api=api, keys=keys, concurrency=concurrency,
                                  name=name or f"breakglass-{socket.gethostname()}-{os.getpid()}")
        try:
            anyio.run(worker.start)
        finally:
            stop.set()
