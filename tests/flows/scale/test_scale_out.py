"""Scale-out on Prefect with real processes on loopback: PostgreSQL, a Prefect server on it, `serve`
handing runs to a work pool, and two `breakglass worker` processes sharing one $BREAKGLASS_HOME.

An alert runs the flagship playbook on a worker; kill -9 of that worker mid-run ends with the other
worker finishing it and exactly one pause on chain. Concurrent incidents on one signer never share
a nonce. The same alert at two `serve` replicas creates one flow run."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, dev_key, fresh_protocol, wait_for
from tests.helpers.cluster import TOKEN, Cluster, runs
from tests.helpers.rpc_proxy import RpcProxy

PAUSE = "0x8456cb59"  # pause()
SET_RATE_LIMIT = "0xc287184e"  # setRateLimit(uint256)
TRIGGER = """
triggers:
  - source: generic
    match: {title: "Guardian key*"}
    inputs:
      compromised_signer: "{{ alert.raw.data.compromised_signer }}"
      attacker: "{{ alert.raw.data.attacker }}"
      attack_tx: "{{ alert.tx_hash }}"
"""
RATE_BOOK = """apiVersion: breakglass/v1
kind: Playbook
name: rate-limit
description: set the bridge's rate limit (two incidents, one guardian)
severity: high
inputs:
  limit: {type: string}
triggers:
  - source: generic
    match: {title: "Rate limit*"}
    inputs: {limit: "{{ alert.id }}"}
steps:
  - id: hold  # keeps three runs on each worker at once, so that both processes sign at the same moment
    kind: wait
    with: {seconds: 2}
  - id: set-limit
    kind: transact
    needs: [hold]
    timeout: 2m
    with: {contract: bridge, function: "setRateLimit(uint256)", args: ["{{ inputs.limit }}"], signer: guardian}
