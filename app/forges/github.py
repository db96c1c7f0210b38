"""GitHub pull requests through PyGithub: the only module that imports ``github`` (with github_commits.py).

Writes may be sent twice: PyGithub's retry re-posts POSTs after a 5xx or a secondary rate limit, and the
worker retries whole jobs. So ``open_pr`` looks the PR up before creating it, treats GitHub's 422 "A pull
request already exists" as success, and only adds labels that are missing.

Rate limits are waited out inside PyGithub only when the wait is short (``max_wait``); a longer wait
becomes a TemporaryError whose ``delay`` tells the worker when to come back, so no worker sleeps a minute.
Every PyGithub or network error is mapped here to our errors, chained with ``from err``; the token never
appears in a message, and the message starts with the dependency ("forge: GitHub did not answer within 15 s
(GET /repos/acme/gitops/pulls)").

Each request is bounded by the job (app.deadlines): its connect and read timeouts never exceed what is left of
the job's budget, and PyGithub's retries stop once the forge failed as often as one job allows, so a server
that accepts and never answers costs a job at most its budget.
"""

from __future__ import annotations

import base64
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from urllib3.util.timeout import Timeout

from app import deadlines, dependencies
from app.errors import ConfigError, PermanentError, TemporaryError
from app.forges import transport
from app.ports import Issue, PrFile, PullRequest

if TYPE_CHECKING:
    from github.Issue import Issue as GhIssue
    from github.PullRequest import PullRequest as GhPull
    from github.Repository import Repository

log = logging.getLogger(__name__)

DEFAULT_DELAY = 60.0
PR_STATES = ("open", "closed", "merged", "all")
MAX_PR_FILES = 100
MAX_LISTED = 300  # PRs of the pulls list read per question (10 pages)
CONNECT_SECONDS = 5.0
FORGE = dependencies.FORGE


