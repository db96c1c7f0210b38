"""A loopback fake of the GitHub REST endpoints GitHubForge uses, answering like api.github.com.

Run it as a context manager; point PyGithub's ``base_url`` at ``fake.api_url``. It records every request
(``.requests``, each with its arrival time ``at`` on the monotonic clock), keeps pull requests and comments in
``.pulls`` / ``.comments`` for assertions, checks the token, can serve under a GitHub Enterprise prefix
(``/api/v3``) and can inject faults (``fail_next``).

With ``git_dir`` (a bare repository, the one the workspace clones) it also answers the Git Data API (blobs, trees,
commits, refs) and compare, with git plumbing on that repository, so a commit created through the API really is on
the remote; a commit created by the App's installation token with no author, committer or signature comes back
verified, as GitHub signs it (GitHub docs: "Signature verification for bots").
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.holds import Hold, Holds
from tests.fakes.http_base import Fault, JsonHandler, LoopbackServer, Recorded
from tests.fakes.http_base import fake_sha as _sha

DOCS = "https://docs.github.com/rest"
SECONDARY_RATE_LIMIT = {
    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
}
PRIMARY_RATE_LIMIT = {
    "message": "API rate limit exceeded for installation ID 1.",
    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
}


@dataclass
class FakeApp:
    """A GitHub App installed on the fake's repository: verifies the App's JWT (RS256) with its public key
    and mints installation tokens that expire after ``token_ttl`` seconds (GitHub: one hour)."""

    app_id: int
    public_key_pem: str
    installation_id: int = 4242
    token_ttl: float = 3600.0
    tokens: dict[str, datetime] = field(default_factory=dict)  # minted token -> expires_at

    def valid(self, token: str) -> bool:
        expires = self.tokens.get(token)
        return expires is not None and expires > datetime.now(UTC)


def app_key_pair() -> tuple[str, str]:
    """A new GitHub App key, as PEM: (the private key the bot is configured with, the public key ``FakeApp`` checks)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class _State:
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # plain issues (numbers shared with pulls)
    faults: deque[Fault] = field(default_factory=deque)
    next_id: int = 1000


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Handler(JsonHandler):
    request_id = ("X-GitHub-Request-Id", "FAKE:0001")
    json_type = "application/json; charset=utf-8"


