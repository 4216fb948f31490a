"""Validate files and folders; load a playbook together with an inventory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from breakglass.flows.errors import BreakglassError, Diagnostic, SpecError
from breakglass.flows.language.inventory import Inventory
from breakglass.flows.spec import checks, salvage
from breakglass.flows.spec.loader import Loaded, load
from breakglass.flows.spec.playbook import Playbook

SKIP_DIRS = {"templates"}


def _load_checked(path: Path, display: str) -> Loaded:
    loaded = load(path, display)
    if loaded.model is not None and not loaded.diagnostics and loaded.kind == "Inventory":
        loaded.diagnostics += checks.check_inventory(loaded)
    return loaded


def load_playbook(path: Path, inventory_path: Path | None = None) -> tuple[Playbook, Inventory | None]:
    """Both models, or SpecError with every problem in both files."""
    if not path.is_file():
        raise BreakglassError(f"{path}: no such playbook file")
    if inventory_path is not None and not inventory_path.is_file():
        raise BreakglassError(f"{inventory_path}: no such inventory file")
    pb = _load_checked(path, str(path))
    inv = _load_checked(inventory_path, str(inventory_path)) if inventory_path else None
    problems = list(pb.diagnostics) + (list(inv.diagnostics) if inv else [])
    if pb.model is not None and pb.kind != "Playbook":
        problems.append(Diagnostic(str(path), 1, 1, "kind", f"expected a Playbook, this file is a {pb.kind}"))
    if inv is not None and inv.model is not None and inv.kind != "Inventory":
        problems.append(Diagnostic(str(inventory_path), 1, 1, "kind", f"expected an Inventory, this file is a {inv.kind}"))
    inventory_ok = inv is None or (inv.model is not None and not inv.diagnostics)
    if pb.model is not None and inventory_ok:
        problems += checks.check_playbook(pb, inv.model if inv else None, str(inventory_path) if inventory_path else None)
    elif inventory_ok and (rest := salvage.salvage(pb)) is not None:  # every problem at once, not schema first
        problems += salvage.relevant(checks.check_playbook(rest.loaded, inv.model if inv else None,
                                                           str(inventory_path) if inventory_path else None), rest)
    if problems:
        raise SpecError(problems)
    return pb.model, (inv.model if inv else None)


def load_inventory(path: Path) -> Inventory:
    if not path.is_file():
        raise BreakglassError(f"{path}: no such inventory file")
    loaded = _load_checked(path, str(path))
    if loaded.model is not None and loaded.kind != "Inventory":
        raise BreakglassError(f"{path}: expected an Inventory, this file is a {loaded.kind}")
    if loaded.diagnostics:
        raise SpecError(loaded.diagnostics)
    model: Inventory = loaded.model
    return model


@dataclass
class Report:
    files: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # playbooks whose references no inventory could check
    notes: list[str] = field(default_factory=list)  # what semantic checks left out of a file with schema errors


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
        and not SKIP_DIRS.intersection(part for part in p.relative_to(path).parts[:-1])
    )


def _drill_problems(path: Path, inventory_path: Path | None = None) -> list[Diagnostic]:
    from breakglass.flows.spec import drillspec

    try:
        drillspec.load(path, inventory_path.resolve() if inventory_path else None)
    except SpecError as exc:
        return list(exc.diagnostics)
    except BreakglassError as exc:
        return [Diagnostic(str(path), 1, 1, "playbook", str(exc))]
    return []


def validate(paths: list[Path], inventory_path: Path | None = None) -> Report:
    """Check files and folders. Playbooks are checked against ``inventory_path`` if given, else
    against every inventory found in ``<folder>/inventories/`` of a folder argument."""
    report = Report()
    playbooks: list[tuple[Loaded, list[Loaded], salvage.Salvaged | None]] = []
    extra_inventory = _load_checked(inventory_path, str(inventory_path)) if inventory_path else None
    if extra_inventory is not None:
        report.diagnostics += extra_inventory.diagnostics
    for root in paths:
        if not root.exists():
            raise BreakglassError(f"{root}: no such file or folder")
        loaded = [_load_checked(p, str(p)) for p in _yaml_files(root)]
        inventories = [x for x in loaded if x.kind == "Inventory"]
        for item in loaded:
            report.files.append(item.path)
            report.diagnostics += item.diagnostics
            if item.kind == "Drill" and item.model is not None and not item.diagnostics:
                report.diagnostics += _drill_problems(Path(item.path), inventory_path)
            against = [extra_inventory] if extra_inventory else (inventories if root.is_dir() else [])
            if item.kind == "Playbook" and item.model is not None:
                playbooks.append((item, against, None))
            elif (rest := salvage.salvage(item)) is not None:  # schema errors: check the rest all the same
                playbooks.append((rest.loaded, against, rest))
                report.notes.append(salvage.note(item.path, rest))
    for item, inventories, rest in playbooks:
        usable = [inv for inv in inventories if inv.model is not None and not inv.diagnostics]
        found = []
        if not usable:
            found += checks.check_playbook(item, None, None)
            report.unchecked.append(item.path)
        for inv in usable:
            found += checks.check_playbook(item, inv.model, inv.path)
        report.diagnostics += salvage.relevant(found, rest) if rest is not None else found
    report.diagnostics = sorted(set(report.diagnostics))
    return report