class GitHubForge:
    """Forge over one GitHub (or GitHub Enterprise) repository, authenticated with a token (a string, or a provider
    called at each request: a rotated mounted secret is sent from its next request on) or as a GitHub App."""

    def __init__(
        self,
        repo: str,
        *,
        api_url: str,
        token: TokenSource = "",
        app: AppCredentials | None = None,
        write_spacing: float = 1.0,
        request_spacing: float = 0.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_wait: float = 10.0,
        timeout: int = 15,
    ) -> None:
        from github import Github

        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise ConfigError(f"GitHub repository must look like owner/name, got {repo!r}")
        self._token: Callable[[], str] = token if callable(token) else (lambda: token)
        if app is None and not self._token():
            raise ConfigError("GitHub token is empty")
        self._repo_name = repo
        self._owner = owner
        self._is_app = app is not None
        self.write_spacing = write_spacing  # also kept between replicas' writes (app/stages/publish.py)
        self._auth: Any = _provided_token(self._token) if app is None else _installation_auth(
            app, repo=repo, api_url=api_url, timeout=timeout)
        self._timeout = _JobBoundTimeout(connect=CONNECT_SECONDS, read=timeout)
        self._client = Github(
            auth=self._auth,
            base_url=api_url.rstrip("/"),
            timeout=self._timeout,
            retry=_retry(total=retries, backoff=backoff, max_wait=max_wait),
            # GitHub asks to space content-creating requests (POST, PATCH, PUT, DELETE), not reads. PyGithub sleeps
            # before a write until write_spacing has passed since the previous write ended; the first write waits
            # for nothing. Reads are not spaced (PyGithub's default 0.25 s between any two requests put ~1.25 s of
            # sleep before each PR: five reads precede it). The App's token requests use their own Requester and
            # clock (AppInstallationAuth), so minting a token never delays a write either.
            seconds_between_requests=request_spacing or None,
            seconds_between_writes=write_spacing or None,
        )
        self._repo: Repository | None = None

    # ---- Forge protocol -----------------------------------------------------------------------------

    def find_open_pr(self, branch: str) -> PullRequest | None:
        with self._mapped("find pull request"):
            pull = self._find_open(branch)
            return None if pull is None else _to_pr(pull)

    def open_pr(self, *, branch: str, base: str, title: str, body: str, labels: Sequence[str]) -> PullRequest:
        with self._mapped("open pull request"):
            pull = self._find_open(branch)
            if pull is None:
                pull = self._create(branch=branch, base=base, title=title, body=body)
            self._ensure_labels(pull, labels)
            log.info("pull request open", extra={"pr": pull.number, "branch": branch, "repo": self._repo_name})
            return _to_pr(pull, labels=_merge_labels(pull, labels))

    def update_pr(self, pr: PullRequest, *, title: str, body: str, comment: str) -> PullRequest:
        with self._mapped("update pull request"):
            pull = self._repository().get_pull(pr.number)
            pull.edit(title=title, body=body)
            if comment:
                pull.create_issue_comment(comment)
            log.info("pull request updated", extra={"pr": pr.number, "repo": self._repo_name})
            return _to_pr(pull)

    def comment(self, pr: PullRequest, body: str) -> None:
        with self._mapped("comment on pull request"):
            self._repository().get_pull(pr.number).create_issue_comment(body)

    def request_reviewers(self, pr: PullRequest, *, reviewers: Sequence[str],
                          teams: Sequence[str]) -> list[tuple[str, str]]:
        """Ask the owners for a review (POST .../pulls/N/requested_reviewers), never the PR's author (the bot: GitHub
        refuses that request). GitHub refuses the whole request with 422 when one name is not a collaborator:
        then each name is asked alone, so the others are still requested, and the refused ones are returned."""
        with self._mapped("request reviewers"):
            pull = self._repository().get_pull(pr.number)
        author = (pull.user.login if pull.user is not None else "").lower()
        users = [r for r in dict.fromkeys(reviewers) if r.lower() != author]
        slugs = list(dict.fromkeys(teams))
        if not users and not slugs:
            return []
        try:
            with self._mapped("request reviewers"):
                pull.create_review_request(reviewers=users, team_reviewers=slugs)
            return []
        except PermanentError as err:
            if len(users) + len(slugs) == 1:  # the one name asked is the one refused
                return [(users[0] if users else f"team {slugs[0]}", err.message)]
        return self._request_each(pull, slugs, users)

    def _request_each(self, pull: GhPull, slugs: Sequence[str], users: Sequence[str]) -> list[tuple[str, str]]:
        refused: list[tuple[str, str]] = []
        for name, ask in [*((u, {"reviewers": [u]}) for u in users),
                          *((f"team {t}", {"team_reviewers": [t]}) for t in slugs)]:
            try:
                with self._mapped("request reviewers"):
                    pull.create_review_request(**ask)
            except PermanentError as err:
                log.warning("review request refused", extra={"pr": pull.number, "reviewer": name})
                refused.append((name, err.message))
        return refused

    def close_pr(self, pr: PullRequest, *, comment: str) -> None:
        with self._mapped("close pull request"):
            pull = self._repository().get_pull(pr.number)
            if comment:
                pull.create_issue_comment(comment)
            pull.edit(state="closed")

    def set_body(self, pr: PullRequest, body: str) -> None:
        with self._mapped("edit pull request body"):
            self._repository().get_pull(pr.number).edit(body=body)

    # ---- beyond the protocol ------------------------------------------------------------------------

    def list_prs(self, label: str, state: str = "all", *, branch: str | None = None,
                 updated_since: float | None = None) -> list[PullRequest]:
        """PRs carrying ``label``; state is open, closed (not merged), merged, or all. For ledger rebuilds.

        With ``branch``: only that branch's PRs, in one request (the ledger refreshes one workload and cause).
        With ``updated_since``, or for open PRs: the pulls list, most recently updated first, until a PR older than
        that (at most MAX_LISTED): it carries head ref, labels, body and merge commit, so a page of 30 PRs costs
        one request, where the labelled issues cost one GET per PR (the history stage asks on every alert).
        """
        if state not in PR_STATES:
            raise ValueError(f"state must be one of {PR_STATES}")
        api_state = {"merged": "closed"}.get(state, state)
        if branch is not None:
            with self._mapped("list pull requests"):
                pulls = self._repository().get_pulls(state=api_state, head=f"{self._owner}:{branch}")
                prs = [_to_pr(p) for p in pulls]
            return [p for p in prs if p.branch == branch and label in p.labels and state in ("all", "open", p.state)]
        if updated_since is not None or state == "open":
            return self._recent_pulls(label, state, updated_since)
        with self._mapped("list pull requests"):
            issues = self._repository().get_issues(state=api_state, labels=[label])
            found = []
            for issue in issues:
                if issue.pull_request is None:
                    continue  # a plain issue carrying the label
                pr = _to_pr(issue.as_pull_request())  # the issue lacks head.ref: one GET per PR
                if state in ("open", "all") or pr.state == state:
                    found.append(pr)
            return found

    def _recent_pulls(self, label: str, state: str, updated_since: float | None) -> list[PullRequest]:
        api_state = {"merged": "closed"}.get(state, state)
        found = []
        with self._mapped("list pull requests"):
            pulls = self._repository().get_pulls(state=api_state, sort="updated", direction="desc")
            for pull in itertools.islice(pulls, MAX_LISTED):
                if updated_since is not None and pull.updated_at is not None and \
                        pull.updated_at.timestamp() < updated_since:
                    break  # sorted by update: the rest are older
                pr = _to_pr(pull)
                if label in pr.labels and state in ("all", "open", pr.state):
                    found.append(pr)
        return found

    def get_pr(self, number: int) -> PullRequest | None:
        """GET .../pulls/N: the only answer that names who merged it (the lists leave ``merged_by`` out)."""
        with self._mapped("get pull request"):
            from github import UnknownObjectException

            try:
                pull = self._repository().get_pull(number)
            except UnknownObjectException:
                return None
            merged_by = pull.merged_by.login if pull.merged_at is not None and pull.merged_by is not None else None
            return replace(_to_pr(pull), merged_by=merged_by)

    def pr_files(self, pr: PullRequest) -> list[PrFile]:
        """GET .../pulls/N/files (paged; GitHub lists up to 3000): the first MAX_PR_FILES names and patches."""
        with self._mapped("list pull request files"):
            files = self._repository().get_pull(pr.number).get_files()
            # GitHub leaves ``patch`` out of a diff too large to show, while ``changes`` still counts its lines
            return [PrFile(path=f.filename, patch=f.patch or "", too_large=not f.patch and bool(f.changes))
                    for f in itertools.islice(files, MAX_PR_FILES)]

    # ---- the dashboard issue (app.ports.IssueBoard) ---------------------------------------------------

    def find_issue(self, marker: str) -> Issue | None:
        """The open issue (not a PR) whose body holds ``marker``, lowest number first: GET .../issues, paged, at
        most MAX_LISTED issues read."""
        with self._mapped("list issues"):
            found = [i for i in itertools.islice(self._repository().get_issues(state="open"), MAX_LISTED)
                     if i.pull_request is None and marker in (i.body or "")]
            return _to_issue(min(found, key=lambda i: i.number)) if found else None

    def create_issue(self, *, title: str, body: str) -> Issue:
        with self._mapped("create issue"):
            issue = self._repository().create_issue(title=title, body=body)
            log.info("issue created", extra={"issue": issue.number, "repo": self._repo_name})
            return _to_issue(issue)

    def update_issue(self, issue: Issue, *, title: str, body: str) -> Issue:
        with self._mapped("edit issue"):
            found = self._repository().get_issue(issue.number)
            found.edit(title=title, body=body)
            return _to_issue(found)

    def auth_header(self) -> str:
        """An http.extraHeader for git over https: GitHub accepts basic auth as x-access-token:<token>."""
        pair = base64.b64encode(f"x-access-token:{self.current_token()}".encode()).decode()
        return f"Authorization: Basic {pair}"

    def current_token(self) -> str:
        """The token to send now: an App installation token is renewed by PyGithub shortly before expiry."""
        if self._is_app:
            with self._mapped("get an installation token"):
                return str(self._auth.token)
        return self._token()

    @contextmanager
    def git_data(self, action: str) -> Iterator[Repository]:
        """The PyGithub repository for Git Data API calls (app/forges/github_commits.py), with this forge's token,
        retries, timeouts and error mapping."""
        with self._mapped(action):
            yield self._repository()

    def repo_permissions(self) -> dict[str, bool]:
        """What the token may do on the repository (GitHub's ``permissions``: pull, push, admin...)."""
        with self._mapped("read the repository"):
            permissions = self._repository().raw_data.get("permissions") or {}
            return {str(k): bool(v) for k, v in permissions.items()}

    # ---- PyGithub calls -----------------------------------------------------------------------------

    def _repository(self) -> Repository:
        if self._repo is None:
            self._repo = self._client.get_repo(self._repo_name)
        return self._repo

    def _find_open(self, branch: str) -> GhPull | None:
        pulls = self._repository().get_pulls(state="open", head=f"{self._owner}:{branch}")
        # Exactly this branch: a PR on any other branch is another workload's (see app/render.branch).
        return next((pull for pull in pulls if pull.head.ref == branch), None)

    def _create(self, *, branch: str, base: str, title: str, body: str) -> GhPull:
        from github import GithubException

        try:
            return self._repository().create_pull(base=base, head=branch, title=title, body=body)
        except GithubException as err:
            if not _already_exists(err):
                raise
            # A re-posted create (retry after a lost response) or a racing worker got there first.
            log.info("pull request already exists", extra={"branch": branch, "repo": self._repo_name})
            pull = self._find_open(branch)
            if pull is None:
                raise TemporaryError("GitHub says the pull request exists but it is not listed yet",
                                     code="github_pr_race", delay=5.0) from err
            return pull

    def _ensure_labels(self, pull: GhPull, labels: Sequence[str]) -> None:
        have = {label.name for label in pull.labels}
        missing = [label for label in dict.fromkeys(labels) if label not in have]
        if missing:
            pull.add_to_labels(*missing)

    # ---- error mapping ------------------------------------------------------------------------------

    @contextmanager
    def _mapped(self, action: str) -> Iterator[None]:
        from github import GithubException
        from requests import RequestException

        # PyGithub's retry spends the job's retry budget per failed attempt (_retry): not once more here.
        try:
            with deadlines.calling(FORGE, action):
                yield
        except GithubException as err:
            raise deadlines.failed(self._github_error(action, err), spend_attempt=False) from err
        except RequestException as err:  # connection refused, timeouts, exhausted connection retries
            raise deadlines.failed(self._transport_error(action, err), spend_attempt=False) from err
        deadlines.answered(FORGE)

    def _transport_error(self, action: str, err: Exception) -> TemporaryError:
        return transport.unanswered("GitHub", action, err, read_seconds=self._timeout.last_read(),
                                    code="github_unavailable")

    def _github_error(self, action: str, err: Any) -> PermanentError | TemporaryError:
        status: int = err.status
        headers = {str(k).lower(): str(v) for k, v in (err.headers or {}).items()}
        message = _message(err.data)
        text = f"GitHub {status} while trying to {action} on {self._repo_name}: {message}"
        token = "" if self._is_app else self._token()
        if token:  # GitHub never echoes it, but a proxy's error page might
            text = text.replace(token, "***")
        limited = status == 429 or _rate_limited(status, headers, message)
        kind = dependencies.RATE_LIMITED if limited else dependencies.http_kind(status)
        if limited or status >= 500:
            delay = _delay(headers, getattr(err, "wait", None))
            log.warning("github temporary error", extra={"status": status, "delay": delay, "action": action})
            return TemporaryError(text, code="github_unavailable", delay=delay, dependency=FORGE, kind=kind)
        error: PermanentError
        if status == 401:
            error = PermanentError(f"GitHub rejected the token (401 Bad credentials) for {self._repo_name}",
                                   code="github_auth", dependency=FORGE, kind=kind)
        elif status == 404:
            error = PermanentError(f"GitHub repository {self._repo_name} or object not found (404): check the "
                                   "repository name and that the token can see it", code="github_not_found",
                                   dependency=FORGE, kind=kind)
        elif status == 403:
            error = PermanentError(text + " (the token lacks permission)", code="github_forbidden",
                                   dependency=FORGE, kind=kind)
        else:
            error = PermanentError(text, code="github_rejected", dependency=FORGE, kind=kind)
        return error


