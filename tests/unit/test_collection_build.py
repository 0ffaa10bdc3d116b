"""The collection tarball holds what a Galaxy user needs and none of a developer's caches or local artefacts.

The test copies the repository's tracked files into a temporary directory, plants the caches and local files a
clone collects after `make test` (ruff, hypothesis and pytest caches, __pycache__, .venv, tests/output, molecule
caches, an old tarball, editor files, coverage data, a .env), runs `ansible-galaxy collection build` on the copy
and reads the tarball.

Run this file directly (`.venv/bin/python -m tests.unit.test_collection_build` from the repository root) to build
the checkout as it is and print the tarball's top-level folders with their file counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_GALAXY = Path(sys.executable).parent / "ansible-galaxy"

# Files a clone collects that are nobody's business but the developer's (relative to the collection root).
PLANTED = (
    ".ruff_cache/0.14.0/cache",
    ".hypothesis/examples/x",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/x.json",
    "plugins/module_utils/__pycache__/kind.cpython-311.pyc",
    "plugins/modules/stale.pyc",
    "tests/output/test-cluster/kubeconfig",
    ".venv/bin/python",
    ".cache/filewcount-gitops/bin/flux",
    "molecule/default/.cache/x",
    "molecule/default/.molecule/state.yml",
    "roles/kind/.cache/x",
    "filewcount-gitops-0.0.1.tar.gz",
    "build/filewcount-gitops-0.0.2.tar.gz",
    ".coverage",
    "htmlcov/index.html",
    ".vscode/settings.json",
    ".idea/workspace.xml",
    "roles/flux/tasks/.main.yml.swp",
    "README.md~",
    ".DS_Store",
    ".env",
    "changelogs/.plugin-cache.yaml",
)

# A tarball member with any of these path components, names or endings is a cache or local artefact.
FORBIDDEN_COMPONENTS = frozenset(
    {
        ".ruff_cache",
        ".hypothesis",
        ".pytest_cache",
        ".mypy_cache",
        "__pycache__",
        ".venv",
        ".cache",
        ".molecule",
        ".tox",
        ".git",
        "htmlcov",
        ".vscode",
        ".idea",
    }
)
FORBIDDEN_NAMES = frozenset({".coverage", ".DS_Store", ".env", ".plugin-cache.yaml"})
FORBIDDEN_SUFFIXES = (".pyc", ".pyo", ".tar.gz", ".swp", "~")

# Development-only top-level entries: tests, molecule scenarios, maintainer scripts, CI, the dev symlink tree and the
# files that configure the developer's tools. A user of the installed collection runs none of them.
DEVELOPMENT_ONLY = frozenset(
    {
        "tests",
        "molecule",
        "scripts",
        "collections",
        "build",
        ".ci",
        ".github",
        "Makefile",
        "requirements-test.txt",
        "constraints.txt",
        "ansible.cfg",
        "pyproject.toml",
        ".ansible-lint",
        ".yamllint",
        ".gitignore",
    }
)


def tracked_files(root: Path = ROOT) -> list[str]:
    """The repository's tracked paths (files and symlinks), relative to its root."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p]


def copy_tracked(root: Path, dest: Path) -> None:
    """Copy the tracked files as they are in the working tree; symlinks stay symlinks."""
    for rel in tracked_files(root):
        src, dst = root / rel, dest / rel
        if not src.is_symlink() and not src.exists():  # deleted in the working tree, not yet committed
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)


def build_collection(collection_dir: Path, output_dir: Path) -> Path:
    """Run `ansible-galaxy collection build` and return the tarball it wrote."""
    output_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(ANSIBLE_GALAXY), "collection", "build", str(collection_dir), "--output-path", str(output_dir)],
        cwd=output_dir,  # away from the repository's ansible.cfg
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"ansible-galaxy collection build failed:\n{result.stdout}\n{result.stderr}"
    (tarball,) = output_dir.glob("*.tar.gz")
    return tarball


def tarball_files(tarball: Path) -> list[str]:
    """The regular files and symlinks in the tarball, as relative POSIX paths."""
    with tarfile.open(tarball) as tar:
        return sorted(m.name.removeprefix("./") for m in tar.getmembers() if not m.isdir())


