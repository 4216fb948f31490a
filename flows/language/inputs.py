"""Playbook inputs: parse ``--input k=v`` by the declared type, fill defaults, hash canonically."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.inventory import FIXTURE_RE, Inventory
from breakglass.flows.language.suggest import did_you_mean
from breakglass.flows.language.types import HEX32_RE, check_address

if TYPE_CHECKING:
    from breakglass.flows.spec.playbook import Playbook  # the document that declares the inputs


def _scalar(kind: str, value: Any, inventory: Inventory | None, placeholders: bool = False) -> Any:
    if placeholders and kind in ("address", "tx_hash") and isinstance(value, str) and FIXTURE_RE.fullmatch(value):
        return value  # a drill inventory's plan: the drill binds it to the fixture's own address or transaction
    if kind == "address":
        if isinstance(value, str) and FIXTURE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is a drill placeholder; give a real address")
        return check_address(value)
    if kind == "tx_hash":
        if not isinstance(value, str) or not HEX32_RE.fullmatch(value):
            raise ValueError("expected a transaction hash: 0x followed by 64 hex digits")
        return value.lower()
    if kind == "int":
        if isinstance(value, bool) or not re.fullmatch(r"-?\d+", str(value)):
            raise ValueError("expected an integer")
        return int(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value) in ("true", "false"):
            return str(value) == "true"
        raise ValueError("expected true or false")
    if kind == "chain":
        if inventory is not None and value not in inventory.chains:
            raise ValueError(f"unknown chain '{value}'{did_you_mean(str(value), inventory.chains)}")
        return str(value)
    return str(value)


def coerce(kind: str, value: Any, inventory: Inventory | None, placeholders: bool = False) -> Any:
    if kind.startswith("list["):
        inner = kind[5:-1]
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError(f"expected a list of {inner}")
        return [_scalar(inner, v, inventory, placeholders) for v in value]
    return _scalar(kind, value, inventory, placeholders)


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BreakglassError(f"--input {pair!r}: expected NAME=VALUE, e.g. --input attacker=0xAbC...")
        if key.strip() in out:
            raise BreakglassError(f"--input {key.strip()!r} is given twice")
        out[key.strip()] = value
    return out


def resolve(playbook: Playbook, given: dict[str, Any], inventory: Inventory | None,
            drill_values: dict[str, Any] | None = None, *, placeholders: bool = False) -> dict[str, Any]:
    """Typed input values, or one error listing every problem. ``placeholders`` keeps ``fixture:`` values as
    they are (`plan` on a drill inventory, where no fixture is deployed to bind them)."""
    problems: list[str] = []
    for name in given:
        if name not in playbook.inputs:
            problems.append(f"unknown input '{name}'{did_you_mean(name, playbook.inputs)}")
    out: dict[str, Any] = {}
    for name, spec in playbook.inputs.items():
        if name in given:
            raw = given[name]
        elif drill_values is not None and spec.drill is not None:
            raw = drill_values.get(name, spec.drill)
        elif spec.default is not None:
            raw = spec.default
        elif spec.is_required:
            problems.append(f"input '{name}' ({spec.type}) is required: pass --input {name}=...")
            continue
        else:
            continue
        try:
            out[name] = coerce(spec.type, raw, inventory, placeholders)
        except (ValueError, json.JSONDecodeError) as exc:
            problems.append(f"input '{name}' ({spec.type}): {exc}")
    if problems:
        raise BreakglassError(f"playbook '{playbook.name}': " + "; ".join(problems))
    return out


def digest(values: dict[str, Any]) -> str:
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
