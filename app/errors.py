"""Our own error hierarchy: third-party errors are wrapped at the edge and chained with ``from err``.

A PermanentError ends a job with a reason (no retry); a TemporaryError asks the worker to retry later.
"""

from __future__ import annotations


class AutofixError(Exception):
    """Base of every error this package raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class PermanentError(AutofixError):
    """Retrying will not help: the job ends with this reason."""

    code = "permanent"


class TemporaryError(AutofixError):
    """Something outside us is unavailable right now: retry after ``delay`` seconds."""

    code = "temporary"

    def __init__(self, message: str, *, code: str | None = None, delay: float = 30.0) -> None:
        super().__init__(message, code=code)
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
