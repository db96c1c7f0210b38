"""Intake: 10,000 webhook posts from a concurrent client on loopback to `autofix serve`, against a bare
FastAPI endpoint that only parses the body, in the same run.

    python benchmarks/intake.py [--posts 10000] [--concurrency 8]

1,000 distinct alerts in 100 groups (10 alerts a group); each group is posted posts/100 times, as
Alertmanager re-sends a group at every group_interval, so most posts are repeats the store must recognise.
The service runs as a subprocess with durable storage (SQLite WAL, synchronous=FULL) and a handler that does
no work, so intake is measured, not the pipeline. Concurrency 8: Alertmanager sends over a few kept-alive
connections; at 32 the answer latency is mostly queueing in the client (both servers alike).
Targets (2 cores): >= 1,000 posts/s, p99 < 50 ms, throughput >= 0.5 x the bare endpoint.

Replicas (issue 17): ``--replicas 3 --database postgres`` starts three service processes on one PostgreSQL database
(tests/fakes/postgres.py, fsync off) and three bare endpoints, the client's connections spread over the three as a
load balancer would; the same posts, the same checks. Written to intake_<database>_<replicas>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from contextlib import ExitStack
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


async def drive(urls: list[str], posts: int, concurrency: int) -> dict[str, Any]:
    """``concurrency`` kept-alive connections in all, spread evenly over the replicas' URLs."""
    data = bodies()
    latencies: list[float] = []
    codes: dict[int, int] = {}
    counter = iter(range(posts))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
               "User-Agent": "Alertmanager/0.25.0"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers=headers) as client:

        async def one_worker(url: str) -> None:
            for i in counter:
                started = time.perf_counter()
                response = await client.post(f"{url}/webhooks/alertmanager", content=data[i % GROUPS])
                latencies.append(time.perf_counter() - started)
                codes[response.status_code] = codes.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_worker(urls[w % len(urls)]) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return {"posts": posts, "seconds": round(elapsed, 3), "posts_per_s": round(posts / elapsed, 1),
            "p50_ms": round(c.percentile(ms, 50), 2), "p99_ms": round(c.percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2), "status_codes": codes}


def measure(mode: str, work: Path, posts: int, concurrency: int, *, replicas: int = 1,
            database: str | None = None) -> dict[str, Any]:
    """``replicas`` server processes of one mode; ``database`` a PostgreSQL URL they share (None: SQLite, one)."""
    extra = {"AUTOFIX_DATABASE_URL": database} if database else {}
    procs, urls = [], []
    try:
        for n in range(replicas):
            port = c.free_port()
            suffix = "" if replicas == 1 else f"-{n}"
            env = c.base_env(work / f"{mode}{suffix}", AUTOFIX_WEBHOOK_TOKEN=TOKEN, AUTOFIX_WORKERS="2", **extra)
            procs.append(c.spawn([c.PYTHON, "benchmarks/intake_servers.py", mode, str(port)], env=env,
                                 log=work / f"{mode}{suffix}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            c.wait_until(lambda u=url: c.http_ok(f"{u}/readyz"), f"the {mode} server")
        asyncio.run(drive(urls, min(posts, 500), concurrency))  # warm-up: first connections, first inserts
        figures = asyncio.run(drive(urls, posts, concurrency))
        memory = [c.rss_mb(p.pid) for p in procs]
    finally:
        for proc in procs:
            c.stop(proc)
    if replicas == 1:
        figures.update(memory[0])
    else:
        figures.update({"rss_mb": [m["rss_mb"] for m in memory], "peak_rss_mb": [m["peak_rss_mb"] for m in memory]})
    if mode == "autofix":
        figures["jobs_stored"] = _jobs_stored(database or str(work / mode / "jobs.sqlite3"))
    return figures


def _jobs_stored(database: str) -> int:
    if database.startswith("postgresql"):
        import psycopg

        with psycopg.connect(database) as pg:
            return int(pg.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=1, help="server processes of each kind, one database")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    if args.database == "sqlite" and args.replicas != 1:
        raise SystemExit("SQLite serves one replica: use --database postgres with --replicas > 1")
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp, ExitStack() as stack:
        work, database = Path(tmp), None
        if args.database == "postgres":
            from tests.fakes.postgres import PostgresServer

            database = stack.enter_context(PostgresServer.start()).create_database("intake")
        bare = measure("bare", work, args.posts, args.concurrency, replicas=args.replicas)
        autofix = measure("autofix", work, args.posts, args.concurrency, replicas=args.replicas, database=database)
    ratio = round(autofix["posts_per_s"] / bare["posts_per_s"], 2)
    rows = [("", "autofix serve | bare FastAPI")]
    for key in ("posts", "seconds", "posts_per_s", "p50_ms", "p99_ms", "max_ms", "rss_mb", "status_codes"):
        rows.append((key, f"{autofix[key]} | {bare[key]}"))
    rows += [("jobs stored", autofix.get("jobs_stored")), ("ratio autofix/bare", ratio),
             ("targets", ">= 1000 posts/s, p99 < 50 ms, ratio >= 0.5")]
    where = "" if args.replicas == 1 and args.database == "sqlite" else f", {args.replicas} x {args.database}"
    print(c.table(f"Intake: {args.posts} posts, concurrency {args.concurrency}{where}", rows))
    name = "intake" if not where else f"intake_{args.database}_{args.replicas}"
    path = c.save(name, {"concurrency": args.concurrency, "replicas": args.replicas, "database": args.database,
                         "autofix": autofix, "bare": bare, "ratio": ratio,
                         "targets_met": autofix["posts_per_s"] >= 1000 and autofix["p99_ms"] < 50 and ratio >= 0.5})
    print(f"written to {path}")
    if autofix["jobs_stored"] != GROUPS * PER_GROUP or set(autofix["status_codes"]) != {202}:
        sys.exit(1)  # an alert lost or a post refused: the figures would measure the wrong thing


if __name__ == "__main__":
    main()
