"""The Prefect side of approval gates: the flow run shows Paused while only gates wait, votes arrive
as flow-run inputs, and the Prefect UI's resume form is one more (unsigned) way to vote.

The flow run is Paused exactly while every running step is a gate, so a gate never holds back
steps it does not guard (Prefect refuses to start tasks of a paused flow run). Each pause has a
fresh key ``<gate>-a<attempt>-<n>``: Prefect refuses a key twice, and the attempt number keeps a
retried or resumed run from reusing an old pause.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.input import RunInput
from prefect.input.run_input import Keyset, keyset_from_paused_state
from prefect.logging import get_run_logger
from prefect.states import Paused, Running

from breakglass.flows.effects import delivery, prepared
from breakglass.flows.effects.notice import Notice
from breakglass.flows.gates import intents, machine
from breakglass.flows.gates import rules as approvals
from breakglass.flows.gates.state import load_state
from breakglass.flows.run import audit
from breakglass.flows.run.records import now
from breakglass.flows.steps import REGISTRY
from breakglass.flows.steps.approval import GateCancelled
from breakglass.flows.steps.notify import NotifyParams, compose

if TYPE_CHECKING:
    from breakglass.flows.engine.runner import _Run

log = logging.getLogger("breakglass.gates")


class GateForm(RunInput):
    """Vote from the Prefect UI. Unsigned: it counts only in drills, at gates with quorum 1 that list prefect-ui."""

    name: str
    decision: Literal["approve", "reject"] = "approve"
    reason: str = ""


class SignedVotesOnly(RunInput):
    """This gate counts only signed votes: the form offers none (it would be refused); its text says how to vote."""


def form_text(state: Any, mode: str, incident: str) -> tuple[str, bool]:
    """The Resume form's text for a waiting gate, and whether an unsigned vote from the form can count."""
    counts = "prefect-ui" in state.channels and state.quorum == 1 and mode == "drill"
    lines = [f"**Gate {state.step}**: {state.quorum} approval(s) of {', '.join(sorted(state.eligible)) or 'nobody'}.",
             "", "It authorises:", *[f"- {line}" for line in state.authorises], "", f"Digest: `{state.digest}`", ""]
    signer = "fixture:NAME" if mode == "drill" else "env:YOUR_KEY_VAR"
    command = f"`breakglass approve {incident} {state.step} --as NAME --sign-with {signer}`"
    if counts:
        lines.append(f"An unsigned vote from this form counts here (a drill, quorum 1). Signed: {command}")
    else:
        lines.append(f"This gate counts only signed votes, so this form offers none. Vote with {command}; "
                     "submitting this form only resumes the view, it does not vote.")
    return "\n".join(lines), counts


