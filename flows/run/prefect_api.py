"""The Prefect API settings and one shared client per process.

Entering Prefect's ``temporary_settings`` rebuilds the whole settings model (environment, dotenv
and profile files: 20-40 ms), and every ``get_client()`` builds an HTTP client with a fresh TLS
context (another 10-30 ms). A worker that starts twenty runs at once paid both several times per
run, on the same core as the runs themselves. Here the settings for an API are computed once per
base settings, and one thread-safe client serves every caller of the process.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from breakglass.flows.run.prefect_server import Api

_LOCK = threading.Lock()
_SETTINGS: dict[tuple[int, str, str, str], tuple[Any, Any]] = {}
_CLIENTS: dict[tuple[str, str | None, str | None], Any] = {}
_CREATED: set[tuple[str, str]] = set()


def settings(api: Api) -> Any:
    """A context manager that points Prefect at ``api`` (its URL, auth string and home)."""
    import prefect.context
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH

    context = prefect.context.get_settings_context()
    key = (id(context.settings), api.url, api.auth or "", str(api.prefect_home))
    with _LOCK:
        cached = _SETTINGS.get(key)
        if cached is None or cached[0] is not context.settings:  # an id can be reused once its object is gone
            updates: dict[Any, Any] = {PREFECT_API_URL: api.url, PREFECT_HOME: str(api.prefect_home),
                                       PREFECT_LOCAL_STORAGE_PATH: str(api.prefect_home / "storage")}
            if api.auth:
                updates[PREFECT_API_AUTH_STRING] = api.auth
            if len(_SETTINGS) > 64:
                _SETTINGS.clear()
            cached = _SETTINGS[key] = (context.settings, context.settings.copy_with_update(updates=updates))
    return prefect.context.SettingsContext(profile=context.profile, settings=cached[1])


def client() -> Any:
    """The process's client for the API of the current settings. Use it without ``with``: it stays open.

    Built directly, not through ``get_client()``, which inside a flow run returns the run's own
    client, closed when that run ends.
    """
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import get_current_settings

    current = get_current_settings().api
    secrets = tuple(s.get_secret_value() if s is not None else None for s in (current.auth_string, current.key))
    key = (str(current.url), secrets[0], secrets[1])
    with _LOCK:
        found = _CLIENTS.get(key)
        if found is None:
            found = SyncPrefectClient(str(current.url), auth_string=secrets[0], api_key=secrets[1]).__enter__()
            _CLIENTS[key] = found
    return found


def create_flow_run_input(api: Api, flow_run_id: Any, key: str, value: str) -> None:
    """Post one input (a vote) to a flow run through the process's client for ``api``."""
    with settings(api):
        client().create_flow_run_input(flow_run_id, key, value)


def ensure_global_limit(client_: Any, name: str) -> None:
    """Create the global concurrency limit ``name`` (limit 1) once per process and API; existing is fine."""
    if (str(client_.api_url), name) in _CREATED:
        return
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client_.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    except ObjectAlreadyExists:
        pass
    _CREATED.add((str(client_.api_url), name))


def cancel_flow_runs(api: Api, flow_run_ids: list[str], message: str) -> list[str]:
    """Set every flow run that is not final to Cancelled; returns those it changed (close, interruption)."""
    from prefect.states import Cancelled

    changed = []
    with settings(api):
        found = client()
        for flow_run_id in flow_run_ids:
            state = found.read_flow_run(flow_run_id).state
            if state is None or not state.is_final():
                found.set_flow_run_state(flow_run_id, Cancelled(message=message), force=True)
                changed.append(flow_run_id)
    return changed


def live_flow_runs(client_: Any, prefix: str, limit: int = 20) -> list[Any]:
    """Running or paused flow runs whose name starts with ``prefix`` (a run's flow runs are named ``<incident>/<run>``)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateType as TypeFilter
    from prefect.client.schemas.objects import StateType

    live = FlowRunFilterState(type=TypeFilter(any_=[StateType.RUNNING, StateType.PAUSED]))
    found = client_.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix), state=live),
                                   limit=limit)
    return [r for r in found if r.name.startswith(prefix)]


@atexit.register
def _close() -> None:
    for found in _CLIENTS.values():
        try:
            found.__exit__(None, None, None)
        except Exception:  # noqa: BLE001, S110 - the process is ending
            pass
