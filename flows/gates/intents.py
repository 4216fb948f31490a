"""What a gate authorises: the intent of every step it guards, in a canonical form that is hashed.

For on-chain steps an intent is chain, target, function and selector, decoded arguments and
calldata, signer (or Safe), value and fee cap; fees re-priced within the cap are left out, so a
bump keeps the approval. For messages it is the template, the SHA-256 of each recipient's
rendered subject and text (with ``now`` fixed, since it is filled in at sending) and attachments,
and the recipients with their addresses. Other kinds are bound by their resolved parameters.

A guarded step whose parameters depend on outputs decided after the gate is bound by its
unresolved parameters and says so: the approver sees an expression, not a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breakglass.flows import planner
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import templating
from breakglass.flows.steps import REGISTRY
from breakglass.flows.steps.base import generic_intent
from breakglass.flows.steps.graph import guarded as guarded  # the gate host and the runner ask intents
from breakglass.integrations.chain import abi

if TYPE_CHECKING:
    from breakglass.flows.run.context import StepContext
    from breakglass.flows.steps import AnyStep


def of_step(ctx: StepContext, step: AnyStep, context: dict[str, Any]) -> list[dict[str, Any]]:
    """The step's intents resolved against ``context``; unresolved parameters are bound as written."""
    try:
        resolved = planner.resolve_step(step, context)
        return REGISTRY[step.kind].intents(ctx, resolved)
    except (templating.TemplateError, KeyError, BreakglassError, abi.SignatureError) as exc:
        unresolved = generic_intent(step)
        unresolved["unresolved"] = f"decided after the gate: {exc}"
        return [unresolved]


def describe(intent: dict[str, Any]) -> str:
    """One line for a human: what will happen if the gate passes."""
    kind = intent.get("kind")
    if intent.get("unresolved"):
        return f"{intent['step']} [{kind}]: parameters as written ({intent['unresolved']})"
    if "function" in intent:  # a transaction
        args = f"({', '.join(intent['args'])})" if intent.get("args") else ""
        return (f"{intent['step']}: {intent['function'].split('(')[0]}{args} on {intent['item']} {intent['target']} "
                f"(chain {intent['chain']}, id {intent['chain_id']}) selector {intent['selector']} "
                f"signed by {intent['signer']}, value {intent['value']}, fee cap {intent['fee_cap_gwei']:g} gwei"
                + (f"; {intent['condition']}" if intent.get("condition") else ""))
    if "template" in intent:  # a message
        return (f"{intent['step']}: template {intent['template']} to {intent['item']} ({intent['recipient_kind']}) "
                f"via {', '.join(intent['addresses'])}; text sha256 {intent['text_sha256'][:16]}…")
    return f"{intent['step']} [{kind}]"
