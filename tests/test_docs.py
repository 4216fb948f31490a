"""The examples in the README are real: they validate against the shipped drill inventory."""

from __future__ import annotations

import re
from pathlib import Path

from breakglass.flows.spec.validate import load_playbook
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


def test_language_real_protocol_pause_examples_validate(tmp_path: Path) -> None:
    from breakglass.flows.language import pausespec
    from breakglass.flows.spec.validate import load_inventory

    text = (REPO / "docs" / "language.md").read_text()
    example = next(block for block in re.findall(r"```yaml\n(.*?)```", text, re.S) if "superchain-config" in block)
    path = tmp_path / "real.yaml"
    path.write_text("apiVersion: breakglass/v1\nkind: Inventory\nname: real\nchains:\n  ethereum: {chain_id: 1, block_time: 12s, "
                    "rpc: [{env: ETH_RPC_URL}]}\nsigners:\n  guardian: {kind: env, env: GUARDIAN_KEY, address: "
                    "\"0x000000000000000000000000000000000000dEaD\"}\n" + example)
    inventory = load_inventory(path)
    assert set(inventory.contracts) == {"superchain-config", "balancer-vault", "comet-usdc", "aave-pool", "eigenlayer-manager"}
    assert pausespec.describe(inventory.contracts["superchain-config"]) == 'pause("breakglass")'
    assert len(pausespec.views(inventory.contracts["comet-usdc"])) == 5
