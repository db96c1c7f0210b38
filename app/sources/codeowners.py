"""Who owns the files a pull request changes: the GitOps repository's CODEOWNERS, as GitHub reads it.

GitHub uses the first of ``.github/CODEOWNERS``, ``CODEOWNERS`` and ``docs/CODEOWNERS`` that exists, and for
each file the owners of the *last* matching pattern (gitignore-style patterns; the ``codeowners`` package
implements GitHub's matching). Users (``@login``) become reviewers, ``@org/team`` team reviewers (the slug
only: the review request API takes the team's slug within the repository's organisation); e-mail owners cannot
be requested through the API and are left out. The file is untrusted text from the repository: only names
that are valid GitHub logins or team slugs come out of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from codeowners import CodeOwners

from app.errors import PermanentError

# GitHub's lookup order (docs: "About code owners", CODEOWNERS file location).
LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
MAX_CHARS = 3 * 1024 * 1024  # GitHub ignores a CODEOWNERS file over 3 MB
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_TEAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]{0,38})/([A-Za-z0-9][A-Za-z0-9_.-]{0,99})")


@dataclass(frozen=True)
class Owners:
    """Reviewers (logins) and team reviewers (slugs) for a set of files, in the order CODEOWNERS names them."""

    path: str | None = None  # the CODEOWNERS file read, None when the repository has none
    users: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()


def find(read: Callable[[str], str]) -> tuple[str, str] | None:
    """(path, text) of the CODEOWNERS file GitHub would use; ``read`` raises PermanentError for a missing file."""
    for path in LOCATIONS:
        try:
            text = read(path)
        except PermanentError:
            continue
        return (path, text) if len(text) <= MAX_CHARS else None
    return None


def owners_of(text: str, files: Iterable[str], *, path: str | None = None, org: str | None = None) -> Owners:
    """The owners of ``files`` (repository paths) under the CODEOWNERS ``text``: last matching pattern wins per
    file; users and teams deduplicated in first-seen order. ``org``: a team of another organisation cannot be
    requested on this repository's PR and is left out."""
    rules = CodeOwners(text)
    users: list[str] = []
    teams: list[str] = []
    for name in files:
        for kind, owner in rules.of(name.lstrip("/")):
            handle = owner.removeprefix("@")
            if kind == "USERNAME" and _LOGIN.fullmatch(handle):
                users.append(handle)
            elif (kind == "TEAM" and (team := _TEAM.fullmatch(handle)) is not None
                  and (org is None or team.group(1).lower() == org.lower())):
                teams.append(team.group(2))
    return Owners(path=path, users=tuple(dict.fromkeys(users)), teams=tuple(dict.fromkeys(teams)))


def lookup(read: Callable[[str], str], files: Iterable[str], *, org: str | None = None) -> Owners:
    """The owners of ``files`` from the repository's CODEOWNERS; empty when it has none."""
    found = find(read)
    if found is None:
        return Owners()
    path, text = found
    return owners_of(text, files, path=path, org=org)
