"""The GitOps repository as a local git clone, driven through the git CLI.

Every git call is an argv list (never a shell) with a timeout, ``GIT_TERMINAL_PROMPT=0`` and the host's
global/system git config switched off, so a developer's ``commit.gpgsign`` or credential helper cannot leak
into the bot. For https remotes the token arrives per call as an ``http.extraHeader`` passed through
``GIT_CONFIG_COUNT`` environment variables: it never lands in the URL, in ``.git/config``, or in the
process argv (which ``ps`` shows to every user).

One clone is shared by all workers of a process (and by processes on the same volume), so each operation
holds a lock: a ``threading.Lock`` for threads plus ``fcntl.flock`` on ``<checkout>.lock`` for processes.
Between operations another worker may sync the clone to a newer base, so each thread remembers the base
commit its own ``sync()`` returned and reads and branches from that commit: a fix is always built on the
exact text it was computed from, never silently on top of a base that moved underneath it.

Network calls (fetch, ls-remote, push) are bounded three ways: git's own ``http.lowSpeedLimit`` /
``http.lowSpeedTime`` abort an https transfer that stalls (a server that accepts and never answers), ssh gets
``ConnectTimeout`` and keep-alives, and the subprocess timeout is never longer than what is left of the job's
budget (app.deadlines; git has no connect timeout of its own for https, so a stalled TLS handshake ends
there). Their errors start with "git: " and say how the remote failed (app.dependencies).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app import deadlines, dependencies
from app.errors import ConfigError, NoFix, PermanentError, TemporaryError
from app.ports import ChangedFile, FileCommit, PushResult, TreeEntry
from app.sources import index as repo_index

log = logging.getLogger(__name__)

BRANCH_PREFIX = "autofix/"
OWNER_TRAILER = "Autofix-Id"  # commit trailer naming the workload and cause a branch's change is for
MAX_BRANCH_FILES = 50
MAX_HISTORY = 100  # commits file_history reads at most, whatever the caller asks
_HISTORY_FORMAT = "%H%x00%ct%x00%an <%ae>%x00%at%x00%s"  # NUL-separated fields, records NUL-terminated (-z)
_HISTORY_FIELDS = 5
LOCAL_TIMEOUT = 60.0
NETWORK_TIMEOUT = 180.0
STALL_SECONDS = 20  # http.lowSpeedTime: a transfer under LOW_SPEED_BYTES per second for this long is cut
LOW_SPEED_BYTES = 1000
SSH_CONNECT_SECONDS = 10
SSH_COMMAND = (f"ssh -o BatchMode=yes -o ConnectTimeout={SSH_CONNECT_SECONDS} -o ServerAliveInterval=10 "
               "-o ServerAliveCountMax=2")
GIT = dependencies.GIT
_AUTHOR_RE = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<(?P<email>[^<>\s]+@[^<>\s]+)>\s*$")

# stderr fragments (LC_ALL=C) that tell a permanent remote problem from a transient one.
_AUTH_MARKERS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "access denied",
    "permission denied",
    "returned error: 401",
    "returned error: 403",
    "invalid username or password",
)
_NOT_FOUND_MARKERS = (
    "repository not found",
    "does not appear to be a git repository",
    "returned error: 404",
    "not a git repository",
    "' not found",  # "fatal: repository 'https://…/x.git/' not found" (smart HTTP 404)
)
_REJECT_MARKERS = ("[rejected]", "[remote rejected]", "failed to push some refs")
_ANSWERED_MARKERS = ("couldn't find remote ref", *_REJECT_MARKERS)  # the remote answered: no dependency failure
# How a network call failed, from git's (curl's, ssh's) stderr under LC_ALL=C; first match wins.
_KIND_MARKERS = (
    (dependencies.TIMEOUT, ("operation too slow", "timed out", "timeout")),
    (dependencies.REFUSED, ("connection refused", "couldn't connect to server")),
    (dependencies.RATE_LIMITED, ("returned error: 429",)),
    (dependencies.HTTP_5XX, ("returned error: 5",)),
)

_REGULAR_MODES = ("100644", "100755")  # symlinks (120000) and submodules (160000) are never read
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
_OWNER_RE = re.compile(r"^[0-9a-f]{8,64}$")

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _network_kind(stderr: str) -> str | None:
    """How the remote failed, from lower-cased stderr; None when it answered (a missing ref)."""
    if any(marker in stderr for marker in _ANSWERED_MARKERS):
        return None
    for kind, markers in _KIND_MARKERS:
        if any(marker in stderr for marker in markers):
            return kind
    return dependencies.UNREACHABLE  # DNS, resets, TLS, "the remote end hung up unexpectedly"


def _process_lock(checkout: Path) -> threading.Lock:
    """One threading.Lock per checkout for the whole process, shared by every GitWorkspace on it."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(checkout, threading.Lock())


