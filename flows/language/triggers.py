"""Playbook ``triggers:``: which alerts start a playbook, and how alert fields become its inputs.

```yaml
triggers:
  - source: oz                      # an alert_sources entry of the inventory
    match:
      title: "Large Transfer*"      # fnmatch pattern on the alert's title (monitor or alert name)
      id: "VAULT-*"                 # pattern on the alert id
      severity_at_least: high       # info < low < medium < high < critical
      chain_id: 1
      address_in: [vault, bridge]   # the alert names one of these contracts (or contract groups' members)
    inputs:
      attacker: "{{ alert.addresses[0] }}"
      attack_tx: "{{ alert.tx_hash }}"
```

Every condition given must hold. Alert values are data: they are inserted into inputs, never rendered.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from pydantic import Field

from breakglass.flows.language import templating
from breakglass.flows.language.types import Model, Name
from breakglass.integrations.alert import Alert

RANK = {"unknown": 0, "info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


class Match(Model):
    title: str | None = Field(None, description="fnmatch pattern on the alert title")
    id: str | None = Field(None, description="fnmatch pattern on the alert id")
    severity_at_least: str | None = Field(None, pattern="^(info|low|medium|high|critical)$")
    chain_id: int | None = None
    address_in: list[Name] = Field(default_factory=list, description="contracts from the inventory")


class Trigger(Model):
    source: Name = Field(description="an alert_sources entry of the inventory")
    match: Match = Field(default_factory=Match)
    inputs: dict[Name, Any] = Field(default_factory=dict, description="playbook inputs from alert fields (templates)")


def matches(trigger: Trigger, source: str, alert: Alert, addresses_of: dict[str, str]) -> bool:
    m = trigger.match
    if trigger.source != source:
        return False
    if m.title is not None and not fnmatchcase(alert.title, m.title):
        return False
    if m.id is not None and not fnmatchcase(alert.id, m.id):
        return False
    if m.severity_at_least is not None and RANK.get(alert.severity, 0) < RANK[m.severity_at_least]:
        return False
    if m.chain_id is not None and alert.chain_id != m.chain_id:
        return False
    if m.address_in:
        wanted = {addresses_of[n].lower() for n in m.address_in if n in addresses_of}
        if not wanted & set(alert.addresses):
            return False
    return True


def inputs_for(trigger: Trigger, alert: Alert) -> dict[str, Any]:
    context = {"inputs": {}, "steps": {}, "alert": alert.model_dump(mode="json")}
    return {name: templating.render(value, context) for name, value in trigger.inputs.items()}
