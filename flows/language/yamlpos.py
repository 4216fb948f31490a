"""YAML with positions: every value keeps its file:line:col, and YAML's footguns are refused.

Differences from ``yaml.safe_load`` that matter for playbooks:
- only ``true``/``false`` are booleans (YAML 1.1 would turn ``on``, ``no``, ``y`` into bools);
- only decimal integers are integers, so an unquoted ``0xAbC...`` address stays a string;
- dates stay strings (pydantic parses them where a date is expected);
- duplicate keys, non-string keys, several documents, non-UTF-8 bytes and huge files are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from breakglass.flows.errors import Diagnostic

MAX_BYTES = 1024 * 1024
Loc = tuple[str | int, ...]


# libyaml's parser when present (about 5x faster; a run parses its playbook on the alert's path).
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # a base chosen at import: mypy cannot type it
    pass


_DROPPED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:timestamp"}
_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))


@dataclass
class Document:
    """A parsed YAML file: its data, where each value stands, and where each key stands."""

    path: str
    text: str
    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    scalars: list[tuple[int, int, Loc]] = field(default_factory=list)

    def where(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """The best position for ``loc``: the exact value (or key), else its nearest parent."""
        table = self.keys if key else self.values
        probe = tuple(loc)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def diag(self, loc: Loc, where: str, message: str, hint: str = "", *, key: bool = False) -> Diagnostic:
        line, col = self.where(loc, key=key)
        return Diagnostic(self.path, line, col, where, message, hint)


class YamlError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def read_text(path: Path, display: str) -> str:
    """Read a file as UTF-8 within the size limit, or raise YamlError saying where and why."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise YamlError(Diagnostic(display, 1, 1, "file", f"cannot read it ({exc.strerror})")) from None
    if size > MAX_BYTES:
        raise YamlError(
            Diagnostic(
                display, 1, 1, "file", f"is {size / 1e6:.1f} MB, over the 1 MiB limit for playbooks and inventories",
                "Split it, or move bulk data (address lists) out of the playbook.",
            )
        )
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise YamlError(
            Diagnostic(display, line, col, "file", f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                       "Save the file as UTF-8.")
        ) from None


def load(path: Path, display: str | None = None) -> Document:
    display = display or str(path)
    text = read_text(path, display)
    return parse(text, display)


def parse(text: str, display: str) -> Document:
    doc = Document(path=display, text=text, data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = (exc.problem or "invalid YAML").rstrip(".")
        lines = text.splitlines()
        tabs = 0 < line <= len(lines) and "\t" in lines[line - 1]
        hint = "YAML does not allow tabs for indentation: use spaces." if tabs else "Check indentation and quoting on this line."
        raise YamlError(Diagnostic(display, line, col, "yaml", f"syntax error: {problem}", hint)) from None
    except yaml.YAMLError as exc:
        raise YamlError(Diagnostic(display, 1, 1, "yaml", f"syntax error: {exc}")) from None
    finally:
        loader.dispose()
    if node is None:
        raise YamlError(Diagnostic(display, 1, 1, "file", "is empty", "A playbook needs apiVersion, kind and steps."))
    doc.data = _build(loader, node, (), doc)
    return doc


def _build(loader: _Loader, node: yaml.Node, loc: Loc, doc: Document) -> Any:
    doc.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError(Diagnostic(doc.path, *key_pos, _dotted(loc), "YAML merge keys ('<<') are not supported",
                                           "Write the keys out; a playbook should read top to bottom."))
            key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise YamlError(Diagnostic(doc.path, *key_pos, _dotted(loc), "keys must be strings",
                                           "Quote the key."))
            if key in out:
                first = doc.keys[loc + (key,)]
                raise YamlError(Diagnostic(doc.path, *key_pos, _dotted(loc + (key,)),
                                           f"duplicate key '{key}' (first at line {first[0]})",
                                           "Remove one of them: YAML would silently keep only the last."))
            doc.keys[loc + (key,)] = key_pos
            out[key] = _build(loader, value_node, loc + (key,), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, loc + (i,), doc) for i, item in enumerate(node.value)]
    doc.scalars.append((node.start_mark.index, node.end_mark.index, loc))
    return loader.construct_object(node)


def _dotted(loc: Loc) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "document"


dotted = _dotted
