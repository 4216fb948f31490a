"""The examples in the README are real: they validate against the shipped drill inventory."""

from __future__ import annotations

import re
from pathlib import Path

from breakglass.flows.validate import load_playbook
from tests.conftest import REPO


def test_readme_opens_with_exactly_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert first_block == [
        "bash .ci/setup && .venv/bin/breakglass drill playbooks/guardian-key-compromise.yaml --auto-approve",
        "bash .ci/test",
    ]
    assert "bash .ci/test" in (REPO / ".ci" / "run").read_text()


def test_readme_playbook_example_validates(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    example = next(block for block in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind: Playbook" in block)
    path = tmp_path / "example.yaml"
    path.write_text(example)
    playbook, _ = load_playbook(path, REPO / "playbooks" / "inventories" / "drill.yaml")
    assert [s.id for s in playbook.steps] == ["snapshot-detection", "follow-up"]
