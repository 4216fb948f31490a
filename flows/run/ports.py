"""The ports a step reaches the world through: ``ctx.tx`` (transactions), ``ctx.deliver`` (messages)
and ``ctx.gate`` (a waiting approval gate).

Steps are written against these Protocols and the value types beside them, never against the
engines: so the language, the planner and the steps load without web3's signing path, Prefect or
slack_sdk, and a step kind is one module. The engine wires in the implementations
(``flows/effects/engines.wire`` for transactions and messages, ``flows/engine/gatehost`` for gates)
when it builds a step's context. A port that was not wired refuses with a clear error instead of
doing half a thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from breakglass.flows.errors import BreakglassError

if TYPE_CHECKING:
    from breakglass.integrations.chain.rpc import JsonRpc
    from breakglass.integrations.chain.signers import Signer


class TxRejected(BreakglassError):
    """The transaction would revert (or did); the message carries the decoded reason."""


class FeeCapTooLow(BreakglassError):
    """The base fee is above the inventory's cap: nothing is signed."""


class SafeRefused(BreakglassError):
    """The Safe changed under us, or disagrees with our hash: nothing is executed."""


@dataclass(frozen=True)
class Intent:
    """One transaction a step means to land exactly once; ``key`` names it across retries and resumes."""

    key: str
    chain: str
    to: str
    data: bytes
    label: str
    value: int = 0


@dataclass
class Outcome:
    status: str  # mined | reverted | nonce_consumed | skipped
    tx_hash: str | None = None
    block_number: int | None = None
    gas_used: int | None = None
    nonce: int | None = None
    hashes: list[str] = field(default_factory=list)
    reason: str | None = None
    submitted_via: str | None = None


@dataclass(frozen=True)
class SafeGuardian:
    """A Safe that acts through owner signatures; ``owners`` are the owner keys this process holds."""

    name: str
    address: str
    chain: str
    owners: dict[str, Signer]
    executor: Signer
    label: str = ""

    def __repr__(self) -> str:
        return f"SafeGuardian({self.name}, {self.address}, owners held: {sorted(self.owners)})"


class ChainReader(Protocol):
    """A chain as a step reads it: calls and the head, through the inventory's RPCs."""

    name: str
    rpc: JsonRpc
    spec: Any  # the inventory's chain entry
    poll: float

    def call(self, sender: str, to: str, data: bytes, block: str = "latest", value: int = 0) -> bytes: ...

    def block_number(self) -> int: ...


class TxPort(Protocol):
    """``ctx.tx``: sends a step's transactions exactly once (an EOA's nonce record, or a Safe's signatures)."""

    def io(self, chain: str) -> ChainReader: ...

    def send_once(self, io: ChainReader, signer: Signer, intent: Intent, *,
                  skip: Callable[[], bool] | None = None) -> Outcome: ...

    def send_safe(self, io: ChainReader, guardian: SafeGuardian, intent: Intent, *,
                  skip: Callable[[], bool] | None = None, exclude: Sequence[str] = ()) -> tuple[Outcome, dict[str, Any]]: ...

    def wait_confirmations(self, io: ChainReader, block: int, confirmations: int) -> None: ...

    def fastpath_note(self, contract: str) -> str | None: ...


class DeliverPort(Protocol):
    """``ctx.deliver``: each message once per recipient and channel, journaled before it is sent."""

    def deliver_all(self, keyed: list[Any]) -> list[Any]: ...


class GatePort(Protocol):
    """``ctx.gate``: holds an approval step until its quorum, its timeout or a rejection."""

    def hold(self, ctx: Any, step: Any) -> Any: ...


class Unwired:
    """Stands in for a port nobody wired: any use refuses, naming the port."""

    def __init__(self, port: str) -> None:
        self._port = port

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise BreakglassError(f"internal: this step's context has no '{self._port}' port wired "
                              f"(build contexts through the engine, or call flows.effects.engines.wire)")

    def __bool__(self) -> bool:
        return False
