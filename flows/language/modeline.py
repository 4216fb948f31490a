"""``# yaml-language-server: $schema=…`` modelines: editors with the YAML language server (VS Code's Red Hat
YAML extension, Neovim, Helix) then complete and check breakglass files as they are typed."""

from __future__ import annotations

import os
from pathlib import Path

from breakglass.flows.errors import BreakglassError

SCHEMA = Path(__file__).resolve().parents[2] / "playbooks" / "schema.json"
PREFIX = "# yaml-language-server: $schema="


def line_for(path: Path) -> str:
    """The modeline for ``path``: the schema by a path relative to the file, so the pair can move together."""
    relative = os.path.relpath(SCHEMA, path.resolve().parent)
    return f"{PREFIX}{relative}"


def install(path: Path) -> tuple[Path, bool]:
    """Add the modeline at the top of ``path`` (after a leading comment block's first line is fine too);
    returns whether the file changed."""
    if not path.is_file():
        raise BreakglassError(f"{path}: no such file")
    text = path.read_text()
    if any(line.startswith(PREFIX) for line in text.splitlines()[:5]):
        return path, False
    path.write_text(line_for(path) + "\n" + text)
    return path, True
