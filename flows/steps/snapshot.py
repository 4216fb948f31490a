"""Step kind ``snapshot``: read on-chain state pinned to one block, as evidence.

The block is the one given, or ``latest`` resolved once at the step's start. Everything is
read at that block: one round trip pins it (with the chain id check), then Multicall3 ``aggregate3``
chunks where the chain has Multicall3, sent as JSON-RPC batches split to the chain's ``rpc_limits``
(``integrations/chain/batching``). The artifact records the splits, so that the evidence can be
read again the same way from the same provider.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import pausespec
from breakglass.flows.language.callargs import coerce_args, role_id, signature_problem
from breakglass.flows.language.types import AccountRef, Expr, Model, Name, NameExpr, RoleId, StorageSlot, is_template
from breakglass.flows.steps.base import KindBase, Ref, StepBase
from breakglass.integrations.chain import abi, multicall
from breakglass.integrations.chain.rpc import RpcError

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext

BALANCE_OF = abi.parse("balanceOf(address)(uint256)")
HAS_ROLE = abi.parse("hasRole(bytes32,address)(bool)")
_SECTION = {"balance": "balances", "paused": "paused", "role": "roles", "call": "calls"}


class Balances(Model):
    accounts: list[AccountRef] | Expr = Field(description="addresses, contract or signer names, or a template")
    tokens: list[Name] = Field(default_factory=lambda: ["native"], description="'native' or ERC-20 contract names")


class RoleCheck(Model):
    contract: Name
    role: RoleId = Field(description="a role name such as GUARDIAN_ROLE (hashed with keccak256) or its bytes32 id")
    accounts: list[AccountRef] | Expr


class ViewCall(Model):
    contract: Name
    signature: str = Field(description="e.g. 'totalAssets()(uint256)'")
    args: list[Any] = Field(default_factory=list)
    label: str | None = None


class Slot(Model):
    contract: Name
    slot: StorageSlot
    label: str | None = None


class SnapshotParams(Model):
    chain: NameExpr
    block: Literal["latest"] | int | Expr = "latest"
    balances: Balances | None = None
    paused: list[Name] = Field(default_factory=list, description="contracts whose pause state to read")
    roles: list[RoleCheck] = Field(default_factory=list)
    calls: list[ViewCall] = Field(default_factory=list)
    storage: list[Slot] = Field(default_factory=list)


class SnapshotStep(StepBase):
    kind: Literal["snapshot"]
    with_: SnapshotParams = Field(alias="with")


class SnapshotOutputs(Model):
    chain: str
    chain_id: int
    block_number: int
    block_hash: str
    artifact: str = Field(description="path of the JSON artifact, relative to $BREAKGLASS_HOME")
    sha256: str
    reads: int
    failed_reads: int
    round_trips: int
    endpoint: str = Field(description="which endpoint answered, by env var name and index; never the URL")
    paused: dict[str, bool] = Field(default_factory=dict)


def _names(values: list[str] | str) -> list[str]:
    return [v for v in values if not is_template(v) and not v.startswith("0x")] if isinstance(values, list) else []


class Snapshot(KindBase):
    kind: ClassVar[str] = "snapshot"
    default_timeout: ClassVar[float] = 120.0  # seconds without `timeout:` (reads only)
    spec: ClassVar[type[StepBase]] = SnapshotStep
    outputs: ClassVar[type[Model]] = SnapshotOutputs
    protective: ClassVar[bool] = True

    def summary(self, outputs: dict[str, Any]) -> str:
        if not outputs.get("block_hash"):
            return ""
        return f"block {outputs['block_number']} {outputs['block_hash'][:12]}… → {outputs.get('artifact', '')}"

    def references(self, step: SnapshotStep) -> list[Ref]:
        p = step.with_
        refs = [] if is_template(p.chain) else [Ref("chain", p.chain, ("with", "chain"))]
        if p.balances:
            refs += [Ref("account", n, ("with", "balances", "accounts", i)) for i, n in enumerate(_names(p.balances.accounts))]
            refs += [Ref("contract", t, ("with", "balances", "tokens", i)) for i, t in enumerate(p.balances.tokens) if t != "native"]
        refs += [Ref("contract", c, ("with", "paused", i)) for i, c in enumerate(p.paused)]
        for i, r in enumerate(p.roles):
            refs.append(Ref("contract", r.contract, ("with", "roles", i, "contract")))
            refs += [Ref("account", n, ("with", "roles", i, "accounts", j)) for j, n in enumerate(_names(r.accounts))]
        refs += [Ref("contract", c.contract, ("with", "calls", i, "contract")) for i, c in enumerate(p.calls)]
        refs += [Ref("contract", s.contract, ("with", "storage", i, "contract")) for i, s in enumerate(p.storage)]
        return refs

    def check(self, step: SnapshotStep, inventory: Inventory | None, playbook_dir: Any) -> list[tuple[tuple[Any, ...], str, str]]:
        out = []
        for i, call in enumerate(step.with_.calls):
            problem = signature_problem(call.signature, call.args, view=True)
            if problem:
                out.append((("with", "calls", i, "signature" if problem[0] == "function" else "args"), problem[1],
                            "A view call is written 'name(inputs)(outputs)', e.g. 'balanceOf(address)(uint256)'."))
        return out

    def targets(self, step: SnapshotStep, inventory: Inventory) -> list[str]:
        p = step.with_
        parts = [f"chain {p.chain} at block {p.block}"]
        if p.balances:
            n = len(p.balances.accounts) if isinstance(p.balances.accounts, list) else "templated"
            parts.append(f"balances of {n} account(s) in {', '.join(p.balances.tokens)}")
        if p.paused:
            parts.append("paused: " + ", ".join(f"{c} ({inventory.contracts[c].address}, {pausespec.describe_views(inventory.contracts[c])})"
                                               for c in p.paused if c in inventory.contracts))
        if p.roles:
            parts.append(f"{len(p.roles)} role check(s)")
        if p.calls or p.storage:
            parts.append(f"{len(p.calls)} view call(s), {len(p.storage)} storage slot(s)")
        return parts

    def run(self, ctx: StepContext, step: SnapshotStep) -> SnapshotOutputs:
        return take(ctx, step.with_)


def take(ctx: StepContext, p: SnapshotParams) -> SnapshotOutputs:
    """The step's work, separate from Prefect so that benchmarks can time it alone."""
    chain = ctx.inventory.chains[p.chain]
    rpc = ctx.rpc(p.chain)
    mc = ctx.address(chain.multicall3)
    tag = p.block if p.block == "latest" else hex(int(p.block))
    started = time.perf_counter()
    splits: dict[str, Any] = {"batches": []}
    head = rpc.batch([("eth_chainId", []), ("eth_getBlockByNumber", [tag, False]), ("eth_getCode", [mc, tag])],
                     record=splits["batches"])
    for answer in head:
        if isinstance(answer, RpcError):
            raise BreakglassError(f"snapshot on chain '{p.chain}' ({rpc.used.label}): {answer}")
    chain_id, block, code = int(head[0], 16), head[1], head[2]
    if chain_id != chain.chain_id:
        raise BreakglassError(
            f"chain '{p.chain}': the RPC ({rpc.used.label}) answers chain id {chain_id}, the inventory says "
            f"{chain.chain_id}. Fix the RPC URL or the inventory."
        )
    if block is None:
        raise BreakglassError(f"chain '{p.chain}': block {p.block} does not exist yet")
    number, block_hash = int(block["number"], 16), block["hash"]
    multicall_address = mc if code not in (None, "0x", "0x0") else None

    plan: list[tuple[str, dict[str, Any], multicall.Call | None]] = []
    native: list[dict[str, Any]] = []
    if p.balances:
        accounts = [(a, ctx.address(a)) for a in p.balances.accounts]
        for token in p.balances.tokens:
            token_address = "" if token == "native" else ctx.address(token)
            for ref, account in accounts:
                entry: dict[str, Any] = {"account": account, "ref": ref, "token": token}
                if token == "native":
                    if multicall_address:
                        plan.append(("balance", entry, multicall.native_balance_call(multicall_address, account)))
                    else:
                        native.append(entry)
                else:
                    entry["token_address"] = token_address
                    plan.append(("balance", entry, multicall.balance_of_call(token_address, account)))
    paused_views: dict[str, list[pausespec.View]] = {}
    for name in p.paused:
        paused_views[name] = pausespec.views(ctx.inventory.contracts[name])
        for k, view in enumerate(paused_views[name]):
            plan.append(("paused", {"contract": name, "address": ctx.address(name), "view": view.signature, "k": k},
                         multicall.Call(ctx.address(name), view.data)))
    for role in p.roles:
        rid = "0x" + role_id(role.role).hex()
        for account in [ctx.address(a) for a in role.accounts]:
            entry = {"contract": role.contract, "role": role.role, "role_id": rid, "account": account}
            data = HAS_ROLE.encode([role_id(role.role), account])
            plan.append(("role", entry, multicall.Call(ctx.address(role.contract), data)))
    calls = []
    for i, call in enumerate(p.calls):
        fn = abi.parse(call.signature)
        try:
            data = fn.encode(coerce_args(fn.inputs, call.args))
        except Exception as exc:  # noqa: BLE001 - eth_abi raises several types; all mean the same to the author
            raise BreakglassError(f"with.calls[{i}] ({call.signature}): cannot encode the arguments {call.args}: "
                                  f"{type(exc).__name__}: {exc}") from None
        calls.append(fn)
        entry = {"contract": call.contract, "signature": call.signature, "args": call.args, "label": call.label}
        plan.append(("call", entry, multicall.Call(ctx.address(call.contract), data)))

    results = multicall.read(rpc, [c for _, _, c in plan if c is not None], number, multicall_address, record=splits)
    extra = rpc.batch(
        [("eth_getBalance", [e["account"], hex(number)]) for e in native]
        + [("eth_getStorageAt", [ctx.address(s.contract), hex(int(s.slot, 16)), hex(number)]) for s in p.storage],
        record=splits["batches"],
    ) if native or p.storage else []

    out: dict[str, list[dict[str, Any]]] = {"balances": [], "paused": [], "roles": [], "calls": [], "storage": []}
    failed = 0
    fn_iter = iter(calls)
    for (what, entry, _), result in zip(plan, results, strict=True):
        decoder = next(fn_iter) if what == "call" else None
        if not result.ok:
            failed += 1
            entry = {**entry, "error": result.error or "reverted"}
        else:
            try:
                paused_view = paused_views[entry["contract"]][entry["k"]] if what == "paused" else None
                entry = {**entry, **_decode(what, result.data, decoder, paused_view)}
            except Exception as exc:  # a contract that answers garbage must not kill the evidence
                failed += 1
                entry = {**entry, "error": f"cannot decode: {exc}"}
        out[_SECTION[what]].append(entry)
    out["paused"] = _per_contract(out["paused"])
    for entry, answer in zip(native, extra[: len(native)], strict=True):
        if isinstance(answer, RpcError):
            failed += 1
            out["balances"].append({**entry, "error": str(answer)})
        else:
            out["balances"].append({**entry, "raw": str(int(answer, 16))})
    for slot, answer in zip(p.storage, extra[len(native):], strict=True):
        record = {"contract": slot.contract, "slot": slot.slot, "label": slot.label}
        if isinstance(answer, RpcError):
            failed += 1
            record["error"] = str(answer)
        else:
            record["value"] = answer
        out["storage"].append(record)
    elapsed = time.perf_counter() - started

    payload = {
        "kind": "breakglass/snapshot",
        "incident": ctx.incident,
        "run": ctx.run_id,
        "step": ctx.step_id,
        "mode": ctx.mode,
        "chain": p.chain,
        "chain_id": chain_id,
        "block_number": number,
        "block_hash": block_hash,
        "block_timestamp": datetime.fromtimestamp(int(block["timestamp"], 16), UTC).isoformat(),
        "taken_at": datetime.now(UTC).isoformat(),
        "endpoint": rpc.used.label,
        "method": "multicall3" if multicall_address else "json-rpc-batch",
        "read_seconds": round(elapsed, 4),
        "batching": {"limits": rpc.memory.applied(rpc.limits), "http_requests": len(splits["batches"]), **splits},
        **out,
    }
    path, digest = ctx.write_artifact(f"{ctx.step_id}.snapshot.json", payload)
    return SnapshotOutputs(
        chain=p.chain, chain_id=chain_id, block_number=number, block_hash=block_hash, artifact=path, sha256=digest,
        reads=len(plan) + len(extra), failed_reads=failed, round_trips=rpc.round_trips, endpoint=rpc.used.label,
        paused={e["contract"]: e["paused"] for e in out["paused"] if "paused" in e},
    )


def _decode(what: str, data: bytes, fn: abi.Function | None, view: pausespec.View | None) -> dict[str, Any]:
    if what == "balance":
        return {"raw": str(int.from_bytes(data[:32], "big"))} if len(data) >= 32 else {"error": "empty answer"}
    if what == "paused":
        assert view is not None
        return {"paused": view.is_paused(data)}
    if what == "role":
        return {"has_role": bool(HAS_ROLE.decode(data)[0])}
    assert fn is not None
    return {"result": [_jsonable(v) for v in fn.decode(data)]}


def _per_contract(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One pause entry per contract: paused only when every view says so (a failed view makes the entry an error)."""
    merged: dict[str, dict[str, Any]] = {}
    for e in entries:
        row = merged.setdefault(e["contract"], {"contract": e["contract"], "address": e["address"], "views": []})
        row["views"].append({k: v for k, v in e.items() if k in ("view", "paused", "error")})
    for row in merged.values():
        errors = [f"{v['view']}: {v['error']}" for v in row["views"] if "error" in v]
        if errors:
            row["error"] = "; ".join(errors)
        else:
            row["paused"] = all(v["paused"] for v in row["views"])
    return list(merged.values())


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if abs(value) > 2**53 else value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


HANDLER = Snapshot()
