"""Tests of the git_seed module: real git repositories, the module's main() with patched arguments."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.modules import git_seed

pytestmark = pytest.mark.usefixtures("git_env")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repos(tmp_path):
    server = tmp_path / "filewcount.git"
    server.mkdir()
    git(server, "init", "--bare", "--quiet", "-b", "main")
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "--quiet", "-b", "main")
    (work / "README.md").write_text("hello\n")
    git(work, "add", "README.md")
    git(work, "commit", "--quiet", "-m", "Initial commit")
    return work, server


def run_module(capsys, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        git_seed.main()
    return json.loads(capsys.readouterr().out)


def test_seeded_check_mode_then_real_then_idempotent(repos, capsys):
    work, server = repos
    args = {"path": str(work), "url": str(server)}
    predicted = run_module(capsys, args, check_mode=True, diff=True)
    assert predicted["changed"] is True
    assert git(work, "remote") == ""
    assert predicted["diff"]["before"] == "remote local: (none)\nlocal/main: (none)\n"
    assert predicted["diff"]["after"].startswith(f"remote local: {server}\n")

    done = run_module(capsys, args)
    assert done["changed"] is True and done["remote_sha"] == git(work, "rev-parse", "HEAD")
    assert git(server, "rev-parse", "refs/heads/main") == done["head"]

    again = run_module(capsys, args)
    assert again["changed"] is False and again["actions"] == []
    assert run_module(capsys, args, check_mode=True)["changed"] is False


def test_require_clean_fails_with_one_sentence(repos, capsys):
    work, server = repos
    (work / "README.md").write_text("edited\n")
    res = run_module(capsys, {"path": str(work), "url": str(server), "require_clean": True})
    assert res["failed"] is True
    assert res["msg"] == "The checkout has uncommitted changes; commit or stash them, then run again."


def test_pulled_and_absent(repos, capsys, tmp_path):
    work, server = repos
    run_module(capsys, {"path": str(work), "url": str(server)})
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(server), str(other))
    (other / "sync.yaml").write_text("kind: Kustomization\n")
    git(other, "add", "sync.yaml")
    git(other, "commit", "--quiet", "-m", "Add Flux sync")
    git(other, "push", "--quiet", "origin", "HEAD:main")

    pulled = run_module(capsys, {"path": str(work), "state": "pulled"})
    assert pulled["changed"] is True and (work / "sync.yaml").is_file()
    assert run_module(capsys, {"path": str(work), "state": "pulled"})["changed"] is False

    gone = run_module(capsys, {"path": str(work), "state": "absent"})
    assert gone["changed"] is True and git(work, "remote") == ""
    assert run_module(capsys, {"path": str(work), "state": "absent"})["changed"] is False


def test_warning_for_uncommitted_changes_is_returned(repos, capsys):
    work, server = repos
    (work / "README.md").write_text("edited\n")
    res = run_module(capsys, {"path": str(work), "url": str(server)})
    assert res["changed"] is True
    # ansible-core 2.19 returns warnings as structured events; older cores as plain strings.
    texts = [w if isinstance(w, str) else w["event"]["msg"] for w in res.get("warnings", [])]
    assert any("only committed work is published" in t for t in texts)


def test_the_documentation_is_valid_yaml_and_matches_the_argument_spec():
    doc = yaml.safe_load(git_seed.DOCUMENTATION)
    assert set(doc["options"]) == {"path", "remote", "url", "branch", "state", "require_clean", "token"}
    assert set(doc["attributes"]) == {"check_mode", "diff_mode", "idempotent"}
    yaml.safe_load(git_seed.EXAMPLES)
    yaml.safe_load(git_seed.RETURN)
