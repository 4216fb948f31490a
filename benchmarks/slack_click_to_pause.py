"""From the quorum-completing Slack click POSTed to `breakglass serve` to the guarded pause's broadcast,
on anvil with 2 s blocks, against a bare script: a minimal HTTP server that receives the same POST
and broadcasts a pre-signed pause.

`serve` runs one playbook of 50 gates in-process (2-of-3, exclude_initiator, signed or Slack votes),
each in front of a prepared pause of its own vault. Per trial: bob's click first; then, after a
random part of a block interval, carol's signed click goes to `serve` and to the bare server at
the same moment. We compare the blocks both pauses land in with the block current at the click.

Run: .venv/bin/python benchmarks/slack_click_to_pause.py    (last stdout line is the JSON result)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from _common import Bare, isolate, race, receipt, shut_down, start_serve, until  # noqa: E402

HOME = isolate("bench-slack-")

import httpx  # noqa: E402
from _gated import SLACK_IDS, broadcast_of, files, key, protocols, summary  # noqa: E402

from breakglass.flows.gates.state import load_state  # noqa: E402
from breakglass.flows.run import prefect_server as server  # noqa: E402
from breakglass.integrations.chain import anvil  # noqa: E402
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc  # noqa: E402

TRIALS = 50
BLOCK_TIME = 2.0
TARGET = {"first_block_fraction_min": 0.9}
SECRET = "bench-signing-secret"
APP, TEAM = "A0BENCH", "T0BENCH"
SLACK_APP = f"""channels:
  slack: {{kind: slack, token_env: BENCH_SLACK_BOT_TOKEN}}
slack_app: {{channel: slack, post_to: C0BENCH, signing_secret_env: BENCH_SLACK_SIGNING_SECRET, app_id: {APP}, team_id: {TEAM}}}
"""


def click_body(user: str, incident: str, gate: str, digest: str) -> tuple[bytes, dict[str, str]]:
    value = json.dumps({"incident": incident, "gate": gate, "digest": digest})
    payload = {"type": "block_actions", "api_app_id": APP, "team": {"id": TEAM}, "user": {"id": user},
               "actions": [{"type": "button", "action_id": "gate_approve", "value": value}]}
    body = ("payload=" + urlencode({"": json.dumps(payload)})[1:]).encode()
    stamp = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={mac}",
                  "Content-Type": "application/x-www-form-urlencoded"}


def main() -> None:
    home = HOME
    node = anvil.start(log_dir=home / "anvil")
    serve = None
    try:
        rpc = JsonRpc([Endpoint("bench", node.url)])
        deployed, bare_raw = protocols(rpc, TRIALS)
        inventory, playbook = files(home, deployed, BLOCK_TIME, extra=SLACK_APP, channels="[signed, slack]")
        api = server.start(home)
        env = {**os.environ, **api.settings(), "BENCH_RPC_URL": node.url, "BENCH_GUARDIAN_KEY": key("guardian").key.to_0x_hex(),
               "BENCH_SLACK_SIGNING_SECRET": SECRET, "BREAKGLASS_SERVE_TOKEN": "bench-token"}
        serve, base = start_serve(home, inventory, playbook.parent, env)
        rpc.call("evm_setAutomine", [False])
        rpc.call("evm_setIntervalMining", [int(BLOCK_TIME)])
        incident = f"BENCH-SLACK-{os.getpid()}"
        started = httpx.post(base + "/runs", json={"playbook": "gated-pauses", "incident": incident, "as": "alice"},
                             headers={"Authorization": "Bearer bench-token"}, timeout=60)
        if started.status_code != 202:
            raise SystemExit(f"POST /runs: {started.status_code} {started.text}")
        run_dir = home / "incidents" / incident / "runs" / started.json()["run"]

        bare = Bare(node.url, lambda i: bare_raw[i])  # the comparison: the same POST, then a pre-signed broadcast
        bare_url = bare.url + "slack/interactivity"
        ours_client, bare_client = httpx.Client(), httpx.Client()
        rng = random.Random(11)
        rows = []
        for i in range(TRIALS):
            step = f"gate-{i}"
            state = until(lambda step=step: _waiting(run_dir, step), serve, home / "serve.log", 60, f"{step} to open")
            body, headers = click_body(SLACK_IDS["bob"], incident, step, state.digest)
            if ours_client.post(base + "/slack/interactivity", content=body, headers=headers).status_code != 200:
                raise SystemExit(f"trial {i}: bob's click was refused")
            until(lambda step=step: _counted(run_dir, step) == 1, serve, home / "serve.log", 30, "bob's vote counted")
            body, headers = click_body(SLACK_IDS["carol"], incident, step, state.digest)
            time.sleep(rng.uniform(0, BLOCK_TIME))
            block_at_click = int(rpc.call("eth_blockNumber"), 16)
            bare.trial = i
            stamps = race(body, headers, ours=(ours_client, base + "/slack/interactivity"), bare=(bare_client, bare_url))
            ours_hash, ours_at = broadcast_of(run_dir, f"pause-{i}")
            bare_hash, bare_at = bare.sent[i]
            rows.append({"ours_block": receipt(rpc, ours_hash) - block_at_click,
                         "bare_block": receipt(rpc, bare_hash) - block_at_click,
                         "ours_ms": (ours_at - stamps["ours"]) * 1000, "bare_ms": (bare_at - stamps["bare"]) * 1000})
            print(f"trial {i}: breakglass +{rows[-1]['ours_ms']:.0f} ms, block +{rows[-1]['ours_block']}; "
                  f"bare +{rows[-1]['bare_ms']:.1f} ms, block +{rows[-1]['bare_block']}", file=sys.stderr)
        bare.close()
        metrics = summary(rows, TRIALS, BLOCK_TIME)
        met = metrics["first_block_fraction"] >= TARGET["first_block_fraction_min"]
        print(f"first block after the click in {metrics['first_block_fraction']:.0%} of trials; click to broadcast "
              f"{metrics['to_broadcast_median_ms']} ms median", file=sys.stderr)
        print(json.dumps({"benchmark": "slack_click_to_pause", "metrics": metrics, "targets": TARGET, "met": met}))
    finally:
        shut_down(home, node, serve)


def _waiting(run_dir: Path, step: str):
    state = load_state(run_dir, step)
    return state if state is not None and state.status == "waiting" else None


def _counted(run_dir: Path, step: str) -> int:
    state = load_state(run_dir, step)
    return len([v for v in state.votes if v.get("counted")]) if state else 0





if __name__ == "__main__":
    main()
