"""`breakglass report`: Markdown, JSON and one self-contained HTML file with the timeline drawn as inline SVG
(one bar per step), explorer links from the inventory, escaping of whatever an alert carried, and a broken
audit log said loudly (exit 2), never rendered silently."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from tests.conftest import cli, dev_key, fresh_protocol, live_inventory


class _Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "rect" and "bar" in (found.get("class") or ""):
            self.bars.append(found)
        if tag in ("script", "link", "img") or (tag == "image"):
            self.external.append(tag)


def test_report_formats_timeline_links_escaping_and_a_broken_log(prefect_api, chain, home, tmp_path: Path) -> None:
    from breakglass.flows.run import audit

    protocol = fresh_protocol(chain)
    book = tmp_path / "guard.yaml"
    book.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: guard\ndescription: t\nseverity: high\nsteps:\n"
                    "  - {id: look, kind: snapshot, with: {chain: ethereum, paused: [vault]}}\n"
                    "  - {id: pause, kind: pause, needs: [look], timeout: 60s, with: {contracts: [vault], signer: guardian}}\n"
                    "  - {id: after, kind: snapshot, needs: [pause], with: {chain: ethereum, paused: [vault]}}\n")
    inventory = live_inventory(tmp_path, protocol, chain_extra="    explorer: https://explorer.example/\n")
    ran = cli("run", str(book), "--inventory", str(inventory), "--yes", "--json",
              env={"BG_TEST_RPC_URL": protocol.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")})
    assert ran.returncode == 0, ran.stderr
    record = json.loads(ran.stdout)
    incident = record["incident"]
    audit.append(home / "incidents" / incident, "alert.received", title="<script>alert(1)</script>", source="test")

    import httpx

    flow_run = record["attempts"][-1]["flow_run_id"]  # the Prefect UI shows the run without the CLI
    found = httpx.post(prefect_api.url + "/artifacts/filter", headers=prefect_api.headers(),
                       json={"flow_runs": {"id": {"any_": [flow_run]}}}).json()
    summary = next(a for a in found if a["key"].endswith("-summary"))
    assert "# guard: completed" in summary["data"] and f"breakglass report {incident}" in summary["data"]
    assert "vault paused" in summary["data"] and dev_key("guardian")[2:] not in json.dumps(found)
    link = next(a for a in found if a["key"].endswith("-report"))  # the report, one click from the Prefect UI
    assert "report.html" in link["data"] and (home / "incidents" / incident / "runs" / record["run_id"] / "artifacts"
                                               / "report.html").read_text().startswith("<!doctype html>")

    md = cli("report", incident)
    assert md.returncode == 0, md.stderr
    tx = record["steps"][1]["outputs"]["results"][0]["tx_hash"]
    assert f"[{tx}](https://explorer.example/tx/{tx})" in md.stdout and "vault.pause()" in md.stdout
    assert "Severity: **high**" in md.stdout and "audit log intact" in md.stdout

    doc = json.loads(cli("report", incident, "--format", "json").stdout)
    assert [a["tx_hash"] for a in doc["actions"]] == [tx] and doc["audit"]["intact"]
    assert [e["event"] for e in doc["timeline"]][0] == "run.started"

    page = tmp_path / "report.html"
    html = cli("report", incident, "--format", "html", "--out", str(page))
    assert html.returncode == 0, html.stderr
    text = page.read_text()
    svg = _Svg()
    svg.feed(text)
    assert [b["data-step"] for b in svg.bars] == ["look", "pause", "after"]  # one bar per step, in order
    assert all(float(b["width"]) > 0 for b in svg.bars) and float(svg.bars[1]["x"]) >= float(svg.bars[0]["x"])
    assert svg.external == [] and "http" not in text.replace("https://explorer.example/tx/", "").split("<svg")[0]
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # escaped
    assert "\\u00" not in text and '<td>alert.received</td><td>breakglass' in text  # readable rows, not raw JSON

    log = home / "incidents" / incident / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"look"', b'"lock"', 1)
    log.write_bytes(b"".join(lines))
    broken = cli("report", incident, "--format", "html", "--out", str(page))
    assert broken.returncode == 2 and "audit log is broken" in broken.stderr
    assert "The audit log is BROKEN" in page.read_text() and "entry 2 was changed" in page.read_text()
    unknown = cli("report", "INC-nope")
    assert unknown.returncode == 1 and "no incident" in unknown.stderr and "Traceback" not in unknown.stderr
