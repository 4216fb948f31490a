"""What every `serve` endpoint does to a request before anything else looks at it.

Size first (``Content-Length`` and then the bytes as they arrive: never more than 1 MiB read),
then the content type, then the credentials on the raw bytes; JSON is decoded last, and only
through ``integrations.jsonsafe`` (bounded nesting, whatever the recursion limit).
"""

from __future__ import annotations

import sys
from typing import Any

LIMIT = 1024 * 1024  # bytes per request, on every endpoint
RECURSION_LIMIT = 4000  # what breakglass runs with, whatever an import set


class TooLarge(Exception):
    def __init__(self, size: int | None) -> None:
        super().__init__(f"body over {LIMIT} bytes")
        self.size = size


async def read_body(request: Any, limit: int = LIMIT) -> bytes:
    """The body, read chunk by chunk; ``TooLarge`` as soon as it passes ``limit`` (or says it will)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            size = -1
        if size > limit:
            raise TooLarge(size)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge(None)
        chunks.append(chunk)
    return b"".join(chunks)


def content_type_is(headers: Any, wanted: str, *, missing_ok: bool = True) -> bool:
    """The media type (parameters such as charset ignored); for JSON also ``application/*+json`` as monitors send."""
    given = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if not given:
        return missing_ok
    return given == wanted or (wanted == "application/json" and given.startswith("application/") and given.endswith("+json"))


def pin_recursion_limit() -> int:
    """Undo what imports did to the recursion limit (py_ecc sets 100,000 process-wide).

    py_ecc is imported here first, if it is installed, so that no later lazy import raises the
    limit again. 4,000 frames fit an 8 MiB thread stack with room to spare.
    """
    try:
        import py_ecc  # noqa: F401 - imported for its side effect, which is then undone
    except ImportError:
        pass
    sys.setrecursionlimit(RECURSION_LIMIT)
    return RECURSION_LIMIT
