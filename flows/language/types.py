"""Value types shared by playbooks and inventories.

Fields that may hold a template accept ``{{ ... }}`` at load time; the concrete type is
checked again after rendering. Literal values are checked at load time, so a typo in an
address is reported with its line before any incident.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic import BaseModel as _BaseModel

IDENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
HEX32_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
TEMPLATE_RE = re.compile(r"\{\{|\{%")


class Model(_BaseModel):
    """Every spec model: immutable, and unknown keys are errors, never warnings."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and bool(TEMPLATE_RE.search(value))


@lru_cache(maxsize=65536)
def check_address(value: str) -> str:
    """A 0x address; mixed case must be a valid EIP-55 checksum. Returns the checksummed form."""
    if not isinstance(value, str) or not ADDRESS_RE.fullmatch(value):
        raise ValueError("not an address: expected 0x followed by 40 hex digits")
    if value != value.lower() and value != value.upper()[:2].lower() + value[2:].upper() and not is_checksum_address(
        value
    ):
        raise ValueError(f"bad EIP-55 checksum; did you mean {to_checksum_address(value)}?")
    return to_checksum_address(value)


def _ident(value: str) -> str:
    if not isinstance(value, str) or not IDENT_RE.fullmatch(value):
        raise ValueError("must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")
    return value


def _name(value: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError("must start with a letter, then letters, digits, '_' or '-' (at most 64)")
    return value


def _hex32(value: str) -> str:
    if not isinstance(value, str) or not HEX32_RE.fullmatch(value):
        raise ValueError("expected 0x followed by 64 hex digits")
    return value.lower()


def _address_or_template(value: str) -> str:
    return value if is_template(value) else check_address(value)


def _account_ref(value: str) -> str:
    if is_template(value):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return check_address(value)
    return _name(value)


def _name_or_template(value: str) -> str:
    return value if is_template(value) else _name(value)


def _hex32_or_template(value: str) -> str:
    return value if is_template(value) else _hex32(value)


_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.fullmatch(str(value).strip())
        if not match:
            raise ValueError("expected a duration like 30s, 5m or 1h")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Ident = Annotated[str, AfterValidator(_ident)]
Name = Annotated[str, AfterValidator(_name)]
NameExpr = Annotated[str, AfterValidator(_name_or_template), Field(description="a name, or a template such as '{{ inputs.chain }}'")]
Address = Annotated[str, AfterValidator(check_address)]
AddressExpr = Annotated[str, AfterValidator(_address_or_template)]
AccountRef = Annotated[str, AfterValidator(_account_ref), Field(description="an address, a contract or signer name, or a template")]


class Hex32Allowed:
    """Marker: this field legitimately holds 32-byte hex, so the key-literal check skips it."""


HEX32_OK = Hex32Allowed()

TxHash = Annotated[str, AfterValidator(_hex32_or_template), HEX32_OK]
Bytes32 = Annotated[str, AfterValidator(_hex32_or_template), HEX32_OK]
StorageSlot = Annotated[str, AfterValidator(lambda v: v if is_template(v) or re.fullmatch(r"0x[0-9a-fA-F]{1,64}", v) else _hex32(v)), HEX32_OK]
RoleId = Annotated[str, AfterValidator(lambda v: v if is_template(v) or NAME_RE.fullmatch(v) or HEX32_RE.fullmatch(v) else _hex32(v)), HEX32_OK]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": _DURATION_RE.pattern}]}),
]
Expr = Annotated[str, Field(pattern=r"\{\{.*\}\}", description="a template expression, e.g. '{{ inputs.attackers }}'")]


# How a vote on a gate may arrive; signed ones carry an EIP-712 signature (flows/gates/rules).
Channel = Literal["signed", "slack", "cli-unsigned", "prefect-ui", "auto-approve"]
SIGNED_CHANNELS = ("signed", "auto-approve")
UNSIGNED_CHANNELS = ("cli-unsigned", "prefect-ui")