class Coordinator:
    """Shared by the flow body and every gate of one flow run."""

    def __init__(self, flow_run_id: str, attempt: int, earlier_flow_runs: list[str], gate_ids: set[str]) -> None:
        self.flow_run_id = flow_run_id
        self.attempt = attempt
        self.earlier = [f for f in earlier_flow_runs if f and f != flow_run_id]
        self.gate_ids = gate_ids
        self.wake = threading.Event()
        self._inbox: list[tuple[str, str]] = []  # votes handed over in this process (serve), judged before any poll
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._waiting: dict[str, float] = {}
        self._paused_key: str | None = None
        self._keyset: Keyset | None = None
        self._pauses = 0
        self._checked_state = 0.0
        self._checked_earlier = 0.0
        self.forms: dict[str, tuple[str, bool]] = {}  # gate -> (Resume form text, whether the form's vote can count)
        self._client = get_client(sync_client=True)
        self._client.__enter__()

    def close(self) -> None:
        self._client.__exit__(None, None, None)

    # -- the flow body -------------------------------------------------------------------------
    def started(self, step: str) -> None:
        if step in self.gate_ids:
            return
        with self._lock:
            self._active.add(step)
            self._sync()

    def finished(self, step: str) -> None:
        with self._lock:
            self._active.discard(step)
            self._sync()

    # -- gates ---------------------------------------------------------------------------------
    def waiting(self, step: str, deadline: float) -> None:
        with self._lock:
            self._waiting[step] = deadline
            self._sync()

    def settled(self, step: str) -> None:
        with self._lock:
            self._waiting.pop(step, None)
            self._sync()

    def sleep(self, seconds: float) -> None:
        if self.wake.wait(seconds):
            self.wake.clear()

    def deliver(self, key: str, raw: str) -> None:
        """A vote that arrived in this process: the gate judges it now; the same input in Prefect is then skipped."""
        with self._lock:
            self._inbox.append((key, raw))
        self.wake.set()

    def fetch(self, step: str, seen: set[str], digest: Callable[[], str], identity: tuple[str, str]) -> list[tuple[str, str]]:
        """New vote inputs for ``step`` (and a UI form answer, turned into a vote)."""
        prefix = approvals.input_prefix(step)
        with self._lock:
            mine = [item for item in self._inbox if item[0].startswith(prefix)]
            self._inbox = [item for item in self._inbox if not item[0].startswith(prefix)]
        fresh = [item for item in mine if item[0] not in seen]
        if fresh:
            return fresh
        runs = [self.flow_run_id]
        if self.earlier and time.monotonic() - self._checked_earlier > 1.0:  # votes sent to a run that died
            runs += self.earlier
            self._checked_earlier = time.monotonic()
        found: list[tuple[str, str]] = []
        for flow_run_id in runs:
            try:
                for item in self._client.filter_flow_run_input(UUID(flow_run_id), prefix, 100, seen):
                    found.append((item.key, item.value))
            except Exception as exc:  # noqa: BLE001 - the API hiccups; the gate keeps waiting
                log.warning("cannot read votes from Prefect (%s); retrying", type(exc).__name__)
        if time.monotonic() - self._checked_state > 0.5:
            self._checked_state = time.monotonic()
            found += self._ui_answer(step, digest, identity)
        return found

    def _ui_answer(self, step: str, digest: Callable[[], str], identity: tuple[str, str]) -> list[tuple[str, str]]:
        try:
            state = self._client.read_flow_run(UUID(self.flow_run_id)).state
        except Exception:  # noqa: BLE001
            return []
        if state is None:
            return []
        if state.is_cancelling() or state.is_cancelled():
            raise GateCancelled("the flow run was cancelled in Prefect while the gate waited")
        with self._lock:
            keyset = self._keyset
            if not (state.is_running() and self._paused_key and keyset):
                return []
            self._paused_key, self._keyset = None, None  # someone pressed Resume in the UI
        out: list[tuple[str, str]] = []
        try:
            answer = json.loads(self._client.read_flow_run_input(UUID(self.flow_run_id), keyset["response"]))
            vote = approvals.Vote(incident=identity[0], run_key=identity[1], step=step, digest=digest(),
                                  decision=answer.get("decision", "approve"), reason=str(answer.get("reason", "")),
                                  name=str(answer.get("name", "")), channel="prefect-ui", cast_at=int(time.time()))
            out.append((keyset["response"], vote.model_dump_json()))
        except Exception:  # noqa: BLE001 - resumed without the form: nothing to count
            out.append((keyset["response"], "{}"))
        with self._lock:
            self._sync()
        return out

    # -- Prefect state -------------------------------------------------------------------------
    def _sync(self) -> None:
        """Called with the lock held: Paused exactly while gates wait and nothing else runs."""
        want = bool(self._waiting) and not self._active
        try:
            if want and self._paused_key is None:
                self._pauses += 1
                gate = sorted(self._waiting)[0]
                key = f"{gate}-a{self.attempt}-{self._pauses}"
                remaining = max(self._waiting.values()) - time.time()
                state: State[Any] = Paused(timeout_seconds=int(max(60, remaining + 600)), pause_key=key)
                keyset = keyset_from_paused_state(state)
                state.state_details.run_input_keyset = keyset  # type: ignore[assignment]  # prefect types it dict[str, str], its Keyset has Literal keys
                result = self._client.set_flow_run_state(self.flow_run_id, state)
                if result.state is not None and result.state.is_paused():
                    self._paused_key, self._keyset = key, keyset
                    text, counts = self.forms.get(gate, (f"Vote at gate {gate} (unsigned: drills with quorum 1 only)", True))
                    form = GateForm if counts else SignedVotesOnly
                    form.with_initial_data(description=text).save(keyset, flow_run_id=UUID(self.flow_run_id))
            elif not want and self._paused_key is not None:
                self._client.set_flow_run_state(self.flow_run_id, Running(), force=True)
                self._paused_key, self._keyset = None, None
        except Exception as exc:  # noqa: BLE001 - the UI shows less; the gate works on regardless
            log.warning("could not set the flow run's state in Prefect: %s", type(exc).__name__)


