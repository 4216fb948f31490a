from __future__ import annotations

import pytest

from breakglass.flows.language.yamlpos import YamlError, parse


def test_only_true_and_false_are_booleans() -> None:
    doc = parse("a: yes\nb: no\nc: on\nd: true\ne: False\n", "x.yaml")
    assert doc.data == {"a": "yes", "b": "no", "c": "on", "d": True, "e": False}


def test_unquoted_hex_addresses_stay_strings() -> None:
    doc = parse("addr: 0x70997970C51812dc3A010C7d01b50e0d17dc79C8\nn: 42\noctal: 0o17\n", "x.yaml")
    assert doc.data == {"addr": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "n": 42, "octal": "0o17"}


def test_dates_stay_strings() -> None:
    assert parse("d: 2026-11-01\n", "x.yaml").data == {"d": "2026-11-01"}


def test_positions_point_at_values_and_keys() -> None:
    doc = parse("steps:\n  - id: a\n    with:\n      chain: x\n", "x.yaml")
    assert doc.values[("steps", 0, "with", "chain")] == (4, 14)
    assert doc.keys[("steps", 0, "with", "chain")] == (4, 7)


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    with pytest.raises(YamlError) as info:
        parse("a: 1\nb: 2\na: 3\n", "x.yaml")
    assert str(info.value) == (
        "x.yaml:3:1: a: duplicate key 'a' (first at line 1). Remove one of them: YAML would silently keep only the last."
    )


def test_several_documents_are_an_error() -> None:
    with pytest.raises(YamlError) as info:
        parse("a: 1\n---\nb: 2\n", "x.yaml")
    assert info.value.diagnostic.line == 2


def test_merge_keys_are_refused() -> None:
    with pytest.raises(YamlError, match="merge keys"):
        parse("base: &b {x: 1}\nother:\n  <<: *b\n", "x.yaml")
