"""Load YAML files into typed models, turning every problem into ``file:line:col: where: what. hint``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from breakglass.flows.errors import Diagnostic, SpecError
from breakglass.flows.language import keyscan, modelpath
from breakglass.flows.language.inventory import Inventory
from breakglass.flows.language.suggest import closest
from breakglass.flows.language.types import HEX32_OK
from breakglass.flows.language.yamlpos import Document, Loc, YamlError, dotted
from breakglass.flows.language.yamlpos import load as load_yaml
from breakglass.flows.spec.drillspec import DrillSpec
from breakglass.flows.spec.playbook import HEX32_INPUT_TYPES, Playbook
from breakglass.flows.steps import REGISTRY

API_VERSION = "breakglass/v1"
MODELS: dict[str, type[BaseModel]] = {"Playbook": Playbook, "Inventory": Inventory, "Drill": DrillSpec}
_SECTION_LABELS = {"steps": "step", "inputs": "input", "chains": "chain", "contracts": "contract", "signers": "signer",
                   "contacts": "contact", "channels": "channel", "groups": "group"}


@dataclass
class Loaded:
    path: str
    doc: Document | None
    kind: str | None
    model: Any = None
    diagnostics: list[Diagnostic] = field(default_factory=list)


def load(path: Path, display: str | None = None) -> Loaded:
    display = display or str(path)
    try:
        doc = load_yaml(path, display)
    except YamlError as exc:
        return Loaded(display, None, None, diagnostics=[exc.diagnostic])
    return from_document(doc)


def from_document(doc: Document) -> Loaded:
    data = doc.data
    if not isinstance(data, dict):
        return Loaded(doc.path, doc, None, diagnostics=[
            doc.diag((), "document", "expected a mapping with apiVersion, kind and the rest",
                     "Start the file with 'apiVersion: breakglass/v1' and 'kind: Playbook'.")])
    version = data.get("apiVersion")
    if version != API_VERSION:
        what = "missing 'apiVersion'" if version is None else f"unsupported apiVersion {version!r}"
        return Loaded(doc.path, doc, None, diagnostics=[
            doc.diag(("apiVersion",), "apiVersion", what, f"This breakglass reads '{API_VERSION}'.")])
    kind = data.get("kind")
    if kind not in MODELS:
        what = "missing 'kind'" if kind is None else f"unknown kind {kind!r}"
        guess = closest(str(kind), MODELS) if kind is not None else None
        hint = (f"Did you mean '{guess}'? " if guess else "") + "Known kinds: " + ", ".join(MODELS) + "."
        return Loaded(doc.path, doc, None, diagnostics=[doc.diag(("kind",), "kind", what, hint)])
    cls = MODELS[kind]
    loaded = Loaded(doc.path, doc, kind)
    try:
        loaded.model = cls.model_validate(data)
    except ValidationError as exc:
        loaded.diagnostics += translate(doc, cls, exc)
    loaded.diagnostics += keyscan.scan(doc, hex32_locs(doc, cls))
    return loaded


def require(loaded: Loaded) -> Any:
    if loaded.diagnostics:
        raise SpecError(loaded.diagnostics)
    return loaded.model


def hex32_locs(doc: Document, cls: type[BaseModel]) -> set[Loc]:
    out: set[Loc] = set()
    inputs = doc.data.get("inputs") if cls is Playbook and isinstance(doc.data, dict) else None
    for _, _, loc in doc.scalars:
        _, meta = modelpath.type_at(cls, doc.data, loc)
        if any(m is HEX32_OK for m in meta) or (isinstance(inputs, dict) and len(loc) >= 3 and loc[0] == "inputs" and loc[2] in ("default", "drill")
              and isinstance(inputs.get(loc[1]), dict) and inputs[loc[1]].get("type") in HEX32_INPUT_TYPES):
            out.add(loc)
    return out


def data_loc(data: Any, loc: tuple[Any, ...]) -> Loc:
    """Pydantic's error path without union tags and validator names: the path in the YAML data."""
    out: list[str | int] = []
    node = data
    tagged: object = None
    for part in loc:
        if isinstance(node, dict) and part not in node and part == node.get("kind") and tagged is not node:
            tagged = node  # a discriminated union's tag, named after the kind
        elif (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not _is_tag(part):
            out.append(part)  # a missing or unknown key
            node = None
    return tuple(out)


def _is_tag(part: str) -> bool:
    return part in REGISTRY or any(c in part for c in "[]()") or part in ("str", "int", "list", "bool", "float", "dict")


def label(data: Any, loc: Loc) -> tuple[str, Loc]:
    """(``step 'pause-vault'`` or a dotted key path, the rest of the path inside that object)."""
    if len(loc) >= 2 and loc[0] in _SECTION_LABELS:
        section, key = loc[0], loc[1]
        if section == "steps" and isinstance(key, int):
            item = data["steps"][key] if isinstance(data.get("steps"), list) and key < len(data["steps"]) else None
            ident = item.get("id") if isinstance(item, dict) else None
            return (f"step '{ident}'" if isinstance(ident, str) else f"steps[{key}]"), loc[2:]
        return f"{_SECTION_LABELS[section]} '{key}'", loc[2:]
    return dotted(loc), ()


_TYPE_MISMATCH = ("string_type", "list_type", "dict_type", "model_type", "string_pattern_mismatch", "int_type")


def translate(doc: Document, cls: type[BaseModel], exc: ValidationError) -> list[Diagnostic]:
    errors = [(data_loc(doc.data, e["loc"]), e) for e in exc.errors(include_url=False)]
    deeper = {loc[:i] for loc, _ in errors for i in range(len(loc))}
    seen: set[Loc] = set()
    out: list[Diagnostic] = []
    for loc, error in errors:
        if loc in seen:
            continue  # one message per place: union members repeat each other
        if error["type"] in _TYPE_MISMATCH and loc in deeper:
            continue  # the other union member's error inside this value says what is wrong
        seen.add(loc)
        out.append(_diagnostic(doc, cls, loc, error))
    return out


def _diagnostic(doc: Document, cls: type[BaseModel], loc: Loc, error: Mapping[str, Any]) -> Diagnostic:
    kind = error["type"]
    where, rest = label(doc.data, loc)
    prefix = f"{dotted(rest)}: " if rest else ""
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = modelpath.allowed_keys(cls, doc.data, loc[:-1])
        guess = closest(key, allowed)
        prefix = f"{dotted(rest[:-1])}: " if len(rest) > 1 else ""
        hint = f"Did you mean '{guess}'?" if guess else ("Allowed keys: " + ", ".join(allowed) + "." if allowed else "")
        return doc.diag(loc, where, f"{prefix}unknown key '{key}'", hint, key=True)
    if kind == "missing":
        prefix = f"{dotted(rest[:-1])}: " if len(rest) > 1 else ""
        return doc.diag(loc[:-1], where, f"{prefix}missing required key '{loc[-1]}'")
    if kind in ("union_tag_invalid", "union_tag_not_found") or (kind == "literal_error" and loc and loc[-1] == "kind"
                                                                  and len(loc) == 3 and loc[0] == "steps"):
        known = list(REGISTRY)
        given = error.get("input")
        if kind == "union_tag_not_found":
            return doc.diag(loc, where, "missing 'kind'", "Known step kinds: " + ", ".join(known) + ".")
        tag = error.get("ctx", {}).get("tag", given)
        guess = closest(str(tag), known)
        hint = (f"Did you mean '{guess}'? " if guess else "") + "Known step kinds: " + ", ".join(known) + "."
        return doc.diag(loc + (("kind",) if loc[-1:] != ("kind",) else ()), where, f"unknown step kind {tag!r}", hint)
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return doc.diag(loc, where, f"{prefix}expected {expected}, got {error.get('input')!r}")
    message = error["msg"]
    if kind == "too_short":
        message = f"needs at least {error.get('ctx', {}).get('min_length', 1)} item(s), got none"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    elif message.startswith("Input should be "):
        message = "expected " + message[len("Input should be "):] + f", got {_describe(error.get('input'))}"
    elif message.startswith("String should match pattern"):
        message = f"expected a template such as '{{{{ inputs.name }}}}' or a list, got {_describe(error.get('input'))}"
    return doc.diag(loc, where, f"{prefix}{message[0].lower() + message[1:] if message else message}")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"
