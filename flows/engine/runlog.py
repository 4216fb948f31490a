"""What a responder reads while a run runs: one line per step start and end, with its outcome, instead of
Prefect's engine log (about 60 lines for 12 steps, each step twice, a stray ``NoneType: None`` after each
failure). Prefect's lines go to the run's ``artifacts/prefect.log``; ``-v`` (BREAKGLASS_VERBOSE=1) shows
them on the console too. Lines that breakglass code logs for people (a gate's vote command, a Safe
transaction to sign, warnings) still reach the console."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.steps import REGISTRY

if TYPE_CHECKING:
    from breakglass.flows.run.records import StepRecord

PROGRESS = logging.getLogger("breakglass.progress")
FLOWS = str(Path(__file__).resolve().parents[1])  # every module of breakglass.flows
RUNNER = str(Path(__file__).resolve().parent / "runner.py")


def verbose() -> bool:
    return os.environ.get("BREAKGLASS_VERBOSE", "") in ("1", "true", "yes")


class _Quiet(logging.Filter):
    """On the console: breakglass's own lines for people; Prefect's only when critical."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname or ""
        if path.startswith(FLOWS):
            return not (path == RUNNER and record.levelno < logging.CRITICAL)  # said by the progress lines
        if "/prefect/" in path:
            return record.levelno >= logging.CRITICAL
        return record.levelno >= logging.WARNING


def _progress_handler() -> None:
    if any(getattr(h, "_breakglass", False) for h in PROGRESS.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", datefmt="%H:%M:%S"))
    handler._breakglass = True  # type: ignore[attr-defined]  # our mark on a stdlib handler, so it is added once
    PROGRESS.addHandler(handler)
    PROGRESS.setLevel(logging.INFO)
    PROGRESS.propagate = False


class _ThisRun(logging.Filter):
    """A run's prefect.log holds its own flow run's lines (serve and workers run several at once)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_ = name

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "flow_run_name", self.name_) == self.name_


_QUIET = _Quiet()
_ROUTED = [0]  # runs in this process that keep Prefect off the console
_LOCK = threading.Lock()


@contextmanager
def routed(artifacts_dir: Path, run_name: str) -> Iterator[None]:
    """Prefect's log to ``artifacts_dir/prefect.log`` and, unless verbose, off the console, for one run."""
    _progress_handler()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    to_file = logging.FileHandler(artifacts_dir / "prefect.log", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s",
                                           datefmt="%H:%M:%S"))
    to_file.addFilter(_ThisRun(run_name))
    root.addHandler(to_file)
    quiet = not verbose()
    with _LOCK:
        _ROUTED[0] += quiet
        for handler in root.handlers if quiet else []:
            if handler is not to_file and isinstance(handler, logging.StreamHandler) and \
                    getattr(handler, "stream", None) in (sys.stderr, sys.stdout):
                handler.addFilter(_QUIET)  # once: a filter is kept in a list without duplicates
    try:
        yield
    finally:
        with _LOCK:
            _ROUTED[0] -= quiet
            for handler in root.handlers if quiet and not _ROUTED[0] else []:
                handler.removeFilter(_QUIET)
        root.removeHandler(to_file)
        to_file.close()


def say(message: str, *args: Any) -> None:
    PROGRESS.info(message, *args)


def suffix(step: StepRecord) -> str:
    detail = step_detail(step)
    return f" · {detail}" if detail else ""


def step_detail(step: StepRecord) -> str:
    """One line for what a step did, from its record (the kind's own summary), with its error if it failed."""
    line = REGISTRY[step.kind].summary(step.outputs) if step.outputs and step.kind in REGISTRY else ""
    if not line:
        return step.error or step.reason or ""
    return line + (f"; {step.error}" if step.error else "")
