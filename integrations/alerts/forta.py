"""Forta alerts: a scan node's webhook batch ``{"alerts": [...], "metrics": [...]}`` and the GraphQL
API's ``{"data": {"alerts": {"alerts": [...]}}}``. Both carry ``alertId``, ``hash``, ``severity``,
``addresses`` and ``source {transactionHash, block {number, chainId}, bot {id}}``."""

from __future__ import annotations

from typing import Any, ClassVar

from breakglass.integrations.alert import Alert
from breakglass.integrations.alerts import auth
from breakglass.integrations.alerts.base import (
    AdapterError,
    Credentials,
    Env,
    SourceConfig,
    actor_metadata,
    addresses,
    items,
    number,
    obj,
    severity,
    text,
    tx_hash,
)


class Forta:
    source: ClassVar[str] = "forta"
    raw_keys: ClassVar[frozenset[str] | None] = None  # the upstream's own object
    credentials: ClassVar[Credentials] = Credentials(
        any_of=(("scanners",),), needs="scanners: the scan node addresses whose JWTs it accepts",
        signed_headers=("authorization",))  # each JWT is signed anew and expires in 30 s

    def authenticate(self, body: bytes, headers: dict[str, str], source: SourceConfig, env: Env) -> Any:
        """``Authorization: Bearer <JWT>`` signed by an allowlisted scan node's key, not expired."""
        auth.forta_jwt(headers, source.scanners)

    def parse(self, body: Any) -> list[Alert]:
        data = obj(body, "body")
        if "data" in data:
            where = "data.alerts.alerts"
            found = items(obj(obj(data["data"], "data").get("alerts"), "data.alerts").get("alerts"), where)
        else:
            where = "alerts"
            found = items(data.get("alerts"), where)
        if not found:
            raise AdapterError(f"{where}: empty")
        return [self._alert(obj(a, f"{where}[{i}]"), f"{where}[{i}]") for i, a in enumerate(found)]

    def _alert(self, alert: dict[str, Any], where: str) -> Alert:
        source = obj(alert.get("source") or {}, f"{where}.source")
        block = obj(source.get("block") or {}, f"{where}.source.block")
        alert_hash = text(alert.get("hash"), f"{where}.hash")
        return Alert(
            source=self.source, id=alert_hash, dedupe_key=f"{self.source}:{alert_hash}",
            title=text(alert.get("name") or alert.get("alertId"), f"{where}.name"),
            severity=severity(alert.get("severity"), f"{where}.severity"),
            chain_id=number(block.get("chainId") if block.get("chainId") is not None else alert.get("chainId"),
                            f"{where}.source.block.chainId"),
            tx_hash=tx_hash(source.get("transactionHash"), f"{where}.source.transactionHash"),
            addresses=addresses(alert.get("addresses"), f"{where}.addresses"),
            block=number(block.get("number"), f"{where}.source.block.number"), raw=alert,
            actors=actor_metadata(alert.get("metadata")))


ADAPTER = Forta()
