"""Ctrl-C and SIGTERM: the same at every point of a run, gates included.

The first signal stops scheduling, waits (briefly) for a side effect between its signature and its
journal line, marks the run cancelled in the record and in Prefect, prints one line and exits 130
within about 2 s. A second signal exits at once: the journal keeps the run safe to resume either way.

The exit is ``os._exit``: Prefect's engine would otherwise wait for the gate's worker thread (it
polls until its deadline) and report "Crash detected!". The runner lock is a ``flock`` that the
kernel drops with the process; anvils of a drill die with it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

EXIT_CODE = 130
GRACE = 1.6  # seconds for the side effect in flight and the bookkeeping; the exit follows within 2 s

_cond = threading.Condition()
_inflight = 0
_draining = False
_local = threading.local()  # the depth of critical stretches in this thread: nested ones never wait


def hint(incident: str) -> str:
    return (f"interrupted; `breakglass resume {incident}` continues, `breakglass close {incident}` ends it")


@contextmanager
def critical() -> Iterator[None]:
    """A stretch an interruption must not cut (a signature and its journal line). None starts once draining."""
    global _inflight
    depth = getattr(_local, "depth", 0)
    with _cond:
        while _draining and depth == 0:
            _cond.wait()  # the process is about to exit: never start a new side effect
        _inflight += 1
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth
        with _cond:
            _inflight -= 1
            _cond.notify_all()


def drain(timeout: float) -> bool:
    """Stop new critical stretches and wait for the ones in flight; True if none is left."""
    global _draining
    with _cond:
        _draining = True
        return _cond.wait_for(lambda: _inflight == 0, timeout)


class Interrupts:
    """Installed by the runner in the main thread while it executes a run.

    ``stop`` is called once, in a helper thread, after the side effects in flight are journaled; it
    records the cancellation. Signals received in other threads' processes (``serve``) are not ours.
    """

    def __init__(self, incident: str, stop: Callable[[str], None], stopping: threading.Event | None = None) -> None:
        self.incident, self.stop = incident, stop
        self.stopping = stopping or threading.Event()
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        """Again inside the flow body: Prefect's engine puts its own SIGTERM handler in place for a flow run,
        and that one waits for the gate's thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)
        return True

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.stopping.is_set():
            os._exit(EXIT_CODE)  # a second signal: at once
        self.stopping.set()
        threading.Thread(target=self._finish, args=(signal.Signals(signum).name,), name="breakglass-interrupt",
                         daemon=True).start()

    def _finish(self, name: str) -> None:
        started = time.monotonic()
        drain(GRACE / 2)
        done = threading.Thread(target=self._record, args=(name,), daemon=True)
        done.start()
        done.join(max(0.1, GRACE - (time.monotonic() - started)))
        sys.stderr.write(hint(self.incident) + "\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)

    def _record(self, name: str) -> None:
        try:
            self.stop(name)
        except Exception as exc:  # noqa: BLE001 - exiting anyway; the record says running, `status` calls it stale
            sys.stderr.write(f"could not record the interruption: {type(exc).__name__}: {exc}\n")


def terminate_as_interrupt() -> None:
    """Outside a run (start-up, pre-flight): SIGTERM behaves as Ctrl-C does, through KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        return

    def raise_interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)