# ---- authentication -----------------------------------------------------------------------------------

TokenSource = str | Callable[[], str]  # a token, or what reads it at each request (a mounted Secret's file)


def _provided_token(provider: Callable[[], str]) -> Any:
    """PyGithub's token auth, the token asked of ``provider`` for each request's Authorization header."""
    from github import Auth

    class ProvidedToken(Auth.Auth):
        @property
        def token_type(self) -> str:
            return "token"

        @property
        def token(self) -> str:
            return provider()

        @property
        def _masked_token(self) -> str:
            return "token (removed)"

    return ProvidedToken()


# ---- GitHub App authentication -------------------------------------------------------------------------


@dataclass(frozen=True)
class AppCredentials:
    """A GitHub App: its id, its PEM private key, and the installation on the repo's owner (None: look it up)."""

    app_id: int
    private_key: str = field(repr=False)
    installation_id: int | None = None


def _installation_auth(app: AppCredentials, *, repo: str, api_url: str, timeout: int) -> Any:
    """PyGithub's AppInstallationAuth: it mints an installation token and renews it before it expires."""
    from github import Auth, GithubException, GithubIntegration

    if "BEGIN" not in app.private_key or "PRIVATE KEY" not in app.private_key:
        raise ConfigError("GitHub App private key is not a PEM private key")
    app_auth = Auth.AppAuth(app.app_id, app.private_key)
    installation_id = app.installation_id
    if installation_id is None:
        owner, _, name = repo.partition("/")
        integration = GithubIntegration(auth=app_auth, base_url=api_url.rstrip("/"), timeout=timeout)
        try:
            installation_id = int(integration.get_repo_installation(owner, name).id)
        except GithubException as err:
            raise ConfigError(f"GitHub App {app.app_id} is not installed on {repo} (HTTP {err.status}): set "
                              "AUTOFIX_GITHUB_APP_INSTALLATION_ID or install the App") from err
        finally:
            integration.close()
    log.info("github app authentication", extra={"app_id": app.app_id, "installation_id": installation_id})
    return app_auth.get_installation_auth(installation_id)


