"""Ids are matched whole (a trailing newline is not "the end"), and a symlinked incident directory is
never followed: both are refused with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.home import check_id
from breakglass.flows.run.runstore import Store
from tests.conftest import cli


@pytest.mark.parametrize("value", ["INC-NL\n", "INC-1\n\n", "\nINC", "INC 1", "../INC", "a" * 129, ""])
def test_ids_are_matched_whole(value) -> None:
    with pytest.raises(BreakglassError, match="is not allowed"):
        check_id(value)


def test_the_cli_refuses_an_incident_id_with_a_trailing_newline(tmp_path: Path) -> None:
    result = cli("status", "INC-NL\n", env={"BREAKGLASS_HOME": str(tmp_path / "home")})
    assert result.returncode == 1 and "is not allowed" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "incidents" / "INC-NL\n").exists()


def test_a_symlinked_incident_directory_is_not_followed(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    (home / "incidents").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "incident.json").write_text(json.dumps({"incident": "INC-LINK", "mode": "live", "created_at": "x"}))
    (home / "incidents" / "INC-LINK").symlink_to(elsewhere)
    store = Store(home)
    with pytest.raises(BreakglassError, match="symbolic link"):
        store.runs("INC-LINK")
    with pytest.raises(BreakglassError, match="symbolic link"):
        store.open_incident("INC-LINK", "live")
    listed = cli("status", "--json", env={"BREAKGLASS_HOME": str(home)})
    assert listed.returncode == 0 and json.loads(listed.stdout)["runs"] == []
    assert sorted(p.name for p in elsewhere.iterdir()) == ["incident.json"]  # nothing written through the link
