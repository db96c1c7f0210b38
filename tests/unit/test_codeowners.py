"""CODEOWNERS as GitHub reads it (app/sources/codeowners.py): the first of .github/, the root and docs/ wins,
the last matching pattern decides each file, users become reviewers and @org/team team reviewers."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import PermanentError
from app.sources import codeowners

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "codeowners" / "gitops-CODEOWNERS"
TEXT = FIXTURE.read_text()


@pytest.mark.parametrize(("files", "users", "teams"), [
    (["apps/checkout/deployment.yaml"], ("carol",), ("shop-team",)),
    (["apps/payments/values-prod.yaml"], (), ("sre",)),  # the later, narrower pattern wins over the directory
    (["apps/payments/deployment.yaml"], ("dave-ops",), ("payments",)),
    (["clusters/prod/kustomization.yaml"], (), ("platform", "sre")),
    (["README.md"], (), ()),  # an e-mail owner cannot be requested through the API
    (["apps/sandbox/app.yaml"], (), ()),  # a pattern with no owners: nobody
    (["somewhere/else.yaml"], (), ("platform",)),  # the catch-all
    (["apps/checkout/deployment.yaml", "apps/payments/deployment.yaml", "apps/checkout/service.yaml"],
     ("carol", "dave-ops"), ("shop-team", "payments")),  # every file's owners, once each, in order
], ids=["directory", "last-match-wins", "user-and-team", "two-teams", "email-only", "no-owners", "catch-all",
        "several-files"])
def test_owners_of_the_changed_files(files: list[str], users: tuple[str, ...], teams: tuple[str, ...]) -> None:
    owners = codeowners.owners_of(TEXT, files, path=".github/CODEOWNERS")
    assert (owners.users, owners.teams) == (users, teams)


def test_a_team_of_another_organisation_is_left_out() -> None:
    owners = codeowners.owners_of("* @other/sre @acme/shop @alice\n", ["a.yaml"], org="acme")
    assert (owners.users, owners.teams) == (("alice",), ("shop",))


@pytest.mark.parametrize("owner", ["@-bad", "@a/b/c", "@x" + "y" * 40, "@alice`", "@bob\u200b"],
                         ids=["leading-dash", "three-parts", "too-long", "backtick", "zero-width"])
def test_names_that_are_not_github_logins_never_come_out(owner: str) -> None:
    owners = codeowners.owners_of(f"* {owner}\n", ["a.yaml"])
    assert (owners.users, owners.teams) == ((), ())


def _reader(files: dict[str, str]):  # type: ignore[no-untyped-def]
    def read(path: str) -> str:
        if path not in files:
            raise PermanentError(f"no such file in the repository: {path}", code="not_found")
        return files[path]
    return read


@pytest.mark.parametrize(("present", "used"), [
    ({".github/CODEOWNERS": "* @first\n", "CODEOWNERS": "* @second\n", "docs/CODEOWNERS": "* @third\n"},
     ".github/CODEOWNERS"),
    ({"CODEOWNERS": "* @second\n", "docs/CODEOWNERS": "* @third\n"}, "CODEOWNERS"),
    ({"docs/CODEOWNERS": "* @third\n"}, "docs/CODEOWNERS"),
], ids=["github-dir-first", "root-next", "docs-last"])
def test_githubs_lookup_order(present: dict[str, str], used: str) -> None:
    owners = codeowners.lookup(_reader(present), ["apps/x.yaml"])
    assert owners.path == used and owners.users == ({"CODEOWNERS": "second", ".github/CODEOWNERS": "first"}
                                                      .get(used, "third"),)


def test_no_codeowners_file_means_no_owners() -> None:
    assert codeowners.lookup(_reader({}), ["apps/x.yaml"]) == codeowners.Owners()
