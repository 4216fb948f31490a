"""OpenZeppelin Monitor (the open-source successor of Defender's monitors).

Template mode posts ``{"title", "body"}``: the text the monitor's template rendered, no
structured fields, so the alert is identified by the hash of the two strings and addresses and
transaction hashes are picked out of the text. Raw mode posts ``{"EVM": {monitor, transaction,
receipt, logs, network_slug, matched_on, matched_on_args}}``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

from breakglass.integrations.alert import Alert
from breakglass.integrations.alerts import auth
from breakglass.integrations.alerts.base import (
    HMAC_SECRET,
    AdapterError,
    Credentials,
    Env,
    SourceConfig,
    actors,
    address,
    addresses,
    items,
    number,
    obj,
    text,
    tx_hash,
)

NETWORKS = {"ethereum_mainnet": 1, "ethereum_sepolia": 11155111, "base_mainnet": 8453, "arbitrum_one": 42161,
            "optimism_mainnet": 10, "polygon_mainnet": 137, "bsc_mainnet": 56, "avalanche_mainnet": 43114}


class OzMonitor:
    source: ClassVar[str] = "oz-monitor"
    raw_keys: ClassVar[frozenset[str] | None] = frozenset({"EVM", "title", "body"})  # raw or template mode
    credentials: ClassVar[Credentials] = Credentials(HMAC_SECRET.any_of, HMAC_SECRET.needs,
                                                     signed_headers=("x-signature", "x-timestamp"))

    def authenticate(self, body: bytes, headers: dict[str, str], source: SourceConfig, env: Env) -> Any:
        """``X-Signature`` = hex HMAC-SHA256(secret, raw body + ``X-Timestamp``), timestamp in milliseconds."""
        auth.oz_monitor(body, headers, env(source.secret_env or ""))

    def parse(self, body: Any) -> list[Alert]:
        data = obj(body, "body")
        if "EVM" in data:
            return [self._raw(obj(data["EVM"], "EVM"), data)]
        if set(data) >= {"title", "body"}:
            return [self._template(data)]
        raise AdapterError("body: expected {title, body} (template mode) or {EVM: ...} (raw mode)")

    def _template(self, data: dict[str, Any]) -> Alert:
        title, message = text(data["title"], "title"), text(data["body"], "body", limit=8000)
        digest = hashlib.sha256(f"{title}\n{message}".encode()).hexdigest()
        found = sorted({m.lower() for m in re.findall(r"0x[0-9a-fA-F]{40}(?![0-9a-fA-F])", message)})
        hashes = re.findall(r"0x[0-9a-fA-F]{64}(?![0-9a-fA-F])", message)
        return Alert(source=self.source, id=digest[:32], dedupe_key=f"{self.source}:{digest}", title=title,
                     addresses=found, tx_hash=hashes[0].lower() if hashes else None, raw=data)

    def _raw(self, evm: dict[str, Any], data: dict[str, Any]) -> Alert:
        monitor = obj(evm.get("monitor"), "EVM.monitor")
        name = text(monitor.get("name"), "EVM.monitor.name")
        transaction = obj(evm.get("transaction") or {}, "EVM.transaction")
        receipt = obj(evm.get("receipt") or {}, "EVM.receipt")
        tx = tx_hash(transaction.get("hash") or receipt.get("transactionHash"), "EVM.transaction.hash")
        slug = text(evm.get("network_slug"), "EVM.network_slug", required=False)
        found = set(addresses([a.get("address") for a in items(monitor.get("addresses") or [], "EVM.monitor.addresses")
                                   if isinstance(a, dict)],
                              "EVM.monitor.addresses"))
        for key in ("from", "to"):
            if transaction.get(key):
                found.add(address(transaction[key], f"EVM.transaction.{key}"))
        block = number(receipt.get("blockNumber") or transaction.get("blockNumber"), "EVM.receipt.blockNumber")
        ident = f"{name}/{slug}/{tx}"
        return Alert(source=self.source, id=hashlib.sha256(ident.encode()).hexdigest()[:32],
                     dedupe_key=f"{self.source}:{ident}", title=name, chain_id=NETWORKS.get(slug), tx_hash=tx,
                     addresses=sorted(found), block=block, raw=data, actors=actors(transaction.get("from")))


ADAPTER = OzMonitor()
