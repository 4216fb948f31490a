"""What every step kind provides: a spec model, an output model, its references, its rules and a handler.

A kind owns everything that differs by kind: how it is checked at validate, what a gate in front
of it authorises (its intents), whether it may go ahead when a gate times out with ``proceed``,
and the one line that status and the Prefect UI show for its outputs. Adding a kind is one module
here plus its line in the registry; nothing outside ``steps/`` asks ``if kind == ...``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field

from breakglass.flows.language.types import Duration, Ident, Model

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.language.playbook import Playbook
    from breakglass.flows.run.context import StepContext


class StepBase(Model):
    """Keys every step has. Each kind adds ``kind: Literal[...]`` and ``with``."""

    id: Ident
    description: str = ""
    needs: list[Ident] = Field(default_factory=list, description="ids of steps this one waits for")
    if_: str | bool | None = Field(None, alias="if", description="a Jinja expression that must evaluate to true/false")
    timeout: Duration | None = Field(None, description="per-attempt time limit, e.g. 30s or 5m")
    retries: int = Field(0, ge=0, le=10, description="extra attempts after a failure")

    if TYPE_CHECKING:  # every kind declares both; said here for code that holds any step (AnyStep)
        kind: str
        with_: Any


@dataclass(frozen=True)
class Ref:
    """A name that a step uses and the inventory must define, with where it is (relative to the step)."""

    category: str  # contract | signer | chain | contact | channel | approver
    name: str
    loc: tuple[str | int, ...]


Problem = tuple[tuple[Any, ...], str, str]  # (location relative to the step, message, hint)


@runtime_checkable
class StepKind(Protocol):
    kind: ClassVar[str]
    spec: ClassVar[type[StepBase]]
    outputs: ClassVar[type[Model]]
    protective: ClassVar[bool]  # only protects: may go ahead when a gate times out with on_timeout: proceed
    gate: ClassVar[bool]  # an approval gate: the planner marks it, the runner parks the flow run while it waits
    default_timeout: ClassVar[float]  # seconds an attempt may take without `timeout:` (docs/language.md)

    def references(self, step: Any) -> Iterable[Ref]: ...

    def targets(self, step: Any, inventory: Inventory) -> list[str]: ...

    def check(self, step: Any, inventory: Inventory | None, playbook_dir: Any) -> list[Problem]: ...

    def check_steps(self, step: Any, playbook: Playbook) -> list[Problem]: ...

    def contacts(self, step: Any) -> list[str]: ...

    def intents(self, ctx: StepContext, step: Any) -> list[dict[str, Any]]: ...

    def summary(self, outputs: dict[str, Any]) -> str: ...

    def timeout_for(self, step: Any) -> float: ...

    def run(self, ctx: StepContext, step: Any) -> Model: ...


class KindBase:
    """The defaults of every hook, for kinds that have nothing to say there."""

    protective: ClassVar[bool] = False
    gate: ClassVar[bool] = False
    default_timeout: ClassVar[float] = 300.0

    def timeout_for(self, step: Any) -> float:
        """The limit of one attempt without `timeout:`; a kind whose parameters set it says so here."""
        return self.default_timeout

    def check(self, step: Any, inventory: Inventory | None, playbook_dir: Any) -> list[Problem]:
        return []

    def check_steps(self, step: Any, playbook: Playbook) -> list[Problem]:
        """Rules that look at other steps of the playbook."""
        return []

    def contacts(self, step: Any) -> list[str]:
        """Contacts and groups the step sends messages to (empty: it tells nobody)."""
        return []

    def intents(self, ctx: StepContext, step: Any) -> list[dict[str, Any]]:
        """What a gate in front of this step authorises: by default its resolved parameters."""
        return [generic_intent(step)]

    def summary(self, outputs: dict[str, Any]) -> str:
        """One line about the step's outputs, for `status` and the run's summary."""
        return ""


def generic_intent(step: Any) -> dict[str, Any]:
    return {"step": step.id, "item": "", "kind": step.kind, "params": step.with_.model_dump(mode="json", by_alias=True)}
