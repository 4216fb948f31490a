"""Secrets never reach any output: RPC URLs that embed API keys, private keys, keystore
passwords, and the Prefect auth string. Every file a run writes, its stdout and stderr, and
what Prefect stored (parameters and logs) are scanned."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from eth_account import Account
from eth_utils import keccak

from breakglass.integrations.chain import abi
from tests.conftest import cli, dev_key, fresh_protocol, live_inventory, mined

RPC_SECRET = "sk_live_4f9b2c7d1e8a6b3c"
PASSWORD = "hunter2-but-longer-for-the-keystore"


def _forms(key_hex: str) -> list[bytes]:
    raw = bytes.fromhex(key_hex[2:])
    return [key_hex.encode(), key_hex[2:].encode(), key_hex[2:].upper().encode(), raw,
            base64.b64encode(raw), base64.urlsafe_b64encode(raw), base64.b64encode(raw).rstrip(b"=")]


def _prefect_outputs(record: dict) -> list[bytes]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    out: list[bytes] = []
    published = 0
    with get_client(sync_client=True) as client:
        for attempt in record["attempts"]:
            flow_run = client.read_flow_run(attempt["flow_run_id"])
            assert set(flow_run.parameters) == {"run", "resume"}  # the run's name, never inputs or keys
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[attempt["flow_run_id"]])))
            assert logs, "the run should have logged to the Prefect API"
            out += [json.dumps(flow_run.parameters).encode()] + [log.message.encode() for log in logs]
            out += [json.dumps(client.read_flow_run(attempt["flow_run_id"]).model_dump(mode="json")).encode()]
            artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[attempt["flow_run_id"]])))
            out += [json.dumps(a.model_dump(mode="json")).encode() for a in artifacts]
            published += len(artifacts)
    assert published, "the run should have published its summary artifact"
    return out


def test_full_run_leaks_no_key_password_rpc_secret_or_auth_string(prefect_api, chain, home: Path, tmp_path: Path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    backup_key = dev_key("backup-guardian")
    keystore = tmp_path / "backup.json"
    keystore.write_text(json.dumps(Account.encrypt(backup_key, PASSWORD, kdf="pbkdf2", iterations=2048)))
    grant = abi.parse("grantRole(bytes32,address)").encode([keccak(text="GUARDIAN_ROLE"), a["fixture:backup-guardian"]])
    with chain.rpc() as rpc:
        mined(rpc, {"from": a["fixture:admin"], "to": a["fixture:bridge"], "data": "0x" + grant.hex()})
    extra = (f'  backup: {{kind: keystore, path: "{keystore}", password_env: BG_TEST_BACKUP_PASSWORD, '
             f'address: "{a["fixture:backup-guardian"]}"}}\n')
    inventory = live_inventory(tmp_path, chain, extra=extra)
    playbook = tmp_path / "p.yaml"
    playbook.write_text("""apiVersion: breakglass/v1
kind: Playbook
name: secrets
description: every signing path once
severity: critical
steps:
  - {id: snap, kind: snapshot, with: {chain: ethereum, paused: [vault, bridge]}}
  - {id: pause, kind: pause, with: {contracts: [vault], signer: guardian}}
  - {id: limit, kind: transact, with: {contract: bridge, function: "setRateLimit(uint256)", args: [0], signer: backup}}
  - {id: broken, kind: transact, needs: [limit], with: {contract: vault, function: "unpause()", signer: backup}}
""")
    url = f"{chain.url}/?apikey={RPC_SECRET}"
    guardian_key = dev_key("guardian")
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json",
                 env={"BG_TEST_RPC_URL": url, "BG_TEST_GUARDIAN_KEY": guardian_key, "BG_TEST_BACKUP_PASSWORD": PASSWORD})
    assert result.returncode == 2, result.stderr  # 'broken' fails (the backup cannot unpause), on purpose
    record = json.loads(result.stdout)
    steps = {s["id"]: s for s in record["steps"]}
    assert steps["pause"]["status"] == "completed" and steps["limit"]["status"] == "completed"
    assert "AccessControlUnauthorizedAccount" in steps["broken"]["error"]
    assert steps["snap"]["outputs"]["endpoint"] == "env:BG_TEST_RPC_URL#0"

    outputs = [result.stdout.encode(), result.stderr.encode()]
    run_dir = home / "incidents" / record["incident"] / "runs" / record["run_id"]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "journal.jsonl" for p in files)
    outputs += [p.read_bytes() for p in files]
    outputs += _prefect_outputs(record)
    secrets = [RPC_SECRET.encode(), url.encode(), PASSWORD.encode(), prefect_api.auth.encode()]
    secrets += _forms(guardian_key) + _forms(backup_key)
    for text in outputs:
        for secret in secrets:
            assert secret not in text
