"""GitLab merge requests through python-gitlab (REST API v4): the only module that imports ``gitlab``.

The same contract as app/forges/github.py, in GitLab's words: a PR is a merge request (``PullRequest.number`` is
its ``iid``, ``!N``), a comment is a note, the dashboard issue is a project issue. The project is addressed by its
path (``group/sub/name``), which python-gitlab URL-encodes (``/projects/group%2Fsub%2Fname``).

Writes may be sent twice (a lost answer, the worker retrying a job): ``open_pr`` looks the open MR of the source
branch up first, and treats GitLab's 409 "Another open merge request already exists for this source branch" as
success (the MR found and updated). Labels go with the create as one comma-separated string (GitLab creates
missing labels itself); an MR found open gets only the missing ones (``add_labels``).

Every request is bounded like GitHubForge's: connect and read timeouts never exceed what is left of the job's
budget (app.deadlines), and retries are ours, not python-gitlab's (its own loop sleeps for whatever Retry-After
says, up to ten times, and knows nothing of the job): a 429 is waited out when GitLab asks for at most
``max_wait`` seconds, a read (GET) is retried after a 5xx or a lost connection, a write only when it surely was
not carried out (429, connection refused); each failed attempt spends the job's retry budget for the forge. What
is left becomes a TemporaryError whose ``delay`` is GitLab's Retry-After, naming the dependency and the call
("forge: GitLab did not answer within 15 s (GET /api/v4/projects/acme%2Fgitops/merge_requests)").
"""

from __future__ import annotations

import base64
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import gitlab
import requests
from gitlab import exceptions as gl_exceptions

from app import deadlines, dependencies
from app.errors import ConfigError, PermanentError, TemporaryError
from app.forges import transport
from app.ports import Issue, PrFile, PullRequest

log = logging.getLogger(__name__)

FORGE = dependencies.FORGE
PR_STATES = ("open", "closed", "merged", "all")
API_STATES = {"open": "opened", "closed": "closed", "merged": "merged", "all": "all"}
MAX_PR_FILES = 100
MAX_LISTED = 300  # MRs (or issues) read per question: three pages of 100
PER_PAGE = 100
CONNECT_SECONDS = 5.0
DEFAULT_DELAY = 60.0
TRANSIENT = frozenset({500, 502, 503, 504})
_SCP = re.compile(r"[\w.-]+@[\w.-]+:[^/\s][^\s]*")  # git@gitlab.com:group/name.git
GROUP_REVIEWERS = ("GitLab requests reviews from users only: a group from CODEOWNERS cannot be a reviewer (its "
                   "members can be, by username; GitLab Premium's approval rules use CODEOWNERS groups)")
NOT_ADDED = ("GitLab did not add them as a reviewer: not a project member who can read the merge request, or the "
             "plan allows one reviewer per merge request (GitLab Free)")