@dataclass(frozen=True)
class _Identity:
    name: str
    email: str


def parse_author(author: str) -> _Identity:
    """'Name <email>' -> identity; a malformed value is a configuration error."""
    match = _AUTHOR_RE.match(author)
    if match is None:
        raise ConfigError("git author must look like 'Name <email>'")
    return _Identity(name=match["name"], email=match["email"])


def _check_commit(sha: str) -> str:
    """An object id (SHA-1 or SHA-256), so it can never be read as an option or a revision expression."""
    if not _COMMIT_RE.match(sha):
        raise PermanentError(f"not an object id: {sha[:80]!r}", code="git_failed")
    return sha


def check_relative_path(path: str) -> str:
    """Refuse a repository path that could escape the checkout or touch git's own files."""
    if not path or "\x00" in path or "\\" in path:
        raise PermanentError("refused path: empty, NUL or backslash", code="unsafe_path")
    if path.startswith("/"):
        raise PermanentError(f"refused absolute path {path!r}", code="unsafe_path")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PermanentError(f"refused path {path!r}: empty, '.' or '..' component", code="unsafe_path")
    # .git/hooks/* written by an edit would run on the next commit: git's own files are off limits.
    if any(part.lower() == ".git" for part in parts):
        raise PermanentError(f"refused path {path!r} inside .git", code="unsafe_path")
    return str(PurePosixPath(path))