class FakeGitHub(LoopbackServer):
    """GitHub REST fake for one repository ("owner/name")."""

    handler_class = _Handler
    thread_name = "fake-github"

    def __init__(self, repo: str = "owner/name", *, token: str = "test-token", prefix: str = "",
                 app: FakeApp | None = None, git_dir: Path | None = None) -> None:
        self.app = app
        self.git_dir = git_dir  # the bare repository behind the Git Data API (None: those endpoints answer 404)
        self.verifications: dict[str, dict[str, Any]] = {}  # commit sha -> verification, for API-created commits
        self.push_allowed = True  # the token's `permissions.push` on the repository
        # Logins a review may be requested from (None: anyone); GitHub answers 422 for the whole request when
        # one requested user is not a collaborator, or is the PR's author.
        self.collaborators: set[str] | None = None
        self.repo = repo
        self.owner, self.name = repo.split("/")
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.requests: list[Recorded] = []
        self.holds = Holds()
        self._state = _State()
        self._files: dict[int, dict[str, str]] = {}  # PR number -> path -> patch (seeded PRs)
        self._too_large: dict[int, dict[str, int]] = {}  # PR number -> path -> changed lines, listed without patch
        self._lock = threading.Lock()

    # ---- lifecycle ----------------------------------------------------------------------------------

    def hold(self, method: str, path_suffix: str) -> Hold:
        """Block the next ``method`` request whose path ends with ``path_suffix`` (see tests.fakes.holds)."""
        return self.holds.add(method, path_suffix)

    def stop(self) -> None:
        self.holds.stop()
        super().stop()

    @property
    def api_url(self) -> str:
        return f"{self.root_url}{self.prefix}"

    # ---- state for tests ----------------------------------------------------------------------------

    @property
    def pulls(self) -> dict[int, dict[str, Any]]:
        return self._state.pulls

    @property
    def comments(self) -> dict[int, list[dict[str, Any]]]:
        return self._state.comments

    @property
    def issues(self) -> dict[int, dict[str, Any]]:
        """Plain issues (not pull requests), by number."""
        return self._state.issues

    def fail_next(self, n: int, status: int, headers: dict[str, str] | None = None, body: Any = None, *,
                  method: str | None = None, path: str | None = None, processed: bool = False) -> None:
        """The next ``n`` requests answer ``status`` with these headers and JSON body.

        ``method`` and ``path`` (a suffix of the path) narrow which requests the fault hits. With
        ``processed`` the request is carried out first and only its answer is lost (a proxy's 502 after
        GitHub created the PR), which is what makes re-posted writes dangerous.
        """
        default = {"message": "Server Error"} if status >= 500 else {"message": "Error"}
        with self._lock:
            for _ in range(n):
                self._state.faults.append(Fault(status, dict(headers or {}), default if body is None else body,
                                                 method=method, path=path, processed=processed))

    def recover(self) -> None:
        """Drop the injected faults not yet served: GitHub is healthy again."""
        with self._lock:
            self._state.faults.clear()

    def merge(self, number: int, *, sha: str | None = None, at: datetime | None = None, by: str = "octocat") -> None:
        """Merge PR ``number`` (now, or ``at``) by ``by``, as the commit ``sha`` when the test pushed it to the repo."""
        when = _now() if at is None else at.strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            pr = self._state.pulls[number]
            pr.update(state="closed", merged=True, merged_at=when, closed_at=when, updated_at=when,
                      merge_commit_sha=sha or _sha(f"merge-{number}"), merged_by=self._user_json(by, "User"))

    def close(self, number: int, *, at: datetime | None = None) -> None:
        when = _now() if at is None else at.strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            self._state.pulls[number].update(state="closed", closed_at=when, updated_at=when)

    def create_pull(self, *, head: str, base: str = "main", title: str = "t", body: str = "",
                    labels: tuple[str, ...] = (), files: dict[str, str] | None = None,
                    too_large: dict[str, int] | None = None, at: datetime | None = None) -> dict[str, Any]:
        """Seed a PR directly (as if someone opened it before, ``at`` that time), with ``files`` (path ->
        patch) for GET .../pulls/N/files; ``too_large`` (path -> changed lines): files GitHub lists without
        a ``patch``, as it does for a diff too large to show."""
        with self._lock:
            pr = self._new_pull({"head": head, "base": base, "title": title, "body": body})
            pr["labels"] = [self._label(name) for name in labels]
            if at is not None:
                pr["created_at"] = pr["updated_at"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            self._files[int(pr["number"])] = dict(files or {})
            self._too_large[int(pr["number"])] = dict(too_large or {})
            return pr

    def requests_to(self, method: str, suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    # ---- JSON shapes --------------------------------------------------------------------------------

    def _repo_path(self) -> str:
        return f"/repos/{self.owner}/{self.name}"

    def _repo_json(self) -> dict[str, Any]:
        api = self.api_url
        return {
            "id": 42, "node_id": "R_kgDOfake", "name": self.name, "full_name": self.repo,
            "private": True, "owner": self._user_json(self.owner, "Organization"),
            "html_url": f"https://github.example/{self.repo}", "url": f"{api}{self._repo_path()}",
            "default_branch": "main", "visibility": "private", "archived": False,
            "permissions": {"admin": False, "maintain": False, "push": self.push_allowed, "triage": True,
                            "pull": True},
            "pulls_url": f"{api}{self._repo_path()}/pulls{{/number}}",
            "issues_url": f"{api}{self._repo_path()}/issues{{/number}}",
        }

    def _user_json(self, login: str, kind: str = "Bot") -> dict[str, Any]:
        return {"login": login, "id": 7, "node_id": "U_fake", "type": kind, "site_admin": False,
                "url": f"{self.api_url}/users/{login}", "html_url": f"https://github.example/{login}"}

    def _label(self, name: str) -> dict[str, Any]:
        self._state.next_id += 1
        return {"id": self._state.next_id, "node_id": f"LA_{self._state.next_id}", "name": name,
                "url": f"{self.api_url}{self._repo_path()}/labels/{name}", "color": "ededed",
                "default": False, "description": None}

    def _new_pull(self, data: dict[str, Any]) -> dict[str, Any]:
        number = max([*self._state.pulls, *self._state.comments, *self._state.issues, 0]) + 1
        branch = str(data["head"]).split(":", 1)[-1]
        api, path, now = self.api_url, self._repo_path(), _now()
        pr = {
            "url": f"{api}{path}/pulls/{number}", "id": 5000 + number, "node_id": f"PR_{number}",
            "html_url": f"https://github.example/{self.repo}/pull/{number}",
            "diff_url": f"https://github.example/{self.repo}/pull/{number}.diff",
            "issue_url": f"{api}{path}/issues/{number}",
            "comments_url": f"{api}{path}/issues/{number}/comments",
            "number": number, "state": "open", "locked": False, "title": data["title"], "body": data.get("body"),
            "user": self._user_json("gitops-autofix[bot]"), "labels": [], "draft": bool(data.get("draft", False)),
            "created_at": now, "updated_at": now, "closed_at": None, "merged_at": None, "merge_commit_sha": None,
            "head": {"label": f"{self.owner}:{branch}", "ref": branch, "sha": _sha(branch),
                     "user": self._user_json(self.owner, "Organization"), "repo": self._repo_json()},
            "base": {"label": f"{self.owner}:{data['base']}", "ref": data["base"], "sha": _sha(data["base"]),
                     "user": self._user_json(self.owner, "Organization"), "repo": self._repo_json()},
            "merged": False, "mergeable": None, "comments": 0, "commits": 1,
        }
        self._state.pulls[number] = pr
        self._state.comments[number] = []
        return pr

    @staticmethod
    def _listed(pr: dict[str, Any]) -> dict[str, Any]:
        """The list endpoints omit `merged`, `merged_by` and the counters (only the single-PR GET has them)."""
        return {k: v for k, v in pr.items() if k not in ("merged", "merged_by", "mergeable", "comments", "commits")}

    def _issue_json(self, pr: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": pr["issue_url"], "id": pr["id"] + 1, "node_id": f"I_{pr['number']}", "number": pr["number"],
            "html_url": pr["html_url"], "title": pr["title"], "body": pr["body"], "state": pr["state"],
            "state_reason": "completed" if pr["state"] == "closed" else None,
            "labels": pr["labels"], "user": pr["user"], "comments": len(self._state.comments[pr["number"]]),
            "created_at": pr["created_at"], "updated_at": pr["updated_at"], "closed_at": pr["closed_at"],
            "pull_request": {"url": pr["url"], "html_url": pr["html_url"], "diff_url": pr["diff_url"],
                             "patch_url": pr["html_url"] + ".patch", "merged_at": pr["merged_at"]},
        }

    # ---- routing ------------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        split = urlsplit(raw_path)
        path, query = split.path, dict(parse_qsl(split.query))
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return 404, {}, {"message": "Not Found", "documentation_url": DOCS}
            path = path[len(self.prefix):]
        if not self.holds.wait_if_held(method, path):
            return 503, {}, {"message": "Service Unavailable (held request dropped)"}
        with self._lock:
            self.requests.append(Recorded(method, path, query, headers, body))
            fault = next((f for f in self._state.faults if f.matches(method, path)), None)
            if fault is not None:
                self._state.faults.remove(fault)
                if fault.processed and self._authorized(headers):
                    self._route(method, path, query, body)
                return fault.status, fault.headers, fault.body
            if self.app is not None and (path.startswith("/app/") or path == self._repo_path() + "/installation"):
                return self._route_app(method, path, headers)
            if not self._authorized(headers):
                return 401, {}, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
            if self.git_dir is not None and path.startswith((self._repo_path() + "/git/",
                                                             self._repo_path() + "/compare/")):
                return _GitData(self, self.git_dir).route(method, path[len(self._repo_path()) + 1:], body,
                                                          as_app=self._as_app(headers), query=query)
            return self._route(method, path, query, body)

    def _as_app(self, headers: dict[str, str]) -> bool:
        """Authenticated with one of the App's installation tokens (not a personal or static token)."""
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        return self.app is not None and self.app.valid(value.partition(" ")[2])

    def _authorized(self, headers: dict[str, str]) -> bool:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, credential = value.partition(" ")
        if self.app is not None and scheme.lower() in ("token", "bearer") and self.app.valid(credential):
            return True
        return scheme.lower() in ("token", "bearer") and credential == self.token

    # ---- GitHub App endpoints -------------------------------------------------------------------------

    def _app_jwt_ok(self, headers: dict[str, str]) -> bool:
        """The App authenticates with a JWT it signs: RS256, iss = app id, at most 10 minutes long."""
        import jwt  # PyJWT, installed with PyGithub

        assert self.app is not None
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, credential = value.partition(" ")
        if scheme.lower() != "bearer":
            return False
        try:
            claims = jwt.decode(credential, self.app.public_key_pem, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError:
            return False
        return str(claims["iss"]) == str(self.app.app_id) and claims["exp"] - claims["iat"] <= 660

    def _route_app(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        assert self.app is not None
        if not self._app_jwt_ok(headers):
            return 401, {}, {"message": "A JSON web token could not be decoded", "documentation_url": DOCS}
        installation = f"/app/installations/{self.app.installation_id}"
        if method == "GET" and path == self._repo_path() + "/installation":
            return 200, {}, self._installation_json()
        if method == "POST" and path == installation + "/access_tokens":
            token = f"ghs_{hashlib.sha1(str(len(self.app.tokens)).encode()).hexdigest()[:36]}"  # noqa: S324
            expires = datetime.now(UTC) + timedelta(seconds=self.app.token_ttl)
            self.app.tokens[token] = expires
            return 201, {}, {"token": token, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "permissions": {"contents": "write", "pull_requests": "write", "metadata": "read"},
                             "repository_selection": "selected"}
        return _not_found()

    def _installation_json(self) -> dict[str, Any]:
        assert self.app is not None
        iid = self.app.installation_id
        return {"id": iid, "app_id": self.app.app_id, "app_slug": "gitops-autofix", "target_id": 7,
                "target_type": "Organization", "account": self._user_json(self.owner, "Organization"),
                "access_tokens_url": f"{self.api_url}/app/installations/{iid}/access_tokens",
                "repositories_url": f"{self.api_url}/installation/repositories",
                "html_url": f"https://github.example/organizations/{self.owner}/settings/installations/{iid}",
                "permissions": {"contents": "write", "pull_requests": "write", "metadata": "read"},
                "events": [], "repository_selection": "selected", "created_at": _now(), "updated_at": _now()}

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        base = self._repo_path()
        if not path.startswith(base):
            return _not_found()
        rest = path[len(base):].strip("/").split("/") if path != base else []
        match method, rest:
            case "GET", []:
                return 200, {}, self._repo_json()
            case "GET", ["pulls"]:
                return 200, {}, self._list_pulls(query)
            case "POST", ["pulls"]:
                return self._create_pull(body)
            case "GET", ["pulls", number] if self._has(number):
                return 200, {}, self._state.pulls[int(number)]
            case "GET", ["pulls", number, "files"] if self._has(number):
                return 200, {}, self._files_json(int(number))
            case "PATCH", ["pulls", number] if self._has(number):
                return self._edit_pull(int(number), body)
            case "POST", ["pulls", number, "requested_reviewers"] if self._has(number):
                return self._request_reviewers(int(number), body)
            case "GET", ["issues"]:
                return 200, {}, self._list_issues(query)
            case "POST", ["issues"]:
                return self._create_issue(body)
            case "GET", ["issues", number] if number.isdigit() and int(number) in self._state.issues:
                return 200, {}, self._state.issues[int(number)]
            case "PATCH", ["issues", number] if number.isdigit() and int(number) in self._state.issues:
                return self._edit_issue(int(number), body)
            case "GET", ["issues", number, "labels"] if self._has(number):
                return 200, {}, self._state.pulls[int(number)]["labels"]
            case "POST", ["issues", number, "labels"] if self._has(number):
                return self._add_labels(int(number), body)
            case "GET", ["issues", number, "comments"] if self._has(number):
                return 200, {}, self._state.comments[int(number)]
            case "POST", ["issues", number, "comments"] if self._has(number):
                return self._add_comment(int(number), body)
        return _not_found()

    def _has(self, number: str) -> bool:
        return number.isdigit() and int(number) in self._state.pulls

    def _list_pulls(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        found = []
        if query.get("sort") == "updated":  # GitHub: direction defaults to asc unless sort is created
            order = sorted(self._state.pulls.values(), key=lambda p: (str(p["updated_at"]), int(p["number"])),
                           reverse=query.get("direction", "asc") == "desc")
        else:
            order = sorted(self._state.pulls.values(), key=lambda p: -int(p["number"]))
        for pr in order:
            if state != "all" and pr["state"] != state:
                continue
            if "head" in query and query["head"] != pr["head"]["label"]:
                continue
            if "base" in query and query["base"] != pr["base"]["ref"]:
                continue
            found.append(self._listed(pr))
        return found

    def _list_issues(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        wanted = {name for name in query.get("labels", "").split(",") if name}
        since = query.get("since", "")  # ISO 8601 UTC like the stamps: compared as text
        found = []
        items = [*self._state.pulls.values(), *self._state.issues.values()]
        for item in sorted(items, key=lambda p: -int(p["number"])):
            names = {label["name"] for label in item["labels"]}
            if (state == "all" or item["state"] == state) and wanted <= names and str(item["updated_at"]) >= since:
                found.append(item if int(item["number"]) in self._state.issues else self._issue_json(item))
        return found

    def _create_issue(self, body: Any) -> tuple[int, dict[str, str], Any]:
        """POST /repos/{o}/{r}/issues: a plain issue (GitHub: 201 with the issue; numbers shared with pulls)."""
        if not isinstance(body, dict) or not body.get("title"):
            return 422, {}, {"message": "Validation Failed", "documentation_url": DOCS,
                             "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}]}
        if len(str(body.get("body") or "")) > 65536:
            return 422, {}, {"message": "Validation Failed", "documentation_url": DOCS,
                             "errors": [{"resource": "Issue", "code": "custom", "field": "body",
                                         "message": "body is too long (maximum is 65536 characters)"}]}
        number = max([*self._state.pulls, *self._state.comments, *self._state.issues, 0]) + 1
        api, path, now = self.api_url, self._repo_path(), _now()
        issue = {
            "url": f"{api}{path}/issues/{number}", "id": 7000 + number, "node_id": f"I_{number}", "number": number,
            "html_url": f"https://github.example/{self.repo}/issues/{number}",
            "comments_url": f"{api}{path}/issues/{number}/comments", "title": body["title"],
            "body": body.get("body"), "state": "open", "state_reason": None, "locked": False,
            "labels": [self._label(str(name)) for name in body.get("labels") or []],
            "user": self._user_json("gitops-autofix[bot]"), "comments": 0,
            "created_at": now, "updated_at": now, "closed_at": None,
        }
        self._state.issues[number] = issue
        return 201, {}, issue

    def _edit_issue(self, number: int, body: Any) -> tuple[int, dict[str, str], Any]:
        """PATCH /repos/{o}/{r}/issues/N: title, body, state (what the bot and a human editing the issue send)."""
        issue = self._state.issues[number]
        if isinstance(body, dict) and len(str(body.get("body") or "")) > 65536:
            return 422, {}, {"message": "Validation Failed", "documentation_url": DOCS,
                             "errors": [{"resource": "Issue", "code": "custom", "field": "body",
                                         "message": "body is too long (maximum is 65536 characters)"}]}
        for key in ("title", "body", "state"):
            if isinstance(body, dict) and key in body:
                issue[key] = body[key]
        issue["updated_at"] = _now()
        if issue["state"] == "closed" and issue["closed_at"] is None:
            issue["closed_at"] = issue["updated_at"]
        return 200, {}, issue

    def _files_json(self, number: int) -> list[dict[str, Any]]:
        """GitHub's shape: one entry per file, ``patch`` the unified diff hunks without the file header."""
        out = []
        for path, patch in self._files.get(number, {}).items():
            added = sum(1 for line in patch.splitlines() if line.startswith("+"))
            removed = sum(1 for line in patch.splitlines() if line.startswith("-"))
            blob = _sha(f"{number}:{path}")
            out.append({"sha": blob, "filename": path, "status": "modified", "additions": added,
                        "deletions": removed, "changes": added + removed,
                        "blob_url": f"https://github.example/{self.repo}/blob/{blob}/{path}",
                        "raw_url": f"https://github.example/{self.repo}/raw/{blob}/{path}",
                        "contents_url": f"{self.api_url}{self._repo_path()}/contents/{path}?ref={blob}",
                        "patch": patch})
        for path, changed in self._too_large.get(number, {}).items():  # GitHub omits "patch" here
            blob = _sha(f"{number}:{path}")
            out.append({"sha": blob, "filename": path, "status": "modified", "additions": changed,
                        "deletions": 0, "changes": changed,
                        "blob_url": f"https://github.example/{self.repo}/blob/{blob}/{path}",
                        "raw_url": f"https://github.example/{self.repo}/raw/{blob}/{path}",
                        "contents_url": f"{self.api_url}{self._repo_path()}/contents/{path}?ref={blob}"})
        return out

    def _create_pull(self, body: Any) -> tuple[int, dict[str, str], Any]:
        if not isinstance(body, dict) or not all(body.get(k) for k in ("title", "head", "base")):
            return 422, {}, {"message": "Validation Failed", "documentation_url": DOCS,
                             "errors": [{"resource": "PullRequest", "code": "missing_field", "field": "head"}]}
        label = body["head"] if ":" in body["head"] else f"{self.owner}:{body['head']}"
        if any(pr["state"] == "open" and pr["head"]["label"] == label for pr in self._state.pulls.values()):
            return 422, {}, {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "code": "custom",
                            "message": f"A pull request already exists for {label}."}],
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                "status": "422",
            }
        return 201, {}, self._new_pull(body)

    def _edit_pull(self, number: int, body: Any) -> tuple[int, dict[str, str], Any]:
        pr = self._state.pulls[number]
        for key in ("title", "body", "state"):
            if isinstance(body, dict) and key in body:
                pr[key] = body[key]
        pr["updated_at"] = _now()
        if pr["state"] == "closed" and pr["closed_at"] is None:
            pr["closed_at"] = pr["updated_at"]
        return 200, {}, pr

    def _request_reviewers(self, number: int, body: Any) -> tuple[int, dict[str, str], Any]:
        """GitHub answers 201 with the PR, its requested_reviewers and requested_teams filled in."""
        pr = self._state.pulls[number]
        body = body if isinstance(body, dict) else {}
        logins = [str(login) for login in body.get("reviewers", [])]
        if any(login.lower() == str(pr["user"]["login"]).lower() for login in logins):
            return 422, {}, {"message": "Review cannot be requested from pull request author.",
                             "documentation_url": DOCS, "status": "422"}
        if self.collaborators is not None and any(login not in self.collaborators for login in logins):
            return 422, {}, {"message": "Reviews may only be requested from collaborators. One or more of the users "
                                        f"or teams you specified is not a collaborator of the {self.repo} repository.",
                             "documentation_url": DOCS, "status": "422"}
        users = [self._user_json(login, "User") for login in logins]
        teams = [{"id": 900 + i, "node_id": f"T_{i}", "slug": str(slug), "name": str(slug), "privacy": "closed",
                  "permission": "pull", "url": f"{self.api_url}/orgs/{self.owner}/teams/{slug}",
                  "html_url": f"https://github.example/orgs/{self.owner}/teams/{slug}"}
                 for i, slug in enumerate(body.get("team_reviewers", []))]
        pr["requested_reviewers"] = [*pr.get("requested_reviewers", []), *users]
        pr["requested_teams"] = [*pr.get("requested_teams", []), *teams]
        return 201, {}, pr

    def _add_labels(self, number: int, body: Any) -> tuple[int, dict[str, str], Any]:
        names = body.get("labels", []) if isinstance(body, dict) else body
        pr = self._state.pulls[number]
        have = {label["name"] for label in pr["labels"]}
        for name in names:
            if name not in have:
                pr["labels"].append(self._label(name))
                have.add(name)
        return 200, {}, pr["labels"]

    def _add_comment(self, number: int, body: Any) -> tuple[int, dict[str, str], Any]:
        self._state.next_id += 1
        cid, pr = self._state.next_id, self._state.pulls[number]
        comment = {
            "id": cid, "node_id": f"IC_{cid}", "url": f"{self.api_url}{self._repo_path()}/issues/comments/{cid}",
            "html_url": f"{pr['html_url']}#issuecomment-{cid}", "issue_url": pr["issue_url"],
            "body": body.get("body") if isinstance(body, dict) else None,
            "user": self._user_json("gitops-autofix[bot]"), "created_at": _now(), "updated_at": _now(),
        }
        self._state.comments[number].append(comment)
        return 201, {}, comment


BOT_USER_ID = 41898282  # the App's bot account: GitHub writes <id>+<slug>[bot]@users.noreply.github.com
APP_SLUG = "gitops-autofix"
FAKE_SIGNATURE = ("-----BEGIN PGP SIGNATURE-----\n\nwsBcBAABCAAQBQJmZmFrZQkQS+4Y+Dr96yMAAFakeSignatureOfTheFake\n"
                  "-----END PGP SIGNATURE-----\n")  # GitHub's web-flow key signs; the fake only says so
_COMMIT_FORMAT = "%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%T%x00%P%x00%B"


class _GitData:
    """GitHub's Git Data API and compare over a real bare repository, with git plumbing (called under the fake's
    lock): hash-object for blobs, read-tree/update-index/write-tree on a scratch index for trees (base_tree plus
    the entries, nested paths included), commit-tree for commits, update-ref for refs (compare-and-swap)."""

    def __init__(self, fake: FakeGitHub, git_dir: Path) -> None:
        self.fake = fake
        self.git_dir = git_dir
        self.api = f"{fake.api_url}{fake._repo_path()}"

    def route(self, method: str, rest: str, body: Any, *, as_app: bool,
              query: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        parts = [unquote(p) for p in rest.split("/")]
        body = body if isinstance(body, dict) else {}
        match method, parts:
            case "POST", ["git", "blobs"]:
                return self.create_blob(body)
            case "POST", ["git", "trees"]:
                return self.create_tree(body)
            case "GET", ["git", "trees", sha] if self.kind(sha) in ("tree", "commit"):
                # GitHub takes a tree or a commit (its tree); any value of ``recursive`` turns recursion on.
                tree = self.git("rev-parse", f"{sha}^{{tree}}").strip()
                return 200, {}, self.tree_json(tree, recursive="recursive" in (query or {}))
            case "GET", ["git", "trees", _]:
                return _not_found()
            case "POST", ["git", "commits"]:
                return self.create_commit(body, as_app=as_app)
            case "GET", ["git", "commits", sha] if self.kind(sha) == "commit":
                return 200, {}, self.commit_json(sha)
            case "GET", ["git", "ref" | "refs", "heads", *branch] if branch:
                sha = self.ref_sha("/".join(branch))
                return (200, {}, self.ref_json("/".join(branch), sha)) if sha else _not_found()
            case "POST", ["git", "refs"]:
                return self.create_ref(body)
            case "PATCH", ["git", "refs", "heads", *branch] if branch:
                return self.update_ref("/".join(branch), body)
            case "GET", ["compare", spec] if "..." in spec:
                base, head = spec.split("...", 1)
                return self.compare(base, head)
        return _not_found()

    # ---- git ------------------------------------------------------------------------------------------

    def git(self, *args: str, data: bytes | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> str:
        full = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
        out = subprocess.run(["git", *args], cwd=self.git_dir, input=data, env=full, capture_output=True,
                             timeout=30, check=False)
        if check and out.returncode != 0:
            raise RuntimeError(f"git {args[0]}: {out.stderr.decode(errors='replace')}")
        return out.stdout.decode("utf-8", errors="replace") if out.returncode == 0 else ""

    def kind(self, sha: Any) -> str:
        if not isinstance(sha, str) or not sha or not all(c in "0123456789abcdef" for c in sha):
            return ""
        return self.git("cat-file", "-t", sha, check=False).strip()

    def ref_sha(self, branch: str) -> str:
        return self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False).strip()

    # ---- endpoints ------------------------------------------------------------------------------------

    def create_blob(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        content, encoding = body.get("content"), body.get("encoding", "utf-8")
        if not isinstance(content, str) or encoding not in ("utf-8", "base64"):
            return _invalid("Invalid request.\n\n\"content\" wasn't supplied.")
        data = base64.b64decode(content) if encoding == "base64" else content.encode("utf-8")
        sha = self.git("hash-object", "-w", "--stdin", data=data).strip()
        return 201, {}, {"url": f"{self.api}/git/blobs/{sha}", "sha": sha}

    def create_tree(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        base, entries = body.get("base_tree"), body.get("tree")
        if not isinstance(entries, list):
            return _invalid("Invalid request.\n\n\"tree\" wasn't supplied.")
        if base is not None and self.kind(base) != "tree":
            return _invalid("base_tree is not a valid tree oid")
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.git("read-tree", *([base] if base else ["--empty"]), env=env)
            for entry in entries:
                path, mode, sha = entry.get("path"), entry.get("mode"), entry.get("sha")
                if "content" in entry:
                    sha = self.git("hash-object", "-w", "--stdin", data=str(entry["content"]).encode()).strip()
                if sha is None and "content" not in entry:
                    self.git("update-index", "--force-remove", "--", str(path), env=env)
                    continue
                if mode not in ("100644", "100755", "040000", "160000", "120000") or self.kind(sha) != "blob":
                    return _invalid(f"GitRPC::BadObjectState: tree.sha {sha} is not a blob")
                try:
                    self.git("update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}", env=env)
                except RuntimeError:  # a path through a file or a submodule: GitHub refuses the tree too
                    return _invalid(f"GitRPC::BadObjectState: tree.path {path} conflicts with the base tree")
            tree = self.git("write-tree", env=env).strip()
        return 201, {}, self.tree_json(tree)

    def create_commit(self, body: dict[str, Any], *, as_app: bool) -> tuple[int, dict[str, str], Any]:
        message, tree, parents = body.get("message"), body.get("tree"), body.get("parents", [])
        if not isinstance(message, str) or self.kind(tree) != "tree":
            return _invalid("Tree SHA does not exist")
        if not isinstance(parents, list) or any(self.kind(p) != "commit" for p in parents):
            return _invalid("Parent SHA does not exist or is not a commit object")
        custom = any(key in body for key in ("author", "committer", "signature"))
        bot = (f"{APP_SLUG}[bot]", f"{BOT_USER_ID}+{APP_SLUG}[bot]@users.noreply.github.com") if as_app \
            else ("octocat", "583231+octocat@users.noreply.github.com")  # a token's user
        author = body.get("author") or {"name": bot[0], "email": bot[1]}
        committer = body.get("committer") or (author if "author" in body else
                                              {"name": "GitHub", "email": "noreply@github.com"})
        now = f"@{int(time.time())} +0000"
        env = {"GIT_AUTHOR_NAME": author["name"], "GIT_AUTHOR_EMAIL": author["email"],
               "GIT_AUTHOR_DATE": author.get("date") or now, "GIT_COMMITTER_NAME": committer["name"],
               "GIT_COMMITTER_EMAIL": committer["email"], "GIT_COMMITTER_DATE": committer.get("date") or now}
        argv = ["commit-tree", tree, *[a for p in parents for a in ("-p", p)], "-F", "-"]
        sha = self.git(*argv, data=message.encode("utf-8"), env=env).strip()
        # GitHub signs a commit it creates for an App only without custom author, committer and signature.
        signed = as_app and not custom
        self.fake.verifications[sha] = {
            "verified": signed, "reason": "valid" if signed else "unsigned",
            "signature": FAKE_SIGNATURE if signed else None,
            "payload": self.git("cat-file", "commit", sha) if signed else None,
            "verified_at": _now() if signed else None}
        return 201, {}, self.commit_json(sha)

    def create_ref(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        ref, sha = str(body.get("ref", "")), body.get("sha")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            return _invalid("Reference name must start with 'refs/' and have at least two slashes.")
        if self.kind(sha) != "commit":
            return _invalid("Object does not exist")
        if not ref.startswith("refs/heads/") or self.ref_sha(ref.removeprefix("refs/heads/")):
            return _invalid("Reference already exists")
        self.git("update-ref", ref, str(sha), "")  # "" as the old value: create only
        return 201, {}, self.ref_json(ref.removeprefix("refs/heads/"), str(sha))

    def update_ref(self, branch: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        old, sha = self.ref_sha(branch), body.get("sha")
        if not old:
            return _invalid("Reference does not exist")
        if self.kind(sha) != "commit":
            return _invalid("Object does not exist")
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", old, str(sha)], cwd=self.git_dir,
                                  capture_output=True, timeout=30, check=False).returncode == 0
        if not ancestor and not body.get("force"):
            return _invalid("Update is not a fast forward")
        self.git("update-ref", f"refs/heads/{branch}", str(sha), old)
        return 200, {}, self.ref_json(branch, str(sha))

    def compare(self, base: str, head: str) -> tuple[int, dict[str, str], Any]:
        base_sha = self.git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", check=False).strip()
        head_sha = self.git("rev-parse", "--verify", "--quiet", f"{head}^{{commit}}", check=False).strip()
        if not base_sha or not head_sha:
            return _not_found()
        fork = self.git("merge-base", base_sha, head_sha, check=False).strip()
        shas = self.git("rev-list", "--reverse", f"{fork}..{head_sha}").split()
        behind = len(self.git("rev-list", f"{fork}..{base_sha}").split())
        status = "identical" if not shas and not behind else "ahead" if not behind else \
            "behind" if not shas else "diverged"
        files = []
        for line in filter(None, self.git("diff", "--numstat", "--no-renames", fork, head_sha).splitlines()):
            added, removed, name = line.split("\t", 2)
            files.append({"sha": self.git("rev-parse", f"{head_sha}:{name}", check=False).strip() or None,
                          "filename": name, "status": "modified", "additions": int(added),
                          "deletions": int(removed), "changes": int(added) + int(removed)})
        return 200, {}, {
            "url": f"{self.api}/compare/{base}...{head}",
            "html_url": f"https://github.example/{self.fake.repo}/compare/{base}...{head}",
            "status": status, "ahead_by": len(shas), "behind_by": behind, "total_commits": len(shas),
            "base_commit": self.repo_commit_json(base_sha), "merge_base_commit": self.repo_commit_json(fork),
            "commits": [self.repo_commit_json(sha) for sha in shas], "files": files}

    # ---- JSON shapes ----------------------------------------------------------------------------------

    def tree_json(self, tree: str, *, recursive: bool = False) -> dict[str, Any]:
        """GitHub's tree shape: each entry's mode as a string (a directory's "040000", a symlink's "120000", a
        submodule's "160000" of type "commit"), a size for blobs only; recursive: every level, trees included."""
        entries = []
        listing = self.git("ls-tree", "-l", "-z", *(["-r", "-t"] if recursive else []), tree)
        for line in filter(None, listing.split("\x00")):
            meta, _, path = line.partition("\t")
            mode, kind, sha, size = meta.split()
            entries.append({"path": path, "mode": mode, "type": kind, "sha": sha,
                            **({"size": int(size)} if kind == "blob" else {}),
                            "url": f"{self.api}/git/{kind}s/{sha}"})
        return {"sha": tree, "url": f"{self.api}/git/trees/{tree}", "tree": entries, "truncated": False}

    def commit_json(self, sha: str) -> dict[str, Any]:
        """The Git Data shape (POST/GET .../git/commits): verification as GitHub reports it."""
        an, ae, ad, cn, ce, cd, tree, parents, message = self.git("log", "-1", f"--format={_COMMIT_FORMAT}",
                                                                  sha).split("\x00", 8)
        unsigned = {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                    "verified_at": None}
        return {
            "sha": sha, "node_id": f"C_{sha[:12]}", "url": f"{self.api}/git/commits/{sha}",
            "html_url": f"https://github.example/{self.fake.repo}/commit/{sha}",
            "author": {"name": an, "email": ae, "date": _iso(ad)},
            "committer": {"name": cn, "email": ce, "date": _iso(cd)},
            "tree": {"sha": tree, "url": f"{self.api}/git/trees/{tree}"},
            "message": message.rstrip("\n") + "\n" if message.strip() else message,
            "parents": [{"sha": p, "url": f"{self.api}/git/commits/{p}",
                         "html_url": f"https://github.example/{self.fake.repo}/commit/{p}"} for p in parents.split()],
            "verification": self.fake.verifications.get(sha, unsigned),
        }

    def repo_commit_json(self, sha: str) -> dict[str, Any]:
        """The shape the commits and compare endpoints list: the git commit under ``commit``."""
        inner = self.commit_json(sha)
        return {"sha": sha, "node_id": inner["node_id"], "url": f"{self.api}/commits/{sha}",
                "html_url": inner["html_url"], "commit": {**inner, "comment_count": 0},
                "author": None, "committer": None, "parents": inner["parents"]}

    def ref_json(self, branch: str, sha: str) -> dict[str, Any]:
        return {"ref": f"refs/heads/{branch}", "node_id": f"REF_{sha[:12]}", "url": f"{self.api}/git/refs/heads/{branch}",
                "object": {"sha": sha, "type": "commit", "url": f"{self.api}/git/commits/{sha}"}}


def _iso(git_date: str) -> str:
    return datetime.fromisoformat(git_date).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(message: str) -> tuple[int, dict[str, str], Any]:
    return 422, {}, {"message": message, "documentation_url": "https://docs.github.com/rest/git", "status": "422"}


def _not_found() -> tuple[int, dict[str, str], Any]:
    return 404, {}, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
