"""Unlock the signers a run needs, once, before anything runs.

Signers are declared in the inventory by reference only. Unlocking checks that the key
belongs to the declared address. Drill inventories may use ``kind: fixture``: anvil's public
development keys, which exist only for drills.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from breakglass.flows.effects.fixture import ACCOUNTS
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.inventory import (
    EnvSigner,
    ExternalSigner,
    FixtureSigner,
    ImpersonatedSignerSpec,
    Inventory,
    KeystoreSigner,
    SafeSigner,
)
from breakglass.flows.run.context import Bindings
from breakglass.flows.run.ports import SafeGuardian as SafeGuardian
from breakglass.integrations.chain import signers
from breakglass.integrations.chain.signers import Signer, SignerError

# anvil's well-known development mnemonic: public, and only ever used against a drill's own anvil.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"

Prompt = Callable[[str], str]




def _prompt(label: str) -> str:
    return getpass.getpass(f"password for {label}: ")


def unlock_one(inventory: Inventory, name: str, bindings: Bindings | None = None,
               prompt: Prompt | None = None) -> Signer | SafeGuardian:
    spec = inventory.signers.get(name)
    if spec is None:
        raise BreakglassError(f"no signer '{name}' in inventory '{inventory.name}'")
    label = f"'{name}'"
    try:
        if isinstance(spec, EnvSigner):
            value = os.environ.get(spec.env)
            if not value:
                raise BreakglassError(f"signer '{name}': environment variable {spec.env} is not set")
            signer: Signer = signers.from_hex_key(value, f"'{name}' (env {spec.env})")
        elif isinstance(spec, KeystoreSigner):
            if spec.password_env:
                password = os.environ.get(spec.password_env)
                if password is None:
                    raise BreakglassError(f"signer '{name}': environment variable {spec.password_env} is not set")
            elif prompt is not None:
                password = prompt(f"signer '{name}' ({spec.path})")
            else:
                raise BreakglassError(f"signer '{name}': no password_env and no terminal to ask for the keystore password")
            signer = signers.from_keystore(Path(spec.path).expanduser(), password, f"'{name}' (keystore)")
        elif isinstance(spec, ExternalSigner):
            url = os.environ.get(spec.url_env)
            if not url:
                raise BreakglassError(f"signer '{name}': environment variable {spec.url_env} is not set")
            remote = signers.RemoteSigner(url, spec.address, f"'{name}' (external {spec.url_env})")
            remote.ping()
            signer = remote
        elif isinstance(spec, SafeSigner):
            held = {o: _key(inventory, o, bindings, prompt) for o in spec.owners}
            address = spec.address
            if bindings is not None and address in bindings.addresses:
                address = bindings.addresses[address]
            return SafeGuardian(name, address, spec.chain, held, _key(inventory, spec.executor, bindings, prompt))
        elif isinstance(spec, ImpersonatedSignerSpec):
            if not inventory.is_drill:
                raise BreakglassError(f"signer '{name}': impersonated signers exist only in fork drills")
            urls = {c.chain_id: bindings.rpc[n] for n, c in inventory.chains.items() if bindings and n in bindings.rpc}
            signer = signers.ImpersonatedSigner(spec.address, urls, f"'{name}' (impersonated on the fork)")
        elif isinstance(spec, FixtureSigner):
            if not inventory.is_drill:
                raise BreakglassError(f"signer '{name}': fixture signers exist only in drill inventories")
            signer = signers.from_mnemonic(ANVIL_MNEMONIC, ACCOUNTS[spec.account], f"'{name}' (fixture {spec.account})")
        else:  # pragma: no cover - the model admits nothing else
            raise BreakglassError(f"signer '{name}': unknown kind")
    except SignerError as exc:
        raise BreakglassError(str(exc)) from None
    declared = getattr(spec, "address", None)
    if declared and signer.address != declared:
        raise BreakglassError(f"signer {label}: its key belongs to {signer.address}, but the inventory says {declared}. "
                              "Fix the inventory address or the key source.")
    if isinstance(spec, FixtureSigner) and bindings is not None:
        expected = bindings.addresses.get(f"fixture:{spec.account}")
        if expected and expected != signer.address:
            raise BreakglassError(f"signer {label}: fixture key does not match the drill chain's account {expected}")
    return signer


def _key(inventory: Inventory, name: str, bindings: Bindings | None, prompt: Prompt | None) -> Signer:
    """A Safe's owner or executor: a key signer (validate refuses a Safe there, language/checks)."""
    signer = unlock_one(inventory, name, bindings, prompt)
    if isinstance(signer, SafeGuardian):
        raise BreakglassError(f"signer '{name}' is itself a Safe; owners and the executor must be key signers")
    return signer


def unlock(inventory: Inventory, names: Iterable[str], bindings: Bindings | None = None,
           prompt: Prompt | None = None) -> dict[str, Signer | SafeGuardian]:
    problems: list[str] = []
    out: dict[str, Signer | SafeGuardian] = {}
    for name in sorted(set(names)):
        try:
            out[name] = unlock_one(inventory, name, bindings, prompt)
        except BreakglassError as exc:
            problems.append(str(exc))
    if problems:
        raise BreakglassError("cannot unlock signers: " + "; ".join(problems))
    return out


def interactive_prompt() -> Prompt | None:
    import sys

    return _prompt if sys.stdin.isatty() else None
