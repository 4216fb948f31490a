"""Walk a pydantic model type along a data path, to find the model or field type that stands there.

Used to say which keys are allowed where (did-you-mean hints) and which fields may hold
32-byte hex (exempt from the key-literal check).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel


def _field(model: type[BaseModel], key: str) -> tuple[Any, list[Any]] | None:
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            return info.annotation, list(info.metadata)
    return None


def _unwrap(tp: Any, meta: list[Any], data: Any) -> tuple[Any, list[Any]]:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp, *extra = get_args(tp)
            meta = meta + list(extra)
            continue
        if origin in (Union, types.UnionType):
            members = [m for m in get_args(tp) if m is not type(None)]
            tp = _pick(members, data)
            continue
        return tp, meta


def _pick(members: list[Any], data: Any) -> Any:
    if len(members) == 1:
        return members[0]
    kind = data.get("kind") if isinstance(data, dict) else None
    for member in members:
        base = get_args(member)[0] if get_origin(member) is Annotated else member
        if isinstance(base, type) and issubclass(base, BaseModel) and kind is not None:
            info = base.model_fields.get("kind")
            if info is not None and kind in get_args(info.annotation):
                return member
    for member in members:
        base = get_args(member)[0] if get_origin(member) is Annotated else member
        origin = get_origin(base) or base
        if isinstance(data, list) and origin is list:
            return member
        if isinstance(data, dict) and (origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel))):
            return member
        if isinstance(data, str) and origin is str:
            return member
    return members[0]


def type_at(root: type[BaseModel], data: Any, loc: tuple[str | int, ...]) -> tuple[Any, list[Any]]:
    """The (type, metadata) at ``loc``; ``(None, [])`` where the path leaves the model."""
    tp: Any = root
    meta: list[Any] = []
    for part in loc:
        tp, meta = _unwrap(tp, meta, data)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found = _field(tp, str(part))
            if found is None:
                return None, []
            tp, meta = found
        elif get_origin(tp) is list and isinstance(part, int):
            tp, meta = get_args(tp)[0], []
        elif get_origin(tp) is dict:
            tp, meta = get_args(tp)[1], []
        else:
            return None, []
        data = _at(data, part)
    return _unwrap(tp, meta, data)


def _at(data: Any, part: str | int) -> Any:
    """``data[part]``, or None where the data has no such key or index."""
    if isinstance(data, dict):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None


def allowed_keys(root: type[BaseModel], data: Any, loc: tuple[str | int, ...]) -> list[str]:
    tp, _ = type_at(root, data, loc)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [info.alias or name for name, info in tp.model_fields.items()]
    return []

