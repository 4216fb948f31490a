"""Playbooks as Prefect deployments, and runs handed to a work pool.

``breakglass deploy`` registers one deployment per playbook, named after it, for the flow
``breakglass-run`` in a work pool of type ``breakglass``. A hand-off creates a flow run of that
deployment whose only parameter is the run's name (``<incident>/<run id>``): the run itself
already exists under the shared ``$BREAKGLASS_HOME``, created (and its fast-path pause already
broadcast) by whoever handed it off. ``handoff.json`` in the run's directory records the
deployment, so ``breakglass resume`` and the crash watcher hand it back to the same pool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client

from breakglass.flows.errors import BreakglassError
from breakglass.flows.run import prefect_api as prefectapi
from breakglass.flows.run import runstore
from breakglass.flows.run.home import write_private
from breakglass.flows.run.prefect_server import Api
from breakglass.flows.run.runstore import RunHandle

FLOW = "breakglass-run"
ENTRYPOINT = "breakglass.flows.engine.runner:breakglass_run"


def deploy(api: Api, pool: str, books: dict[str, tuple[Path, Any]]) -> dict[str, str]:
    """Create the pool if needed and upsert one deployment per playbook; returns {playbook: deployment id}."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.utilities.callables import parameter_schema

    from breakglass.flows.engine.runner import breakglass_run, settings
    from breakglass.flows.scale.worker import TYPE, BreakglassWorker

    with settings(api), get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type=TYPE,
                                                   base_job_template=BreakglassWorker.get_default_base_job_template()))
        except ObjectAlreadyExists:
            existing = client.read_work_pool(pool)
            if existing.type != TYPE:
                raise BreakglassError(f"work pool '{pool}' exists with type '{existing.type}'; breakglass needs a pool of "
                                      f"type '{TYPE}' (run by `breakglass worker`). Choose another --pool name.") from None
        flow_id = client.create_flow_from_name(FLOW)
        schema = parameter_schema(breakglass_run).model_dump_for_openapi()
        out: dict[str, str] = {}
        for name, (path, book) in sorted(books.items()):
            deployment_id = client.create_deployment(
                flow_id=flow_id, name=name, work_pool_name=pool, entrypoint=ENTRYPOINT,
                description=f"{book.description.strip()}\n\nplaybook: {path.name}",
                tags=["breakglass", f"severity:{book.severity}"], parameter_openapi_schema=schema,
                enforce_parameter_schema=True)
            out[name] = str(deployment_id)
    return out


def hand_off(api: Api, handle: RunHandle, playbook: str, pool: str, *,
             idempotency_key: str | None = None) -> dict[str, str]:
    """Create the flow run on the pool; returns {flow_run, run}. ``run`` names the run that the flow run executes:
    with an idempotency key another replica may have created it first, for a run of its own."""
    from breakglass.flows.engine.runner import key_of, settings

    key = key_of(handle.dir)
    with settings(api):
        client = prefectapi.client()
        try:
            deployment = client.read_deployment_by_name(f"{FLOW}/{playbook}")
        except Exception as exc:  # noqa: BLE001 - ObjectNotFound or an API error: said plainly
            raise BreakglassError(f"no deployment {FLOW}/{playbook} on {api.url} ({type(exc).__name__}): "
                                  f"run `breakglass deploy --pool {pool}` first") from None
        if deployment.work_pool_name != pool:
            raise BreakglassError(f"deployment {FLOW}/{playbook} is in pool '{deployment.work_pool_name}', not '{pool}': "
                                  f"run `breakglass deploy --pool {pool}`")
        flow_run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"run": key, "resume": False}, name=key, idempotency_key=idempotency_key,
            tags=["breakglass", "start"])
    runs = str(flow_run.parameters.get("run"))  # another run's name when another replica used the key first
    if runs == key:  # resume and the crash sweep hand it back to the same deployment
        record = {"pool": pool, "deployment": str(deployment.id), "playbook": playbook, "flow_run": str(flow_run.id)}
        write_private(handle.dir / "handoff.json", json.dumps(record, indent=2).encode())
    return {"flow_run": str(flow_run.id), "run": runs}


handed_off = runstore.handed_off  # re-exported: reaper and the CLI read hand-offs through the pool's module


def pool_problems(api: Api, pool: str, playbooks: list[str], fresh: float = 60.0) -> list[str]:
    """For `serve --pool`'s readiness: every playbook deployed to the pool, and a worker that polled lately."""
    from datetime import UTC, datetime

    from breakglass.flows.engine.runner import settings

    problems: list[str] = []
    with settings(api), get_client(sync_client=True) as client:
        for name in playbooks:
            try:
                deployment = client.read_deployment_by_name(f"{FLOW}/{name}")
            except Exception:  # noqa: BLE001 - not found, or the API is down: both are "not ready"
                problems.append(f"playbook {name}: no deployment {FLOW}/{name} (run `breakglass deploy --pool {pool}`)")
                continue
            if deployment.work_pool_name != pool:
                problems.append(f"playbook {name}: deployed to pool '{deployment.work_pool_name}', not '{pool}'")
        workers = client.read_workers_for_work_pool(pool)
        now = datetime.now(UTC)
        live = [w for w in workers if w.last_heartbeat_time and (now - w.last_heartbeat_time).total_seconds() < fresh]
        if not live:
            problems.append(f"pool {pool}: no worker polled in the last {fresh:g}s (start `breakglass worker --pool {pool}`)")
    return problems
