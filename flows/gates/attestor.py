"""The identity `breakglass serve` vouches for Slack clicks with.

Slack's request signature proves a click came through Slack; `serve` checks it, the app, the
team, the roster and the digest, and then signs the vote (EIP-712, like any signed vote) with
this installation's attestor key. Runners accept a ``slack`` vote only with that signature, so a
vote that reaches Prefect any other way does not count. The key comes from
``BREAKGLASS_ATTESTOR_KEY`` or lives in ``$BREAKGLASS_HOME/serve/attestor.key`` (0600); its
address in ``attestor.json`` is public, and is what runners on every machine check against.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.home import write_private


def key(home: Path) -> Any:
    """``BREAKGLASS_ATTESTOR_KEY`` (hex) when set: the scale-out setup, where the home is on shared storage
    and every `serve` replica must attest with one key; otherwise a key generated once in the home."""
    from eth_account import Account

    given = os.environ.get("BREAKGLASS_ATTESTOR_KEY", "").strip()
    if given:
        try:
            account = Account.from_key(given if given.startswith("0x") else "0x" + given)
        except (ValueError, TypeError):
            raise BreakglassError("BREAKGLASS_ATTESTOR_KEY is not a hex private key (64 hex digits)") from None
    else:
        path = home / "serve" / "attestor.key"
        if not path.exists():
            write_private(path, secrets.token_hex(32).encode())
        account = Account.from_key("0x" + path.read_text().strip())
    public = home / "serve" / "attestor.json"
    if not public.exists() or json.loads(public.read_text()).get("address") != account.address:
        write_private(public, json.dumps({"address": account.address}).encode())
    return account


def address(home: Path) -> str | None:
    public = home / "serve" / "attestor.json"
    return json.loads(public.read_text()).get("address") if public.exists() else None
