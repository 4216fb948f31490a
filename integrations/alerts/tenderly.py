"""Tenderly alert webhooks: ``{id, event_type: ALERT | TEST, transaction {network, hash, from, to,
block_number, ...}}``. A ``TEST`` event (Tenderly's "send test") is parsed like any other; routing
decides what it starts."""

from __future__ import annotations

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
    number,
    obj,
    text,
    tx_hash,
)


class Tenderly:
    source: ClassVar[str] = "tenderly"
    raw_keys: ClassVar[frozenset[str] | None] = None  # the upstream's own object
    credentials: ClassVar[Credentials] = Credentials(HMAC_SECRET.any_of, HMAC_SECRET.needs,
                                                     signed_headers=("x-tenderly-signature", "date"))

    def authenticate(self, body: bytes, headers: dict[str, str], source: SourceConfig, env: Env) -> Any:
        """``x-tenderly-signature`` = hex HMAC-SHA256(key, raw body + the ``date`` header)."""
        auth.tenderly(body, headers, env(source.secret_env or ""))

    def parse(self, body: Any) -> list[Alert]:
        data = obj(body, "body")
        ident = text(data.get("id"), "id")
        kind = text(data.get("event_type"), "event_type")
        if kind not in ("ALERT", "TEST"):
            raise AdapterError(f"event_type: {kind!r} is not ALERT or TEST")
        tx = obj(data.get("transaction"), "transaction")
        found = sorted({address(tx[k], f"transaction.{k}") for k in ("from", "to") if tx.get(k)})
        return [Alert(source=self.source, id=ident, dedupe_key=f"{self.source}:{ident}",
                      title=f"Tenderly {kind.lower()}", chain_id=number(tx.get("network"), "transaction.network"),
                      tx_hash=tx_hash(tx.get("hash"), "transaction.hash"), addresses=found,
                      block=number(tx.get("block_number"), "transaction.block_number"),
                      severity="info" if kind == "TEST" else "unknown", raw=data, actors=actors(tx.get("from")))]


ADAPTER = Tenderly()
