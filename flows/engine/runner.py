"""The Prefect runner: with its gate side (``gatehost``), the only code that drives Prefect.

A playbook run is one Prefect flow run; each step is one Prefect task named by its step id.
Steps whose needs are met run concurrently. A step's checkpoint is its entry in breakglass's
own run record, keyed by (run key, step) and fsynced when the step completes: Prefect's
default cache key (a hash of code and inputs) could silently skip or repeat a step, and
``PREFECT_TASKS_REFRESH_CACHE`` in the environment would turn caching off without a word.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed

from breakglass.flows import planner
from breakglass.flows.effects import engines, signerlock
from breakglass.flows.effects.notice import Notice
from breakglass.flows.engine import closing, recovery, runlog
from breakglass.flows.engine.deadlines import deadline, enforced
from breakglass.flows.engine.gatehost import Coordinator, GateView, recheck_gates
from breakglass.flows.errors import BreakglassError
from breakglass.flows.gates import intents
from breakglass.flows.language import templating
from breakglass.flows.language.inventory import Inventory
from breakglass.flows.run import audit, interrupt
from breakglass.flows.run import prefect_api as prefectapi
from breakglass.flows.run.context import StepContext
from breakglass.flows.run.journal import Journal
from breakglass.flows.run.prefect_server import Api
from breakglass.flows.run.records import Attempt, AuditHead, RunRecord, now
from breakglass.flows.run.redact import Redactor
from breakglass.flows.run.runstore import RecordWriter, RunHandle, heartbeat
from breakglass.flows.spec.playbook import Playbook
from breakglass.flows.spec.validate import load_playbook
from breakglass.flows.steps import REGISTRY, AnyStep

_ACTIVE: dict[str, _Run] = {}


@dataclass
class _Run:
    handle: RunHandle
    writer: RecordWriter
    playbook: Playbook
    inventory: Inventory
    home: Path
    redact: Redactor
    signers: dict[str, Any]
    journal: Journal
    gates: Any = None  # the gatehost.Coordinator of the current flow run
    stopping: threading.Event = field(default_factory=threading.Event)  # Ctrl-C or SIGTERM: nothing new starts
    interrupts: Any = None  # the interrupt.Interrupts of this process, installed again inside the flow

    def step_context(self, step_id: str) -> StepContext:
        record = self.writer.record
        gate = REGISTRY[self.playbook.step(step_id).kind].gate
        ctx = StepContext(
            incident=record.incident, run_id=record.run_id, run_key=record.run_key, mode=record.mode, step_id=step_id,
            inventory=self.inventory, bindings=self.handle.bindings(), artifacts_dir=self.handle.artifacts,
            home=self.home, log=_logger(step_id, gate), signers=self.signers,
            journal=self.journal, playbook=self.playbook.name, severity=self.playbook.severity,
            outputs={s.id: s.outputs or {} for s in record.steps if s.status == "completed"},
        )
        if gate:
            ctx.gate = GateView(self, step_id)
        return engines.wire(ctx)

    def intents(self, gate: str) -> list[dict[str, Any]]:
        context = self.template_context()
        found: list[dict[str, Any]] = []
        for sid in intents.guarded(self.playbook, gate):
            ctx = self.step_context(sid)
            try:
                found += intents.of_step(ctx, self.playbook.step(sid), context)
            finally:
                ctx.close()
        return found

    def template_context(self) -> dict[str, Any]:
        record = self.writer.snapshot()
        return {
            "inputs": record.inputs,
            "alert": templating.NO_ALERT,
            "steps": {s.id: {"outputs": s.outputs or {}} for s in record.steps if s.status == "completed"},
        }

    def execute_step(self, step_id: str) -> Any:
        """Run one step with its own retries and time limit; returns a Prefect state, never raises.

        Retries and timeouts are breakglass's, not Prefect's: Prefect cannot interrupt a sync
        task in a worker thread, and its retry logging puts tracebacks in front of responders.
        """
        step = self.playbook.step(step_id)
        log = get_run_logger()
        context = self.template_context()
        try:
            if step.if_ is not None and not templating.condition(step.if_, context):
                self.writer.step(step_id, status="skipped", reason=f"if {step.if_!r} is false",
                                 skipped_reason="condition_false", ended_at=now())
                log.info("step %s skipped: if %r is false", step_id, step.if_)
                runlog.say("  -  %s skipped: if %r is false", step_id, step.if_)
                return Completed(message="skipped: condition is false")
        except templating.TemplateError as exc:
            self.writer.step(step_id, status="failed", error=self.redact(str(exc)), ended_at=now())
            return Failed(message=self.redact(str(exc)))
        total = step.retries + 1
        for attempt in range(1, total + 1):
            current = self.writer.snapshot().step(step_id)
            self.writer.step(step_id, status="running", started_at=current.started_at or now(),
                             attempts=current.attempts + 1, error=None, deadline=deadline(step))
            self.audit("step.started", step=step_id, kind=step.kind, attempt=current.attempts + 1)
            runlog.say("  >  %s (%s) started%s", step_id, step.kind, f", attempt {attempt}/{total}" if attempt > 1 else "")
            started = time.perf_counter()
            try:
                outputs = self._attempt(step, context, enforced(step))
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is lost
                message = self.redact(_describe(exc))
                partial = getattr(exc, "outputs", None)
                self.writer.step(step_id, status="failed", error=message, ended_at=now(),
                                 outputs=partial.model_dump(mode="json") if partial is not None else None)
                self.audit("step.failed", step=step_id, error=message)
                if attempt < total:
                    log.warning("step %s attempt %d/%d failed: %s; retrying", step_id, attempt, total, message)
                    runlog.say("  !  %s attempt %d/%d failed: %s; retrying", step_id, attempt, total, message)
                    time.sleep(min(2 ** (attempt - 1), 10))
                    continue
                log.error("step %s failed after %d attempt(s): %s", step_id, total, message)
                runlog.say("  X  %s FAILED after %d attempt(s): %s", step_id, total, message)
                return Failed(message=message)
            data = outputs.model_dump(mode="json")
            self.writer.step(step_id, status="completed", outputs=data, ended_at=now(), error=None)
            self.audit("step.completed", step=step_id, seconds=round(time.perf_counter() - started, 3))
            log.info("step %s completed in %.3fs", step_id, time.perf_counter() - started)
            runlog.say("  ok %s completed in %.2fs%s", step_id, time.perf_counter() - started,
                       runlog.suffix(self.writer.snapshot().step(step_id)))
            return Completed(message="completed")
        raise AssertionError("unreachable")

    def audit(self, event: str, **fields: Any) -> None:
        audit.append(self.handle.dir.parent.parent, event, run=self.handle.dir.name, **fields)

    def _attempt(self, step: AnyStep, context: dict[str, Any], timeout: float | None) -> Any:
        ctx = self.step_context(step.id)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = REGISTRY[step.kind].run(ctx, planner.resolve_step(step, context))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc
            finally:
                ctx.close()

        if timeout is None:
            work()
        else:
            worker = threading.Thread(target=work, name=f"step-{step.id}", daemon=True)
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                ctx.cancel.set()  # long waits check it, so the attempt stops instead of acting in the background
                worker.join(5)
                raise TimeoutError(f"no result within the step's timeout of {timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box["value"]


def _logger(step_id: str, gate: bool) -> Any:
    """Gates speak to the responder through the run's log (what they authorise, how to vote)."""
    if gate:
        try:
            return get_run_logger()
        except Exception:  # noqa: BLE001 - outside a task run (e.g. computing intents)
            pass
    return logging.getLogger(f"breakglass.step.{step_id}")


