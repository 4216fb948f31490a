"""The drill scorecard: what happened, measured from the incident's own evidence (the hash-chained audit
log and the run record), against the drill spec's expectations. Unmet expectations are the gaps."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.evidence.report import TEMPLATES
from breakglass.flows.language import pausespec
from breakglass.flows.run import audit
from breakglass.flows.run.home import write_private
from breakglass.flows.run.records import RunRecord
from breakglass.flows.spec.drillspec import METRICS, DrillSpec
from breakglass.flows.steps import REGISTRY

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Contract


def read_paused(rpc: Any, contract: Contract, address: str) -> bool:
    """The contract's own ``paused`` views (not a hard-coded paused()); a view that cannot be read counts as not paused."""
    def call(to: str, data: bytes) -> bytes:
        return bytes.fromhex(rpc.call("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"])[2:])
    try:
        return pausespec.is_paused(contract, call, address)
    except Exception:  # noqa: BLE001 - the scorecard reports "not paused"; it must not crash the drill
        return False


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


JUDGED = ("response milestones: seconds from the start of the run, without the tool's own start-up "
          "(tool_startup_s); the totals are shown beside them")


def startup(record: RunRecord, entries: list[dict[str, Any]]) -> tuple[float, float] | None:
    """The tool's own start-up in this run: from its last action before Prefect (the run's creation, or a
    fast-path broadcast) to the flow run's start (Prefect server, import, flow run creation)."""
    begun = [_t(e["at"]) for e in entries if e["event"] == "run.started" and e.get("run") == record.run_id]
    if not begun:
        return None
    before = [_t(e["at"]) for e in entries if e.get("run") == record.run_id and str(e["event"]).startswith("journal.")
              and _t(e["at"]) < begun[0]]
    return max([_t(record.created_at), *before]), begun[0]


def metrics(record: RunRecord, entries: list[dict[str, Any]], kinds: dict[str, str],
            response: bool = True) -> dict[str, float | None]:
    """Seconds from the run's creation to each milestone, or None when it never happened; with ``response``,
    without the part of that time the tool spent starting itself."""
    start = _t(record.created_at)
    band = startup(record, entries) if response else None

    def first(match: Any) -> float | None:
        found = [_t(e["at"]) for e in entries if match(e)]
        if not found:
            return None
        at = min(found)
        overlap = max(0.0, min(at, band[1]) - band[0]) if band else 0.0
        return round(at - start - overlap, 3)

    def intent_step(e: dict[str, Any]) -> str:
        return str(e.get("intent", "")).removeprefix(record.run_key + "/").split("/", 1)[0]

    def handler(e: dict[str, Any]) -> Any:
        return REGISTRY.get(kinds.get(intent_step(e), ""))

    pause = lambda e: handler(e) is not None and handler(e).pauses  # noqa: E731
    injected = next((e for e in entries if e["event"] == "drill.injected" and e.get("attack_at")), None)
    alerted = next((_t(e["at"]) for e in entries if e["event"] == "alert.received"), None)
    out = {
        "detect": round(alerted - injected["attack_at"], 3) if injected and alerted else None,
        "acknowledge": first(lambda e: e["event"] in ("ack", "vote.counted", "vote.submitted")),
        "decision": first(lambda e: e["event"] in ("gate.passed", "gate.rejected")),
        "pause_submitted": first(lambda e: e["event"] == "journal.broadcast" and pause(e)),
        "pause_confirmed": first(lambda e: e["event"] == "journal.receipt" and pause(e)),
        "first_notification": first(lambda e: e["event"] == "journal.delivered" and handler(e) is not None
                                    and handler(e).notifies),
        "watchlist_posted": first(lambda e: e["event"] in ("journal.posted", "journal.delivered")
                                  and str(e.get("intent", "")).startswith(f"{record.incident}/watchlist/")),
    }
    return {m: out[m] for m in METRICS}


