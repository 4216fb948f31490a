"""Votes at approval gates: what a vote is, how it is signed, and the rules that decide whether it counts.

A vote is bound to one gate of one run (incident, run key, step) and to the gate's **digest**,
the hash of the exact actions it authorises. A signed vote carries an EIP-712 signature by the
roster entry's address over all of that plus the decision, the reason and the time it was cast.
The runner is the only judge: ``judge`` is pure, and ``approve`` runs it too only to tell the
voter at once why a vote would be refused.

Votes travel as Prefect flow-run inputs (``bg-vote-<step hash>-<uuid>``) through the
installation's Prefect API, so they reach the waiting run wherever it executes.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from eth_account import Account
from eth_account.messages import encode_typed_data
from pydantic import Field

from breakglass.flows.language.types import SIGNED_CHANNELS as SIGNED_CHANNELS
from breakglass.flows.language.types import UNSIGNED_CHANNELS as UNSIGNED_CHANNELS
from breakglass.flows.language.types import Channel as Channel
from breakglass.flows.language.types import Model

FUTURE_SKEW = 120  # seconds a vote's cast time may be ahead of the runner's clock

DOMAIN = {"name": "breakglass", "version": "1"}
VOTE_TYPE = [
    {"name": "incident", "type": "string"},
    {"name": "runKey", "type": "string"},
    {"name": "step", "type": "string"},
    {"name": "digest", "type": "bytes32"},
    {"name": "decision", "type": "string"},
    {"name": "reason", "type": "string"},
    {"name": "approver", "type": "string"},
    {"name": "via", "type": "string"},
    {"name": "castAt", "type": "uint64"},
]


class Vote(Model):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    incident: str
    run_key: str
    step: str
    digest: str
    decision: Literal["approve", "reject"]
    reason: str = ""
    name: str = Field(description="the roster name the vote is cast as")
    channel: Channel
    cast_at: int = Field(description="unix seconds, signed")
    signature: str | None = None
    os_user: str | None = None
    via: str = Field("", description="for Slack votes: slack:<user id>, attested by `serve`")

    def typed_data(self) -> dict[str, Any]:
        return {
            "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"}],
                      "Vote": VOTE_TYPE},
            "primaryType": "Vote",
            "domain": DOMAIN,
            "message": {"incident": self.incident, "runKey": self.run_key, "step": self.step,
                        "digest": bytes.fromhex(self.digest.removeprefix("0x")), "decision": self.decision,
                        "reason": self.reason, "approver": self.name, "via": self.via, "castAt": self.cast_at},
        }

    def signer_address(self) -> str | None:
        """The address that signed this vote, or None when unsigned or unreadable (recovered once per vote)."""
        return self._signer

    @cached_property
    def _signer(self) -> str | None:
        if not self.signature:
            return None
        try:
            signer: str = Account.recover_message(encode_typed_data(full_message=self.typed_data()), signature=self.signature)
            return signer
        except Exception:  # noqa: BLE001 - garbage signatures are refusals, never crashes
            return None


def sign(vote: Vote, account: Any) -> Vote:
    """Sign with an eth-account ``LocalAccount`` (or anything with ``sign_message``)."""
    signed = account.sign_message(encode_typed_data(full_message=vote.typed_data()))
    return vote.model_copy(update={"signature": "0x" + bytes(signed.signature).hex()})


def input_prefix(step: str) -> str:
    """Prefect input keys allow only letters, digits and dashes; step ids allow more."""
    return f"bg-vote-{hashlib.sha256(step.encode()).hexdigest()[:16]}-"


def input_key(vote: Vote) -> str:
    return input_prefix(vote.step) + vote.id


@dataclass(frozen=True)
class Rules:
    """What a gate accepts; built from the step's parameters and the run."""

    incident: str
    run_key: str
    step: str
    digest: str
    eligible: dict[str, str | None]  # roster name -> address (None: no address on the roster)
    initiator: str | None
    exclude_initiator: bool
    channels: tuple[str, ...]
    quorum: int
    ttl: float
    drill: bool
    roster: frozenset[str]
    slack_ids: dict[str, str] = field(default_factory=dict)  # roster name -> Slack user id
    attestor: str | None = None  # the address `serve` signs verified Slack clicks with


