"""Every step has a finite time limit: its ``timeout:``, else its kind's default (docs/language.md).

A kind declares ``default_timeout`` (seconds) and overrides ``timeout_for(step)`` when the limit follows
from its parameters (a gate's own timeout and escalation, a wait's length). A gate keeps its own deadline: the
runner does not cut it short unless the step says ``timeout:``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from breakglass.flows.steps import REGISTRY

if TYPE_CHECKING:
    from breakglass.flows.steps import AnyStep


def limit(step: AnyStep) -> float:
    if step.timeout is not None:
        return float(step.timeout)
    return float(REGISTRY[step.kind].timeout_for(step))


def enforced(step: AnyStep) -> float | None:
    """The limit the runner enforces on one attempt: None for a gate without ``timeout:`` (it ends itself)."""
    if step.timeout is None and REGISTRY[step.kind].gate:
        return None
    return limit(step)


def deadline(step: AnyStep) -> str:
    """When an attempt started now must end, as the run record writes times."""
    at = datetime.now(UTC) + timedelta(seconds=limit(step))
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")
