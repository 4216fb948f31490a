"""Crash points for the kill tests: ``BREAKGLASS_TEST_CRASH_AT=<name>`` makes the process SIGKILL
itself exactly there, the way a power cut or an OOM kill would. Unset, a failpoint is a no-op."""

from __future__ import annotations

import os
import signal

POINTS = ("tx.after_sign", "tx.after_broadcast", "tx.after_receipt", "fastpath.after_broadcast")


def hit(name: str) -> None:
    if os.environ.get("BREAKGLASS_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
