"""``breakglass serve``: the always-on service. It holds the signers unlocked, keeps prepared pauses
fresh, runs playbooks in-process (so a vote wakes its gate directly), and takes Slack clicks.

Endpoints: ``GET /healthz`` (alive), ``GET /readyz`` (chain RPCs, the Prefect API and signers,
with reasons), ``POST /slack/interactivity`` (Approve/Reject clicks), ``POST /runs`` (start a
playbook from ``--playbooks``; bearer token from ``BREAKGLASS_SERVE_TOKEN``). On SIGTERM uvicorn
stops taking requests and the process exits; a run it was executing keeps its record, and the
next `serve` start continues it (``flows.restart``), as does ``breakglass resume``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from breakglass.flows.effects import prepared
from breakglass.flows.effects import unlock as signers
from breakglass.flows.engine import entry
from breakglass.flows.errors import BreakglassError, SpecError
from breakglass.flows.readiness import preflight
from breakglass.flows.run.context import Bindings, endpoints
from breakglass.flows.run.runstore import RecordWriter, RunExists, RunHandle
from breakglass.flows.service import httpguard, restart
from breakglass.flows.service.intake import Intake
from breakglass.flows.service.slackclick import ClickHandler, socket_mode
from breakglass.flows.spec.validate import load_inventory
from breakglass.integrations import jsonsafe
from breakglass.integrations.chain.rpc import JsonRpc

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory

log = logging.getLogger("breakglass.serve")
OWNER = "serve"  # owner.json of the runs `serve` starts in-process: a restart continues them


class Service:
    def __init__(self, home: Path, inventory_path: Path, playbooks: Path, api: Any, refresh: float = 60.0,
                 pool: str | None = None) -> None:
        httpguard.pin_recursion_limit()  # before any request is decoded: no import may leave it at 100,000
        self.home, self.inventory_path, self.playbooks_dir, self.api = home, inventory_path, playbooks, api
        self.pool = pool  # hand runs to this work pool instead of running them in-process
        self.books: dict[str, tuple[Path, Any]] = {}
        # Validated once, here: every run of a playbook is created from these models and bytes, never from a
        # second read of the files (a file edited later is reported, and runs as loaded until serve restarts).
        self.validated: dict[str, entry.Validated] = {}
        self.inventory: Inventory = load_inventory(inventory_path)
        for path in sorted(playbooks.glob("*.yaml")):
            loaded = entry.Validated.load(path, inventory_path)
            self.books[loaded.playbook.name] = (path, loaded.playbook)
            self.validated[loaded.playbook.name] = loaded
        needed = {n for _, book in self.books.values() for n in entry.needed_signers(book)}
        self.keys = signers.unlock(self.inventory, needed, Bindings(), signers.interactive_prompt())
        self.runs: dict[str, threading.Thread] = {}
        self._warned: dict[str, list[Path]] = {}
        self.refresh = refresh
        self._stop = threading.Event()
        self.clicks = None
        if self.inventory.slack_app is not None:
            self.clicks = ClickHandler(home, self.inventory, lambda: self.api, _wake)
        self.socket: Any = None

        self.intake = Intake(home, self.inventory, self.books, env=lambda name: os.environ.get(name, ""),
                             start=lambda book, inputs, incident, who, key: self.start_run(book, inputs, incident, who, via="alert",
                                                                                     idempotency_key=key))

    def connect_socket_mode(self) -> None:
        app = self.inventory.slack_app
        token = os.environ.get(app.app_token_env or "", "") if app is not None else ""
        if app is None or self.clicks is None or not token:
            return

        self.socket = socket_mode(self.clicks, token, self.inventory.channels[app.channel].base_url)

    def ready(self) -> dict[str, Any]:
        problems: list[str] = []
        for name, chain in self.inventory.chains.items():
            try:
                with JsonRpc(endpoints(self.inventory, name, Bindings()), timeout=3) as rpc:
                    if int(rpc.call("eth_chainId"), 16) != chain.chain_id:
                        problems.append(f"chain {name}: the RPC answers another chain id than {chain.chain_id}")
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                problems.append(f"chain {name}: {type(exc).__name__}: {str(exc)[:200]}")
        try:
            from breakglass.integrations.http import client

            headers = {"Authorization": f"Basic {_basic(self.api.auth)}"} if self.api.auth else {}
            if client().get(self.api.url.rstrip("/") + "/health", headers=headers, timeout=3).status_code != 200:
                problems.append("the Prefect API does not answer /health")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"Prefect API: {type(exc).__name__}")
        if self.pool:
            from breakglass.flows.scale import deploy

            try:
                problems += deploy.pool_problems(self.api, self.pool, sorted(self.books))
            except Exception as exc:  # noqa: BLE001
                problems.append(f"pool {self.pool}: {type(exc).__name__}: {str(exc)[:200]}")
        missing = sorted({n for _, b in self.books.values() for n in entry.needed_signers(b)} - set(self.keys))
        if missing:
            problems.append(f"signers not unlocked: {', '.join(missing)}")

        for var, what, users in preflight.missing_env(self.inventory, {**{n: b for n, (_, b) in self.books.items()},
                                                                       "serve": None}):
            problems.append(f"{what}: {var} is not set (needed by {', '.join(users)})")
        changed = sorted({str(p) for name, v in self.validated.items()
                          for p in v.changed_on_disk(self.books[name][0], self.inventory_path)})
        doc = {"ready": not problems, "problems": problems, "playbooks": sorted(self.books), "pool": self.pool,
               "running": sorted(k for k, t in self.runs.items() if t.is_alive())}
        if changed:  # they run as loaded until serve restarts: said, but not a readiness problem
            doc["changed_on_disk"] = changed
        return doc

    def start_run(self, name: str, inputs: dict[str, Any], incident: str | None, initiator: str | None,
                  via: str | None = None, idempotency_key: str | None = None) -> dict[str, str]:
        if name not in self.books:
            raise BreakglassError(f"no playbook '{name}' in {self.playbooks_dir}; known: {', '.join(sorted(self.books))}")
        path, _ = self.books[name]
        validated = self.loaded(name)
        created: dict[str, str] = {}
        ready = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            if self.pool:
                return self._hand_off(name, path, validated, inputs, incident, initiator, via, idempotency_key, created,
                                      ready, failure)

            def on_created(h: RunHandle) -> None:
                created.update(incident=h.dir.parent.parent.name, run=h.dir.name)
                ready.set()

            try:
                entry.start(playbook_path=path, inventory_path=self.inventory_path, given=inputs, incident=incident,
                            home=self.home, api=lambda: self.api, keys=self.keys, initiator=initiator, validated=validated,
                            initiator_via=via or ("serve" if initiator is None else "cli"), owner=OWNER,
                            on_created=on_created)
            except RunExists as exc:  # an alert for a run that exists: it joins it, nothing failed
                failure.append(exc)
                ready.set()
                log.info("%s: joined the existing run", exc)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller or logged
                failure.append(exc)
                ready.set()
                log.error("run of %s failed: %s", name, exc)
            finally:
                self._prepare()

        thread = threading.Thread(target=work, name=f"run-{name}", daemon=True)
        thread.start()
        ready.wait(60)
        if failure and (not created or self.pool):  # a failed hand-off is the caller's to know, run or not
            raise failure[0]
        self.runs[f"{created.get('incident')}/{created.get('run')}"] = thread
        return created

    def resume_owned(self) -> list[str]:
        """At start: continue the runs this `serve` started whose runner is gone (``flows.restart``)."""
        if self.pool:  # runs handed to a pool are the reaper's
            return []
        resumed: list[str] = []
        for handle, key, was in restart.stranded(self.home, OWNER):
            thread = threading.Thread(target=restart.resume, args=(handle, key, was, self.api, self.home, self.keys,
                                                                   self._prepare), name=f"resume-{key}", daemon=True)
            thread.start()
            self.runs[key] = thread
            resumed.append(key)
        return resumed

    def loaded(self, name: str) -> entry.Validated:
        """The playbook's models as validated at start. A file edited since then is said once per edit: the run
        uses what serve validated (and prepared pauses and unlocked signers for); a restart loads the edit."""
        validated = self.validated[name]
        changed = validated.changed_on_disk(self.books[name][0], self.inventory_path)
        if changed and changed != self._warned.get(name):
            log.warning("%s changed on disk since serve loaded it; runs of %s use the version serve validated "
                        "(playbook sha256 %s); restart serve to load the change", ", ".join(map(str, changed)), name,
                        hashlib.sha256(validated.playbook_bytes).hexdigest()[:16])
        self._warned[name] = changed
        return validated

    def _hand_off(self, name: str, path: Path, validated: entry.Validated, inputs: dict[str, Any],
                  incident: str | None, initiator: str | None, via: str | None, idempotency_key: str | None,
                  created: dict[str, str], ready: threading.Event, failure: list[BaseException]) -> None:
        """Create the run and broadcast its prepared pause here, then let a worker of the pool execute it."""
        from breakglass.flows.scale import deploy

        try:
            handle, _ = entry.begin(playbook_path=path, inventory_path=self.inventory_path, given=inputs,
                                    incident=incident, home=self.home, initiator=initiator, validated=validated,
                                    initiator_via=via or ("serve" if initiator is None else "cli"))
            created.update(incident=handle.dir.parent.parent.name, run=handle.dir.name)
            try:
                result = deploy.hand_off(self.api, handle, name, self.pool or "", idempotency_key=idempotency_key)
            except Exception as exc:  # noqa: BLE001 - the run exists (its pause may be out): never left silently
                why = str(exc) if isinstance(exc, BreakglassError) else f"{type(exc).__name__}: {str(exc)[:200]}"
                RecordWriter(handle).update(status="crashed", error=f"hand-off to pool '{self.pool}' failed ({why}); "
                                            f"continue it with `breakglass resume {created['incident']}`")
                raise BreakglassError(f"run {created['incident']}/{created['run']} was created (its prepared pause "
                                      f"went out), but the hand-off to pool '{self.pool}' failed: {why}. Continue it "
                                      f"with `breakglass resume {created['incident']}`") from None
            created["flow_run"] = result["flow_run"]
            if result["run"] != f"{created['incident']}/{created['run']}":  # another replica created it first
                RecordWriter(handle).update(status="cancelled", error=f"duplicate: run {result['run']} handles "
                                                                      f"this alert (idempotency key {idempotency_key})")
                created["duplicate_of"] = result["run"]
        except BaseException as exc:  # noqa: BLE001 - reported to the caller or logged
            failure.append(exc)
            log.error("hand-off of %s failed: %s", name, exc)
        finally:
            ready.set()
            self._prepare()

    def _prepare(self) -> None:
        """Re-sign prepared pauses that went stale (a nonce used, a fee cap under the base fee)."""
        for _, book in self.books.values():
            if not prepared.prepared_steps(book, gated=None):
                continue
            try:
                prepared.build(book, self.inventory, self.keys, self.home)
            except Exception as exc:  # noqa: BLE001 - readiness reports chain problems
                log.warning("prepare %s: %s", book.name, exc)

    def keep_fresh(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.refresh):
                if not any(t.is_alive() for t in self.runs.values()):
                    self._prepare()

        def flush() -> None:  # unauthenticated refusals: one summary line per source per minute
            while not self._stop.wait(10.0):
                self._flush_refusals()

        self._prepare()
        threading.Thread(target=loop, name="breakglass-prepare", daemon=True).start()
        threading.Thread(target=flush, name="breakglass-refusals", daemon=True).start()

    def _flush_refusals(self, force: bool = False) -> None:
        try:
            self.intake.refusals.flush(force)
            if self.clicks is not None:
                self.clicks.unsigned.flush(force)
        except OSError as exc:
            log.warning("refusal summary not written: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._flush_refusals(force=True)
        if self.socket is not None:
            self.socket.close()


def _basic(auth: str) -> str:
    import base64

    return base64.b64encode(auth.encode()).decode()


def _wake(run_dir: Path, key: str, raw: str) -> None:
    """A vote for a run executing in this process: hand it to its gate now instead of at the next poll."""
    from breakglass.flows.engine import runner

    active = runner.active(run_dir)
    if active is not None and active.gates is not None:
        active.gates.deliver(key, raw)


def _answer(answer: Any) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status)


def app(service: Service) -> FastAPI:
    api = FastAPI(title="breakglass", docs_url=None, redoc_url=None, openapi_url=None)
    token = os.environ.get("BREAKGLASS_SERVE_TOKEN", "")

    @api.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "time": time.time()}

    @api.get("/readyz")
    def readyz() -> JSONResponse:
        doc = service.ready()
        return JSONResponse(doc, status_code=200 if doc["ready"] else 503)

    @api.post("/slack/interactivity")
    async def interactivity(request: Request) -> JSONResponse:
        if service.clicks is None:
            return JSONResponse({"error": "Slack approvals are not configured (no slack_app in the inventory)"}, 404)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not httpguard.content_type_is(headers, "application/x-www-form-urlencoded"):
            return _answer(service.clicks.refuse_unsigned(415, "Content-Type must be application/x-www-form-urlencoded"))
        try:
            body = await httpguard.read_body(request)
        except httpguard.TooLarge:
            return _answer(service.clicks.refuse_unsigned(413, f"body over {httpguard.LIMIT} bytes"))
        answer = await run_in_threadpool(service.clicks.http, body, headers)
        return JSONResponse(answer.body, status_code=answer.status)

    @api.get("/alerts/{name}")
    def alert_probe(name: str) -> JSONResponse:  # Tenderly checks that the URL answers GET
        known = name in service.inventory.alert_sources
        return JSONResponse({"ok": known} if known else {"error": f"no alert source '{name}'"}, 200 if known else 404)

    @api.post("/alerts/{name}")
    async def alert(name: str, request: Request) -> JSONResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if name not in service.inventory.alert_sources:
            return JSONResponse({"error": f"no alert source '{name}'"}, 404)
        if not httpguard.content_type_is(headers, "application/json"):
            status, answer = service.intake.refuse(415, name, "unread", "Content-Type must be application/json",
                                                   authenticated=False)
            return JSONResponse(answer, status_code=status)
        try:
            body = await httpguard.read_body(request)
        except httpguard.TooLarge as exc:
            status, answer = service.intake.oversize(name, exc.size)
            return JSONResponse(answer, status_code=status)
        status, answer = await run_in_threadpool(service.intake.accept, name, body, headers)  # fsyncs: off the event loop
        return JSONResponse(answer, status_code=status)

    @api.post("/runs")
    async def runs(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return JSONResponse({"error": "POST /runs needs Authorization: Bearer $BREAKGLASS_SERVE_TOKEN"}, 401)
        if not httpguard.content_type_is(request.headers, "application/json"):
            return JSONResponse({"error": "Content-Type must be application/json"}, 415)
        try:
            doc = jsonsafe.loads(await httpguard.read_body(request), max_depth=8)
            if not isinstance(doc, dict) or not isinstance(doc.get("playbook"), str):
                raise ValueError
            inputs = doc.get("inputs") or {}
            if not isinstance(inputs, dict) or not isinstance(doc.get("incident") or "", str) \
                    or not isinstance(doc.get("as") or "", str):
                raise ValueError
        except httpguard.TooLarge:
            return JSONResponse({"error": f"body over {httpguard.LIMIT} bytes"}, 413)
        except ValueError:
            return JSONResponse({"error": "body must be JSON: {playbook, inputs?, incident?, as?}"}, 400)
        try:
            created = service.start_run(doc["playbook"], {str(k): str(v) for k, v in inputs.items()},
                                        doc.get("incident"), doc.get("as"))
        except SpecError as exc:
            return JSONResponse({"error": "; ".join(str(d) for d in exc.diagnostics)}, 400)
        except BreakglassError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(created, 202)

    return api


def run(service: Service, host: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C: uvicorn drains requests, then this returns (exit code 0)."""
    import signal
    import sys

    import uvicorn

    def stopped(signum: int, frame: Any) -> None:  # uvicorn re-raises the signal after its graceful shutdown
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stopped)
    service.keep_fresh()
    service.connect_socket_mode()
    resumed = service.resume_owned()  # first: a run that exists is continued, never started twice
    if resumed:
        sys.stderr.write(f"breakglass serve: continuing {len(resumed)} run(s) whose runner was gone: "
                         f"{', '.join(resumed)}\n")
    recovered = service.intake.recover()
    if recovered:
        sys.stderr.write(f"breakglass serve: started the runs of {recovered} alert(s) accepted before a restart\n")
    try:
        uvicorn.run(app(service), host=host, port=port, log_level="warning", access_log=False)
    except SystemExit:
        pass
    finally:
        service.stop()
        running = [k for k, t in service.runs.items() if t.is_alive()]
        sys.stderr.write("breakglass serve stopped" + (f"; {', '.join(running)} continue when serve starts again "
                                                       "(or with `breakglass resume`)" if running else "") + "\n")
