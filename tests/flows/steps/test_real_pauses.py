"""Real protocols' pause shapes on a real anvil: Optimism's pause(string) (the fixture's GuardedBridgeConfig) and a
pool that needs two calls read through a bitmap and a tuple view (MultiFlagPool: Compound III flags, Balancer v2
setPaused/getPausedState, an EigenLayer-style bitmap). Every consumer: the pause step, prepare and the fast path,
the gate digest, snapshot, the scorecard, check, and kill -9 during a multi-call pause."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from breakglass.flows.language import pausespec
from breakglass.flows.language.inventory import Contract
from breakglass.integrations.chain import abi
from tests.conftest import REPO, Chain, cli, dev_key, fresh_protocol, mined

FLAGS = abi.parse("pausedFlags()(uint256)")
STATE = abi.parse("getPausedState()(bool,uint256,uint256)")
PAUSED = abi.parse("paused()(bool)")
IDENTIFIER = abi.parse("pauseIdentifier()(string)")

SHAPES = """  bridge-config:
    chain: ethereum
    address: "{bridge_config}"
    guardian: guardian
    pause: {{function: "pause(string)", args: ["breakglass"]}}
  pool:
    chain: ethereum
    address: "{pool}"
    guardian: guardian
    pause:
      - {{function: "pause(bool,bool,bool,bool,bool)", args: [true, true, true, true, true]}}
      - {{function: "setPaused(bool)", args: [true]}}
    paused:
      - {{view: "pausedFlags()(uint256)", paused_when: {{bits: 31}}}}
      - {{view: "getPausedState()(bool,uint256,uint256)", result: 0}}
"""


def _inventory(tmp: Path, chain: Chain, contracts: str = "") -> Path:
    a = chain.addresses
    text = f"""apiVersion: breakglass/v1
kind: Inventory
name: real-pauses
chains:
  ethereum:
    chain_id: 31337
    block_time: 1s
    rpc: [{{env: BG_TEST_RPC_URL}}]
    multicall3: "{a['fixture:multicall']}"
contracts:
{SHAPES.format(bridge_config=a['fixture:bridge-config'], pool=a['fixture:pool'])}{contracts}signers:
  guardian: {{kind: env, env: BG_TEST_GUARDIAN_KEY, address: "{a['fixture:guardian']}"}}
"""
    path = tmp / "inventory.yaml"
    path.write_text(text)
    return path


def _playbook(tmp: Path, prepared: bool = False) -> Path:
    path = tmp / "shapes.yaml"
    path.write_text(f"""apiVersion: breakglass/v1
kind: Playbook
name: shapes
description: t
severity: critical
steps:
  - {{id: pause, kind: pause, timeout: 60s, with: {{contracts: [bridge-config, pool], signer: guardian, prepared: {str(prepared).lower()}}}}}
  - id: after
    kind: snapshot
    needs: [pause]
    with: {{chain: ethereum, paused: [bridge-config, pool]}}
