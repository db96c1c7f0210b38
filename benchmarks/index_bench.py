"""Repository index benchmark: cold build, warm lookup, incremental update, memory, on a generated repo.

    python benchmarks/index_bench.py [--manifests 20000] [--seed 7] [--lookups 2000] [--keep DIR]

Generates a realistic GitOps repo (benchmarks/gen_repo.py) in a subprocess, clones it with the real
GitWorkspace, and measures what the pipeline does: the cold build (sequential and with a process pool of
2), the index saved and loaded again by a new process-like workspace, ``manifests.find`` lookups over the
index (p50/p99), and the update after a commit touching 10 files (6 modified, 2 added, 1 deleted,
1 renamed), checked equal to a cold rebuild. Prints a table, writes benchmarks/results/index.json.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.adapters.workspace import GitWorkspace  # noqa: E402
from app.models.incident import WorkloadRef  # noqa: E402
from app.sources import index as repo_index  # noqa: E402
from app.sources import manifests  # noqa: E402
from benchmarks import _common  # noqa: E402
from benchmarks.gen_repo import git  # noqa: E402

AUTHOR = "bench <bench@example.com>"


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def generate(root: Path, manifests_count: int, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("gen_repo.py")), str(root),
                          "--manifests", str(manifests_count), "--seed", str(seed)],
                         check=True, capture_output=True, text=True, timeout=900)
    return {"repo": out.stdout.strip(), "generate_seconds": round(time.perf_counter() - start, 2)}


def commit_ten_files(origin: Path, index: repo_index.RepoIndex, seed: int) -> list[str]:
    """6 modified, 2 added, 1 deleted, 1 renamed manifests, committed on main."""
    rnd = random.Random(seed)
    deployments = sorted(p for p, f in index.files.items() if p.endswith("/deployment.yaml") and f.objects)
    picked = rnd.sample(deployments, 8)
    for path in picked[:6]:
        target = origin / path
        target.write_text(target.read_text().replace("limits:\n              memory:", "limits:\n"
                                                     "              cpu: \"2\"\n              memory:"))
    for i in range(2):
        (origin / f"apps/new/svc-{i}").mkdir(parents=True, exist_ok=True)
        (origin / f"apps/new/svc-{i}/service.yaml").write_text(
            f"apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: new\nspec:\n"
            "  ports:\n    - port: 80\n")
    git("rm", "--quiet", picked[6], cwd=origin)
    git("mv", picked[7], picked[7].replace("deployment.yaml", "workload.yaml"), cwd=origin)
    git("add", "-A", cwd=origin)
    git("commit", "--quiet", "-m", "touch 10 files", cwd=origin)
    return picked


def lookups(ws: GitWorkspace, index: repo_index.RepoIndex, count: int, seed: int) -> dict[str, float]:
    rnd = random.Random(seed)
    keys = sorted(index.by_key)
    durations = []
    found = 0
    for group, kind, namespace, name in rnd.choices(keys, k=count):
        ref = WorkloadRef(kind=kind, namespace=namespace or "default", name=name)
        api_version = f"{group}/v1" if group else "v1"
        start = time.perf_counter()
        hits = manifests.hits(ws, ref, api_version=api_version, default_namespace=None)
        durations.append((time.perf_counter() - start) * 1000)
        found += bool(hits)
    assert found == count, "every sampled key must be found"
    return {"lookup_p50_ms": round(_common.percentile(durations, 50), 4),
            "lookup_p99_ms": round(_common.percentile(durations, 99), 4),
            "lookup_max_ms": round(max(durations), 4), "lookups": count}


def run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    origin = root / "origin"
    figures: dict[str, Any] = generate(origin, args.manifests, args.seed)
    ws = GitWorkspace(str(origin), base="main", checkout=root / "data" / "repo", author=AUTHOR)
    sha, figures["sync_seconds"] = timed(ws.sync)
    rss_before = _common.rss_mb(os.getpid())["rss_mb"]
    cold, figures["cold_build_seconds"] = timed(repo_index.build, ws, sha, workers=1)
    _, figures["cold_build_pool2_seconds"] = timed(repo_index.build, ws, sha, workers=2)
    indexed, figures["cold_build_and_save_seconds"] = timed(lambda: ws.index)
    figures["index_file_mb"] = round((root / "data" / "repo.index.json").stat().st_size / 1e6, 2)
    figures["index_rss_mb"] = round(_common.rss_mb(os.getpid())["rss_mb"] - rss_before, 1)
    figures.update({f"count_{k}": v for k, v in indexed.counts().items()})
    fresh = GitWorkspace(str(origin), base="main", checkout=root / "data" / "repo", author=AUTHOR)
    fresh.sync()
    loaded, figures["load_seconds"] = timed(lambda: fresh.index)
    assert loaded.how == "loaded" and repo_index.equal(loaded, cold)
    figures.update(lookups(fresh, loaded, args.lookups, args.seed))
    commit_ten_files(origin, loaded, args.seed)
    new_sha = fresh.sync()
    updated, figures["incremental_update_seconds"] = timed(repo_index.update, loaded, fresh, new_sha)
    via_ws, figures["incremental_update_and_save_seconds"] = timed(lambda: fresh.index)
    assert via_ws.how == "updated"
    rebuilt = repo_index.build(fresh, new_sha)
    figures["incremental_equals_rebuild"] = repo_index.equal(updated, rebuilt) and repo_index.equal(via_ws, rebuilt)
    figures["peak_rss_mb"] = _common.rss_mb(os.getpid())["peak_rss_mb"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        figures = run(args.keep, args)
    else:
        with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
            figures = run(Path(tmp), args)
    machine = _common.machine()
    figures["targets_met"] = (figures["cold_build_seconds"] < 20 and figures["lookup_p99_ms"] < 50
                              and figures["incremental_update_and_save_seconds"] < 1)
    figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
    print(_common.table(f"repository index: {args.manifests} manifests, {machine['cores']} cores, {machine['cpu']}",
                        [(k, v) for k, v in figures.items()]))
    print(f"\nresults: {_common.save('index', figures)}")


if __name__ == "__main__":
    main()
