"""Alert adapters: one module per source, each owning how that source's requests are proven
(``credentials``, ``authenticate``) and how its body becomes ``Alert`` values (``parse``).

A new source is its module here, its line in ``ADAPTERS``, its docs and its tests: the inventory's
``kind:`` values, the inventory's credential rule and the intake's authentication all come from here.
A test checks that every adapter satisfies the ``Adapter`` protocol, parses its real-format fixture,
and answers random JSON with an ``Alert`` list or an ``AdapterError``, never anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from breakglass.integrations.alerts import alertmanager, defender, forta, generic, oz_monitor, tenderly
from breakglass.integrations.alerts.base import Adapter, AdapterError

ADAPTERS: dict[str, Adapter] = {a.source: a for a in (oz_monitor.ADAPTER, defender.ADAPTER, forta.ADAPTER,
                                                       tenderly.ADAPTER, alertmanager.ADAPTER, generic.ADAPTER)}

# The alert sources an inventory or a drill spec may name (``kind:``): the keys of ADAPTERS, so the
# JSON Schema and the "expected one of" errors list exactly the registered sources.
if TYPE_CHECKING:
    AlertKind = str
else:
    AlertKind = Literal[tuple(ADAPTERS)]

__all__ = ["ADAPTERS", "Adapter", "AdapterError", "AlertKind"]
