"""The planner: a pure function from playbook, inventory and inputs to an ordered plan.

No Prefect, no I/O, no RPC. ``breakglass plan`` prints it; the runner executes it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import templating
from breakglass.flows.language.inventory import Inventory
from breakglass.flows.language.yamlpos import dotted
from breakglass.flows.spec.playbook import Playbook
from breakglass.flows.steps import REGISTRY

if TYPE_CHECKING:
    from breakglass.flows.steps import AnyStep


@dataclass(frozen=True)
class PlannedStep:
    id: str
    kind: str
    wave: int
    needs: tuple[str, ...]
    condition: str | None
    targets: tuple[str, ...]
    gate: bool
    timeout: float | None
    retries: int


@dataclass(frozen=True)
class Plan:
    playbook: str
    severity: str
    inventory: str
    mode: str
    inputs: dict[str, Any]
    steps: tuple[PlannedStep, ...]

    @property
    def waves(self) -> list[list[str]]:
        out: list[list[str]] = []
        for step in self.steps:
            while len(out) <= step.wave:
                out.append([])
            out[step.wave].append(step.id)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook, "severity": self.severity, "inventory": self.inventory, "mode": self.mode,
            "inputs": self.inputs, "waves": self.waves,
            "steps": [
                {"id": s.id, "kind": s.kind, "wave": s.wave, "needs": list(s.needs), "if": s.condition,
                 "targets": list(s.targets), "gate": s.gate, "timeout": s.timeout, "retries": s.retries}
                for s in self.steps
            ],
        }


def order(playbook: Playbook) -> list[tuple[Any, int]]:
    """Steps in execution order with their wave (longest chain of needs); ties keep file order."""
    wave: dict[str, int] = {}
    remaining = list(playbook.steps)
    out: list[tuple[Any, int]] = []
    while remaining:
        ready = [s for s in remaining if all(n in wave for n in s.needs)]
        if not ready:
            raise ValueError("needs form a cycle")  # validation reports cycles first
        for step in ready:
            wave[step.id] = max((wave[n] + 1 for n in step.needs), default=0)
        remaining = [s for s in remaining if s.id not in wave]
        out += [(s, wave[s.id]) for s in ready]
    return sorted(out, key=lambda item: (item[1], playbook.steps.index(item[0])))


@dataclass(frozen=True)
class Skip:
    """A step that will not run because one of its needs failed or was skipped."""

    step: str
    blocker: str  # the first of its needs (in the order written) that failed or was skipped
    why: str  # "failed" | "was skipped"

    @property
    def reason(self) -> str:
        return f"needs '{self.blocker}', which {self.why}"


def ready(order: Sequence[tuple[Any, int]], completed: Collection[str], skipped: Collection[str],
          failed: Collection[str], running: Collection[str], *, stopping: bool = False) -> tuple[list[str], list[Skip]]:
    """The scheduler's decision, without running anything: which steps start now (every need completed),
    and which are skipped because a need failed or was skipped, in ``order``.

    Skips are transitive in one call: ``order`` puts a step after its needs, so a step skipped here
    blocks its own dependents further down. A step whose need is still running (an approval gate
    waiting for votes, say) neither starts nor is skipped. A run that is stopping starts nothing
    and skips nothing: what never ran stays pending for a resume.
    """
    if stopping:
        return [], []
    gone = set(skipped)
    start: list[str] = []
    skips: list[Skip] = []
    for step, _ in order:
        sid = step.id
        if sid in completed or sid in gone or sid in failed or sid in running:
            continue
        blocker = next((n for n in step.needs if n in failed or n in gone), None)
        if blocker is not None:
            skips.append(Skip(sid, blocker, "failed" if blocker in failed else "was skipped"))
            gone.add(sid)
        elif all(n in completed for n in step.needs):
            start.append(sid)
    return start, skips


def resolve_step(step: AnyStep, context: dict[str, Any]) -> AnyStep:
    """The step with its templates rendered and its parameters checked again as concrete values."""
    raw = step.model_dump(mode="json", by_alias=True)
    raw["with"] = templating.render(raw["with"], context)
    try:
        return type(step).model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if isinstance(p, int) or p in _keys(raw))
            problems.append(f"{dotted(loc)}: {err['msg']}")
        raise BreakglassError("after rendering templates: " + "; ".join(problems)) from None


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _preview(step: AnyStep, inputs: dict[str, Any]) -> AnyStep:
    """Render what can be known before running (inputs); later outputs stay as templates."""
    try:
        return resolve_step(step, {"inputs": inputs, "alert": templating.NO_ALERT, "steps": {}})
    except (templating.TemplateError, BreakglassError):
        return step


def plan(playbook: Playbook, inventory: Inventory, inputs: dict[str, Any]) -> Plan:
    steps = tuple(
        PlannedStep(
            id=step.id, kind=step.kind, wave=wave, needs=tuple(step.needs),
            condition=None if step.if_ is None else str(step.if_),
            targets=tuple(REGISTRY[step.kind].targets(_preview(step, inputs), inventory)),
            gate=REGISTRY[step.kind].gate,
            timeout=step.timeout, retries=step.retries,
        )
        for step, wave in order(playbook)
    )
    return Plan(playbook.name, playbook.severity, inventory.name, inventory.mode, inputs, steps)