class StepFailed(Exception):
    """A step failed; its message is already redacted and recorded."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BreakglassError | StepFailed | templating.TemplateError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    return f"{type(exc).__name__}: {exc}"


def key_of(run_dir: Path) -> str:
    """A run's name everywhere: ``<incident>/<run id>``, the same on every machine sharing the home."""
    return f"{run_dir.parent.parent.name}/{run_dir.name}"


def active(run_dir: Path) -> _Run | None:
    return _ACTIVE.get(key_of(run_dir))


@task(cache_policy=NO_CACHE, persist_result=False)
def run_step(run: str, step_id: str) -> Any:
    return _ACTIVE[run].execute_step(step_id)


@flow(name="breakglass-run", persist_result=False, validate_parameters=True)
def breakglass_run(run: str, resume: bool = False) -> Any:
    """``run`` is ``<incident>/<run id>`` under ``$BREAKGLASS_HOME``; ``resume`` is set on hand-offs that continue
    a crashed run (the process that executes it has already reconciled the record)."""
    key, active_run = run, _ACTIVE[run]
    if active_run.interrupts is not None:
        active_run.interrupts.install()
    log = get_run_logger()
    flow_run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]  # prefect: a task context has no flow_run; this is the flow
    record = active_run.writer.snapshot()
    attempts = record.attempts + [Attempt(flow_run_id=flow_run_id, pid=os.getpid(), host=socket.gethostname(),
                                          started_at=now())]
    active_run.writer.update(status="running", attempts=attempts, ended_at=None, error=None)
    active_run.audit("run.started", attempt=len(attempts), flow_run=flow_run_id,
                     playbook=active_run.playbook.name, initiator=record.initiator)
    ui = os.environ.get("PREFECT_API_URL", "").removesuffix("/api")
    runlog.say("run %s: %d step(s) · Prefect flow run %s%s", key, len(active_run.playbook.steps), flow_run_id,
               f" ({ui}/runs/flow-run/{flow_run_id}; `breakglass server status` says how to log in)" if ui else "")
    recheck_gates(active_run, log)
    record = active_run.writer.snapshot()
    completed = {s.id for s in record.steps if s.status == "completed"}
    skipped = {s.id for s in record.steps if s.status == "skipped"}
    for step_id in sorted(completed | skipped):
        log.info("step %s: %s in an earlier attempt; not run again", step_id, record.step(step_id).status)
    active_run.gates = Coordinator(flow_run_id, len(attempts), [a.flow_run_id or "" for a in attempts[:-1]],
                                   {s.id for s in active_run.playbook.steps if REGISTRY[s.kind].gate})
    try:
        return _schedule(active_run, key, log, completed, skipped)
    finally:
        active_run.gates.close()


