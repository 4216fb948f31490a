"""Secrets (RPC URLs that embed API keys, the Prefect auth string) never reach any output."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli, dev_key, fresh_protocol, live_inventory

SECRET = "sk_live_4f9b2c7d1e8a6b3c"


def test_full_run_leaks_no_rpc_secret_or_auth_string(prefect_api, chain, home: Path, tmp_path: Path) -> None:
    chain = fresh_protocol(chain)
    inventory = live_inventory(tmp_path, chain)
    url = f"{chain.url}/?apikey={SECRET}"
    result = cli("run", "playbooks/guardian-key-compromise.yaml", "--inventory", str(inventory), "--yes", "--json",
                 "--input", f"compromised_signer={chain.addresses['fixture:admin']}",
                 "--input", f"attacker={chain.addresses['fixture:attacker']}", "--input", f"attack_tx={chain.attack_tx}",
                 env={"BG_TEST_RPC_URL": url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")})
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["steps"][0]["outputs"]["endpoint"] == "env:BG_TEST_RPC_URL#0"
    secrets = [SECRET, url, prefect_api.auth]
    outputs = [result.stdout, result.stderr]
    run_dir = home / "incidents" / record["incident"] / "runs" / record["run_id"]
    outputs += [p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        flow_run_id = record["attempts"][0]["flow_run_id"]
        flow_run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    assert set(flow_run.parameters) == {"run_dir"}
    assert logs, "the run should have logged to the Prefect API"
    outputs += [json.dumps(flow_run.parameters)] + [log.message for log in logs]
    for text in outputs:
        for secret in secrets:
            assert secret not in text
