"""The parts of a transaction's intent that every on-chain kind shares: the chain with its fee caps, and the signer.

Fees re-priced within the cap are left out, so that a bump keeps an approval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breakglass.flows.run.ports import SafeGuardian

if TYPE_CHECKING:
    from breakglass.flows.run.context import StepContext


def signer_ref(ctx: StepContext, name: str) -> str:
    try:
        signer = ctx.signer(name)
    except Exception:  # noqa: BLE001 - not unlocked (e.g. `status` outside the runner): bind by name
        return f"signer:{name}"
    return f"safe:{signer.address}" if isinstance(signer, SafeGuardian) else signer.address


def fees(ctx: StepContext, chain: str) -> dict[str, Any]:
    spec = ctx.inventory.chains[chain]
    return {"chain": chain, "chain_id": spec.chain_id, "fee_cap_gwei": spec.fees.max_fee_gwei,
            "priority_cap_gwei": spec.fees.priority_cap_gwei}
