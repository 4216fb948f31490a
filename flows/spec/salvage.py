"""Validation in one report: when part of a playbook fails its schema (an unknown key, an unknown kind), the
semantic checks still run on everything else that parsed. Broken steps, broken inputs and broken top-level
keys are left out of a copy of the document, the copy is checked with the original positions, and what was
left out is said, so that a typo in one step no longer hides a wrong reference in another."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from breakglass.flows.errors import Diagnostic
from breakglass.flows.language.yamlpos import Document, Loc
from breakglass.flows.spec.loader import Loaded, data_loc
from breakglass.flows.spec.playbook import Playbook

PLACEHOLDERS = {"name": "unnamed", "description": "", "severity": "high", "steps": []}


@dataclass
class Salvaged:
    loaded: Loaded
    left_out: list[str]  # what the semantic checks could not see, in words
    step_ids: set[str]  # ids of the steps left out: a reference to one is not an error of its own


def salvage(loaded: Loaded) -> Salvaged | None:
    """The parts of a playbook that parsed, as a Loaded whose positions are the original file's; None when
    nothing useful is left (or the file is not a playbook with schema errors)."""
    doc = loaded.doc
    if loaded.kind != "Playbook" or loaded.model is not None or doc is None or not isinstance(doc.data, dict):
        return None
    data = dict(doc.data)
    steps = list(data.get("steps") or []) if isinstance(data.get("steps"), list) else []
    keep = list(range(len(steps)))
    left_out: list[str] = []
    gone_ids: set[str] = set()
    for _ in range(4):  # each round removes what failed; a removal can only reveal a missing placeholder
        data["steps"] = [steps[i] for i in keep]
        try:
            model = Playbook.model_validate(data)
            break
        except ValidationError as exc:
            locs = [data_loc(data, e["loc"]) for e in exc.errors(include_url=False)]
        dropped = False
        current = list(keep)  # the indices in this round's errors
        for loc in locs:
            if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int) and loc[1] < len(current):
                original = current[loc[1]]
                if original in keep:
                    raw = steps[original]
                    ident = raw.get("id") if isinstance(raw, dict) else None
                    gone_ids |= {ident} if isinstance(ident, str) else set()
                    left_out.append(f"step '{ident}'" if isinstance(ident, str) else f"steps[{original}]")
                    keep = [k for k in keep if k != original]
                    dropped = True
            elif len(loc) >= 2 and isinstance(data.get(loc[0]), dict) and loc[0] != "steps":
                section = dict(data[loc[0]])
                if section.pop(loc[1], None) is not None:
                    left_out.append(f"{loc[0]}.{loc[1]}")
                    data[loc[0]] = section
                    dropped = True
            elif len(loc) >= 1 and loc[0] != "steps":
                if loc[0] in data and loc[0] not in ("apiVersion", "kind"):
                    left_out.append(f"'{loc[0]}'")
                    data.pop(loc[0])
                    dropped = True
                elif loc[0] in PLACEHOLDERS and loc[0] not in data:
                    data[loc[0]] = PLACEHOLDERS[loc[0]]
                    dropped = True
        if not dropped:
            return None
    else:
        return None
    if not model.steps:
        return None
    for raw in data["steps"]:  # a need of a broken step: the broken step's error says it all
        if isinstance(raw, dict) and isinstance(raw.get("needs"), list):
            raw_needs = [n for n in raw["needs"] if n not in gone_ids]
            if raw_needs != raw["needs"]:
                data["steps"] = [dict(r, needs=raw_needs) if r is raw else r for r in data["steps"]]
    model = Playbook.model_validate(data)
    index = {old: new for new, old in enumerate(keep)}
    checked = Loaded(loaded.path, _renumbered(doc, data, index), "Playbook", model=model)
    return Salvaged(checked, list(dict.fromkeys(left_out)), gone_ids)


def _renumbered(doc: Document, data: dict[str, Any], index: dict[int, int]) -> Document:
    def move(loc: Loc) -> Loc | None:
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            return ("steps", index[loc[1]], *loc[2:]) if loc[1] in index else None
        return loc

    def table(found: dict[Loc, tuple[int, int]]) -> dict[Loc, tuple[int, int]]:
        return {new: pos for loc, pos in found.items() if (new := move(loc)) is not None}

    return replace(doc, data=data, values=table(doc.values), keys=table(doc.keys),
                   scalars=[(line, col, new) for line, col, loc in doc.scalars if (new := move(loc)) is not None])


def relevant(found: list[Diagnostic], salvaged: Salvaged) -> list[Diagnostic]:
    """Semantic findings, without those that only repeat that a left-out step is missing."""
    return [d for d in found if not any(f"'{ident}'" in d.message for ident in salvaged.step_ids)]


def note(path: str, salvaged: Salvaged) -> str:
    return (f"{path}: the checks of needs, templates and references ran on the rest of the file; left out "
            f"because of its schema errors: {', '.join(salvaged.left_out)}")
