"""The one internal shape every alert source is turned into."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="the adapter that parsed it, e.g. oz-monitor, forta, tenderly")
    id: str
    dedupe_key: str
    severity: str = "unknown"
    chain_id: int | None = None
    tx_hash: str | None = None
    addresses: list[str] = Field(default_factory=list)
    block: int | None = None
    title: str = ""
    raw: dict[str, Any] = Field(default_factory=dict)
    actors: list[str] = Field(default_factory=list, description="addresses the source names as actors (attacker, sender, "
                                                                "exploit contract): what correlates alerts, with tx_hash")


ALERT_FIELDS = tuple(Alert.model_fields)
