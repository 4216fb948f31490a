"""Unauthenticated refusals are counted, not written one by one: the first of a source's minute at once,
then one summary line with counts per reason and a sample of body hashes."""

from __future__ import annotations

from pathlib import Path

from breakglass.flows.run import audit
from breakglass.flows.service.refusals import REASONS, SAMPLES, RefusalLog


def test_a_minute_of_refusals_is_one_line_then_one_summary(tmp_path: Path) -> None:
    now = [1000.0]
    log = RefusalLog(tmp_path, "alert.refused", clock=lambda: now[0])
    for n in range(500):
        log.refused("oz", 401, "X-Signature does not match" if n % 2 else "missing headers", f"h{n % 7}")
    log.refused("generic", 401, "missing or wrong bearer token", "g0")
    lines = audit.entries(tmp_path)
    assert [(e["event"], e["source"]) for e in lines] == [("alert.refused", "oz"), ("alert.refused", "generic")]
    assert lines[0]["authenticated"] is False and lines[0]["body_sha256"] == "h0"

    now[0] += 61  # the next refusal of oz closes its minute: the summary, then the first line of the new one
    log.refused("oz", 413, "body over 1048576 bytes", "unread")
    summary = [e for e in audit.entries(tmp_path) if e["event"] == "alert.refused.summary"]
    assert len(summary) == 1 and summary[0]["source"] == "oz" and summary[0]["total"] == 499
    assert summary[0]["counts"] == {"401 X-Signature does not match": 250, "401 missing headers": 249}
    assert len(summary[0]["body_sha256_sample"]) == SAMPLES
    assert len(audit.entries(tmp_path)) == 4 and audit.verify(tmp_path) == []

    log.flush(force=True)  # at shutdown: generic had nothing after its first line, so no summary for it
    assert len(audit.entries(tmp_path)) == 4


def test_varied_reasons_cannot_grow_a_summary(tmp_path: Path) -> None:
    log = RefusalLog(tmp_path, "alert.refused", clock=lambda: 0.0)
    for n in range(1000):
        log.refused("forta", 401, f"scanner 0x{n:040x} is not on this source's allowlist", f"h{n}")
    log.flush(force=True)
    summary = audit.entries(tmp_path)[-1]
    assert len(summary["counts"]) == REASONS + 1 and summary["counts"]["other reasons"] == 999 - REASONS
