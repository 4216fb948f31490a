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
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ["BREAKGLASS_HOME"] = tempfile.mkdtemp(prefix="bench-slack-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
for _name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING"):
    os.environ.pop(_name, None)

import httpx  # noqa: E402
from _gated import SLACK_IDS, broadcast_of, files, key, protocols, receipt, summary  # noqa: E402

from breakglass.flows import server  # noqa: E402
from breakglass.flows.gatestate import load_state  # noqa: E402
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
    home = Path(os.environ["BREAKGLASS_HOME"])
    node = anvil.start(log_dir=home / "anvil")
    serve = None
    try:
        rpc = JsonRpc([Endpoint("bench", node.url)])
        deployed, bare_raw = protocols(rpc, TRIALS)
        inventory, playbook = files(home, deployed, BLOCK_TIME, extra=SLACK_APP, channels="[signed, slack]")
        api = server.start(home)
        port = _free_port()
        env = {**os.environ, **api.settings(), "BENCH_RPC_URL": node.url, "BENCH_GUARDIAN_KEY": key("guardian").key.to_0x_hex(),
               "BENCH_SLACK_SIGNING_SECRET": SECRET, "BREAKGLASS_SERVE_TOKEN": "bench-token"}
        log = open(home / "serve.log", "w")  # noqa: SIM115 - a pipe nobody reads would block the service
        serve = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli", "serve", "--inventory", str(inventory),
                                  "--playbooks", str(playbook.parent), "--port", str(port)], env=env, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        _until(lambda: _get(base + "/healthz"), serve, home, 120, "serve to start")  # it signs 50 prepared pauses first
        rpc.call("evm_setAutomine", [False])
        rpc.call("evm_setIntervalMining", [int(BLOCK_TIME)])
        incident = f"BENCH-SLACK-{os.getpid()}"
        started = httpx.post(base + "/runs", json={"playbook": "gated-pauses", "incident": incident, "as": "alice"},
                             headers={"Authorization": "Bearer bench-token"}, timeout=60)
        if started.status_code != 202:
            raise SystemExit(f"POST /runs: {started.status_code} {started.text}")
        run_dir = home / "incidents" / incident / "runs" / started.json()["run"]

        sent: dict[int, tuple[str, float]] = {}
        trial_box = {"i": -1}
        bare_rpc = JsonRpc([Endpoint("bare", node.url)])

        class Bare(BaseHTTPRequestHandler):  # the comparison: the same POST, then a pre-signed broadcast
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                i = trial_box["i"]
                sent[i] = (bare_rpc.call("eth_sendRawTransaction", ["0x" + bare_raw[i].hex()]), time.time())
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        bare = ThreadingHTTPServer(("127.0.0.1", 0), Bare)
        threading.Thread(target=bare.serve_forever, daemon=True).start()
        bare_url = f"http://127.0.0.1:{bare.server_port}/slack/interactivity"
        ours_client, bare_client = httpx.Client(), httpx.Client()
        rng = random.Random(11)
        rows = []
        for i in range(TRIALS):
            step = f"gate-{i}"
            state = _until(lambda step=step: _waiting(run_dir, step), serve, home, 60, f"{step} to open")
            body, headers = click_body(SLACK_IDS["bob"], incident, step, state.digest)
            if ours_client.post(base + "/slack/interactivity", content=body, headers=headers).status_code != 200:
                raise SystemExit(f"trial {i}: bob's click was refused")
            _until(lambda step=step: _counted(run_dir, step) == 1, serve, home, 30, "bob's vote counted")
            body, headers = click_body(SLACK_IDS["carol"], incident, step, state.digest)
            time.sleep(rng.uniform(0, BLOCK_TIME))
            block_at_click = int(rpc.call("eth_blockNumber"), 16)
            trial_box["i"] = i
            barrier = threading.Barrier(2)
            stamps: dict[str, float] = {}

            def post(name: str, client: httpx.Client, url: str, body: bytes = body, headers: dict = headers,
                     barrier: threading.Barrier = barrier, stamps: dict = stamps) -> None:
                barrier.wait()
                stamps[name] = time.time()
                client.post(url, content=body, headers=headers)

            threads = [threading.Thread(target=post, args=("ours", ours_client, base + "/slack/interactivity")),
                       threading.Thread(target=post, args=("bare", bare_client, bare_url))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ours_hash, ours_at = broadcast_of(run_dir, f"pause-{i}")
            bare_hash, bare_at = sent[i]
            rows.append({"ours_block": receipt(rpc, ours_hash) - block_at_click,
                         "bare_block": receipt(rpc, bare_hash) - block_at_click,
                         "ours_ms": (ours_at - stamps["ours"]) * 1000, "bare_ms": (bare_at - stamps["bare"]) * 1000})
            print(f"trial {i}: breakglass +{rows[-1]['ours_ms']:.0f} ms, block +{rows[-1]['ours_block']}; "
                  f"bare +{rows[-1]['bare_ms']:.1f} ms, block +{rows[-1]['bare_block']}", file=sys.stderr)
        bare.shutdown()
        metrics = summary(rows, TRIALS, BLOCK_TIME)
        met = metrics["first_block_fraction"] >= TARGET["first_block_fraction_min"]
        print(f"first block after the click in {metrics['first_block_fraction']:.0%} of trials; click to broadcast "
              f"{metrics['to_broadcast_median_ms']} ms median", file=sys.stderr)
        print(json.dumps({"benchmark": "slack_click_to_pause", "metrics": metrics, "targets": TARGET, "met": met}))
    finally:
        if serve is not None and serve.poll() is None:
            serve.terminate()
            serve.wait(30)
        server.stop(home)
        node.stop()


def _waiting(run_dir: Path, step: str):
    state = load_state(run_dir, step)
    return state if state is not None and state.status == "waiting" else None


def _counted(run_dir: Path, step: str) -> int:
    state = load_state(run_dir, step)
    return len([v for v in state.votes if v.get("counted")]) if state else 0


def _get(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _until(predicate, process: subprocess.Popen, home: Path, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process.poll() is not None:
            raise SystemExit(f"serve stopped while waiting for {what}:\n{(home / 'serve.log').read_text()[-2000:]}")
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
