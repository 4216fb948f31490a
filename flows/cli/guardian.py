"""Guardian commands: ``prepare`` (pre-signed pauses), ``sign`` (Safe owner signatures), ``check`` (readiness)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from breakglass.flows.cli import output as cli_output
from breakglass.flows.cli.base import (
    IncidentArg,
    InventoryOpt,
    JsonOpt,
    _emit,
    _home,
    _require_inventory,
    app,
    err,
    out,
)
from breakglass.flows.errors import BreakglassError, RunFailed


@app.command()
def prepare(playbooks: Annotated[list[Path], typer.Argument(help="playbooks whose pause steps say prepared: true",
                                                            metavar="PLAYBOOK...")],
            inventory: InventoryOpt = None, as_json: JsonOpt = False) -> int:
    """Sign and store (encrypted) the pauses marked `prepared: true`, for the signers' next nonces.

    Example: breakglass prepare playbooks/guardian-key-compromise.yaml --inventory inventories/mainnet.yaml"""
    from breakglass.flows.effects import prepared
    from breakglass.flows.effects import unlock as signers_mod
    from breakglass.flows.readiness import preflight
    from breakglass.flows.spec.validate import load_playbook

    inventory = _require_inventory(inventory, "prepare")
    results: list[dict[str, Any]] = []
    for path in playbooks:
        pb, inv = load_playbook(path, inventory)
        assert inv is not None
        preflight.refuse_missing_env(inv, pb, "prepare")
        steps = prepared.prepared_steps(pb, gated=None)
        if not steps:
            results.append({"playbook": pb.name, "steps": [], "note": "no pause step says prepared: true"})
            continue
        names = {s.with_.signer for s in steps}
        keys = signers_mod.unlock(inv, names, None, signers_mod.interactive_prompt())
        results.append({"playbook": pb.name, "steps": prepared.build(pb, inv, keys, _home())})
    if as_json:
        _emit({"prepared": results}, True)
    else:
        for item in results:
            for step in item["steps"]:
                done = ", ".join(f"{c} at nonce {n}" for c, n in step["prepared"]) or "nothing"
                out.print(f"{item['playbook']}/{step['step']}: prepared {done}", markup=False)
                for reason in step["skipped"]:
                    out.print(f"  skipped {reason}", markup=False)
            if item.get("note"):
                out.print(f"{item['playbook']}: {item['note']}", markup=False)
    return 0


@app.command()
def sign(incident: IncidentArg, safe_tx_hash: Annotated[str, typer.Argument(help="the Safe transaction's hash (0x + 64 hex)",
                                                                           metavar="SAFE_TX_HASH")],
         signature: Annotated[str | None, typer.Option("--signature", help="an owner's 65-byte signature made on their own device",
                                                       metavar="0xSIGNATURE")] = None,
         with_signer: Annotated[str | None, typer.Option("--with", help="an owner signer from --inventory to sign with",
                                                         metavar="SIGNER")] = None,
         inventory: InventoryOpt = None, as_json: JsonOpt = False) -> int:
    """Add a Safe owner's signature to a proposed Safe transaction; it is checked before it counts.

    Examples: breakglass sign INC-20261205-0001 0xSAFE_TX_HASH --signature 0x… ·
    breakglass sign INC-… 0xSAFE_TX_HASH --with owner-b --inventory inventories/mainnet.yaml"""
    from breakglass.flows.effects import safe
    from breakglass.flows.effects.unlock import interactive_prompt, unlock_one
    from breakglass.flows.run.runstore import Store
    from breakglass.flows.spec.validate import load_inventory
    from breakglass.integrations.chain.signers import LocalSigner

    if (signature is None) == (with_signer is None):
        raise BreakglassError("give exactly one of --signature 0x... or --with SIGNER (with --inventory)")
    if not (safe_tx_hash.startswith("0x") and len(safe_tx_hash) == 66):
        raise BreakglassError(f"{safe_tx_hash!r} is not a safeTxHash (0x followed by 64 hex digits)")
    incident_dir = Store(_home()).incident_dir(incident)
    remote = not (incident_dir / "incident.json").exists()
    if remote and not os.environ.get("PREFECT_API_URL"):
        raise BreakglassError(f"no incident {incident!r} here (`breakglass status` lists incidents); to sign from "
                              "another machine, set PREFECT_API_URL (and PREFECT_API_AUTH_STRING) to the runner's "
                              "Prefect API")
    if with_signer is not None:
        signer = unlock_one(load_inventory(_require_inventory(inventory, "sign --with")), with_signer, prompt=interactive_prompt())
        if not isinstance(signer, LocalSigner):
            raise BreakglassError(f"signer '{with_signer}' cannot sign a digest here; sign on its device and pass --signature")
        raw = signer.sign_digest(bytes.fromhex(safe_tx_hash[2:]))
    else:
        assert signature is not None
        try:
            raw = bytes.fromhex(signature.removeprefix("0x"))
        except ValueError:
            raise BreakglassError("--signature is not hex") from None
    if remote:  # through the Prefect API, the way votes travel: the runner checks it before it counts
        from breakglass.flows.gates import voting

        sent = voting.submit_safe_signature(incident, safe_tx_hash.lower(), raw)
        err.print(f"submitted through the Prefect API: owner {sent['owner']} signed {safe_tx_hash}; the runner checks "
                  "it against the proposal before it counts (its log and `breakglass status` on its host say so)",
                  markup=False)
        _emit({"incident": incident, "safe_tx_hash": safe_tx_hash.lower(), "owner": sent["owner"], "status": "submitted",
               "flow_runs": sent["flow_runs"]}, as_json)
        return 0
    owner = safe.submit_signature(incident_dir, safe_tx_hash.lower(), raw)
    err.print(f"accepted: owner {owner} signed {safe_tx_hash}", markup=False)
    _emit({"incident": incident, "safe_tx_hash": safe_tx_hash.lower(), "owner": owner, "status": "accepted"}, as_json)
    return 0


@app.command()
def check(inventory: Annotated[Path | None, typer.Argument(help="a live inventory (or --inventory FILE)",
                                                            metavar="INVENTORY")] = None,
          inventory_opt: InventoryOpt = None,
          pauses: Annotated[int, typer.Option(help="pauses each guardian must be able to pay for", metavar="N")] = 3,
          as_json: JsonOpt = False) -> int:
    """Readiness: RPCs, signers, and each guardian's pause path, checked against the live chain.

    Examples: breakglass check --inventory inventories/mainnet.yaml · breakglass check inventories/mainnet.yaml --json"""
    from breakglass.flows.effects.unlock import interactive_prompt
    from breakglass.flows.readiness import check as check_mod

    if inventory is not None and inventory_opt is not None and inventory != inventory_opt:
        raise BreakglassError(f"two inventories given ({inventory} and --inventory {inventory_opt}): give one")
    inventory = _require_inventory(inventory or inventory_opt, "check")
    if not inventory.is_file():
        raise BreakglassError(f"{inventory}: no such inventory file")
    from breakglass.flows.readiness import preflight

    loaded = check_mod.load(inventory)
    findings = check_mod.run(loaded, pauses=pauses, prompt=interactive_prompt(),
                             playbooks=preflight.playbooks_near(inventory, loaded))
    if as_json:
        _emit(check_mod.to_json(findings), True)
    else:
        table = cli_output.table(f"breakglass check {inventory}", ("subject", "check", "status", "detail"))
        for f in findings:
            table.add_row(f.subject, f.check, {"ok": "ok", "fail": "FAIL", "warn": "warn"}[f.status], f.detail)
        out.print(table)
    failed = [f for f in findings if f.status == "fail"]
    if failed:
        raise RunFailed(f"{len(failed)} check(s) failed: " + "; ".join(f"{f.subject} {f.check}" for f in failed))
    return 0
