"""Several GitOps repositories per install: repositories.yaml in the policy directory, and the RepoSet.

The file is a list of repositories, each with its own forge, credentials (the NAMES of an environment variable
or a mounted file, never a value) and base branch::

    - name: platform
      url: https://github.com/acme/platform-gitops.git
      forge: github
      github: {repo: acme/platform-gitops}
      credentials: {token_env: GITHUB_TOKEN_PLATFORM}
    - name: shop
      url: git@gitlab.example.com:shop/deploy.git
      match: ["gitlab.example.com/shop/*"]
      forge: gitlab
      gitlab: {url: https://gitlab.example.com}
      credentials: {token_file: /var/run/secrets/gitlab/token}

An Argo CD Application or Flux GitRepository whose URL matches a repository's ``match`` patterns (fnmatch over
the normalised host/path; default: its own url) is deployed from that repository: the change is made in its
checkout (data_dir/repos/<name>), the PR opened on its forge, the ledger rows written with ``repo=<name>``.
Without the file, the one repository of AUTOFIX_GIT_URL is the RepoSet's only entry, named ``''``: nothing
changes. With the file, that repository (when AUTOFIX_GIT_URL is set) stays an entry, matched last.

The workspace and forge of a repository are built on first use, once (``RepoSet.get``), by the builder the
wiring passes in: this module imports no adapter and no forge (app/wiring.py does).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from app.errors import ConfigError, NoFix
from app.ports import Forge, Ledger, Remediation, Workspace
from app.sources.deployers.repo_urls import PatternIdentity, RepoIdentity, normalize, source_urls
from app.sources.repos import RepoIdentity as Identity

log = logging.getLogger(__name__)
FILE_NAMES = ("repositories.yaml", "repositories.yml")
DEFAULT = ""  # the repository of AUTOFIX_GIT_URL: its ledger rows keep repo '' (rows from before this file)
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_GIT_SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitHubApp(_Strict):
    """A GitHub App: the names of the variables holding its id and installation id, the key's mounted file."""

    id_env: str = Field(pattern=_ENV_NAME)
    installation_id_env: str | None = Field(default=None, pattern=_ENV_NAME)  # unset: looked up from the repo
    private_key_file: Path


