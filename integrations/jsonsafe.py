"""JSON from untrusted bytes, bounded in size and nesting *before* the decoder sees it.

The C decoder recurses once per ``[`` or ``{``. Its only guard is the interpreter's recursion
limit, and a dependency (py_ecc, pulled in by the eth stack) raises that limit to 100,000 at
import: ``json.loads(b"[" * 70000)`` in a worker thread then overflows the C stack and the process
dies with SIGSEGV instead of raising. So the nesting is measured first by a byte scan that never
recurses (strings removed, brackets counted), and anything deeper than asked is refused.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
# A string literal, or an unterminated one up to the end (a possessive loop that cannot fail once it
# starts, so the scan stays linear on hostile input such as a run of escaped quotes).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.|\\\Z)*+(?:"|\Z)', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonRefused(ValueError):
    """Too large, too deep, or not JSON; the message says which (never the body)."""


def nesting(data: bytes) -> int:
    """The deepest ``[``/``{`` nesting outside strings (an upper bound for malformed input)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    opened = brackets.count(b"[") + brackets.count(b"{")
    if opened <= 1:
        return opened
    return max(0, max(accumulate(_STEP[b] for b in brackets)))


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES, what: str = "the body") -> Any:
    """``json.loads`` that refuses (``JsonRefused``) what is over ``max_bytes`` or nested deeper than ``max_depth``."""
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRefused(f"{what} is not valid UTF-8") from None
    if len(data) > max_bytes:
        raise JsonRefused(f"{what} is over {max_bytes} bytes")
    if nesting(data) > max_depth:
        raise JsonRefused(f"{what} is nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JsonRefused(f"{what} is not valid JSON: {str(exc)[:120]}") from None
