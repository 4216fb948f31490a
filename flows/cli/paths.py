"""Playbook arguments as a responder types them: a file, or a bare name found in ./playbooks/, with a
did-you-mean for a near miss and a plain explanation for a folder."""

from __future__ import annotations

from pathlib import Path

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.suggest import closest

FOLDER = Path("playbooks")
SUFFIXES = (".yaml", ".yml")


def _candidates(near: Path) -> dict[str, Path]:
    """Files by their name without suffix: those beside the given path first, then ./playbooks/."""
    found: dict[str, Path] = {}
    for folder in (near, FOLDER):
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix in SUFFIXES and path.is_file():
                    found.setdefault(path.stem, path)
    return found


def resolve(given: Path, what: str = "playbook") -> Path:
    """The file meant by ``given`` (a path, or a name in ./playbooks/); a clear error, with a did-you-mean
    or what a folder holds, when there is none. ``what`` names the kind of file in the message."""
    if given.is_file():
        return given
    if given.is_dir():
        books = [p for p in sorted(given.glob("*")) if p.suffix in SUFFIXES and p.is_file()]
        listed = ", ".join(p.name for p in books[:6]) + (", …" if len(books) > 6 else "")
        raise BreakglassError(f"{given} is a folder; give one {what} file in it"
                              + (f" ({listed})" if books else " (it holds no .yaml files)")
                              + f", or a name alone, e.g. `{books[0].stem}`" * bool(books))
    if given.suffix not in SUFFIXES and len(given.parts) == 1:
        for suffix in SUFFIXES:
            if (FOLDER / f"{given}{suffix}").is_file():
                return FOLDER / f"{given}{suffix}"
    options = _candidates(given.parent if str(given.parent) not in ("", ".") else FOLDER)
    match = closest(given.stem, options)
    hint = f"; did you mean {options[match]}?" if match else (
        f"; a name alone is looked up in {FOLDER}/" if len(given.parts) == 1 else "")
    raise BreakglassError(f"{given}: no such {what} file{hint}")
