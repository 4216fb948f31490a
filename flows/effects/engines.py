"""The engines behind a step's ports: ``ctx.tx`` sends through ``onchain`` and ``safe``, ``ctx.deliver``
through ``delivery``. ``wire`` is the one place a step context gets them (see ``flows/run/ports``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from breakglass.flows.effects import delivery, onchain, prepared, safe
from breakglass.flows.run.context import StepContext
from breakglass.flows.run.ports import Intent, Outcome, SafeGuardian
from breakglass.integrations.chain.signers import Signer


class TxEngine:
    """``ctx.tx``: the step's transactions, journaled under the run's key, sent once."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def io(self, chain: str) -> onchain.ChainIO:
        return onchain.ChainIO(self.ctx, chain)

    def send_once(self, io: Any, signer: Signer, intent: Intent, *, skip: Callable[[], bool] | None = None) -> Outcome:
        return onchain.send_once(self.ctx, io, signer, intent, self.ctx.journal, skip=skip)

    def send_safe(self, io: Any, guardian: SafeGuardian, intent: Intent, *, skip: Callable[[], bool] | None = None,
                  exclude: Sequence[str] = ()) -> tuple[Outcome, dict[str, Any]]:
        return safe.send(self.ctx, io, guardian, intent, skip=skip, exclude=exclude)

    def wait_confirmations(self, io: Any, block: int, confirmations: int) -> None:
        onchain.wait_confirmations(self.ctx, io, block, confirmations)

    def fastpath_note(self, contract: str) -> str | None:
        return prepared.fastpath_note(self.ctx.artifacts_dir.parent, self.ctx.step_id, contract)


def wire(ctx: StepContext) -> StepContext:
    """Give the context its transaction and delivery engines; returns it."""
    ctx.tx = TxEngine(ctx)
    ctx.deliver = delivery.Sender(ctx.inventory, ctx.journal, ctx.artifacts_dir / "outbox", ctx.cancel)
    return ctx
