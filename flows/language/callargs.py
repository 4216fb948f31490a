"""Arguments for a contract call as YAML gives them: hex strings for bytes, role names for bytes32 roles,
decimal or 0x strings for integers. Used by ``transact``, ``snapshot`` view calls and drill actions."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak

from breakglass.flows.language.types import HEX32_RE, NAME_RE, is_template


def role_id(role: str) -> bytes:
    """A role as OpenZeppelin's AccessControl names it: ``DEFAULT_ADMIN_ROLE`` is zero, any other name is
    keccak256 of the name, and a 0x bytes32 is taken as it is."""
    if HEX32_RE.fullmatch(role):
        return bytes.fromhex(role[2:])
    return bytes(32) if role == "DEFAULT_ADMIN_ROLE" else keccak(text=role)


def coerce_args(types: tuple[str, ...], args: list[Any]) -> list[Any]:
    """YAML-friendly arguments: hex strings for bytes, role names for bytes32 roles, decimal strings for ints."""
    if len(types) != len(args):
        raise ValueError(f"{len(types)} argument(s) expected, {len(args)} given")
    out: list[Any] = []
    for kind, arg in zip(types, args, strict=True):
        if kind == "bytes32" and isinstance(arg, str) and NAME_RE.fullmatch(arg):
            out.append(role_id(arg))
        elif kind.startswith("bytes") and isinstance(arg, str) and arg.startswith("0x"):
            out.append(bytes.fromhex(arg[2:]))
        elif kind.startswith(("uint", "int")) and isinstance(arg, str):
            out.append(int(arg, 0))
        elif kind == "bool" and isinstance(arg, str) and arg.lower() in ("true", "false"):
            out.append(arg.lower() == "true")
        else:
            out.append(arg)
    return out


def signature_problem(signature: str, args: list[Any], *, view: bool = False) -> tuple[str, str] | None:
    """(where, what) when ``signature`` does not parse or literal ``args`` do not fit it; where is 'function' or 'args'.
    Arguments written as templates are checked at run time, when they have values."""
    from breakglass.integrations.chain import abi

    try:
        fn = abi.parse(signature)
    except abi.SignatureError as exc:
        return "function", str(exc)
    if view and not fn.outputs:
        return "function", f"{signature!r} declares no outputs: write them, e.g. 'totalAssets()(uint256)'"
    if any(isinstance(a, str) and is_template(a) for a in args):
        return None
    try:
        fn.encode(coerce_args(fn.inputs, list(args)))
    except Exception as exc:  # noqa: BLE001 - eth_abi raises several types; all mean the same to the author
        return "args", f"{signature} cannot take {list(args)!r}: {exc}"
    return None