def top_level_counts(tarball: Path) -> dict[str, int]:
    """Files per top-level folder of the tarball ('folder/'); files at the root count under their own name."""
    counts: Counter[str] = Counter()
    for name in tarball_files(tarball):
        parts = PurePosixPath(name).parts
        counts[parts[0] + "/" if len(parts) > 1 else parts[0]] += 1
    return dict(sorted(counts.items(), key=lambda item: (not item[0].endswith("/"), item[0])))


def format_counts(counts: dict[str, int]) -> str:
    width = max(map(len, counts), default=0)
    lines = [f"  {name:<{width}}  {count:>4}" for name, count in counts.items()]
    return "\n".join([*lines, f"  {'total':<{width}}  {sum(counts.values()):>4}"])


def artefacts_in(names: list[str]) -> list[str]:
    """The tarball paths that are caches, local artefacts or development-only files."""
    bad = []
    for name in names:
        parts = PurePosixPath(name).parts
        if (
            FORBIDDEN_COMPONENTS.intersection(parts)
            or parts[-1] in FORBIDDEN_NAMES
            or name.endswith(FORBIDDEN_SUFFIXES)
            or parts[0] in DEVELOPMENT_ONLY
        ):
            bad.append(name)
    return bad


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build a copy of the tracked tree with every planted artefact; return (tarball, its file list)."""
    if not ANSIBLE_GALAXY.exists():
        pytest.skip(f"{ANSIBLE_GALAXY} not found; run from the project's .venv")
    work = tmp_path_factory.mktemp("collection_build")
    collection = work / "gitops"
    copy_tracked(ROOT, collection)
    for rel in PLANTED:
        planted = collection / rel
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_text("planted by test_collection_build\n")
    tarball = build_collection(collection, work / "dist")
    print(f"\n{tarball.name}:\n{format_counts(top_level_counts(tarball))}")
    return tarball, tarball_files(tarball)


def test_tarball_holds_no_cache_local_or_development_file(built):
    names = built[1]
    bad = artefacts_in(names)
    by_top = Counter(PurePosixPath(name).parts[0] for name in bad)
    assert not bad, f"{len(bad)} cache, local or development-only files in the tarball ({dict(by_top)}): {bad[:30]}"


def test_tarball_holds_what_a_user_needs(built):
    tarball, names = built
    tracked = tracked_files()
    roles = sorted({PurePosixPath(p).parts[1] for p in tracked if p.startswith("roles/")})
    must_have = {
        "MANIFEST.json",
        "FILES.json",
        "README.md",
        "COPYING",
        "meta/runtime.yml",
        "requirements.txt",
        "requirements.yml",
        "playbooks/bootstrap.yml",
        # bootstrap reads gitops_mode and the other gitops_* settings from this inventory's group_vars.
        "inventories/local/hosts.yml",
        "inventories/local/group_vars/all/main.yml",
        *(f"roles/{role}/meta/argument_specs.yml" for role in roles),
        *(p for p in tracked if p.startswith(("kube/clusters/kind/", "plugins/modules/", "docs/", "changelogs/"))),
    }
    assert roles, "no roles found in the repository"
    assert any(p.startswith("kube/clusters/kind/") for p in must_have), "no kube/clusters/kind/ files tracked"
    missing = sorted(must_have - set(names))
    assert not missing, f"{tarball.name} lacks {missing}"

    with tarfile.open(tarball) as tar:
        files_json = json.load(tar.extractfile("FILES.json"))
    listed = {entry["name"] for entry in files_json["files"] if entry["ftype"] == "file"}
    assert set(names) - {"MANIFEST.json", "FILES.json"} == listed, "FILES.json disagrees with the tarball"


def main() -> None:
    """Build the checkout as it is (caches and all) and print the tarball's top-level folders with file counts."""
    with tempfile.TemporaryDirectory() as tmp:
        tarball = build_collection(ROOT, Path(tmp))
        names = tarball_files(tarball)
        print(f"{tarball.name}:\n{format_counts(top_level_counts(tarball))}")
        bad = artefacts_in(names)
        if bad:
            print(f"{len(bad)} cache, local or development-only files: {bad}")
            sys.exit(1)


if __name__ == "__main__":
    main()
