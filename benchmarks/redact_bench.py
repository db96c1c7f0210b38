"""Redaction benchmark: milliseconds per MB of `redact.text` on adversarial and realistic inputs.

    python benchmarks/redact_bench.py [--baseline GIT_REV] [--sizes 16,64,256,1024] [--budget 20]

Each input is built at several sizes (KiB) so the growth shows: a linear engine keeps ms/MB flat, a
quadratic one multiplies it by 4 for each 4x in size. With --baseline, app/redact.py as of that git
revision (e.g. the commit before the RE2 engine) runs on the same inputs; an implementation that took
longer than --budget seconds on one input is not run on the larger sizes of that input. Also times
`redact.obj` on a 1 MB event message (the per-string cap bounds it). Prints a table, writes
benchmarks/results/redact.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import redact  # noqa: E402
from benchmarks import _common  # noqa: E402

KIB = 1024


def _random(alphabet: str, size: int, seed: int) -> str:
    return "".join(random.Random(seed).choices(alphabet, k=size))


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _realistic_log(size: int) -> str:
    lines = [
        "2026-11-23T15:13:58.412Z INFO  [main] c.a.c.CatalogApplication : Started CatalogApplication in 12.3 seconds",
        '{"level":30,"time":1795446829180,"msg":"connected to redis","url":"redis://redis.data.svc:6379/2"}',
        "2026-11-23T15:13:59.137Z WARN  [http-nio-8080-exec-3] o.s.w.s.PageNotFound : No mapping for GET /favicon.ico",
        'Failed to pull image "ghcr.io/acme/checkout:1.4.3": rpc error: code = NotFound desc = not found',
        "2026-11-23T15:14:00.002Z ERROR [pool-1] c.a.db.Pool : connection to postgres://app:Sup3r/s3cret@db:5432 failed",
    ]
    return _repeat("\n".join(lines) + "\n", size)


# name -> builder(size in characters)
INPUTS: dict[str, Callable[[int], str]] = {
    "letters+digits (issue 10)": lambda n: _random(string.ascii_lowercase + string.digits, n, 3),
    "one letter": lambda n: "a" * n,
    "mixed-case base64": lambda n: _random(string.ascii_letters + string.digits + "+/", n, 5),
    "url-ish a://b:": lambda n: _repeat("a://b:", n),
    "dense password=x": lambda n: _repeat("password=x ", n),
    "dense key=x": lambda n: _repeat("key=x ", n),
    "BEGIN without END": lambda n: "-----BEGIN RSA PRIVATE KEY-----\n" + "A" * n,
    "realistic log": _realistic_log,
}


def load_baseline(rev: str) -> ModuleType:
    source = subprocess.run(["git", "show", f"{rev}:app/redact.py"], cwd=_common.ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "redact_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("redact_baseline", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn: Callable[[Any], Any], value: Any) -> float:
    start = time.perf_counter()
    fn(value)
    return time.perf_counter() - start


def run(impls: dict[str, Callable[[str], Any]], sizes: list[int], budget: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, build in INPUTS.items():
        for impl, fn in impls.items():
            row: dict[str, Any] = {}
            for size in sizes:
                value = build(size * KIB)
                seconds = timed(fn, value)
                row[f"{size}KiB"] = {"seconds": round(seconds, 4), "ms_per_MB": round(seconds * 1000 * 1024 / size, 1)}
                if seconds > budget:
                    row["stopped"] = f"over {budget}s at {size} KiB"
                    break
            figures.setdefault(name, {})[impl] = row
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision whose app/redact.py to compare (e.g. the one before RE2)")
    parser.add_argument("--sizes", default="16,64,256,1024", help="input sizes in KiB")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds after which larger sizes are skipped")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    impls: dict[str, Callable[[str], Any]] = {"current": redact.text}
    if args.baseline:
        impls[f"baseline {args.baseline}"] = load_baseline(args.baseline).text
    figures = run(impls, sizes, args.budget)
    event = {"kind": "Event", "reason": "Failed", "message": INPUTS["letters+digits (issue 10)"](1024 * KIB)}
    obj_seconds = timed(redact.obj, event)
    rows: list[tuple[str, Any]] = []
    for name, by_impl in figures.items():
        for impl, row in by_impl.items():
            cells = "  ".join(f"{k}:{v['ms_per_MB']:>9} ms/MB" for k, v in row.items() if k != "stopped")
            rows.append((f"{name} [{impl}]", cells + (f"  ({row['stopped']})" if "stopped" in row else "")))
    rows.append(("redact.obj, 1 MB event message", f"{obj_seconds * 1000:.1f} ms"))
    print(_common.table("redact.text: ms per MB (flat = linear)", rows))
    path = _common.save("redact", {"sizes_kib": sizes, "text": figures, "obj_1mb_event_ms": round(obj_seconds * 1000, 1)})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