""")
    return path


def _env(chain: Chain, **extra: str) -> dict[str, str]:
    return {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), **extra}


def _count(chain: Chain) -> int:
    with chain.rpc() as rpc:
        return int(rpc.call("eth_getTransactionCount", [chain.addresses["fixture:guardian"], "latest"]), 16)


def _read(chain: Chain, name: str, fn: abi.Function) -> tuple:
    with chain.rpc() as rpc:
        raw = rpc.call("eth_call", [{"to": chain.addresses[f"fixture:{name}"], "data": "0x" + fn.encode().hex()}, "latest"])
    return fn.decode(bytes.fromhex(raw[2:]))


def test_pause_and_paused_forms_parse_into_calls_and_views() -> None:
    c = Contract(chain="x", address="0x" + "11" * 20, pause=[{"function": "pause(bool,bool,bool,bool,bool)", "args": [True] * 5},
                                                              {"function": "setPaused(bool)", "args": ["true"]}],
                 paused=[{"view": "paused()(uint256)", "paused_when": {"bits": "0x3"}},
                         {"view": "getPausedState()(bool,uint256,uint256)", "result": 0}])
    actions = pausespec.actions(c)
    assert [a.suffix for a in actions] == ["pause", "pause.2"]
    assert actions[1].data == abi.parse("setPaused(bool)").encode([True])
    bitmap, state = pausespec.views(c)
    word = lambda n: n.to_bytes(32, "big")  # noqa: E731
    assert bitmap.is_paused(word(3)) and bitmap.is_paused(word(7)) and not bitmap.is_paused(word(2))
    assert state.is_paused(word(1) + word(5) + word(6)) and not state.is_paused(word(0) * 3)
    eigen = pausespec.views(Contract(chain="x", address="0x" + "11" * 20, paused="paused()(uint256)"))[0]
    assert eigen.is_paused(word(4)) and not eigen.is_paused(word(0))
    equals = pausespec.views(Contract(chain="x", address="0x" + "11" * 20,
                                      paused={"view": "paused()(uint256)", "paused_when": {"equals": 2}}))[0]
    assert equals.is_paused(word(2)) and not equals.is_paused(word(3))
    with pytest.raises(ValueError, match="answered nothing"):  # an EOA answers eth_call with empty data
        eigen.is_paused(b"")


@pytest.mark.slow
def test_pause_step_pauses_both_shapes_then_a_rerun_sends_nothing(prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    inventory, playbook = _inventory(tmp_path, chain), _playbook(tmp_path)
    before = _count(chain)
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    out = record["steps"][0]["outputs"]
    assert out["paused"] == {"bridge-config": True, "pool": True} and out["all_paused"] is True
    assert [r["status"] for r in out["results"]] == ["paused", "paused"]
    assert _count(chain) == before + 3  # pause("breakglass"); pause(true x5) and setPaused(true)
    assert _read(chain, "bridge-config", IDENTIFIER) == ("breakglass",)
    assert _read(chain, "pool", FLAGS)[0] == 31 and _read(chain, "pool", STATE)[0] is True
    pool = out["results"][1]
    assert len(pool["transactions"]) == 2 and pool["tx_hash"] == pool["transactions"][-1]
    snapshot = record["steps"][1]["outputs"]
    assert snapshot["paused"] == {"bridge-config": True, "pool": True}
    journal = (home / "incidents" / record["incident"] / "runs" / record["run_id"] / "journal.jsonl").read_text()
    keys = {json.loads(line)["intent"].rsplit("/", 1)[1] for line in journal.splitlines() if '"signed"' in line}
    assert keys == {"pause", "pause.2"}
    report = cli("report", record["incident"], "--format", "json")
    assert report.returncode == 0, report.stderr
    actions = {a["what"] for a in json.loads(report.stdout)["actions"]}
    # every transaction in the journal is its own row: the pool's two calls are two transactions
    assert actions == {'bridge-config.pause("breakglass")', "pool.pause(true, true, true, true, true)", "pool.setPaused(true)"}

    rerun = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert rerun.returncode == 0, rerun.stderr
    results = json.loads(rerun.stdout)["steps"][0]["outputs"]["results"]
    assert [(r["status"], r["tx_hash"]) for r in results] == [("already_paused", None)] * 2
    assert _count(chain) == before + 3


@pytest.mark.slow
def test_someone_else_paused_the_string_guardian_first(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    inventory, playbook = _inventory(tmp_path, chain), _playbook(tmp_path)
    data = abi.parse("pause(string)").encode(["someone else"])
    with chain.rpc() as rpc:
        mined(rpc, {"from": chain.addresses["fixture:guardian"], "to": chain.addresses["fixture:bridge-config"],
                    "data": "0x" + data.hex()})
    before = _count(chain)
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["steps"][0]["outputs"]["results"]
    assert results[0]["status"] == "already_paused" and results[0]["tx_hash"] is None
    assert _count(chain) == before + 2  # only the pool's two calls
    assert _read(chain, "bridge-config", IDENTIFIER) == ("someone else",)


@pytest.mark.slow
def test_prepare_then_run_sends_every_call_on_the_fast_path(prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    inventory, playbook = _inventory(tmp_path, chain), _playbook(tmp_path, prepared=True)
    prepared = cli("prepare", str(playbook), "--inventory", str(inventory), "--json", env=_env(chain))
    assert prepared.returncode == 0, prepared.stderr
    start = _count(chain)
    steps = json.loads(prepared.stdout)["prepared"][0]["steps"]
    assert steps[0]["prepared"] == [["bridge-config", start], ["pool", start + 1], ["pool", start + 2]]
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    results = record["steps"][0]["outputs"]["results"]
    assert [r["status"] for r in results] == ["paused", "paused"]
    assert all(r["fast_path"].startswith("sent from the prepared transaction") for r in results)
    report = json.loads((home / "incidents" / record["incident"] / "runs" / record["run_id"] / "fastpath.json").read_text())
    assert [s["contract"] for s in report["sent"]] == ["bridge-config", "pool", "pool"] and report["stale"] == []
    assert _count(chain) == start + 3


@pytest.mark.slow
@pytest.mark.parametrize("point", ["tx.after_sign", "tx.after_broadcast", "tx.after_receipt"])
def test_kill_9_during_a_multi_call_pause_lands_each_call_once(point, prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    inventory = _inventory(tmp_path, chain)
    playbook = tmp_path / "pool.yaml"
    playbook.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: pool\ndescription: t\nseverity: critical\nsteps:\n"
                        "  - {id: pause, kind: pause, timeout: 60s, with: {contracts: [pool], signer: guardian}}\n")
    incident = f"INC-multi-{point.replace('.', '-')}-{time.monotonic_ns()}"
    before = _count(chain)
    killed = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--incident", incident,
                 env=_env(chain, BREAKGLASS_TEST_CRASH_AT=point))
    assert killed.returncode == -9, killed.stderr
    result = cli("resume", incident, "--json", env=_env(chain))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["steps"][0]["outputs"]["results"][0]["status"] == "paused"
    assert _count(chain) == before + 2  # exactly one transaction per call
    journal = [json.loads(line) for line in (home / "incidents" / incident / "runs" / record["run_id"] / "journal.jsonl")
               .read_text().splitlines()]
    signed = [e["intent"].rsplit("/", 1)[1] for e in journal if e["event"] == "signed"]
    assert sorted(signed) == ["pause", "pause.2"]


@pytest.mark.slow
def test_drill_on_the_fixture_shapes_is_scored_from_their_own_views(prefect_api, home, tmp_path) -> None:
    (tmp_path / "shapes.yaml").write_text(_playbook(tmp_path).read_text())
    spec = tmp_path / "drill.yaml"
    spec.write_text(f"""apiVersion: breakglass/v1