# ---- helpers ----------------------------------------------------------------------------------------


def _retry(*, total: int, backoff: float, max_wait: float) -> Any:
    """GithubRetry that never sleeps longer than ``max_wait``: longer waits surface as the last response."""
    from github import GithubRetry
    from urllib3.exceptions import MaxRetryError, ResponseError

    class CappedRetry(GithubRetry):
        def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                      error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> Any:
            # Each failed attempt spends the job's retry budget for the forge; once spent (or the job's time is
            # up) no more attempts: a never-answering server costs a few bounded timeouts, not four full ones.
            kind = dependencies.kind_of(error) if error is not None else _status_kind(response)
            deadlines.spend(FORGE, kind)
            if not deadlines.retry_allowed(FORGE):
                raise MaxRetryError(_pool, url or "", error or ResponseError("the job's retry budget is spent"))
            wait = _header_wait(response.headers) if response is not None else None
            if wait is not None and wait > (self.max_rate_limit_wait or max_wait):
                # With raise_on_status=False urllib3 returns this response; PyGithub raises it with headers.
                raise MaxRetryError(_pool, url or "", ResponseError(f"Retry-After {wait:.0f}s too long"))
            return super().increment(method, url, response, error, _pool, _stacktrace)

    return CappedRetry(total=total, backoff_factor=backoff, backoff_max=max_wait, raise_on_status=False,
                       secondary_rate_wait=DEFAULT_DELAY, max_rate_limit_wait=max_wait)


