"""Bounded JSON decoding: the byte scan measures nesting exactly for JSON, stays linear on hostile bytes,
and nothing but ``JsonRefused`` comes out of it."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breakglass.integrations import jsonsafe

values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:', max_size=12),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a', max_size=6),
                                                                                 inner, max_size=3),
                      max_leaves=15)


def true_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((true_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((true_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=values, wrap=st.integers(min_value=0, max_value=60), kind=st.sampled_from(["list", "object"]))
def test_nesting_is_the_depth_of_the_json_and_loads_refuses_only_what_is_too_deep(value, wrap, kind) -> None:
    text = json.dumps(value)
    for _ in range(wrap):
        text = f"[{text}]" if kind == "list" else f'{{"k": {text}}}'
    data = text.encode()
    depth = true_depth(json.loads(data))
    assert jsonsafe.nesting(data) == depth
    if depth > jsonsafe.MAX_DEPTH:
        with pytest.raises(jsonsafe.JsonRefused, match="nested deeper than 32"):
            jsonsafe.loads(data)
    else:
        assert jsonsafe.loads(data) == json.loads(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400) | st.text(alphabet='[]{}"\\,:0a ', max_size=400).map(str.encode),
       levels=st.sampled_from([0, 1_000, 100_000]))
def test_any_bytes_are_decoded_or_refused_never_anything_else(data, levels) -> None:
    try:
        jsonsafe.loads(b"[" * levels + data)
    except jsonsafe.JsonRefused:
        pass


@pytest.mark.parametrize("body", [b'"' + b'\\"' * 400_000, b"[" * 1_000_000, b"[]" * 500_000, b'"\\' * 300_000])
def test_the_scan_is_linear_on_hostile_megabytes(body) -> None:
    started = time.perf_counter()
    jsonsafe.nesting(body)
    assert time.perf_counter() - started < 2.0  # a quadratic scan takes minutes on these


def test_size_is_refused_before_anything_is_scanned() -> None:
    with pytest.raises(jsonsafe.JsonRefused, match="over 10 bytes"):
        jsonsafe.loads(b"[" * 11, max_bytes=10)
