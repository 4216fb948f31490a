"""What every step kind provides: a spec model, an output model, its references, and a handler."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field

from breakglass.flows.types import Duration, Ident, Model

if TYPE_CHECKING:
    from breakglass.flows.context import StepContext
    from breakglass.flows.inventory import Inventory


class StepBase(Model):
    """Keys every step has. Each kind adds ``kind: Literal[...]`` and ``with``."""

    id: Ident
    description: str = ""
    needs: list[Ident] = Field(default_factory=list, description="ids of steps this one waits for")
    if_: str | bool | None = Field(None, alias="if", description="a Jinja expression that must evaluate to true/false")
    timeout: Duration | None = Field(None, description="per-attempt time limit, e.g. 30s or 5m")
    retries: int = Field(0, ge=0, le=10, description="extra attempts after a failure")


@dataclass(frozen=True)
class Ref:
    """A name that a step uses and the inventory must define, with where it is (relative to the step)."""

    category: str  # contract | signer | chain | contact | channel | approver
    name: str
    loc: tuple[str | int, ...]


@runtime_checkable
class StepKind(Protocol):
    kind: ClassVar[str]
    spec: ClassVar[type[StepBase]]
    outputs: ClassVar[type[Model]]

    def references(self, step: Any) -> Iterable[Ref]: ...

    def targets(self, step: Any, inventory: Inventory) -> list[str]: ...

    def run(self, ctx: StepContext, step: Any) -> Model: ...
