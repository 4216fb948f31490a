"""The voter's side of a gate: find it, sign a vote, check it the way the runner will, send it.

Used by ``breakglass approve``, by ``drill --auto-approve`` and by ``serve`` for Slack clicks.
Votes go to the run's current flow run as a Prefect flow-run input; the runner judges them.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.effects.fixture import ACCOUNTS
from breakglass.flows.effects.safesign import input_prefix
from breakglass.flows.effects.unlock import ANVIL_MNEMONIC
from breakglass.flows.errors import BreakglassError
from breakglass.flows.gates import attestor
from breakglass.flows.gates import rules as approvals
from breakglass.flows.gates.state import GateState, load_state
from breakglass.flows.run import audit
from breakglass.flows.run.prefect_server import Api
from breakglass.flows.run.runstore import RunHandle, Store
from breakglass.flows.spec.validate import load_playbook
from breakglass.flows.steps import is_gate

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.records import RunRecord


@dataclass
class Gate:
    home: Path
    handle: RunHandle
    record: RunRecord
    inventory: Inventory
    state: GateState

    @property
    def incident_dir(self) -> Path:
        return self.handle.dir.parent.parent


def locate(home: Path, incident: str, step: str) -> Gate:
    """The open gate ``step`` of the incident; a clear error for anything else."""
    for handle in Store(home).runs(incident):
        record = handle.load()
        if not any(s.id == step for s in record.steps):
            continue
        kind = record.step(step).kind
        if not is_gate(kind):
            raise BreakglassError(f"step '{step}' of incident {incident} is a {kind} step, not an approval gate")
        state = load_state(handle.dir, step)
        status = record.step(step).status
        if state is None or (state.status == "waiting" and status not in ("waiting", "running", "pending")):
            raise BreakglassError(f"gate '{step}' of incident {incident} is not open (step status: {status}); "
                                  "nothing to vote on yet")
        if state.status != "waiting" or status in ("completed", "failed", "skipped"):
            raise BreakglassError(f"gate '{step}' of incident {incident} is already decided ({state.status}"
                                  + (f": {state.reason}" if state.reason else "") + "); votes no longer change it")
        return Gate(home, handle, record, _inventory(handle.dir), state)
    gates = sorted({s.id for h in Store(home).runs(incident) for s in h.load().steps if is_gate(s.kind)})
    raise BreakglassError(f"incident {incident} has no step '{step}'"
                          + (f"; its gates: {', '.join(gates)}" if gates else "; it has no approval gates"))


_LOADED: dict[tuple[str, int, int], Any] = {}


def _inventory(run_dir: Path) -> Any:
    """The run's inventory, validated once per file version (a click must not re-parse a large inventory)."""
    paths = (run_dir / "playbook.yaml", run_dir / "inventory.yaml")
    stamp = (str(run_dir), paths[0].stat().st_mtime_ns, paths[1].stat().st_mtime_ns)
    if stamp not in _LOADED:
        if len(_LOADED) > 256:  # a long-running serve sees many runs
            _LOADED.clear()
        _, _LOADED[stamp] = load_playbook(*paths)
    return _LOADED[stamp]


def key_for(spec: str, gate: Gate) -> Any:
    """An eth-account account from ``env:VAR``, ``keystore:PATH`` or (drills) ``fixture:NAME``."""
    from eth_account import Account

    from breakglass.integrations.chain import signers

    kind, _, value = spec.partition(":")
    try:
        if kind == "env":
            secret = os.environ.get(value, "")
            if not secret:
                raise BreakglassError(f"--sign-with env:{value}: the environment variable is not set")
            return signers.from_hex_key(secret, f"env {value}")._account
        if kind == "keystore":
            password = os.environ.get("BREAKGLASS_KEYSTORE_PASSWORD")
            if password is None:
                password = getpass.getpass(f"password for keystore {value}: ")
            return signers.from_keystore(Path(value).expanduser(), password, f"keystore {value}")._account
        if kind == "fixture":
            if not gate.inventory.is_drill:
                raise BreakglassError("--sign-with fixture:... works only for drill runs")
            if value not in ACCOUNTS:
                raise BreakglassError(f"--sign-with fixture:{value}: unknown fixture account; known: {', '.join(ACCOUNTS)}")
            Account.enable_unaudited_hdwallet_features()
            return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{ACCOUNTS[value]}")
    except signers.SignerError as exc:
        raise BreakglassError(str(exc)) from None
    raise BreakglassError(f"--sign-with {spec!r}: use env:VARIABLE (hex key), keystore:PATH or, in drills, fixture:NAME")


def make_vote(gate: Gate, step: str, name: str, *, reject: bool, reason: str, channel: str,
              account: Any | None, via: str = "", digest: str | None = None) -> approvals.Vote:
    vote = approvals.Vote(incident=gate.record.incident, run_key=gate.record.run_key, step=step,
                          digest=digest or gate.state.digest, decision="reject" if reject else "approve", reason=reason,
                          name=name, channel=channel, cast_at=int(time.time()), os_user=_os_user(), via=via)
    return approvals.sign(vote, account) if account is not None else vote


