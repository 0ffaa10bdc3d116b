# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Publish a checkout's HEAD to a git remote branch and bring the checkout up to date with it.

The logic behind the ``git_seed`` module, used by local mode: bootstrap pushes the current commit to the
git server in the cluster, ``make sync`` pushes again, and after ``flux bootstrap`` added its ``flux-system``
commit on the server the checkout is fast-forwarded to it.

Every git call goes through a ``run(argv, cwd) -> (rc, stdout, stderr)`` callable (``module.run_command`` in the
module, ``subprocess.run`` in tests), with argv lists only. Nothing here imports Ansible. In check mode nothing
is written: no remote is added or changed, nothing is fetched, pushed or merged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Runner = Callable[[list, str], tuple[int, str, str]]

# Environment for every git call: never prompt for a password (the server is anonymous; a prompt would hang
# Ansible), and keep messages in English so failures can be recognised.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"}


# --------------------------------------------------------------------------------------------------- exceptions
class GitRemoteError(Exception):
    """Base class: the message is one sentence naming the problem and the fix."""


class NotAGitRepository(GitRemoteError):
    pass


class NoCommits(GitRemoteError):
    pass


class DirtyWorkingTree(GitRemoteError):
    pass


class RemoteMissing(GitRemoteError):
    pass


class RemoteUnreachable(GitRemoteError):
    pass


class DivergedHistory(GitRemoteError):
    pass


class UnrelatedHistory(DivergedHistory):
    """The remote branch and HEAD have no commit in common (for example a repository made with a README)."""


class PushRejected(GitRemoteError):
    pass


class ShallowCheckout(GitRemoteError):
    pass


class GitCommandFailed(GitRemoteError):
    def __init__(self, argv: list, rc: int, stderr: str):
        self.argv = list(argv)
        self.rc = rc
        self.stderr = stderr
        detail = _last_line(stderr) or "no error output"
        super().__init__(f"`{' '.join(self.argv)}` failed with exit code {rc}: {detail}")


def shallow_message(path: str, remote: str, branch: str) -> str:
    return (
        f"The checkout {path} is a shallow clone (made with git clone --depth), so {remote}/{branch} cannot receive "
        f"its history, which starts midway; run `git fetch --unshallow` in it (or clone without --depth), "
        "then run again."
    )


# ------------------------------------------------------------------------------------------------------ results
@dataclass
class Result:
    """What was (or, in check mode, would be) done."""

    changed: bool = False
    head: str | None = None
    remote_sha_before: str | None = None
    remote_sha: str | None = None
    remote_url_before: str | None = None
    remote_url: str | None = None
    actions: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    msg: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "head": self.head,
            "remote_sha_before": self.remote_sha_before,
            "remote_sha": self.remote_sha,
            "remote_url_before": self.remote_url_before,
            "remote_url": self.remote_url,
            "actions": list(self.actions),
            "commands": list(self.commands),
            "msg": self.msg,
        }

    def diff(self, remote: str, branch: str) -> dict[str, str]:
        def render(url: str | None, sha: str | None) -> str:
            return f"remote {remote}: {url or '(none)'}\n{remote}/{branch}: {sha or '(none)'}\n"

        return {
            "before": render(self.remote_url_before, self.remote_sha_before),
            "after": render(self.remote_url, self.remote_sha),
        }


