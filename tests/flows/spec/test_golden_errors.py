"""The invalid corpus: each file exits 1 with exactly the pinned message, file:line:col first.

Regenerate after an intended wording change with BREAKGLASS_UPDATE_GOLDEN=1, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from breakglass.flows.cli.main import main
from tests.conftest import DATA, REPO

CASES = sorted(p.stem for p in (DATA / "invalid").glob("*.yaml"))
INVENTORY = "tests/data/inventories/test.yaml"


def _validate(capsys: pytest.CaptureFixture[str], path: str) -> tuple[int, str, str]:
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        code = main(["validate", path, "--inventory", INVENTORY])
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", CASES)
def test_invalid_file_gives_pinned_message(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _validate(capsys, f"tests/data/invalid/{case}.yaml")
    golden = DATA / "invalid" / f"{case}.out"
    if os.environ.get("BREAKGLASS_UPDATE_GOLDEN"):
        golden.write_text(err)
    assert code == 1
    assert out == ""
    assert "Traceback" not in err
    assert err == golden.read_text()
    assert err.startswith(f"tests/data/invalid/{case}.yaml:")


def test_every_case_has_a_golden_file() -> None:
    assert CASES, "the invalid corpus is empty"
    assert {p.stem for p in (DATA / "invalid").glob("*.out")} == set(CASES)


def test_ten_megabyte_file_is_refused_before_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"apiVersion: breakglass/v1\nkind: Playbook\n" + b"# padding\n" * 1_000_000)
    code, out, err = _validate(capsys, str(big))
    assert code == 1
    assert err.splitlines()[0] == (
        f"{big}:1:1: file: is 10.0 MB, over the 1 MiB limit for playbooks and inventories. "
        "Split it, or move bulk data (address lists) out of the playbook."
    )


def test_all_errors_are_collected_not_just_the_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _validate(capsys, "tests/data/invalid/wrong-type.yaml")
    assert code == 1
    assert len([line for line in err.splitlines() if line.startswith("tests/")]) >= 5
