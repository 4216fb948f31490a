"""`serve` validates its playbooks and inventory once, at start, and creates every alert's run from those
models and the exact bytes it validated: nothing is read or validated again between the 202 and the
broadcast. A file edited after the start is reported (log, /readyz) and runs as loaded until a restart;
the run record's digests are those of what runs. In-process, no chain, no Prefect."""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from pathlib import Path

import pytest

from breakglass.flows.engine import entry
from breakglass.flows.service.serve import Service
from breakglass.flows.spec.validate import load_playbook
from tests.conftest import REPO

INVENTORY = """apiVersion: breakglass/v1
kind: Inventory
name: models
channels: {outbox: {kind: outbox}}
contacts:
  team: {kind: internal, channels: [{via: outbox}], last_verified: 2026-11-01}
templates:
  custom: {approved: true}
"""
PLAYBOOK = """apiVersion: breakglass/v1
kind: Playbook
name: tell
description: d
severity: high
inputs:
  what: {type: string}
steps:
  - {id: tell, kind: notify, with: {template: custom, to: [team], data: {x: 1}}}
"""


@pytest.fixture
def service(tmp_path: Path) -> Service:
    books = tmp_path / "books"
    (books / "templates").mkdir(parents=True)
    (books / "templates" / "custom.md.j2").write_text("Subject: hi {{ incident }}\n{{ data.x }}\n")
    (books / "tell.yaml").write_text(PLAYBOOK)
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    return Service(tmp_path / "home", tmp_path / "inventory.yaml", books, api=None)


def _begin(service: Service, n: int, validated: entry.Validated | None) -> Path:
    path, _ = service.books["tell"]
    handle, _ = entry.begin(playbook_path=path, inventory_path=service.inventory_path, given={"what": f"w{n}"},
                            incident=None, home=service.home, validated=validated, initiator_via="serve")
    return handle.dir


def test_a_run_is_created_from_the_models_serve_validated_not_from_the_files(service, caplog) -> None:
    loaded = service.validated["tell"]
    path, _ = service.books["tell"]
    # the files change on disk after the start, the playbook into something that does not even load
    path.write_text(PLAYBOOK.replace("kind: notify", "kind: notfy"))
    service.inventory_path.write_text(INVENTORY.replace("name: models", "name: edited"))
    with caplog.at_level(logging.WARNING, logger="breakglass.serve"):
        validated = service.loaded("tell")
        service.loaded("tell")  # said once per edit, not once per alert
    assert validated is loaded
    warned = [r.getMessage() for r in caplog.records if "changed on disk" in r.getMessage()]
    assert len(warned) == 1 and "restart serve to load the change" in warned[0] and str(path) in warned[0]
    assert service.ready()["changed_on_disk"] == sorted([str(path), str(service.inventory_path)])

    run = _begin(service, 1, validated)
    record = json.loads((run / "record.json").read_text())
    assert (run / "playbook.yaml").read_text() == PLAYBOOK  # what was validated is what runs
    assert record["playbook"]["sha256"] == hashlib.sha256(PLAYBOOK.encode()).hexdigest()
    assert record["inventory"]["sha256"] == hashlib.sha256(INVENTORY.encode()).hexdigest()
    assert record["inventory"]["name"] == "models" and [s["kind"] for s in record["steps"]] == ["notify"]


def test_without_models_the_files_are_read_and_validated_as_before(service) -> None:
    path, _ = service.books["tell"]
    path.write_text(PLAYBOOK.replace("kind: notify", "kind: notfy"))
    from breakglass.flows.errors import SpecError

    with pytest.raises(SpecError, match="notfy"):  # `breakglass run` and drills: the file as it is now
        _begin(service, 2, None)


def test_an_unchanged_file_is_not_reported(service) -> None:
    assert "changed_on_disk" not in service.ready()
    assert service.validated["tell"].changed_on_disk(service.books["tell"][0], service.inventory_path) == []


def test_time_from_accept_to_broadcast_with_and_without_a_second_validation(service) -> None:
    """A measurement, not a timed assertion: what creating a run costs when the files are read and
    validated again (before) against when serve hands its models over (now). Printed with -s."""
    validated = service.validated["tell"]
    times: dict[str, list[float]] = {"re-read": [], "models": []}
    for n in range(15):
        for how, given in (("re-read", None), ("models", validated)):
            started = time.perf_counter()
            _begin(service, n * 2 + (how == "models"), given)
            times[how].append(time.perf_counter() - started)
    medians = {how: statistics.median(found) * 1000 for how, found in times.items()}
    print(f"\nrun creation before the broadcast, median of 15: re-read and validate {medians['re-read']:.1f} ms, "
          f"validated models {medians['models']:.1f} ms")
    assert all(m > 0 for m in medians.values())
    # what the second validation cost for a real playbook: the part of each alert's path that is gone
    book, inventory = REPO / "playbooks" / "active-drain.yaml", REPO / "playbooks" / "inventories" / "example.yaml"
    spent = []
    for _ in range(7):
        started = time.perf_counter()
        load_playbook(book, inventory)
        spent.append(time.perf_counter() - started)
    print(f"re-reading and validating active-drain.yaml with example.yaml, median of 7: "
          f"{statistics.median(spent) * 1000:.1f} ms per alert, no longer spent")
