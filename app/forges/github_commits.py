"""The fix's commit created by GitHub itself, through the Git Data API, so GitHub signs it (AUTOFIX_COMMIT_VIA=api).

``ApiCommitWorkspace`` wraps the git workspace (the port app.ports.Workspace): ``push_branch`` sends the changed
files as blobs (POST /repos/{o}/{r}/git/blobs), one tree on top of the base commit's tree (POST .../git/trees with
``base_tree``), one commit whose parent is the base commit (POST .../git/commits), then points the branch at it
(POST .../git/refs, or PATCH .../git/refs/heads/BRANCH with ``force`` when the bot's own branch is replaced), and
fetches the branch so the checkout's later reads (``remote_branch_files``) see it. Every other method is the git
workspace's: reads, the index and history stay local git.

Each tree entry needs a mode, and the one sent wins over the base tree's: so each changed path is first looked up
in the base commit's tree (GET .../git/trees/SHA, one directory at a time, each listed once) and keeps its mode
there, as ``git add`` keeps it in git mode (an executable file stays 100755); a path the base does not have is a
new regular file (100644). A path that is, or lies under, a symlink (120000) or a submodule (160000) in the base
is refused before anything is written, as git mode refuses to write through a symlink.

When GitHub marks such a commit verified (docs.github.com, "About commit signature verification", section
"Signature verification for bots"): only when the request is authenticated as the GitHub App (an installation
token) and sends no custom author, no custom committer and no signature. So the commit is sent with none of them:
GitHub writes the App's bot account as author (``<slug>[bot] <<id>+<slug>[bot]@users.noreply.github.com>``) and
``GitHub <noreply@github.com>`` as committer, and signs it; AUTOFIX_GIT_AUTHOR does not apply to these commits.
The docs promise this on github.com and GitHub Enterprise Cloud; GitHub Enterprise Server signs only once a site
administrator enabled web commit signing. A personal access token gets no such promise (the commit may stay
unsigned): use the App.

The branch is replaced only when it holds the bot's own commits, as with ``git push --force-with-lease``: the
commits GitHub lists between the base and the branch (GET .../compare/BASE...HEAD) must all be the App's (bot
author, GitHub committer) or the git identity's (an earlier ``git push``), and their ``Autofix-Id`` trailer must
name this change's owner; GitHub has no compare-and-swap on a ref, so the window between that check and the PATCH
stays open for the few hundred milliseconds between the two requests.
"""

from __future__ import annotations

import base64
import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from app.errors import NoFix, PermanentError, TemporaryError
from app.ports import ChangedFile, FileCommit, PushResult, TreeEntry, Workspace

if TYPE_CHECKING:
    from github.GitRef import GitRef
    from github.Repository import Repository

    from app.forges.github import GitHubForge
    from app.models.repo_index import RepoIndex

log = logging.getLogger(__name__)