def _finished(done: queue.Queue[str], sid: str, _future: object) -> None:
    done.put(sid)  # a future's callback: step `sid` ended, the scheduler wakes


def _schedule(run: _Run, key: str, log: Any, completed: set[str], skipped: set[str]) -> Any:
    failed: set[str] = set()
    done: queue.Queue[str] = queue.Queue()
    futures: dict[str, Any] = {}
    order = planner.order(run.playbook)
    while True:
        start, skips = planner.ready(order, completed, skipped, failed, futures, stopping=run.stopping.is_set())
        for skip in skips:
            run.writer.step(skip.step, status="skipped", reason=skip.reason, ended_at=now(),
                            skipped_reason=recovery.skip_reason(run.handle.dir, run.writer.record, skip.blocker))
            runlog.say("  -  %s skipped: needs '%s', which %s", skip.step, skip.blocker, skip.why)
            skipped.add(skip.step)
        for sid in start:
            run.gates.started(sid)
            future = run_step.with_options(name=sid, task_run_name=sid).submit(key, sid)
            futures[sid] = future
            future.add_done_callback(partial(_finished, done, sid))
        if not futures:
            break
        sid = done.get()
        future = futures.pop(sid)
        future.wait()
        run.gates.finished(sid)
        status = run.writer.snapshot().step(sid).status
        if status == "completed":
            completed.add(sid)
        elif status == "skipped":
            skipped.add(sid)
        else:
            if status != "failed":  # the task ended without recording why (e.g. killed by a timeout)
                run.writer.step(sid, status="failed", error=run.redact(str(future.state.message)), ended_at=now())
            failed.add(sid)
    final = "failed" if failed else "completed"
    attempts = run.writer.snapshot().attempts
    attempts[-1] = attempts[-1].model_copy(update={"ended_at": now(), "status": final})
    error = f"step(s) failed: {', '.join(sorted(failed))}" if failed else None
    run.audit("run.finished", status=final, error=error)
    runlog.say("run %s %s: %d completed, %d skipped, %d failed", key, final, len(completed), len(skipped), len(failed))
    head = audit.head(run.handle.dir.parent.parent)
    run.writer.update(status=final, attempts=attempts, ended_at=now(), error=error, audit_head=AuditHead(**head))
    publish_artifacts(run.writer.snapshot(), log, run.home)
    Notice(run.inventory, run.journal, run.writer.record.run_key, run.writer.record.incident,
           run.playbook.name).final(final, AuditHead(**head))
    if failed:
        return Failed(message=error)
    return Completed(message=f"{len(completed)} step(s) completed, {len(skipped)} skipped")


