"""What every alert adapter shares: the checks that turn untrusted JSON into typed values.

An adapter's ``parse`` returns a list of ``Alert`` (batch formats carry several) or raises
``AdapterError`` with the field and the reason. Nothing else may escape: the intake answers an
``AdapterError`` with a 400 and the reason, and anything else would be a bug.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from breakglass.integrations.alert import Alert

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
SEVERITIES = ("critical", "high", "medium", "low", "info", "unknown")
MAX_DEPTH = 32


class AdapterError(ValueError):
    """The body is not a valid alert of this source; the message says which field and why."""


class SourceConfig(Protocol):
    """An inventory's ``alert_sources`` entry, as the adapters see it (``flows`` owns the model)."""

    # Read-only (properties): the inventory's model is frozen, and an adapter only reads it.
    @property
    def kind(self) -> str: ...
    @property
    def secret_env(self) -> str | None: ...
    @property
    def token_env(self) -> str | None: ...
    @property
    def username_env(self) -> str | None: ...
    @property
    def password_env(self) -> str | None: ...
    @property
    def scanners(self) -> list[str]: ...


Env = Callable[[str], str]  # an environment variable's value by name ('' when unset)


@dataclass(frozen=True)
class Credentials:
    """What a source's inventory entry must name to authenticate its requests, and which headers carry the proof.

    ``any_of`` lists alternatives; each is a set of ``alert_sources`` fields that must all be given. The
    inventory refuses an entry that meets none with ``a <kind> source needs <needs>``. ``signed_headers``
    are the headers whose values make one request unique (a signature, its timestamp, a JWT): with the
    body's digest they make the intake's replay key. A constant credential (a bearer token) is not one."""

    any_of: tuple[tuple[str, ...], ...]
    needs: str
    signed_headers: tuple[str, ...] = ()

    def problem(self, source: SourceConfig) -> str | None:
        """The inventory's error for an entry that names too little, or None."""
        if any(all(getattr(source, name) for name in fields) for fields in self.any_of):
            return None
        return f"a {source.kind} source needs {self.needs}"


HMAC_SECRET = Credentials(any_of=(("secret_env",),), needs="secret_env (its HMAC secret)")
TOKEN_OR_BASIC = Credentials(any_of=(("token_env",), ("username_env", "password_env")),
                             needs="token_env, or username_env and password_env")


@runtime_checkable
class Adapter(Protocol):
    source: ClassVar[str]
    # The top-level keys ``Alert.raw`` can have, where the format fixes them (``validate`` checks a trigger's
    # ``alert.raw.<key>`` against them); None where raw is the upstream's own, open-ended object.
    raw_keys: ClassVar[frozenset[str] | None]
    credentials: ClassVar[Credentials]

    def authenticate(self, body: bytes, headers: dict[str, str], source: SourceConfig, env: Env) -> Any:
        """Raise ``auth.AuthError`` unless the request is the source's own and fresh. Return the decoded
        body when the proof needed it (Defender signs parsed JSON), else None. ``headers`` are lower-case;
        the credentials' environment variables are set (the intake refuses empty ones first)."""

    def parse(self, body: Any) -> list[Alert]: ...


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AdapterError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def items(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise AdapterError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def text(value: Any, where: str, *, required: bool = True, limit: int = 2000) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise AdapterError(f"{where}: expected a string, got {type(value).__name__}")
    return str(value)[:limit]


def address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not ADDRESS.fullmatch(value):
        raise AdapterError(f"{where}: {str(value)[:60]!r} is not an address (0x and 40 hex digits)")
    return value.lower()


def actors(*values: Any) -> list[str]:
    """The addresses among ``values`` (free-form upstream fields: anything else is ignored, never an error)."""
    return sorted({v.lower() for v in values if isinstance(v, str) and ADDRESS.fullmatch(v)})


ACTOR_KEYS = ("attacker", "attackerAddress", "exploiter", "exploitContract", "exploitContractAddress", "sender")


def actor_metadata(metadata: Any) -> list[str]:
    """Actors named in a finding's metadata under the keys detection bots use (attacker, exploitContract, ...)."""
    return actors(*(metadata.get(k) for k in ACTOR_KEYS)) if isinstance(metadata, dict) else []


def addresses(values: Any, where: str) -> list[str]:
    if values is None:
        return []
    return sorted({address(v, f"{where}[{i}]") for i, v in enumerate(items(values, where))})


def tx_hash(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not TX_HASH.fullmatch(value):
        raise AdapterError(f"{where}: {str(value)[:80]!r} is not a transaction hash (0x and 64 hex digits)")
    return value.lower()


def number(value: Any, where: str) -> int | None:
    """A block number or chain id: an int, a decimal string or a 0x hex string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise AdapterError(f"{where}: expected a number, got a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{1,16}", value):
        result = int(value, 16)
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,19}", value):
        result = int(value)
    else:
        raise AdapterError(f"{where}: {str(value)[:40]!r} is not a number")
    if not 0 <= result < 2**63:
        raise AdapterError(f"{where}: {result} is out of range")
    return result


def severity(value: Any, where: str) -> str:
    if value is None:
        return "unknown"
    word = text(value, where).strip().lower()
    word = {"error": "high", "warning": "medium", "warn": "medium", "information": "info", "informational": "info",
            "page": "critical", "p1": "critical", "p2": "high", "p3": "medium"}.get(word, word)
    return word if word in SEVERITIES else "unknown"


def depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        raise AdapterError(f"the body is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return max([depth(v, level + 1) for v in value.values()], default=level)
    if isinstance(value, list):
        return max([depth(v, level + 1) for v in value], default=level)
    return level
