"""OpenZeppelin Defender monitor webhooks (for teams still on its export format): ``{"events": [...]}``
with events of type ``BLOCK`` (a matched transaction) or ``FORTA`` (a Forta alert), the monitor under
``sentinel`` in older bodies and ``monitor`` in newer ones."""

from __future__ import annotations

from typing import Any, ClassVar

from breakglass.integrations import jsonsafe
from breakglass.integrations.alert import Alert
from breakglass.integrations.alerts import auth
from breakglass.integrations.alerts.base import (
    HMAC_SECRET,
    MAX_DEPTH,
    AdapterError,
    Credentials,
    Env,
    SourceConfig,
    actor_metadata,
    actors,
    addresses,
    items,
    number,
    obj,
    severity,
    text,
    tx_hash,
)


class Defender:
    source: ClassVar[str] = "defender"
    raw_keys: ClassVar[frozenset[str] | None] = None  # the upstream's own object
    credentials: ClassVar[Credentials] = Credentials(HMAC_SECRET.any_of, HMAC_SECRET.needs,
                                                     signed_headers=("defender-signature", "defender-timestamp"))

    def authenticate(self, body: bytes, headers: dict[str, str], source: SourceConfig, env: Env) -> Any:
        """Defender signs the parsed body: its headers and freshness are checked before the body is decoded
        (bounded), then the signature; the decoded body is returned for ``parse``."""
        auth.defender_fresh(headers)
        try:
            parsed = jsonsafe.loads(body, max_depth=MAX_DEPTH)
        except jsonsafe.JsonRefused as exc:
            raise auth.AuthError(f"Defender-Signature cannot be checked: {exc}") from None
        auth.defender(parsed, headers, env(source.secret_env or ""))
        return parsed

    def parse(self, body: Any) -> list[Alert]:
        events = items(obj(body, "body").get("events"), "events")
        if not events:
            raise AdapterError("events: empty")
        return [self._event(obj(e, f"events[{i}]"), f"events[{i}]") for i, e in enumerate(events)]

    def _event(self, event: dict[str, Any], where: str) -> Alert:
        kind = text(event.get("type"), f"{where}.type")
        monitor = obj(event.get("monitor") or event.get("sentinel"), f"{where}.monitor")
        name = text(monitor.get("name"), f"{where}.monitor.name")
        chain = number(monitor.get("chainId"), f"{where}.monitor.chainId")
        if kind == "BLOCK":
            tx = tx_hash(event.get("hash"), f"{where}.hash")
            found = addresses(event.get("matchedAddresses"), f"{where}.matchedAddresses")
            transaction = obj(event.get("transaction") or {}, f"{where}.transaction")
            block = number(transaction.get("blockNumber") or event.get("blockNumber"),
                           f"{where}.blockNumber")
            ident = f"{monitor.get('id', name)}/{tx}"
            return Alert(source=self.source, id=ident, dedupe_key=f"{self.source}:{ident}", title=name, chain_id=chain,
                         tx_hash=tx, addresses=found, block=block, severity="unknown", raw=event,
                         actors=actors(transaction.get("from")))
        if kind == "FORTA":
            alert = obj(event.get("alert"), f"{where}.alert")
            source = obj(alert.get("source") or {}, f"{where}.alert.source")
            tx = tx_hash(source.get("transactionHash"), f"{where}.alert.source.transactionHash")
            ident = text(alert.get("hash") or f"{alert.get('alertId')}/{tx}", f"{where}.alert.hash")
            return Alert(source=self.source, id=ident, dedupe_key=f"{self.source}:{ident}",
                         title=text(alert.get("name") or name, f"{where}.alert.name"), chain_id=chain, tx_hash=tx,
                         addresses=addresses(alert.get("addresses"), f"{where}.alert.addresses"),
                         severity=severity(alert.get("severity"), f"{where}.alert.severity"), raw=event,
                         actors=actor_metadata(alert.get("metadata")))
        raise AdapterError(f"{where}.type: {kind!r} is not BLOCK or FORTA")


ADAPTER = Defender()
