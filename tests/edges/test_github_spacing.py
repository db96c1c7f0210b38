"""GitHub's guidance spaces content-creating requests (POST, PATCH, PUT, DELETE): the forge's write spacing
applies between consecutive writes, never before the first one, never to reads, never to the App's token
requests. Real PyGithub against the loopback GitHub fake, which records each request's arrival; assertions
compare the gaps between arrivals with the spacing setting (PyGithub sleeps, so a spaced gap is at least it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.forges.github import AppCredentials, GitHubForge
from tests.fakes.github_api import FakeApp, FakeGitHub, Recorded

TOKEN = "ghs_testtoken1234567890"
BRANCH = "autofix/shop/checkout/oom-killed"
SPACING = 0.5  # seconds: the test sleeps it twice; a read spaced by PyGithub's old 0.25 s default shows at once
WRITES = ("POST", "PATCH", "PUT", "DELETE")


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub("acme/gitops", token=TOKEN) as server:
        yield server


def writes(requests: list[Recorded]) -> list[Recorded]:
    return [r for r in requests if r.method in WRITES]


def open_pr(forge: GitHubForge, labels: list[str]) -> int:
    return forge.open_pr(branch=BRANCH, base="main", title="Raise memory limit of shop/checkout to 768Mi",
                         body="checkout was OOMKilled (exitCode=137)", labels=labels).number


@pytest.mark.timeout(30)
def test_reads_and_the_first_write_wait_for_no_spacing(fake: FakeGitHub) -> None:
    forge = GitHubForge("acme/gitops", api_url=fake.api_url, token=TOKEN, write_spacing=SPACING)
    built = time.monotonic()
    for _ in range(5):  # the pipeline reads the PRs of the branch several times before it opens one
        assert forge.find_open_pr(BRANCH) is None
    open_pr(forge, labels=[])

    [create] = writes(fake.requests)
    reads = fake.requests[:-1]
    assert len(reads) == 7 and {r.method for r in reads} == {"GET"}
    # Seven reads and the first write, all before one spacing has passed since the forge was built: neither
    # the reads, nor the construction, nor "the previous write" (there is none) made the write wait.
    assert create.at - built < SPACING, [round(r.at - built, 3) for r in fake.requests]


@pytest.mark.timeout(30)
@pytest.mark.e2e  # waits out a real timeout or spacing: the slow part
def test_consecutive_writes_are_spaced_and_the_reads_between_them_are_not(fake: FakeGitHub) -> None:
    forge = GitHubForge("acme/gitops", api_url=fake.api_url, token=TOKEN, write_spacing=SPACING)
    number = open_pr(forge, labels=["autofix", "risk:low"])  # create, then the labels: two writes in a row
    pr = forge.find_open_pr(BRANCH)
    assert pr is not None and pr.number == number
    forge.request_reviewers(pr, reviewers=["alice"], teams=[])  # a read of the PR, then a third write

    sent = writes(fake.requests)
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in sent] == [
        ("POST", "pulls"), ("POST", "labels"), ("POST", "requested_reviewers")]
    gaps = [later.at - earlier.at for earlier, later in zip(sent, sent[1:], strict=False)]
    assert all(gap >= SPACING for gap in gaps), gaps
    # The reads after the labels went out right after them: only writes wait for the spacing.
    after_labels = [r for r in fake.requests if r.method == "GET" and sent[1].at < r.at < sent[2].at]
    assert after_labels and after_labels[0].at - sent[1].at < SPACING, [r.at - sent[1].at for r in after_labels]


@pytest.mark.timeout(30)
def test_the_app_token_request_does_not_delay_the_first_write() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with FakeGitHub("acme/gitops", token="not-this-one", app=FakeApp(app_id=123456, public_key_pem=public)) as fake:
        # No installation id: the forge looks it up, then mints a token (a POST) for git's push header.
        forge = GitHubForge("acme/gitops", api_url=fake.api_url, write_spacing=SPACING,
                            app=AppCredentials(app_id=123456, private_key=private))
        assert forge.auth_header().startswith("Authorization: Basic ")
        for _ in range(3):
            assert forge.find_open_pr(BRANCH) is None
        open_pr(forge, labels=[])

    mint, create = writes(fake.requests)
    assert mint.path.endswith("/access_tokens") and create.path.endswith("/pulls")
    assert create.at - mint.at < SPACING, [(r.method, r.path, round(r.at - mint.at, 3)) for r in fake.requests]
