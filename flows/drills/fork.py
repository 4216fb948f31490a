"""Fork drills: rehearse against a fork of the live chain, with the live inventory's *real* contracts and
signer addresses, signers impersonated on the fork (no key anywhere), and every message redirected to
the drill outbox. This is what catches configuration drift: a guardian that lost its role, a pause
function that changed in an upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.home import write_private
from breakglass.flows.spec.validate import load_inventory
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc

KEYED = ("env", "keystore", "external")


def prepare(live_path: Path, fork_url: str, fork_block: int | None, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Check the upstream and write the fork drill's inventory; returns (its path, the fork's description).

    The fork URL may carry an API key: it is never written into a file or an error message."""
    live = load_inventory(live_path)
    if live.is_drill:
        raise BreakglassError(f"{live_path} is a drill inventory; a fork drill needs the live one (--inventory LIVE): "
                              "its real contracts and signer addresses are what the drill checks")
    if len(live.chains) != 1:
        raise BreakglassError(f"{live_path} names {len(live.chains)} chains; a fork drill rehearses one chain at a time")
    chain_name, chain = next(iter(live.chains.items()))
    try:
        with JsonRpc([Endpoint("fork", fork_url)], timeout=10) as rpc:
            chain_id, latest = int(rpc.call("eth_chainId"), 16), int(rpc.call("eth_blockNumber"), 16)
    except Exception as exc:  # noqa: BLE001 - the message could quote the URL (and its key): never shown
        raise BreakglassError(f"the fork RPC (--fork-url) does not answer ({type(exc).__name__}); nothing was started. "
                              "Check the URL and that it serves archive state for the fork block") from None
    if chain_id != chain.chain_id:
        raise BreakglassError(f"the fork RPC (--fork-url) serves chain id {chain_id}, but chain '{chain_name}' of "
                              f"{live_path} is {chain.chain_id}; nothing was started")
    if fork_block is not None and fork_block > latest:
        raise BreakglassError(f"--fork-block {fork_block} is in the future: the chain is at block {latest}")
    data = derive(yaml.safe_load(live_path.read_text()))
    out = out_dir / "fork-inventory.yaml"
    write_private(out, yaml.safe_dump(data, sort_keys=False).encode())
    return out, {"chain": chain_name, "chain_id": chain_id, "block": fork_block if fork_block is not None else latest}


def derive(data: dict[str, Any]) -> dict[str, Any]:
    """The fork drill's inventory from the live one's YAML data: drill mode, every RPC the fork, keyed signers
    impersonated, every message to the outbox, no private submission, no Slack app or paging."""
    data = {**data, "mode": "drill", "name": f"{data['name']}-fork-drill"}
    for spec in data["chains"].values():
        spec["rpc"] = [{"fixture": "anvil"}]
        spec.pop("submit", None)
    for name, spec in list(data.get("signers", {}).items()):
        if spec.get("kind") in KEYED:  # the real address, impersonated on the fork; no key is read
            data["signers"][name] = {"kind": "impersonated", "address": spec["address"]}
    data["channels"] = {"outbox": {"kind": "outbox"}}  # never the live inventory's channels
    for contact in data.get("contacts", {}).values():
        contact["channels"] = [{"via": "outbox"}]
    for section in ("slack_app", "paging"):
        data.pop(section, None)
    # alert_sources stay: they hold only environment variable *names*, a drill never serves them, and the
    # playbooks' triggers name them (without them, no library playbook validates against the fork inventory)
    return data
