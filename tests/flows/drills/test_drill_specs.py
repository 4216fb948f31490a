"""Drill specs (kind: Drill): validated with file:line like playbooks, and scored: every expectation met or
a gap, exit 2 on a gap. The flagship spec's own scorecard is checked in test_drill.py, on its shared drill."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, cli

SPEC = (REPO / "playbooks" / "drills" / "guardian-key-compromise.yaml").read_text()


def test_a_missed_time_target_is_a_gap_and_exit_2(prefect_api, tmp_path: Path) -> None:
    spec = tmp_path / "drills" / "tight.yaml"
    spec.parent.mkdir()
    spec.write_text(SPEC.replace("name: guardian-key-compromise-local", "name: tight")
                    .replace("alerts/guardian-key-compromise.json",
                             str(REPO / "playbooks" / "drills" / "alerts" / "guardian-key-compromise.json"))
                    .replace("../guardian-key-compromise.yaml", str(REPO / "playbooks" / "guardian-key-compromise.yaml"))
                    .replace("../inventories/drill.yaml", str(REPO / "playbooks" / "inventories" / "drill.yaml"))
                    .replace("pause_submitted: 5s", "pause_submitted: 0.000001s"))
    result = cli("drill", str(spec), "--auto-approve", timeout=240)
    assert result.returncode == 2, result.stderr
    assert "gap: time_to_pause_submitted within 1e-06s: observed" in result.stderr
    assert "Traceback" not in result.stderr


def test_drill_specs_are_validated_with_their_line(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    text = (SPEC.replace("alerts/guardian-key-compromise.json",
                         str(REPO / "playbooks" / "drills" / "alerts" / "guardian-key-compromise.json"))
            .replace("../guardian-key-compromise.yaml", str(REPO / "playbooks" / "guardian-key-compromise.yaml"))
            .replace("../inventories/drill.yaml", str(REPO / "playbooks" / "inventories" / "drill.yaml"))
            .replace("paused: [vault, bridge]", "paused: [vault, bridgee]")
            .replace("steps_completed: all", "steps_completed: [pause-all, pause-everything]")
            .replace("    attacker: \"{{ alert.addresses[1] }}\"", "    atacker: \"{{ alert.addresses[1] }}\""))
    spec.write_text(text)
    result = cli("validate", str(spec))
    lines = text.splitlines()
    step_line = next(i for i, line in enumerate(lines, 1) if "pause-everything" in line)
    paused_line = next(i for i, line in enumerate(lines, 1) if "bridgee" in line)
    assert result.returncode == 1
    assert f"bad.yaml:{step_line}:" in result.stderr and "no step 'pause-everything'" in result.stderr
    assert f"bad.yaml:{paused_line}:" in result.stderr and "unknown contract 'bridgee'" in result.stderr
    input_line = next(i for i, line in enumerate(lines, 1) if "atacker" in line)
    assert f"bad.yaml:{input_line}:" in result.stderr and "undefined input 'atacker'" in result.stderr
    spec.write_text(text.replace(str(REPO / "playbooks" / "guardian-key-compromise.yaml"), "missing.yaml"))
    missing = cli("drill", str(spec))
    assert missing.returncode == 1 and "bad.yaml:" in missing.stderr and "no playbook at" in missing.stderr
    assert "Traceback" not in missing.stderr + result.stderr


def test_every_shipped_playbook_has_a_valid_drill_spec_that_ci_runs() -> None:
    from breakglass.flows.spec import drillspec

    books = sorted((REPO / "playbooks").glob("*.yaml"))
    assert books
    for book in books:
        spec = drillspec.for_playbook(book)
        assert spec is not None, f"{book.name} has no playbooks/drills/{book.name}"
        loaded, playbook, _ = drillspec.load(spec)
        assert playbook == book.resolve() and loaded.expectations.times, f"{spec}: no time targets"