def precheck(gate: Gate, vote: approvals.Vote) -> str | None:
    """What the runner would say, from the gate's last written state."""
    state = gate.state
    rules = approvals.Rules(
        incident=gate.record.incident, run_key=gate.record.run_key, step=state.step, digest=state.digest,
        eligible=state.eligible, initiator=state.initiator, exclude_initiator=state.exclude_initiator,
        channels=tuple(state.channels), quorum=state.quorum, ttl=state.approval_ttl, drill=gate.inventory.is_drill,
        roster=frozenset(gate.inventory.roster.people), attestor=attestor.address(gate.home),
        slack_ids={n: p.slack for n, p in gate.inventory.roster.people.items() if p.slack})
    return approvals.judge(vote, rules, {v["name"] for v in state.votes if v.get("counted")})


def refuse(gate: Gate, vote: approvals.Vote, reason: str, via: str) -> None:
    audit.append(gate.incident_dir, "vote.refused", run_key=gate.record.run_key, step=vote.step, id=vote.id,
                 name=vote.name, decision=vote.decision, channel=vote.channel, address=vote.signer_address(),
                 digest=vote.digest, cast_at=vote.cast_at, reason=reason, via=via)


def submit(api: Api, gate: Gate, vote: approvals.Vote) -> str:
    """Send the vote to the run's current flow run; returns the input key."""
    from breakglass.flows.run import prefect_api as prefectapi

    record = gate.handle.load()
    flow_run_id = record.attempts[-1].flow_run_id if record.attempts else None
    if not flow_run_id:
        raise BreakglassError(f"run {record.run_id} has no flow run yet; try again in a moment")
    key = approvals.input_key(vote)
    prefectapi.create_flow_run_input(api, flow_run_id, key, vote.model_dump_json())
    audit.append(gate.incident_dir, "vote.submitted", run_key=gate.record.run_key, step=vote.step, id=vote.id,
                 name=vote.name, decision=vote.decision, channel=vote.channel, digest=vote.digest)
    return key


def verdict(gate: Gate, vote_id: str, timeout: float) -> dict[str, Any] | None:
    """Wait for the runner to judge the vote; None if it did not within ``timeout`` (runner busy or gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = load_state(gate.handle.dir, gate.state.step)
        if state is not None:
            for vote in state.votes:
                if vote.get("id") == vote_id:
                    return {**vote, "gate_status": state.status,
                            "approvals": len({v["name"] for v in state.votes if v.get("counted") and v["decision"] == "approve"}),
                            "quorum": state.quorum}
        time.sleep(0.05)
    return None


def auto_votes(gate: Gate, exclude: str | None) -> list[approvals.Vote]:
    """Drill --auto-approve: quorum-many signed votes from distinct non-initiator roster fixture keys."""

    bindings = gate.handle.bindings()
    reverse = {address.lower(): placeholder for placeholder, address in bindings.addresses.items()}
    votes: list[approvals.Vote] = []
    for name, address in sorted(gate.state.eligible.items()):
        if len(votes) == gate.state.quorum:
            break
        if name == exclude or address is None:
            continue
        placeholder = reverse.get(address.lower(), "")
        fixture_name = placeholder.removeprefix("fixture:")
        if fixture_name not in ACCOUNTS:
            continue
        account = key_for(f"fixture:{fixture_name}", gate)
        votes.append(make_vote(gate, gate.state.step, name, reject=False, reason="drill auto-approve",
                               channel="auto-approve", account=account))
    if len(votes) < gate.state.quorum:
        raise BreakglassError(f"--auto-approve: gate {gate.state.step} needs {gate.state.quorum} votes but the drill roster "
                              f"has only {len(votes)} people with fixture addresses who are not the initiator")
    return votes


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return str(os.getuid())


def submit_safe_signature(incident: str, safe_tx_hash: str, signature: bytes) -> dict[str, Any]:
    """`breakglass sign` from another machine: find the incident's running flow runs by name (``<incident>/<run>``)
    and file the signature with each, the way votes travel (the runner checks it before it counts)."""
    from breakglass.flows.run import prefect_api as prefectapi
    from breakglass.integrations.chain import safe as safe_tx

    try:
        owner = safe_tx.recover(bytes.fromhex(safe_tx_hash[2:]), signature)
    except safe_tx.SafeSignatureError as exc:
        raise BreakglassError(f"signature refused: {exc}") from None
    client = prefectapi.client()
    runs = prefectapi.live_flow_runs(client, f"{incident}/")
    if not runs:
        raise BreakglassError(f"no running flow run of incident {incident} in the Prefect API at "
                              f"{client.api_url}; is its runner up, and is PREFECT_API_URL the runner's API?")
    key = input_prefix(safe_tx_hash) + owner.lower().removeprefix("0x")
    body = json.dumps({"safe_tx_hash": safe_tx_hash, "owner": owner, "signature": "0x" + signature.hex()})
    for run in runs:
        try:
            client.create_flow_run_input(run.id, key, body)
        except Exception as exc:  # noqa: BLE001 - an input with this key exists: the same owner signed already
            if "409" not in str(exc) and "already exists" not in str(exc).lower():
                raise
    return {"owner": owner, "flow_runs": [str(r.id) for r in runs], "key": key}
