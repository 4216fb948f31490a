"""The per-contract rows of ``breakglass check``: code at the address (and behind a proxy), the paused
views answer as declared, each pause call simulates from the guardian with its arguments, the pause
window is open, and what the pauses cost. One contract's problem is its row; it never stops the others."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from breakglass.flows.effects import onchain
from breakglass.flows.language import pausespec
from breakglass.integrations.chain import abi
from breakglass.integrations.chain.revert import revert_data
from breakglass.integrations.chain.rpc import JsonRpc, RpcError

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Contract

# EIP-1967: bytes32(uint256(keccak256("eip1967.proxy.implementation")) - 1)
IMPLEMENTATION_SLOT = "0x360894a13ba1a3210667c828492db98dca3e2076c3735a920a3ca505d382bbc"
WINDOW_VIEWS = ("getPausedState",)  # Balancer: (paused, pauseWindowEndTime, bufferPeriodEndTime)


@dataclass(frozen=True)
class Row:
    check: str
    status: str
    detail: str


def _reason(exc: RpcError) -> str:
    data = revert_data(exc)
    return onchain.decoder().decode(data) if data else exc.rpc_message


def _has_code(code: Any) -> bool:
    return isinstance(code, str) and code not in ("0x", "0x0")


def code_row(rpc: JsonRpc, address: str, chain: str) -> Row:
    code, slot = rpc.batch([("eth_getCode", [address, "latest"]), ("eth_getStorageAt", [address, IMPLEMENTATION_SLOT, "latest"])])
    if isinstance(code, Exception):
        return Row("code", "fail", f"eth_getCode failed: {code}")
    if not _has_code(code):
        return Row("code", "fail", f"no contract code at {address} on chain {chain}: the address is wrong, or an EOA, "
                   "or on another chain. Fix it in the inventory; a pause sent there would burn a nonce and do nothing")
    size = (len(code) - 2) // 2
    if isinstance(slot, str) and int(slot, 16):
        impl = "0x" + slot[-40:]
        impl_code = rpc.call("eth_getCode", [impl, "latest"])
        if not _has_code(impl_code):
            return Row("code", "fail", f"proxy ({size} bytes) whose EIP-1967 implementation {impl} has no code")
        return Row("code", "ok", f"proxy ({size} bytes), EIP-1967 implementation {impl} ({(len(impl_code) - 2) // 2} bytes)")
    return Row("code", "ok", f"{size} bytes of code")


def paused_rows(rpc: JsonRpc, contract: Contract, address: str) -> tuple[list[Row], int | None]:
    """'paused view' and 'not paused' rows; returns the pause window's end (unix time) when a view declares one."""
    rows: list[Row] = []
    try:
        views = pausespec.views(contract)
    except abi.SignatureError as exc:
        return [Row("paused view", "fail", str(exc))], None
    states, window = [], None
    for view in views:
        try:
            raw = rpc.call("eth_call", [{"to": address, "data": "0x" + view.data.hex()}, "latest"])
            answer = bytes.fromhex(raw[2:])
            states.append(view.is_paused(answer))
            if view.fn.name in WINDOW_VIEWS and len(view.fn.outputs) >= 2:
                window = int(view.fn.decode(answer)[1])
        except RpcError as exc:
            rows.append(Row("paused view", "fail", f"{view.signature} reverts: {_reason(exc)}"))
        except Exception as exc:  # noqa: BLE001 - any decode failure means the view is not what the inventory says
            rows.append(Row("paused view", "fail", f"{view.signature} does not answer as declared: {exc}"))
    if rows:
        return rows, window
    rows.append(Row("paused view", "ok", f"{pausespec.describe_views(contract)} answer{'s' if len(views) == 1 else ''} as declared"))
    paused = all(states)
    rows.append(Row("not paused", "fail" if paused else "ok", "already paused" if paused else "reads as not paused"))
    return rows, window


def window_row(window: int | None, now: int) -> Row | None:
    if window is None:
        return None
    when = datetime.fromtimestamp(window, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if window < now:
        return Row("pause window", "fail", f"the pause window closed at {when}: the contract can no longer be paused "
                   "(Balancer's BAL#403); plan another way to stop it")
    return Row("pause window", "ok", f"open until {when} ({(window - now) // 86400} days)")


def pause_rows(rpc: JsonRpc, contract: Contract, address: str, sender: str, guardian: str) -> tuple[list[Row], int | None]:
    """One row for the guardian's pause calls; returns their total gas, or None when one would revert."""
    try:
        actions = pausespec.actions(contract)
    except abi.SignatureError as exc:
        return [Row("guardian can pause", "fail", f"the inventory's pause is wrong: {exc}")], None
    gas, failed = 0, []
    for action in actions:
        call = {"from": sender, "to": address, "data": "0x" + action.data.hex()}
        try:
            gas += int(rpc.call("eth_estimateGas", [call]), 16)
        except RpcError as exc:
            failed.append(f"{action.label} from {guardian} ({sender}) reverts: {_reason(exc)}")
    if failed:
        return [Row("guardian can pause", "fail", "; ".join(failed))], None
    return [Row("guardian can pause", "ok", f"{pausespec.describe(contract)} from {guardian} ({sender}) simulates fine")], gas


def contract_rows(rpc: JsonRpc, contract: Contract, address: str, chain: str, guardian: tuple[str, str] | None,
                  now: int) -> tuple[list[Row], int | None]:
    """Every row of one contract, and the gas of its pause calls (None if unknown)."""
    rows = [code_row(rpc, address, chain)]
    if rows[0].status == "fail" or guardian is None:  # without a guardian nobody here pauses it: code is all to check
        return rows, None
    more, window = paused_rows(rpc, contract, address)
    rows += more
    more, gas = pause_rows(rpc, contract, address, guardian[1], guardian[0])
    rows += more
    row = window_row(window, now)
    if row is not None:
        rows.append(row)
    return rows, gas
