"""Function signatures such as ``balanceOf(address)(uint256)``: parse, encode, decode."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak


class SignatureError(ValueError):
    pass


def _address_word(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        raise ValueError("not an address")
    return bytes(12) + bytes.fromhex(value[2:])


def _uint_word(value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
        raise ValueError("not a uint256")
    return value.to_bytes(32, "big")


def _bytes32_word(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError("not 32 bytes")
    return value


_WORD_ENCODERS = {"address": _address_word, "uint256": _uint_word, "bytes32": _bytes32_word}


@dataclass(frozen=True)
class Function:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @cached_property
    def selector(self) -> bytes:
        return keccak(text=f"{self.name}({','.join(self.inputs)})")[:4]

    @cached_property
    def _static(self) -> bool:
        return all(t in _WORD_ENCODERS for t in self.inputs)

    def encode(self, args: list[Any] | tuple[Any, ...] = ()) -> bytes:
        if len(args) != len(self.inputs):
            raise SignatureError(f"{self.name} takes {len(self.inputs)} argument(s), got {len(args)}")
        if self._static:  # the common read shapes, without eth_abi's generic (and slow) codec
            try:
                return self.selector + b"".join(_WORD_ENCODERS[t](a) for t, a in zip(self.inputs, args, strict=True))
            except (TypeError, ValueError):
                pass  # let eth_abi produce its precise error
        return self.selector + abi_encode(list(self.inputs), list(args))

    def decode(self, data: bytes) -> tuple[Any, ...]:
        return tuple(abi_decode(list(self.outputs), data)) if self.outputs else ()


def split_types(text: str) -> tuple[str, ...]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SignatureError("unbalanced parentheses")
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth:
        raise SignatureError("unbalanced parentheses")
    tail = "".join(current).strip()
    if tail:
        parts.append(tail)
    if any(not p for p in parts):
        raise SignatureError("empty type in list")
    return tuple(parts)


def _groups(text: str) -> list[str]:
    groups, depth, start = [], 0, None
    for i, char in enumerate(text):
        if char == "(":
            if depth == 0:
                start = i + 1
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0 and start is not None:
                groups.append(text[start:i])
    return groups


def parse(signature: str) -> Function:
    """``name(in,...)`` or ``name(in,...)(out,...)``; a ``returns`` keyword is accepted too."""
    text = signature.replace(" returns ", "").strip()
    name, sep, rest = text.partition("(")
    if not sep or not name.isidentifier():
        raise SignatureError(f"{signature!r} is not a function signature like 'balanceOf(address)(uint256)'")
    groups = _groups("(" + rest)
    if not 1 <= len(groups) <= 2 or not text.endswith(")"):
        raise SignatureError(f"{signature!r} is not a function signature like 'balanceOf(address)(uint256)'")
    inputs = split_types(groups[0])
    outputs = split_types(groups[1]) if len(groups) == 2 else ()
    return Function(name, inputs, outputs)
