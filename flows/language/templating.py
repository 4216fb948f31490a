"""Jinja2 expressions in playbooks: sandboxed, strict, and checked before any incident.

Only strings written in a playbook are templates. Values that come from inputs, alerts or
earlier steps are data: they are inserted as they are and never rendered again, so an alert
title containing ``{{ ... }}`` comes out literally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

ROOTS = ("inputs", "alert", "steps")
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)


class _Strict(StrictUndefined):
    """StrictUndefined that names what is there instead of an internal class ("'...Namespace object' has no
    attribute 'snap'")."""

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if isinstance(obj, Namespace) and isinstance(self._undefined_name, str):
            known = ", ".join(sorted(map(str, obj))) or "nothing yet"
            return f"no {self._undefined_name!r} here (there is: {known})"
        return str(super()._undefined_message)


ENV = SandboxedEnvironment(undefined=_Strict, autoescape=False, keep_trailing_newline=True)


class TemplateError(Exception):
    """A template that cannot be parsed or rendered; the message says which name or why."""


@dataclass(frozen=True)
class Reference:
    root: str
    path: tuple[str | None, ...]  # None where an index is computed at run time

    def dotted(self) -> str:
        return ".".join([self.root, *(p if p is not None else "[...]" for p in self.path)])


def _expression_source(value: str) -> str | None:
    match = _SINGLE.match(value)
    return match.group("expr") if match else None


def parse(value: str, *, condition: bool = False) -> nodes.Node:
    """Parse a template string, or a bare condition expression (``if:`` may omit the braces)."""
    try:
        if condition:
            inner = _expression_source(value)
            return ENV.parse("{{ " + (inner if inner is not None else value) + " }}")
        return ENV.parse(value)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None


def references(tree: nodes.Node) -> Iterator[Reference]:
    """Every ``name.attr['key']...`` chain rooted at a free variable."""
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    yield from _walk(tree, bound)


def _walk(node: nodes.Node, bound: set[str]) -> Iterator[Reference]:
    if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
        chain = _chain(node)
        if chain is not None:
            root, path, dynamic = chain
            if root not in bound:
                yield Reference(root, tuple(path))
            for arg in dynamic:
                yield from _walk(arg, bound)
            return
    for child in node.iter_child_nodes():
        yield from _walk(child, bound)


def _chain(node: nodes.Node) -> tuple[str, list[str | None], list[nodes.Node]] | None:
    path: list[str | None] = []
    dynamic: list[nodes.Node] = []
    while True:
        if isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem):
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
                path.append(str(node.arg.value))
            else:
                path.append(None)
                dynamic.append(node.arg)
            node = node.node
        elif isinstance(node, nodes.Name):
            if node.ctx != "load":
                return None
            return node.name, list(reversed(path)), dynamic
        else:
            return None


class _NoAlert(_Strict):
    pass


class Namespace:
    """A read-only mapping whose keys win over method names: ``inputs.items`` is the input
    called ``items``, never ``dict.items``."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


def wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Namespace({k: wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, Namespace):
        return {k: _unwrap(value[k]) for k in value}
    if isinstance(value, list | tuple):
        return [_unwrap(v) for v in value]
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises with the name that is missing
    return value


def _tojson(value: Any) -> str:
    """``{{ x | tojson }}``: plain JSON of mappings and lists (a drill alert embeds receipt logs this way)."""
    return json.dumps(_unwrap(value))


ENV.filters["tojson"] = _tojson

NO_ALERT = _NoAlert(hint="this run was not started by an alert, so 'alert' has no fields; pass the value as an input")


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render templates inside ``value`` (str, list or dict).

    A string that is exactly one ``{{ expression }}`` evaluates to the expression's native
    value (a list stays a list); any other template string renders to text.
    """
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    scope = {k: (v if isinstance(v, Undefined) else wrap(v)) for k, v in context.items()}
    try:
        inner = _expression_source(value)
        if inner is not None:
            return _unwrap(ENV.compile_expression(inner, undefined_to_none=False)(**scope))
        return ENV.from_string(value).render(**scope)
    except (UndefinedError, SecurityError, TemplateSyntaxError) as exc:
        raise TemplateError(f"cannot render {value!r}: {exc}") from None


def condition(value: str | bool, context: dict[str, Any]) -> bool:
    """Evaluate an ``if:`` to a real boolean. A string such as "False" is an error, never truthy."""
    if isinstance(value, bool):
        return value
    inner = _expression_source(value)
    scope = {k: (v if isinstance(v, Undefined) else wrap(v)) for k, v in context.items()}
    try:
        result = _unwrap(ENV.compile_expression(inner if inner is not None else value, undefined_to_none=False)(**scope))
    except (UndefinedError, SecurityError, TemplateSyntaxError) as exc:
        raise TemplateError(f"cannot evaluate if {value!r}: {exc}") from None
    if not isinstance(result, bool):
        raise TemplateError(
            f"if {value!r} evaluated to {type(result).__name__} {result!r}, not true/false; "
            "compare explicitly, e.g. inputs.flag == true"
        )
    return result
