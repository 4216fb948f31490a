"""How a contract is paused and how its pause state is read, as real protocols do it.

``pause:`` is a signature without arguments (``pause()``), a mapping ``{function: "pause(string)",
args: ["breakglass"]}``, or a list of them when one call does not stop everything; each is its own
exactly-once intent. ``paused:`` is a view signature (``paused()``) or ``{view: ..., args: [...],
result: N, paused_when: {equals: N} | {bits: MASK}}``, or a list of them; the contract reads as
paused only when every view says so. A ``bool`` result is paused when true, an integer result when
non-zero (unless ``paused_when`` says otherwise).

Everything that pauses or reads a pause state (the pause step, prepare and the fast path, the gate
digest, check, snapshot, the scorecard) goes through :func:`actions` and :func:`views`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Discriminator, Field, Tag, model_validator

from breakglass.flows.language.callargs import coerce_args
from breakglass.flows.language.types import Model
from breakglass.integrations.chain import abi

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Contract


class PauseCall(Model):
    function: str = Field(description="the pause function's signature, e.g. 'pause(string)' or 'setPaused(bool)'")
    args: list[Any] = Field(default_factory=list, description="its arguments, typed by the signature (bools, ints, "
                            "addresses, role names for bytes32, strings)")


class PausedWhen(Model):
    equals: int | str | None = Field(None, description="paused when the integer result equals this")
    bits: int | str | None = Field(None, description="paused when every bit of this mask is set (e.g. EigenLayer's bitmap)")

    @model_validator(mode="after")
    def _exactly_one(self) -> PausedWhen:
        if (self.equals is None) == (self.bits is None):
            raise ValueError("give exactly one of 'equals' or 'bits'")
        for value in (self.equals, self.bits):
            if isinstance(value, str):
                try:
                    int(value, 0)
                except ValueError:
                    raise ValueError(f"{value!r} is not an integer (decimal or 0x hex)") from None
        return self

    def test(self, value: int) -> bool:
        if self.equals is not None:
            return value == _int(self.equals)
        mask = _int(self.bits)
        return value & mask == mask


class PausedView(Model):
    view: str = Field(description="the view's signature with its outputs, e.g. 'getPausedState()(bool,uint256,uint256)'")
    args: list[Any] = Field(default_factory=list)
    result: int = Field(0, ge=0, description="index of the output that says paused (default 0)")
    paused_when: PausedWhen | None = Field(None, description="for an integer result: when it means paused (default non-zero)")


def _kind(value: Any) -> str:
    return "str" if isinstance(value, str) else "list" if isinstance(value, list) else "dict"


PauseItem = Annotated[Annotated[str, Tag("str")] | Annotated[PauseCall, Tag("dict")], Discriminator(_kind)]
PausedItem = Annotated[Annotated[str, Tag("str")] | Annotated[PausedView, Tag("dict")], Discriminator(_kind)]
PauseSpec = Annotated[Annotated[str, Tag("str")] | Annotated[PauseCall, Tag("dict")]
                      | Annotated[list[PauseItem], Field(min_length=1), Tag("list")], Discriminator(_kind)]
PausedSpec = Annotated[Annotated[str, Tag("str")] | Annotated[PausedView, Tag("dict")]
                       | Annotated[list[PausedItem], Field(min_length=1), Tag("list")], Discriminator(_kind)]


def _int(value: Any) -> int:
    return int(value, 0) if isinstance(value, str) else int(value)


@dataclass(frozen=True)
class Action:
    """One pause call: its own intent (``suffix`` keys the journal), calldata encoded once."""

    index: int
    signature: str
    args: tuple[Any, ...]
    data: bytes
    fn: abi.Function

    @property
    def suffix(self) -> str:
        return "pause" if self.index == 0 else f"pause.{self.index + 1}"

    @property
    def label(self) -> str:
        return describe_call(self.signature, self.args)


@dataclass(frozen=True)
class View:
    signature: str
    fn: abi.Function
    data: bytes
    result: int
    rule: PausedWhen | None

    def is_paused(self, answer: bytes) -> bool:
        """Raises ValueError when the answer is not what the signature declares (e.g. empty: no code there)."""
        if not answer:
            raise ValueError(f"{self.signature} answered nothing: is there a contract at this address?")
        value = self.fn.decode(answer)[self.result]
        if isinstance(value, bool):
            return value
        if self.rule is not None:
            return self.rule.test(int(value))
        return int(value) != 0


def describe_call(signature: str, args: tuple[Any, ...] | list[Any]) -> str:
    if not args:
        return signature
    name = signature.split("(", 1)[0]
    return f"{name}({', '.join(_show(a) for a in args)})"


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) and not value.startswith("0x") else str(value).lower() \
        if isinstance(value, bool) else str(value)


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _view_fn(signature: str) -> abi.Function:
    fn = abi.parse(signature)
    return fn if fn.outputs else abi.Function(fn.name, fn.inputs, ("bool",))


def _encode(fn: abi.Function, args: list[Any]) -> bytes:
    try:
        return fn.encode(coerce_args(fn.inputs, list(args)))
    except abi.SignatureError:
        raise
    except Exception as exc:  # noqa: BLE001 - eth_abi raises several types; all mean the same to the author
        raise abi.SignatureError(f"cannot encode {list(args)!r} as ({', '.join(fn.inputs)}): {exc}") from None


def actions(contract: Contract) -> list[Action]:
    """The contract's pause calls, in order. Raises abi.SignatureError for a signature or arguments that do not fit."""
    out = []
    for i, item in enumerate(_items(contract.pause)):
        signature, args = (item, []) if isinstance(item, str) else (item.function, item.args)
        fn = abi.parse(signature)
        if isinstance(item, str) and fn.inputs:
            raise abi.SignatureError(f"{signature} takes {len(fn.inputs)} argument(s); write it as "
                                     f"{{function: \"{signature}\", args: [...]}}")
        out.append(Action(i, signature, tuple(args), _encode(fn, args), fn))
    return out


