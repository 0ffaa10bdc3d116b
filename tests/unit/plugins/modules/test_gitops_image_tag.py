"""Tests of the gitops_image_tag module: its main() with patched arguments on real git repositories."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.modules import gitops_image_tag

MANIFEST = "kube/apps/filewcount/deployment.yaml"
TEXT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: filewcount, namespace: filewcount}
spec:
  template:
    spec:
      containers:
        - name: filewcount
          image: docker.io/bldrtech/filewcount:1.0
"""


pytestmark = pytest.mark.usefixtures("git_env")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repos(tmp_path):
    bare, work = tmp_path / "filewcount.git", tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(bare))
    git(tmp_path, "init", "--quiet", "-b", "main", str(work))
    (work / MANIFEST).parent.mkdir(parents=True)
    (work / MANIFEST).write_text(TEXT)
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "seed")
    git(work, "remote", "add", "local", str(bare))
    git(work, "push", "--quiet", "local", "main")
    return work, bare


def run_module(capsys, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        gitops_image_tag.main()
    return json.loads(capsys.readouterr().out)


def test_check_mode_diff_then_change_then_idempotent(repos, capsys):
    work, bare = repos
    args = {"repo_dir": str(work), "tag": "2.0", "remote": "local"}
    result = run_module(capsys, args, check_mode=True, diff=True)
    assert result["changed"] is True and result["pushed"] is False and result["committed"] is False
    assert "filewcount:1.0" in result["diff"]["before"] and "filewcount:2.0" in result["diff"]["after"]
    assert result["diff"]["before_header"] == MANIFEST
    assert "filewcount:1.0" in git(bare, "show", f"main:{MANIFEST}")

    result = run_module(capsys, args)
    assert result["changed"] is True and result["pushed"] is True and result["committed"] is True
    assert result["old_images"] == ["docker.io/bldrtech/filewcount:1.0"]
    assert result["new_image"] == "docker.io/bldrtech/filewcount:2.0"
    assert result["commit"] == git(bare, "rev-parse", "main") and result["branch"] == "main"
    assert "diff" not in result

    result = run_module(capsys, args, diff=True)
    assert result["changed"] is False and "diff" not in result
    assert "nothing to do" in result["message"]


@pytest.mark.parametrize(
    ("args", "error", "needle"),
    [
        ({"tag": "latest"}, "InvalidTagError", "Refusing the tag 'latest'"),
        ({"tag": "2.0", "manifest": "nope.yaml"}, "ImageNotFoundError", "Cannot read the manifest nope.yaml"),
        ({"tag": "2.0", "remote": "origin"}, "GitCommandError", "remote is missing"),
        ({"tag": "2.0", "image": "ghcr.io/other/app"}, "ImageNotFoundError", "No 'image: ghcr.io/other/app:<tag>'"),
    ],
)
def test_failures_are_one_clear_message(repos, capsys, args, error, needle):
    work, _bare = repos
    result = run_module(capsys, {"repo_dir": str(work), "remote": "local", **args})
    assert result["failed"] is True
    assert result["error"] == error
    assert needle in result["msg"]


def test_author_options_are_used(repos, capsys, monkeypatch):
    work, _bare = repos
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL"):
        monkeypatch.delenv(key)
    result = run_module(
        capsys,
        {
            "repo_dir": str(work),
            "tag": "2.0",
            "remote": "local",
            "author_name": "Upgrader",
            "author_email": "up@example.invalid",
        },
    )
    assert result["committed"] is True
    assert git(work, "log", "-1", "--format=%an <%ae>") == "Upgrader <up@example.invalid>"