kind: Drill
name: shapes-local
description: the real protocols' pause shapes
playbook: shapes.yaml
inventory: {REPO / 'playbooks' / 'inventories' / 'drill.yaml'}
expectations:
  steps_completed: all
  paused: [bridge-config, pool]
""")
    result = cli("drill", str(spec), "--auto-approve", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert "Traceback" not in result.stderr
    card = json.loads((home / "incidents" / record["incident"] / "runs" / record["run_id"] / "artifacts" / "scorecard.json")
                      .read_text())
    paused = {c["expectation"]: c["met"] for c in card["expectations"] if "paused on chain" in c["expectation"]}
    assert paused == {"bridge-config paused on chain": True, "pool paused on chain": True}
    assert card["metrics_seconds"]["time_to_pause_submitted"] is not None


def test_gate_digest_binds_each_pause_call_with_its_arguments(tmp_path) -> None:
    import logging

    from breakglass.flows.gates import intents
    from breakglass.flows.gates import rules as approvals
    from breakglass.flows.run.context import Bindings, StepContext
    from breakglass.flows.spec.validate import load_playbook

    chain = Chain("http://127.0.0.1:1", {"fixture:bridge-config": "0x" + "11" * 20, "fixture:pool": "0x" + "22" * 20,
                                         "fixture:multicall": "0x" + "33" * 20, "fixture:guardian": "0x" + "44" * 20}, None, None)
    inventory_path, playbook_path = _inventory(tmp_path, chain), _playbook(tmp_path)
    playbook, inventory = load_playbook(playbook_path, inventory_path)

    def digest(inv) -> tuple[list[dict], str]:
        ctx = StepContext(incident="INC-1", run_id="r", run_key="INC-1/r", mode="live", step_id="gate", inventory=inv,
                          bindings=Bindings(), artifacts_dir=tmp_path, home=tmp_path, log=logging.getLogger("t"))
        found = intents.of_step(ctx, playbook.steps[0], {})
        return found, approvals.digest_of("INC-1", "INC-1/r", "gate", found)

    found, first = digest(inventory)
    assert [(i["item"], i["function"], i["args"]) for i in found] == [
        ("bridge-config", "pause(string)", ["breakglass"]),
        ("pool:pause", "pause(bool,bool,bool,bool,bool)", ["True"] * 5), ("pool:pause.2", "setPaused(bool)", ["True"])]
    assert all(i.get("calldata_sha256") for i in found) and not any(i.get("unresolved") for i in found)
    assert "pause(breakglass) on bridge-config" in intents.describe(found[0])
    other = pausespec.PauseCall(function="pause(string)", args=["other reason"])
    changed = inventory.model_copy(update={"contracts": {**inventory.contracts, "bridge-config": inventory.contracts[
        "bridge-config"].model_copy(update={"pause": other})}})
    assert digest(changed)[1] != first  # another argument is another approval


@pytest.mark.slow
def test_fork_drill_pauses_and_scores_the_shapes_of_the_live_inventory(prefect_api, chain, home, tmp_path) -> None:
    live = fresh_protocol(chain)
    inventory = _inventory(tmp_path, live)
    (tmp_path / "book" / "drills").mkdir(parents=True)
    book = tmp_path / "book" / "shapes.yaml"
    book.write_text(_playbook(tmp_path).read_text())
    (tmp_path / "book" / "drills" / "shapes.yaml").write_text(f"""apiVersion: breakglass/v1