class GitWorkspace:
    """Workspace over a git clone at ``checkout``; writes reach the remote only as ``autofix/`` branches."""

    def __init__(
        self,
        url: str,
        *,
        base: str,
        checkout: Path,
        author: str,
        auth_header: Callable[[], str | None] | None = None,
        lock_timeout: float = 600.0,
        network_timeout: float = NETWORK_TIMEOUT,
        index_workers: int = 1,
        stall_seconds: int = STALL_SECONDS,
    ) -> None:
        if not url:
            raise ConfigError("git url is empty")
        if not base or base.startswith("-") or base.startswith(BRANCH_PREFIX):
            raise ConfigError(f"invalid base branch {base!r}")
        self._url = url
        self._base = base
        self._checkout = Path(checkout).absolute()
        self._identity = parse_author(author)
        self._auth_header = auth_header
        self._lock_timeout = lock_timeout
        self._network_timeout = network_timeout
        self._stall_seconds = stall_seconds
        self._thread_lock = _process_lock(self._checkout)
        self._lock_file = self._checkout.parent / f"{self._checkout.name}.lock"
        self._pinned = threading.local()  # per worker thread: the base sha its sync() returned
        self._index_workers = index_workers
        self._index_lock = threading.Lock()
        self._indexes: dict[str, repo_index.RepoIndex] = {}  # commit -> index, the few most recent

    # ---- Workspace protocol -------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self._checkout

    def sync(self) -> str:
        """Fetch the base, hard-reset a clean work tree on it, and pin it for this thread."""
        with self._locked():
            self._ensure_clone()
            self._fetch(f"+refs/heads/{self._base}:{self._base_ref}", missing_code="no_base")
            sha = self._rev_parse(self._base_ref)
            self._checkout_clean(sha)
        self._pinned.sha = sha
        log.info("workspace synced", extra={"base": self._base, "commit": sha})
        return sha

    def read_text(self, path: str) -> str:
        with self._locked():
            self._at_pinned()
            target = self._safe_join(path)
            if not target.is_file():
                raise PermanentError(f"no such file in the repository: {path}", code="not_found")
            data = target.read_bytes()
        try:
            # bytes -> str without newline translation: CRLF files must come back unchanged.
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PermanentError(f"{path} is not UTF-8 text", code="not_text") from err

    def list_files(self, *, suffixes: Sequence[str] = (".yaml", ".yml")) -> list[str]:
        with self._locked():
            self._at_pinned()
            out = self._git("ls-files", "-z")
        names = [name for name in out.split("\x00") if name]
        wanted = tuple(suffixes)
        return sorted(name for name in names if not wanted or name.endswith(wanted))

    def push_branch(self, branch: str, files: Mapping[str, str], *, message: str,
                    owner: str | None = None) -> PushResult:
        self._check_branch(branch)
        if not files:
            raise PermanentError("nothing to push: no files given", code="no_change")
        if owner is not None and not _OWNER_RE.match(owner):
            raise PermanentError(f"invalid owner id {owner[:80]!r}", code="unsafe_branch")
        paths = [check_relative_path(path) for path in files]
        with self._locked():
            base_sha = self._at_pinned()
            try:
                return self._commit_and_push(branch, base_sha, dict(zip(paths, files.values(), strict=True)),
                                             message=message, owner=owner)
            finally:
                # Leave the shared tree clean at this thread's base whatever happened.
                self._checkout_clean(base_sha)

    def remote_branch_files(self, branch: str) -> dict[str, tuple[str | None, str | None]] | None:
        """The branch's own changes as whole files, so a caller can compare objects and fields, not lines."""
        with self._locked():
            remote_ref = self._fetch_branch(branch)
            if remote_ref is None:
                return None
            base = self._at_pinned()
            fork = self._git("merge-base", base, remote_ref, check=False).strip() or base
            names = [n for n in self._git("diff", "--name-only", "-z", "--no-renames", fork, remote_ref).split("\x00")
                     if n]
            return {name: (self._blob_text(fork, name), self._blob_text(remote_ref, name))
                    for name in names[:MAX_BRANCH_FILES]}

    def _fetch_branch(self, branch: str) -> str | None:
        """Fetch one of the bot's branches into its remote-tracking ref; None when the remote has none."""
        self._check_branch(branch)
        remote_ref = f"refs/remotes/origin/{branch}"
        self._ensure_clone()
        if not self._remote_has(f"refs/heads/{branch}"):
            self._git("update-ref", "-d", remote_ref, check=False)
            return None
        self._fetch(f"+refs/heads/{branch}:{remote_ref}", missing_code="no_branch")
        return remote_ref

    def _blob_text(self, rev: str, path: str) -> str | None:
        result = self._run(["cat-file", "blob", f"{rev}:{path}"], check=False)
        return result.stdout.decode("utf-8", errors="replace") if result.returncode == 0 else None

    def remote_base(self) -> str | None:
        """The base branch's commit on the remote, asked with ``git ls-remote`` and the credentials (no clone:
        ``autofix doctor``); None when the remote answers without that branch."""
        result = self._run(["ls-remote", "--exit-code", self._url, f"refs/heads/{self._base}"], in_checkout=False,
                           network=True, timeout=self._network_timeout, check=False)
        if result.returncode == 2:  # --exit-code: no matching ref
            return None
        if result.returncode != 0:
            raise self._error(["ls-remote"], result, network=True)
        return result.stdout.decode("utf-8", errors="replace").split()[0]

    def delete_remote_branch(self, branch: str) -> None:
        """Delete one of the bot's own branches on the remote (``autofix doctor``'s scratch branch)."""
        self._check_branch(branch)
        with self._locked():
            self._ensure_clone()
            self._git("push", "--porcelain", "origin", f":refs/heads/{branch}", network=True,
                      timeout=self._network_timeout)
            self._git("update-ref", "-d", f"refs/remotes/origin/{branch}", check=False)
        log.info("remote branch deleted", extra={"branch": branch})

    # ---- repository index (app.sources.index) --------------------------------------------------------

    def head(self) -> str:
        sha = self._pinned_sha()
        if sha is None:
            with self._locked():
                sha = self._at_pinned()
        return sha

    @property
    def index(self) -> repo_index.RepoIndex:
        """The index at this thread's base: kept in memory, else loaded from disk and updated, else built."""
        commit = self.head()
        with self._index_lock:
            current = self._indexes.get(commit)
            if current is None:
                previous = next(reversed(self._indexes.values()), None) or self._load_index()
                current = repo_index.refresh(previous, self, commit, workers=self._index_workers)
                if current is not previous:
                    self._save_index(current)
                self._indexes = {**dict(list(self._indexes.items())[-3:]), commit: current}
            return current

    def tree(self, commit: str) -> list[TreeEntry]:
        """Regular files of ``commit`` with blob ids and sizes (``git ls-tree -r -l``)."""
        with self._locked():
            self._ensure_clone()
            out = self._git("ls-tree", "-r", "-l", "-z", "--full-tree", _check_commit(commit))
        entries = []
        for record in filter(None, out.split("\x00")):
            meta, _, path = record.partition("\t")
            mode, kind, blob, size = meta.split()
            if kind == "blob" and mode in _REGULAR_MODES:
                entries.append(TreeEntry(path=path, blob=blob, size=int(size)))
        return entries

    def changed_files(self, old_commit: str, new_commit: str) -> list[ChangedFile]:
        """Files added, modified or deleted between two commits (``git diff-tree -r --no-renames``)."""
        with self._locked():
            out = self._git("diff-tree", "-r", "-z", "--no-renames", "--no-commit-id",
                            _check_commit(old_commit), _check_commit(new_commit))
        fields = out.split("\x00")
        changes = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(":"):
                continue
            _, new_mode, _, blob, status = meta[1:].split()
            deleted = status == "D" or new_mode not in _REGULAR_MODES
            changes.append(ChangedFile(status="D" if deleted else ("A" if status == "A" else "M"), path=path,
                                       blob="" if deleted else blob))
        return changes

    def read_blobs(self, blobs: Sequence[str]) -> dict[str, bytes]:
        """Contents of blobs by id, in one ``git cat-file --batch``."""
        if not blobs:
            return {}
        request = "".join(f"{_check_commit(blob)}\n" for blob in blobs).encode()
        with self._locked():
            out = self._git_input(["cat-file", "--batch"], request)
        contents: dict[str, bytes] = {}
        pos = 0
        while pos < len(out):
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if len(header) != 3:  # "<id> missing"
                continue
            size = int(header[2])
            contents[header[0].decode()] = out[pos:pos + size]
            pos += size + 1
        return contents

    def file_history(self, path: str, *, since: float, limit: int = 20) -> list[FileCommit]:
        """``git log --first-parent`` of one file from this thread's base, then both sides of each commit in one
        ``git cat-file --batch`` (``<sha>:<path>`` and ``<sha>^:<path>``).

        First parent only: a change merged with a merge commit shows as that merge, at the time it landed on the
        base branch (its feature-branch commits may be days older). ``since`` bounds the walk by committer time
        and ``limit`` (at most MAX_HISTORY) the number of commits; each side's text is decoded as UTF-8 with
        replacement characters (a binary file reads as text, never raises).
        """
        relative = check_relative_path(path)
        if "\n" in relative or "\r" in relative:  # one object name per line in the batch request
            raise PermanentError(f"refused path {relative[:80]!r}: line break", code="unsafe_path")
        count = max(1, min(int(limit), MAX_HISTORY))
        with self._locked():
            base = self._at_pinned()
            out = self._git("log", "--first-parent", "-z", f"--max-count={count}", f"--since=@{int(since)}",
                            f"--format={_HISTORY_FORMAT}", base, "--", relative)
            fields = out.split("\x00")
            if fields and not fields[-1]:
                fields.pop()
            rows = [fields[i:i + _HISTORY_FIELDS] for i in range(0, len(fields) - _HISTORY_FIELDS + 1, _HISTORY_FIELDS)]
            names = [name for row in rows for name in (f"{_check_commit(row[0])}:{relative}",
                                                        f"{row[0]}^:{relative}")]
            texts = self._batch_texts(names)
        return [FileCommit(sha=sha, time=float(committed), author=author, authored=float(authored), subject=subject,
                           text=texts[2 * i], previous=texts[2 * i + 1])
                for i, (sha, committed, author, authored, subject) in enumerate(rows)]

    def _batch_texts(self, names: Sequence[str]) -> list[str | None]:
        """Each object name's blob as text, in order; None for a missing object (or one that is not a blob)."""
        if not names:
            return []
        out = self._git_input(["cat-file", "--batch"], "".join(f"{name}\n" for name in names).encode())
        texts: list[str | None] = []
        pos = 0
        for _ in names:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if len(header) == 3 and header[2].isdigit() and _COMMIT_RE.match(header[0].decode(errors="replace")):
                size = int(header[2])
                body = out[pos:pos + size]
                pos += size + 1
                texts.append(body.decode("utf-8", errors="replace") if header[1] == b"blob" else None)
            else:  # "<name> missing" or "<name> ambiguous": no content follows
                texts.append(None)
        return texts

    def _git_input(self, args: list[str], data: bytes) -> bytes:
        argv = ["git", "-c", "core.hooksPath=/dev/null", *args]
        try:
            result = subprocess.run(argv, cwd=self._checkout, env=self._env(False), input=data,
                                    capture_output=True, timeout=LOCAL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as err:
            raise TemporaryError(f"git {args[0]} timed out after {LOCAL_TIMEOUT:.0f}s",
                                 code="git_timeout") from err
        if result.returncode != 0:
            raise self._error(args, result, network=False)
        return result.stdout

    @property
    def _index_file(self) -> Path:
        return self._checkout.parent / f"{self._checkout.name}.index.json"

    def _load_index(self) -> repo_index.RepoIndex | None:
        try:
            return repo_index.loads(self._index_file.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, repo_index.IndexCorrupt) as err:
            log.warning("repository index unreadable, rebuilding", extra={"file": str(self._index_file),
                                                                            "error": str(err)})
            return None

    def _save_index(self, index: repo_index.RepoIndex) -> None:
        """Write to a temporary file and rename: a concurrent writer never leaves half a file.

        No fsync: the index is a cache, and a file torn by a power cut fails ``loads`` and is rebuilt.
        """
        target = self._index_file
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with tmp.open("wb") as handle:
                handle.write(repo_index.dumps(index))
            os.replace(tmp, target)
        except OSError as err:  # a cache: failing to keep it costs a rebuild later, not this fix
            log.warning("repository index not saved", extra={"file": str(target), "error": str(err)})
            tmp.unlink(missing_ok=True)

    # ---- branch building ------------------------------------------------------------------------------

    def _commit_and_push(self, branch: str, base_sha: str, files: Mapping[str, str], *, message: str,
                         owner: str | None) -> PushResult:
        self._checkout_clean(base_sha)
        for path, text in files.items():
            self._write(path, text)
        self._git("add", "--", *files)
        staged = self._git("diff", "--cached", "--name-only", "-z")
        if not staged.strip("\x00"):
            raise PermanentError(f"the change to {branch} is identical to {self._base}", code="no_change")
        self._git(
            "-c", f"user.name={self._identity.name}", "-c", f"user.email={self._identity.email}",
            "commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-m", message,
            *(["--trailer", f"{OWNER_TRAILER}: {owner}"] if owner else []),
        )
        commit = self._rev_parse("HEAD")
        diff = self._git("diff", "--no-color", "--no-ext-diff", "--no-textconv", base_sha, commit)
        lease = self._lease(branch, base_sha, owner=owner, paths=set(files))
        self._push(commit, branch, lease=lease)
        log.info("branch pushed", extra={"branch": branch, "commit": commit, "base_commit": base_sha})
        return PushResult(branch=branch, commit=commit, base_commit=base_sha, diff=diff)

    def _write(self, path: str, text: str) -> None:
        target = self._safe_join(path)
        if target.is_symlink():
            raise PermanentError(f"refused to write through symlink {path!r}", code="unsafe_path")
        target.parent.mkdir(parents=True, exist_ok=True)
        self._safe_join(path)  # the created parents must still be inside the checkout
        target.write_bytes(text.encode("utf-8"))  # exactly the given text, no newline translation

    def _lease(self, branch: str, base_sha: str, *, owner: str | None = None, paths: set[str] | None = None) -> str:
        """The remote branch's commit we may replace ("" when it doesn't exist yet).

        autofix/ branches are ours, and an open PR's branch is replaced by the newer fix; but a commit a
        person pushed onto it is theirs, and a change for another workload is that workload's PR: refuse
        rather than overwrite either.
        """
        remote_ref = f"refs/remotes/origin/{branch}"
        if not self._remote_has(f"refs/heads/{branch}"):
            return ""
        self._fetch(f"+refs/heads/{branch}:{remote_ref}", missing_code="no_branch")
        emails = self._git("log", "--format=%ae%n%ce", remote_ref, f"^{base_sha}").split()
        others = sorted({e for e in emails if e.lower() != self._identity.email.lower()})
        if others:
            # A person took the branch over: the bot steps back (no_fix), it does not fail.
            raise NoFix(f"{branch} has commits by {', '.join(others)}: not overwriting a person's work; "
                        "update that pull request by hand", code="branch_has_foreign_commits")
        if owner is not None:
            self._check_owner(branch, remote_ref, base_sha, owner=owner, paths=paths or set())
        return self._rev_parse(remote_ref)

    def _check_owner(self, branch: str, remote_ref: str, base_sha: str, *, owner: str, paths: set[str]) -> None:
        """Refuse to replace a branch whose change is for another workload or cause.

        The bot's commits name their owner in a trailer; commits from before the trailer are judged by the
        files they change (branch names of earlier versions could collide for long names).
        """
        out = self._git("log", f"--format=%(trailers:key={OWNER_TRAILER},valueonly,separator=%x2C)", remote_ref,
                        f"^{base_sha}")
        found = {value.strip() for value in out.replace("\n", ",").split(",") if value.strip()}
        if found - {owner}:
            raise PermanentError(f"{branch} carries the change of another workload ({OWNER_TRAILER} "
                                 f"{', '.join(sorted(found - {owner}))[:200]}): not overwriting it",
                                 code="branch_taken")
        if found:
            return
        changed = {n for n in self._git("diff", "--name-only", "-z", "--no-renames", f"{base_sha}...{remote_ref}")
                   .split("\x00") if n}
        if changed and changed != paths:
            raise PermanentError(f"{branch} carries a change to {', '.join(sorted(changed))[:300]}, not to "
                                 f"{', '.join(sorted(paths))[:300]}: another workload's change; not overwriting it",
                                 code="branch_taken")

    def _push(self, commit: str, branch: str, *, lease: str) -> None:
        # The lease makes the force-push fail if the branch moved since we looked (someone pushed meanwhile).
        self._git("push", f"--force-with-lease=refs/heads/{branch}:{lease}", "--porcelain", "origin",
                  f"{commit}:refs/heads/{branch}", network=True, timeout=self._network_timeout)

    def _check_branch(self, branch: str) -> None:
        if branch == self._base or not branch.startswith(BRANCH_PREFIX):
            raise PermanentError(f"refused branch {branch!r}: only new {BRANCH_PREFIX}* branches are written",
                                 code="unsafe_branch")
        result = self._run(["check-ref-format", f"refs/heads/{branch}"], in_checkout=False, check=False)
        if result.returncode != 0:
            raise PermanentError(f"invalid branch name {branch!r}", code="unsafe_branch")

    # ---- paths --------------------------------------------------------------------------------------

    def _safe_join(self, path: str) -> Path:
        """Join a repository path under the checkout; refuse it if it resolves outside (symlinks)."""
        relative = check_relative_path(path)
        root = self._checkout.resolve()
        target = self._checkout / relative
        resolved = target.resolve()
        if resolved != root and root not in resolved.parents:
            raise PermanentError(f"refused path {path!r}: resolves outside the checkout", code="unsafe_path")
        if resolved == root or (root / ".git") in (resolved, *resolved.parents):
            raise PermanentError(f"refused path {path!r}: not a repository file", code="unsafe_path")
        return target

    # ---- clone state --------------------------------------------------------------------------------

    @property
    def _base_ref(self) -> str:
        return f"refs/remotes/origin/{self._base}"

    def _pinned_sha(self) -> str | None:
        sha: str | None = getattr(self._pinned, "sha", None)
        return sha

    def _at_pinned(self) -> str:
        """Make the work tree show this thread's base commit (syncing first if this thread never did)."""
        sha = self._pinned_sha()
        if sha is None:
            self._ensure_clone()
            self._fetch(f"+refs/heads/{self._base}:{self._base_ref}", missing_code="no_base")
            sha = self._rev_parse(self._base_ref)
            self._pinned.sha = sha
        if self._git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).strip() != sha:
            self._checkout_clean(sha)
        return sha

    def _ensure_clone(self) -> None:
        if not (self._checkout / ".git").is_dir():
            self._checkout.mkdir(parents=True, exist_ok=True)
            # init + remote add instead of clone: every network call then goes through one code path.
            self._git("init", "--quiet")
            self._git("remote", "add", "origin", self._url)
            log.info("workspace created", extra={"checkout": str(self._checkout)})
            return
        current = self._git("remote", "get-url", "origin", check=False).strip()
        if current != self._url:
            self._git("remote", "set-url", "origin", self._url)

    def _checkout_clean(self, sha: str) -> None:
        self._git("checkout", "--quiet", "--force", "--detach", sha)
        self._git("reset", "--quiet", "--hard", sha)
        self._git("clean", "--quiet", "-ffdx")

    def _fetch(self, refspec: str, *, missing_code: str) -> None:
        try:
            self._git("fetch", "--quiet", "--no-tags", "--prune", "origin", refspec,
                      network=True, timeout=self._network_timeout)
        except TemporaryError as err:
            if "couldn't find remote ref" in str(err).lower():
                raise PermanentError(f"the remote has no branch for {refspec.split(':')[0]}",
                                     code=missing_code) from err
            raise

    def _remote_has(self, ref: str) -> bool:
        result = self._run(["ls-remote", "--exit-code", "origin", ref], network=True,
                           timeout=self._network_timeout, check=False)
        if result.returncode == 2:  # --exit-code: 2 means "no matching refs", not a failure
            return False
        if result.returncode != 0:
            raise self._error(["ls-remote"], result, network=True)
        return True

    def _rev_parse(self, ref: str) -> str:
        return self._git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()

    # ---- running git --------------------------------------------------------------------------------

    def _git(self, *args: str, network: bool = False, timeout: float = LOCAL_TIMEOUT, check: bool = True) -> str:
        result = self._run(list(args), network=network, timeout=timeout, check=check)
        return result.stdout.decode("utf-8", errors="replace")

    def _run(self, args: list[str], *, in_checkout: bool = True, network: bool = False,
             timeout: float = LOCAL_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        workdir = self._checkout if in_checkout else None
        argv = ["git", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", *args]
        if not network:
            return self._finish(self._subprocess(argv, args, workdir, timeout=timeout, network=False), args,
                                network=False, check=check)
        argv[1:1] = ["-c", f"http.lowSpeedLimit={LOW_SPEED_BYTES}", "-c", f"http.lowSpeedTime={self._stall_seconds}"]
        timeout = deadlines.timeout(timeout)
        with deadlines.calling(GIT, f"git {args[0]}"):
            result = self._subprocess(argv, args, workdir, timeout=timeout, network=True)
        return self._finish(result, args, network=True, check=check)

    def _subprocess(self, argv: list[str], args: list[str], workdir: Path | None, *, timeout: float,
                    network: bool) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(argv, cwd=workdir, env=self._env(network), capture_output=True,
                                  timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as err:
            if network:
                raise deadlines.failed(TemporaryError(
                    f"the remote did not answer within {deadlines.shown(timeout)} s (git {args[0]})", code="git_timeout",
                    dependency=GIT, kind=dependencies.TIMEOUT)) from err
            raise TemporaryError(f"git {args[0]} timed out after {timeout:.0f}s", code="git_timeout") from err
        except OSError as err:
            raise PermanentError(f"cannot run git: {err}", code="git_missing") from err

    def _finish(self, result: subprocess.CompletedProcess[bytes], args: list[str], *, network: bool,
                check: bool) -> subprocess.CompletedProcess[bytes]:
        """Report a network call's result (a rejection or a missing ref is an answer), raise if asked to."""
        error = self._error(args, result, network=network) if result.returncode != 0 else None
        if network:
            if error is None or error.kind is None or (args[0] == "ls-remote" and result.returncode == 2):
                deadlines.answered(GIT)
            else:
                deadlines.failed(error)
        if check and error is not None:
            raise error
        return result

    def _env(self, network: bool) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
        env.update({
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "true",  # never prompt: an empty password fails fast instead of hanging
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_LITERAL_PATHSPECS": "1",  # a path is a path, never a glob or ':(magic)'
            "LC_ALL": "C",  # stable stderr for error mapping
            "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", SSH_COMMAND),
        })
        header = self._header() if network else None
        if header:
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                        "GIT_CONFIG_VALUE_0": header})
        return env

    def _header(self) -> str | None:
        if self._auth_header is None or not self._url.lower().startswith(("https://", "http://")):
            return None
        return self._auth_header()

    def _error(self, args: Sequence[str], result: subprocess.CompletedProcess[bytes], *,
               network: bool) -> PermanentError | TemporaryError:
        stderr = self._redact(result.stderr.decode("utf-8", errors="replace").strip())
        # A network call's message starts with the dependency ("git: fetch failed (128): fatal: ...").
        summary = f"{'' if network else 'git '}{args[0]} failed ({result.returncode}): {stderr[-800:]}"
        lowered = stderr.lower()
        dependency = GIT if network else None
        if any(marker in lowered for marker in _NOT_FOUND_MARKERS) and network:
            return PermanentError(summary, code="git_repo_not_found", dependency=dependency,
                                  kind=dependencies.HTTP_4XX)
        if any(marker in lowered for marker in _AUTH_MARKERS) and network:
            return PermanentError(summary, code="git_auth", dependency=dependency, kind=dependencies.HTTP_4XX)
        if any(marker in lowered for marker in _REJECT_MARKERS):
            return TemporaryError(summary, code="git_push_rejected", delay=60.0, dependency=dependency)
        if network:  # DNS, refused connections, resets, 5xx: the remote may be back soon
            return TemporaryError(summary, code="git_network", dependency=dependency, kind=_network_kind(lowered))
        return PermanentError(summary, code="git_failed")

    def _redact(self, text: str) -> str:
        header = self._header()
        if header:
            text = text.replace(header, "Authorization: ***")
            secret = header.split(" ")[-1]
            if len(secret) > 6:
                text = text.replace(secret, "***")
        return text

    # ---- locking ------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._thread_lock.acquire(timeout=self._lock_timeout):
            raise TemporaryError("workspace busy: lock not acquired in time", code="workspace_busy")
        try:
            self._lock_file.parent.mkdir(parents=True, exist_ok=True)
            with self._lock_file.open("a") as handle:
                self._flock(handle.fileno())
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _flock(self, fd: int) -> None:
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TemporaryError("workspace busy: another process holds the clone",
                                         code="workspace_busy") from None
                time.sleep(0.05)
