"""The whole flow on a cluster the playbooks did not create (gitops_cluster=existing), on the real stack.

The test creates a harness cluster itself (the stand-in kind, with no port mapping, so nothing of it is reachable
from this machine but its API server) and hands the playbooks a copy of its kubeconfig whose context is renamed
`staging`, as a user of an existing cluster does. The apps run behind their Deployments (tests/harness/workloads.py)
and the playbooks reach them through real `kubectl port-forward` processes they start, on free ports given as
gitops_host_ports (so this test needs no lock on the default host ports and runs beside the others):

- bootstrap converges: preflight checks the cluster (no Docker), the local git server is seeded through its
  port-forward, the real Flux controllers sync the tree, monitoring and filewcount are proved through theirs, and the
  summary prints the URLs that work (GET through them answers);
- the re-run and bootstrap --check report changed=0 and send no write request (the audit log of the kubeconfig's
  user, kubernetes-admin);
- status reports on the cluster; sync publishes through the git server's port-forward; upgrade to 2.0 rolls
  filewcount through GitOps (the page answering through its restarted port-forward names the new image), and the
  same upgrade again changes nothing;
- teardown stops the port-forwards and removes what bootstrap installed (workloads, Helm releases, Flux, its CRDs,
  the namespaces), keeps the cluster, and its re-run changes nothing and writes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit  # noqa: E402
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

NAMESPACES = ("flux-system", "filewcount", "monitoring", "git-server")
CONTEXT = "staging"
# Preflight asks the API server about the caller (cluster_check's RBAC and identity checks): creates that store
# nothing, so they are not writes to the cluster (as in test_cluster_check.py).
SELF_REVIEWS = ("authorization.k8s.io/selfsubjectaccessreviews", "authentication.k8s.io/selfsubjectreviews")


def playbook(env: dict, name: str, extra: dict, *flags: str) -> subprocess.CompletedProcess:
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        f"playbooks/{name}",
        f"--extra-vars=@{kind_harness.HARNESS_VARS}",
        f"--extra-vars={json.dumps(extra)}",
        *flags,
    ]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)


def ok(proc: subprocess.CompletedProcess) -> tuple[int, int]:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    return kind_harness.recap(proc)


def names(kubeconfig: Path, *what: str) -> list[str]:
    proc = harness.kubectl(kubeconfig, "get", *what, "-o", "json", check=False)
    if proc.returncode != 0:
        return []  # the kind itself is gone (its CRD was deleted)
    return [f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in json.loads(proc.stdout)["items"]]


def writes(state, since: int) -> list[str]:
    """The write requests of kubernetes-admin since the mark, without preflight's self reviews."""
    counted = audit.count(state.audit_log, since)
    reviews = tuple(f"create {r}" for r in SELF_REVIEWS)
    return [w for w in counted["write_requests"] if not w.startswith(reviews)]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read().decode("utf-8", "replace")


def forward_pids(state_dir: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in sorted((state_dir / "port-forwards").glob("*.json"))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_existing_cluster_bootstrap_rerun_check_status_teardown(tmp_path):
    kind_harness.clone_checkout(tmp_path)
    env = kind_harness.bootstrap_environment(tmp_path)
    ctx, extra = kind_harness.existing(tmp_path, env, CONTEXT)
    state, admin = ctx["state"], ctx["state"].components_kubeconfig
    state_dir = tmp_path / "state"
    ports = {entry["node_port"]: entry["host_port"] for entry in extra["gitops_host_ports"]}
    try:
        first = playbook(env, "bootstrap.yml", extra)
        assert ok(first)[0] > 0
        filewcount, grafana = f"http://localhost:{ports[30080]}/", f"http://localhost:{ports[30081]}"
        assert f"filewcount:      {filewcount}" in first.stdout
        assert f"Grafana:         {grafana}" in first.stdout
        assert "Port-forwards:" in first.stdout
        assert "kind cluster" not in first.stdout.split("PLAY RECAP")[-1]
        assert get(filewcount)[0] == 200
        assert get(f"{grafana}/api/health")[0] == 200
        pids = forward_pids(state_dir)
        assert len(pids) == 3 and all(alive(pid) for pid in pids), pids
        assert names(admin, "helmreleases", "-A"), "bootstrap left no HelmRelease to uninstall"
        assert names(admin, "secrets", "-A", "-l", "owner=helm"), "no Helm release Secret before teardown"

        since = audit.mark(state.audit_log)
        second = playbook(env, "bootstrap.yml", extra)
        assert ok(second) == (0, 0), second.stdout[-6000:]
        assert writes(state, since) == []
        assert forward_pids(state_dir) == pids, "the re-run restarted a running port-forward"

        since = audit.mark(state.audit_log)
        check = playbook(env, "bootstrap.yml", extra, "--check")
        assert ok(check) == (0, 0), check.stdout[-6000:]
        assert writes(state, since) == []

        ok(playbook(env, "status.yml", extra))

        # The GitOps loop through the git server's port-forward: publish, then upgrade filewcount and back.
        ok(playbook(env, "sync.yml", extra))
        author = {"upgrade_git_author_name": "pytest", "upgrade_git_author_email": "pytest@filewcount.invalid"}
        upgrade = playbook(env, "upgrade.yml", {**extra, **author, "filewcount_image_tag": "2.0"})
        assert ok(upgrade)[0] > 0
        assert "image: docker.io/bldrtech/filewcount:2.0" in get(filewcount)[1]
        assert ok(playbook(env, "upgrade.yml", {**extra, **author, "filewcount_image_tag": "2.0"})) == (0, 0)
        pids = forward_pids(state_dir)  # upgrade restarted filewcount's, which pinned a replaced pod
        assert len(pids) == 3 and all(alive(pid) for pid in pids), pids

        teardown = playbook(env, "teardown.yml", extra)
        assert ok(teardown)[0] > 0
        assert not [pid for pid in pids if alive(pid)], "teardown left a port-forward running"
        assert state.load(), "teardown of an existing cluster stopped it"
        assert "/kube-system" in names(admin, "namespaces")
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
        again = playbook(env, "teardown.yml", extra)
        assert ok(again) == (0, 0), again.stdout[-3000:]
        assert writes(state, since) == []
    finally:
        kind_harness.stop_port_forwards(state_dir)
        kind_harness.delete(ctx)


def bad_input(tmp_path: Path, name: str, **extra) -> str:
    """Run a playbook with gitops_cluster=existing and extra; it must fail and print one sentence, the last words."""
    kind_harness.clone_checkout(tmp_path)
    env = dict(kind_harness.bootstrap_environment(tmp_path), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    proc = playbook(env, name, {"gitops_cluster": "existing", **extra})
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert kind_harness.recap(proc)[1] == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout


def test_bootstrap_names_a_context_the_kubeconfig_lacks(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "prod", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me"}}],
            }
        ),
        encoding="utf-8",
    )
    kubeconfig.chmod(0o600)
    out = bad_input(tmp_path, "bootstrap.yml", gitops_kubeconfig=str(kubeconfig), gitops_kube_context="staging")
    assert f"The kubeconfig {kubeconfig} has no context staging (contexts in it: prod)" in out, out[-3000:]
    assert "not-a-secret" not in out


def test_the_load_test_refuses_an_existing_cluster_with_one_sentence(tmp_path):
    out = bad_input(tmp_path, "load_test.yml", gitops_kube_context="staging")
    assert "gitops_cluster is existing, where 'Load-test filewcount and watch the autoscaler' does not run yet" in out
