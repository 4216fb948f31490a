"""One contract suite for every signer kind: env key, keystore, remote signer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from breakglass.flows.effects.unlock import unlock_one
from breakglass.flows.errors import BreakglassError
from breakglass.flows.spec.loader import load, require
from tests.conftest import dev_key
from tests.helpers.signing_server import SigningServer

PASSWORD = "correct horse battery staple 42"


def _inventory(tmp: Path, signer_yaml: str) -> object:
    path = tmp / "inv.yaml"
    path.write_text("apiVersion: breakglass/v1\nkind: Inventory\nname: t\nsigners:\n  g: " + signer_yaml + "\n")
    return require(load(path))


@pytest.fixture(params=["env", "keystore", "external", "external-bare"])
def kind(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, object]]:
    key = dev_key("guardian")
    address = Account.from_key(key).address
    server = None
    if request.param == "env":
        monkeypatch.setenv("BG_KEY", key)
        yaml = f'{{kind: env, env: BG_KEY, address: "{address}"}}'
    elif request.param == "keystore":
        (tmp_path / "ks.json").write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="pbkdf2", iterations=2048)))
        monkeypatch.setenv("BG_PW", PASSWORD)
        yaml = f'{{kind: keystore, path: "{tmp_path / "ks.json"}", password_env: BG_PW, address: "{address}"}}'
    else:
        server = SigningServer(key, bare=request.param == "external-bare")
        monkeypatch.setenv("BG_SIGNER_URL", server.url)
        yaml = f'{{kind: external, url_env: BG_SIGNER_URL, address: "{address}"}}'
    yield request.param, _inventory(tmp_path, yaml)
    if server:
        server.close()


def _tx(chain, nonce: int) -> dict:
    return {"type": 2, "chainId": 31337, "nonce": nonce, "to": chain.addresses["fixture:bob"], "value": 1,
            "data": "0x", "gas": 30_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}


def test_signs_a_transaction_that_lands_from_its_address(kind, chain) -> None:
    _, inventory = kind
    signer = unlock_one(inventory, "g")
    assert signer.address == chain.addresses["fixture:guardian"]
    with chain.rpc() as rpc:
        nonce = int(rpc.call("eth_getTransactionCount", [signer.address, "pending"]), 16)
        signed = signer.sign(_tx(chain, nonce))
        assert rpc.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()]) == signed.hash
        receipt = None
        for _ in range(200):  # anvil mines right away, but the receipt can trail the answer by a few ms
            receipt = rpc.call("eth_getTransactionReceipt", [signed.hash])
            if receipt is not None:
                break
            time.sleep(0.01)
    assert receipt["from"].lower() == signer.address.lower() and signed.nonce == nonce


def test_repr_and_errors_never_show_key_material(kind) -> None:
    _, inventory = kind
    signer = unlock_one(inventory, "g")
    key = dev_key("guardian")
    assert key[2:] not in repr(signer) and key[2:] not in str(vars(signer).get("label", ""))


def test_address_mismatch_is_a_clear_error(kind, tmp_path: Path) -> None:
    name, inventory = kind
    wrong = inventory.model_copy(update={"signers": {"g": inventory.signers["g"].model_copy(
        update={"address": "0x1111111111111111111111111111111111111111"})}})
    with pytest.raises(BreakglassError) as info:
        unlock_one(wrong, "g")
    message = str(info.value)
    assert "0x1111111111111111111111111111111111111111" in message
    assert "key belongs to" in message or "does not hold" in message
    assert dev_key("guardian")[2:] not in message


def test_wrong_secret_or_missing_variable_is_specific(kind, monkeypatch: pytest.MonkeyPatch) -> None:
    name, inventory = kind
    if name == "env":
        monkeypatch.setenv("BG_KEY", "0x1234")
        expected = "is not a hex private key"
    elif name == "keystore":
        monkeypatch.setenv("BG_PW", "wrong password")
        expected = "wrong password for keystore"
    else:
        monkeypatch.delenv("BG_SIGNER_URL")
        expected = "environment variable BG_SIGNER_URL is not set"
    with pytest.raises(BreakglassError, match=expected) as info:
        unlock_one(inventory, "g")
    assert PASSWORD not in str(info.value) and "1234" not in str(info.value).replace("0x1234", "")


def test_remote_signer_that_signs_something_else_is_refused(chain, tmp_path: Path, monkeypatch) -> None:
    key = dev_key("guardian")
    server = SigningServer(key, tamper=True)
    try:
        monkeypatch.setenv("BG_SIGNER_URL", server.url)
        inventory = _inventory(tmp_path, f'{{kind: external, url_env: BG_SIGNER_URL, address: "{Account.from_key(key).address}"}}')
        signer = unlock_one(inventory, "g")
        from breakglass.integrations.chain.signers import SignerError

        with pytest.raises(SignerError, match="signed a transaction to 0x000000000000000000000000000000000000dEaD"):
            signer.sign(_tx(chain, 0))
    finally:
        server.close()