def _status_kind(response: Any) -> str:
    status = int(getattr(response, "status", 0) or 0)
    return dependencies.http_kind(status) if status else dependencies.UNREACHABLE


class _JobBoundTimeout(Timeout, int):
    """Connect and read timeouts for every request, bounded by the current job's budget at each attempt.

    PyGithub demands an int timeout (and hands it to requests unchanged); requests passes a urllib3 Timeout on as
    it is, and urllib3 clones it for each attempt: the clone is where the job's remaining budget is applied, in
    the thread that makes the request. One instance serves every worker thread.
    """

    def __new__(cls, *, connect: float, read: float) -> _JobBoundTimeout:
        return int.__new__(cls, max(int(read), 1))

    def __init__(self, *, connect: float, read: float) -> None:
        Timeout.__init__(self, connect=connect, read=read)
        self._read_seconds = float(read)
        self._connect_seconds = float(connect)
        self._used = threading.local()

    def clone(self) -> Timeout:
        read = deadlines.timeout(self._read_seconds)
        self._used.read = read
        return Timeout(connect=min(self._connect_seconds, read), read=read)

    def last_read(self) -> float:
        """The read timeout of this thread's latest attempt (for the error message)."""
        return float(getattr(self._used, "read", self._read_seconds))


def _header_wait(headers: Any, now: Callable[[], float] = time.time) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - now(), 0.0)
    except (TypeError, ValueError):
        return None


