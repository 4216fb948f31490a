"""Prometheus Alertmanager webhooks (version 4). Each alert is one ``Alert``; its identity is the
alert's ``fingerprint`` plus ``startsAt`` (Alertmanager re-sends firing alerts on every group
interval, and its credential is constant, so this is what dedupes). Resolved alerts are parsed too,
with severity ``info``."""

from __future__ import annotations

from typing import Any, ClassVar

from breakglass.integrations.alert import Alert
from breakglass.integrations.alerts import auth
from breakglass.integrations.alerts.base import (
    ADDRESS,
    TOKEN_OR_BASIC,
    TX_HASH,
    AdapterError,
    Credentials,
    Env,
    SourceConfig,
    items,
    number,
    obj,
    severity,
    text,
)


class Alertmanager:
    source: ClassVar[str] = "alertmanager"
    raw_keys: ClassVar[frozenset[str] | None] = None  # the upstream's own object
    credentials: ClassVar[Credentials] = TOKEN_OR_BASIC  # Alertmanager does not sign: its receiver config has one

    def authenticate(self, body: bytes, headers: dict[str, str], source: SourceConfig, env: Env) -> Any:
        auth.token_or_basic(headers, source, env)

    def parse(self, body: Any) -> list[Alert]:
        data = obj(body, "body")
        if text(data.get("version"), "version") != "4":
            raise AdapterError("version: only Alertmanager webhook version 4 is understood")
        found = items(data.get("alerts"), "alerts")
        if not found:
            raise AdapterError("alerts: empty")
        return [self._alert(obj(a, f"alerts[{i}]"), f"alerts[{i}]") for i, a in enumerate(found)]

    def _alert(self, alert: dict[str, Any], where: str) -> Alert:
        labels = {str(k): text(v, f"{where}.labels.{k}") for k, v in obj(alert.get("labels") or {}, f"{where}.labels").items()}
        annotations = obj(alert.get("annotations") or {}, f"{where}.annotations")
        fingerprint = text(alert.get("fingerprint"), f"{where}.fingerprint")
        starts = text(alert.get("startsAt"), f"{where}.startsAt")
        firing = text(alert.get("status"), f"{where}.status") == "firing"
        values = list(labels.values()) + [str(v) for v in annotations.values()]
        found = sorted({v.lower() for v in values if ADDRESS.fullmatch(v)})
        hashes = [v.lower() for v in values if TX_HASH.fullmatch(v)]
        return Alert(source=self.source, id=f"{fingerprint}@{starts}", dedupe_key=f"{self.source}:{fingerprint}@{starts}",
                     title=text(annotations.get("summary") or labels.get("alertname", ""), f"{where}.annotations.summary"),
                     severity=severity(labels.get("severity"), f"{where}.labels.severity") if firing else "info",
                     chain_id=number(labels.get("chain_id"), f"{where}.labels.chain_id"), addresses=found,
                     tx_hash=hashes[0] if hashes else None, raw=alert)


ADAPTER = Alertmanager()
