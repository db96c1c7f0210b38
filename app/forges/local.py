"""A Forge that writes pull requests to disk: the demo and ``AUTOFIX_FORGE=local`` dry runs, no network.

Each PR is a folder ``<directory>/<n>-<branch with / as __>/`` holding ``pr.json`` (the metadata),
``body.md`` and ``comment-<k>.md`` files (an issue, the dashboard: ``issues/<n>/issue.json`` and ``body.md``).
Numbers continue from the highest folder found, so they survive a
restart; a lock (threads, plus flock for processes) keeps two workers from taking the same number.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import PermanentError
from app.ports import Issue, PrFile, PullRequest

log = logging.getLogger(__name__)

_FOLDER_RE = re.compile(r"^(?P<number>[0-9]+)-")
_SAFE_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]+$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a reader never sees half a pr.json."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(text.encode("utf-8"))
    os.replace(tmp, path)


class LocalForge:
    """Forge over a directory of PR folders."""

    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)
        self._lock = threading.Lock()

    # ---- Forge protocol -----------------------------------------------------------------------------

    def find_open_pr(self, branch: str) -> PullRequest | None:
        for folder, meta in self._all():
            if meta["branch"] == branch and meta["state"] == "open":
                return self._to_pr(folder, meta)
        return None

    def open_pr(self, *, branch: str, base: str, title: str, body: str, labels: Sequence[str]) -> PullRequest:
        # The branch becomes a folder name: plain characters and non-empty components only.
        if not _SAFE_BRANCH_RE.match(branch) or any(part in ("", ".", "..") for part in branch.split("/")):
            raise PermanentError(f"refused branch name {branch!r}", code="unsafe_branch")
        with self._locked():
            existing = self.find_open_pr(branch)
            if existing is not None:
                return existing
            number = self._next_number()
            folder = self._dir / f"{number}-{branch.replace('/', '__')}"
            folder.mkdir(parents=True)
            meta: dict[str, Any] = {
                "number": number, "title": title, "branch": branch, "base": base,
                "labels": list(dict.fromkeys(labels)), "state": "open", "created_at": _now(), "comments": [],
            }
            _write_atomic(folder / "body.md", body)
            _write_atomic(folder / "pr.json", json.dumps(meta, indent=2) + "\n")
        log.info("local pull request written", extra={"pr": number, "branch": branch, "folder": str(folder)})
        return self._to_pr(folder, meta)

    def update_pr(self, pr: PullRequest, *, title: str, body: str, comment: str) -> PullRequest:
        with self._locked():
            folder, meta = self._get(pr.number)
            meta["title"] = title
            meta["updated_at"] = _now()
            _write_atomic(folder / "body.md", body)
            if comment:
                self._append_comment(folder, meta, comment)
            _write_atomic(folder / "pr.json", json.dumps(meta, indent=2) + "\n")
        return self._to_pr(folder, meta)

    def comment(self, pr: PullRequest, body: str) -> None:
        with self._locked():
            folder, meta = self._get(pr.number)
            self._append_comment(folder, meta, body)
            _write_atomic(folder / "pr.json", json.dumps(meta, indent=2) + "\n")

    # ---- beyond the protocol ------------------------------------------------------------------------

    def list_prs(self, label: str, state: str = "all", *, branch: str | None = None,
                 updated_since: float | None = None) -> list[PullRequest]:
        """PRs carrying ``label``; state is open, closed, merged, or all (same contract as GitHubForge)."""
        prs = [self._to_pr(folder, meta) for folder, meta in self._all() if label in meta["labels"]
               and (updated_since is None or _updated(meta) >= updated_since)]
        return [pr for pr in prs if (state == "all" or pr.state == state) and branch in (None, pr.branch)]

    def get_pr(self, number: int) -> PullRequest | None:
        """PR ``number`` from its folder (``merged_by`` as ``set_state`` wrote it); None when there is none."""
        found = next(((folder, meta) for folder, meta in self._all() if meta["number"] == number), None)
        return None if found is None else self._to_pr(*found)

    def pr_files(self, pr: PullRequest) -> list[PrFile]:
        """A local PR's files as ``pr.json`` lists them (``files``: path and patch), if it does."""
        _, meta = self._get(pr.number)
        return [PrFile(path=str(f.get("path", "")), patch=str(f.get("patch", ""))) for f in meta.get("files", [])]

    def request_reviewers(self, pr: PullRequest, *, reviewers: Sequence[str],
                          teams: Sequence[str]) -> list[tuple[str, str]]:
        """Recorded in pr.json (``reviewers``, ``teams``); a dry run refuses no one."""
        with self._locked():
            folder, meta = self._get(pr.number)
            meta["reviewers"] = list(dict.fromkeys([*meta.get("reviewers", []), *reviewers]))
            meta["teams"] = list(dict.fromkeys([*meta.get("teams", []), *teams]))
            _write_atomic(folder / "pr.json", json.dumps(meta, indent=2) + "\n")
        return []

    def set_body(self, pr: PullRequest, body: str) -> None:
        with self._locked():
            folder, meta = self._get(pr.number)
            meta["updated_at"] = _now()
            _write_atomic(folder / "body.md", body)
            _write_atomic(folder / "pr.json", json.dumps(meta, indent=2) + "\n")

    def close_pr(self, pr: PullRequest, *, comment: str) -> None:
        if comment:
            self.comment(pr, comment)
        self.set_state(pr.number, "closed")

    def set_state(self, number: int, state: str, *, merged_by: str | None = None,
                  merge_commit: str | None = None) -> None:
        """Mark a PR closed or merged (what a reviewer would do), for demos and tests: by whom, as which commit."""
        if state not in ("open", "closed", "merged"):
            raise ValueError("state must be open, closed or merged")
        with self._locked():
            folder, meta = self._get(number)
            meta["state"] = state
            if state in ("closed", "merged"):
                meta["closed_at"] = _now()
                meta["merged_at"] = _now() if state == "merged" else None
                meta["merged_by"] = merged_by if state == "merged" else None
                meta["merge_commit"] = merge_commit if state == "merged" else None
            _write_atomic(folder / "pr.json", json.dumps(meta, indent=2) + "\n")

    # ---- the dashboard issue (app.ports.IssueBoard) ---------------------------------------------------

    def find_issue(self, marker: str) -> Issue | None:
        for folder, meta in self._issues():
            if meta.get("state") == "open" and marker in _read_body(folder):
                return self._to_issue(folder, meta)
        return None

    def create_issue(self, *, title: str, body: str) -> Issue:
        with self._locked():
            issues = self._dir / "issues"
            number = max([0, *(int(f.name) for f in issues.iterdir() if f.name.isdigit())] if issues.is_dir()
                         else [0]) + 1
            folder = issues / str(number)
            folder.mkdir(parents=True)
            meta = {"number": number, "title": title, "state": "open", "created_at": _now()}
            _write_atomic(folder / "body.md", body)
            _write_atomic(folder / "issue.json", json.dumps(meta, indent=2) + "\n")
        log.info("local issue written", extra={"issue": number, "folder": str(folder)})
        return self._to_issue(folder, meta)

    def update_issue(self, issue: Issue, *, title: str, body: str) -> Issue:
        with self._locked():
            folder = self._dir / "issues" / str(issue.number)
            if not (folder / "issue.json").is_file():
                raise PermanentError(f"local issue #{issue.number} not found", code="not_found")
            meta = json.loads((folder / "issue.json").read_text(encoding="utf-8"))
            meta.update(title=title, updated_at=_now())
            _write_atomic(folder / "body.md", body)
            _write_atomic(folder / "issue.json", json.dumps(meta, indent=2) + "\n")
        return self._to_issue(folder, meta)

    def _issues(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        issues = self._dir / "issues"
        if not issues.is_dir():
            return
        for folder in sorted((f for f in issues.iterdir() if f.name.isdigit()), key=lambda f: int(f.name)):
            if (folder / "issue.json").is_file():
                yield folder, json.loads((folder / "issue.json").read_text(encoding="utf-8"))

    @staticmethod
    def _to_issue(folder: Path, meta: dict[str, Any]) -> Issue:
        return Issue(number=int(meta["number"]), url=(folder / "body.md").resolve().as_uri(),
                     title=str(meta.get("title", "")), body=_read_body(folder))

    # ---- storage ------------------------------------------------------------------------------------

    def _all(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        if not self._dir.is_dir():
            return
        for folder in sorted(self._dir.iterdir(), key=_folder_number):
            meta_path = folder / "pr.json"
            if _folder_number(folder) > 0 and meta_path.is_file():
                yield folder, json.loads(meta_path.read_text(encoding="utf-8"))

    def _get(self, number: int) -> tuple[Path, dict[str, Any]]:
        for folder, meta in self._all():
            if meta["number"] == number:
                return folder, meta
        raise PermanentError(f"local pull request #{number} not found", code="not_found")

    def _next_number(self) -> int:
        numbers = [_folder_number(folder) for folder in self._dir.iterdir()] if self._dir.is_dir() else []
        return max([0, *numbers]) + 1

    @staticmethod
    def _append_comment(folder: Path, meta: dict[str, Any], body: str) -> None:
        k = len(meta["comments"]) + 1
        name = f"comment-{k}.md"
        _write_atomic(folder / name, body)
        meta["comments"].append({"file": name, "created_at": _now()})

    @staticmethod
    def _to_pr(folder: Path, meta: dict[str, Any]) -> PullRequest:
        return PullRequest(
            number=int(meta["number"]), url=folder.resolve().as_uri(), branch=str(meta["branch"]),
            state=str(meta["state"]), title=str(meta["title"]), labels=tuple(meta["labels"]),
            body=_read_body(folder), created_at=meta.get("created_at"), merged_at=meta.get("merged_at"),
            closed_at=meta.get("closed_at"), merge_commit=meta.get("merge_commit"), merged_by=meta.get("merged_by"),
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._dir.mkdir(parents=True, exist_ok=True)
        with self._lock, (self._dir / ".lock").open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _updated(meta: dict[str, Any]) -> float:
    """When a PR last changed (Unix seconds): its latest stamp."""
    stamps = [meta.get(key) for key in ("created_at", "updated_at", "closed_at", "merged_at")]
    return max([datetime.fromisoformat(str(s).replace("Z", "+00:00")).timestamp() for s in stamps if s] or [0.0])


def _read_body(folder: Path) -> str:
    path = folder / "body.md"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _folder_number(folder: Path) -> int:
    match = _FOLDER_RE.match(folder.name)
    return int(match["number"]) if match and folder.is_dir() else 0
