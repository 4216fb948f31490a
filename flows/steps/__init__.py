"""The step-kind registry: one module per kind, each providing a ``HANDLER``.

A test checks that every kind here has a spec, an output model and a handler that satisfies
the ``StepKind`` protocol. Nothing is looked up by a dotted path read from YAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeAlias, Union

from pydantic import Field

from breakglass.flows.steps import approval, diff, notify, pause, revoke, rotate, snapshot, transact, wait, watchlist
from breakglass.flows.steps.base import StepBase, StepKind

REGISTRY: dict[str, StepKind] = {handler.kind: handler for handler in (snapshot.HANDLER, pause.HANDLER, transact.HANDLER, notify.HANDLER, watchlist.HANDLER, wait.HANDLER, approval.HANDLER, diff.HANDLER, revoke.HANDLER, rotate.HANDLER)}



def is_gate(kind: str) -> bool:
    """For a kind read from a run record: is it an approval gate? (An unknown kind is not.)"""
    handler = REGISTRY.get(kind)
    return handler is not None and handler.gate


if TYPE_CHECKING:
    # The union is built from the registry at runtime, which mypy cannot follow: it sees the keys
    # every kind has (StepBase declares `kind` and `with_` for it).
    AnyStep: TypeAlias = StepBase
else:
    AnyStep = Annotated[Union[tuple(h.spec for h in REGISTRY.values())], Field(discriminator="kind")]  # noqa: UP007
