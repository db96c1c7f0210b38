"""YAML alias bombs: how fast they are refused now, against how long main's validation walked them.

    python benchmarks/yaml_bomb_bench.py [--runs 20] [--main-levels 5,6] [--base REV] [--e2e]

The bomb is the issue's: nested anchors of nine aliases each (9**levels leaves), planted under a key of the
demo's real checkout Deployment (examples/demo/repo/apps/checkout/deployment.yaml), the memory limit edited
as the OOM fix edits it. For levels 5..9 it measures the refusal on the two paths a job takes: the first
parse of the manifest (``yaml_rt.documents``) and the validation of the edit (``validation.check``). For
comparison it runs the validation diff of the code before the fix (``leaf_diff`` read from git at --base,
by default the parent of the commit that added app/aliases.py) on the same documents, parsed as main parsed
them, for --main-levels only: 7 levels took ~25 s there, 9 levels about an hour. --e2e also times
`autofix handle` (snapshot cluster, local forge, MLflow sqlite) on the demo with and without a 9-level bomb.
Prints a table, writes benchmarks/results/yaml_bomb.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import (  # noqa: E402
    aliases,
    validation,
    yaml_rt,  # noqa: E402
)
from app.models.changes import FieldChange, Plan  # noqa: E402
from benchmarks import _common as c  # noqa: E402

DEMO = c.ROOT / "examples" / "demo"
MANIFEST = "apps/checkout/deployment.yaml"
PLAN = Plan(cause="oom_killed", summary="raise memory", changes=[FieldChange(
    path="spec.template.spec.containers[name=checkout].resources.limits.memory", old="512Mi", new="768Mi")])


def bomb(levels: int) -> str:
    lines = ['  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "x-defaults:\n" + "\n".join(lines) + "\n"


def planted(levels: int) -> tuple[str, str]:
    """(the manifest with a bomb, the same with the OOM fix applied)."""
    text = (DEMO / "repo" / MANIFEST).read_text().replace("spec:\n  replicas", bomb(levels) + "spec:\n  replicas", 1)
    return text, text.replace('memory: "512Mi"', 'memory: "768Mi"')


def refusal_seconds(call: Any, runs: int) -> float:
    """Median seconds until ``call`` raises YamlTooComplex (anything else is a failure of the benchmark)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        try:
            call()
        except aliases.YamlTooComplex:
            times.append(time.perf_counter() - started)
        else:
            raise SystemExit("the bomb was not refused")
    return c.median(times)


def base_revision() -> str:
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "app/aliases.py"], cwd=c.ROOT,
                           check=True, capture_output=True, text=True, timeout=30).stdout.split()
    if not added:
        raise SystemExit("app/aliases.py is not committed yet: pass --base REV")
    return f"{added[-1]}^"


def main_validation(rev: str) -> ModuleType:
    """app/validation.py as it was at ``rev``, imported under another name (it only imports pure modules)."""
    source = subprocess.run(["git", "show", f"{rev}:app/validation.py"], cwd=c.ROOT, check=True,
                            capture_output=True, text=True, timeout=30).stdout
    path = Path(tempfile.mkdtemp(prefix="yaml-bomb-bench-")) / "validation_main.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("validation_main", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main_walk(old_main: ModuleType, levels: int) -> tuple[float, int]:
    """Seconds main spent parsing (plain PyYAML, as its yaml_rt.documents did) and diffing one edit; leaves."""
    old_text, new_text = planted(levels)
    started = time.perf_counter()
    old = list(yaml.load_all(old_text, Loader=yaml.CSafeLoader))[0]
    new = list(yaml.load_all(new_text, Loader=yaml.CSafeLoader))[0]
    changed = list(old_main.leaf_diff(old, new))
    seconds = time.perf_counter() - started
    return seconds, len(changed)


