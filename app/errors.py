"""Our own error hierarchy: third-party errors are wrapped at the edge and chained with ``from err``.

A PermanentError ends a job with a reason (no retry); a TemporaryError asks the worker to retry later.
"""

from __future__ import annotations


class AutofixError(Exception):
    """Base of every error this package raises on purpose.

    ``dependency`` names what outside us failed when an adapter wrapped a third-party error ("cluster", "git",
    "forge", "llm", "mlflow", "prometheus"; see app.dependencies), and the message then starts with it
    ("forge: GitHub did not answer within 15 s (GET /repos/acme/gitops/pulls)"); ``kind`` says how it failed
    (timeout, refused, http_5xx...: app.dependencies.KINDS).
    """

    code = "error"
    dependency: str | None = None
    kind: str | None = None

    def __init__(self, message: str, *, code: str | None = None, dependency: str | None = None,
                 kind: str | None = None) -> None:
        if dependency is not None and not message.startswith(f"{dependency}: "):
            message = f"{dependency}: {message}"
        super().__init__(message)
        if code is not None:
            self.code = code
        self.dependency = dependency
        self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


class PermanentError(AutofixError):
    """Retrying will not help: the job ends with this reason."""

    code = "permanent"


class TemporaryError(AutofixError):
    """Something outside us is unavailable right now: retry after ``delay`` seconds."""

    code = "temporary"

    def __init__(self, message: str, *, code: str | None = None, delay: float = 30.0, dependency: str | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message, code=code, dependency=dependency, kind=kind)
        self.delay = delay


class NoFix(PermanentError):
    """A cause was understood (or not) but no change in git is the right answer."""

    code = "no_fix"


class ConfigError(AutofixError):
    """Settings or policies are invalid: the service must not start."""

    code = "config"


class StartupError(AutofixError):
    """Something the service owns is broken (a corrupt job store): it must not start; the message says what to do."""

    code = "startup"