# ---------------------------------------------------------------------------------------------------- the checkout
class Checkout:
    """A git working tree driven through ``run``."""

    def __init__(self, path: str, run: Runner, git: str = "git"):
        self.path = path
        self._run = run
        self._git_bin = git

    def _git(self, *args: str, ok: tuple = (0,)) -> tuple[int, str, str]:
        argv = [self._git_bin, *args]
        rc, out, err = self._run(argv, self.path)
        if rc not in ok:
            raise GitCommandFailed(argv, rc, err)
        return rc, out, err

    # ------------------------------------------------------------------ reads
    def ensure_repository(self) -> None:
        rc, out, _unused = self._run([self._git_bin, "rev-parse", "--is-inside-work-tree"], self.path)
        if rc != 0 or out.strip() != "true":
            raise NotAGitRepository(
                f"{self.path} is not a git checkout; run `git init -b main && git add -A && "
                f"git commit -m 'Initial commit'` in it, then run again."
            )

    def head(self) -> str:
        rc, out, _unused = self._git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", ok=(0, 1))
        if rc != 0 or not out.strip():
            raise NoCommits(f"The checkout {self.path} has no commits yet; commit your files, then run again.")
        return out.strip()

    def is_clean(self) -> bool:
        """True when tracked files have no staged or unstaged changes (untracked files do not count)."""
        out = self._git("status", "--porcelain=v1", "--untracked-files=no")[1]
        return not out.strip()

    def remote_url(self, remote: str) -> str | None:
        rc, out, _unused = self._git("config", "--get", f"remote.{remote}.url", ok=(0, 1))
        return out.strip() if rc == 0 and out.strip() else None

    def has_commit(self, sha: str) -> bool:
        rc = self._git("cat-file", "-e", f"{sha}^{{commit}}", ok=(0, 1, 128))[0]
        return rc == 0

    def is_shallow(self) -> bool:
        """True for a clone made with --depth (its history starts at commits whose parents it lacks)."""
        return self._git("rev-parse", "--is-shallow-repository")[1].strip() == "true"

    def shares_history(self, one: str, other: str) -> bool:
        """True when the two commits have a common ancestor (git merge-base finds one)."""
        return self._git("merge-base", one, other, ok=(0, 1))[0] == 0

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        rc = self._git("merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1))[0]
        return rc == 0

    def ls_remote(self, where: str, branch: str) -> str | None:
        """The commit of ``branch`` at ``where`` (a remote name or URL); None when the branch does not exist."""
        argv = [self._git_bin, "ls-remote", "--heads", where, f"refs/heads/{branch}"]
        rc, out, err = self._run(argv, self.path)
        if rc != 0:
            raise RemoteUnreachable(
                f"Could not reach the git remote {where} ({_last_line(err) or f'exit code {rc}'}); "
                "check that the git server is running and the URL is right, then run again."
            )
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == f"refs/heads/{branch}":
                return parts[0]
        return None

    # ----------------------------------------------------------------- writes
    def set_remote(self, remote: str, url: str, exists: bool) -> None:
        if exists:
            self._git("remote", "set-url", remote, url)
        else:
            self._git("remote", "add", remote, url)

    def remove_remote(self, remote: str) -> None:
        self._git("remote", "remove", remote)

    def fetch(self, remote: str, branch: str) -> None:
        argv = [self._git_bin, "fetch", "--no-tags", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}"]
        rc, _unused, err = self._run(argv, self.path)
        if rc != 0:
            raise RemoteUnreachable(
                f"Could not fetch {branch} from the git remote {remote} ({_last_line(err) or f'exit code {rc}'}); "
                "check that the git server is running, then run again."
            )

    def push(self, remote: str, sha: str, branch: str) -> None:
        argv = [self._git_bin, "push", "--porcelain", remote, f"{sha}:refs/heads/{branch}"]
        rc, out, err = self._run(argv, self.path)
        if rc != 0:
            text = f"{out}\n{err}"
            if "shallow update not allowed" in text:
                raise ShallowCheckout(shallow_message(self.path, remote, branch))
            if "[rejected]" in text or "non-fast-forward" in text or "fetch first" in text:
                raise PushRejected(
                    f"The git server refused the push because {remote}/{branch} has commits that HEAD lacks; "
                    f"run `git pull --rebase {remote} {branch}`, then run again."
                )
            raise RemoteUnreachable(
                f"Pushing to the git remote {remote} failed ({_last_line(err) or f'exit code {rc}'}); "
                "check that the git server is running and accepts pushes, then run again."
            )
        # The push updates refs/remotes/<remote>/<branch> only when the remote's fetch refspec covers it; make
        # sure it does, so `git status` and the next run see the published commit.
        self._git("update-ref", f"refs/remotes/{remote}/{branch}", sha)

    def merge_ff_only(self, ref: str) -> None:
        self._git("merge", "--ff-only", "--quiet", ref)


# ------------------------------------------------------------------------------------------------------ actions
def seed(
    checkout: Checkout,
    remote: str,
    branch: str,
    *,
    url: str | None = None,
    check_mode: bool = False,
    require_clean: bool = False,
) -> Result:
    """Make ``remote`` (pointing at ``url`` when given) carry HEAD on ``branch``.

    No push when the remote branch already contains HEAD (HEAD is the branch tip or one of its ancestors, e.g.
    after Flux added its own commit on top). A fast-forward push when the branch is behind HEAD or missing.
    Fails with DivergedHistory when the two histories have forked.
    """
    checkout.ensure_repository()
    res = Result()
    if not checkout.is_clean():
        if require_clean:
            raise DirtyWorkingTree("The checkout has uncommitted changes; commit or stash them, then run again.")
        res.warnings.append("The checkout has uncommitted changes; only committed work is published to the git server.")
    res.head = checkout.head()
    res.remote_url_before = checkout.remote_url(remote)
    if url is None and res.remote_url_before is None:
        raise RemoteMissing(
            f"The checkout has no git remote named {remote}; add it with `git remote add {remote} URL`, then run again."
        )
    res.remote_url = url if url is not None else res.remote_url_before
    if res.remote_url != res.remote_url_before:
        verb = "Set" if res.remote_url_before is not None else "Add"
        res.actions.append(f"{verb} git remote {remote} to {res.remote_url}")
        res.changed = True
        if not check_mode:
            checkout.set_remote(remote, res.remote_url, exists=res.remote_url_before is not None)

    # Ask the server itself (by URL in check mode, where the remote may not be configured yet).
    where = remote if not check_mode else res.remote_url
    res.remote_sha_before = checkout.ls_remote(where, branch)
    res.remote_sha = res.remote_sha_before
    verdict = _compare(checkout, res.head, res.remote_sha_before, fetch=None if check_mode else (remote, branch))
    if verdict in {"same", "remote-ahead"}:
        res.msg = f"{remote}/{branch} already contains HEAD {res.head[:12]}."
        return res
    if verdict == "unknown":
        # The server has a commit this checkout lacks, so a push cannot be a fast-forward: either the branch
        # already contains HEAD or the histories diverged. Only a fetch can tell; check mode does not fetch.
        res.warnings.append(
            f"{remote}/{branch} is at {res.remote_sha_before[:12]}, which this checkout has not fetched; "
            "check mode does not fetch, so whether it contains HEAD is not known."
        )
        res.msg = f"Would fetch {remote}/{branch} to compare it with HEAD {res.head[:12]}."
        return res
    if verdict == "diverged":
        if checkout.is_shallow():
            # A shallow history ends before the common ancestor, so git cannot tell a fork from missing history.
            raise ShallowCheckout(shallow_message(checkout.path, remote, branch))
        if not checkout.shares_history(res.head, res.remote_sha_before):
            raise UnrelatedHistory(
                f"{remote}/{branch} ({res.remote_sha_before[:12]}) shares no history with this checkout "
                f"({res.head[:12]}), so nothing was pushed; use an empty or new repository, or merge it first with "
                f"`git fetch {remote} {branch} && git merge --allow-unrelated-histories {remote}/{branch}`, "
                "then run again."
            )
        raise DivergedHistory(
            f"{remote}/{branch} ({res.remote_sha_before[:12]}) and HEAD ({res.head[:12]}) have diverged; "
            f"run `git pull --rebase {remote} {branch}` to put your commits on top, then run again."
        )
    # "missing" or "behind": publish HEAD. A shallow history cannot start a branch on a server that has none of
    # it (git's receive.shallowUpdate is off by default); say so before pushing anything.
    if verdict == "missing" and checkout.is_shallow():
        raise ShallowCheckout(shallow_message(checkout.path, remote, branch))
    res.actions.append(f"Push {res.head[:12]} to {remote}/{branch}")
    res.changed = True
    res.remote_sha = res.head
    if not check_mode:
        checkout.push(remote, res.head, branch)
    res.msg = f"{'Would push' if check_mode else 'Pushed'} HEAD {res.head[:12]} to {remote}/{branch}."
    return res


def pull(checkout: Checkout, remote: str, branch: str, *, check_mode: bool = False) -> Result:  # noqa: PLR0911
    """Fast-forward the checkout to ``remote/branch`` when that is safe; otherwise say which command to run.

    Safe means: HEAD is an ancestor of the remote branch and tracked files have no uncommitted changes. In
    every other case nothing changes and ``commands`` holds the exact command for the user.
    """
    checkout.ensure_repository()
    res = Result()
    res.head = checkout.head()
    res.remote_url_before = res.remote_url = checkout.remote_url(remote)
    if res.remote_url is None:
        raise RemoteMissing(
            f"The checkout has no git remote named {remote}; add it with `git remote add {remote} URL`, then run again."
        )
    res.remote_sha_before = res.remote_sha = checkout.ls_remote(remote, branch)
    if res.remote_sha is None:
        res.msg = f"{remote}/{branch} does not exist yet; nothing to bring into the checkout."
        return res
    if not check_mode:
        # Keep refs/remotes/<remote>/<branch> current, so `git status` and `git log` show what the server has.
        checkout.fetch(remote, branch)
    verdict = _compare(checkout, res.head, res.remote_sha, fetch=None)
    if verdict == "unknown" and not check_mode:
        res.msg = f"{remote}/{branch} moved while it was being fetched; run again."
        return res
    ff = f"git merge --ff-only {remote}/{branch}"
    if verdict == "same":
        res.msg = f"The checkout is at {remote}/{branch} ({res.head[:12]})."
        return res
    if verdict == "behind":
        res.msg = f"HEAD is ahead of {remote}/{branch}; publish it with `git push {remote} HEAD:{branch}`."
        res.commands.append(f"git push {remote} HEAD:{branch}")
        return res
    if verdict == "diverged":
        res.msg = (
            f"HEAD and {remote}/{branch} have diverged, so the checkout was left alone; "
            f"run `git pull --rebase {remote} {branch}` to put your commits on top."
        )
        res.commands.append(f"git pull --rebase {remote} {branch}")
        return res
    # "remote-ahead" (or "unknown" in check mode, where the new commits are not fetched yet).
    if not checkout.is_clean():
        res.msg = (
            f"The checkout has uncommitted changes, so it was not fast-forwarded to {remote}/{branch}; "
            f"commit or stash them, then run `git fetch {remote} && {ff}`."
        )
        res.commands.append(f"git fetch {remote} && {ff}")
        return res
    res.changed = True
    res.actions.append(f"Fast-forward the checkout to {remote}/{branch} ({res.remote_sha[:12]})")
    if not check_mode:
        try:
            checkout.merge_ff_only(res.remote_sha)
        except GitCommandFailed as exc:
            # For example an untracked file in the way of a file the new commit adds.
            res.changed = False
            res.actions.clear()
            res.msg = (
                f"Fast-forwarding the checkout to {remote}/{branch} failed ({_last_line(exc.stderr)}); "
                f"resolve that, then run `{ff}`."
            )
            res.commands.append(ff)
            return res
        res.head = checkout.head()
    res.msg = f"{'Would fast-forward' if check_mode else 'Fast-forwarded'} the checkout to {remote}/{branch}."
    return res


def remove(checkout: Checkout, remote: str, *, check_mode: bool = False) -> Result:
    """Remove the git remote ``remote`` (and its remote-tracking branches) when it exists."""
    res = Result()
    try:
        checkout.ensure_repository()
    except NotAGitRepository:
        res.msg = f"{checkout.path} is not a git checkout; there is no remote {remote} to remove."
        return res
    res.remote_url_before = checkout.remote_url(remote)
    if res.remote_url_before is None:
        res.msg = f"The checkout has no git remote named {remote}."
        return res
    res.changed = True
    res.actions.append(f"Remove git remote {remote} ({res.remote_url_before})")
    if not check_mode:
        checkout.remove_remote(remote)
    res.msg = f"{'Would remove' if check_mode else 'Removed'} git remote {remote}."
    return res


# ----------------------------------------------------------------------------------------------------- helpers
def _compare(checkout: Checkout, head: str, remote_sha: str | None, fetch: tuple | None) -> str:  # noqa: PLR0911
    """Relation of the remote branch tip to HEAD.

    "missing" (no branch), "same", "behind" (the remote tip is an ancestor of HEAD: a push fast-forwards it),
    "remote-ahead" (HEAD is an ancestor of the remote tip), "diverged", or "unknown" (the remote tip is not in
    this checkout and ``fetch`` is None, as in check mode).
    """
    if remote_sha is None:
        return "missing"
    if remote_sha == head:
        return "same"
    if not checkout.has_commit(remote_sha):
        if fetch is None:
            return "unknown"
        checkout.fetch(*fetch)
        if not checkout.has_commit(remote_sha):
            # The branch moved between ls-remote and fetch; compare with what was fetched.
            return "unknown"
    if checkout.is_ancestor(remote_sha, head):
        return "behind"
    if checkout.is_ancestor(head, remote_sha):
        return "remote-ahead"
    return "diverged"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
