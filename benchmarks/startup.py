"""Start-up: `autofix --help`, and what importing each entry point costs (python -X importtime).

    python benchmarks/startup.py [--runs 5]

The CLI and the webhook must not pay for what a call does not use: mlflow, openai, kubernetes and github are
heavy and must not be imported by `autofix --help` or by `import app.main` (the webhook's app). The table shows
the median wall time and, for each import, whether one of those heavy packages was loaded.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c  # noqa: E402

HEAVY = ("mlflow", "openai", "kubernetes", "github", "pandas", "sqlalchemy", "kubernetes_validate")
TARGETS = {"app.cli": "autofix --help", "app.main": "the webhook's app (autofix serve)",
           "app.pipeline": "the pipeline module (no adapter built)"}


def wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=c.ROOT, check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - started)
    return round(c.median(times), 3)


def import_profile(module: str) -> dict[str, Any]:
    """Total import time and the heavy top-level packages loaded, from -X importtime's stderr."""
    proc = subprocess.run([c.PYTHON, "-X", "importtime", "-c", f"import {module}"], cwd=c.ROOT, check=True,
                          capture_output=True, text=True, timeout=120)
    total, loaded, biggest = 0, set(), []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, raw = line.split(":", 1)[1].split("|")
        if not cumulative.strip().isdigit():
            continue
        name, depth = raw.strip(), (len(raw) - len(raw.lstrip()) - 1) // 2
        if name.split(".")[0] in HEAVY:
            loaded.add(name.split(".")[0])
        if depth == 0:
            total += int(cumulative)
        elif depth == 1:  # what the module itself pulls in, directly
            biggest.append((int(cumulative), name))
    biggest.sort(reverse=True)
    return {"import_ms": round(total / 1000, 1), "heavy_loaded": sorted(loaded),
            "top_imports_ms": {name: round(us / 1000, 1) for us, name in biggest[:5]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    autofix = str(Path(c.PYTHON).parent / "autofix")
    figures: dict[str, Any] = {
        "python_bare_s": wall([c.PYTHON, "-c", "pass"], args.runs),
        "autofix_help_s": wall([autofix, "--help"], args.runs),
        "import_app_main_s": wall([c.PYTHON, "-c", "import app.main"], args.runs),
        "imports": {module: import_profile(module) for module in TARGETS},
    }
    rows: list[tuple[str, Any]] = [("python -c pass (s)", figures["python_bare_s"]),
                                   ("autofix --help (s)", figures["autofix_help_s"]),
                                   ("python -c 'import app.main' (s)", figures["import_app_main_s"])]
    for module, profile in figures["imports"].items():
        rows.append((f"import {module} (ms, -X importtime)", profile["import_ms"]))
        rows.append(("  heavy packages loaded", ", ".join(profile["heavy_loaded"]) or "none"))
        rows.append(("  largest", ", ".join(f"{k} {v}" for k, v in profile["top_imports_ms"].items())))
    print(c.table(f"Start-up (median of {args.runs})", rows))
    figures["lazy_ok"] = not figures["imports"]["app.cli"]["heavy_loaded"] and not set(
        figures["imports"]["app.main"]["heavy_loaded"]) & {"mlflow", "openai", "kubernetes", "github"}
    print(f"written to {c.save('startup', figures)}")


if __name__ == "__main__":
    main()
