"""docs/gitops.md's examples work as written on this tree.

Each example's bash block runs in a scratch repository holding a copy of kube/, with a bare repository as
the remote ``local`` (what local mode adds) and a stand-in ``kubectl`` on PATH, since no cluster runs here.
After each step the pushed branch holds the change and the tree still passes every manifest check, with the
new object applied by the ``apps`` Kustomization.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate

DOC = validate.REPO_ROOT / "docs" / "gitops.md"
POSITIVE = Path(__file__).resolve().parent / "fixtures" / "positive" / "flux-system-committed"
STEPS = (
    "Before you start",
    "Create a resource: add a manifest",
    "Delete a resource: remove the manifest",
    "Upgrade to 2.0",
    "Downgrade to 1.0",
)


def _blocks() -> dict[str, str]:
    """The first ```bash block after each heading of docs/gitops.md."""
    out: dict[str, str] = {}
    heading = None
    for match in re.finditer(r"^#+ ([^\n]+)$|^```bash\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL):
        if match.group(1):
            heading = match.group(1).strip()
        elif heading and heading not in out:
            out[heading] = match.group(2)
    return out


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    work, bare, bin_dir = tmp_path / "work", tmp_path / "filewcount.git", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    shutil.copytree(validate.REPO_ROOT / "kube", work / "kube")
    kubectl = bin_dir / "kubectl"
    kubectl.write_text('#!/bin/sh\necho "kubectl $*"\n')
    kubectl.chmod(0o755)
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    _git(work, "init", "--quiet", "--initial-branch=main")
    _git(work, "add", "kube")
    _git(work, "commit", "--quiet", "-m", "Seed")
    _git(work, "remote", "add", "local", str(bare))
    _git(work, "push", "--quiet", "local", "HEAD:main")
    # Bootstrap then commits flux-system/ to the server's branch from another clone.
    other = tmp_path / "bootstrap"
    _git(tmp_path, "clone", "--quiet", "--branch", "main", str(bare), str(other))
    shutil.copytree(POSITIVE / "kube", other / "kube", dirs_exist_ok=True)
    _git(other, "add", "kube")
    _git(other, "-c", "user.name=Flux", "-c", "user.email=flux@localhost", "commit", "--quiet", "-m", "Add Flux")
    _git(other, "push", "--quiet", "origin", "HEAD:main")
    return work


def _run(block: str, work: Path) -> None:
    env = dict(os.environ)
    env.update(
        PATH=f"{work.parent / 'bin'}{os.pathsep}{env['PATH']}",
        REMOTE="local",
        GIT_AUTHOR_NAME="docs test",
        GIT_AUTHOR_EMAIL="docs@example.invalid",
        GIT_COMMITTER_NAME="docs test",
        GIT_COMMITTER_EMAIL="docs@example.invalid",
    )
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _pushed(work: Path, path: str) -> str | None:
    proc = subprocess.run(
        ["git", "--git-dir", str(work.parent / "filewcount.git"), "show", f"main:{path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout if proc.returncode == 0 else None


def _assert_valid(root: Path, schemas: Path) -> validate.Tree:
    tree = validate.load_tree(root, schemas)
    assert {name: check(tree) for name, check in validate.CHECKS.items()} == {n: [] for n in validate.CHECK_NAMES}
    return tree


def test_docs_have_every_example() -> None:
    blocks = _blocks()
    for step in STEPS:
        assert step in blocks, f"docs/gitops.md lost the example {step!r}"
    for step in STEPS[1:]:
        assert 'git push "$REMOTE" HEAD:main' in blocks[step]


def test_apps_directory_lets_flux_generate_its_kustomization() -> None:
    """The create/delete examples rely on kube/apps/ having no kustomization file."""
    assert not any((validate.REPO_ROOT / "kube/apps" / name).exists() for name in validate.KUSTOMIZATION_FILES)


def test_examples_work_as_written(checkout: Path, schemas: Path) -> None:
    blocks = _blocks()
    image = "docker.io/bldrtech/filewcount"

    _run(blocks[STEPS[0]], checkout)  # pulls bootstrap's flux-system commit
    assert (checkout / "kube/clusters/kind/flux-system/gotk-sync.yaml").is_file()

    _run(blocks[STEPS[1]], checkout)
    assert _pushed(checkout, "kube/apps/sync-example.yaml") is not None
    tree = _assert_valid(checkout, schemas)
    apps = next(u for u in tree.units if u.path == "kube/apps")
    assert ("Namespace", "sync-example") in {(o.kind, o.name) for o in apps.objects}

    _run(blocks[STEPS[2]], checkout)
    assert _pushed(checkout, "kube/apps/sync-example.yaml") is None
    _assert_valid(checkout, schemas)

    for step, tag in ((STEPS[3], "2.0"), (STEPS[4], "1.0")):
        _run(blocks[step], checkout)
        pushed = yaml.safe_load(_pushed(checkout, "kube/apps/filewcount/deployment.yaml") or "")
        assert pushed["spec"]["template"]["spec"]["containers"][0]["image"] == f"{image}:{tag}"
        assert not _git(checkout, "status", "--porcelain")
        _assert_valid(checkout, schemas)