class GateView:
    """The ``GateHost`` a waiting approval step talks to (see ``flows.steps.approval``)."""

    def __init__(self, run: _Run, step: str) -> None:
        self.run, self.step = run, step
        record = run.writer.record
        self.initiator = record.initiator
        self.attempt = len(record.attempts)
        self.flow_run_id = record.attempts[-1].flow_run_id if record.attempts else None
        self.notice = Notice(run.inventory, run.journal, record.run_key, record.incident, run.playbook.name)

    def hold(self, ctx: Any, step: Any) -> Any:
        """Run the gate's state machine here, with this view as its host (``ctx.gate``)."""
        return machine.Gate(ctx, step, self).wait()

    def intents(self, step: str) -> list[dict[str, Any]]:
        return self.run.intents(step)

    def announce(self, state: Any) -> None:
        record = self.run.writer.record
        if self.run.gates is not None:
            self.run.gates.forms[state.step] = form_text(state, record.mode, record.incident)
        self.notice.update(state)
        if state.status != "waiting":
            self.notice.tick(state)

    def tick(self, state: Any) -> None:
        self.notice.tick(state)

    def fetch_votes(self, step: str, seen: set[str]) -> list[tuple[str, str]]:
        record = self.run.writer.record

        def digest() -> str:
            state = load_state(self.run.handle.dir, step)
            return state.digest if state else ""

        return self.run.gates.fetch(step, seen, digest, (record.incident, record.run_key))

    def waiting(self, step: str, deadline: float) -> None:
        self.run.writer.step(step, status="waiting")
        self.run.gates.waiting(step, deadline)

    def settled(self, step: str) -> None:
        self.run.writer.step(step, status="running")
        self.run.gates.settled(step)

    def sleep(self, seconds: float) -> None:
        self.run.gates.sleep(seconds)

    def escalate(self, step: str, params: Any, data: dict[str, Any]) -> None:
        ctx = self.run.step_context(step)
        keyed = compose(ctx, NotifyParams(template=params.template, to=params.notify, data=data), now())
        keyed = [(name, replace(m, key=m.key + "/escalation")) for name, m in keyed]
        rows = delivery.Sender(self.run.inventory, self.run.journal, self.run.handle.artifacts / "outbox",
                               ctx.cancel).deliver_all(keyed)
        failed = [r.recipient for r in rows if r.status == "failed"]
        if failed:
            get_run_logger().error("gate %s: escalation reached nobody at %s", step, ", ".join(failed))

    def passed(self, step: str) -> None:
        """A gate passed: prepared pauses waiting only for passed gates go out now, before Prefect schedules them."""
        record = self.run.writer.snapshot()
        done = {s.id for s in record.steps if s.status == "completed"} | {step}
        ready = [s.id for s in prepared.prepared_steps(self.run.playbook, gated=True)
                 if step in s.needs and set(s.needs) <= done]
        if ready:
            prepared.broadcast(self.run.handle.dir, record.run_key, self.run.playbook, self.run.inventory, self.run.home,
                               self.run.handle.bindings(), only=ready, journal=self.run.journal)


def recheck_gates(run: _Run, log: Any) -> None:
    """Every (re)start: a passed gate whose guarded steps have not all run must still hold.

    Its digest is computed again and its votes' TTL checked; if either fails the gate asks again.
    This also covers Prefect re-running a flow that passed a gate (a manual retry).
    """
    record = run.writer.snapshot()
    status = {s.id: s.status for s in record.steps}
    for step in run.playbook.steps:
        if not REGISTRY[step.kind].gate or status[step.id] != "completed":
            continue
        guarded = intents.guarded(run.playbook, step.id)
        if all(status[g] in ("completed", "skipped") for g in guarded):
            continue
        outputs = record.step(step.id).outputs or {}
        digest = approvals.digest_of(record.incident, record.run_key, step.id, run.intents(step.id))
        why = None
        if digest != outputs.get("digest"):
            why = "the actions it authorises changed"
        elif outputs.get("decision") == "approved":
            cutoff = time.time() - step.with_.approval_ttl
            live = [v for v in outputs.get("votes", []) if v["cast_at"] >= cutoff and v["decision"] == "approve"]
            if len(live) < step.with_.quorum:
                why = f"its approvals are older than approval_ttl ({step.with_.approval_ttl:g}s)"
        if why:
            log.warning("gate %s passed in an earlier attempt, but %s: asking again", step.id, why)
            audit.append(run.handle.dir.parent.parent, "gate.reopened", run_key=record.run_key, step=step.id, reason=why)
            run.writer.step(step.id, status="pending", outputs=None, ended_at=None)
        else:
            log.info("gate %s passed in an earlier attempt; digest unchanged and approvals within TTL", step.id)
