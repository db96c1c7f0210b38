"""Golden tests of the round-trip editor: original.yaml + changes.json -> expected.yaml, byte for byte."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app import yaml_rt
from app.errors import PermanentError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "yaml_rt"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
C = "spec.template.spec.containers"


def _load(case: str) -> tuple[str, str, dict[str, Any]]:
    d = GOLDEN / case
    # bytes, not read_text: universal newlines would hide a lost CRLF
    original = (d / "original.yaml").read_bytes().decode()
    expected = (d / "expected.yaml").read_bytes().decode()
    return original, expected, json.loads((d / "changes.json").read_text())


def _edit(original: str, spec: dict[str, Any]) -> str:
    return yaml_rt.edit(
        original,
        document_index=spec["document_index"],
        changes=[(path, value) for path, value in spec["changes"]],
        prefix=tuple(spec["prefix"]),
    )


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    original, expected, spec = _load(case)
    assert _edit(original, spec) == expected


@pytest.mark.parametrize("case", CASES)
def test_diff_is_exactly_the_intended_lines(case: str) -> None:
    original, _, spec = _load(case)
    old, new = original.splitlines(), _edit(original, spec).splitlines()
    removed = Counter(old) - Counter(new)
    added = Counter(new) - Counter(old)
    got = sorted([f"-{line}" for line in removed.elements()] + [f"+{line}" for line in added.elements()])
    assert got == sorted(spec["diff"])


@pytest.mark.parametrize("case", CASES)
def test_edit_reads_back(case: str) -> None:
    original, _, spec = _load(case)
    new = _edit(original, spec)
    for path, value in spec["changes"]:
        got = yaml_rt.get(new, document_index=spec["document_index"], path=path, prefix=tuple(spec["prefix"]))
        assert got == value


def test_other_documents_byte_identical() -> None:
    original, expected, _ = _load("multi-document")
    old, new = yaml_rt.split_documents(original), yaml_rt.split_documents(expected)
    assert (old[0], old[2]) == (new[0], new[2])
    assert old[1] != new[1]


def test_crlf_kept() -> None:
    _, expected, _ = _load("crlf")
    assert expected.count("\r\n") == expected.count("\n")


def test_merge_key_anchor_untouched() -> None:
    original, expected, spec = _load("anchors-merge-override")
    path = f"{C}[name=primary].resources.limits.memory"
    assert yaml_rt.get(expected, document_index=0, path=path) == yaml_rt.get(
        original, document_index=0, path=path
    )


@pytest.mark.parametrize(
    ("text", "indent"),
    [
        pytest.param("a:\n  b:\n  - x\n", yaml_rt.Indent(2, 2, 0), id="indentless"),
        pytest.param("a:\n  b:\n    - x\n", yaml_rt.Indent(2, 4, 2), id="offset"),
        pytest.param("a:\n    b:\n        -   c: 1\n", yaml_rt.Indent(4, 8, 4), id="four-wide"),
        pytest.param("a:\n    b: 1\n", yaml_rt.Indent(4, 4, 2), id="no-sequences"),
        pytest.param("---\na:\n  b: 1\n---\nc:\n  - d\n", yaml_rt.Indent(2, 4, 2), id="multi-document"),
        pytest.param(
            "a: |\n      x:\n         y\nb:\n  c: 1\n", yaml_rt.Indent(2, 2, 0), id="block-scalar-ignored"
        ),
    ],
)
def test_detect_indent(text: str, indent: yaml_rt.Indent) -> None:
    assert yaml_rt.detect_indent(text) == indent


@pytest.mark.parametrize(
    ("text", "count"),
    [
        pytest.param("", 0, id="empty"),
        pytest.param("# only a comment\n", 0, id="comment-only"),
        pytest.param("a: 1\n", 1, id="one"),
        pytest.param("# c\n---\na: 1\n---\nb: 2\n", 2, id="leading-marker"),
        pytest.param("a: 1\n---\nb: 2\n---\n", 3, id="trailing-empty"),
        pytest.param("a: |\n  --- not a marker\n---\nb: 1\n", 2, id="indented-dashes"),
    ],
)
def test_split_documents(text: str, count: int) -> None:
    chunks = yaml_rt.split_documents(text)
    assert len(chunks) == count
    assert "".join(chunks) == text or count == 0


@pytest.mark.parametrize(
    ("value", "style", "text"),
    [
        ("768Mi", None, "768Mi"),
        ("768Mi", "'", "'768Mi'"),
        ("768Mi", '"', '"768Mi"'),
        ("it's", "'", "'it''s'"),
        ("true", None, '"true"'),
        ("yes", None, '"yes"'),
        ("1.0", None, '"1.0"'),
        ("a: b", None, '"a: b"'),
        (3, None, "3"),
        (3, '"', "3"),
        (False, None, "false"),
    ],
)
def test_render_scalar(value: Any, style: str | None, text: str) -> None:
    assert yaml_rt.render_scalar(value, style) == text


@pytest.mark.parametrize(
    ("text", "path", "code"),
    [
        pytest.param("a:\n  b: |\n    x\n", "a.b", "edit_unsupported", id="block-scalar-value"),
        pytest.param("a: {b: 1}\n", "a.c", "edit_unsupported", id="flow-mapping-insert"),
        pytest.param("a:\n- 1\n", "a[3]", "edit_unsupported", id="index-out-of-range"),
        pytest.param("a: 1\n", "a.b", "edit_unsupported", id="scalar-in-the-way"),
        pytest.param("a: &x 1\nb: *x\n", "b", "edit_unsupported", id="alias-value"),
    ],
)
def test_refused_edits(text: str, path: str, code: str) -> None:
    with pytest.raises(PermanentError) as info:
        yaml_rt.edit(text, document_index=0, changes=[(path, "2")])
    assert info.value.code == code


def test_out_of_bounds_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a splice bug that touches another line: the safety net must catch it.
    def sloppy_render(value: Any, style: str | None = None) -> str:
        return f"{value}\nextra: 1"

    monkeypatch.setattr(yaml_rt, "render_scalar", sloppy_render)
    with pytest.raises(PermanentError) as info:
        yaml_rt.edit("a: 1\nb: 2\n", document_index=0, changes=[("a", "x")])
    assert info.value.code == "edit_out_of_bounds"


def test_find_documents() -> None:
    original, _, _ = _load("multi-document")
    assert yaml_rt.find_documents(
        original, api_version="apps/v1", kind="Deployment", name="cart", namespace="shop"
    ) == [1]
    assert yaml_rt.find_documents(
        original, api_version=None, kind="Service", name="cart", namespace=None
    ) == [0]
    assert (
        yaml_rt.find_documents(
            original, api_version="apps/v1", kind="Deployment", name="other", namespace=None
        )
        == []
    )
