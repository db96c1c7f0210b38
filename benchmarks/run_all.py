"""Run every benchmark, one after the other (`make bench`). Each prints its table and writes
benchmarks/results/<name>.json; the figures in README.md's Performance section come from these files.

    python benchmarks/run_all.py [--quick]

``--quick`` runs smaller versions (fewer posts, no 20,000-manifest repo, a 10-workload storm in 10 s, a 6-workload
storm over three PostgreSQL replicas) to
check the benchmarks themselves work; the README's figures come from the full run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = [
    ["startup.py"],
    ["intake.py"],
    ["pipeline.py"],
    # `autofix handle` on a fresh data dir (loopback Kubernetes and GitHub fakes), the demo, MLflow unreachable
    ["handle_bench.py"],
    ["handle_bench.py", "--demo"],
    ["handle_bench.py", "--mlflow-down", "--runs", "3", "--timeout", "120"],
    ["storm.py"],
    # issue 17: three replicas on one PostgreSQL database (a server started by the benchmark) beside the above
    ["store_replicas.py"],
    ["intake.py", "--replicas", "3", "--database", "postgres"],
    ["storm.py", "--replicas", "3", "--database", "postgres"],
]
QUICK = [
    ["startup.py", "--runs", "2"],
    ["intake.py", "--posts", "2000"],
    ["pipeline.py", "--runs", "2", "--manifests", "0"],
    ["handle_bench.py", "--runs", "2"],
    ["storm.py", "--workloads", "10", "--seconds", "10", "--budget", "8"],
    ["store_replicas.py", "--alerts", "300"],
    ["intake.py", "--posts", "2000", "--replicas", "3", "--database", "postgres"],
    ["storm.py", "--workloads", "6", "--seconds", "6", "--budget", "4", "--replicas", "3", "--database", "postgres"],
]
OTHERS = ["index_bench.py"]  # the repository index benchmark (its own engineer's), when present
# Hostile input: redaction cost per MB on adversarial text, and the time to refuse YAML alias bombs.
HOSTILE = [["redact_bench.py", "--sizes", "16,256,1024"], ["yaml_bomb_bench.py", "--runs", "5", "--main-levels", ""]]


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    plan = [list(step) for step in (QUICK if quick else FULL)]
    plan += [[name] for name in OTHERS if (HERE / name).exists() and not quick]
    plan += [list(step) for step in HOSTILE]
    failed = []
    for step in plan:
        print(f"\n=== benchmarks/{' '.join(step)}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], cwd=HERE.parent).returncode
        print(f"=== {step[0]}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(step[0])
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