BRANCH_PREFIX = "autofix/"  # the bot writes only its own branches (app/adapters/workspace.py, same rule)
OWNER_TRAILER = "Autofix-Id"  # the trailer git mode writes too: either mode recognises the other's branches
GITHUB_COMMITTER = "noreply@github.com"  # the committer of every commit GitHub creates and signs
FILE_MODE = "100644"  # a new file: a regular file, as git adds one
EXECUTABLE_MODE = "100755"
TREE_MODE = "040000"  # GitHub's tree API spells a directory's mode with the leading 0
SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"
_NOT_WRITTEN = {SYMLINK_MODE: "a symlink", SUBMODULE_MODE: "a submodule"}
_APP_BOT_EMAIL = re.compile(r"^\d+\+[A-Za-z0-9][A-Za-z0-9-]*\[bot\]@users\.noreply\.github\.com$")
_BRANCH_RE = re.compile(r"^autofix/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
_OWNER_RE = re.compile(r"^[0-9a-f]{8,64}$")
_TRAILER_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*: \S")
_EMAIL_RE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


class ApiCommitWorkspace:
    """A Workspace whose ``push_branch`` creates the commit through GitHub's Git Data API; all else is ``inner``'s."""

    def __init__(self, inner: Workspace, forge: GitHubForge, *, author: str) -> None:
        self._inner = inner
        self._forge = forge
        match = _EMAIL_RE.search(author)
        self._git_email = match.group(1).lower() if match else ""  # branches an earlier `git push` wrote
        self._bot_email: str | None = None  # the App's commit email, once GitHub has told us

    # ---- the one method that differs ------------------------------------------------------------------

    def push_branch(self, branch: str, files: Mapping[str, str], *, message: str,
                    owner: str | None = None) -> PushResult:
        _check_branch(branch)
        if not files:
            raise PermanentError("nothing to push: no files given", code="no_change")
        if owner is not None and not _OWNER_RE.match(owner):
            raise PermanentError(f"invalid owner id {owner[:80]!r}", code="unsafe_branch")
        texts = {_check_path(path): text for path, text in files.items()}
        base = self._inner.head()
        before = {path: self._base_text(path) for path in texts}
        changed = {path: text for path, text in texts.items() if before[path] != text}
        if not changed:
            raise PermanentError(f"the change to {branch} is identical to the base", code="no_change")
        with self._forge.git_data("create the commit through the Git Data API") as repo:
            ref = _branch_ref(repo, branch)
            if ref is not None:
                self._check_lease(repo, branch, base=base, head=ref.object.sha, owner=owner, paths=set(texts))
            commit = self._create_commit(repo, base, changed, message=commit_message(message, owner))
            self._point_branch(repo, branch, ref, commit)
        self._inner.remote_branch_files(branch)  # fetch it: later reads of the branch see the new commit
        return PushResult(branch=branch, commit=commit, base_commit=base, diff=_diff(before, changed))

    # ---- delegated ---------------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self._inner.root

    def sync(self) -> str:
        return self._inner.sync()

    def read_text(self, path: str) -> str:
        return self._inner.read_text(path)

    def list_files(self, *, suffixes: Sequence[str] = (".yaml", ".yml")) -> list[str]:
        return self._inner.list_files(suffixes=suffixes)

    def remote_branch_files(self, branch: str) -> dict[str, tuple[str | None, str | None]] | None:
        return self._inner.remote_branch_files(branch)

    def head(self) -> str:
        return self._inner.head()

    def changed_files(self, old_commit: str, new_commit: str) -> list[ChangedFile]:
        return self._inner.changed_files(old_commit, new_commit)

    def tree(self, commit: str) -> list[TreeEntry]:
        return self._inner.tree(commit)

    def read_blobs(self, blobs: Sequence[str]) -> dict[str, bytes]:
        return self._inner.read_blobs(blobs)

    def file_history(self, path: str, *, since: float, limit: int = 20) -> list[FileCommit]:
        return self._inner.file_history(path, since=since, limit=limit)

    @property
    def index(self) -> RepoIndex:
        return self._inner.index

    # ---- Git Data API ----------------------------------------------------------------------------------

    def _base_text(self, path: str) -> str | None:
        try:
            return self._inner.read_text(path)
        except PermanentError as err:
            if err.code in ("not_found", "not_text"):
                return None  # a new file (or one we replace whole)
            raise

    def _create_commit(self, repo: Repository, base: str, changed: Mapping[str, str], *, message: str) -> str:
        """Blobs, a tree on the base's tree with only the changed files, a commit whose parent is the base.

        No author, committer or signature: that is what makes GitHub sign it (module docstring)."""
        from github import InputGitTreeElement

        parent = repo.get_git_commit(base)
        modes = _base_modes(repo, parent.tree.sha, sorted(changed))  # refuses before any write
        elements = []
        for path in sorted(changed):
            content = base64.b64encode(changed[path].encode("utf-8")).decode("ascii")  # the exact bytes
            blob = repo.create_git_blob(content, "base64")
            elements.append(InputGitTreeElement(path, modes[path], "blob", sha=blob.sha))
        tree = repo.create_git_tree(elements, parent.tree)
        commit = repo.create_git_commit(message, tree, [parent])
        email = str(commit.author.email or "")
        if _APP_BOT_EMAIL.match(email):
            self._bot_email = email.lower()
        verification: Any = commit.raw_data.get("verification") or {}
        log.info("commit created through the GitHub API",
                 extra={"commit": commit.sha, "base_commit": base, "author": email,
                        "verified": bool(verification.get("verified")), "reason": verification.get("reason")})
        if not verification.get("verified"):  # a token that is not the App's, a Server without web signing
            log.warning("github did not sign the commit", extra={"commit": commit.sha,
                                                                 "reason": verification.get("reason")})
        return str(commit.sha)

    def _point_branch(self, repo: Repository, branch: str, ref: GitRef | None, commit: str) -> None:
        from github import GithubException

        if ref is not None:
            ref.edit(commit, force=True)  # the bot's own branch (checked): replaced by the newer fix
            log.info("branch updated through the GitHub API", extra={"branch": branch, "commit": commit})
            return
        try:
            repo.create_git_ref(f"refs/heads/{branch}", commit)
        except GithubException as err:
            if err.status != 422:
                raise
            # Created meanwhile (another replica, or a re-posted create whose answer was lost): check it again.
            raise TemporaryError(f"{branch} appeared on GitHub while the fix was committed: trying again",
                                 code="git_push_rejected", delay=5.0) from err
        log.info("branch created through the GitHub API", extra={"branch": branch, "commit": commit})

    def _check_lease(self, repo: Repository, branch: str, *, base: str, head: str, owner: str | None,
                     paths: set[str]) -> None:
        """Refuse a branch carrying a person's commit (no_fix) or another workload's change (branch_taken)."""
        comparison = repo.compare(base, head)
        changed = {f.filename for f in comparison.files}  # first: this GET fills the commits' first page too
        commits = list(comparison.commits)
        others = sorted({email for c in commits for email in self._foreign_emails(c.commit)})
        if others:
            raise NoFix(f"{branch} has commits by {', '.join(others)}: not overwriting a person's work; "
                        "update that pull request by hand", code="branch_has_foreign_commits")
        if owner is None:
            return
        found = {value for c in commits for value in trailer_values(c.commit.message or "", OWNER_TRAILER)}
        if found - {owner}:
            raise PermanentError(f"{branch} carries the change of another workload ({OWNER_TRAILER} "
                                 f"{', '.join(sorted(found - {owner}))[:200]}): not overwriting it",
                                 code="branch_taken")
        if not found and changed and changed != paths:
            raise PermanentError(f"{branch} carries a change to {', '.join(sorted(changed))[:300]}, not to "
                                 f"{', '.join(sorted(paths))[:300]}: another workload's change; not overwriting it",
                                 code="branch_taken")

    def _foreign_emails(self, commit: Any) -> list[str]:
        """The identities on a branch commit that are not the bot's (empty: the commit is ours)."""
        author = str(commit.author.email or "").lower()
        committer = str(commit.committer.email or "").lower()
        if self._git_email and author == committer == self._git_email:
            return []  # pushed by git mode with AUTOFIX_GIT_AUTHOR
        if committer == GITHUB_COMMITTER and _APP_BOT_EMAIL.match(author) and self._bot_email in (None, author):
            return []  # created by an App through the API (once known, exactly this App)
        return [email for email in (author, committer) if email not in (self._git_email, GITHUB_COMMITTER)] \
            or [author]


# ---- pure helpers -------------------------------------------------------------------------------------


def commit_message(message: str, owner: str | None) -> str:
    """What ``git commit --cleanup=whitespace --trailer 'Autofix-Id: OWNER'`` records, so both modes agree."""
    lines = [line.rstrip() for line in message.replace("\r\n", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    if owner:
        paragraph = out[len(out) - out[::-1].index(""):] if "" in out else []
        if not paragraph or not all(_TRAILER_LINE.match(line) for line in paragraph):
            out.append("")  # git starts a trailer block unless the last paragraph is one
        out.append(f"{OWNER_TRAILER}: {owner}")
    return "\n".join(out) + "\n"


def trailer_values(message: str, key: str) -> list[str]:
    """The values of ``key: value`` lines in a commit message's last paragraph (git's trailer block)."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    last = paragraphs[-1].splitlines() if paragraphs else []
    prefix = f"{key.lower()}:"
    return [line.split(":", 1)[1].strip() for line in last if line.lower().startswith(prefix)]


def _base_modes(repo: Repository, root: str, paths: Sequence[str]) -> dict[str, str]:
    """Each path's mode in the base tree ``root``: its own for a file there (100644 or 100755), 100644 for a new
    one. Each directory on the way is listed once (GET .../git/trees/SHA, not recursive: a GitOps monorepo's whole
    tree can be megabytes); a symlink or submodule on the way, or a directory at the path, is refused."""
    listed: dict[str, dict[str, tuple[str, str]]] = {}

    def listing(sha: str) -> dict[str, tuple[str, str]]:
        if sha not in listed:
            tree = repo.get_git_tree(sha)
            if tree.raw_data.get("truncated"):  # only past 100,000 entries in one directory
                raise PermanentError(f"GitHub truncated the listing of tree {sha}: cannot tell the modes of the "
                                     "changed files", code="tree_truncated")
            listed[sha] = {e.path: (e.mode, e.sha) for e in tree.tree}
        return listed[sha]

    modes = {}
    for path in paths:
        sha, mode, parts = root, FILE_MODE, path.split("/")
        for depth, name in enumerate(parts):
            entry = listing(sha).get(name)
            if entry is None:
                mode = FILE_MODE  # not in the base: a new file (in new directories, maybe)
                break
            mode, sha = entry
            at, last = "/".join(parts[:depth + 1]), depth == len(parts) - 1
            if mode in _NOT_WRITTEN:
                kind = _NOT_WRITTEN[mode]
                what = f"refused to write through {kind} {path!r}: it is" if last else \
                    f"refused path {path!r}: {at} is"
                raise PermanentError(f"{what} {kind} ({mode}) in the base tree", code="unsafe_path")
            if last == (mode == TREE_MODE):
                kind = "a directory" if mode == TREE_MODE else f"a file ({mode})"
                raise PermanentError(f"refused path {path!r}: {at} is {kind} in the base tree", code="unsafe_path")
        modes[path] = mode
    return modes


def _branch_ref(repo: Repository, branch: str) -> GitRef | None:
    """The branch's ref on GitHub (GET .../git/ref/heads/BRANCH), None when it does not exist."""
    from github import UnknownObjectException

    try:
        ref = repo.get_git_ref(f"heads/{branch}")
        _ = ref.object.sha  # the GET (now, or here when PyGithub reads lazily)
    except UnknownObjectException:
        return None
    return ref


def _check_branch(branch: str) -> None:
    if not _BRANCH_RE.match(branch) or ".." in branch or branch.endswith((".lock", ".")):
        raise PermanentError(f"refused branch {branch!r}: only new {BRANCH_PREFIX}* branches are written",
                             code="unsafe_branch")


def _check_path(path: str) -> str:
    """The rule of app/adapters/workspace.check_relative_path (the forge layer cannot import adapters)."""
    if not path or "\x00" in path or "\\" in path or path.startswith("/"):
        raise PermanentError(f"refused path {path[:80]!r}", code="unsafe_path")
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.lower() == ".git" for part in parts):
        raise PermanentError(f"refused path {path[:80]!r}", code="unsafe_path")
    return str(PurePosixPath(path))


def _diff(before: Mapping[str, str | None], changed: Mapping[str, str]) -> str:
    """A unified diff of the commit (PushResult.diff), from the texts both sides had."""
    out: list[str] = []
    for path in sorted(changed):
        old = before[path]
        out.append(f"diff --git a/{path} b/{path}\n")
        out.extend(difflib.unified_diff((old or "").splitlines(keepends=True), changed[path].splitlines(keepends=True),
                                        fromfile=f"a/{path}" if old is not None else "/dev/null",
                                        tofile=f"b/{path}"))
    return "".join(out)
