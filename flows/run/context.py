"""What a step handler gets: the run, the resolved inventory, RPC access and an artifact folder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.inventory import FIXTURE_RE, Inventory
from breakglass.flows.language.types import ADDRESS_RE, check_address
from breakglass.flows.run.journal import Journal
from breakglass.flows.run.ports import DeliverPort, GatePort, TxPort, Unwired
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc

# Steps keep retrying an RPC outage this long (exponential backoff with jitter), within their time limit:
# a node restarting or a provider's 30-second blip does not fail a pause.
RPC_PATIENCE = 40.0


@dataclass(frozen=True)
class Bindings:
    """What a drill resolved its fixture placeholders to (addresses, and the anvil it started)."""

    addresses: dict[str, str] = field(default_factory=dict)
    rpc: dict[str, str] = field(default_factory=dict)
    scope: str = ""  # the drill's own signer-state scope (flows/effects/chainkey): never shared with live runs or other drills

    @classmethod
    def load(cls, path: Path) -> Bindings:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(addresses=data.get("addresses", {}), rpc=data.get("rpc", {}), scope=data.get("scope", ""))

    def to_json(self) -> dict[str, Any]:
        return {"addresses": self.addresses, "rpc": self.rpc, "scope": self.scope}


def endpoints(inventory: Inventory, chain: str, bindings: Bindings) -> list[Endpoint]:
    """The chain's RPC endpoints, resolved from the environment or the drill's bindings."""
    spec = inventory.chains[chain]
    out: list[Endpoint] = []
    for i, rpc in enumerate(spec.rpc):
        if rpc.env:
            url = os.environ.get(rpc.env, "").strip()
            if not url:
                raise BreakglassError(
                    f"chain '{chain}': environment variable {rpc.env} is not set. "
                    f"Export it with the chain's RPC URL (inventory '{inventory.name}')."
                )
            out.append(Endpoint(f"env:{rpc.env}#{i}", url))
        else:
            bound = bindings.rpc.get(chain)
            if not bound:
                raise BreakglassError(f"chain '{chain}': 'fixture: anvil' is only available inside `breakglass drill`")
            out.append(Endpoint("fixture:anvil", bound))
    return out


def resolve_address(inventory: Inventory, bindings: Bindings, ref: str) -> str:
    """An address literal, a contract or signer name, or a drill fixture placeholder."""
    if ADDRESS_RE.fullmatch(ref):
        return check_address(ref)
    if ref in inventory.contracts:
        return resolve_address(inventory, bindings, inventory.contracts[ref].address)
    if ref in inventory.signers:
        signer = inventory.signers[ref]
        address = getattr(signer, "address", None) or f"fixture:{getattr(signer, 'account', '')}"
        return resolve_address(inventory, bindings, address)
    if FIXTURE_RE.fullmatch(ref):
        if ref not in bindings.addresses:
            raise BreakglassError(f"'{ref}' is a drill placeholder; it resolves only inside `breakglass drill`")
        return bindings.addresses[ref]
    raise BreakglassError(f"'{ref}' is neither an address nor a contract or signer in inventory '{inventory.name}'")


@dataclass
class StepContext:
    incident: str
    run_id: str
    run_key: str
    mode: str
    step_id: str
    inventory: Inventory
    bindings: Bindings
    artifacts_dir: Path
    home: Path
    log: logging.Logger
    signers: dict[str, Any] = field(default_factory=dict)
    playbook: str = ""
    severity: str = ""
    journal: Journal = field(default_factory=lambda: cast(Journal, Unwired("journal")))  # the run's journal (flows/run/journal)
    # The ports (flows/run/ports): wired by the engine; unwired, any use refuses with a clear error.
    tx: TxPort = field(default_factory=lambda: cast(TxPort, Unwired("tx")))
    deliver: DeliverPort = field(default_factory=lambda: cast(DeliverPort, Unwired("deliver")))
    gate: GatePort = field(default_factory=lambda: cast(GatePort, Unwired("gate")))  # approval steps: the runner's gate host
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # of the steps completed so far, by id
    cancel: threading.Event = field(default_factory=threading.Event)
    _rpcs: dict[str, JsonRpc] = field(default_factory=dict)

    def check_cancelled(self) -> None:
        """Long waits call this: a step that timed out stops instead of acting in the background."""
        if self.cancel.is_set():
            raise TimeoutError("the step's time limit passed; stopped")

    def signer(self, name: str) -> Any:
        if name not in self.signers:
            raise BreakglassError(f"signer '{name}' is not unlocked for this run")
        return self.signers[name]

    def rpc(self, chain: str) -> JsonRpc:
        if chain not in self._rpcs:
            self._rpcs[chain] = JsonRpc(endpoints(self.inventory, chain, self.bindings), patience=RPC_PATIENCE,
                                        cancel=self.cancel, limits=self.inventory.chains[chain].rpc_limits.runtime())
        return self._rpcs[chain]

    def address(self, ref: str) -> str:
        return resolve_address(self.inventory, self.bindings, ref)

    def write_artifact(self, name: str, payload: dict[str, Any]) -> tuple[str, str]:
        """Write JSON durably; returns (path relative to the home, sha256 of the bytes)."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        path = self.artifacts_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return str(path.relative_to(self.home)), hashlib.sha256(data).hexdigest()

    def close(self) -> None:
        for rpc in self._rpcs.values():
            rpc.close()
        self._rpcs.clear()
