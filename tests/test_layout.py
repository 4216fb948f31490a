"""Architecture rules that review would otherwise have to catch by eye."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_integrations_never_import_flows_or_prefect() -> None:
    for path in (REPO / "integrations").rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("breakglass.flows", "prefect", "flows"))}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_only_the_run_engine_and_scale_packages_know_prefect() -> None:
    """Prefect sits behind three packages: `run/` holds its client (API, server), `engine/` the flow, `scale/`
    deployments and workers; everything else reaches it through them (votes, limits, state)."""
    allowed = {"run", "engine", "scale"}
    users = {str(p.relative_to(REPO)) for p in (REPO / "flows").rglob("*.py")
             if any(m == "prefect" or m.startswith("prefect.") for m in _imports(p))}
    assert users, "no module imports Prefect: the rule would hold by accident"
    outside = sorted(u for u in users if u.split("/")[1] not in allowed)
    assert not outside, f"only flows/run/, flows/engine/ and flows/scale/ may import Prefect; also: {outside}"


def test_flows_top_level_stays_small() -> None:
    """The parts live in packages named for them; the top holds only what every part shares."""
    top = sorted(p.name for p in (REPO / "flows").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 6, f"flows/ has {len(top)} modules at its top: {top}; put them in the package of their part"


def test_production_code_never_imports_tests() -> None:
    for root in ("flows", "integrations"):
        for path in (REPO / root).rglob("*.py"):
            assert not any(m.startswith("tests") for m in _imports(path)), path


def test_modules_stay_small() -> None:
    for root in ("flows", "integrations"):
        for path in (REPO / root).rglob("*.py"):
            assert len(path.read_text().splitlines()) <= 400, f"{path} is over 400 lines: split it"


def test_installed_package_has_no_top_level_flows_or_integrations(tmp_path: Path) -> None:
    probe = ("import importlib.util as u, breakglass.flows, breakglass.integrations;"
             "print(u.find_spec('flows') is None, u.find_spec('integrations') is None, breakglass.flows.__file__)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["True", "True"]
    assert Path(result.stdout.split()[2]).parent == REPO / "flows"


def test_compiled_contract_artifacts_are_current() -> None:
    result = subprocess.run(["node", str(REPO / "contracts" / "build.mjs"), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "artifacts are current" in result.stdout


def test_every_package_is_listed_for_the_wheel() -> None:
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"breakglass." + ".".join(p.parent.relative_to(REPO).parts) for root in ("flows", "integrations")
             for p in (REPO / root).rglob("__init__.py")}
    assert found == listed


def test_every_imported_third_party_package_is_declared() -> None:
    """An import that works only because prefect or web3 happen to bring the package breaks on their next release."""
    import importlib.metadata as metadata
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in project["dependencies"]}
    providers = metadata.packages_distributions()
    missing = {}
    for root in ("flows", "integrations"):
        for path in (REPO / root).rglob("*.py"):
            for module in _imports(path):
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in {"breakglass", "__future__"}:
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & declared:
                    missing.setdefault(top, str(path.relative_to(REPO)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