kind: Drill
name: shapes-fork
playbook: {book}
expectations:
  paused: [bridge-config, pool]
""")
    result = cli("drill", str(book), "--inventory", str(inventory), "--fork-url", live.url, "--json",
                 env={"BG_TEST_GUARDIAN_KEY": ""}, timeout=240)  # impersonated: no key
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "gap:" not in result.stderr
    record = json.loads(result.stdout)
    assert record["steps"][0]["outputs"]["paused"] == {"bridge-config": True, "pool": True}
    card = json.loads((home / "incidents" / record["incident"] / "runs" / record["run_id"] / "artifacts" / "scorecard.json")
                      .read_text())
    assert all(c["met"] for c in card["expectations"] if "paused on chain" in c["expectation"])
    assert _read(live, "pool", FLAGS)[0] == 0  # the live chain was not touched


def test_validate_a_drill_spec_uses_the_given_inventory(tmp_path, capsys) -> None:
    from breakglass.flows.cli.main import main

    drill_inventory = (REPO / "playbooks" / "inventories" / "drill.yaml").read_text()
    other = tmp_path / "other.yaml"
    other.write_text(drill_inventory.replace("  bridge:\n    chain: ethereum\n    address: fixture:bridge\n",
                                             "  bridge-old:\n    chain: ethereum\n    address: fixture:bridge\n"))
    spec = str(REPO / "playbooks" / "drills" / "guardian-key-compromise.yaml")
    assert main(["validate", spec]) == 0
    capsys.readouterr()
    assert main(["validate", spec, "--inventory", str(other)]) == 1
    err = capsys.readouterr().err
    assert "unknown contract 'bridge'" in err and str(other) in err
