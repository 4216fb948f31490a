"""The fixture protocol that drills deploy on a fresh anvil: token, vault, bridge, Multicall3.

Anvil's dev accounts are unlocked, so deployment uses ``eth_sendTransaction`` and no key is
ever handled here. Every fixture name (``fixture:vault``, ``fixture:attacker``, ...) that a
drill inventory or a playbook's drill inputs can use is listed in ``FIXTURE_NAMES``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from breakglass.integrations.chain.rpc import JsonRpc

ARTIFACTS = Path(__file__).resolve().parents[2] / "contracts" / "artifacts"
# anvil's default dev accounts (from its public test mnemonic), by the role they play in drills.
ACCOUNTS = {
    "deployer": 0, "admin": 1, "guardian": 2, "attacker": 3, "user": 4, "relayer": 5,
    "backup-guardian": 6, "alice": 7, "bob": 8, "carol": 9,
}
CONTRACTS = ("token", "vault", "bridge", "multicall")
LIBRARY = ("collateral", "oracle", "market", "timelock", "governor", "safe", "bridge-config", "pool")  # the playbook library's drills
TXS = ("attack_tx",)
FIXTURE_NAMES = tuple(ACCOUNTS) + CONTRACTS + LIBRARY + TXS
DEPOSIT = 1_000 * 10**18
BRIDGE_FLOAT = 500 * 10**18
ORACLE_PRICE = 2_000 * 10**18  # fUSD per fETH
MARKET_RESERVES = 100_000 * 10**18
POOL_PAUSE_WINDOW = 90 * 86400  # Balancer v2: the Vault can be paused for 90 days after deployment
TIMELOCK_DELAY = 3_600  # seconds
QUORUM = 150 * 10**18  # fUSD of votes
ATTACKER_FUNDS = 200 * 10**18  # fUSD and fETH the attacker starts with (a flash loan, say)


def artifact(name: str) -> dict[str, Any]:
    return json.loads((ARTIFACTS / f"{name}.json").read_text())


@dataclass(frozen=True)
class Deployed:
    addresses: dict[str, str]  # "fixture:<name>" -> address
    attack_tx: str | None

    def placeholder_values(self) -> dict[str, str]:
        out = dict(self.addresses)
        if self.attack_tx:
            out["fixture:attack_tx"] = self.attack_tx
        return out


class _Chain:
    def __init__(self, rpc: JsonRpc) -> None:
        self.rpc = rpc
        self.accounts = rpc.call("eth_accounts")

    def send(self, sender: str, data: bytes, to: str | None = None) -> dict[str, Any]:
        tx: dict[str, Any] = {"from": sender, "data": "0x" + data.hex()}
        if to:
            tx["to"] = to
        tx_hash = self.rpc.call("eth_sendTransaction", [tx])
        receipt = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
        while receipt is None:  # interval mining: wait for the block
            receipt = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"fixture transaction {tx_hash} reverted")
        return receipt

    def deploy(self, sender: str, name: str, types: list[str], args: list[Any]) -> str:
        code = bytes.fromhex(artifact(name)["bytecode"][2:]) + abi_encode(types, args)
        return self.send(sender, code)["contractAddress"]

    def call(self, sender: str, to: str, signature: str, types: list[str], args: list[Any]) -> dict[str, Any]:
        from eth_utils import keccak

        return self.send(sender, keccak(text=signature)[:4] + abi_encode(types, args), to)


def _safe_artifact(name: str) -> dict[str, Any]:
    import safe_eth.eth.contracts as contracts

    return json.loads((Path(contracts.__file__).parent / "abis" / f"{name}.json").read_text())


def deploy_safe(rpc: JsonRpc, owners: list[str], threshold: int, *, grant_on: list[str] | None = None) -> str:
    """A Safe v1.4.1 (the contracts that ship with safe-eth-py) owned by ``owners``; optionally granted
    GUARDIAN_ROLE on the given contracts by the fixture admin."""
    from eth_utils import keccak

    chain = _Chain(rpc)
    me = chain.accounts[ACCOUNTS["deployer"]]
    singleton = chain.send(me, bytes.fromhex(_safe_artifact("Safe_V1_4_1")["bytecode"][2:]))["contractAddress"]
    factory = chain.send(me, bytes.fromhex(_safe_artifact("ProxyFactory_V1_4_1")["bytecode"][2:]))["contractAddress"]
    zero = "0x" + "00" * 20
    setup = keccak(text="setup(address[],uint256,address,bytes,address,address,uint256,address)")[:4] + abi_encode(
        ["address[]", "uint256", "address", "bytes", "address", "address", "uint256", "address"],
        [owners, threshold, zero, b"", zero, zero, 0, zero])
    create = keccak(text="createProxyWithNonce(address,bytes,uint256)")[:4] + abi_encode(
        ["address", "bytes", "uint256"], [singleton, setup, 0])
    receipt = chain.send(me, create, factory)
    # ProxyCreation(address indexed proxy, address singleton): the proxy is the first topic
    log = next(entry for entry in receipt["logs"] if entry["address"].lower() == factory.lower())
    safe = to_checksum_address("0x" + log["topics"][1][-40:])
    role = keccak(text="GUARDIAN_ROLE")
    for contract in grant_on or []:
        chain.call(chain.accounts[ACCOUNTS["admin"]], contract, "grantRole(bytes32,address)", ["bytes32", "address"], [role, safe])
    return safe


def grant_guardian(rpc: JsonRpc, contracts: list[str], account: str, *, fund_wei: int = 10**18) -> None:
    """Give ``account`` GUARDIAN_ROLE on ``contracts`` (as the fixture admin) and gas money (anvil only)."""
    from eth_utils import keccak

    chain = _Chain(rpc)
    rpc.call("anvil_setBalance", [account, hex(fund_wei)])
    for contract in contracts:
        chain.call(chain.accounts[ACCOUNTS["admin"]], contract, "grantRole(bytes32,address)", ["bytes32", "address"],
                   [keccak(text="GUARDIAN_ROLE"), account])


def _library(rpc: JsonRpc, chain: _Chain, acct: dict[str, str], token: str, vault: str, bridge: str) -> dict[str, str]:
    """What the playbook library's drills act on: a lending market priced by a manipulable oracle (with one
    healthy borrower), a token-vote governor queueing into a timelock that administers the vault, and the
    protocol's 2-of-3 Safe (owners admin, bob, carol) holding the admin role on vault, bridge and market."""
    from eth_utils import keccak

    me, admin = acct["deployer"], acct["admin"]
    role = {name: keccak(text=name) for name in ("PROPOSER_ROLE", "CANCELLER_ROLE")} | {"DEFAULT_ADMIN_ROLE": bytes(32)}
    grant = "grantRole(bytes32,address)"
    collateral = chain.deploy(me, "FixtureToken", ["string", "string"], ["Fixture ETH", "fETH"])
    oracle = chain.deploy(me, "PriceOracle", ["address"] * 3 + ["uint256"], [admin, acct["guardian"], acct["relayer"], ORACLE_PRICE])
    market = chain.deploy(me, "LendingMarket", ["address"] * 5 + ["uint256"],
                          [collateral, token, oracle, admin, acct["guardian"], 7_500])
    chain.call(me, token, "mint(address,uint256)", ["address", "uint256"], [market, MARKET_RESERVES])
    for who in ("user", "attacker"):
        chain.call(me, collateral, "mint(address,uint256)", ["address", "uint256"], [acct[who], 10 * 10**18])
    chain.call(acct["user"], collateral, "approve(address,uint256)", ["address", "uint256"], [market, 10 * 10**18])
    chain.call(acct["user"], market, "depositCollateral(uint256)", ["uint256"], [10 * 10**18])
    chain.call(acct["user"], market, "borrow(uint256)", ["uint256"], [5_000 * 10**18])
    timelock = chain.deploy(me, "FixtureTimelock", ["address", "address", "uint256"], [admin, acct["guardian"], TIMELOCK_DELAY])
    governor = chain.deploy(me, "FixtureGovernor", ["address"] * 4 + ["uint256"], [token, timelock, admin, acct["guardian"], QUORUM])
    for name in ("PROPOSER_ROLE", "CANCELLER_ROLE"):
        chain.call(admin, timelock, grant, ["bytes32", "address"], [role[name], governor])
    chain.call(admin, vault, grant, ["bytes32", "address"], [role["DEFAULT_ADMIN_ROLE"], timelock])
    chain.call(me, token, "mint(address,uint256)", ["address", "uint256"], [acct["attacker"], ATTACKER_FUNDS])
    safe = deploy_safe(rpc, [admin, acct["bob"], acct["carol"]], 2)
    for contract in (vault, bridge, market):
        chain.call(admin, contract, grant, ["bytes32", "address"], [role["DEFAULT_ADMIN_ROLE"], safe])
    # Real protocols' pause shapes: Optimism's pause(string) guardian, and a Compound/Balancer/EigenLayer-style
    # pool that needs two calls (five flags, then setPaused) read through a bitmap and a tuple view.
    bridge_config = chain.deploy(me, "GuardedBridgeConfig", ["address"], [acct["guardian"]])
    pool = chain.deploy(me, "MultiFlagPool", ["address", "uint256", "uint256"], [acct["guardian"], POOL_PAUSE_WINDOW, 30 * 86400])
    return {"collateral": collateral, "oracle": oracle, "market": market, "timelock": timelock, "governor": governor,
            "safe": safe, "bridge-config": bridge_config, "pool": pool}