"""


def inventory(tmp: Path, chain) -> Path:
    """The drill inventory of the flagship, made live for this anvil: real addresses, keys by environment
    (BG_TEST_<ACCOUNT>_KEY for each fixture signer), the one generic alert source of these tests."""
    text = (REPO / "playbooks" / "inventories" / "drill.yaml").read_text()
    text = text.replace("mode: drill\n", "").replace("name: drill\n", "name: scale-test\n")
    text = text.replace("      - fixture: anvil", "      - env: BG_TEST_RPC_URL")
    text = re.sub(r"  ([a-z-]+):\n    kind: fixture\n    account: ([a-z-]+)\n", lambda m: (
        f"  {m.group(1)}: {{kind: env, env: BG_TEST_{m.group(2).upper().replace('-', '_')}_KEY, "
        f"address: \"{chain.addresses['fixture:' + m.group(2)]}\"}}\n"), text)
    text = re.sub(r"\nalert_sources:.*?(\n\n|$)", "\n", text, flags=re.S)
    # one anvil here: the bridge's second chain (and what lives on it) is left out
    text = re.sub(r"  l2:  #.*?\n(?=contracts:)", "\n", text, flags=re.S)
    text = re.sub(r"  [a-z-]+-l2:\n    chain: l2\n(    .*\n)*", "", text).replace(", l2]", "]")
    text = re.sub(r'"?(fixture:[a-z-]+)"?', lambda m: f'"{chain.addresses[m.group(1)]}"', text)
    text += "\nalert_sources:\n  generic: {kind: generic, token_env: GENERIC_TOKEN, dedupe_window: 10m}\n"
    path = tmp / "inventory.yaml"
    path.write_text(text)
    return path


def books(tmp: Path) -> Path:
    folder = tmp / "books"
    folder.mkdir()
    flagship = (REPO / "playbooks" / "guardian-key-compromise.yaml").read_text()
    (folder / "guardian-key-compromise.yaml").write_text(flagship.replace("\nsteps:\n", TRIGGER + "\nsteps:\n", 1))
    (folder / "rate-limit.yaml").write_text(RATE_BOOK)
    shutil.copytree(REPO / "playbooks" / "templates", folder / "templates")
    return folder


@pytest.fixture(scope="module")
def cluster(chain, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    protocol = fresh_protocol(chain)
    proxy = RpcProxy(protocol.url, delays={"eth_sendRawTransaction": 0.3})
    env = {"BG_TEST_RPC_URL": proxy.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"),
           "BG_TEST_BACKUP_GUARDIAN_KEY": dev_key("backup-guardian"), "BG_TEST_BOB_KEY": dev_key("bob"),
           "BG_TEST_CAROL_KEY": dev_key("carol"),  # the admin Safe's owners held here (revoke, rotate)
           "BG_TEST_ALICE": dev_key("alice"), "BG_TEST_BOB": dev_key("bob")}
    up = Cluster(tmp, env).up()
    try:
        inv, folder = inventory(tmp, protocol), books(tmp)
        up.deploy(inv, folder)
        up.base = up.serve(inv, folder)
        up.worker(inv, folder, "worker-1", crash_after=6, concurrency=3)  # 3 at a time: both take runs
        up.worker(inv, folder, "worker-2", crash_after=6, concurrency=3)
        up.protocol, up.inventory_path, up.books = protocol, inv, folder
        yield up
    finally:
        up.down()
        proxy.close()
        secrets = [env["BG_TEST_GUARDIAN_KEY"], env["BG_TEST_ALICE"], env["BG_TEST_BOB"], env["BG_TEST_CAROL_KEY"],
                   env["BG_TEST_BACKUP_GUARDIAN_KEY"], TOKEN]
        for path in [*tmp.rglob("*.log"), *up.home.rglob("*.json*")]:
            text = path.read_text(errors="replace")
            leaked = [s[:10] for s in secrets if s in text or s.removeprefix("0x") in text]
            assert not leaked, f"{path} contains a secret ({leaked})"


def post(base: str, alert: dict) -> dict:
    answer = httpx.post(f"{base}/alerts/generic", json=alert, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 202, answer.text
    return answer.json()


def txs_to(rpc, to: str, selector: str, since: int) -> list[dict]:
    found = []
    for number in range(since, int(rpc.call("eth_blockNumber"), 16) + 1):
        block = rpc.call("eth_getBlockByNumber", [hex(number), True])
        found += [t for t in block["transactions"] if (t.get("to") or "").lower() == to.lower()
                  and t["input"].startswith(selector)]
    return found


def heartbeat(home: Path, incident: str) -> dict:
    beats = list((home / "incidents" / incident).glob("runs/*/heartbeat.json"))
    return json.loads(beats[0].read_text()) if beats else {}


def test_an_alert_runs_the_flagship_on_a_worker_and_a_kill_9_is_finished_by_the_other(cluster) -> None:
    a, home = cluster.protocol.addresses, cluster.home
    ready = httpx.get(cluster.base + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["pool"] == "bg-test", ready.text  # deployed, workers polling
    with cluster.protocol.rpc() as rpc:
        start = int(rpc.call("eth_blockNumber"), 16) + 1  # blocks after this point
    alert = {"id": "gk-1", "title": "Guardian key used from a new address", "severity": "critical", "chain_id": 31337,
             "tx_hash": cluster.protocol.attack_tx, "addresses": [a["fixture:admin"], a["fixture:attacker"]],
             # named, not indexed: the adapter sorts addresses, and validate refuses alert.addresses[1]
             "data": {"compromised_signer": a["fixture:admin"], "attacker": a["fixture:attacker"]}}
    incident = post(cluster.base, alert)["incidents"][0]

    def at_gate() -> dict | None:
        found = runs(home, incident)
        if found and {s["id"]: s["status"] for s in found[0]["steps"]}.get("approve-external") == "waiting":
            return found[0]
        return None

    record = wait_for(at_gate, timeout=90, what="the flagship run waiting at its gate on a worker")
    assert record["playbook"]["name"] == "guardian-key-compromise" and record["initiator"] == "alert:generic"
    pids = {cluster.processes[n].pid: n for n in ("worker-1", "worker-2")}
    first = pids[heartbeat(home, incident)["pid"]]  # the run executes in a worker, not in serve
    cluster.kill(first)
    survivor = "worker-2" if first == "worker-1" else "worker-1"
    wait_for(lambda: heartbeat(home, incident).get("pid") == cluster.processes[survivor].pid, timeout=60,
             what="the run continued by the other worker after its heartbeat went stale")
    wait_for(at_gate, timeout=30, what="the gate open again on the survivor")
    for who, key in (("alice", "BG_TEST_ALICE"), ("bob", "BG_TEST_BOB")):
        voted = cluster.cli("approve", incident, "approve-external", "--as", who, "--sign-with", f"env:{key}")
        assert voted.returncode == 0, voted.stderr
    done = wait_for(lambda: [r for r in runs(home, incident) if r["status"] in ("completed", "failed")], timeout=120,
                    what="the flagship run finished")[0]
    assert done["status"] == "completed", done.get("error")
    assert [x["status"] for x in done["attempts"]] == ["crashed", "completed"]
    with cluster.protocol.rpc() as rpc:
        for contract in ("vault", "bridge"):
            assert len(txs_to(rpc, a[f"fixture:{contract}"], PAUSE, start)) == 1, f"{contract}: not exactly one pause"
        assert len(txs_to(rpc, a["fixture:bridge"], SET_RATE_LIMIT, start)) == 1  # one setRateLimit(0)
    audit = (home / "incidents" / incident / "audit.jsonl").read_text()
    assert '"run.crashed"' in audit and '"alert.received"' in audit


def test_concurrent_incidents_on_one_signer_never_share_a_nonce(cluster) -> None:
    for name in ("worker-1", "worker-2"):  # the kill -9 test leaves one: two processes race for the signer here
        if cluster.processes[name].poll() is not None:
            cluster.worker(cluster.inventory_path, cluster.books, name, crash_after=6, concurrency=3)
    guardian = cluster.protocol.addresses["fixture:guardian"]
    with cluster.protocol.rpc() as rpc:
        start = int(rpc.call("eth_blockNumber"), 16) + 1  # blocks after this point
    limits = [str(1000 + n) for n in range(6)]
    incidents = [post(cluster.base, {"id": limit, "title": f"Rate limit {limit}", "severity": "high"})["incidents"][0]
                 for limit in limits]
    finished = [wait_for(lambda i=i: [r for r in runs(cluster.home, i) if r["status"] in ("completed", "failed")],
                         timeout=120, what=f"incident {i}")[0] for i in incidents]
    assert all(r["status"] == "completed" for r in finished), [r.get("error") for r in finished]
    hosts = {r["attempts"][-1]["pid"] for r in finished}
    with cluster.protocol.rpc() as rpc:
        sent = [t for t in txs_to(rpc, cluster.protocol.addresses["fixture:bridge"], SET_RATE_LIMIT, start)
                if t["from"].lower() == guardian.lower()]
    nonces = [int(t["nonce"], 16) for t in sent]
    assert sorted(int(t["input"][10:], 16) for t in sent) == [int(x) for x in limits], [t["input"] for t in sent]
    assert len(set(nonces)) == 6, nonces
    assert len(hosts) == 2, "both workers should have taken runs"
    with httpx.Client(base_url=cluster.url, auth=tuple(cluster.env["PREFECT_API_AUTH_STRING"].split(":", 1))) as api:
        limits_seen = api.post("/v2/concurrency_limits/filter", json={}).json()
    # one limit per signer and chain instance: chain id, genesis hash, address (flows/effects/chainkey)
    assert any(x["name"].startswith("breakglass-signer-31337-") and x["name"].endswith(guardian.lower())
               for x in limits_seen), [x["name"] for x in limits_seen]


def test_the_same_alert_at_two_serve_replicas_creates_one_flow_run(cluster) -> None:
    second = cluster.serve(cluster.inventory_path, cluster.books, name="serve-2")
    alert = {"id": "2024", "title": "Rate limit 2024", "severity": "high"}
    one, two = post(cluster.base, alert)["incidents"][0], post(second, alert)["incidents"][0]
    assert one != two  # each replica opened its own incident...
    time.sleep(1)
    wait_for(lambda: sorted(r["status"] for i in (one, two) for r in runs(cluster.home, i)) == ["cancelled", "completed"],
             timeout=60, what="one run completed, the other cancelled as a duplicate")
    records = [r for i in (one, two) for r in runs(cluster.home, i)]
    duplicate = next(r for r in records if r["status"] == "cancelled")
    assert duplicate["error"].startswith("duplicate: run ")  # ...but only one flow run acted


HOLDER = """
import json, sys, time
from pathlib import Path
from breakglass.flows.effects import signerlock
from breakglass.flows.effects.chainkey import ChainKey
signerlock.configure(distributed=sys.argv[2] == "prefect")
spans = []
for _ in range(4):
    with signerlock.hold(Path(sys.argv[1]), ChainKey(31337, "0x" + "ee" * 32), "0x" + "ab" * 20):
        began = time.time()
        time.sleep(0.3)
        spans.append((began, time.time()))
