"""Teardown of a cluster the playbooks did not create (gitops_cluster=existing), on the real stack.

playbooks/bootstrap.yml brings the harness cluster up as a user runs it (real control plane, real Flux controllers,
real charts). Then playbooks/teardown.yml with gitops_cluster=existing, naming the kubeconfig and context as a user
of an existing cluster does, must remove what bootstrap installed and keep the cluster:

- the tree's workloads (filewcount), its Helm releases (uninstalled by the real helm-controller: no release Secret
  left), Flux's controllers, CRDs and sync objects, and the namespaces (flux-system, filewcount, monitoring,
  git-server) are gone, none left Terminating behind a finalizer that no controller runs any more;
- the API server still answers and kube-system is still there;
- a second run reports changed=0 and sends no write request (the audit log of kind's user kubernetes-admin).
"""

from __future__ import annotations

import json
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

NAMESPACES = ("flux-system", "filewcount", "monitoring", "git-server")


def playbook(env: dict, name: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        f"playbooks/{name}",
        f"--extra-vars=@{kind_harness.HARNESS_VARS}",
        *extra,
    ]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)


def ok(proc: subprocess.CompletedProcess) -> tuple[int, int]:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}"
    return kind_harness.recap(proc)


def names(kubeconfig: Path, *what: str) -> list[str]:
    proc = harness.kubectl(kubeconfig, "get", *what, "-o", "json", check=False)
    if proc.returncode != 0:
        return []  # the kind itself is gone (its CRD was deleted)
    return [f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in json.loads(proc.stdout)["items"]]


def test_teardown_of_an_existing_cluster_removes_what_bootstrap_installed_and_keeps_the_cluster(tmp_path):
    kind_harness.clone_checkout(tmp_path)
    env = kind_harness.bootstrap_environment(tmp_path)
    kubeconfig = tmp_path / "state" / "kubeconfig"
    existing = [
        "-e",
        "gitops_cluster=existing",
        "-e",
        f"gitops_kubeconfig={kubeconfig}",
        "-e",
        "gitops_kube_context=kind-filewcount",
    ]
    with kind_harness.default_host_ports():
        try:
            ok(playbook(env, "bootstrap.yml"))
            state = harness.Cluster.at(tmp_path / "standin" / "kind", "filewcount")
            assert state.load()
            admin = state.components_kubeconfig
            assert names(admin, "helmreleases", "-A"), "bootstrap left no HelmRelease to uninstall"
            assert names(admin, "secrets", "-A", "-l", "owner=helm"), "no Helm release Secret before teardown"

            first = playbook(env, "teardown.yml", *existing)
            assert ok(first)[0] > 0

            # The cluster stays: the API server answers and kube-system is there.
            assert state.load()
            assert "/kube-system" in names(admin, "namespaces")
            # What bootstrap installed is gone, with nothing left behind a finalizer.
            left = set(names(admin, "namespaces")) & {f"/{n}" for n in NAMESPACES}
            assert not left, f"namespaces left (Terminating?): {left}"
            assert not [n for n in names(admin, "crds") if n.endswith(".fluxcd.io")], names(admin, "crds")
            assert not names(admin, "secrets", "-A", "-l", "owner=helm"), "a Helm release was not uninstalled"
            assert not names(admin, "deployments", "-n", "kube-system", "-l", "app.kubernetes.io/name=metrics-server")
            assert not names(admin, "apiservices", "-l", "app.kubernetes.io/name=metrics-server")
            remotes = subprocess.run(
                ["git", "remote"], cwd=tmp_path / "checkout", capture_output=True, text=True, check=True
            )
            assert "local" not in remotes.stdout.split()

            since = audit.mark(state.audit_log)
            second = playbook(env, "teardown.yml", *existing)
            counted = audit.count(state.audit_log, since)
            assert ok(second) == (0, 0), second.stdout[-3000:]
            assert counted["writes"] == 0, counted
        finally:
            ok(playbook(env, "teardown.yml"))
    assert not (tmp_path / "standin" / "kind" / "clusters" / "filewcount").exists(), "teardown left the cluster"