def handle_seconds(levels: int | None, work: Path, name: str) -> dict[str, Any]:
    """`autofix handle` on the demo (first alert), the manifest bombed with ``levels`` (None: as shipped)."""
    repo = work / f"repo-{name}"
    shutil.copytree(DEMO / "repo", repo)
    if levels is not None:
        (repo / MANIFEST).write_text(planted(levels)[0])
    from app.demo import seed_bare_repo

    bare = work / f"bare-{name}.git"
    seed_bare_repo(repo, bare)
    payload = json.loads((DEMO / "alert.json").read_text())
    payload["alerts"] = payload["alerts"][:1]
    alert = work / "alert.json"
    alert.write_text(json.dumps(payload))
    env = c.base_env(work / f"data-{name}", AUTOFIX_GIT_URL=str(bare), AUTOFIX_FORGE="local",
                     AUTOFIX_GITHUB_REPO="acme/gitops", MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    started = time.perf_counter()
    proc = subprocess.run([c.PYTHON, "-m", "app.cli", "handle", str(alert), "--snapshot", str(DEMO / "cluster.json")],
                          cwd=c.ROOT, env=env, capture_output=True, text=True, timeout=600, check=True)
    seconds = time.perf_counter() - started
    (result,) = json.loads(proc.stdout)["results"]
    return {"seconds": round(seconds, 2), "outcome": result["outcome"], "reason": result["reason"][:160]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--main-levels", default="5,6", help="levels to walk with main's validation (7: ~25 s)")
    parser.add_argument("--base", default=None, help="git revision of main before the fix")
    parser.add_argument("--e2e", action="store_true", help="also time `autofix handle` with and without a bomb")
    args = parser.parse_args()

    rows: list[tuple[str, Any]] = []
    figures: dict[str, Any] = {"refuse": {}, "main": {}, "runs": args.runs}
    for levels in range(5, 10):
        old_text, new_text = planted(levels)
        parse = refusal_seconds(lambda t=old_text: yaml_rt.documents(t, source=MANIFEST), args.runs)
        check = refusal_seconds(lambda o=old_text, n=new_text: validation.check(o, n, document_index=0, plan=PLAN),
                                args.runs)
        figures["refuse"][levels] = {"bytes": len(bomb(levels)), "leaves": 9 ** levels,
                                     "parse_ms": round(parse * 1000, 3), "validate_ms": round(check * 1000, 3)}
        rows.append((f"refuse {levels} levels ({9 ** levels:,} leaves, {len(bomb(levels))} B)",
                     f"parse {parse * 1000:.2f} ms, validation {check * 1000:.2f} ms (median of {args.runs})"))
    rev = subprocess.run(["git", "rev-parse", args.base or base_revision()], cwd=c.ROOT, check=True,
                         capture_output=True, text=True, timeout=30).stdout.strip()
    old_main = main_validation(rev)
    for levels in (int(x) for x in args.main_levels.split(",") if x):
        seconds, leaves = main_walk(old_main, levels)
        figures["main"][levels] = {"seconds": round(seconds, 3), "leaves_reported": leaves}
        rows.append((f"main ({rev[:12]}) walks {levels} levels", f"{seconds:.2f} s ({leaves:,} changed leaves listed)"))
    if args.e2e:
        with tempfile.TemporaryDirectory(prefix="yaml-bomb-e2e-") as tmp:
            work = Path(tmp)
            handle_seconds(None, work, "warm-up")  # creates the MLflow store: not part of either figure
            figures["handle"] = {"plain": handle_seconds(None, work, "plain"),
                                 "bomb9": handle_seconds(9, work, "bomb9")}
        for name, fig in figures["handle"].items():
            rows.append((f"autofix handle, demo {name}", f"{fig['seconds']} s: {fig['outcome']}: {fig['reason'][:70]}"))
    print(c.table("YAML alias bombs (examples/demo checkout Deployment)", rows))
    print(f"\nwritten to {c.save('yaml_bomb', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
