"""Semantic rules of the playbook language and inventories."""

from __future__ import annotations

from pathlib import Path

import pytest

from breakglass.flows.errors import SpecError
from breakglass.flows.language.inputs import coerce, digest
from breakglass.flows.language.yamlpos import parse
from breakglass.flows.spec.loader import from_document
from breakglass.flows.spec.validate import load_playbook
from breakglass.flows.steps import REGISTRY
from breakglass.flows.steps.base import StepBase, StepKind

INVENTORY_HEAD = "apiVersion: breakglass/v1\nkind: Inventory\nname: t\n"


def _errors(text: str, name: str = "inv.yaml") -> list[str]:
    from breakglass.flows.spec.checks import check_inventory

    loaded = from_document(parse(text, name))
    if loaded.model is not None and not loaded.diagnostics:
        loaded.diagnostics += check_inventory(loaded)
    return [str(d) for d in loaded.diagnostics]


def test_every_step_kind_is_registered_with_spec_outputs_and_handler() -> None:
    assert set(REGISTRY) == {"snapshot", "pause", "transact", "notify", "watchlist", "wait", "approval", "diff", "revoke", "rotate"}
    for kind, handler in REGISTRY.items():
        assert isinstance(handler, StepKind)
        assert handler.kind == kind
        assert issubclass(handler.spec, StepBase)
        assert handler.spec.model_fields["kind"].annotation.__args__ == (kind,)
        assert handler.outputs.model_config.get("frozen") is True


def test_inventory_is_live_unless_it_says_drill() -> None:
    errors = _errors(INVENTORY_HEAD + "chains:\n  c: {chain_id: 1, block_time: 12s, rpc: [{fixture: anvil}]}\n"
                     "contracts:\n  v: {chain: c, address: 'fixture:vault'}\n")
    assert errors == [
        "inv.yaml:5:43: chain 'c': rpc[0]: 'fixture: anvil' is only allowed in a drill inventory. "
        "Use 'env: NAME_OF_VARIABLE' holding the RPC URL, or set 'mode: drill'.",
        "inv.yaml:7:26: contract 'v': address: fixture placeholders are only allowed in a drill inventory. "
        "Write the contract's real address.",
    ]


def test_drill_inventory_cannot_name_a_real_rpc() -> None:
    errors = _errors(INVENTORY_HEAD + "mode: drill\nchains:\n  c: {chain_id: 1, block_time: 1s, rpc: [{env: MAINNET_RPC}]}\n")
    assert errors == ["inv.yaml:6:42: chain 'c': rpc[0]: a drill inventory may only use 'fixture: anvil'. "
                      "Drills never talk to an RPC other than the chain they started."]


def test_rpc_limits_are_validated_with_where_and_what() -> None:
    chain = "chains:\n  c:\n    chain_id: 1\n    block_time: 12s\n    rpc: [{env: X}]\n    rpc_limits: "
    assert _errors(INVENTORY_HEAD + chain + "{batch_max: 0, body_max_bytes: 500, call_gas_max: lots, batch_size: 5}\n") == [
        "inv.yaml:9:29: chain 'c': rpc_limits.batch_max: expected greater than or equal to 1, got int 0.",
        "inv.yaml:9:48: chain 'c': rpc_limits.body_max_bytes: expected greater than or equal to 10000, got int 500.",
        "inv.yaml:9:67: chain 'c': rpc_limits.call_gas_max: expected a valid integer, unable to parse string as an integer, got str 'lots'.",
        "inv.yaml:9:73: chain 'c': rpc_limits: unknown key 'batch_size'. Did you mean 'batch_max'?",
    ]
    assert _errors(INVENTORY_HEAD + chain + "{batch_max: 1000, body_max_bytes: 5000000, call_gas_max: 50000000, in_flight: 8}\n") == []


def test_inventory_key_literal_and_references() -> None:
    errors = _errors(INVENTORY_HEAD + "chains:\n  c: {chain_id: 1, block_time: 12s, rpc: [{env: RPC}]}\n"
                     "contracts:\n  v: {chain: d, address: '0x1111111111111111111111111111111111111111'}\n"
                     "signers:\n  g: {kind: env, env: KEY, address: '0x1111111111111111111111111111111111111111'}\n"
                     "# key: ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n")
    assert any("inv.yaml:10:8: secrets: 64 hex digits look like a private key" in e for e in errors)


def test_unknown_contract_reference_in_inventory_is_reported() -> None:
    errors = _errors(INVENTORY_HEAD + "chains:\n  ethereum: {chain_id: 1, block_time: 12s, rpc: [{env: RPC}]}\n"
                     "contracts:\n  v: {chain: ethereun, address: '0x1111111111111111111111111111111111111111'}\n")
    assert errors == ["inv.yaml:7:14: contract 'v': chain: unknown chain 'ethereun'. Did you mean 'ethereum'?"]


def test_signer_with_key_material_instead_of_reference_is_refused() -> None:
    errors = _errors(INVENTORY_HEAD + "signers:\n  g: {kind: env, private_key: KEY, address: '0x1111111111111111111111111111111111111111'}\n")
    assert errors == ["inv.yaml:5:6: signer 'g': missing required key 'env'.",
                      "inv.yaml:5:18: signer 'g': unknown key 'private_key'. Allowed keys: kind, address, env."]


def test_inputs_are_typed_and_canonically_hashed() -> None:
    assert coerce("list[address]", "0x1111111111111111111111111111111111111111, 0x2222222222222222222222222222222222222222", None) == [
        "0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222"]
    assert coerce("int", "42", None) == 42
    assert coerce("bool", "true", None) is True
    with pytest.raises(ValueError):
        coerce("bool", "yes", None)
    with pytest.raises(ValueError, match="bad EIP-55 checksum"):
        coerce("address", "0x70997970C51812dc3A010C7d01b50e0d17dc79C9", None)
    assert digest({"b": 1, "a": [1, 2]}) == digest({"a": [1, 2], "b": 1})


def test_load_playbook_reports_both_files(tmp_path: Path) -> None:
    playbook = tmp_path / "p.yaml"
    playbook.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: p\ndescription: d\nseverity: low\n"
                        "steps:\n  - {id: s, kind: snapshot, with: {chain: nowhere}}\n")
    inventory = tmp_path / "i.yaml"
    inventory.write_text(INVENTORY_HEAD + "mode: dril\n")
    with pytest.raises(SpecError) as info:
        load_playbook(playbook, inventory)
    assert [str(d).split(": ", 1)[0] for d in info.value.diagnostics] == [f"{inventory}:4:7"]
