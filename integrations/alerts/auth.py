"""How each alert source proves a request is its own. Constant-time comparisons, freshness windows.

Each function returns None when the request is authentic and fresh, or raises ``AuthError`` with a
reason that never contains the secret or the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from breakglass.integrations import jsonsafe

WINDOW = 300.0  # seconds a signed request stays acceptable
DEFENDER_WINDOW = 600.0  # Defender's own SDK accepts 10 minutes


class AuthError(Exception):
    pass


def _mac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.strip().lower().encode(), expected.lower().encode())


def _fresh(at: float, now: float, window: float, what: str) -> None:
    if at > now + 60:
        raise AuthError(f"{what} is in the future")
    if now - at > window:
        raise AuthError(f"{what} is older than {window:g}s")


def oz_monitor(body: bytes, headers: dict[str, str], secret: str, now: float | None = None) -> None:
    """``X-Signature`` = hex HMAC-SHA256(secret, raw body + ``X-Timestamp``), timestamp in milliseconds."""
    stamp, signature = headers.get("x-timestamp", ""), headers.get("x-signature", "")
    if not stamp.isdigit() or not signature:
        raise AuthError("missing or malformed X-Timestamp / X-Signature")
    _fresh(int(stamp) / 1000, time.time() if now is None else now, WINDOW, "X-Timestamp")
    if not _same(signature, _mac(secret, body + stamp.encode())):
        raise AuthError("X-Signature does not match")


def defender_fresh(headers: dict[str, str], now: float | None = None) -> None:
    """What of Defender's proof can be checked without the body: both headers there, the timestamp fresh."""
    stamp, signature = headers.get("defender-timestamp", ""), headers.get("defender-signature", "")
    if not stamp or not signature:
        raise AuthError("missing Defender-Timestamp / Defender-Signature")
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise AuthError("Defender-Timestamp is not ISO-8601") from None
    _fresh(at, time.time() if now is None else now, DEFENDER_WINDOW, "Defender-Timestamp")


def defender(body: Any, headers: dict[str, str], secret: str, now: float | None = None) -> None:
    """``Defender-Signature`` = hex HMAC-SHA256(secret, compact JSON of the body with ``timestamp`` added last).

    Defender signs the parsed body, so the caller decodes it first (bounded: ``integrations.jsonsafe``),
    after ``defender_fresh`` passed."""
    defender_fresh(headers, now)
    stamp, signature = headers["defender-timestamp"], headers["defender-signature"]
    if not isinstance(body, dict):
        raise AuthError("the body is not a JSON object: Defender-Signature cannot match")
    signed = json.dumps({**body, "timestamp": stamp}, separators=(",", ":"), ensure_ascii=False).encode()
    if not _same(signature, _mac(secret, signed)):
        raise AuthError("Defender-Signature does not match")


def tenderly(body: bytes, headers: dict[str, str], key: str, now: float | None = None) -> None:
    """``x-tenderly-signature`` = hex HMAC-SHA256(key, raw body + the ``date`` header)."""
    date, signature = headers.get("date", ""), headers.get("x-tenderly-signature", "")
    if not date or not signature:
        raise AuthError("missing date / x-tenderly-signature")
    try:
        at = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        raise AuthError("the date header is not an HTTP date") from None
    _fresh(at, time.time() if now is None else now, WINDOW, "date")
    if not _same(signature, _mac(key, body + date.encode())):
        raise AuthError("x-tenderly-signature does not match")


def token_or_basic(headers: dict[str, str], source: Any, env: Callable[[str], str]) -> None:
    """Alertmanager and the generic format: a bearer token when the source names one, else basic auth."""
    if source.token_env:
        bearer(headers, env(source.token_env))
    else:
        basic(headers, env(source.username_env or ""), env(source.password_env or ""))


def bearer(headers: dict[str, str], token: str) -> None:
    given = headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise AuthError("missing or wrong bearer token")


def basic(headers: dict[str, str], user: str, password: str) -> None:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if not hmac.compare_digest(headers.get("authorization", "").encode(), expected.encode()):
        raise AuthError("missing or wrong basic credentials")


def forta_jwt(headers: dict[str, str], scanners: list[str], now: float | None = None) -> str:
    """A Forta scan node's ``Authorization: Bearer <JWT>``: header ``alg: ETH``, signature over
    keccak256 of ``<header>.<payload>`` by the scanner key named in ``sub``, not expired. Counts only
    when that scanner is on the allowlist. Returns the scanner address."""
    from eth_account import Account
    from eth_utils import keccak

    given = headers.get("authorization", "")
    if not given.startswith("Bearer ") or given.count(".") != 2:
        raise AuthError("missing Forta bearer JWT")
    raw_header, raw_payload, raw_signature = given.removeprefix("Bearer ").split(".")
    try:
        header = jsonsafe.loads(_b64(raw_header), max_depth=4, max_bytes=8192, what="the JWT header")
        payload = jsonsafe.loads(_b64(raw_payload), max_depth=4, max_bytes=8192, what="the JWT payload")
        signature = _b64(raw_signature)
    except (ValueError, UnicodeDecodeError):
        raise AuthError("the Forta JWT is not well formed") from None
    if not isinstance(header, dict) or header.get("alg") != "ETH" or not isinstance(payload, dict):
        raise AuthError("the Forta JWT is not signed with alg ETH")
    now = time.time() if now is None else now
    expires = payload.get("exp")
    if not isinstance(expires, int | float) or expires < now:
        raise AuthError("the Forta JWT has expired (or has no exp)")
    if isinstance(payload.get("iat"), int | float) and payload["iat"] > now + 60:
        raise AuthError("the Forta JWT is issued in the future")
    try:
        signer = Account._recover_hash(keccak(f"{raw_header}.{raw_payload}".encode()), signature=signature)
    except Exception:  # noqa: BLE001 - garbage signatures are refusals
        raise AuthError("the Forta JWT signature cannot be read") from None
    if str(payload.get("sub", "")).lower() != signer.lower():
        raise AuthError("the Forta JWT is not signed by its subject")
    if signer.lower() not in {s.lower() for s in scanners}:
        raise AuthError(f"scanner {signer} is not on this source's allowlist")
    return signer


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