def deploy(rpc: JsonRpc, *, attack: bool = True, library: bool = True) -> Deployed:
    """Deploy the fixture protocol, fund it, and (optionally) run the attack scenario. ``library=False`` leaves
    out the playbook library's contracts (benchmarks on interval-mined chains, where each transaction waits)."""
    chain = _Chain(rpc)
    acct = {name: chain.accounts[i] for name, i in ACCOUNTS.items()}
    me = acct["deployer"]
    token = chain.deploy(me, "FixtureToken", ["string", "string"], ["Fixture USD", "fUSD"])
    vault = chain.deploy(me, "GuardedVault", ["address"] * 3, [token, acct["admin"], acct["guardian"]])
    bridge = chain.deploy(me, "BridgeAdapter", ["address"] * 4 + ["uint256"],
                          [token, acct["admin"], acct["guardian"], acct["relayer"], 100 * 10**18])
    multicall = chain.deploy(me, "Multicall3", [], [])
    chain.call(me, token, "mint(address,uint256)", ["address", "uint256"], [acct["user"], DEPOSIT])
    chain.call(me, token, "mint(address,uint256)", ["address", "uint256"], [bridge, BRIDGE_FLOAT])
    chain.call(acct["user"], token, "approve(address,uint256)", ["address", "uint256"], [vault, DEPOSIT])
    chain.call(acct["user"], vault, "deposit(uint256)", ["uint256"], [DEPOSIT])
    extra = _library(rpc, chain, acct, token, vault, bridge) if library else {}
    attack_tx = None
    if attack:
        # The compromised admin key drains the vault to the attacker.
        attack_tx = chain.call(acct["admin"], vault, "sweep(address)", ["address"], [acct["attacker"]])["transactionHash"]
    addresses = {f"fixture:{name}": address for name, address in acct.items()}
    addresses.update({"fixture:token": token, "fixture:vault": vault, "fixture:bridge": bridge,
                      "fixture:multicall": multicall})
    addresses.update({f"fixture:{name}": address for name, address in extra.items()})
    addresses = {k: to_checksum_address(v) for k, v in addresses.items()}
    return Deployed(addresses, attack_tx)
