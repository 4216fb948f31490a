"""The step graph a playbook draws with ``needs``: who comes before a step, and who waits for a gate.

Pure functions over the steps' ids and ``needs``; the static checks, the kinds' own checks, the
gate host and the runner all read the graph from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from breakglass.flows.spec.playbook import Playbook  # the document whose steps are drawn


def ancestors(playbook: Playbook) -> dict[str, set[str]]:
    """Each step's ancestors through ``needs`` (transitively); a loop or an unknown name is skipped (checks reports them)."""
    needs = {s.id: set(s.needs) for s in playbook.steps}
    out: dict[str, set[str]] = {}

    def visit(step: str, trail: tuple[str, ...]) -> set[str]:
        if step in out:
            return out[step]
        found: set[str] = set()
        for parent in needs.get(step, ()):
            if parent in trail or parent not in needs:
                continue
            found |= {parent} | visit(parent, trail + (parent,))
        out[step] = found
        return found

    for step in needs:
        visit(step, (step,))
    return out


def guarded(playbook: Playbook, gate: str) -> list[str]:
    """Every step that cannot start before the gate passes (its dependents, transitively), in file order."""
    found: set[str] = set()
    frontier = {gate}
    while frontier:
        nxt = {s.id for s in playbook.steps if set(s.needs) & frontier} - found
        found |= nxt
        frontier = nxt
    return [s.id for s in playbook.steps if s.id in found]
