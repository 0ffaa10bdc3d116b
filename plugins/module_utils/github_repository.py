# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GitHub mode: make sure the repository Flux syncs exists, and give git the token without writing it anywhere.

The logic behind the ``github_repository`` module, and the credential helper that ``git_seed`` and
``gitops_image_tag`` hand to git in github mode.

- ``ensure`` reads ``GET /repos/{owner}/{repo}`` and, when it is missing, creates it with ``POST /user/repos``
  (personal account) or ``POST /orgs/{org}/repos`` (organisation), private unless asked otherwise. The token only
  travels in the ``Authorization`` header of those requests.
- ``credential_args`` / ``with_credentials`` give git a credential helper on its command line that reads the token
  from an environment variable of the git process: the token is never in argv, in a URL, in ``.git/config`` or in
  a credential store (the empty ``credential.helper=`` first disables the user's own helpers for that call).

Every HTTP call goes through a ``request(method, url, headers, body) -> (status, text)`` callable (the module
passes one built on Ansible's ``open_url``, which honours HTTPS_PROXY / NO_PROXY and the system's trusted CAs);
nothing here imports Ansible.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Request = Callable[[str, str, dict, "bytes | None"], tuple[int, str]]

# The environment variable of the git process that carries the token, and the username git sends with it
# (GitHub accepts any username with a personal access token).
TOKEN_ENV = "FILEWCOUNT_GIT_TOKEN"  # noqa: S105 (a variable name, not a secret)
TOKEN_USERNAME = "x-access-token"  # noqa: S105


# --------------------------------------------------------------------------------------------------- exceptions
class GitHubError(Exception):
    """Base class: the message is one sentence naming the problem and the fix."""


class TokenRejected(GitHubError):
    pass


class AccessDenied(GitHubError):
    pass


class OwnerMismatch(GitHubError):
    pass


class OwnerNotFound(GitHubError):
    pass


class ApiError(GitHubError):
    pass


# ---------------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Wanted:
    """The repository github mode syncs."""

    owner: str
    name: str
    personal: bool = True
    private: bool = True
    hostname: str = "github.com"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def api_url(self) -> str:
        """api.github.com for github.com; GitHub Enterprise Server serves the API under /api/v3."""
        return "https://api.github.com" if self.hostname == "github.com" else f"https://{self.hostname}/api/v3"

    @property
    def clone_url(self) -> str:
        """The HTTPS URL of the repository, with no credentials in it."""
        return https_url(self.hostname, self.owner, self.name)


@dataclass(frozen=True)
class Token:
    """The personal access token; never printed (its repr hides it)."""

    value: str = field(repr=False)

    def __bool__(self) -> bool:
        return bool(self.value)


@dataclass
class Result:
    changed: bool = False
    created: bool = False
    full_name: str = ""
    private: bool | None = None
    default_branch: str | None = None
    clone_url: str = ""
    msg: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "created": self.created,
            "full_name": self.full_name,
            "private": self.private,
            "default_branch": self.default_branch,
            "clone_url": self.clone_url,
            "msg": self.msg,
        }

    def diff(self, existed: bool) -> dict[str, str]:
        after = f"{self.full_name} ({'private' if self.private else 'public'})\n"
        return {"before": after if existed else "(absent)\n", "after": after}


def https_url(hostname: str, owner: str, name: str) -> str:
    return f"https://{hostname}/{owner}/{name}.git"


# ------------------------------------------------------------------------------------------------------ the API
class Api:
    """The few REST calls github mode needs."""

    def __init__(self, request: Request, base_url: str, token: Token):
        self._request = request
        self._base = base_url.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self._token.value}",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        status, text = self._request(method, f"{self._base}{path}", headers, data)
        try:
            payload = json.loads(text) if text else {}
        except ValueError:
            payload = {"message": text.strip()[:200]}
        if status == 0:
            raise ApiError(
                f"Could not reach {self._base} ({payload.get('message') or 'no answer'}); check the network "
                "(and HTTPS_PROXY when this machine needs a proxy), then run again."
            )
        return status, payload if isinstance(payload, dict) else {"items": payload}


def _message(payload: dict) -> str:
    message = str(payload.get("message") or "").strip()
    errors = payload.get("errors") or []
    details = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
    return "; ".join([m for m in [message, *details] if m]) or "no message"


