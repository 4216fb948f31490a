"""Alert adapters: one module per source, each turning that source's body into ``Alert`` values.

A test checks that every adapter here satisfies the ``Adapter`` protocol, parses its real-format
fixture, and answers random JSON with an ``Alert`` list or an ``AdapterError``, never anything else.
"""

from __future__ import annotations

from typing import Literal

from breakglass.integrations.alerts import alertmanager, defender, forta, generic, oz_monitor, tenderly
from breakglass.integrations.alerts.base import Adapter, AdapterError

# The alert sources an inventory or a drill spec may name: the keys of ADAPTERS (a test holds them equal).
AlertKind = Literal["oz-monitor", "defender", "forta", "tenderly", "alertmanager", "generic"]

ADAPTERS: dict[str, Adapter] = {a.source: a for a in (oz_monitor.ADAPTER, defender.ADAPTER, forta.ADAPTER,
                                                       tenderly.ADAPTER, alertmanager.ADAPTER, generic.ADAPTER)}

__all__ = ["ADAPTERS", "Adapter", "AdapterError", "AlertKind"]
