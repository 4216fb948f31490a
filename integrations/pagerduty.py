"""PagerDuty Events API v2: trigger and resolve one alert per dedup key. The routing key is sent
only in the request body; it never appears in errors or logs."""

from __future__ import annotations

from typing import Any

from breakglass.integrations.http import client


class PagingError(Exception):
    pass


def send(url: str, routing_key: str, action: str, dedup_key: str, payload: dict[str, Any] | None = None,
         timeout: float = 10.0) -> None:
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key}
    if payload is not None:
        body["payload"] = payload
    try:
        response = client().post(url, json=body, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - the key is in the body, never in the message
        raise PagingError(f"pagerduty: {type(exc).__name__}") from None
    if response.status_code not in (200, 202):
        raise PagingError(f"pagerduty: HTTP {response.status_code}")
