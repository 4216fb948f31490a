"""One pooled HTTP client per process. Creating an httpx client builds a TLS context (~20 ms),
too much to pay per step or per message on the incident path."""

from __future__ import annotations

import threading

import httpx

_SHARED: httpx.Client | None = None
_LOCK = threading.Lock()


def client() -> httpx.Client:
    global _SHARED
    with _LOCK:
        if _SHARED is None:
            _SHARED = httpx.Client(limits=httpx.Limits(max_connections=128, max_keepalive_connections=64))
        return _SHARED