def score(spec: DrillSpec, record: RunRecord, incident_dir: Path, paused: dict[str, bool], auto_approved: bool,
          participants: list[str]) -> dict[str, Any]:
    kinds = {s.id: s.kind for s in record.steps}
    entries = audit.entries(incident_dir)
    measured = metrics(record, entries, kinds)
    totals = metrics(record, entries, kinds, response=False)
    band = startup(record, entries)
    expect = spec.expectations
    checks: list[dict[str, Any]] = []
    wanted = [s.id for s in record.steps] if expect.steps_completed == "all" else expect.steps_completed
    for sid in wanted:
        step = record.step(sid)
        observed = step.status + (f" ({step.error})" if step.error else "")  # the reason is the useful part of a gap
        checks.append({"expectation": f"step {sid} completed", "met": step.status == "completed", "observed": observed})
    for name in expect.paused:
        checks.append({"expectation": f"{name} paused on chain", "met": paused.get(name, False),
                       "observed": "paused" if paused.get(name) else "not paused"})
    delivered = {row["recipient"] for s in record.steps if s.outputs and s.kind in REGISTRY
                 for row in REGISTRY[s.kind].deliveries(s.outputs)
                 if str(row.get("status", "")).startswith(("delivered", "reconciled"))}
    for name in expect.messages_to:
        checks.append({"expectation": f"message delivered to {name}", "met": name in delivered,
                       "observed": "delivered" if name in delivered else "no delivered message"})
    if expect.watchlist_min_entries:
        entries_n = max([REGISTRY[s.kind].listed(s.outputs or {}) for s in record.steps if s.kind in REGISTRY] or [0])
        checks.append({"expectation": f"watch list has at least {expect.watchlist_min_entries} entries",
                       "met": entries_n >= expect.watchlist_min_entries, "observed": entries_n})
    for metric, target in expect.times.items():
        value = measured.get(metric)
        checks.append({"expectation": f"time_to_{metric} within {target:g}s", "met": value is not None and value <= target,
                       "observed": value})
    problems = audit.verify(incident_dir)
    checks.append({"expectation": "audit log intact", "met": not problems, "observed": problems[:1] or "intact"})
    return {
        "drill_id": record.incident, "name": spec.name, "scenario": spec.scenario or spec.description,
        "playbook": record.playbook.name, "mode": "local", "participants": participants,
        "auto_approved": auto_approved, "injected_at": record.created_at, "run_status": record.status,
        "metrics_seconds": {f"time_to_{k}": v for k, v in measured.items()},
        "metrics_total_seconds": {f"time_to_{k}": v for k, v in totals.items()},
        "tool_startup_s": round(band[1] - band[0], 3) if band else None, "targets_judge": JUDGED,
        "targets_seconds": {f"time_to_{k}": v for k, v in expect.times.items()},
        "passed": all(c["met"] for c in checks),
        "expectations": checks, "gaps": [f"{c['expectation']}: observed {c['observed']}" for c in checks if not c["met"]],
        "audit_head": audit.head(incident_dir),
    }


def markdown(card: dict[str, Any]) -> str:
    lines = [f"# Drill scorecard: {card['name']} ({card['drill_id']})", "", f"Scenario: {card['scenario']}", "",
             f"Playbook `{card['playbook']}` · run {card['run_status']} · participants: "
             f"{', '.join(card['participants']) or 'none'}" + (" · **auto-approved (CI rehearsal)**" if card["auto_approved"] else ""),
             "", f"**{'PASSED' if card['passed'] else 'FAILED'}**: {sum(c['met'] for c in card['expectations'])} of "
             f"{len(card['expectations'])} expectations met.", "",
             f"Targets judge {card['targets_judge']}. Tool start-up: {_s(card['tool_startup_s'])}.", "",
             "| milestone | response | total | target |", "|---|---|---|---|"]
    for key, value in card["metrics_seconds"].items():
        target = card["targets_seconds"].get(key)
        lines.append(f"| {key} | {_s(value)} | {_s(card['metrics_total_seconds'].get(key))} | "
                     f"{'' if target is None else f'≤ {target:g} s'} |")
    lines += ["", "| expectation | met | observed |", "|---|---|---|"]
    lines += [f"| {c['expectation']} | {'yes' if c['met'] else '**no**'} | {c['observed']} |" for c in card["expectations"]]
    lines += ["", "## Gaps", ""] + ([f"- {g}" for g in card["gaps"]] or ["None."])
    return "\n".join(lines) + "\n"


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:g} s"


def html(card: dict[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined


    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    env.filters["s"] = _s
    return env.get_template("scorecard.html.j2").render(c=card)


def write(card: dict[str, Any], run_dir: Path) -> tuple[Path, Path, Path]:
    base = run_dir / "artifacts"
    paths = base / "scorecard.json", base / "scorecard.md", base / "scorecard.html"
    write_private(paths[0], json.dumps(card, indent=2).encode() + b"\n")
    write_private(paths[1], markdown(card).encode())
    write_private(paths[2], html(card).encode())
    return paths
