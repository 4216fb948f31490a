"""Alert intake for `serve`: authenticate, parse, write durably, route, dedupe, correlate, start.

Every accepted request is appended (fsynced) to ``$BREAKGLASS_HOME/intake/log.jsonl`` before the
2xx answer, with the runs it must start. Runs start after the answer, in this process; a run that
was accepted but not started (the service died in between) is started when `serve` comes back.
A replayed request (same source, credentials and body) gets its original answer from
the log and starts nothing, across restarts. Alerts with a dedupe key seen within the
source's window join that alert's incident and start nothing new; alerts naming the same
transaction or one of the same actors (as the adapter marks them; never our own contracts nor the
inventory's ``never_correlate``) as an open incident join it, and start only playbooks that do not
run for it yet. Nothing is decoded before the request is authenticated (``integrations.jsonsafe``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.engine import closing
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import triggers
from breakglass.flows.run import audit, failpoints
from breakglass.flows.run.context import Bindings, resolve_address
from breakglass.flows.run.records import now
from breakglass.flows.run.runstore import RunExists, Store, new_incident_id
from breakglass.flows.service import incidentpage, triggerfail
from breakglass.flows.service.refusals import RefusalLog
from breakglass.integrations import jsonsafe
from breakglass.integrations.alerts import ADAPTERS, AdapterError, auth
from breakglass.integrations.alerts.base import MAX_DEPTH, depth

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory

log = logging.getLogger("breakglass.intake")


class RefusalLines:
    """One log line per refused alert (source, status, reason; never the body), at most one per source and status
    every ``interval`` seconds: a flood of bad requests must not flood the log. The next line says how many were
    not logged."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[tuple[str, int], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def line(self, source: str, status: int, reason: str) -> bool:
        key, clock = (source, status), time.monotonic()
        with self._lock:
            last, quiet = self._last.get(key, (float("-inf"), 0))
            if clock - last < self.interval:
                self._last[key] = (last, quiet + 1)
                return False
            self._last[key] = (clock, 0)
        log.warning("alert refused: source=%s status=%d reason=%s%s", source, status, reason[:200],
                    f" ({quiet} more refused since the last line)" if quiet else "")
        return True


REFUSAL_LINES = RefusalLines()
# The headers of the first replay key, in its order: keys in logs written before sources declared their own
# signed headers stay the same. A source's other signed headers are appended after them.
_FIRST_KEY_HEADERS = ("x-signature", "defender-signature", "x-tenderly-signature", "x-timestamp", "date")


def replay_key(name: str, signed: tuple[str, ...], headers: dict[str, str], digest: str) -> str:
    """Same source, same proof headers, same body: the same request again. A constant credential (a bearer
    token) is not part of it; a signed one (a Forta JWT in Authorization) is."""
    parts = [name, headers.get("authorization", "") if "authorization" in signed else ""]
    parts += [headers.get(h, "") for h in _FIRST_KEY_HEADERS]
    parts += [headers.get(h, "") for h in signed if h != "authorization" and h not in _FIRST_KEY_HEADERS]
    return hashlib.sha256(json.dumps([*parts, digest]).encode()).hexdigest()
LIMIT = 1024 * 1024  # bytes per request
CORRELATE_WINDOW = 3600.0


