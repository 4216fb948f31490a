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
    from breakglass.flows.run.context import StepContext
    from breakglass.flows.spec.playbook import Playbook


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

    def prepared_pause(self) -> bool:
        """A pause signed ahead and broadcast before Prefect starts (the fast path, ``effects/prepared``). A hook
        on the spec, not the handler, so that the fast path asks the step itself without importing the registry."""
        return False


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
    pauses: ClassVar[bool]  # its transactions pause contracts: a drill's time to pause is measured on them
    notifies: ClassVar[bool]  # it tells people: a drill's time to first notification is measured on it
    default_timeout: ClassVar[float]  # seconds an attempt may take without `timeout:` (docs/language.md)

    def references(self, step: Any) -> Iterable[Ref]: ...

    def targets(self, step: Any, inventory: Inventory) -> list[str]: ...

    def check(self, step: Any, inventory: Inventory | None, playbook_dir: Any) -> list[Problem]: ...

    def check_steps(self, step: Any, playbook: Playbook) -> list[Problem]: ...

    def contacts(self, step: Any) -> list[str]: ...

    def intents(self, ctx: StepContext, step: Any) -> list[dict[str, Any]]: ...

    def summary(self, outputs: dict[str, Any]) -> str: ...

    def excludes_initiator(self, step: Any) -> bool: ...

    def deliveries(self, outputs: dict[str, Any]) -> list[dict[str, Any]]: ...

    def transactions(self, outputs: dict[str, Any]) -> list[dict[str, Any]]: ...

    def listed(self, outputs: dict[str, Any]) -> int: ...

    def timeout_for(self, step: Any) -> float: ...

    def run(self, ctx: StepContext, step: Any) -> Model: ...


class KindBase:
    """The defaults of every hook, for kinds that have nothing to say there."""

    protective: ClassVar[bool] = False
    gate: ClassVar[bool] = False
    pauses: ClassVar[bool] = False
    notifies: ClassVar[bool] = False
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

    def excludes_initiator(self, step: Any) -> bool:
        """A gate in which the person who started the run may not vote (the run then needs ``--as``)."""
        return False

    def deliveries(self, outputs: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages it delivered, one row per recipient (recipient, channel, status, at), for reports and
        scorecards."""
        return []

    def transactions(self, outputs: dict[str, Any]) -> list[dict[str, Any]]:
        """The transactions its outputs name, for a report of a run without a journal: each with ``contract``,
        ``function`` (what was called), ``chain``, ``tx_hash``, ``status``, ``block_number``, ``fast_path``. By
        default the outputs themselves, when they name a transaction."""
        return [outputs] if outputs.get("tx_hash") else []

    def listed(self, outputs: dict[str, Any]) -> int:
        """How many entries it put on a watch list (a drill's ``watchlist_min_entries``)."""
        return 0


def generic_intent(step: Any) -> dict[str, Any]:
    return {"step": step.id, "item": "", "kind": step.kind, "params": step.with_.model_dump(mode="json", by_alias=True)}
