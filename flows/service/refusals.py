"""Unauthenticated refusals, kept cheap: counted per source and reason, one audit line per source per minute.

Anyone who finds `serve`'s URL can send requests. Each one refused before its credentials checked
out used to append a line to a hash-chained, fsynced audit log, without bound. Now the first
refusal of a source in a window is written at once (so a lone forgery is visible), the rest of
that minute are counted and written as one ``<event>.summary`` line with the counts per reason
and a sample of body hashes. Reasons are capped per window, so varied reasons cannot grow it.
Authenticated refusals are not counted here: they keep one line each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from breakglass.flows.run import audit

WINDOW = 60.0
SAMPLES = 5
REASONS = 20


class RefusalLog:
    def __init__(self, root: Path, event: str, window: float = WINDOW, clock: Callable[[], float] = time.time) -> None:
        self.root, self.event, self.window, self.clock = root, event, window, clock
        self._open: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def refused(self, source: str, status: int, reason: str, digest: str) -> None:
        now = self.clock()
        write_first = False
        with self._lock:
            current = self._open.get(source)
            closed = current if current is not None and now - current["since"] >= self.window else None
            if current is None or closed is not None:
                self._open[source] = {"since": now, "counts": {}, "samples": [], "total": 0}
                write_first = True
            else:
                key = f"{status} {reason}"
                counts = current["counts"]
                if key not in counts and len(counts) >= REASONS:
                    key = "other reasons"
                counts[key] = counts.get(key, 0) + 1
                current["total"] += 1
                if len(current["samples"]) < SAMPLES and digest not in current["samples"]:
                    current["samples"].append(digest)
        if closed is not None:
            self._summary(source, closed, now)
        if write_first:
            audit.append(self.root, self.event, source=source, status=status, reason=reason, body_sha256=digest,
                         authenticated=False, note=f"further unauthenticated refusals of this source within "
                                                   f"{self.window:g}s are counted in one summary line")

    def flush(self, force: bool = False) -> None:
        """Write the summaries of windows that are over (all of them with ``force``, e.g. at shutdown)."""
        now = self.clock()
        with self._lock:
            done = {s: w for s, w in self._open.items() if force or now - w["since"] >= self.window}
            for source in done:
                del self._open[source]
        for source, window in done.items():
            self._summary(source, window, now)

    def _summary(self, source: str, window: dict[str, Any], now: float) -> None:
        if window["total"]:
            audit.append(self.root, f"{self.event}.summary", source=source, total=window["total"], counts=window["counts"],
                         body_sha256_sample=window["samples"], seconds=round(now - window["since"], 1))
