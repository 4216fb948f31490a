"""The documented generic JSON format, for any monitor that can POST JSON:

```json
{"id": "my-monitor-2026-11-25-001", "title": "Vault outflow", "severity": "critical",
 "chain_id": 1, "tx_hash": "0x…", "addresses": ["0x…"], "actors": ["0x… the attacker"], "block": 21543210,
 "dedupe_key": "optional; defaults to the id", "data": {"anything": "kept as raw"}}
```

``id`` and ``title`` are required; everything else is optional but typed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from breakglass.integrations.alert import Alert
from breakglass.integrations.alerts import auth
from breakglass.integrations.alerts.base import (
    TOKEN_OR_BASIC,
    AdapterError,
    Credentials,
    Env,
    SourceConfig,
    addresses,
    number,
    obj,
    severity,
    text,
    tx_hash,
)

KEYS = {"id", "title", "severity", "chain_id", "tx_hash", "addresses", "actors", "block", "dedupe_key", "data"}


class Generic:
    source: ClassVar[str] = "generic"
    raw_keys: ClassVar[frozenset[str] | None] = frozenset(KEYS)  # raw is the body itself
    credentials: ClassVar[Credentials] = TOKEN_OR_BASIC

    def authenticate(self, body: bytes, headers: dict[str, str], source: SourceConfig, env: Env) -> Any:
        auth.token_or_basic(headers, source, env)

    def parse(self, body: Any) -> list[Alert]:
        data = obj(body, "body")
        unknown = sorted(set(data) - KEYS)
        if unknown:
            raise AdapterError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(KEYS))}")
        ident = text(data.get("id"), "id", limit=200)
        if not ident.strip():
            raise AdapterError("id: empty")
        return [Alert(source=self.source, id=ident, dedupe_key=f"{self.source}:{text(data.get('dedupe_key') or ident, 'dedupe_key')}",
                      title=text(data.get("title"), "title"), severity=severity(data.get("severity"), "severity"),
                      chain_id=number(data.get("chain_id"), "chain_id"), tx_hash=tx_hash(data.get("tx_hash"), "tx_hash"),
                      addresses=addresses(data.get("addresses"), "addresses"), block=number(data.get("block"), "block"),
                      actors=addresses(data.get("actors"), "actors"), raw=data)]


ADAPTER = Generic()
