"""The CLI's contract: exit codes, one JSON document with --json, no tracebacks for bad input."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from breakglass.flows.cli.main import main
from tests.conftest import REPO, cli

FLAGSHIP = "playbooks/guardian-key-compromise.yaml"
LIVE_INPUTS = ["--input", "compromised_signer=0x3333333333333333333333333333333333333333",
               "--input", "attacker=0x9999999999999999999999999999999999999999", "--input", "attack_tx=0x" + "ab" * 32]


def run(capsys: pytest.CaptureFixture[str], *args: str, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    saved = dict(os.environ)
    try:
        code = main(list(args))
    finally:  # a command exports the Prefect API for its own process: in-process, it must not outlive the call
        os.environ.clear()
        os.environ.update(saved)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def test_shipped_playbooks_validate(capsys) -> None:
    code, out, err = run(capsys, "validate", "playbooks/")
    assert (code, out) == (0, "")
    shipped = sorted((REPO / "playbooks").rglob("*.yaml"))  # playbooks, their drill specs and the inventories
    assert len(shipped) >= 14
    assert err.strip() == f"ok: {len(shipped)} file(s) valid"


def test_validate_json_is_one_document(capsys) -> None:
    code, out, _ = run(capsys, "validate", "tests/data/invalid/unknown-key.yaml", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["valid"] is False
    assert [(e["line"], e["col"]) for e in doc["errors"]] == [(9, 5), (12, 7)]


def test_usage_errors_exit_1_without_traceback(capsys) -> None:
    code, _, err = run(capsys, "validate")
    assert code == 1 and "Traceback" not in err and "error:" in err
    code, _, err = run(capsys, "plan", FLAGSHIP, "--no-such-flag")
    assert code == 1 and "no-such-flag" in err


def test_missing_file_is_a_clear_error(capsys) -> None:
    code, _, err = run(capsys, "plan", "playbooks/nope.yaml", "--inventory", "playbooks/inventories/example.yaml")
    assert code == 1 and err.strip() == "error: playbooks/nope.yaml: no such playbook file"
    code, _, err = run(capsys, "drill", "playbooks/guardian-key-compromize.yaml")  # a typo: did you mean
    assert code == 1 and err.strip() == ("error: playbooks/guardian-key-compromize.yaml: no such playbook (or drill spec) "
                                         "file; did you mean playbooks/guardian-key-compromise.yaml?")
    code, _, err = run(capsys, "plan", "guardian-key-compromize", "--inventory", "playbooks/inventories/example.yaml")
    assert code == 1 and "did you mean playbooks/guardian-key-compromise.yaml?" in err
    code, _, err = run(capsys, "drill", "playbooks/")  # a folder that exists is explained, not "no such file"
    assert code == 1 and err.startswith("error: playbooks is a folder; give one playbook (or drill spec) file in it (")
    assert "guardian-key-compromise.yaml" in err and "no such" not in err


def test_a_playbook_name_alone_is_found_in_playbooks(capsys) -> None:
    code, out, _ = run(capsys, "plan", "guardian-key-compromise", "--inventory", "playbooks/inventories/example.yaml",
                       *LIVE_INPUTS, "--json")
    assert code == 0 and json.loads(out)["playbook"] == "guardian-key-compromise"


def test_bad_inputs_are_listed_together(capsys) -> None:
    code, _, err = run(capsys, "plan", FLAGSHIP, "--inventory", "playbooks/inventories/example.yaml",
                       "--input", "attacker=0xnope", "--input", "atacker=1")
    assert code == 1
    assert "unknown input 'atacker'; did you mean 'attacker'?" in err
    assert "input 'attacker' (address): not an address" in err
    assert "input 'compromised_signer' (address) is required" in err


class _Counter(BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self) -> None:  # noqa: N802
        type(self).hits += 1
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_plan_prints_the_graph_and_touches_no_chain(monkeypatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        result = cli("plan", FLAGSHIP, "--inventory", "playbooks/inventories/example.yaml", *LIVE_INPUTS, "--json",
                     env={"ETH_RPC_URL": url, "ETH_RPC_URL_BACKUP": url})
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["waves"] == [["snapshot-detection", "pause-all", "alert-war-room"],
                             ["watchlist", "confirmations"], ["approve-external"],
                             ["freeze-request", "seal-911", "bridge-rate-limit-zero", "revoke-compromised"],
                             ["rotate-safe"], ["snapshot-followup"]]
    gate = next(s for s in plan["steps"] if s["id"] == "approve-external")
    assert gate["gate"] is True and "2 of roster group responders, not the initiator" in gate["targets"][0]
    assert plan["mode"] == "live"
    assert any("0x1111111111111111111111111111111111111111" in t for t in plan["steps"][0]["targets"])
    assert _Counter.hits == 0


@pytest.mark.parametrize("playbook", ["guardian-key-compromise", "active-drain"])
def test_plan_on_the_drill_inventory_needs_no_inputs_and_shows_the_placeholders(capsys, playbook: str) -> None:
    """The example in `plan --help`: a drill inventory's plan takes the playbook's drill inputs as placeholders."""
    code, out, err = run(capsys, "plan", playbook, "--inventory", "playbooks/inventories/drill.yaml", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["mode"] == "drill" and plan["inputs"]["attacker"] == "fixture:attacker"
    pause = next(s for s in plan["steps"] if s["kind"] == "pause")
    assert any("fixture:vault" in t for t in pause["targets"])


def test_plan_on_a_live_inventory_still_refuses_a_placeholder(capsys) -> None:
    code, out, err = run(capsys, "plan", FLAGSHIP, "--inventory", "playbooks/inventories/example.yaml",
                         *LIVE_INPUTS[:2], "--input", "attacker=fixture:attacker", "--input", "attack_tx=0x" + "ab" * 32)
    assert code == 1 and "'fixture:attacker' is a drill placeholder; give a real address" in err


def test_plan_human_output_shows_waves_and_targets(capsys) -> None:
    code, out, err = run(capsys, "plan", FLAGSHIP, "--inventory", "playbooks/inventories/example.yaml", *LIVE_INPUTS)
    assert code == 0
    assert "[LIVE]" in err and "wave 1" in err and "chain ethereum at block latest" in err


def test_schema_command_matches_committed_files(capsys) -> None:
    for what, path in (("playbook", "playbooks/schema.json"), ("run-record", "playbooks/run-record.schema.json")):
        code, out, _ = run(capsys, "schema", what)
        assert code == 0
        assert out == Path(path).read_text(), f"{path} is stale: run `breakglass schema {what} > {path}`"


def test_bug_exits_3_with_a_traceback_and_a_hint(capsys, monkeypatch) -> None:
    from breakglass.flows.spec import validate as validate_mod

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("synthetic bug")

    monkeypatch.setattr(validate_mod, "validate", boom)
    code, _, err = run(capsys, "validate", "playbooks/")
    assert code == 3
    assert "Traceback" in err and "This is a bug in breakglass" in err


def test_ctrl_c_exits_130(capsys, monkeypatch) -> None:
    from breakglass.flows.spec import validate as validate_mod

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate_mod, "validate", interrupt)
    code, _, _ = run(capsys, "validate", "playbooks/")
    assert code == 130


def test_incident_ids_are_restricted(capsys) -> None:
    code, _, err = run(capsys, "status", "../etc")
    assert code == 1 and "is not allowed" in err


JSON_FAILURES = {  # every command, made to fail, with --json
    "validate": ["validate", "tests/data/invalid/unknown-key.yaml"],
    "plan": ["plan", "playbooks/nope.yaml", "--inventory", "playbooks/inventories/example.yaml"],
    "run": ["run", "playbooks/nope.yaml", "--inventory", "playbooks/inventories/example.yaml"],
    "drill": ["drill", "playbooks/"],
    "resume": ["resume"],
    "schema": ["schema", "nope"],
    "version": ["version", "--no-such-flag"],
    "report": ["report", "INC-nope"],
    "approve": ["approve", "INC-nope", "gate"],
    "ack": ["ack", "INC-nope"],
    "close": ["close", "INC-nope", "--as", "alice", "--reason", "over"],
    "status": ["status", "INC-nope"],
    "serve": ["serve"],
    "prepare": ["prepare", "playbooks/guardian-key-compromise.yaml"],
    "sign": ["sign", "INC-nope", "0x1234", "--signature", "0x00"],
    "check": ["check"],
    "deploy": ["deploy", "--pool", "p"],
    "worker": ["worker"],
    "server start": ["server", "start", "--database", "mysql://u:p@h/db"],
    "server stop": ["server", "stop", "--no-such-flag"],
    "server status": ["server", "status", "--no-such-flag"],
    "audit verify": ["audit", "verify", "INC-nope"],
}


def _commands() -> set[str]:
    import typer

    from breakglass.flows.cli.base import app

    def walk(group, prefix: str) -> set[str]:
        found = set()
        for name, command in group.commands.items():
            sub = getattr(command, "commands", None)
            found |= walk(command, f"{prefix}{name} ") if sub is not None else {f"{prefix}{name}"}
        return found

    return walk(typer.main.get_command(app), "")


def test_every_command_fails_with_one_json_document_on_stdout(capsys, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert _commands() <= set(JSON_FAILURES), f"add {_commands() - set(JSON_FAILURES)} to JSON_FAILURES"
    for name, args in JSON_FAILURES.items():
        code, out, err = run(capsys, *args, "--json")
        doc = json.loads(out)  # exactly one document: a second one, or text around it, does not parse
        assert code == 1 and doc["error"]["exit_code"] == 1, (name, code, out, err)
        assert doc["error"]["code"] in ("invalid", "error", "usage") and doc["error"]["message"], (name, doc)
        assert "Traceback" not in err and (err.strip() or name == "validate"), name  # people read stderr
    code, out, _ = run(capsys, "report", "INC-nope", "--format", "json")  # --format json counts as --json
    assert code == 1 and json.loads(out)["error"]["message"].startswith("no incident")


def test_help_lists_exit_codes_and_accepts_h_and_version(capsys) -> None:
    code, out, _ = run(capsys, "-h")
    assert code == 0 and "Exit codes: 0 success · 1 bad input or usage" in " ".join(out.split())
    assert "3 a bug in breakglass · 130 interrupted" in " ".join(out.split())
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"breakglass {__import__('breakglass.flows').flows.__version__}")
    for name in _commands():
        code, out, _ = run(capsys, *name.split(), "-h")
        usage = out.split("\n\n")[0]
        assert code == 0 and usage.startswith(f"Usage: breakglass {name}"), name
        assert not any(t in out for t in ("<bool>", "<path>", "<str>", "<list", "{", "<int>", "<float>")), (name, out)
        assert "Example" in out or name in ("version", "server stop", "server start"), f"{name}: no example in --help"


def test_check_takes_its_inventory_positionally_or_by_option(capsys) -> None:
    code, _, err = run(capsys, "check", "--inventory", "nope.yaml")
    assert code == 1 and err.strip() == "error: nope.yaml: no such inventory file"
    code, _, err = run(capsys, "check", "nope.yaml")
    assert code == 1 and err.strip() == "error: nope.yaml: no such inventory file"


def test_shipped_files_carry_a_schema_modeline_and_install_adds_one(capsys, tmp_path: Path) -> None:
    from breakglass.flows.language.modeline import PREFIX

    shipped = sorted((REPO / "playbooks").rglob("*.yaml"))
    for path in shipped:
        first = path.read_text().splitlines()[0]
        assert first.startswith(PREFIX), path
        assert (path.parent / first.removeprefix(PREFIX)).resolve() == REPO / "playbooks" / "schema.json", path
    mine = tmp_path / "mine.yaml"
    mine.write_text("apiVersion: breakglass/v1\nkind: Playbook\n")
    code, out, _ = run(capsys, "schema", "--install", str(mine), "--json")
    assert code == 0 and json.loads(out) == {"installed": [str(mine)], "unchanged": []}
    line = mine.read_text().splitlines()[0]
    assert (tmp_path / line.removeprefix(PREFIX)).resolve() == REPO / "playbooks" / "schema.json"
    code, _, err = run(capsys, "schema", "--install", str(mine))  # idempotent
    assert code == 0 and "already has a schema modeline" in err and mine.read_text().count(PREFIX) == 1


def test_a_drill_outside_playbooks_says_which_inventory_to_pass(capsys, tmp_path: Path) -> None:
    book = tmp_path / "mine.yaml"
    book.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: mine\ndescription: t\nseverity: high\nsteps:\n"
                    "  - {id: pause, kind: pause, with: {contracts: [treasury], signer: guardian}}\n")
    code, _, err = run(capsys, "drill", str(book))
    bundled = REPO / "playbooks" / "inventories" / "drill.yaml"
    assert code == 1 and "unknown contract 'treasury'" in err
    assert f"no --inventory was given, so the drill used {bundled}. Pass --inventory FILE: a drill inventory" in err
    assert f"start from a copy of {bundled}" in err
