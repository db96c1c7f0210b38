"""Settings from the environment (pydantic-settings), grouped by edge. No global instance: build one in main/cli.

A wrong value fails at start with a message naming the variable (see ``load``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.deadlines import DEFAULT_BUDGET_SECONDS
from app.errors import ConfigError

DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
SHIPPED_POLICY = DEFAULT_POLICY_DIR / "default.yaml"  # the defaults a team's policy files are layered over
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


_TRACKING_SCHEMES = frozenset({"http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks"})
_GIT_SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})
_SCP_LIKE = re.compile(r"[\w.-]+@[\w.-]+:[^/\s][^\s]*")


def _yaml_document(text: str) -> object:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    # git
    git_url: str = Field(default="", validation_alias="AUTOFIX_GIT_URL")
    git_base: str = Field(default="main", validation_alias="AUTOFIX_GIT_BASE")
    git_author: str = Field(default="gitops-autofix[bot] <gitops-autofix@users.noreply.github.com>",
                            validation_alias="AUTOFIX_GIT_AUTHOR")
    # forge
    forge: Literal["github", "gitlab", "local"] = Field(default="github", validation_alias="AUTOFIX_FORGE")
    github_repo: str = Field(default="", validation_alias="AUTOFIX_GITHUB_REPO")
    github_token: SecretStr | None = Field(default=None, validation_alias="GITHUB_TOKEN")
    github_api_url: str = Field(default="https://api.github.com", validation_alias="AUTOFIX_GITHUB_API_URL")
    # GitHub asks integrations to space content-creating requests; PyGithub's default is 1 s.
    github_write_spacing: float = Field(default=1.0, ge=0, le=60, validation_alias="AUTOFIX_GITHUB_WRITE_SPACING")
    # GitHub App (instead of GITHUB_TOKEN): installation tokens are minted and renewed by the bot
    github_app_id: int | None = Field(default=None, gt=0, validation_alias="AUTOFIX_GITHUB_APP_ID")
    github_app_installation_id: int | None = Field(default=None, gt=0,
                                                   validation_alias="AUTOFIX_GITHUB_APP_INSTALLATION_ID")
    github_app_private_key: SecretStr | None = Field(default=None, validation_alias="AUTOFIX_GITHUB_APP_PRIVATE_KEY")
    github_app_private_key_file: Path | None = Field(default=None,
                                                     validation_alias="AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE")
    # GitLab (AUTOFIX_FORGE=gitlab): gitlab.com or a self-managed instance; a project or group access token with the
    # api scope and the Developer role; the project's path (group/subgroup/name), else the one in AUTOFIX_GIT_URL
    gitlab_url: str = Field(default="https://gitlab.com", validation_alias="AUTOFIX_GITLAB_URL")
    gitlab_token: SecretStr | None = Field(default=None, validation_alias="GITLAB_TOKEN")
    gitlab_project: str = Field(default="", validation_alias="AUTOFIX_GITLAB_PROJECT")
    gitlab_write_spacing: float = Field(default=0.0, ge=0, le=60, validation_alias="AUTOFIX_GITLAB_WRITE_SPACING")
    # How the fix's commit reaches the repository. git: `git push` (any git server; signed only if you sign it).
    # api (github forge only): GitHub creates the commit through its Git Data API (blobs, tree, commit, ref) and
    # signs it. GitHub marks it verified, so it passes "require signed commits", only when the request is
    # authenticated as the GitHub App (AUTOFIX_GITHUB_APP_ID: an installation token) and carries no custom author,
    # committer or signature (docs.github.com, About commit signature verification, "Signature verification for
    # bots"): the author is then the App's bot account, the committer GitHub, and AUTOFIX_GIT_AUTHOR is not used.
    commit_via: Literal["git", "api"] = Field(default="git", validation_alias="AUTOFIX_COMMIT_VIA")
    # cluster
    kubeconfig: str | None = Field(default=None, validation_alias="KUBECONFIG")
    # The bot's own namespace, from the downward API (deploy/*: fieldRef metadata.namespace): never touched
    # (policy namespaces.deny_own).
    pod_namespace: str | None = Field(default=None, validation_alias="POD_NAMESPACE")
    # tracking
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")
    mlflow_ui_url: str | None = Field(default=None, validation_alias="AUTOFIX_MLFLOW_UI_URL")
    # metrics: a Prometheus-compatible HTTP API (Prometheus, Thanos Query, Mimir, VictoriaMetrics), read through
    # GET /api/v1/query and /api/v1/query_range only; unset: fixes are sized without metrics, and the PR says so
    prometheus_url: str | None = Field(default=None, validation_alias="AUTOFIX_PROMETHEUS_URL")
    prometheus_token: SecretStr | None = Field(default=None, validation_alias="AUTOFIX_PROMETHEUS_TOKEN")
    prometheus_ca_file: Path | None = Field(default=None, validation_alias="AUTOFIX_PROMETHEUS_CA_FILE")
    # Extra request headers, "Name=value,Name2=value2" (a Mimir or Cortex tenant: X-Scope-OrgID=team-a)
    prometheus_headers: SecretStr | None = Field(default=None, validation_alias="AUTOFIX_PROMETHEUS_HEADERS")
    # llm
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    llm_model: str = Field(default="gpt-4o-mini", validation_alias="AUTOFIX_LLM_MODEL")
    # service and store
    data_dir: Path = Field(default=Path(".autofix"), validation_alias="AUTOFIX_DATA_DIR")
    # The job store, ledger and outbox: empty = SQLite in the data dir (one replica); postgresql://user:pw@host/db
    # = PostgreSQL, shared by several replicas (its password is never shown: store_display)
    database_url: SecretStr | None = Field(default=None, validation_alias="AUTOFIX_DATABASE_URL")
    webhook_token: SecretStr | None = Field(default=None, validation_alias="AUTOFIX_WEBHOOK_TOKEN")
    policy_dir: Path = Field(default=DEFAULT_POLICY_DIR, validation_alias="AUTOFIX_POLICY_DIR")
    # The shipped defaults (policies/default.yaml) under the directory's files, unless the directory has its own
    # default.yaml; unset: the source tree's, when there is one (the image sets its copy); "": none (model defaults).
    policy_defaults: str | None = Field(default=None, validation_alias="AUTOFIX_POLICY_DEFAULTS")
    workers: int = Field(default=2, ge=1, le=64, validation_alias="AUTOFIX_WORKERS")
    lease_seconds: float = Field(default=300.0, gt=0, validation_alias="AUTOFIX_LEASE_SECONDS")
    # wall-clock limit of one job (app/deadlines.py): past it the job fails naming its stage, the worker moves on
    job_budget_seconds: float = Field(default=DEFAULT_BUDGET_SECONDS, gt=0, le=86400,
                                      validation_alias="AUTOFIX_JOB_BUDGET_SECONDS")
    # A finished job is kept this long (for /jobs, `autofix explain` and dedupe of late repeats), then deleted.
    job_retention_days: float = Field(default=14.0, gt=0, validation_alias="AUTOFIX_JOB_RETENTION_DAYS")
    # Read deadlines per HTTP request: headers within this of the first byte, the body within that of the headers.
    http_header_seconds: float = Field(default=10.0, gt=0, le=300, validation_alias="AUTOFIX_HTTP_HEADER_SECONDS")
    http_body_seconds: float = Field(default=30.0, gt=0, le=600, validation_alias="AUTOFIX_HTTP_BODY_SECONDS")
    # `autofix handle` waits at most this long for its run records to reach MLflow (app/exporter.py); what is
    # left stays in the job store's outbox for the next `serve` or `handle`.
    export_wait_seconds: float = Field(default=30.0, ge=0, le=3600, validation_alias="AUTOFIX_EXPORT_WAIT_SECONDS")

    @field_validator("github_repo")
    @classmethod
    def _repo_shape(cls, value: str) -> str:
        if value and (value.count("/") != 1 or not all(value.split("/"))):
            raise ValueError("must look like owner/name")
        return value

    @field_validator("gitlab_project")
    @classmethod
    def _project_shape(cls, value: str) -> str:
        value = value.strip().strip("/")
        if value and (value.count("/") < 1 or not all(value.split("/"))):
            raise ValueError("must be the project's path, group/name or group/subgroup/name")
        return value

    @field_validator("github_token", "gitlab_token", "github_app_private_key", "prometheus_token",
                     "prometheus_headers")
    @classmethod
    def _empty_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """GITHUB_TOKEN= (an empty Secret key, a blank line in an env file) is unset, so start says what is needed."""
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("policy_defaults")
    @classmethod
    def _defaults_file(cls, value: str | None) -> str | None:
        if value is not None and value.strip() and not Path(value).is_file():
            raise ValueError(f"{value} is not a file: name the shipped policies/default.yaml, or set it empty for none")
        return value

    def policy_base(self) -> Path | None:
        """The file the policy directory's files are layered over (app.policies.load ``defaults``)."""
        return policy_base(self.policy_defaults)

    @field_validator("pod_namespace")
    @classmethod
    def _namespace_shape(cls, value: str | None) -> str | None:
        if not value:
            return None  # unset or empty: not running in a pod
        if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
            raise ValueError("must be a Kubernetes namespace name (RFC 1123 label)")
        return value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _tracking_uri_shape(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme and scheme.split("+", 1)[0] not in _TRACKING_SCHEMES:
            raise ValueError(f"scheme {scheme!r} is not one MLflow stores runs in; use http(s)://HOST:PORT, "
                             "sqlite:///PATH, postgresql://..., mysql://..., file:///PATH or a directory")
        return value

    @field_validator("git_url")
    @classmethod
    def _git_url_shape(cls, value: str) -> str:
        if not value or _SCP_LIKE.fullmatch(value):
            return value  # unset (checked where it is needed), or git@host:org/repo.git
        if "://" in value:
            scheme = value.split("://", 1)[0].lower()
            if scheme not in _GIT_SCHEMES:
                raise ValueError(f"scheme {scheme!r} is not a git transport; use https://, ssh://, "
                                 "git@host:org/repo.git or a local path")
        return value  # a local path (a bare repository; `autofix doctor` checks it can be cloned)

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig_readable(cls, value: str | None) -> str | None:
        """Every file of the KUBECONFIG list must exist and be a YAML mapping (as kubectl reads it)."""
        if not value:
            return None
        for name in value.split(":"):
            if not name:
                continue
            try:
                text = Path(name).read_text(encoding="utf-8")
            except OSError as err:
                raise ValueError(f"cannot read {name}: {err.strerror}") from None
            except UnicodeDecodeError:
                raise ValueError(f"{name} is not a kubeconfig (not text)") from None
            if not isinstance(_yaml_document(text), dict):
                raise ValueError(f"{name} is not a kubeconfig (expected YAML with clusters, users and contexts)")
        return value

    @field_validator("github_api_url", "gitlab_url", "openai_base_url", "mlflow_ui_url", "prometheus_url")
    @classmethod
    def _url_shape(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_base(cls, value: str | None) -> str | None:
        """The API's base URL: the bot appends /api/v1/query itself; credentials go in the token, not the URL."""
        if not value:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if not parts.hostname:
            raise ValueError("must name a host, e.g. http://kube-prometheus-stack-prometheus.monitoring:9090")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: set AUTOFIX_PROMETHEUS_TOKEN (or AUTOFIX_PROMETHEUS_HEADERS)")
        if parts.query or parts.fragment or parts.path.rstrip("/").endswith(("/api/v1", "/api/v1/query")):
            raise ValueError("must be the API's base URL (without /api/v1/... or a query), "
                             "e.g. http://thanos-query:9090 or http://mimir-nginx/prometheus")
        return value

    @field_validator("prometheus_ca_file", mode="before")
    @classmethod
    def _ca_file_readable(cls, value: object) -> Path | None:
        if value is None or not str(value).strip():
            return None  # unset or empty: the system's trust store
        value = Path(str(value))
        try:
            text = value.read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"cannot read {value}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{value} is not a PEM certificate (not text)") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ValueError(f"{value} is not a PEM certificate (no BEGIN CERTIFICATE)")
        return value

    @field_validator("prometheus_headers")
    @classmethod
    def _headers_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _parse_headers(value.get_secret_value())  # raises ValueError naming the entry
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        from urllib.parse import urlsplit

        from app.adapters.sql import POSTGRES_SCHEMES

        url = value.get_secret_value().strip() if value is not None else ""
        if not url:
            return None  # empty: SQLite under AUTOFIX_DATA_DIR
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("must be a URL like postgresql://user:password@host:5432/database") from None
        host = parts.hostname or "host=" in parts.query  # host=/run/postgresql: a unix socket
        if parts.scheme not in POSTGRES_SCHEMES or not host or not parts.path.strip("/"):
            raise ValueError("must be a URL like postgresql://user:password@host:5432/database (empty: SQLite "
                             "in AUTOFIX_DATA_DIR)")
        return SecretStr(url)

    @property
    def store_location(self) -> Path | str:
        """What JobStore opens: the PostgreSQL URL, else the SQLite file in the data dir."""
        return self.database_url.get_secret_value() if self.database_url is not None else self.store_path

    @property
    def store_display(self) -> str:
        """The store as shown and logged: the URL without its password, or the file."""
        from app.adapters.sql import redact_url

        return redact_url(self.database_url.get_secret_value()) if self.database_url else str(self.store_path)

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def github_app_enabled(self) -> bool:
        return self.github_app_id is not None

    def github_app_key(self) -> str:
        """The App's PEM private key, from the env variable or the file (a mounted Secret).

        ConfigError names the variable the key came from: missing, unreadable, or not a PEM private key.
        """
        if self.github_app_private_key is not None and self.github_app_private_key.get_secret_value().strip():
            return _pem("AUTOFIX_GITHUB_APP_PRIVATE_KEY",
                        self.github_app_private_key.get_secret_value().replace("\\n", "\n"))
        path = self.github_app_private_key_file
        if path is None:
            raise ConfigError("AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE or AUTOFIX_GITHUB_APP_PRIVATE_KEY: required "
                              "with AUTOFIX_GITHUB_APP_ID")
        variable = "AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{variable}: cannot read {path}: {err.strerror}") from err
        except UnicodeDecodeError as err:
            raise ConfigError(f"{variable}: {path} is not a PEM private key (not text){_PEM_HINT}") from err
        return _pem(f"{variable}: {path}", text)

    def prometheus_header_map(self) -> dict[str, str]:
        """AUTOFIX_PROMETHEUS_HEADERS as a mapping (validated at start)."""
        return _parse_headers(self.prometheus_headers.get_secret_value()) if self.prometheus_headers else {}

    @property
    def llm_enabled(self) -> bool:
        return self.openai_api_key is not None and bool(self.openai_api_key.get_secret_value())


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)


