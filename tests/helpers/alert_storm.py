"""A load generator in its own process: an alert storm against `serve`'s intake.

Usage: python -m tests.helpers.alert_storm BASE_URL TOKEN TOTAL SECONDS OUT.json

TOTAL requests spread evenly over SECONDS, at most 64 in flight: 5 distinct alerts (distinct
transactions and attackers), the rest retries (identical requests) and duplicates (the same alert
id in a new body), 2% malformed JSON and 2% forged (wrong token). Writes every answer's status,
body and latency to OUT.json.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import httpx


def plan(total: int, rng: random.Random) -> list[tuple[str, bytes, str]]:
    distinct = [{"id": f"storm-{n}", "title": f"storm incident {n}", "severity": "critical",
                 "tx_hash": "0x" + f"{n + 1:02x}" * 32, "addresses": ["0x" + f"{n + 0xa1:02x}" * 20]} for n in range(5)]
    out: list[tuple[str, bytes, str]] = [("valid", json.dumps(a).encode(), "good") for a in distinct]
    while len(out) < total:
        roll = rng.random()
        base = rng.choice(distinct)
        if roll < 0.02:
            out.append(("malformed", b'{"id": "x", "title": ', "good"))
        elif roll < 0.04:
            out.append(("forged", json.dumps(base).encode(), "bad"))
        elif roll < 0.5:
            out.append(("retry", json.dumps(base).encode(), "good"))
        else:
            out.append(("duplicate", json.dumps({**base, "data": {"n": len(out)}}).encode(), "good"))
    head, tail = out[:5], out[5:]
    rng.shuffle(tail)
    return head + tail


async def main(base: str, token: str, total: int, seconds: float, out: str) -> None:
    rng = random.Random(2026)
    requests = plan(total, rng)
    limit = asyncio.Semaphore(64)
    results: list[dict] = []
    start = time.perf_counter()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=30) as client:
        async def one(i: int, kind: str, body: bytes, cred: str) -> None:
            await asyncio.sleep(max(0.0, start + i * seconds / total - time.perf_counter()))
            async with limit:
                sent = time.perf_counter()
                headers = {"Authorization": f"Bearer {token if cred == 'good' else 'forged'}",
                           "Content-Type": "application/json"}
                try:
                    response = await client.post(base, content=body, headers=headers)
                    status, answer = response.status_code, response.json()
                except Exception as exc:  # noqa: BLE001 - a lost request is a result too
                    status, answer = 0, {"error": type(exc).__name__}
                results.append({"i": i, "kind": kind, "status": status, "answer": answer,
                                "ms": (time.perf_counter() - sent) * 1000})

        first = [one(i, *r) for i, r in enumerate(requests[:5])]
        await asyncio.gather(*first)  # the five incidents exist before their duplicates arrive
        await asyncio.gather(*(one(i, *r) for i, r in enumerate(requests) if i >= 5))
    with open(out, "w") as fh:
        json.dump({"seconds": time.perf_counter() - start, "results": results}, fh)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]))
