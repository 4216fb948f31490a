"""The incident's audit log records what a run did (steps, transactions), is checked by
`breakglass audit verify`, and an edit in the middle, a truncated tail or a rewritten head is caught:
the chain names the edited entry, the run record's copy of the head catches the rest."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli, dev_key, fresh_protocol, live_inventory


def _run(tmp: Path, chain) -> dict:
    book = tmp / "guard.yaml"
    book.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: guard\ndescription: t\nseverity: critical\nsteps:\n"
                    "  - {id: look, kind: snapshot, with: {chain: ethereum, paused: [vault]}}\n"
                    "  - {id: pause, kind: pause, needs: [look], timeout: 60s, with: {contracts: [vault], signer: guardian}}\n")
    result = cli("run", str(book), "--inventory", str(live_inventory(tmp, chain)), "--yes", "--json",
                 env={"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_audit_verify_names_an_edited_entry_and_catches_a_truncated_or_rewritten_tail(prefect_api, chain, home,
                                                                                       tmp_path) -> None:
    record = _run(tmp_path, fresh_protocol(chain))
    incident = record["incident"]
    log = home / "incidents" / incident / "audit.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    events = [e["event"] for e in entries]
    assert events[0] == "run.started" and events[-1] == "run.finished"
    assert {"step.started", "step.completed", "journal.broadcast", "journal.receipt"} <= set(events), events
    broadcast = next(e for e in entries if e["event"] == "journal.broadcast")
    assert broadcast["intent"] and broadcast["hash"].startswith("0x") and broadcast["nonce"] >= 0  # what, which tx
    assert dev_key("guardian").removeprefix("0x") not in log.read_text()  # no key, and no raw signed bytes either
    assert "raw" not in broadcast
    assert record["audit_head"] == {"entries": len(entries), "sha256": record["audit_head"]["sha256"]}

    intact = cli("audit", "verify", incident)
    assert intact.returncode == 0 and "intact" in intact.stdout and str(len(entries)) in intact.stdout, intact.stderr

    original = log.read_bytes()
    lines = original.splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"step', b'"stap', 1)  # one changed byte in the third entry
    log.write_bytes(b"".join(lines))
    edited = cli("audit", "verify", incident)
    assert edited.returncode == 2 and "audit.jsonl:3: entry 3 was changed" in edited.stderr, edited.stderr
    assert "Traceback" not in edited.stderr

    log.write_bytes(b"".join(original.splitlines(keepends=True)[:-2]))  # the chain of what is left is intact...
    truncated = cli("audit", "verify", incident, "--json")
    assert truncated.returncode == 2  # ...but the run record says how long it was
    doc = json.loads(truncated.stdout)
    assert not doc["intact"] and any("truncated" in p and record["run_id"] in p for p in doc["problems"]), doc

    rewritten = original.splitlines(keepends=True)
    rewritten[-1] = rewritten[-1].replace(b'"completed"', b'"failed"')  # the last entry has no successor to break
    log.write_bytes(b"".join(rewritten))
    changed = cli("audit", "verify", incident)
    assert changed.returncode == 2 and "rewritten" in changed.stderr, changed.stderr

    unknown = cli("audit", "verify", "INC-does-not-exist")
    assert unknown.returncode == 1 and "no incident" in unknown.stderr