class GitLabForge:
    """Forge over one GitLab project (gitlab.com or self-managed), authenticated with a project, group or personal
    access token (``PRIVATE-TOKEN``): a string, or a provider called at each request (a rotated mounted secret is
    sent from its next request on)."""

    def __init__(self, project: str, *, url: str, token: str | Callable[[], str], write_spacing: float = 0.0, retries: int = 3,
                 backoff: float = 0.5, max_wait: float = 10.0, timeout: float = 15.0) -> None:
        path = project.strip("/")
        if path.count("/") < 1 or not all(path.split("/")):
            raise ConfigError(f"GitLab project must be its path, group/name or group/subgroup/name, got {project!r}")
        self._token: Callable[[], str] = token if callable(token) else (lambda: token)
        first = self._token()
        if not first:
            raise ConfigError("GitLab token is empty")
        self._path = path
        self._url = url.rstrip("/")
        self._client = _BoundedGitlab(self._url, first, self._token, policy=_Policy(
            retries=retries, backoff=backoff, max_wait=max_wait, read=timeout, write_spacing=write_spacing))
        # lazy: no GET /projects/:id until a call needs it; the manager paths carry the encoded path.
        self._project: Any = self._client.projects.get(path, lazy=True)
        self._changes_only = False  # GitLab before 15.7: MR diffs through .../changes (pr_files)

    @property
    def project(self) -> str:
        return self._path

    # ---- Forge protocol -----------------------------------------------------------------------------

    def find_open_pr(self, branch: str) -> PullRequest | None:
        with self._mapped("find merge request"):
            found = self._find_open(branch)
        return None if found is None else _to_pr(found)

    def open_pr(self, *, branch: str, base: str, title: str, body: str, labels: Sequence[str]) -> PullRequest:
        wanted = list(dict.fromkeys(labels))
        with self._mapped("open merge request"):
            found = self._find_open(branch)
            if found is None:
                found = self._create(branch=branch, base=base, title=title, body=body, labels=wanted)
            missing = [name for name in wanted if name not in _labels(found)]
            if missing:
                found = self._update(int(found["iid"]), {"add_labels": ",".join(missing)})
        log.info("merge request open", extra={"pr": found["iid"], "branch": branch, "project": self._path})
        return _to_pr(found)

    def update_pr(self, pr: PullRequest, *, title: str, body: str, comment: str) -> PullRequest:
        with self._mapped("update merge request"):
            updated = self._update(pr.number, {"title": title, "description": body})
            if comment:
                self._note(pr.number, comment)
        log.info("merge request updated", extra={"pr": pr.number, "project": self._path})
        return _to_pr(updated)

    def comment(self, pr: PullRequest, body: str) -> None:
        with self._mapped("comment on merge request"):
            self._note(pr.number, body)

    def list_prs(self, label: str, state: str = "all", *, branch: str | None = None,
                 updated_since: float | None = None) -> list[PullRequest]:
        """MRs carrying ``label``; state is open, closed (not merged), merged, or all: GitLab filters all three
        itself (``state=opened|closed|merged``), most recently updated first, at most MAX_LISTED. With ``branch``:
        that source branch only; with ``updated_since``: ``updated_after``. Merge requests from forks are not ours."""
        if state not in PR_STATES:
            raise ValueError(f"state must be one of {PR_STATES}")
        query: dict[str, Any] = {"labels": label, "state": API_STATES[state], "order_by": "updated_at",
                                 "sort": "desc", "per_page": PER_PAGE}
        if branch is not None:
            query["source_branch"] = branch
        if updated_since is not None:
            query["updated_after"] = datetime.fromtimestamp(updated_since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._mapped("list merge requests"):
            listed = self._project.mergerequests.list(iterator=True, **query)
            found = [_to_pr(mr.attributes) for mr in itertools.islice(listed, MAX_LISTED) if _own(mr.attributes)]
        return [pr for pr in found if branch in (None, pr.branch) and label in pr.labels]

    def get_pr(self, number: int) -> PullRequest | None:
        """GET .../merge_requests/:iid, with who merged it (``merge_user``); None when GitLab has no such MR."""
        with self._mapped("get merge request"):
            try:
                mr = self._project.mergerequests.get(number).attributes
            except gl_exceptions.GitlabGetError as err:
                if err.response_code == 404:
                    return None
                raise
        pr = _to_pr(mr)
        if pr.state != "merged":
            return pr
        user = mr.get("merge_user") or mr.get("merged_by") or {}
        return _with(pr, merged_by=str(user.get("username") or "") or None)

    def pr_files(self, pr: PullRequest) -> list[PrFile]:
        """The first MAX_PR_FILES paths the MR changes and their hunks (``diff``: unified hunks without the file
        header): GET .../merge_requests/:iid/diffs (GitLab 15.7+, paged); a GitLab older than 15.7 answers it 404
        (no such route), and then, from that answer on, GET .../merge_requests/:iid/changes (one answer, the MR
        with its ``changes``: the same entries). A file whose hunks GitLab leaves out (``too_large``, or
        ``collapsed`` past its diff limits: ``diff`` is "") is marked ``too_large``, not read as an empty change."""
        with self._mapped("list merge request diffs"):
            entries = None if self._changes_only else self._diffs(pr.number)
            if entries is None:
                entries = self._changes(pr.number)
        files = [_pr_file(entry) for entry in entries]
        hidden = [f.path for f in files if f.too_large]
        if hidden:
            log.info("merge request diff too large to show", extra={"pr": pr.number, "paths": hidden[:20],
                                                                    "project": self._path})
        return files

    def request_reviewers(self, pr: PullRequest, *, reviewers: Sequence[str],
                          teams: Sequence[str]) -> list[tuple[str, str]]:
        """Users become ``reviewer_ids`` (each username resolved with GET /users?username=), added to the MR's
        current reviewers, never its author; groups cannot be reviewers on GitLab, so every team is refused, and so
        is a user GitLab leaves out of the answer (it drops, without an error, users who cannot read the MR and,
        on GitLab Free, every reviewer after the first). A refusal never fails the PR."""
        refused = [(f"team {slug}", GROUP_REVIEWERS) for slug in dict.fromkeys(teams)]
        with self._mapped("request reviewers"):
            mr = self._project.mergerequests.get(pr.number).attributes
        author = str((mr.get("author") or {}).get("username") or "").lower()
        ids: dict[str, int] = {}
        for name in dict.fromkeys(reviewers):
            if name.lower() == author:
                continue
            with self._mapped("look up a reviewer"):
                users = self._client.users.list(username=name, get_all=False)
            if not users:
                refused.append((name, "no GitLab user has this username"))
                continue
            ids[name] = int(users[0].id)
        if not ids:
            return refused
        current = [int(r["id"]) for r in mr.get("reviewers") or []]
        with self._mapped("request reviewers"):
            updated = self._update(pr.number, {"reviewer_ids": list(dict.fromkeys([*current, *ids.values()]))})
        kept = {int(r["id"]) for r in updated.get("reviewers") or []}
        refused += [(name, NOT_ADDED) for name, uid in ids.items() if uid not in kept]
        if refused:
            log.warning("review request refused", extra={"pr": pr.number, "refused": [n for n, _ in refused]})
        return refused

    def close_pr(self, pr: PullRequest, *, comment: str) -> None:
        with self._mapped("close merge request"):
            if comment:
                self._note(pr.number, comment)
            self._update(pr.number, {"state_event": "close"})

    def set_body(self, pr: PullRequest, body: str) -> None:
        with self._mapped("edit merge request description"):
            self._update(pr.number, {"description": body})

    # ---- the dashboard issue (app.ports.IssueBoard) ---------------------------------------------------

    def find_issue(self, marker: str) -> Issue | None:
        """The open issue whose description holds ``marker``, lowest iid first (at most MAX_LISTED read)."""
        with self._mapped("list issues"):
            listed = self._project.issues.list(state="opened", iterator=True, per_page=PER_PAGE)
            found = [i.attributes for i in itertools.islice(listed, MAX_LISTED)
                     if marker in str(i.attributes.get("description") or "")]
        return _to_issue(min(found, key=lambda i: int(i["iid"]))) if found else None

    def create_issue(self, *, title: str, body: str) -> Issue:
        with self._mapped("create issue"):
            issue = self._project.issues.create({"title": title, "description": body}).attributes
        log.info("issue created", extra={"issue": issue["iid"], "project": self._path})
        return _to_issue(issue)

    def update_issue(self, issue: Issue, *, title: str, body: str) -> Issue:
        with self._mapped("edit issue"):
            updated = self._project.issues.update(issue.number, {"title": title, "description": body})
        return _to_issue(dict(updated))

    # ---- beyond the protocol ------------------------------------------------------------------------

    def auth_header(self) -> str:
        """An http.extraHeader for git over https: GitLab takes an access token as the password of HTTP basic
        auth, with ``oauth2`` as the user name (any non-blank name does for project and group tokens)."""
        pair = base64.b64encode(f"oauth2:{self._token()}".encode()).decode()
        return f"Authorization: Basic {pair}"

    def repo_permissions(self) -> dict[str, bool]:
        """What the token may do on the project, from GET /projects/:id ``permissions`` (the token's role: a project
        or group access token is a bot member): push = Developer (30) or above, as opening MRs needs."""
        with self._mapped("read the project"):
            project = self._client.projects.get(self._path).attributes
        permissions = project.get("permissions") or {}
        level = max(int((permissions.get(key) or {}).get("access_level") or 0)
                    for key in ("project_access", "group_access"))
        return {"pull": level >= 10, "push": level >= 30, "admin": level >= 40}

    # ---- python-gitlab calls ------------------------------------------------------------------------

    def _mr_path(self, iid: int) -> str:
        return f"/projects/{quote(self._path, safe='')}/merge_requests/{int(iid)}"

    def _find_open(self, branch: str) -> dict[str, Any] | None:
        listed = self._project.mergerequests.list(state="opened", source_branch=branch, iterator=True)
        # Exactly this branch, of this project: an MR from a fork's branch of the same name is not ours.
        return next((mr.attributes for mr in listed if mr.attributes.get("source_branch") == branch
                     and _own(mr.attributes)), None)

    def _create(self, *, branch: str, base: str, title: str, body: str, labels: Sequence[str]) -> dict[str, Any]:
        data = {"source_branch": branch, "target_branch": base, "title": title, "description": body,
                "labels": ",".join(labels)}
        try:
            return dict(self._project.mergerequests.create(data).attributes)
        except gl_exceptions.GitlabCreateError as err:
            if not _already_exists(err):
                raise
            # A re-sent create (its answer was lost) or a racing worker got there first.
            log.info("merge request already exists", extra={"branch": branch, "project": self._path})
            found = self._find_open(branch)
            if found is None:
                raise TemporaryError("GitLab says an open merge request exists for this source branch but "
                                     "does not list it yet", code="gitlab_mr_race", delay=5.0, dependency=FORGE,
                                     kind=dependencies.HTTP_4XX) from err
            return found

    def _diffs(self, iid: int) -> list[dict[str, Any]] | None:
        """GET .../diffs, at most MAX_PR_FILES entries; None when this GitLab has no such route (before 15.7)."""
        try:
            listed = self._client.http_list(f"{self._mr_path(iid)}/diffs", iterator=True, per_page=PER_PAGE)
            return [dict(entry) for entry in itertools.islice(listed, MAX_PR_FILES)]
        except gl_exceptions.GitlabHttpError as err:
            if err.response_code != 404:
                raise
        # An unknown MR is 404 on .../changes as well, and fails there, named; an older GitLab answers it.
        log.info("gitlab has no merge request diffs endpoint: reading changes", extra={"project": self._path})
        return None

    def _changes(self, iid: int) -> list[dict[str, Any]]:
        """GET .../changes (deprecated in 15.7, the only way before): the MR with ``changes``; ``overflow``: GitLab
        left files out past its diff limits (they are not listed at all)."""
        answer = self._client.http_get(f"{self._mr_path(iid)}/changes")
        self._changes_only = True  # answered where .../diffs was not: ask this GitLab the same way from now on
        mr = answer if isinstance(answer, dict) else {}
        if mr.get("overflow"):
            log.warning("merge request changes overflow: gitlab listed only some files",
                        extra={"pr": iid, "changes_count": mr.get("changes_count"), "project": self._path})
        return [dict(entry) for entry in (mr.get("changes") or [])[:MAX_PR_FILES]]

    def _update(self, iid: int, data: dict[str, Any]) -> dict[str, Any]:
        return dict(self._project.mergerequests.update(iid, data))

    def _note(self, iid: int, body: str) -> None:
        self._project.mergerequests.get(iid, lazy=True).notes.create({"body": body})

    # ---- error mapping ------------------------------------------------------------------------------

    @contextmanager
    def _mapped(self, action: str) -> Iterator[None]:
        # Our retry loop (_BoundedGitlab) spent the job's retry budget per failed attempt: not once more here.
        try:
            with deadlines.calling(FORGE, action):
                yield
        except gl_exceptions.GitlabError as err:
            raise deadlines.failed(self._gitlab_error(action, err), spend_attempt=False) from err
        except requests.RequestException as err:  # refused, timeouts, resets: no HTTP answer
            raise deadlines.failed(self._transport_error(action, err), spend_attempt=False) from err
        deadlines.answered(FORGE)

    def _transport_error(self, action: str, err: requests.RequestException) -> TemporaryError:
        return transport.unanswered("GitLab", action, err, read_seconds=self._client.policy.last_read(),
                                    code="gitlab_unavailable")

    def _gitlab_error(self, action: str, err: gl_exceptions.GitlabError) -> PermanentError | TemporaryError:
        status = int(err.response_code or 0)
        answer = self._client.last_response()
        call = f" ({transport.call_of(answer.request, '')})" if answer is not None and answer.request.url else ""
        message = _message(err.error_message)
        text = f"GitLab {status} while trying to {action} on {self._path}: {message}{call}"
        text = text.replace(self._token(), "***")  # GitLab never echoes it, but a proxy's error page might
        kind = dependencies.RATE_LIMITED if status == 429 else dependencies.http_kind(status)
        if status == 429 or status >= 500:
            headers = answer.headers if answer is not None else {}
            delay = _delay(headers)
            log.warning("gitlab temporary error", extra={"status": status, "delay": delay, "action": action})
            return TemporaryError(text, code="gitlab_unavailable", delay=delay, dependency=FORGE, kind=kind)
        if status == 401:
            return PermanentError(f"GitLab rejected the token (401 Unauthorized) for {self._path} at "
                                  f"{self._url}{call}", code="gitlab_auth", dependency=FORGE, kind=kind)
        if status == 404:
            return PermanentError(f"GitLab project {self._path} or object not found at {self._url} (404: "
                                  f"{message}){call}: check AUTOFIX_GITLAB_PROJECT and that the token can see it",
                                  code="gitlab_not_found", dependency=FORGE, kind=kind)
        if status == 403:
            return PermanentError(text + " (the token lacks permission: the api scope and the Developer role)",
                                  code="gitlab_forbidden", dependency=FORGE, kind=kind)
        return PermanentError(text, code="gitlab_rejected", dependency=FORGE, kind=kind)


# ---- the bounded client -----------------------------------------------------------------------------------


class _Policy:
    """Timeouts, retries and write spacing of one forge; one instance serves every worker thread."""

    def __init__(self, *, retries: int, backoff: float, max_wait: float, read: float, write_spacing: float) -> None:
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.read = float(read)
        self.write_spacing = write_spacing
        self._write_lock = threading.Lock()
        self._last_write = 0.0
        self._used = threading.local()

    def timeout(self) -> tuple[float, float]:
        """(connect, read) for the next attempt: never more than what is left of the job's budget."""
        read = deadlines.timeout(self.read)
        self._used.read = read
        return min(CONNECT_SECONDS, read), read

    def last_read(self) -> float:
        return float(getattr(self._used, "read", self.read))

    @contextmanager
    def write(self) -> Iterator[None]:
        """Space writes ``write_spacing`` apart (from the end of the previous one), as GitHubForge does."""
        if self.write_spacing <= 0:
            yield
            return
        with self._write_lock:
            wait = self._last_write + self.write_spacing - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                yield
            finally:
                self._last_write = time.monotonic()


class _ProvidedToken(requests.auth.AuthBase):
    def __init__(self, provider: Callable[[], str]) -> None:
        self.provider = provider

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["PRIVATE-TOKEN"] = self.provider()
        return request


class _BoundedGitlab(gitlab.Gitlab):
    """python-gitlab's client with our retry loop in place of its own (see the module docstring)."""

    def __init__(self, url: str, token: str, provider: Callable[[], str], *, policy: _Policy) -> None:
        super().__init__(url, private_token=token, timeout=policy.read, per_page=PER_PAGE,
                         retry_transient_errors=False)
        # python-gitlab puts its auth (PRIVATE-TOKEN) on each request from _auth: the token asked of the provider
        # there, not the one given at construction, so a rotated secret is used from the next request on.
        self._auth = _ProvidedToken(provider)
        self.policy = policy
        self._seen = threading.local()
        self.session.hooks["response"].append(self._remember)

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._seen.response = response

    def last_response(self) -> requests.Response | None:
        """This thread's latest HTTP answer (the failed one, when a call just raised): its headers and request."""
        return getattr(self._seen, "response", None)

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.update(obey_rate_limit=False, retry_transient_errors=False, max_retries=0)
        write = verb.lower() != "get"
        attempt = 0
        while True:
            attempt += 1
            kwargs["timeout"] = self.policy.timeout()
            try:
                if write:
                    with self.policy.write():
                        return super().http_request(verb, path, *args, **kwargs)
                return super().http_request(verb, path, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as err:
                kind, again, wait = self._transport_retry(err, write=write, attempt=attempt)
                if not self._retry(kind, again=again, wait=wait, attempt=attempt):
                    raise
            except gl_exceptions.GitlabHttpError as err:
                kind, again, wait = self._status_retry(err, write=write, attempt=attempt)
                if not self._retry(kind, again=again, wait=wait, attempt=attempt):
                    raise
            log.info("gitlab retry", extra={"verb": verb.upper(), "kind": kind, "wait": wait, "attempt": attempt})
            time.sleep(wait)

    def _transport_retry(self, err: Exception, *, write: bool, attempt: int) -> tuple[str, bool, float]:
        kind = dependencies.kind_of(err)
        # A write that may have reached GitLab is not re-sent: the job's retry looks the MR up first.
        return kind, not write or kind == dependencies.REFUSED, self.policy.backoff * 2 ** (attempt - 1)

    def _status_retry(self, err: gl_exceptions.GitlabHttpError, *, write: bool,
                      attempt: int) -> tuple[str, bool, float]:
        status = int(err.response_code or 0)
        kind = dependencies.RATE_LIMITED if status == 429 else dependencies.http_kind(status)
        answer = self.last_response()
        # 429: GitLab's rate limiter refused before doing anything, a write included. 5xx: reads only.
        again = status == 429 or (status in TRANSIENT and not write)
        asked = _header_wait(answer.headers) if answer is not None and status == 429 else None
        return kind, again, self.policy.backoff * 2 ** (attempt - 1) if asked is None else asked

    def _retry(self, kind: str, *, again: bool, wait: float, attempt: int) -> bool:
        """Whether to try once more; each retryable failure spends the job's retry budget for the forge."""
        if kind not in dependencies.RETRYABLE_KINDS:
            return False
        deadlines.spend(FORGE, kind)
        return again and attempt <= self.policy.retries and wait <= self.policy.max_wait and \
            deadlines.retry_allowed(FORGE)


# ---- helpers ----------------------------------------------------------------------------------------


def project_from_url(git_url: str) -> str:
    """The project path in a clone URL (https://gitlab.example/group/sub/name.git, git@host:group/name.git), or
    "" when the URL names no host (a local path)."""
    from app.sources.deployers.repo_urls import normalize

    remote = "://" in git_url and not git_url.startswith("file://")
    if not remote and not _SCP.fullmatch(git_url):
        return ""
    host, _, path = normalize(git_url).partition("/")
    return path.strip("/") if host and "/" in path.strip("/") else ""


def _own(mr: Mapping[str, Any]) -> bool:
    source, target = mr.get("source_project_id"), mr.get("project_id", mr.get("target_project_id"))
    return source is None or target is None or source == target


def _pr_file(entry: Mapping[str, Any]) -> PrFile:
    """One entry of .../diffs or .../changes. GitLab sends ``diff: ""`` for a file it left out (``too_large``:
    past the diff limits; ``collapsed``: past a tenth of them); GitLab before 15.x has neither flag, and then an
    empty diff of a file that was neither added, deleted, renamed nor changed mode is one left out too."""
    diff = str(entry.get("diff") or "")
    content_only = not any(entry.get(k) for k in ("new_file", "deleted_file", "renamed_file")) and \
        entry.get("a_mode") == entry.get("b_mode")
    hidden = not diff and (bool(entry.get("too_large") or entry.get("collapsed")) or content_only)
    return PrFile(path=str(entry.get("new_path") or entry.get("old_path") or ""), patch=diff, too_large=hidden)


def _labels(mr: Mapping[str, Any]) -> tuple[str, ...]:
    # Names (the default), or objects with ``with_labels_details=true``.
    return tuple(str(label["name"] if isinstance(label, dict) else label) for label in mr.get("labels") or [])


def _to_pr(mr: Mapping[str, Any]) -> PullRequest:
    state = {"opened": "open", "locked": "open", "merged": "merged"}.get(str(mr.get("state")), "closed")
    merged_at = _iso(mr.get("merged_at")) if state == "merged" else None
    commit = (mr.get("merge_commit_sha") or mr.get("squash_commit_sha") or mr.get("sha")) if state == "merged" \
        else None  # a fast-forward merge has no merge commit: the source head is what landed
    return PullRequest(
        number=int(mr["iid"]), url=str(mr.get("web_url") or ""), branch=str(mr.get("source_branch") or ""),
        state=state, title=str(mr.get("title") or ""), labels=_labels(mr), body=str(mr.get("description") or ""),
        created_at=_iso(mr.get("created_at")), merged_at=merged_at,
        # GitLab leaves closed_at empty on a merged MR; GitHub's merged PR is closed when merged.
        closed_at=_iso(mr.get("closed_at")) or merged_at, merge_commit=str(commit) if commit else None,
    )


def _with(pr: PullRequest, *, merged_by: str | None) -> PullRequest:
    from dataclasses import replace

    return replace(pr, merged_by=merged_by)


def _to_issue(issue: Mapping[str, Any]) -> Issue:
    return Issue(number=int(issue["iid"]), url=str(issue.get("web_url") or ""), title=str(issue.get("title") or ""),
                 body=str(issue.get("description") or ""))


def _iso(value: Any) -> str | None:
    """GitLab's stamps (2026-03-01T10:00:00.000Z, or with an offset) as the ports' ISO 8601 UTC seconds."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _message(value: Any) -> str:
    """GitLab's ``message``: a string, a list ("Another open merge request..."), or field -> errors."""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)[:300]
    if isinstance(value, dict):
        return "; ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items())[:300]
    return str(value or "")[:300]


def _already_exists(err: gl_exceptions.GitlabError) -> bool:
    return err.response_code == 409 and "another open merge request already exists" in \
        _message(err.error_message).lower()


def _header_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds GitLab asks us to wait: Retry-After (seconds or an HTTP date), else RateLimit-Reset (epoch)."""
    value = str(headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            pass
    reset = str(headers.get("RateLimit-Reset") or "").strip()
    return max(float(reset) - time.time(), 0.0) if reset.isdigit() else None


def _delay(headers: Mapping[str, str]) -> float:
    wait = _header_wait(headers)
    return max(wait, 1.0) if wait is not None else DEFAULT_DELAY
