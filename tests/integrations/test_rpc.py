from __future__ import annotations

import pytest

from breakglass.integrations.chain import abi, multicall
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc, RpcError, RpcUnavailable
from tests.helpers.jsonhttp import JsonServer


class _Flaky:
    """Answers 503 to the first N posts, then a result per batch item or an error for single calls."""

    failures = 0

    @classmethod
    def answer(cls, body):
        if cls.failures > 0:
            cls.failures -= 1
            return 503, None
        if isinstance(body, list):
            return 200, [{"jsonrpc": "2.0", "id": c["id"], "result": "0x7a69"} for c in body]
        return 200, {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32601, "message": "no such method"}}


@pytest.fixture
def flaky():
    server = JsonServer(_Flaky.answer)
    yield server
    server.close()


def test_retries_5xx_then_answers(flaky) -> None:
    _Flaky.failures = 1
    with JsonRpc([Endpoint("env:A#0", f"{flaky.url}/key-abc")], backoff=0.01) as rpc:
        assert rpc.batch([("eth_chainId", []), ("eth_chainId", [])]) == ["0x7a69", "0x7a69"]
        assert rpc.round_trips == 2


def test_rpc_errors_are_typed_and_name_the_method(flaky) -> None:
    _Flaky.failures = 0
    with JsonRpc([Endpoint("env:A#0", f"{flaky.url}/")]) as rpc, \
            pytest.raises(RpcError, match="eth_foo: RPC error -32601: no such method"):
        rpc.call("eth_foo")


def test_unavailable_lists_endpoints_by_label_only(flaky) -> None:
    _Flaky.failures = 100
    url = f"{flaky.url}/v3/secret-project-key"
    with JsonRpc([Endpoint("env:A#0", url), Endpoint("env:B#1", url)], backoff=0.01) as rpc, pytest.raises(RpcUnavailable) as info:
        rpc.call("eth_chainId")
    assert str(info.value) == "no RPC endpoint answered (env:A#0: HTTP 503 (2 times); env:B#1: HTTP 503 (2 times))"
    assert "secret" not in repr(Endpoint("env:A#0", url))


def test_aggregate3_codec_matches_eth_abi() -> None:
    from eth_abi import decode, encode

    calls = [multicall.Call("0x" + "11" * 20, b"\x01\x02\x03"), multicall.Call("0x" + "22" * 20, b"")]
    fn = abi.parse("aggregate3((address,bool,bytes)[])")
    assert multicall.encode_aggregate3(calls) == fn.encode([[("0x" + "11" * 20, True, b"\x01\x02\x03"), ("0x" + "22" * 20, True, b"")]])
    encoded = encode(["(bool,bytes)[]"], [[(True, b"\x00" * 32), (False, b"oops")]])
    assert multicall.decode_aggregate3(encoded) == [multicall.Result(True, b"\x00" * 32), multicall.Result(False, b"oops", "reverted")]
    assert decode(["(bool,bytes)[]"], encoded)[0][1] == (False, b"oops")


def test_signature_parsing() -> None:
    fn = abi.parse("getReserves()(uint112,uint112,uint32)")
    assert (fn.name, fn.inputs, fn.outputs) == ("getReserves", (), ("uint112", "uint112", "uint32"))
    assert abi.parse("f((address,uint256)[],bytes32)").inputs == ("(address,uint256)[]", "bytes32")
    with pytest.raises(abi.SignatureError):
        abi.parse("not a signature")
