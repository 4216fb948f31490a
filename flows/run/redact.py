"""Last line of defence: replace secret values that an exception might carry with their names.

Secrets are never put into messages on purpose; this catches third-party exceptions that echo
a URL with an embedded API key, or a key, back at us.
"""

from __future__ import annotations

import os

from breakglass.flows.language.inventory import Inventory


class Redactor:
    def __init__(self, secrets: dict[str, str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self._pairs = sorted(((v, k) for k, v in secrets.items() if len(v) >= 8), key=lambda p: -len(p[0]))

    @classmethod
    def for_inventory(cls, inventory: Inventory, extra: dict[str, str] | None = None) -> Redactor:
        names: set[str] = set()
        for chain in inventory.chains.values():
            names |= {rpc.env for rpc in chain.rpc if rpc.env}
        for signer in inventory.signers.values():
            for attr in ("env", "password_env", "url_env"):
                if getattr(signer, attr, None):
                    names.add(getattr(signer, attr))
        for channel in inventory.channels.values():
            for attr in ("token_env", "password_env", "url_env", "secret_env", "username_env"):
                if getattr(channel, attr, None):
                    names.add(getattr(channel, attr))
        names.add("PREFECT_API_AUTH_STRING")
        secrets = {name: os.environ[name] for name in names if os.environ.get(name)}
        for name, value in list(secrets.items()):
            if value.startswith("0x"):
                secrets[name + "#bare"] = value[2:]
            elif len(value) == 64:
                secrets[name + "#0x"] = "0x" + value
        return cls({**secrets, **(extra or {})})

    def __call__(self, text: str) -> str:
        for value, name in self._pairs:
            if value in text:
                text = text.replace(value, f"<redacted:{name.split('#')[0]}>")
        return text
