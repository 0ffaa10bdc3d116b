"""Tests of module_utils/github_repository.py: the repository check and creation against a fake REST API, and
the credential helper with real git."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils import github_repository as gh

TOKEN = "ghp_unitCANARY0123456789abcdef"


class FakeGitHub:
    """The request callable: GitHub's answers for one token, every request recorded."""

    def __init__(self, login="octo", orgs=(), repos=None, token=TOKEN, answers=None):
        self.login, self.orgs, self.token = login, set(orgs), token
        self.repos = dict(repos or {})  # "owner/name" -> private
        self.answers = dict(answers or {})  # (method, path) -> (status, payload) overrides
        self.calls: list[tuple[str, str, dict, dict | None]] = []

    def __call__(self, method, url, headers, body):  # noqa: PLR0911 (one answer per endpoint)
        assert url.startswith("https://api.github.com/")
        path = url[len("https://api.github.com") :]
        payload = json.loads(body) if body else None
        self.calls.append((method, path, dict(headers), payload))
        if (method, path) in self.answers:
            status, answer = self.answers[(method, path)]
            return status, json.dumps(answer)
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, json.dumps({"message": "Bad credentials"})
        parts = path.strip("/").split("/")
        if method == "GET" and parts == ["user"]:
            return 200, json.dumps({"login": self.login})
        if method == "GET" and parts[0] == "repos":
            full = f"{parts[1]}/{parts[2]}"
            if full in self.repos:
                return 200, json.dumps({"full_name": full, "private": self.repos[full], "default_branch": "main"})
            return 404, json.dumps({"message": "Not Found"})
        if method == "POST" and (parts == ["user", "repos"] or parts[0] == "orgs"):
            owner = self.login if parts[0] == "user" else parts[1]
            if parts[0] == "orgs" and owner not in self.orgs:
                return 404, json.dumps({"message": "Not Found"})
            full = f"{owner}/{payload['name']}"
            if full in self.repos:
                return 422, json.dumps({"message": "Repository creation failed.", "errors": [{"message": "exists"}]})
            self.repos[full] = payload["private"]
            return 201, json.dumps({"full_name": full, "private": payload["private"], "default_branch": "main"})
        return 404, json.dumps({"message": "Not Found"})

    def writes(self):
        return [c for c in self.calls if c[0] != "GET"]


def ensure(fake, check_mode=False, **wanted):
    target = gh.Wanted(**{"owner": "octo", "name": "tree", **wanted})
    return gh.ensure(gh.Api(fake, target.api_url, gh.Token(TOKEN)), target, check_mode=check_mode)


# ---------------------------------------------------------------------------------------------------- ensure
def test_an_existing_repository_changes_nothing():
    fake = FakeGitHub(repos={"octo/tree": True})
    res, existed = ensure(fake)
    assert existed and not res.changed and not res.created
    assert res.private is True and res.default_branch == "main"
    assert fake.writes() == []


@pytest.mark.parametrize(
    ("personal", "owner", "orgs", "path"),
    [
        (True, "octo", (), "/user/repos"),
        (False, "acme", ("acme",), "/orgs/acme/repos"),
    ],
)
def test_a_missing_repository_is_created_private_under_the_right_owner(personal, owner, orgs, path):
    fake = FakeGitHub(orgs=orgs)
    res, existed = ensure(fake, owner=owner, personal=personal)
    assert not existed and res.changed and res.created and res.private is True
    assert [(c[0], c[1]) for c in fake.writes()] == [("POST", path)]
    assert fake.writes()[0][3]["private"] is True and fake.writes()[0][3]["name"] == "tree"
    assert fake.repos[f"{owner}/tree"] is True
    again, existed = ensure(fake, owner=owner, personal=personal)
    assert existed and not again.changed


def test_check_mode_creates_nothing():
    fake = FakeGitHub()
    res, existed = ensure(fake, check_mode=True)
    assert res.changed and res.created and not existed
    assert res.msg.startswith("Would create the private repository octo/tree")
    assert fake.writes() == [] and fake.repos == {}