class Intake:
    def __init__(self, home: Path, inventory: Inventory, books: dict[str, tuple[Path, Any]],
                 start: Callable[[str, dict[str, Any], str, str, str | None], Any], env: Callable[[str], str]) -> None:
        self.home, self.inventory, self.books, self.start, self.env = home, inventory, books, start, env
        self.root = home / "intake"
        self._lock = threading.Lock()
        self._dedupe: dict[str, tuple[str, float]] = {}  # dedupe key -> (incident, expires)
        self._correlate: dict[str, tuple[str, float]] = {}  # tx hash / actor address -> (incident, expires)
        self._playbooks_in: dict[str, set[str]] = {}  # incident -> playbooks routed to it (a joining alert reruns none)
        self._addresses_of: dict[str, str] = {}
        for name in inventory.contracts:
            try:
                self._addresses_of[name] = resolve_address(inventory, Bindings(), name)
            except BreakglassError:  # drill placeholders: no address outside a drill
                pass
        self._own = {a.lower() for a in self._addresses_of.values()}
        self._never = self._own | {a.lower() for a in inventory.never_correlate.values()}
        self.refusals = RefusalLog(self.root, "alert.refused")
        self._load()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(self.root / "log.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._written = self._synced = 0
        self._syncing = False
        self._sync = threading.Condition()

    # -- the endpoint ----------------------------------------------------------------------------
    def accept(self, name: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Size, credentials on the raw bytes, then (bounded) JSON, then the adapter, then routing."""
        source = self.inventory.alert_sources.get(name)
        if source is None:
            return 404, {"error": f"no alert source '{name}'"}
        digest = hashlib.sha256(body).hexdigest()
        if len(body) > LIMIT:
            return self.refuse(413, name, digest, f"body over {LIMIT} bytes", authenticated=False)
        try:
            parsed_json = self._authenticate(source, body, headers)
        except auth.AuthError as exc:
            return self.refuse(401, name, digest, str(exc), authenticated=False)
        replay = replay_key(name, ADAPTERS[source.kind].credentials.signed_headers, headers, digest)
        with self._lock:
            if replay in self._replies:
                return 202, {**self._replies[replay], "replay": True}
            try:
                if parsed_json is None:
                    parsed_json = jsonsafe.loads(body, max_depth=MAX_DEPTH)
                depth(parsed_json)
                alerts = ADAPTERS[source.kind].parse(parsed_json)
            except jsonsafe.JsonRefused as exc:
                return self.refuse(400, name, digest, str(exc))
            except AdapterError as exc:
                return self.refuse(400, name, digest, str(exc))
            except Exception as exc:  # an adapter bug must not turn into a 500 and a retry storm
                log.exception("the %s adapter failed on a body (sha256 %s)", source.kind, digest)
                return self.refuse(400, name, digest, f"the {source.kind} adapter could not read this body "
                                                      f"({type(exc).__name__}); it is logged by sha256, report it")
            record = self._route(name, source, alerts)
            answer = {"accepted": len(alerts), "matched": sorted({r["playbook"] for r in record["routes"]}),
                      "incidents": sorted({i for i in record["incident_of"] if i})}
            failed = [{"playbook": r["playbook"], "incident": r["incident"], "reason": r["error"]}
                      for r in record["routes"] if r["status"] == "failed"]
            if failed:  # the incident is recorded all the same; the monitor must not retry
                answer["failed"] = failed
            record.update(replay=replay, body_sha256=digest, answer=answer)
            mine = self._write({"type": "accepted", **record})
            self._replies[replay] = answer
        self._durable(mine)  # fsynced before the answer; concurrent requests share one fsync
        if any(r["status"] == "to-start" for r in record["routes"]):
            threading.Thread(target=self._start_all, args=(record,), daemon=True).start()
        return 202, answer

    def _write(self, entry: dict[str, Any]) -> int:
        """Append one line to ``intake/log.jsonl`` (call with the lock held); returns its number."""
        os.write(self._fd, json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        self._written += 1
        return self._written

    def _durable(self, line: int) -> None:
        """Return once ``line`` is on disk. Group commit: one fsync covers every line written before it."""
        with self._sync:
            while self._synced < line:
                if self._syncing:
                    self._sync.wait()
                    continue
                self._syncing, target = True, self._written
                self._sync.release()
                try:
                    os.fsync(self._fd)
                finally:
                    self._sync.acquire()
                    self._synced, self._syncing = max(self._synced, target), False
                    self._sync.notify_all()

    def _log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            line = self._write(entry)
        self._durable(line)

    def _authenticate(self, source: Any, body: bytes, headers: dict[str, str]) -> Any:
        """Raises ``AuthError`` unless the request is the source's own (its adapter's ``authenticate``). Returns
        the decoded body when the proof needed it (Defender signs parsed JSON)."""
        for name in (source.secret_env, source.token_env, source.username_env, source.password_env):
            if name and not self.env(name):  # an empty secret must never authenticate anything
                raise auth.AuthError(f"this source's credential is not configured (environment variable {name} is empty)")
        return ADAPTERS[source.kind].authenticate(body, headers, source, self.env)

    def oversize(self, name: str, length: int | None) -> tuple[int, dict[str, Any]]:
        """Refused before it was read in full (by its Content-Length, or once it passed the limit)."""
        return self.refuse(413, name, f"unread ({length} bytes)" if length else "unread", f"body over {LIMIT} bytes",
                           authenticated=False)

    def refuse(self, status: int, name: str, digest: str, reason: str, *, authenticated: bool = True
               ) -> tuple[int, dict[str, Any]]:
        """Authenticated refusals get an audit line each; the others are counted (``flows.refusals``)."""
        if authenticated:
            audit.append(self.root, "alert.refused", source=name, status=status, reason=reason, body_sha256=digest)
        else:
            self.refusals.refused(name, status, reason, digest)
        REFUSAL_LINES.line(name, status, reason)
        return status, {"error": reason}

    # -- routing -------------------------------------------------------------------------------
    def _route(self, name: str, source: Any, alerts: list[Any]) -> dict[str, Any]:
        clock = time.time()
        record: dict[str, Any] = {"id": f"{time.time_ns()}-{uuid.uuid4().hex[:8]}", "source": name, "received_at": now(),
                                  "alerts": [a.model_dump(mode="json") for a in alerts], "routes": [], "joined": [],
                                  "incident_of": []}
        page_on = self.inventory.paging.page_on if self.inventory.paging is not None else []
        for alert in alerts:
            known = self._dedupe.get(alert.dedupe_key)
            after = known[0] if known and self._closed(known[0]) else None  # a closed incident takes nothing new
            if known and known[1] > clock and after is None:
                record["joined"].append(known[0])
                record["incident_of"].append(known[0])
                self._note(known[0], name, alert, "duplicate")
                continue
            matched, failed = [], []  # the first matching trigger of each playbook: one run per playbook
            for book_name, (_, book) in sorted(self.books.items()):
                trigger = next((t for t in book.triggers if triggers.matches(t, name, alert, self._addresses_of)), None)
                if trigger is None:
                    continue
                try:  # before any key is taken: a playbook's template mistake must not cost the alert its incident
                    matched.append((book_name, triggers.inputs_for(trigger, alert)))
                except Exception as exc:  # noqa: BLE001 - recorded as a failed trigger with the reason
                    failed.append((book_name, f"its trigger's inputs do not render on this alert: "
                                              f"{triggerfail.reason_of(exc)}"))
            keys = self._keys(alert.tx_hash, alert.actors)
            incident = next((self._correlate[k][0] for k in keys if k in self._correlate and self._correlate[k][1] > clock
                             and not self._closed(self._correlate[k][0])), None)
            if incident is None and not matched and not failed:  # in the log, answered matched: [], no incident
                record["incident_of"].append(None)
                continue
            correlated = incident is not None
            incident = incident or new_incident_id(self.inventory.mode)
            running = self._playbooks_in.setdefault(incident, set())
            joined = [b for b, _ in matched if b in running]  # that playbook already answers this incident
            matched = [(b, inputs) for b, inputs in matched if b not in running]
            self._dedupe[alert.dedupe_key] = (incident, clock + source.dedupe_window)
            record["incident_of"].append(incident)
            for key in keys:
                self._correlate[key] = (incident, clock + CORRELATE_WINDOW)
            self._note(incident, name, alert, "correlated" if correlated else "new")
            for book_name, inputs in matched:
                if not correlated and self.books[book_name][1].severity in page_on:
                    record.setdefault("page", []).append({"incident": incident, "playbook": book_name, "alert": alert.id,
                                                          "severity": self.books[book_name][1].severity})
                bucket = int(clock // source.dedupe_window)  # the same alert at any serve replica: one flow run
                record["routes"].append({"playbook": book_name, "incident": incident, "status": "to-start",
                                         "inputs": inputs, "alert": alert.id,
                                         "idempotency_key": f"alert:{name}:{alert.dedupe_key}:{bucket}:{book_name}"
                                         + (f":after:{after}" if after else "")})
            for book_name in joined:
                record["routes"].append({"playbook": book_name, "incident": incident, "status": "joined", "inputs": None,
                                         "alert": alert.id, "error": f"{book_name} already runs for incident {incident}"})
                log.info("alert %s joined incident %s, where %s already runs", alert.id, incident, book_name)
            running.update(b for b, _ in matched)  # a failed trigger is not: a later alert may carry what it lacked
            for book_name, why in failed:
                try:
                    triggerfail.record(self.home, self.inventory, incident, name, book_name, alert.model_dump(mode="json"),
                                       why)
                except Exception as exc:  # noqa: BLE001 - the intake log below keeps the alert and the reason
                    log.error("alert %s: %s; and recording the incident failed: %s", alert.id, why, exc)
                record["routes"].append({"playbook": book_name, "incident": incident, "status": "failed", "error": why,
                                         "inputs": None, "alert": alert.id})
        return record

    def _closed(self, incident: str) -> bool:
        return (Store(self.home).incident_dir(incident) / closing.NAME).exists()

    def _note(self, incident: str, source: str, alert: Any, how: str) -> None:
        """The incident lists every alert that joined it."""
        path = Store(self.home).incident_dir(incident) / "alerts.jsonl"  # a symlinked incident is refused there
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600), "a") as fh:
            fh.write(json.dumps({"at": now(), "source": source, "how": how, "id": alert.id, "dedupe_key": alert.dedupe_key,
                                 "title": alert.title, "tx_hash": alert.tx_hash}) + "\n")
        if how != "duplicate":  # duplicates (storms of them) stay in alerts.jsonl, off the hash chain's fsyncs
            audit.append(path.parent, "alert.received", source=source, how=how, id=alert.id, title=alert.title,
                         severity=alert.severity, tx_hash=alert.tx_hash, addresses=alert.addresses[:20])

    def _start_all(self, record: dict[str, Any]) -> None:
        for n, route in enumerate(record["routes"]):
            if route["status"] != "to-start":
                continue
            failpoints.hit("intake.before_start")
            try:
                self.start(route["playbook"], route["inputs"], route["incident"], f"alert:{record['source']}",
                           route.get("idempotency_key"))
                route["status"] = "started"
            except RunExists as exc:  # the same run exists (a restart): this alert joins it
                route["status"], route["error"] = "joined", str(exc)
                log.info("alert %s joined run %s of incident %s", route["alert"], route["playbook"], route["incident"])
            except Exception as exc:  # noqa: BLE001 - the playbook refused its inputs (or worse): never a lost alert
                route["status"], route["error"] = "failed", triggerfail.reason_of(exc)
                alert = next((a for a in record["alerts"] if a["id"] == route["alert"]), {"id": route["alert"]})
                try:
                    triggerfail.record(self.home, self.inventory, route["incident"], record["source"], route["playbook"],
                                       alert, f"the run did not start: {route['error']}")
                except Exception as inner:  # noqa: BLE001 - the intake log still has the alert and the reason
                    log.error("alert %s: %s; and recording that failed: %s", route["alert"], route["error"], inner)
            self._log({"type": "route", "id": record["id"], "n": n, "status": route["status"], "error": route.get("error")})
        for page in record.get("page", []):  # after the starts: a page never delays a pause
            alert = next((a for a in record["alerts"] if a["id"] == page["alert"]), {"id": page["alert"]})
            incidentpage.page_opened(self.inventory, self.home, page["incident"], page["playbook"], page["severity"], alert)

    def _keys(self, tx_hash: str | None, actors: list[str]) -> list[str]:
        """What correlates alerts: the transaction and the actors the adapter marked, never our own contracts
        nor the inventory's ``never_correlate`` addresses (routers, tokens, bridges every attack touches)."""
        return [k for k in [tx_hash, *[a for a in actors if a.lower() not in self._never]] if k]

    # -- restart ---------------------------------------------------------------------------------
    def _load(self) -> None:
        """Rebuild replay answers, dedupe keys and unstarted runs from the log after a restart."""
        self._replies: dict[str, dict[str, Any]] = {}
        self.pending: list[dict[str, Any]] = []
        path = self.root / "log.jsonl"
        if not path.exists():
            return
        records: dict[str, dict[str, Any]] = {}
        clock = time.time()
        for line in path.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a torn last line from a crash mid-write: that request was never answered
                continue
            if entry["type"] == "accepted":
                records[entry["id"]] = entry
                self._replies[entry["replay"]] = entry["answer"]
                age = clock - int(entry["id"].split("-")[0]) / 1e9
                expires = clock + max(0.0, CORRELATE_WINDOW - age)
                for alert, incident in zip(entry["alerts"], entry.get("incident_of", []), strict=False):
                    if incident is None:
                        continue
                    self._dedupe.setdefault(alert["dedupe_key"], (incident, expires))
                    for key in self._keys(alert.get("tx_hash"), alert.get("actors") or []):  # later entries win
                        self._correlate[key] = (incident, expires)
                for route in entry["routes"]:
                    self._playbooks_in.setdefault(route["incident"], set()).add(route["playbook"])
            elif entry["type"] == "route" and entry["id"] in records:
                records[entry["id"]]["routes"][entry["n"]]["status"] = entry["status"]
        self.pending = [r for r in records.values() if any(x["status"] == "to-start" for x in r["routes"])]

    def recover(self) -> int:
        """Start what was accepted but never started (the service died after answering)."""
        for record in self.pending:
            self._start_all(record)
        count, self.pending = len(self.pending), []
        return count