def judge(vote: Vote, rules: Rules, decided: set[str], now: float | None = None) -> str | None:
    """None if the vote counts, else why it is refused. ``decided``: names whose vote already counted."""
    now = time.time() if now is None else now
    if vote.incident != rules.incident or vote.run_key != rules.run_key or vote.step != rules.step:
        return f"the vote is for {vote.incident}/{vote.step}, not this gate ({rules.incident}/{rules.step})"
    if vote.name not in rules.roster:
        return f"'{vote.name}' is not on the roster"
    if vote.name not in rules.eligible:
        return f"'{vote.name}' is on the roster but not among this gate's approvers ({', '.join(sorted(rules.eligible))})"
    if rules.exclude_initiator and vote.name == rules.initiator:
        return f"'{vote.name}' started this run; the gate excludes the initiator (separation of duties)"
    if vote.name in decided:
        return f"'{vote.name}' has already voted at this gate; the first decisive vote stands"
    if vote.channel == "auto-approve":
        if not rules.drill:
            return "auto-approve votes count only in drills"
    elif vote.channel not in rules.channels:
        return f"votes via {vote.channel} do not count at this gate (it accepts: {', '.join(rules.channels)})"
    if vote.channel in UNSIGNED_CHANNELS:
        if not rules.drill or rules.quorum != 1:
            return f"an unsigned ({vote.channel}) vote counts only in drills with quorum 1"
    elif vote.channel in SIGNED_CHANNELS:
        expected = rules.eligible.get(vote.name)
        if not vote.signature:
            return "unsigned vote: this gate requires a signature (approve --sign-with ...)"
        if expected is None:
            return f"'{vote.name}' has no address on the roster, so no signature of theirs can be checked"
        if vote.digest.lower() != rules.digest.lower():
            return "signed over another digest: the action it approved has changed since (see `breakglass status`)"
        signer = vote.signer_address()
        if signer is None:
            return "the signature cannot be read"
        if signer.lower() != expected.lower():
            return f"signed by {signer}, which is not {vote.name}'s roster address {expected}"
    elif vote.channel == "slack":
        if rules.attestor is None:
            return "no `breakglass serve` identity is known to this installation, so Slack votes cannot be checked"
        signer = vote.signer_address()
        if signer is None or signer.lower() != rules.attestor.lower():
            return "the Slack vote is not attested by this installation's `breakglass serve`"
        slack_id = rules.slack_ids.get(vote.name)
        if not slack_id or vote.via != f"slack:{slack_id}":
            return f"the Slack user {vote.via.removeprefix('slack:') or '?'} is not {vote.name}'s Slack id on the roster"
    else:
        return f"unknown vote channel {vote.channel}"
    if vote.digest.lower() != rules.digest.lower():
        return "cast over another digest: the action has changed since (see `breakglass status`)"
    if vote.cast_at > now + FUTURE_SKEW:
        return "cast in the future (check the voter's clock)"
    if now - vote.cast_at > rules.ttl:
        return f"expired: cast {int(now - vote.cast_at)}s ago, votes are valid for {rules.ttl:g}s"
    return None


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(incident: str, run_key: str, step: str, intents: list[dict[str, Any]]) -> str:
    body = {"v": 1, "incident": incident, "run_key": run_key, "gate": step, "intents": intents}
    return "0x" + hashlib.sha256(canonical(body)).hexdigest()


def changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """What differs between two intent lists, as readable lines (for 'asks again, showing what changed')."""
    before = {i.get("step", str(n)) + "/" + str(i.get("item", "")): i for n, i in enumerate(old)}
    after = {i.get("step", str(n)) + "/" + str(i.get("item", "")): i for n, i in enumerate(new)}
    out = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"{key}: {'added' if a is None else 'removed'}")
            continue
        for name in sorted(a.keys() | b.keys()):
            if a.get(name) != b.get(name):
                out.append(f"{key}: {name} {json.dumps(a.get(name))} -> {json.dumps(b.get(name))}")
    return out
