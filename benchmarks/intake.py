"""Intake: 10,000 webhook posts from a concurrent client on loopback to `autofix serve`, against a bare
FastAPI endpoint that only parses the body, in the same run.

    python benchmarks/intake.py [--posts 10000] [--concurrency 8]

1,000 distinct alerts in 100 groups (10 alerts a group); each group is posted posts/100 times, as
Alertmanager re-sends a group at every group_interval, so most posts are repeats the store must recognise.
The service runs as a subprocess with durable storage (SQLite WAL, synchronous=FULL) and a handler that does
no work, so intake is measured, not the pipeline. Concurrency 8: Alertmanager sends over a few kept-alive
connections; at 32 the answer latency is mostly queueing in the client (both servers alike).
Targets (2 cores): >= 1,000 posts/s, p99 < 50 ms, throughput >= 0.5 x the bare endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c  # noqa: E402
from benchmarks.alerts import crashloop_alert, payload  # noqa: E402

TOKEN = "bench-webhook-token-0123456789"
GROUPS = 100
PER_GROUP = 10


def bodies() -> list[bytes]:
    out = []
    for g in range(GROUPS):
        namespace = f"team-{g:03d}"
        alerts = [crashloop_alert(namespace, f"svc{a}", f"p{g:03d}{a}") for a in range(PER_GROUP)]
        out.append(json.dumps(payload(alerts, {"alertname": "KubePodCrashLooping", "namespace": namespace}))
                   .encode())
    return out


async def drive(url: str, posts: int, concurrency: int) -> dict[str, Any]:
    data = bodies()
    latencies: list[float] = []
    codes: dict[int, int] = {}
    counter = iter(range(posts))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
               "User-Agent": "Alertmanager/0.25.0"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits, headers=headers) as client:

        async def one_worker() -> None:
            for i in counter:
                started = time.perf_counter()
                response = await client.post("/webhooks/alertmanager", content=data[i % GROUPS])
                latencies.append(time.perf_counter() - started)
                codes[response.status_code] = codes.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return {"posts": posts, "seconds": round(elapsed, 3), "posts_per_s": round(posts / elapsed, 1),
            "p50_ms": round(c.percentile(ms, 50), 2), "p99_ms": round(c.percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2), "status_codes": codes}


def measure(mode: str, work: Path, posts: int, concurrency: int) -> dict[str, Any]:
    port = c.free_port()
    data_dir = work / mode
    env = c.base_env(data_dir, AUTOFIX_WEBHOOK_TOKEN=TOKEN, AUTOFIX_WORKERS="2")
    proc = c.spawn([c.PYTHON, "benchmarks/intake_servers.py", mode, str(port)], env=env, log=work / f"{mode}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        c.wait_until(lambda: c.http_ok(f"{url}/readyz"), f"the {mode} server")
        asyncio.run(drive(url, min(posts, 500), concurrency))  # warm-up: first connections, first inserts
        figures = asyncio.run(drive(url, posts, concurrency))
        figures.update(c.rss_mb(proc.pid))
    finally:
        c.stop(proc)
    if mode == "autofix":
        with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
            figures["jobs_stored"] = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        work = Path(tmp)
        bare = measure("bare", work, args.posts, args.concurrency)
        autofix = measure("autofix", work, args.posts, args.concurrency)
    ratio = round(autofix["posts_per_s"] / bare["posts_per_s"], 2)
    rows = [("", "autofix serve | bare FastAPI")]
    for key in ("posts", "seconds", "posts_per_s", "p50_ms", "p99_ms", "max_ms", "rss_mb", "status_codes"):
        rows.append((key, f"{autofix[key]} | {bare[key]}"))
    rows += [("jobs stored", autofix.get("jobs_stored")), ("ratio autofix/bare", ratio),
             ("targets", ">= 1000 posts/s, p99 < 50 ms, ratio >= 0.5")]
    print(c.table(f"Intake: {args.posts} posts, concurrency {args.concurrency}", rows))
    path = c.save("intake", {"concurrency": args.concurrency, "autofix": autofix, "bare": bare, "ratio": ratio,
                             "targets_met": autofix["posts_per_s"] >= 1000 and autofix["p99_ms"] < 50
                             and ratio >= 0.5})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
