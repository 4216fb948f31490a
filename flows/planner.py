"""The planner: a pure function from playbook, inventory and inputs to an ordered plan.

No Prefect, no I/O, no RPC. ``breakglass plan`` prints it; the runner executes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import templating
from breakglass.flows.language.inventory import Inventory
from breakglass.flows.language.playbook import Playbook
from breakglass.flows.language.yamlpos import dotted
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
