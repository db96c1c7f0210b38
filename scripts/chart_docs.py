"""Write the values table of the chart's README from values.yaml's `# --` comments (helm-docs' format).

A key preceded by a `# -- description` comment (continued by the `#` lines right after it) is a row; its
default is the value in values.yaml, as JSON. A key with no `# --` comment is a section: its children are
documented one by one. helm-docs itself is not installable here; this covers the subset values.yaml uses.

    python scripts/chart_docs.py           # rewrite the table between the README's markers
    python scripts/chart_docs.py --check   # exit 1 when the README's table is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "gitops-autofix"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):")


def rows(values_text: str) -> list[tuple[str, str, str, str]]:
    """(key path, type, default as JSON, description) for each documented key, in file order."""
    values = yaml.safe_load(values_text)
    out, stack, comment = [], [], []  # stack: (indent, key) of the enclosing mappings
    documenting: int | None = None  # the indent of a documented key whose children are part of its value
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment:
                comment.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match:
            comment = [] if not stripped else comment
            continue
        indent = len(match["indent"])
        if documenting is not None and indent > documenting:
            continue  # inside a value documented as a whole (resources, probes)
        documenting = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [match["key"]]
        if comment:
            value = _lookup(values, path)
            out.append((".".join(path), _type(value), json.dumps(value), " ".join(comment)))
            documenting = indent
        stack.append((indent, match["key"]))
        comment = []
    return out


def _lookup(values: dict[str, Any], path: list[str]) -> Any:
    for key in path:
        values = values[key]
    return values


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(type(value), "string")


def table(values_text: str) -> str:
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for key, kind, default, description in rows(values_text):
        cells = [f"`{key}`", kind, f"`{default}`", description]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def render(readme: str, values_text: str) -> str:
    """``readme`` with the text between the markers replaced by the table."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(values_text)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the README is stale (default: rewrite it)")
    parser.add_argument("--chart", type=Path, default=CHART, help=f"the chart directory (default: {CHART})")
    args = parser.parse_args(argv)
    readme_path = args.chart / "README.md"
    readme = readme_path.read_text()
    fresh = render(readme, (args.chart / "values.yaml").read_text())
    if args.check:
        if fresh != readme:
            print(f"{readme_path}: the values table is stale; run python scripts/chart_docs.py", file=sys.stderr)
            return 1
        return 0
    readme_path.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
