"""Tests of module_utils/git_remote.py against real git repositories (a bare "server" and a checkout)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils.git_remote import (
    GIT_ENV,
    Checkout,
    DirtyWorkingTree,
    DivergedHistory,
    NoCommits,
    NotAGitRepository,
    RemoteMissing,
    RemoteUnreachable,
    Result,
    ShallowCheckout,
    UnrelatedHistory,
    pull,
    remove,
    seed,
)


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def git_env(tmp_path, monkeypatch):
    """Isolate git from the user's configuration and give it an identity."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        **GIT_ENV,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    return env


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Recorder:
    """The ``run`` callable: real subprocess calls, every argv recorded (and checked to be a list of str)."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, argv, cwd):
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        self.calls.append(list(argv))
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=os.environ.copy(), check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def subcommands(self) -> list[str]:
        return [c[1] for c in self.calls]


@pytest.fixture
def server(tmp_path, git_env) -> Path:
    bare = tmp_path / "server" / "filewcount.git"
    bare.mkdir(parents=True)
    git(bare, "init", "--bare", "--quiet", "-b", "main")
    return bare


@pytest.fixture
def work(tmp_path, git_env) -> Path:
    repo = tmp_path / "work"
    repo.mkdir()
    git(repo, "init", "--quiet", "-b", "main")
    commit(repo, "README.md", "hello\n", "Initial commit")
    return repo


@pytest.fixture
def run() -> Recorder:
    return Recorder()


def commit(repo: Path, name: str, text: str, message: str) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def server_sha(bare: Path, branch: str = "main") -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=bare,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or None


def flux_commit(bare: Path, tmp_path: Path) -> str:
    """Add a commit on the server's main from another clone, as flux bootstrap does."""
    other = tmp_path / "flux-clone"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(other)], check=True, capture_output=True)
    sha = commit(other, "kube/clusters/kind/flux-system/gotk-sync.yaml", "kind: GitRepository\n", "Add Flux sync")
    git(other, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    return sha


# ----------------------------------------------------------------------------------------------------- seed
def test_seed_adds_remote_and_pushes_then_changes_nothing(work, server, run):
    head = git(work, "rev-parse", "HEAD")
    first = seed(Checkout(str(work), run), "local", "main", url=str(server))
    assert first.changed
    assert first.remote_sha_before is None and first.remote_sha == head
    assert server_sha(server) == head
    assert git(work, "remote", "get-url", "local") == str(server)
    assert git(work, "rev-parse", "refs/remotes/local/main") == head
    assert first.actions == [f"Add git remote local to {server}", f"Push {head[:12]} to local/main"]

    run.calls.clear()
    second = seed(Checkout(str(work), run), "local", "main", url=str(server))
    assert not second.changed and second.actions == []
    assert "push" not in run.subcommands() and "remote" not in run.subcommands()


def test_seed_check_mode_writes_nothing(work, server, run):
    res = seed(Checkout(str(work), run), "local", "main", url=str(server), check_mode=True)
    assert res.changed
    assert res.remote_sha == git(work, "rev-parse", "HEAD")
    assert server_sha(server) is None
    assert git(work, "remote") == ""
    assert {"push", "fetch", "remote", "merge", "update-ref"}.isdisjoint(run.subcommands())


def test_seed_updates_a_remote_that_points_elsewhere(work, server, tmp_path, run):
    git(work, "remote", "add", "local", "http://localhost:9/elsewhere.git")
    res = seed(Checkout(str(work), run), "local", "main", url=str(server))
    assert res.changed and res.remote_url_before == "http://localhost:9/elsewhere.git"
    assert res.actions[0] == f"Set git remote local to {server}"
    assert git(work, "remote", "get-url", "local") == str(server)


def test_seed_pushes_new_commits_as_a_fast_forward(work, server, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    new = commit(work, "app.txt", "v2\n", "Change the app")
    res = seed(Checkout(str(work), run), "local", "main", url=str(server))
    assert res.changed and server_sha(server) == new
    assert res.actions == [f"Push {new[:12]} to local/main"]


def test_seed_does_not_push_when_the_server_has_flux_commit_on_top(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    flux = flux_commit(server, tmp_path)
    run.calls.clear()
    res = seed(Checkout(str(work), run), "local", "main", url=str(server))
    assert not res.changed
    assert server_sha(server) == flux
    assert "push" not in run.subcommands()
    assert "fetch" in run.subcommands()  # it had to fetch the unknown commit to compare


def test_seed_check_mode_with_an_unfetched_server_commit_warns_and_predicts_no_push(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    flux_commit(server, tmp_path)
    res = seed(Checkout(str(work), run), "local", "main", url=str(server), check_mode=True)
    assert not res.changed
    assert res.warnings and "check mode does not fetch" in res.warnings[0]


def test_seed_refuses_diverged_histories_and_names_the_fix(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    flux_commit(server, tmp_path)
    commit(work, "mine.txt", "mine\n", "My change")
    with pytest.raises(DivergedHistory, match=r"git pull --rebase local main"):
        seed(Checkout(str(work), run), "local", "main", url=str(server))


def test_seed_require_clean_fails_on_modified_tracked_files(work, server, run):
    (work / "README.md").write_text("edited\n")
    with pytest.raises(DirtyWorkingTree, match=r"^The checkout has uncommitted changes; commit or stash them"):
        seed(Checkout(str(work), run), "local", "main", url=str(server), require_clean=True)
    assert server_sha(server) is None


def test_seed_without_require_clean_publishes_head_and_warns(work, server, run):
    (work / "README.md").write_text("edited\n")
    res = seed(Checkout(str(work), run), "local", "main", url=str(server))
    assert res.changed and server_sha(server) == git(work, "rev-parse", "HEAD")
    assert any("uncommitted changes" in w for w in res.warnings)


def test_untracked_files_do_not_count_as_uncommitted(work, server, run):
    (work / "scratch.txt").write_text("notes\n")
    res = seed(Checkout(str(work), run), "local", "main", url=str(server), require_clean=True)
    assert res.changed and not res.warnings


def test_seed_outside_a_repository_prints_the_commands(tmp_path, git_env, run):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotAGitRepository, match=r"is not a git checkout; run `git init -b main && git add -A"):
        seed(Checkout(str(plain), run), "local", "main", url="http://localhost:8082/filewcount.git")


def test_seed_without_commits(tmp_path, server, run):
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "--quiet", "-b", "main")
    with pytest.raises(NoCommits, match=r"has no commits yet"):
        seed(Checkout(str(empty), run), "local", "main", url=str(server))


def test_seed_without_url_needs_an_existing_remote(work, run):
    with pytest.raises(RemoteMissing, match=r"no git remote named origin; add it with `git remote add origin URL`"):
        seed(Checkout(str(work), run), "origin", "main")


def test_seed_without_url_uses_the_existing_remote(work, server, run):
    git(work, "remote", "add", "origin", str(server))
    res = seed(Checkout(str(work), run), "origin", "main")
    assert res.changed and res.actions == [f"Push {res.head[:12]} to origin/main"]
    assert git(work, "remote", "get-url", "origin") == str(server)


def test_seed_reports_an_unreachable_server(work, tmp_path, run):
    missing = tmp_path / "nowhere" / "filewcount.git"
    with pytest.raises(RemoteUnreachable, match=r"^Could not reach the git remote local .*check that the git server"):
        seed(Checkout(str(work), run), "local", "main", url=str(missing))


def test_seed_reports_a_push_the_server_refuses(work, server, run):
    hook = server / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes are closed' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(RemoteUnreachable, match=r"^Pushing to the git remote local failed"):
        seed(Checkout(str(work), run), "local", "main", url=str(server))


def test_seed_pushes_head_of_another_branch_to_main(work, server, run):
    git(work, "checkout", "--quiet", "-b", "feature")
    sha = commit(work, "f.txt", "f\n", "Feature")
    res = seed(Checkout(str(work), run), "local", "main", url=str(server))
    assert res.changed and server_sha(server) == sha


def shallow_clone(work: Path, tmp_path: Path) -> Path:
    """``git clone --depth 1`` of ``work`` (file:// so that git honours --depth for a local clone)."""
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "--quiet", "--depth", "1", f"file://{work}", str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    return clone


def test_seed_from_a_shallow_clone_names_the_fix_and_pushes_nothing(work, server, tmp_path, run):
    commit(work, "b.txt", "b\n", "Second commit")
    clone = shallow_clone(work, tmp_path)
    with pytest.raises(ShallowCheckout, match=r"is a shallow clone .* run `git fetch --unshallow` in it"):
        seed(Checkout(str(clone), run), "local", "main", url=str(server))
    assert server_sha(server) is None
    assert "push" not in run.subcommands()
    git(clone, "fetch", "--quiet", "--unshallow")  # what the sentence says to do
    res = seed(Checkout(str(clone), run), "local", "main", url=str(server))
    assert res.changed and server_sha(server) == git(work, "rev-parse", "HEAD")


def test_seed_from_a_shallow_clone_whose_history_the_server_lacks_midway(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    commit(work, "b.txt", "b\n", "Second commit")
    commit(work, "c.txt", "c\n", "Third commit")
    clone = shallow_clone(work, tmp_path)
    before = server_sha(server)
    with pytest.raises(ShallowCheckout, match="git fetch --unshallow"):
        seed(Checkout(str(clone), run), "local", "main", url=str(server))
    assert server_sha(server) == before


def test_seed_from_a_shallow_clone_on_top_of_what_the_server_has(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    clone = shallow_clone(work, tmp_path)
    sha = commit(clone, "d.txt", "d\n", "Work in the shallow clone")
    res = seed(Checkout(str(clone), run), "local", "main", url=str(server))
    assert res.changed and server_sha(server) == sha


def test_a_push_refused_as_a_shallow_update_names_the_fix(work, server, tmp_path, run):
    """The server's own refusal (git's receive.shallowUpdate is off) is translated too, for a push that reaches it."""
    commit(work, "b.txt", "b\n", "Second commit")
    clone = shallow_clone(work, tmp_path)
    checkout = Checkout(str(clone), run)
    git(clone, "remote", "add", "local", str(server))
    with pytest.raises(ShallowCheckout, match="git fetch --unshallow"):
        checkout.push("local", git(clone, "rev-parse", "HEAD"), "main")


# ----------------------------------------------------------------------------------------------------- pull
def test_pull_fast_forwards_a_clean_checkout_then_changes_nothing(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    flux = flux_commit(server, tmp_path)
    res = pull(Checkout(str(work), run), "local", "main")
    assert res.changed and res.head == flux
    assert git(work, "rev-parse", "HEAD") == flux
    assert (work / "kube/clusters/kind/flux-system/gotk-sync.yaml").is_file()
    again = pull(Checkout(str(work), run), "local", "main")
    assert not again.changed and again.commands == []


def test_pull_check_mode_changes_nothing(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    before = git(work, "rev-parse", "HEAD")
    flux_commit(server, tmp_path)
    run.calls.clear()
    res = pull(Checkout(str(work), run), "local", "main", check_mode=True)
    assert res.changed
    assert git(work, "rev-parse", "HEAD") == before
    assert {"fetch", "merge"}.isdisjoint(run.subcommands())


def test_pull_leaves_a_dirty_checkout_alone_and_prints_the_command(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    before = git(work, "rev-parse", "HEAD")
    flux_commit(server, tmp_path)
    (work / "README.md").write_text("work in progress\n")
    res = pull(Checkout(str(work), run), "local", "main")
    assert not res.changed
    assert res.commands == ["git fetch local && git merge --ff-only local/main"]
    assert "uncommitted changes" in res.msg
    assert git(work, "rev-parse", "HEAD") == before
    assert (work / "README.md").read_text() == "work in progress\n"


def test_pull_leaves_diverged_history_alone(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    flux_commit(server, tmp_path)
    mine = commit(work, "mine.txt", "mine\n", "My change")
    res = pull(Checkout(str(work), run), "local", "main")
    assert not res.changed and res.commands == ["git pull --rebase local main"]
    assert git(work, "rev-parse", "HEAD") == mine


def test_pull_when_head_is_ahead_suggests_a_push(work, server, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    commit(work, "new.txt", "new\n", "Unpublished")
    res = pull(Checkout(str(work), run), "local", "main")
    assert not res.changed and res.commands == ["git push local HEAD:main"]


def test_pull_reports_a_failed_fast_forward_without_claiming_a_change(work, server, tmp_path, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    flux_commit(server, tmp_path)
    # An untracked file where the incoming commit adds one: the merge refuses rather than overwrite it.
    target = work / "kube/clusters/kind/flux-system/gotk-sync.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("mine\n")
    res = pull(Checkout(str(work), run), "local", "main")
    assert not res.changed and res.commands == ["git merge --ff-only local/main"]
    assert target.read_text() == "mine\n"


def test_pull_needs_the_remote(work, run):
    with pytest.raises(RemoteMissing):
        pull(Checkout(str(work), run), "local", "main")


def test_pull_with_no_branch_on_the_server(work, server, run):
    git(work, "remote", "add", "local", str(server))
    res = pull(Checkout(str(work), run), "local", "main")
    assert not res.changed and "does not exist yet" in res.msg


# --------------------------------------------------------------------------------------------------- remove
def test_remove_deletes_the_remote_once(work, server, run):
    seed(Checkout(str(work), run), "local", "main", url=str(server))
    check = remove(Checkout(str(work), run), "local", check_mode=True)
    assert check.changed and git(work, "remote") == "local"
    res = remove(Checkout(str(work), run), "local")
    assert res.changed and git(work, "remote") == ""
    assert git(work, "for-each-ref", "refs/remotes/local") == ""
    assert not remove(Checkout(str(work), run), "local").changed


def test_remove_outside_a_repository_is_a_no_op(tmp_path, git_env, run):
    res = remove(Checkout(str(tmp_path), run), "local")
    assert not res.changed and "not a git checkout" in res.msg


# ---------------------------------------------------------------------------------------------------- diff
@pytest.mark.parametrize(
    ("url_before", "sha_before", "expected_before"),
    [
        (None, None, "remote local: (none)\nlocal/main: (none)\n"),
        ("http://x/y.git", "abc", "remote local: http://x/y.git\nlocal/main: abc\n"),
    ],
)
def test_diff_renders_remote_and_branch(url_before, sha_before, expected_before):
    res = Result(remote_url_before=url_before, remote_sha_before=sha_before, remote_url="u", remote_sha="s")
    assert res.diff("local", "main") == {"before": expected_before, "after": "remote local: u\nlocal/main: s\n"}


def test_seed_refuses_a_branch_with_unrelated_history_and_loses_nothing(work, server, tmp_path, run):
    # A repository created with a README on GitHub: its main shares no commit with the checkout.
    other = tmp_path / "elsewhere"
    other.mkdir()
    git(other, "init", "--quiet", "-b", "main")
    theirs = commit(other, "README.md", "theirs\n", "Initial commit on GitHub")
    git(other, "push", "--quiet", str(server), "HEAD:refs/heads/main")
    head = git(work, "rev-parse", "HEAD")
    with pytest.raises(UnrelatedHistory, match=r"shares no history with this checkout.*--allow-unrelated-histories"):
        seed(Checkout(str(work), run), "github", "main", url=str(server))
    assert server_sha(server) == theirs
    assert git(work, "rev-parse", "HEAD") == head
