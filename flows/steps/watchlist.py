"""Step kind ``watchlist``: publish the incident's watch list of attacker addresses.

Entries come from inputs, the alert and earlier steps' outputs. Addresses are checked (EIP-55)
and identified by CAIP-10; every change makes a new version (files under the incident), and each
version is posted once to each sink (contacts or groups, over their channels: email gets the CSV
and JSON attached, webhooks the JSON, Slack a summary).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.inventory import recipients
from breakglass.flows.language.types import AddressExpr, Expr, Model, Name, NameExpr, TxHash
from breakglass.flows.run import watchlist_versions as watchlists
from breakglass.flows.steps.base import KindBase, Ref, StepBase
from breakglass.integrations.notify.base import Message

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext


class Entry(Model):
    address: AddressExpr
    chain: NameExpr
    role: str = Field(description="e.g. attacker_eoa, exploit_contract, receiving, bridge_deposit, cex_deposit")
    label: str = ""
    tx_hashes: list[TxHash] | Expr = Field(default_factory=list)
    asset: str = ""
    amount: str = ""
    block: int | Expr | None = None
    confidence: Literal["low", "medium", "high"] = "medium"
    notes: str = ""


class WatchlistParams(Model):
    add: list[Entry] = Field(default_factory=list)
    retract: list[AddressExpr] | Expr = Field(default_factory=list, description="addresses to mark retracted (kept, never deleted); a list or one template that gives a list")
    publish: list[Name] = Field(default_factory=list, description="contacts or groups that get each version once")
    tlp: Literal["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"] = "AMBER"


class WatchlistStep(StepBase):
    kind: Literal["watchlist"]
    with_: WatchlistParams = Field(alias="with")


class WatchlistOutputs(Model):
    version: int
    entries: int
    active: int
    retracted: int
    json_file: str
    csv_file: str
    deliveries: list[dict[str, Any]]


class Watchlist(KindBase):
    kind: ClassVar[str] = "watchlist"
    default_timeout: ClassVar[float] = 300.0  # seconds without `timeout:` (a version file and its posts)
    spec: ClassVar[type[StepBase]] = WatchlistStep
    outputs: ClassVar[type[Model]] = WatchlistOutputs

    def references(self, step: WatchlistStep) -> list[Ref]:
        refs = [Ref("contact", n, ("with", "publish", i)) for i, n in enumerate(step.with_.publish)]
        return refs + [Ref("chain", e.chain, ("with", "add", i, "chain")) for i, e in enumerate(step.with_.add)
                       if "{" not in e.chain]

    def listed(self, outputs: dict[str, Any]) -> int:
        return int(outputs.get("entries", 0))

    def summary(self, outputs: dict[str, Any]) -> str:
        if outputs.get("version") is None:
            return ""
        return (f"version {outputs['version']}, {outputs.get('entries', 0)} entries ({outputs.get('active', 0)} active, "
                f"{outputs.get('retracted', 0)} retracted)")

    def contacts(self, step: WatchlistStep) -> list[str]:
        return list(step.with_.publish)

    def targets(self, step: WatchlistStep, inventory: Inventory) -> list[str]:
        p = step.with_
        return [f"add {len(p.add)}, retract {len(p.retract)}; publish to {', '.join(p.publish) or 'files only'}"]

    def run(self, ctx: StepContext, step: WatchlistStep) -> WatchlistOutputs:
        p: WatchlistParams = step.with_
        add = []
        for entry in p.add:
            if entry.chain not in ctx.inventory.chains:
                raise BreakglassError(f"with.add: unknown chain '{entry.chain}'")
            item = entry.model_dump()
            item["chain_id"] = ctx.inventory.chains[entry.chain].chain_id
            add.append(item)
        folder = ctx.artifacts_dir.parent.parent.parent / "watchlist"
        document = watchlists.make_version(folder, ctx.incident, ctx.mode == "drill", f"{ctx.run_key}/{ctx.step_id}",
                                           add, list(p.retract), p.tlp)
        number = document["version"]
        csv_bytes = (folder / f"v{number}.csv").read_bytes()
        json_bytes = (folder / f"v{number}.json").read_bytes()
        rows: list[dict[str, Any]] = []
        if p.publish:
            names = recipients(ctx.inventory, p.publish, [])
            prefix = "[DRILL] " if ctx.mode == "drill" else ""
            active = [e for e in document["entries"] if e["status"] == "active"]
            summary = "\n".join(f"- {e['caip10']} {e.get('role', '')} {e.get('label', '')}".rstrip() for e in active)
            keyed = [(name, Message(
                key=f"{ctx.incident}/watchlist/v{number}/{name}",
                subject=f"{prefix}Watch list v{number} for {ctx.incident} (TLP:{p.tlp})",
                text=f"{prefix}Watch list v{number} for incident {ctx.incident}: {len(active)} active address(es).\n{summary}\n",
                attachments={f"{ctx.incident}-watchlist-v{number}.csv": csv_bytes,
                             f"{ctx.incident}-watchlist-v{number}.json": json_bytes},
                payload={"watchlist": json.loads(json_bytes)})) for name in names]
            rows = [r.to_json() for r in ctx.deliver.deliver_all(keyed)]
            failed = [r["recipient"] for r in rows if r["status"] == "failed"]
            if failed:
                detail = "; ".join(f"{r['recipient']} ({' | '.join(r['errors']) or 'no channel'})" for r in rows if r["status"] == "failed")
                raise BreakglassError(f"watch list v{number} reached nobody at {detail}")
        return WatchlistOutputs(
            version=number, entries=len(document["entries"]),
            active=sum(e["status"] == "active" for e in document["entries"]),
            retracted=sum(e["status"] == "retracted" for e in document["entries"]),
            json_file=str((folder / f"v{number}.json").relative_to(ctx.home)),
            csv_file=str((folder / f"v{number}.csv").relative_to(ctx.home)), deliveries=rows,
        )


HANDLER = Watchlist()
