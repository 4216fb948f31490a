"""Crash points for the kill tests: ``BREAKGLASS_TEST_CRASH_AT=<name>`` makes the process SIGKILL
itself exactly there, the way a power cut or an OOM kill would. Unset, a failpoint is a no-op.

Points: tx.after_sign, tx.after_broadcast, tx.after_receipt, fastpath.after_broadcast, notify.before_record,
gate.after_pass, intake.before_start."""

from __future__ import annotations

import os
import signal
import threading
import time

_COUNTS: dict[str, int] = {}
_LOCK = threading.Lock()


def hit(name: str) -> None:
    """``NAME`` crashes at the first hit, ``NAME@N`` at the N-th."""
    wanted = os.environ.get("BREAKGLASS_TEST_CRASH_AT")
    if not wanted or wanted.split("@")[0] != name:
        return
    with _LOCK:
        _COUNTS[name] = _COUNTS.get(name, 0) + 1
        count = _COUNTS[name]
    if count >= int(wanted.split("@")[1]) if "@" in wanted else True:
        delay = float(os.environ.get("BREAKGLASS_TEST_CRASH_DELAY") or 0)
        if delay:  # e.g. let an HTTP answer leave first
            time.sleep(delay)
        os.kill(os.getpid(), signal.SIGKILL)