def _delay(headers: dict[str, str], wait: float | None) -> float:
    """Seconds until GitHub wants us back: Retry-After, else the rate-limit reset, else a default."""
    retry_after = _header_wait({"Retry-After": headers["retry-after"]}) if "retry-after" in headers else None
    if retry_after is not None:
        return max(retry_after, 1.0)
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(float(reset) - time.time() + 1.0, 1.0)
    if wait:
        return max(float(wait), 1.0)
    return DEFAULT_DELAY


def _rate_limited(status: int, headers: dict[str, str], message: str) -> bool:
    if status != 403:
        return False
    lowered = message.lower()
    return ("retry-after" in headers or headers.get("x-ratelimit-remaining") == "0"
            or "rate limit" in lowered or lowered.endswith("please wait a few minutes before you try again."))


def _message(data: Any) -> str:
    if isinstance(data, dict):
        parts = [str(data.get("message", ""))]
        parts += [str(e.get("message", "")) for e in data.get("errors", []) if isinstance(e, dict)]
        return "; ".join(p for p in parts if p)
    return "" if data is None else str(data)[:300]


def _already_exists(err: Any) -> bool:
    return bool(err.status == 422 and "pull request already exists" in _message(err.data).lower())


def _merge_labels(pull: GhPull, labels: Sequence[str]) -> tuple[str, ...]:
    names = [label.name for label in pull.labels]
    return tuple(dict.fromkeys([*names, *labels]))


def _to_pr(pull: GhPull, *, labels: tuple[str, ...] | None = None) -> PullRequest:
    state = "merged" if pull.merged_at is not None else pull.state
    return PullRequest(
        number=pull.number,
        url=pull.html_url,
        branch=pull.head.ref,
        state=state,
        title=pull.title,
        labels=labels if labels is not None else tuple(label.name for label in pull.labels),
        body=pull.body or "",
        created_at=_iso(pull.created_at),
        merged_at=_iso(pull.merged_at),
        closed_at=_iso(pull.closed_at),
        merge_commit=pull.merge_commit_sha if pull.merged_at is not None else None,  # else GitHub's test merge
    )


def _to_issue(issue: GhIssue) -> Issue:
    return Issue(number=issue.number, url=issue.html_url, title=issue.title or "", body=issue.body or "")


def _iso(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None
