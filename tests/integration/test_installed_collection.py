"""The collection as users install it (harness: real control plane and Flux, stand-in kind and flux CLIs).

`ansible-galaxy collection build` packs this checkout; `ansible-galaxy collection install` puts the tarball into an
empty collections path. From then on nothing of this checkout is used: no ansible.cfg, no inventory, no
collections/ symlink. As a user would:

- `ansible-playbook filewcount.gitops.init` creates a repository of their own from the starter tree (a second run
  changes nothing);
- in that repository, `ansible-playbook filewcount.gitops.bootstrap` brings the harness cluster up and Flux syncs
  the user's repository; then `--check` reports changed=0 and sends no write request (the API server's audit log);
- `filewcount.gitops.status` reports the Flux objects and `filewcount.gitops.teardown` removes the cluster;
- run outside any git repository, bootstrap stops at once with one sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
import audit  # noqa: E402
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

BIN = Path(sys.executable).parent
NOT_A_REPOSITORY = "is not inside a git repository, so there is no GitOps repository for Flux to sync"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The tarball built from this checkout, installed into an empty collections path."""
    tmp = tmp_path_factory.mktemp("installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", ROOT, "--output-path", tmp / "dist"],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
    )
    [tarball] = (tmp / "dist").glob("filewcount-gitops-*.tar.gz")
    # --no-deps: kubernetes.core comes from the pip-installed ansible package (requirements.txt), not Galaxy.
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--no-deps", "-p", tmp / "collections", tarball],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
    )
    assert (tmp / "collections" / "ansible_collections" / "filewcount" / "gitops" / "playbooks" / "init.yml").is_file()
    return tmp / "collections"


def user_environment(tmp: Path, collections: Path) -> dict[str, str]:
    """The harness environment with no trace of this checkout's Ansible configuration."""
    env = kind_harness.bootstrap_environment(tmp)
    for key in [k for k in env if k.startswith("ANSIBLE_")]:
        del env[key]
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="true", ANSIBLE_FORCE_COLOR="false")
    return env


def run(env: dict, cwd: Path, playbook: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ansible-playbook"), playbook, *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess) -> tuple[int, int]:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    return kind_harness.recap(proc)


def test_outside_a_git_repository_bootstrap_says_so(installed, tmp_path):
    env = user_environment(tmp_path, installed)
    plain = tmp_path / "not-a-repository"
    plain.mkdir()
    proc = run(env, plain, "filewcount.gitops.bootstrap", "--check")
    assert proc.returncode != 0
    assert NOT_A_REPOSITORY in proc.stdout, proc.stdout[-3000:]
    assert "ansible-playbook filewcount.gitops.init" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "standin" / "kind").exists(), "bootstrap went past the repository check"


def test_a_repository_without_the_sync_path_is_named(installed, tmp_path):
    env = user_environment(tmp_path, installed)
    repo = tmp_path / "empty-repo"
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    proc = run(env, repo, "filewcount.gitops.bootstrap", "--check")
    assert proc.returncode != 0
    assert f"{repo} has no directory kube/clusters/kind for Flux to sync" in proc.stdout, proc.stdout[-3000:]


def test_a_user_repository_from_the_starter_tree_bootstraps(installed, tmp_path):
    env = user_environment(tmp_path, installed)
    repo = tmp_path / "my-gitops"

    assert ok(run(env, tmp_path, "filewcount.gitops.init", "-e", f"gitops_repository_dir={repo}"))[0] > 0
    assert ok(run(env, tmp_path, "filewcount.gitops.init", "-e", f"gitops_repository_dir={repo}")) == (0, 0)
    tracked = subprocess.run(["git", "ls-files", "kube"], cwd=repo, capture_output=True, text=True, check=True)
    starter = subprocess.run(["git", "ls-files", "kube"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert sorted(tracked.stdout.split()) == sorted(starter.stdout.split())
    clean = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True)
    assert clean.stdout == ""

    with kind_harness.default_host_ports():
        try:
            ok(run(env, repo, "filewcount.gitops.bootstrap"))
            state = harness.Cluster.at(tmp_path / "standin" / "kind", "filewcount")
            assert state.load()

            # Flux syncs the user's repository: the revision it applied is one of that repository's commits.
            applied = json.loads(
                harness.kubectl(
                    state.components_kubeconfig,
                    "get",
                    "kustomization",
                    "flux-system",
                    "-n",
                    "flux-system",
                    "-o",
                    "json",
                ).stdout
            )["status"]["lastAppliedRevision"]
            sha = applied.rpartition(":")[2]
            known = subprocess.run(["git", "merge-base", "--is-ancestor", sha, "HEAD"], cwd=repo, check=False)
            assert known.returncode == 0, f"Flux applied {applied}, which is not in the user's repository"

            since = audit.mark(state.audit_log)
            check = run(env, repo, "filewcount.gitops.bootstrap", "--check")
            counted = audit.count(state.audit_log, since)
            assert ok(check) == (0, 0), check.stdout[-3000:]
            assert counted["requests"] > 0 and counted["writes"] == 0, counted

            status = run(env, repo, "filewcount.gitops.status")
            ok(status)
            assert "flux-system" in status.stdout and "filewcount" in status.stdout, status.stdout[-3000:]
        finally:
            down = run(env, repo, "filewcount.gitops.teardown")
        ok(down)
    assert not (tmp_path / "standin" / "kind" / "clusters" / "filewcount").exists(), "teardown left the cluster"
