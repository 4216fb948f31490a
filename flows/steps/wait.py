"""Step kind ``wait``: let time or blocks pass (for confirmations, or a cool-down between actions)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from breakglass.flows.language.types import Duration, Model, Name
from breakglass.flows.steps.base import KindBase, Ref, StepBase

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext


class WaitParams(Model):
    seconds: Duration | None = Field(None, description="wall-clock time to wait")
    blocks: int | None = Field(None, ge=1, le=10_000, description="blocks to wait for on 'chain'")
    chain: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> WaitParams:
        if (self.seconds is None) == (self.blocks is None):
            raise ValueError("give exactly one of 'seconds' or 'blocks'")
        if self.blocks is not None and self.chain is None:
            raise ValueError("'blocks' needs 'chain'")
        return self


class WaitStep(StepBase):
    kind: Literal["wait"]
    with_: WaitParams = Field(alias="with")


class WaitOutputs(Model):
    waited_seconds: float
    block_number: int | None = None


class Wait(KindBase):
    kind: ClassVar[str] = "wait"

    def timeout_for(self, step: WaitStep) -> float:
        """The wait itself and a minute more; a wait for blocks, ten minutes."""
        return step.with_.seconds + 60.0 if step.with_.seconds is not None else 600.0
    spec: ClassVar[type[StepBase]] = WaitStep
    outputs: ClassVar[type[Model]] = WaitOutputs
    protective: ClassVar[bool] = True

    def summary(self, outputs: dict[str, Any]) -> str:
        block = f" (block {outputs['block_number']})" if outputs.get("block_number") is not None else ""
        return f"waited {outputs.get('waited_seconds', 0):g}s{block}"

    def references(self, step: WaitStep) -> list[Ref]:
        return [Ref("chain", step.with_.chain, ("with", "chain"))] if step.with_.chain else []

    def targets(self, step: WaitStep, inventory: Inventory) -> list[str]:
        p = step.with_
        return [f"{p.blocks} block(s) on {p.chain}"] if p.blocks else [f"{p.seconds:g}s"]

    def run(self, ctx: StepContext, step: WaitStep) -> WaitOutputs:
        params: WaitParams = step.with_
        started = time.monotonic()
        if params.seconds is not None:
            time.sleep(params.seconds)
            return WaitOutputs(waited_seconds=round(time.monotonic() - started, 3))
        assert params.blocks is not None and params.chain is not None  # WaitParams._one: blocks come with a chain
        rpc = ctx.rpc(params.chain)
        target = int(rpc.call("eth_blockNumber"), 16) + params.blocks
        poll = max(0.05, min(1.0, ctx.inventory.chains[params.chain].block_time / 4))
        while (current := int(rpc.call("eth_blockNumber"), 16)) < target:
            time.sleep(poll)
        return WaitOutputs(waited_seconds=round(time.monotonic() - started, 3), block_number=current)


HANDLER = Wait()