def _check_auth(status: int, payload: dict, wanted: Wanted) -> None:
    if status == 401:
        raise TokenRejected(
            f"{wanted.hostname} rejected the token (401 {_message(payload)}); set GITHUB_TOKEN to a valid personal "
            "access token, then run again."
        )
    if status == 403:
        raise AccessDenied(
            f"The token may not do that on {wanted.full_name} (403 {_message(payload)}); give it the repo scope "
            "(classic token) or Administration and Contents read and write on that repository (fine-grained token), "
            "then run again."
        )


def ensure(api: Api, wanted: Wanted, *, check_mode: bool = False) -> tuple[Result, bool]:
    """Make ``wanted`` exist. Returns the result and whether it existed before."""
    res = Result(full_name=wanted.full_name, clone_url=wanted.clone_url)
    status, payload = api.call("GET", f"/repos/{wanted.owner}/{wanted.name}")
    _check_auth(status, payload, wanted)
    if status == 200:
        res.private = bool(payload.get("private"))
        res.default_branch = payload.get("default_branch")
        res.msg = f"The repository {wanted.full_name} exists ({'private' if res.private else 'public'})."
        return res, True
    if status != 404:
        raise ApiError(f"Reading {wanted.full_name} failed ({status} {_message(payload)}); run again later.")

    # Missing, or not visible to this token. Creating it under /user/repos would put it in the token's own account,
    # so for a personal owner the token must belong to that owner.
    if wanted.personal:
        status, user = api.call("GET", "/user")
        _check_auth(status, user, wanted)
        login = str(user.get("login") or "")
        if login.lower() != wanted.owner.lower():
            raise OwnerMismatch(
                f"The token belongs to {login or 'another account'}, not {wanted.owner}, so it cannot create "
                f"{wanted.full_name}; use a token of {wanted.owner}, or set gitops_github_personal=false when "
                f"{wanted.owner} is an organisation, then run again."
            )
        path = "/user/repos"
    else:
        path = f"/orgs/{wanted.owner}/repos"
    res.changed = res.created = True
    res.private = wanted.private
    res.default_branch = None
    if check_mode:
        res.msg = f"Would create the {'private' if wanted.private else 'public'} repository {wanted.full_name}."
        return res, False
    body = {
        "name": wanted.name,
        "private": wanted.private,
        "description": "GitOps tree of filewcount.gitops, synced by Flux",
        "auto_init": False,
    }
    status, payload = api.call("POST", path, body)
    _check_auth(status, payload, wanted)
    if status == 404 and not wanted.personal:
        raise OwnerNotFound(
            f"The organisation {wanted.owner} does not exist or the token's user may not create repositories in it "
            "(404); check gitops_github_owner (set gitops_github_personal=true for a user account), then run again."
        )
    if status == 422:
        raise AccessDenied(
            f"{wanted.full_name} exists but this token cannot read it (422 {_message(payload)}); give the token "
            "access to that repository (fine-grained token: add it under Repository access), then run again."
        )
    if status != 201:
        raise ApiError(f"Creating {wanted.full_name} failed ({status} {_message(payload)}); run again later.")
    res.default_branch = payload.get("default_branch")
    res.msg = f"Created the {'private' if wanted.private else 'public'} repository {wanted.full_name}."
    return res, False


# ---------------------------------------------------------------------------------------------- git credentials
def credential_args(env_var: str = TOKEN_ENV, username: str = TOKEN_USERNAME) -> list[str]:
    """``-c`` options giving git one credential helper: a shell snippet printing the token from ``env_var``.

    The first, empty ``credential.helper=`` clears the helpers of the user's configuration for this call, so the
    token is neither asked from nor stored in their credential store.
    """
    snippet = f'!f() {{ test "$1" = get || return 0; echo username={username}; echo "password=${env_var}"; }}; f'
    return ["-c", "credential.helper=", "-c", f"credential.helper={snippet}"]


def with_credentials(argv: list, env_var: str = TOKEN_ENV, username: str = TOKEN_USERNAME) -> list:
    """argv of a git call (``[git, subcommand, ...]``) with the credential helper options after the program."""
    return [argv[0], *credential_args(env_var, username), *argv[1:]]
