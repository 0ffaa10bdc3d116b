"""The git_toplevel lookup: the work tree root of a directory, the start directory by default, '' outside git."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.filewcount.gitops.plugins.lookup.git_toplevel import LookupModule, git_toplevel


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "kube" / "clusters").mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", str(root)], check=True)
    return root


def test_a_subdirectory_gives_the_work_tree_root(repo):
    assert git_toplevel(str(repo / "kube" / "clusters")) == str(repo.resolve())


def test_outside_git_gives_empty_or_the_directory(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_toplevel(str(plain)) == ""
    assert git_toplevel(str(plain), or_directory=True) == str(plain)


def test_a_missing_directory_gives_empty_or_the_directory(tmp_path):
    missing = tmp_path / "new" / "repo"
    assert git_toplevel(str(missing)) == ""
    assert git_toplevel(str(missing), or_directory=True) == str(missing)


def test_empty_means_the_start_directory_not_the_playbook_directory(repo, monkeypatch):
    monkeypatch.chdir(repo / "kube")
    assert git_toplevel("") == str(repo.resolve())
    lookup = LookupModule()
    assert lookup.run([]) == [str(repo.resolve())]
    assert lookup.run([""]) == [str(repo.resolve())]


def test_the_lookup_passes_or_directory(tmp_path):
    plain = tmp_path / "plain"
    assert LookupModule().run([str(plain)], or_directory=True) == [str(plain)]
    assert LookupModule().run([str(plain)]) == [""]