def test_the_token_only_travels_in_the_authorization_header():
    fake = FakeGitHub()
    res, _existed = ensure(fake)
    for method, path, headers, body in fake.calls:
        assert TOKEN not in path and TOKEN not in json.dumps(body or {})
        assert headers["Authorization"] == f"Bearer {TOKEN}", method
    assert TOKEN not in json.dumps(res.as_dict()) and TOKEN not in repr(gh.Token(TOKEN))


@pytest.mark.parametrize(
    ("fake", "wanted", "error", "pattern"),
    [
        (FakeGitHub(token="other"), {}, gh.TokenRejected, r"^github.com rejected the token \(401 Bad credentials\)"),
        (
            FakeGitHub(answers={("GET", "/repos/octo/tree"): (403, {"message": "Resource not accessible"})}),
            {},
            gh.AccessDenied,
            r"repo scope \(classic token\) or Administration and Contents read and write",
        ),
        (FakeGitHub(login="someone-else"), {}, gh.OwnerMismatch, r"belongs to someone-else, not octo.*personal=false"),
        (FakeGitHub(), {"owner": "acme", "personal": False}, gh.OwnerNotFound, r"organisation acme does not exist"),
        (
            FakeGitHub(
                repos={"octo/tree": True}, answers={("GET", "/repos/octo/tree"): (404, {"message": "Not Found"})}
            ),
            {},
            gh.AccessDenied,
            r"exists but this token cannot read it",
        ),
        (
            FakeGitHub(answers={("GET", "/repos/octo/tree"): (0, {"message": "Connection refused"})}),
            {},
            gh.ApiError,
            r"Could not reach https://api.github.com \(Connection refused\).*HTTPS_PROXY",
        ),
    ],
)
def test_failures_are_one_sentence_with_the_fix(fake, wanted, error, pattern):
    with pytest.raises(error, match=pattern) as caught:
        ensure(fake, **wanted)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("hostname", "api", "clone"),
    [
        ("github.com", "https://api.github.com", "https://github.com/o/r.git"),
        ("ghe.example.com", "https://ghe.example.com/api/v3", "https://ghe.example.com/o/r.git"),
    ],
)
def test_urls(hostname, api, clone):
    wanted = gh.Wanted("o", "r", hostname=hostname)
    assert wanted.api_url == api and wanted.clone_url == clone


# ---------------------------------------------------------------------------------------------- credentials
def test_with_credentials_puts_the_helper_after_the_program_and_no_token_in_argv():
    argv = gh.with_credentials(["/usr/bin/git", "push", "github", "HEAD:refs/heads/main"])
    assert argv[0] == "/usr/bin/git" and argv[-3:] == ["push", "github", "HEAD:refs/heads/main"]
    assert argv[1:3] == ["-c", "credential.helper="]
    assert argv[3] == "-c" and argv[4].startswith("credential.helper=!")
    assert f"${gh.TOKEN_ENV}" in argv[4]


def test_git_gets_the_token_from_the_helper_and_the_environment_only(tmp_path):
    """`git credential fill` asks the helpers exactly as a push over HTTPS does."""
    home = tmp_path / "home"
    home.mkdir()
    # A helper in the user's configuration must not be asked (nor told the token).
    (home / ".gitconfig").write_text(f"[credential]\n\thelper = store --file {tmp_path / 'store'}\n")
    (tmp_path / "store").write_text("https://wrong:other@github.com\n")
    env = dict(os.environ, HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", **{gh.TOKEN_ENV: TOKEN})
    argv = gh.with_credentials(["git", "credential", "fill"])
    assert TOKEN not in " ".join(argv)
    proc = subprocess.run(
        argv, input="protocol=https\nhost=github.com\n\n", env=env, capture_output=True, text=True, check=True
    )
    answer = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert answer["username"] == gh.TOKEN_USERNAME and answer["password"] == TOKEN
    approve = subprocess.run(
        gh.with_credentials(["git", "credential", "approve"]), input=proc.stdout, env=env, text=True, check=True
    )
    assert approve.returncode == 0
    assert TOKEN not in (tmp_path / "store").read_text()