def views(contract: Contract) -> list[View]:
    """The contract's pause-state views. Raises abi.SignatureError for one that cannot say paused or not."""
    out = []
    for item in _items(contract.paused):
        signature, args, result, rule = (item, [], 0, None) if isinstance(item, str) else (
            item.view, item.args, item.result, item.paused_when)
        fn = _view_fn(signature)
        if result >= len(fn.outputs):
            raise abi.SignatureError(f"{signature} returns {len(fn.outputs)} value(s); result {result} does not exist")
        kind = fn.outputs[result]
        if kind != "bool" and not kind.startswith(("uint", "int")):
            raise abi.SignatureError(f"{signature}: result {result} is of type {kind}; it must be a bool or an integer")
        if rule is not None and kind == "bool":
            raise abi.SignatureError(f"{signature}: paused_when applies to an integer result, and result {result} is a bool")
        out.append(View(signature, fn, _encode(fn, args), result, rule))
    return out


def problems(contract: Contract) -> list[tuple[tuple[Any, ...], str]]:
    """Static problems of ``pause`` and ``paused``, each with its path inside the contract (for file:line:col)."""
    out: list[tuple[tuple[Any, ...], str]] = []
    for field, build in (("pause", actions), ("paused", views)):
        value = getattr(contract, field)
        items = _items(value)
        for i, item in enumerate(items):
            single = contract.model_copy(update={field: item})
            try:
                build(single)
            except abi.SignatureError as exc:
                loc: tuple[Any, ...] = (field, i) if isinstance(value, list) else (field,)
                if not isinstance(item, str):
                    text = str(exc)
                    loc += ("args",) if "cannot encode" in text else ("result",) if "result" in text and "paused_when" \
                        not in text else ("paused_when",) if "paused_when" in text else ("function",) if field == "pause" \
                        else ("view",)
                out.append((loc, str(exc)))
            except ValueError as exc:  # coerce_args: wrong number of arguments, or not an integer
                loc = ((field, i) if isinstance(value, list) else (field,)) + ("args",)
                out.append((loc, f"{getattr(item, 'function', None) or getattr(item, 'view', '')}: {exc}"))
    return out


def is_paused(contract: Contract, call: Callable[[str, bytes], bytes], address: str) -> bool:
    """Every view says paused. ``call(address, data)`` returns the raw answer; it raises for a revert."""
    return all(v.is_paused(call(address, v.data)) for v in views(contract))


def describe(contract: Contract) -> str:
    """``pause("breakglass")`` or ``pause(true, ...) + setPaused(true)``, for plans and reports."""
    try:
        return " + ".join(a.label for a in actions(contract))
    except abi.SignatureError:
        return " + ".join(str(i if isinstance(i, str) else i.function) for i in _items(contract.pause))


def describe_views(contract: Contract) -> str:
    return " and ".join(str(i if isinstance(i, str) else i.view) for i in _items(contract.paused))