print(json.dumps(spans))
"""


def _overlaps(cluster, tmp_path, mode: str) -> int:
    """Two processes with separate homes (two machines: no shared flock) hold one signer's lock four times each."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / f"{mode}-{n}"), mode], env=cluster.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    first, second = (json.loads(o[0].strip().splitlines()[-1]) for o in outs)
    return sum(1 for a in first for b in second if a[0] < b[1] and b[0] < a[1])


def test_machines_without_a_shared_home_serialize_a_signer_through_prefect(cluster, tmp_path) -> None:
    assert _overlaps(cluster, tmp_path, "local") > 0  # the control: per-machine locks alone let both sign at once
    assert _overlaps(cluster, tmp_path, "prefect") == 0  # a global concurrency limit of 1, strict


def test_a_failed_hand_off_is_recorded_on_the_run_never_left_silent(cluster) -> None:
    other = cluster.serve(cluster.inventory_path, cluster.books, name="serve-wrong-pool", pool="nobody-deployed-here")
    assert httpx.get(other + "/readyz", timeout=10).status_code == 503  # it says so before any alert
    incident = post(other, {"id": "3030", "title": "Rate limit 3030", "severity": "high"})["incidents"][0]
    record = wait_for(lambda: [r for r in runs(cluster.home, incident) if r["status"] == "crashed"], timeout=30,
                      what="the run marked crashed")[0]
    assert "hand-off to pool 'nobody-deployed-here' failed" in record["error"] and "breakglass resume" in record["error"]
    # the intake records the route's failure just after the run record says crashed
    log = wait_for(lambda: (lambda text: text if '"status":"failed"' in text else None)(
        (cluster.home / "intake" / "log.jsonl").read_text()), timeout=10, what="the failed route in the intake log")
    assert "nobody-deployed-here" in log


def test_server_start_database_urls_are_checked_and_never_shown_with_their_password(tmp_path) -> None:
    from breakglass.flows.run.prefect_server import redact_url
    from tests.conftest import cli

    env = {"BREAKGLASS_HOME": str(tmp_path), "PREFECT_API_URL": ""}
    bad = cli("server", "start", "--database", "mysql://ops:s3cret-pw@db.internal/prefect", env=env)
    assert bad.returncode == 1 and "postgresql+asyncpg://" in bad.stderr and "'mysql'" in bad.stderr
    assert "s3cret-pw" not in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
    assert redact_url("postgresql+asyncpg://ops:s3cret-pw@db:5432/prefect") == "postgresql+asyncpg://ops:***@db:5432/prefect"
    assert redact_url("postgresql+asyncpg://ops@db/prefect") == "postgresql+asyncpg://ops@db/prefect"