def publish_artifacts(record: RunRecord, log: Any, home: Path) -> None:
    """What someone watching the Prefect UI needs without the CLI: a summary, the deliveries, the report."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    from breakglass.flows.engine import artifacts

    key = artifacts.key(record)
    try:
        create_markdown_artifact(markdown=artifacts.summary(record), key=f"{key}-summary",
                                 description=f"breakglass run {record.incident}/{record.run_id}")
        rows = artifacts.deliveries(record)
        if rows:
            create_table_artifact(table=rows, key=f"{key}-deliveries", description="who was told what, how, and when")
        report = artifacts.write_report(home, record)
        create_link_artifact(link=report.as_uri(), link_text=f"incident report (HTML): {report}", key=f"{key}-report")
    except Exception as exc:  # noqa: BLE001 - the UI's copy; the run record and the audit log are the record
        log.warning("could not publish the Prefect artifacts: %s: %s", type(exc).__name__, exc)


def settings(api: Api) -> Any:
    return prefectapi.settings(api)


def _mark_crashed(record: RunRecord, playbook: Playbook, run_dir: Path, from_step: str | None = None,
                  by: str | None = None) -> RunRecord:
    """The previous runner died or the run failed: say so in Prefect and in the record, then reopen what runs again."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    last = record.attempts[-1] if record.attempts else None
    if last is not None and last.flow_run_id and last.status == "running":
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(UUID(last.flow_run_id))
            if flow_run.state is None or not flow_run.state.is_final():
                client.set_flow_run_state(
                    last.flow_run_id, Crashed(message="breakglass: the runner process died; resumed in a new flow run"),
                    force=True,
                )
        record.attempts[-1] = last.model_copy(update={"status": "crashed", "ended_at": now()})
        record.status = "crashed"
    again = recovery.reopen(record, playbook, run_dir, from_step, by)
    audit.append(run_dir.parent.parent, "run.resumed", run=run_dir.name, by=by, from_step=from_step, again=again)
    return record


def execute(handle: RunHandle, api: Api, home: Path, *, resume: bool = False,
            signers: dict[str, Any] | None = None, models: tuple[Playbook, Inventory] | None = None,
            flow_run: Any = None, from_step: str | None = None, by: str | None = None) -> RunRecord:
    """Run (or resume) one breakglass run in this process, holding its runner lock throughout.

    ``flow_run`` is a flow run that a Prefect deployment created (a worker executes it);
    without one, this creates the flow run itself.
    """
    signerlock.configure(distributed=not api.managed)
    with ExitStack() as stack:
        stack.enter_context(handle.lock())
        if models is None:
            loaded = load_playbook(handle.dir / "playbook.yaml", handle.dir / "inventory.yaml")
            assert loaded[1] is not None
            models = (loaded[0], loaded[1])
        playbook, inventory = models
        writer = RecordWriter(handle)
        stack.enter_context(settings(api))
        if resume:
            reopened = _mark_crashed(writer.snapshot(), playbook, handle.dir, from_step, by)
            writer.update(**reopened.model_dump(include={"attempts", "status", "steps"}))
        key = key_of(handle.dir)
        stack.enter_context(heartbeat(handle.dir))
        stack.enter_context(runlog.routed(handle.artifacts, key_of(handle.dir)))
        run = _ACTIVE[key] = _Run(handle, writer, playbook, inventory, home, Redactor.for_inventory(inventory),
                                  signers or {}, Journal(handle.dir / "journal.jsonl"))
        stops = interrupt.Interrupts(writer.record.incident, lambda name: closing.interrupted(handle, writer, api, name),
                                     run.stopping)
        stack.callback(stops.uninstall)
        closing.note_runner(handle, signals=stops.install())  # close signals a CLI runner, never serve or a worker
        run.interrupts = stops
        try:
            if flow_run is not None:
                from prefect.flow_engine import run_flow

                run_flow(breakglass_run, flow_run=flow_run, parameters={"run": key, "resume": resume}, return_type="state")
            else:
                runner = breakglass_run.with_options(flow_run_name=key)
                runner(run=key, return_state=True)
        finally:
            _ACTIVE.pop(key, None)
    return handle.load()