def _parse_headers(text: str) -> dict[str, str]:
    """ "Name=value,Name2=value2" (as OTEL_EXPORTER_OTLP_HEADERS) -> {"Name": "value", ...}."""
    headers: dict[str, str] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not _HEADER_NAME.fullmatch(name) or not value:
            raise ValueError(f"entry {len(headers) + 1} must look like Name=value (e.g. X-Scope-OrgID=team-a)")
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"the value of {name} must be one line")
        headers[name] = value
    return headers


_PEM_HINT = "; use the .pem file GitHub generated for the App (-----BEGIN RSA PRIVATE KEY-----)"


def _pem(source: str, text: str) -> str:
    if "-----BEGIN" not in text or "PRIVATE KEY-----" not in text:
        raise ConfigError(f"{source} is not a PEM private key{_PEM_HINT}")
    return text


_ALIASES = {name: (f.validation_alias or name) for name, f in Settings.model_fields.items()}


def policy_base(value: str | None) -> Path | None:
    """AUTOFIX_POLICY_DEFAULTS as a file: unset is the source tree's shipped default.yaml (if this is a source
    tree), empty is none."""
    if value is None:
        return SHIPPED_POLICY if SHIPPED_POLICY.is_file() else None
    return Path(value) if value.strip() else None


def load(**overrides: object) -> Settings:
    """Build Settings from the environment; raise ConfigError naming the variable that is wrong."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        problems = []
        for e in err.errors():
            field = str(e["loc"][0]) if e["loc"] else "?"
            problems.append(f"{_ALIASES.get(field, field)}: {e['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from err