class Credentials(_Strict):
    """Where the secret is: exactly one of an environment variable, a mounted file (read at each use, so a
    rotated Secret is picked up) or a GitHub App."""

    token_env: str | None = Field(default=None, pattern=_ENV_NAME)
    token_file: Path | None = None
    app: GitHubApp | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Credentials:
        given = [k for k in ("token_env", "token_file", "app") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of token_env, token_file or app (got {', '.join(given) or 'none'})")
        return self


class GitHubSection(_Strict):
    repo: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")  # owner/name; default: from the url
    api_url: str = "https://api.github.com"


class GitLabSection(_Strict):
    url: str = "https://gitlab.com"
    project: str | None = None  # group/project path; default: from the url


class RepoConfig(_Strict):
    """One entry of repositories.yaml."""

    name: str = Field(pattern=r"^[a-z][a-z0-9._-]{0,62}$")  # a directory name: data_dir/repos/<name>
    url: str = Field(min_length=1)  # the clone URL: https, ssh, git@host:path or a local path
    match: tuple[str, ...] = ()  # fnmatch patterns over normalised source URLs; () = the url itself
    forge: Literal["github", "gitlab", "local"] = "github"
    base: str = Field(default="main", min_length=1)
    github: GitHubSection | None = None
    gitlab: GitLabSection | None = None
    credentials: Credentials | None = None
    commit: Literal["git", "api"] = "git"  # api: commits created through GitHub's API (Verified)
    dashboard: bool = False  # the dashboard issue is kept here (at most one entry; none: the first)

    @model_validator(mode="after")
    def _consistent(self) -> RepoConfig:
        if "://" in self.url and self.url.split("://", 1)[0].lower() not in _GIT_SCHEMES:
            raise ValueError(f"url: scheme {self.url.split('://', 1)[0]!r} is not a git transport; use https://, "
                             "ssh://, git@host:org/repo.git or a local path")
        if self.github is not None and self.forge != "github":
            raise ValueError(f"github: only with forge: github (this entry's forge is {self.forge})")
        if self.gitlab is not None and self.forge != "gitlab":
            raise ValueError(f"gitlab: only with forge: gitlab (this entry's forge is {self.forge})")
        if self.commit == "api" and self.forge != "github":
            raise ValueError("commit: api only with forge: github (the GitHub API creates the commit)")
        if self.forge != "local" and self.credentials is None:
            raise ValueError(f"credentials: required with forge: {self.forge} (token_env, token_file or app)")
        if self.credentials is not None and self.credentials.app is not None and self.forge != "github":
            raise ValueError("credentials.app: a GitHub App, only with forge: github")
        if self.forge == "github" and self.github_repo is None:
            raise ValueError(f"github.repo: required (owner/name): cannot tell it from the url {self.url}")
        return self

    @property
    def patterns(self) -> tuple[str, ...]:
        return self.match or (self.url,)

    @property
    def github_repo(self) -> str | None:
        if self.github is not None and self.github.repo:
            return self.github.repo
        path = normalize(self.url).split("/", 1)[-1]
        return path if re.fullmatch(r"[\w.-]+/[\w.-]+", path) else None

    @property
    def gitlab_project(self) -> str:
        if self.gitlab is not None and self.gitlab.project:
            return self.gitlab.project
        return normalize(self.url).split("/", 1)[-1]

    def token(self) -> str:
        """The token, read now: from the variable, or the file (a rotated Secret is read again at each use)."""
        creds = self.credentials
        if creds is None or creds.app is not None:
            raise ConfigError(f"repositories.yaml: entry {self.name!r}: credentials: no token (a GitHub App or none)")
        if creds.token_env is not None:
            value = os.environ.get(creds.token_env, "").strip()
            if not value:
                raise ConfigError(f"repositories.yaml: entry {self.name!r}: credentials.token_env: variable "
                                  f"{creds.token_env} is not set")
            return value
        assert creds.token_file is not None, "Credentials holds exactly one"
        return secret_file(creds.token_file, what=f"entry {self.name!r}: credentials.token_file")()

    def token_provider(self) -> Callable[[], str]:
        """What the forge and git ask for the token at each request: ``token``, so a rotated mounted Secret
        (its file re-read when its mtime changes) is used without a restart."""
        return self.token

    def check_credentials(self) -> None:
        """At start: every variable named is set, every file named readable (their values are read at use)."""
        creds = self.credentials
        if creds is None:
            return
        if creds.app is not None:
            for field_name in ("id_env", "installation_id_env"):
                var = getattr(creds.app, field_name)
                if var is not None and not os.environ.get(var, "").strip().isdigit():
                    raise ConfigError(f"repositories.yaml: entry {self.name!r}: credentials.app.{field_name}: "
                                      f"variable {var} is not set to a number")
            read_secret(creds.app.private_key_file, what=f"entry {self.name!r}: credentials.app.private_key_file")
            return
        if creds.token_file is not None:  # the file as it is now, not the value cached from an earlier read
            read_secret(creds.token_file, what=f"entry {self.name!r}: credentials.token_file")
            return
        self.token()


def read_secret(path: Path, *, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise ConfigError(f"repositories.yaml: {what}: cannot read {path}: {why}") from err
    if not value:
        raise ConfigError(f"repositories.yaml: {what}: {path} is empty")
    return value


class SecretFile:
    """A mounted secret's file, read again only when it changed (mtime, inode or size: Kubernetes swaps a
    Secret volume's files by a symlink, so a rotation changes all three). A read that fails after a good one
    keeps the last good value (logged): the forge's answer says whether it is still accepted."""

    def __init__(self, path: Path, *, what: str) -> None:
        self.path = path
        self.what = what
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._value = ""

    def __call__(self) -> str:
        with self._lock:
            try:
                st = self.path.stat()
                seen = (st.st_mtime_ns, st.st_ino, st.st_size)
                if seen != self._seen:
                    self._value, self._seen = read_secret(self.path, what=self.what), seen
            except (OSError, ConfigError) as err:
                if not self._value:
                    raise err if isinstance(err, ConfigError) else ConfigError(
                        f"repositories.yaml: {self.what}: cannot read {self.path}: {err.strerror}") from err
                log.warning("secret file unreadable, its last value kept", extra={"path": str(self.path)})
            return self._value


_secret_files: dict[tuple[Path, str], SecretFile] = {}
_secret_files_lock = threading.Lock()


def secret_file(path: Path, *, what: str) -> SecretFile:
    """The one reader of ``path`` in this process (its cache shared by every forge and git call using it)."""
    with _secret_files_lock:
        return _secret_files.setdefault((path, what), SecretFile(path, what=what))


class _File(RootModel[list[RepoConfig]]):
    @model_validator(mode="after")
    def _unique(self) -> _File:
        names = [r.name for r in self.root]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"name {twice[0]!r} is used by more than one entry")
        boards = [r.name for r in self.root if r.dashboard]
        if len(boards) > 1:
            raise ValueError(f"dashboard: true on more than one entry ({', '.join(boards)}): the dashboard issue "
                             "is kept in one repository")
        return self


def load(directory: Path, *, setting: str = "AUTOFIX_POLICY_DIR") -> list[RepoConfig] | None:
    """repositories.yaml of the policy directory, validated; None when there is none. ConfigError: one line
    naming the file, the line, the entry and the field."""
    path = next((directory / n for n in FILE_NAMES if (directory / n).is_file()), None)
    if path is None:
        return None
    prefix = f"{setting}: " if setting else ""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{prefix}{path}: cannot read the repositories file: {err}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{prefix}{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from err
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{prefix}{path}: must be a list of repositories (name, url, forge, credentials...)")
    try:
        return list(_File.model_validate(data).root)
    except ValidationError as err:
        raise ConfigError(prefix + _explain(path, text, data, err)) from err


def _explain(path: Path, text: str, data: list[Any], err: ValidationError) -> str:
    from app.policies import line_of

    first = err.errors()[0]
    loc = tuple(first["loc"])
    line = line_of(yaml.compose(text), loc)
    entry = ""
    if loc and isinstance(loc[0], int):
        item = data[loc[0]] if loc[0] < len(data) else None
        named = item.get("name") if isinstance(item, dict) else None
        entry = f"entry {named!r}" if named else f"entry #{loc[0] + 1}"
        loc = loc[1:]
    field_path = ".".join(str(p) for p in loc if not str(p).startswith("function-")) or "(entry)"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{path}:{line}: {entry}: {field_path}: {message}" if entry else f"{path}:{line}: {message}"


# ---------------------------------------------------------------- the set of repositories


@dataclass(frozen=True)
class Entry:
    """What is known of a repository at start: its name, how to recognise it, its base branch."""

    name: str
    identity: Identity
    base: str
    config: RepoConfig | None = None  # None: the AUTOFIX_GIT_URL repository


@dataclass(frozen=True)
class Repository:
    """A repository ready to use: its checkout and its forge (built once, on first use)."""

    name: str
    workspace: Workspace
    forge: Forge
    identity: Identity
    base: str


def shown(name: str) -> str:
    """A repository's name as logs and reasons show it: the AUTOFIX_GIT_URL one is named ''."""
    return name or "AUTOFIX_GIT_URL"


def entry_of(config: RepoConfig) -> Entry:
    return Entry(name=config.name, identity=PatternIdentity(config.patterns), base=config.base, config=config)


def env_entry(git_url: str, *, github_repo: str, base: str) -> Entry:
    return Entry(name=DEFAULT, identity=RepoIdentity(git_url=git_url, github_repo=github_repo), base=base)


Builder = Callable[[Entry], Repository]


class RepoSet:
    """The configured repositories, in the order they are matched; each built on first use, once."""

    def __init__(self, entries: Sequence[Entry], *, build: Builder | None = None,
                 built: Sequence[Repository] = (), from_file: bool = False) -> None:
        if not entries:
            raise ConfigError("no GitOps repository: set AUTOFIX_GIT_URL or write repositories.yaml")
        self.entries = tuple(entries)
        self.from_file = from_file  # several repositories can be configured: the pipeline picks one per alert
        self._build = build
        self._built: dict[str, Repository] = {r.name: r for r in built}
        self._lock = threading.Lock()

    @classmethod
    def single(cls, repository: Repository) -> RepoSet:
        """The one repository of AUTOFIX_GIT_URL, built already (the pipeline's arguments of old)."""
        entry = Entry(name=repository.name, identity=repository.identity, base=repository.base)
        return cls([entry], built=[repository])

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def default(self) -> Entry:
        """The AUTOFIX_GIT_URL repository when there is one, else the file's first: the dashboard's board."""
        return next((e for e in self.entries if e.name == DEFAULT), self.entries[0])

    @property
    def dashboard(self) -> Entry:
        """Where the dashboard issue is kept: the entry of repositories.yaml with ``dashboard: true``, else the
        default (AUTOFIX_GIT_URL's repository, else the file's first)."""
        return next((e for e in self.entries if e.config is not None and e.config.dashboard), self.default)

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)

    def match(self, url: str) -> Entry | None:
        """The first repository whose patterns (or identity) match ``url``."""
        return next((e for e in self.entries if e.identity.matches(url)), None)

    def get(self, name: str) -> Repository:
        with self._lock:
            found = self._built.get(name)
            if found is None:
                entry = self.entry(name)
                if entry is None or self._build is None:
                    raise ConfigError(f"repository {name!r} is not configured (repositories.yaml)")
                found = self._built[name] = self._build(entry)
            return found

    def forge_of(self, name: str) -> Forge | None:
        """The forge of the repository a ledger row names (None: not configured any more)."""
        return self.get(name).forge if self.entry(name) is not None else None

    def select(self, gitops: Sequence[Mapping[str, Any]], *, workload: str) -> Entry:
        """The repository the workload's GitOps objects read from. NoFix when they read only other
        repositories (naming them) or several configured ones; the default entry when none names a repository
        (with several repositories, the repository stage searches them for a workload no GitOps object
        deploys instead of asking this: app/stages/repository.search)."""
        urls = source_urls(gitops)
        if not urls:
            return self.default
        hits = {e.name: e for _, url in urls if (e := self.match(url)) is not None}
        if len(hits) == 1:
            return next(iter(hits.values()))
        if hits:
            raise NoFix(f"{workload} is deployed from several configured repositories ({', '.join(sorted(hits))}): "
                        "not guessing which one defines it", code="ambiguous_manifest")
        by = urls[0][0]
        listed = ", ".join(sorted({url for _, url in urls}))
        raise NoFix(f"{workload} is deployed by {by} from another repository ({listed}), not a configured GitOps "
                    "repo (repositories.yaml)", code="foreign_repo")


# ---------------------------------------------------------------- the ledger of one repository


class RepoLedger:
    """The ledger rows of one repository (``repo=<name>``): duplicates, cooldowns, escalations and the rebuild
    from its forge read only them; the PR budget (``opened_since``) stays per install."""

    def __init__(self, ledger: Ledger, repo: str) -> None:
        self.install = ledger
        self.repo = repo

    def record(self, entry: Remediation) -> None:
        self.install.record(replace(entry, repo=self.repo))

    def entries(self, *, branch: str | None = None, repo: str | None = None) -> list[Remediation]:
        return self.install.entries(branch=branch, repo=self.repo if repo is None else repo)

    def opened_since(self, since: float) -> int:
        return self.install.opened_since(since)

    def is_empty(self) -> bool:
        return not self.install.entries(repo=self.repo)

    def publishing(self, *, spacing: float | Callable[[], float] = 0.0) -> AbstractContextManager[None]:
        """The install's publishing lock: the budget is the install's."""
        return self.install.publishing(spacing=spacing)


def install_ledger(ledger: Ledger) -> Ledger:
    """The whole install's ledger behind a repository's (the PR budget counts every repository's PRs)."""
    return ledger.install if isinstance(ledger, RepoLedger) else ledger


def repos_of(rows: Sequence[Remediation]) -> Iterator[str]:
    """The repositories rows belong to, first seen first."""
    yield from dict.fromkeys(r.repo for r in rows)
