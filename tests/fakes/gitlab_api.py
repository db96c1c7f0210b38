"""A loopback fake of the GitLab REST API v4 endpoints GitLabForge uses, answering like gitlab.com.

Run it as a context manager; point python-gitlab at ``fake.url`` (the API lives under ``/api/v4``). The project is
addressed by its URL-encoded path (``/projects/acme%2Fgitops``) or its numeric id, as GitLab does; any other project
answers ``404 {"message": "404 Project Not Found"}``. Lists are paged with GitLab's headers (``x-page``,
``x-per-page``, ``x-next-page``, ``x-prev-page``, ``x-total``, ``x-total-pages`` and a ``Link`` header with
``rel="next"``...; default 20 per page, at most 100). A second open MR for the same source branch answers 409
``{"message": ["Another open merge request already exists for this source branch: !N"]}``. ``fail_next`` injects
faults (a 429 with ``Retry-After``, a 502, a lost answer after the write was carried out).

MR diffs follow ``version`` (default "17.5.0"): from 15.7 ``GET .../merge_requests/:iid/diffs`` (paged entries with
``collapsed`` and ``too_large``); before 15.7 that route does not exist (404 ``{"error": "404 Not Found"}``, as Grape
answers an unknown route) and ``GET .../merge_requests/:iid/changes`` is the way: the MR with ``changes`` (entries
without ``collapsed``/``too_large``, which older GitLab did not send), ``changes_count`` (a string) and ``overflow``.
A file seeded as too large or collapsed comes with ``diff: ""``, as GitLab sends it.

Reviewers behave like GitLab Free: only the first reviewer id is kept (``multiple_reviewers`` = Premium; GitLab's
own change "Only allow multiple reviewers in paid tiers", gitlab-org/gitlab!43256 and !44097, issue #246905: "In the
free tier, user can only select one reviewer"), and users who are not project members are dropped without an error. Every request is recorded (``.requests``).
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from tests.fakes.http_base import Fault, JsonHandler, LoopbackServer, Recorded
from tests.fakes.http_base import fake_sha as _sha

API = "/api/v4"
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
PROJECT_NOT_FOUND = {"message": "404 Project Not Found"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _Handler(JsonHandler):
    request_id = ("X-Request-Id", "01FAKEGITLAB")

    def not_json(self, raw: bytes) -> Any:
        return dict(parse_qsl(raw.decode("utf-8", errors="replace")))  # a form-encoded body

    def encode(self, payload: Any) -> tuple[str, bytes]:
        if isinstance(payload, str):  # GitLab's throttle answers plain text
            return "text/plain", payload.encode()
        return super().encode(payload)


class FakeGitLab(LoopbackServer):
    """GitLab REST fake for one project ("group/name" or "group/sub/name")."""

    handler_class = _Handler
    thread_name = "fake-gitlab"

    def __init__(self, project: str = "acme/gitops", *, token: str = "glpat-test", project_id: int = 42,
                 bot: str = "project_42_bot_autofix", access_level: int = 30, version: str = "17.5.0") -> None:
        self.project = project
        self.version = version  # GitLab's: before 15.7, no .../diffs (MR diffs through .../changes)
        self.project_id = project_id
        self.token = token
        self.bot = bot
        self.access_level = access_level  # the token's role on the project: 30 Developer, 40 Maintainer
        self.multiple_reviewers = False  # GitLab Premium: every reviewer kept; Free: the first only
        self.users: dict[str, int] = {bot: 1}  # username -> id (GET /users?username=)
        self.members: set[str] = {bot}  # who can read the project's MRs: reviewers outside it are dropped
        self.mrs: dict[int, dict[str, Any]] = {}  # iid -> MR
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.issues: dict[int, dict[str, Any]] = {}
        self.diffs: dict[int, dict[str, str]] = {}  # iid -> path -> diff hunks
        self.hidden: dict[int, dict[str, str]] = {}  # iid -> path -> "too_large" or "collapsed" (diff left out)
        self.requests: list[Recorded] = []
        self._faults: deque[Fault] = deque()
        self._next_id = 5000
        self._lock = threading.Lock()

    # ---- lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.root_url

    @property
    def web(self) -> str:
        return f"https://gitlab.example/{self.project}"

    # ---- for tests ----------------------------------------------------------------------------------

    def add_user(self, username: str, *, member: bool = True) -> int:
        with self._lock:
            uid = self.users.setdefault(username, 100 + len(self.users))
            if member:
                self.members.add(username)
            return uid

    def fail_next(self, n: int, status: int, headers: dict[str, str] | None = None, body: Any = None, *,
                  method: str | None = None, path: str | None = None, processed: bool = False) -> None:
        """The next ``n`` matching requests answer ``status``; with ``processed`` the request is carried out first
        and only its answer is lost (a proxy's 502 after GitLab created the MR)."""
        default = {"message": "502 Bad Gateway"} if status >= 500 else {"message": f"{status} Error"}
        if status == 429 and body is None:
            default = "Retry later\n"  # GitLab's throttle (Rack::Attack) answers plain text
        with self._lock:
            for _ in range(n):
                self._faults.append(Fault(status, dict(headers or {}), default if body is None else body,
                                           method=method, path=path, processed=processed))

    def requests_to(self, method: str, suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def merge(self, iid: int, *, by: str = "alice", sha: str | None = None, at: datetime | None = None) -> None:
        when = _now() if at is None else at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        with self._lock:
            mr = self.mrs[iid]
            mr.update(state="merged", merged_at=when, updated_at=when, merge_commit_sha=sha or _sha(f"merge-{iid}"),
                      merge_user=self._user(by), merged_by=self._user(by), closed_at=None)

    def close(self, iid: int, *, at: datetime | None = None) -> None:
        when = _now() if at is None else at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        with self._lock:
            self.mrs[iid].update(state="closed", closed_at=when, updated_at=when, closed_by=self._user(self.bot))

    def seed_mr(self, *, source_branch: str, title: str = "t", description: str = "", labels: tuple[str, ...] = (),
                target_branch: str = "main", files: dict[str, str] | None = None, at: datetime | None = None,
                fork: bool = False, too_large: tuple[str, ...] = (),
                collapsed: tuple[str, ...] = ()) -> dict[str, Any]:
        """An MR opened earlier (``at``), or from a fork (``fork``: another source project). ``too_large`` and
        ``collapsed``: files of ``files`` whose diff GitLab leaves out past its diff limits."""
        with self._lock:
            mr = self._new_mr({"source_branch": source_branch, "target_branch": target_branch, "title": title,
                               "description": description, "labels": ",".join(labels)})
            if at is not None:
                mr["created_at"] = mr["updated_at"] = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            if fork:
                mr["source_project_id"] = self.project_id + 1000
            self.diffs[int(mr["iid"])] = dict(files or {})
            self.hidden[int(mr["iid"])] = {**dict.fromkeys(collapsed, "collapsed"), **dict.fromkeys(too_large, "too_large")}
            return mr

    # ---- JSON shapes --------------------------------------------------------------------------------

    def _user(self, username: str) -> dict[str, Any]:
        uid = self.users.get(username, 999)
        return {"id": uid, "username": username, "name": username, "state": "active", "locked": False,
                "avatar_url": None, "web_url": f"https://gitlab.example/{username}"}

    def _project_json(self) -> dict[str, Any]:
        namespace, _, name = self.project.rpartition("/")
        return {
            "id": self.project_id, "name": name, "path": name, "path_with_namespace": self.project,
            "name_with_namespace": self.project.replace("/", " / "), "default_branch": "main",
            "visibility": "private", "web_url": self.web, "http_url_to_repo": f"{self.web}.git",
            "ssh_url_to_repo": f"git@gitlab.example:{self.project}.git",
            "namespace": {"id": 7, "name": namespace, "path": namespace.rsplit("/", 1)[-1], "kind": "group",
                          "full_path": namespace},
            "permissions": {"project_access": {"access_level": self.access_level, "notification_level": 3},
                            "group_access": None},
        }

    def _new_mr(self, data: dict[str, Any]) -> dict[str, Any]:
        iid = max([*self.mrs, 0]) + 1
        self._next_id += 1
        now = _now()
        labels = [name for name in dict.fromkeys(str(data.get("labels") or "").split(",")) if name]
        mr = {
            "id": self._next_id, "iid": iid, "project_id": self.project_id, "title": data["title"],
            "description": data.get("description"), "state": "opened", "created_at": now, "updated_at": now,
            "merged_by": None, "merge_user": None, "merged_at": None, "closed_by": None, "closed_at": None,
            "target_branch": data["target_branch"], "source_branch": data["source_branch"],
            "user_notes_count": 0, "upvotes": 0, "downvotes": 0, "author": self._user(self.bot), "assignees": [],
            "assignee": None, "reviewers": [], "source_project_id": self.project_id,
            "target_project_id": self.project_id, "labels": labels, "draft": False, "work_in_progress": False,
            "milestone": None, "merge_when_pipeline_succeeds": False, "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable", "sha": _sha(data["source_branch"]), "merge_commit_sha": None,
            "squash_commit_sha": None, "discussion_locked": None, "should_remove_source_branch": None,
            "force_remove_source_branch": bool(data.get("remove_source_branch", False)),
            "reference": f"!{iid}", "references": {"short": f"!{iid}", "relative": f"!{iid}",
                                                  "full": f"{self.project}!{iid}"},
            "web_url": f"{self.web}/-/merge_requests/{iid}", "squash": False, "has_conflicts": False,
            "blocking_discussions_resolved": True,
        }
        self.mrs[iid] = mr
        self.notes[iid] = []
        return mr

    # ---- routing ------------------------------------------------------------------------------------

    def handle(self, method: str, raw: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        split = urlsplit(raw)
        query = dict(parse_qsl(split.query))
        if not split.path.startswith(API + "/"):
            return 404, {}, {"error": "404 Not Found"}
        path = split.path[len(API):]
        with self._lock:
            self.requests.append(Recorded(method, path, query, headers, body))
            fault = next((f for f in self._faults if f.matches(method, path)), None)
            if fault is not None:
                self._faults.remove(fault)
                if fault.processed and self._authorized(headers):
                    self._route(method, path, query, body)
                return fault.status, fault.headers, fault.body
            if not self._authorized(headers):
                return 401, {}, {"message": "401 Unauthorized"}
            return self._route(method, path, query, body)

    def _authorized(self, headers: dict[str, str]) -> bool:
        lowered = {k.lower(): v for k, v in headers.items()}
        if lowered.get("private-token") == self.token:
            return True
        scheme, _, credential = lowered.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and credential == self.token

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        parts = path.strip("/").split("/")  # still encoded: acme%2Fgitops is one part
        if parts[:1] == ["users"] and method == "GET":
            found = [self._user(name) for name in self.users if name == query.get("username")]
            return self._page(path, query, found)
        if parts[:1] != ["projects"] or len(parts) < 2:
            return 404, {}, {"error": "404 Not Found"}
        if unquote(parts[1]) not in (self.project, str(self.project_id)):
            return 404, {}, PROJECT_NOT_FOUND
        rest = parts[2:]
        match method, rest:
            case "GET", []:
                return 200, {}, self._project_json()
            case "GET", ["merge_requests"]:
                return self._page(path, query, self._list_mrs(query))
            case "POST", ["merge_requests"]:
                return self._create_mr(body)
            case "GET", ["merge_requests", iid] if self._has(iid):
                return 200, {}, self.mrs[int(iid)]
            case "PUT", ["merge_requests", iid] if self._has(iid):
                return self._update_mr(int(iid), body)
            case "GET", ["merge_requests", iid, "notes"] if self._has(iid):
                return self._page(path, query, self.notes[int(iid)])
            case "POST", ["merge_requests", iid, "notes"] if self._has(iid):
                return self._add_note(int(iid), body)
            case "GET", ["merge_requests", iid, "diffs"] if self._has(iid) and self._since(15, 7):
                return self._page(path, query, self._diffs_json(int(iid)))
            case "GET", ["merge_requests", _, "diffs"] if not self._since(15, 7):
                return 404, {}, {"error": "404 Not Found"}  # no such route yet
            case "GET", ["merge_requests", iid, "changes"] if self._has(iid):
                changes = self._diffs_json(int(iid))
                return 200, {}, {**self.mrs[int(iid)], "changes": changes, "changes_count": str(len(changes)),
                                 "overflow": False}
            case "GET", ["merge_requests", _]:
                return 404, {}, {"message": "404 Not found"}
            case "GET", ["issues"]:
                state = query.get("state", "all")
                found = [i for i in sorted(self.issues.values(), key=lambda i: -int(i["iid"]))
                         if state == "all" or i["state"] == state]
                return self._page(path, query, found)
            case "POST", ["issues"]:
                return self._create_issue(body)
            case "PUT", ["issues", iid] if iid.isdigit() and int(iid) in self.issues:
                return self._update_issue(int(iid), body)
        return 404, {}, {"error": "404 Not Found"}

    def _has(self, iid: str) -> bool:
        return iid.isdigit() and int(iid) in self.mrs

    def _page(self, path: str, query: dict[str, str], items: list[Any]) -> tuple[int, dict[str, str], Any]:
        """GitLab's offset pagination: the page's items and its headers (x-next-page empty on the last page)."""
        per_page = min(max(int(query.get("per_page") or DEFAULT_PER_PAGE), 1), MAX_PER_PAGE)
        page = max(int(query.get("page") or 1), 1)
        total = len(items)
        pages = max((total + per_page - 1) // per_page, 1)

        def link(number: int) -> str:
            params = urlencode({**query, "page": number, "per_page": per_page})
            return f"{self.url}{API}{path}?{params}"

        rels = [(page + 1, "next")] if page < pages else []
        rels += [(page - 1, "prev")] if page > 1 else []
        rels += [(1, "first"), (pages, "last")]
        headers = {"x-page": str(page), "x-per-page": str(per_page), "x-total": str(total),
                   "x-total-pages": str(pages), "x-next-page": str(page + 1) if page < pages else "",
                   "x-prev-page": str(page - 1) if page > 1 else "",
                   "Link": ", ".join(f'<{link(n)}>; rel="{rel}"' for n, rel in rels)}
        return 200, headers, items[(page - 1) * per_page: page * per_page]

    def _list_mrs(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "all")
        wanted = {name for name in query.get("labels", "").split(",") if name}
        after = query.get("updated_after", "")
        key = "updated_at" if query.get("order_by") == "updated_at" else "created_at"
        order = sorted(self.mrs.values(), key=lambda m: (str(m[key]), int(m["iid"])),
                       reverse=query.get("sort", "desc") == "desc")
        found = []
        for mr in order:
            if state != "all" and mr["state"] != state:
                continue
            if "source_branch" in query and mr["source_branch"] != query["source_branch"]:
                continue
            if not wanted <= set(mr["labels"]):
                continue
            if after and _stamp(mr["updated_at"]) < _stamp(after):
                continue
            found.append(mr)
        return found

    def _create_mr(self, body: Any) -> tuple[int, dict[str, str], Any]:
        body = body if isinstance(body, dict) else {}
        for name in ("source_branch", "target_branch", "title"):
            if not body.get(name):
                return 400, {}, {"error": f"{name} is missing"}
        for mr in self.mrs.values():
            if mr["state"] == "opened" and mr["source_branch"] == body["source_branch"] and \
                    mr["target_branch"] == body["target_branch"] and mr["source_project_id"] == self.project_id:
                return 409, {}, {"message": ["Another open merge request already exists for this source branch: "
                                             f"!{mr['iid']}"]}
        mr = self._new_mr(body)
        self._set_reviewers(mr, body.get("reviewer_ids"))
        return 201, {}, mr

    def _update_mr(self, iid: int, body: Any) -> tuple[int, dict[str, str], Any]:
        mr, body = self.mrs[iid], body if isinstance(body, dict) else {}
        for key in ("title", "description", "target_branch"):
            if key in body:
                mr[key] = body[key]
        if "labels" in body:
            mr["labels"] = _names(body["labels"])
        mr["labels"] = list(dict.fromkeys([*mr["labels"], *_names(body.get("add_labels"))]))
        mr["labels"] = [name for name in mr["labels"] if name not in _names(body.get("remove_labels"))]
        if "reviewer_ids" in body:
            self._set_reviewers(mr, body["reviewer_ids"])
        event = body.get("state_event")
        if event == "close" and mr["state"] == "opened":
            mr.update(state="closed", closed_at=_now(), closed_by=self._user(self.bot))
        elif event == "reopen" and mr["state"] == "closed":
            mr.update(state="opened", closed_at=None, closed_by=None)
        mr["updated_at"] = _now()
        return 200, {}, mr

    def _set_reviewers(self, mr: dict[str, Any], ids: Any) -> None:
        """GitLab Free keeps the first id only; ids of users who cannot read the MR are dropped, no error."""
        wanted = [int(i) for i in (ids.split(",") if isinstance(ids, str) else ids or []) if str(i).strip()]
        if not self.multiple_reviewers:
            wanted = wanted[:1]
        names = {uid: name for name, uid in self.users.items()}
        kept = [names[uid] for uid in wanted if uid in names and names[uid] in self.members]
        if kept or not wanted:
            mr["reviewers"] = [self._user(name) for name in kept]

    def _add_note(self, iid: int, body: Any) -> tuple[int, dict[str, str], Any]:
        if not isinstance(body, dict) or not body.get("body"):
            return 400, {}, {"error": "body is missing"}
        self._next_id += 1
        note = {"id": self._next_id, "type": None, "body": body["body"], "attachment": None,
                "author": self._user(self.bot), "created_at": _now(), "updated_at": _now(), "system": False,
                "noteable_id": self.mrs[iid]["id"], "noteable_type": "MergeRequest", "noteable_iid": iid,
                "resolvable": False, "confidential": False, "internal": False}
        self.notes[iid].append(note)
        self.mrs[iid]["user_notes_count"] = len(self.notes[iid])
        self.mrs[iid]["updated_at"] = _now()
        return 201, {}, note

    def _since(self, major: int, minor: int) -> bool:
        return tuple(int(n) for n in self.version.split(".")[:2]) >= (major, minor)

    def _diffs_json(self, iid: int) -> list[dict[str, Any]]:
        hidden = self.hidden.get(iid, {})
        entries = []
        for path, diff in self.diffs.get(iid, {}).items():
            entry = {"old_path": path, "new_path": path, "a_mode": "100644", "b_mode": "100644",
                     "diff": "" if path in hidden else diff, "new_file": False, "renamed_file": False,
                     "deleted_file": False}
            if self._since(15, 7):
                entry.update(collapsed=hidden.get(path) == "collapsed", too_large=hidden.get(path) == "too_large",
                             generated_file=False)
            entries.append(entry)
        return entries

    def _create_issue(self, body: Any) -> tuple[int, dict[str, str], Any]:
        if not isinstance(body, dict) or not body.get("title"):
            return 400, {}, {"error": "title is missing"}
        iid = max([*self.issues, 0]) + 1
        self._next_id += 1
        issue = {"id": self._next_id, "iid": iid, "project_id": self.project_id, "title": body["title"],
                 "description": body.get("description"), "state": "opened", "created_at": _now(),
                 "updated_at": _now(), "closed_at": None, "labels": [], "author": self._user(self.bot),
                 "web_url": f"{self.web}/-/issues/{iid}", "type": "ISSUE", "issue_type": "issue"}
        self.issues[iid] = issue
        return 201, {}, issue

    def _update_issue(self, iid: int, body: Any) -> tuple[int, dict[str, str], Any]:
        issue = self.issues[iid]
        for key in ("title", "description"):
            if isinstance(body, dict) and key in body:
                issue[key] = body[key]
        if isinstance(body, dict) and body.get("state_event") == "close":
            issue.update(state="closed", closed_at=_now())
        issue["updated_at"] = _now()
        return 200, {}, issue


def project_path(project: str) -> str:
    """The API path of a project as clients send it: ``/projects/acme%2Fgitops``."""
    return f"/projects/{quote(project, safe='')}"


def _names(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(name).strip() for name in items if str(name).strip()]


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
