"""Alert adapters: one module per source, each turning that source's body into ``Alert`` values.

A test checks that every adapter here satisfies the ``Adapter`` protocol, parses its real-format
fixture, and answers random JSON with an ``Alert`` list or an ``AdapterError``, never anything else.
"""

from __future__ import annotations

from breakglass.integrations.alerts import alertmanager, defender, forta, generic, oz_monitor, tenderly
from breakglass.integrations.alerts.base import Adapter, AdapterError

ADAPTERS: dict[str, Adapter] = {a.source: a for a in (oz_monitor.ADAPTER, defender.ADAPTER, forta.ADAPTER,
                                                       tenderly.ADAPTER, alertmanager.ADAPTER, generic.ADAPTER)}

__all__ = ["ADAPTERS", "Adapter", "AdapterError"]
