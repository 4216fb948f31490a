"""What a responder sees: a drill's output in a log file at 80 columns, a playbook of their own outside
playbooks/, and the HTML report of a cold drill and of a failed live incident, opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli, dev_key, fresh_protocol, live_inventory

pytestmark = pytest.mark.slow

REVERT = re.compile(r"AccessControlUnauthorizedAccount\(0x[0-9a-fA-F]{40}, 0x[0-9a-f]{64}\)")
MINE = """apiVersion: breakglass/v1
kind: Playbook
name: mine
description: written from the docs, in a folder of its own with no templates/
severity: high
steps:
  - id: tell
    kind: notify
    with: {template: war-room-alert, to: [war-room], data: {summary: "pausing the vault"}}
  - id: pause
    kind: pause
    needs: [tell]
    with: {contracts: [vault], signer: guardian}
"""


def _probe(page: Path) -> dict:
    probe = subprocess.run(["node", str(REPO / "tests" / "helpers" / "svg_probe.mjs"), str(page)], capture_output=True,
                           text=True, timeout=120, cwd=REPO)
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout)


def test_my_own_playbook_validates_and_drills_with_the_bundled_templates(prefect_api, tmp_path: Path) -> None:
    book = tmp_path / "mine.yaml"
    book.write_text(MINE)
    assert not (tmp_path / "templates").exists() and not (tmp_path / "inventories").exists()
    checked = cli("validate", str(book), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.count("were not checked") == 1 and "--inventory FILE" in checked.stderr  # said once, with how
    against = cli("validate", str(book), "--inventory", str(REPO / "playbooks" / "inventories" / "drill.yaml"), cwd=tmp_path)
    assert against.returncode == 0 and "not checked" not in against.stderr, against.stderr

    drilled = cli("drill", str(book), "--json", cwd=tmp_path)
    assert drilled.returncode == 0, drilled.stderr
    assert "the bundled one; pass --inventory FILE for your own" in drilled.stderr
    record = json.loads(drilled.stdout)
    steps = {s["id"]: s for s in record["steps"]}
    assert steps["tell"]["outputs"]["delivered"] == 1 and steps["pause"]["status"] == "completed"
    assert "  ok tell completed in" in drilled.stderr and "Task run" not in drilled.stderr  # our lines, not Prefect's
    home = Path(os.environ["BREAKGLASS_HOME"])
    prefect_log = home / "incidents" / record["incident"] / "runs" / record["run_id"] / "artifacts" / "prefect.log"
    assert "Task run 'tell'" in prefect_log.read_text() or "tell" in prefect_log.read_text()  # Prefect's, kept
    assert "Beginning flow run" in prefect_log.read_text()

    typo = tmp_path / "typo.yaml"
    typo.write_text(MINE.replace("war-room-alert", "war-room-alrt"))
    missing = cli("validate", str(typo), cwd=tmp_path)
    assert missing.returncode == 1
    assert f"looked for {tmp_path / 'templates' / 'war-room-alrt.md.j2'} and " in missing.stderr
    assert str(REPO / "playbooks" / "templates" / "war-room-alrt.md.j2") in missing.stderr


def test_a_drill_piped_to_a_file_at_80_columns_keeps_the_whole_revert_reason(prefect_api, tmp_path: Path) -> None:
    book = tmp_path / "failing.yaml"
    book.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: failing\ndescription: a revert\nseverity: high\n"
                    "steps:\n  - id: limit\n    kind: transact\n    with: {contract: bridge, function: 'setRateLimit(uint256)', "
                    "args: [0], signer: backup-guardian}\n  - id: after\n    kind: snapshot\n    needs: [limit]\n"
                    "    with: {chain: ethereum, paused: [vault]}\n")
    log = tmp_path / "drill.log"
    with log.open("w") as sink:  # not a terminal: rich assumes 80 columns
        done = subprocess.run([sys.executable, "-m", "breakglass.flows.cli.main", "drill", str(book)], stdout=sink,
                              stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "80"}, cwd=tmp_path, timeout=300)
    text = log.read_text()
    assert done.returncode == 2, text
    reason = REVERT.search(text)
    assert reason is not None, text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert rows and max(len(line) for line in rows) <= 80 and "…" not in "".join(rows)  # wrapped, never cut
    limit = []
    for line in rows:
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[0] not in ("", "limit"):
            break
        limit.append(cells[-1])
    assert "".join(limit).replace(" ", "") == reason.group(0).replace(" ", "")  # the whole reason, in its cell
    assert "  X  limit FAILED after 1 attempt(s): " + reason.group(0) in text
    assert "-  after skipped: needs 'limit', which failed" in text and "NoneType: None" not in text


def test_the_report_of_a_cold_drill_starts_at_the_first_event(tmp_path: Path) -> None:
    """A fresh home: the drill itself starts the Prefect server (its start-up is a band of its own)."""
    from breakglass.flows.run import prefect_server as server

    cold = tmp_path / "home"
    book = tmp_path / "fast.yaml"
    book.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: fast\ndescription: a prepared pause\n"
                    "severity: critical\nsteps:\n  - id: pause\n    kind: pause\n    with: {contracts: [vault, bridge], "
                    "signer: guardian, prepared: true}\n  - id: look\n    kind: snapshot\n    needs: [pause]\n"
                    "    with: {chain: ethereum, paused: [vault, bridge]}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(BREAKGLASS_HOME=str(cold), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    try:
        drilled = subprocess.run([sys.executable, "-m", "breakglass.flows.cli.main", "drill", str(book), "--json"],
                                 capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert drilled.returncode == 0, drilled.stderr
        assert "starting the local Prefect server" in drilled.stderr and "Prefect server ready in" in drilled.stderr
        record = json.loads(drilled.stdout)
        page = tmp_path / "cold.html"
        made = subprocess.run([sys.executable, "-m", "breakglass.flows.cli.main", "report", record["incident"], "--format",
                               "html", "--out", str(page)], capture_output=True, text=True, env=env, timeout=120)
        assert made.returncode == 0, made.stderr
    finally:
        server.stop(cold)
    drawn = _probe(page)
    axis = drawn["axis"]["x2"] - drawn["axis"]["x1"]
    bars = {b["step"]: b for b in drawn["bars"]}
    assert (bars["pause"]["x"] - drawn["axis"]["x1"]) / axis < 0.05, drawn  # the broadcast, not the step's start
    assert len(drawn["bands"]) == 1 and "tool start-up" in drawn["bands"][0]["label"]
    band = drawn["bands"][0]
    assert band["width"] / axis > 0.3 and bars["look"]["x"] >= band["x"] + band["width"] - 1  # start-up drawn apart
    assert drawn["failure"] is None and drawn["gaps"] == ["None."]


def test_the_report_of_a_failed_live_incident_says_why_at_the_top(prefect_api, chain, tmp_path: Path) -> None:
    protocol = fresh_protocol(chain)
    book = tmp_path / "guard.yaml"
    book.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: guard\ndescription: t\nseverity: high\nsteps:\n"
                    "  - {id: look, kind: snapshot, timeout: 5s, with: {chain: ethereum, paused: [vault]}}\n"
                    "  - {id: pause, kind: pause, needs: [look], timeout: 20s, with: {contracts: [vault], signer: guardian}}\n"
                    "  - {id: tell, kind: snapshot, needs: [pause], with: {chain: ethereum, paused: [vault]}}\n")
    inventory = live_inventory(tmp_path, protocol)
    ran = cli("run", str(book), "--inventory", str(inventory), "--yes", "--json",  # the RPC is down
              env={"BG_TEST_RPC_URL": "http://127.0.0.1:9", "BG_TEST_GUARDIAN_KEY": dev_key("guardian")})
    assert ran.returncode == 2, ran.stderr
    record = json.loads(ran.stdout)
    reason = next(s["error"] for s in record["steps"] if s["id"] == "look")
    assert record["status"] == "failed" and reason

    doc = json.loads(cli("report", record["incident"], "--json").stdout)
    assert doc["failures"] == [{"run": record["run_id"], "step": "look", "kind": "snapshot", "reason": reason}]
    assert doc["continue"] == f"breakglass resume {record['incident']}" and doc["actions"] == []
    page = tmp_path / "failed.html"
    assert cli("report", record["incident"], "--format", "html", "--out", str(page)).returncode == 0
    text = page.read_text()
    assert "\\u0027" not in text and "None</td>" not in text and "<th>detail</th>" not in text
    drawn = _probe(page)
    assert drawn["failure"] is not None and drawn["failure"]["bottom"] <= drawn["fold"]  # above the fold
    assert f"look (snapshot): {reason}" in drawn["failure"]["text"]
    assert f"breakglass resume {record['incident']}" in drawn["failure"]["text"]
    assert drawn["gaps"] == [f"step look failed: {reason}", "step pause skipped: needs 'look', which failed",
                             "step tell skipped: needs 'pause', which was skipped"]
    md = cli("report", record["incident"]).stdout
    assert f"**The response failed.** Step `look` (snapshot) failed: {reason}" in md
    assert "None: no transaction was signed." in md
    shown = cli("status", record["incident"], env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    assert "look" in shown.stdout and "snapshot" in shown.stdout and "needs 'look', which failed" in shown.stdout
    assert reason.replace(" ", "")[:60] in "".join(c for line in shown.stdout.splitlines() if "│" in line
                                                   for c in line.split("│")[-2].strip()).replace(" ", "")
    listed = cli("status").stdout
    live, _, drills = listed.partition("drills (")
    assert "live incidents (" in live and record["incident"] in live and record["incident"] not in drills
