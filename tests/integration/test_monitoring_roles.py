"""The monitoring and filewcount roles, playbooks/status.yml and playbooks/upgrade.yml run with ansible-playbook
against the emulated Kubernetes API (controllers mode) with the kube/ tree applied as Flux would, the fake Grafana
and filewcount NodePorts (tests/harness/nodeports/np_3008[01].py) and real git repositories."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "monitoring_roles.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
KUBECTL = Path(sys.executable).with_name("kubectl")
EMULATOR = ROOT / "tests" / "harness" / "emulator" / "emulator.py"
NODEPORTS = ROOT / "tests" / "harness" / "nodeports" / "server.py"
FLUX = ROOT / "tests" / "harness" / "bin" / "flux"
CRDS = Path(os.environ.get("FILEWCOUNT_SCHEMAS", ROOT.parent / "shared" / "schemas")) / "crds"
MANIFEST = "kube/apps/filewcount/deployment.yaml"
NODE = """apiVersion: v1
kind: Node
metadata:
  name: filewcount-control-plane
  labels: {kubernetes.io/hostname: filewcount-control-plane}
"""
GITREPO = """apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: flux-system, namespace: flux-system}
spec:
  interval: 1m
  url: http://git-server.git-server.svc.cluster.local/filewcount.git
  ref: {branch: main}
"""


def _free_ports(count):
    socks = [socket.socket() for _attempt in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


class Cluster:
    def __init__(self, tmp: Path, fail: list[str]):
        self.tmp = tmp
        self.state = tmp / "emulator"
        self.procs: list[subprocess.Popen] = []
        args = [sys.executable, str(EMULATOR), "serve", "--state-dir", str(self.state), "--controllers"]
        for rule in fail:
            args += ["--fail", rule]
        self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        info = self.state / "emulator.json"
        for _attempt in range(600):
            if info.exists():
                break
            time.sleep(0.1)
        else:
            self.stop()
            pytest.fail("the emulator did not start within 60 s")
        meta = json.loads(info.read_text())
        self.kubeconfig, self.url = meta["kubeconfig"], meta["url"]
        self.env = dict(
            os.environ,
            KUBECONFIG=self.kubeconfig,
            STANDIN_API_SERVER=self.url,
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            HOME=str(tmp / "home"),
            FLUX_STANDIN_CRDS_DIR=str(CRDS),
        )
        self.app_port, self.grafana_port = _free_ports(2)
        self.np_state = tmp / "nodeports"
        self.np_state.mkdir()
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(NODEPORTS),
                    "--kubeconfig",
                    self.kubeconfig,
                    "--context",
                    "kind-filewcount",
                    "--state-dir",
                    str(self.np_state),
                    "--map",
                    f"127.0.0.1:{self.app_port}=30080",
                    "--map",
                    f"127.0.0.1:{self.grafana_port}=30081",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self.state_dir = tmp / "state" / "filewcount-gitops"

    def kubectl(self, *args, stdin=None, check=True):
        return subprocess.run(
            [str(KUBECTL), *args], input=stdin, env=self.env, capture_output=True, text=True, check=check
        ).stdout

    def apply_tree(self, path):
        built = self.kubectl("kustomize", str(ROOT / path))
        self.kubectl("apply", "--server-side", "-f", "-", stdin=built)

    def flux_synced(self):
        """What bootstrap + Flux would have produced: controllers, CRDs, sync objects and the kube/ tree applied."""
        self.kubectl("apply", "-f", "-", stdin=NODE)
        components = subprocess.run(
            [sys.executable, str(FLUX), "install", "--export"], env=self.env, capture_output=True, text=True, check=True
        ).stdout
        self.kubectl("apply", "--server-side", "-f", "-", stdin=components)
        for crd in sorted(CRDS.glob("monitoring.coreos.com_*.yaml")):
            self.kubectl("apply", "--server-side", "-f", str(crd))
        self.kubectl("apply", "-f", "-", stdin=GITREPO)
        for path in sorted((ROOT / "kube" / "clusters" / "kind").glob("*.yaml")):
            self.kubectl("apply", "-f", str(path))
        for path in ("kube/infrastructure/controllers", "kube/infrastructure/configs", "kube/apps/filewcount"):
            self.apply_tree(path)

    def play(self, playbook=PLAYBOOK, check=False, **extra):
        extra = {
            "test_kubeconfig": self.kubeconfig,
            "test_state_dir": str(self.state_dir),
            "test_grafana_port": self.grafana_port,
            "test_app_port": self.app_port,
            **extra,
        }
        argv = [str(ANSIBLE_PLAYBOOK), str(playbook), "-e", json.dumps(extra)] + (["--check"] if check else [])
        proc = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)
        try:
            report = json.loads(proc.stdout[proc.stdout.index("{") :])
        except ValueError:
            pytest.fail(f"no JSON from ansible-playbook (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}")
        return proc, report["stats"]["localhost"], report

    def stop(self):
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(timeout=10)


def _failure_message(report):
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get("localhost", {})
            if result.get("failed"):
                return result.get("msg", "")
    return ""


def _secret_password(cluster):
    data = json.loads(cluster.kubectl("get", "secret", "-n", "monitoring", "grafana-admin", "-o", "json"))["data"]
    return base64.b64decode(data["admin-password"]).decode(), base64.b64decode(data["admin-user"]).decode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("monitoring"), [])
    yield c
    c.stop()


@pytest.fixture
def synced(cluster):
    """The module's cluster after Flux synced (done once, after the credentials test used it empty)."""
    if not getattr(cluster, "synced", False):
        cluster.play(test_steps=["credentials"])
        cluster.flux_synced()
        cluster.synced = True
    return cluster


def test_credentials_before_flux_are_generated_once_and_kept(cluster):
    proc, stats, _report = cluster.play(test_steps=["credentials"])
    assert stats["failures"] == 0, proc.stdout
    assert stats["changed"] == 4  # state dir, password file, namespace, Secret
    pw_file = cluster.state_dir / "grafana-admin-password"
    password = pw_file.read_text()
    assert len(password) == 32 and password.isalnum()
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster.state_dir.stat().st_mode) == 0o700
    assert _secret_password(cluster) == (password, "admin")
    assert password not in proc.stdout + proc.stderr
    proc, stats, _report = cluster.play(test_steps=["credentials"])
    assert stats["changed"] == 0, proc.stdout
    proc, stats, _report = cluster.play(test_steps=["credentials"], check=True)
    assert stats["changed"] == 0 and stats["failures"] == 0, proc.stdout
    # The cluster lost its Secret (re-created cluster): the saved file brings the same password back.
    cluster.kubectl("delete", "secret", "-n", "monitoring", "grafana-admin")
    proc, stats, _report = cluster.play(test_steps=["credentials"])
    assert stats["changed"] == 1
    assert _secret_password(cluster)[0] == password
    # The file was lost: the cluster's Secret wins and the file is written again.
    pw_file.unlink()
    proc, stats, _report = cluster.play(test_steps=["credentials"])
    assert stats["changed"] == 1
    assert pw_file.read_text() == password
    assert password not in proc.stdout + proc.stderr


def test_check_mode_on_an_empty_cluster_changes_nothing(tmp_path):
    fresh = Cluster(tmp_path, [])
    try:
        proc, stats, _report = fresh.play(test_steps=["credentials"], check=True)
        assert stats["failures"] == 0, proc.stdout
        assert not (fresh.state_dir / "grafana-admin-password").exists()
        assert "namespace/monitoring" not in fresh.kubectl("get", "namespaces", "-o", "name")
    finally:
        fresh.stop()


def test_wait_and_prove_after_flux_synced(synced):
    cluster = synced
    proc, stats, report = cluster.play(test_run_filewcount=True)
    assert stats["failures"] == 0, _failure_message(report) or proc.stdout
    assert stats["changed"] == 0
    out = proc.stdout
    assert "Prometheus targets up: kubelet, cAdvisor, kube-state-metrics, Flux source-controller" in out
    assert "Grafana lists the dashboards flux-cluster, filewcount" in out
    assert "HPA filewcount/filewcount reads CPU 5% (target 70%)" in out
    assert "answered 200" in out
    assert cluster.state_dir.joinpath("grafana-admin-password").read_text() not in out
    proc, stats, report = cluster.play(test_run_filewcount=True, check=True)
    assert stats["failures"] == 0 and stats["changed"] == 0, _failure_message(report)


def test_prove_failures_name_what_failed(synced):
    cluster = synced
    knob = cluster.np_state / "prometheus-down-jobs"
    knob.write_text("kube-state-metrics\n")
    try:
        _proc, stats, report = cluster.play(test_steps=["prove"])
    finally:
        knob.unlink()
    assert stats["failures"] == 1
    message = _failure_message(report)
    assert "Prometheus targets not up after 4s" in message
    assert "kube-state-metrics: 1 target(s), none up" in message
    assert "marked down by prometheus-down-jobs" in message

    cluster.kubectl("delete", "configmap", "-n", "monitoring", "dashboard-filewcount")
    try:
        _proc, stats, report = cluster.play(test_steps=["prove"])
    finally:
        cluster.apply_tree("kube/infrastructure/configs")
    assert (
        "Grafana does not list the dashboard uid(s) filewcount after 4s (it lists: flux-cluster)"
        in _failure_message(report)
    )


def test_wrong_grafana_password_is_named_at_once(synced):
    cluster = synced
    knob = cluster.np_state / "grafana-db-password"
    knob.write_text("the-password-grafana-kept\n")
    try:
        started = time.monotonic()
        _proc, stats, report = cluster.play(test_steps=["prove"], test_timeout=60)
        elapsed = time.monotonic() - started
    finally:
        knob.unlink()
    assert stats["failures"] == 1
    message = _failure_message(report)
    assert message.startswith("Grafana answered /api/search with 401 for the user in Secret monitoring/grafana-admin")
    assert "reset-admin-password" in message
    assert elapsed < 60  # a 401 is final: the role does not retry until the timeout


def test_filewcount_failures_name_the_step(synced):
    cluster = synced
    cluster.kubectl("delete", "hpa", "-n", "filewcount", "filewcount")
    try:
        _proc, stats, report = cluster.play(test_steps=[], test_run_filewcount=True)
    finally:
        cluster.apply_tree("kube/apps/filewcount")
    assert stats["failures"] == 1
    assert _failure_message(report).startswith(
        "Step 3/4 (HPA metrics) failed after 4s: HorizontalPodAutoscaler filewcount/filewcount does not exist"
    )


def test_failed_release_shows_its_condition(tmp_path):
    failing = Cluster(
        tmp_path,
        [
            "HelmRelease/monitoring/kube-prometheus-stack=InstallFailed:"
            "Helm install failed: timed out waiting for the condition"
        ],
    )
    try:
        failing.flux_synced()
        _proc, stats, report = failing.play(test_steps=["credentials", "wait"])
        assert stats["failures"] == 1
        message = _failure_message(report)
        assert "HelmRelease(s) not Ready after 4s" in message
        assert (
            "HelmRelease monitoring/kube-prometheus-stack: Ready=False reason=InstallFailed "
            "message=Helm install failed: timed out waiting for the condition"
        ) in message
        assert "metrics-server" not in message.split("after 4s:")[1].split(".")[0]
    finally:
        failing.stop()


def test_status_report(synced):
    cluster = synced
    _proc, stats, report = cluster.play(ROOT / "playbooks" / "status.yml", status_kubeconfig=cluster.kubeconfig)
    assert stats["failures"] == 0 and stats["changed"] == 0
    msg = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]["msg"]
    for needle in (
        "Flux sources",
        "GitRepository  flux-system/flux-system  Ready=True",
        "HelmRelease  monitoring/kube-prometheus-stack  Ready=True  kube-prometheus-stack@88.5.3",
        "desired (min 3, max 10)  CPU 5% of target 70%",
        "Node  filewcount-control-plane",
        "Recent Warning events (newest first)",
    ):
        assert needle in msg


# ------------------------------------------------------------------------------------------------- upgrade
def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    """A checkout holding the real deployment manifest, with a bare remote named local (the sync source)."""
    bare, work = tmp_path / "filewcount.git", tmp_path / "work"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    _git(tmp_path, "init", "--quiet", "--initial-branch=main", str(work))
    for key, value in (("user.name", "Test"), ("user.email", "test@example.invalid")):
        _git(work, "config", key, value)
    (work / MANIFEST).parent.mkdir(parents=True)
    shutil.copy(ROOT / MANIFEST, work / MANIFEST)
    _git(work, "add", ".")
    _git(work, "commit", "--quiet", "-m", "seed")
    _git(work, "remote", "add", "local", str(bare))
    _git(work, "push", "--quiet", "local", "main")
    return work, bare


class FakeFluxApplier(threading.Thread):
    """Stands in for kustomize-controller: once the apps Kustomization's reconcile request was handled, applies
    the deployment manifest from the remote's main branch (what Flux would apply)."""

    def __init__(self, cluster, bare):
        super().__init__(daemon=True)
        self.cluster, self.bare, self.stop = cluster, bare, threading.Event()

    def run(self):
        seen = ""
        while not self.stop.wait(0.5):
            status = json.loads(
                self.cluster.kubectl("get", "kustomization", "-n", "flux-system", "apps", "-o", "json")
            )["status"]
            if status.get("lastHandledReconcileAt", "") != seen:
                seen = status.get("lastHandledReconcileAt", "")
                text = _git(self.bare, "show", f"main:{MANIFEST}")
                self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text)


def test_upgrade_and_downgrade_through_gitops(synced, checkout):
    cluster = synced
    work, bare = checkout
    applier = FakeFluxApplier(cluster, bare)
    applier.start()
    common = {
        "upgrade_repo_dir": str(work),
        "upgrade_kubeconfig": cluster.kubeconfig,
        "upgrade_kube_context": "",
        "upgrade_require_pushed_revision": False,
        "upgrade_timeout": 20,
        "upgrade_poll_delay": 1,
    }
    upgrade = ROOT / "playbooks" / "upgrade.yml"
    try:
        proc, stats, report = cluster.play(upgrade, filewcount_image_tag="2.0", **common)
        assert stats["failures"] == 0, _failure_message(report) or proc.stdout
        assert stats["changed"] == 2  # the commit + push, and the reconcile annotations (one loop task)
        msg = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]["msg"]
        assert "Changed docker.io/bldrtech/filewcount:1.0 to docker.io/bldrtech/filewcount:2.0" in msg
        assert (
            "Cluster ran before: docker.io/bldrtech/filewcount:1.0\nCluster runs now: docker.io/bldrtech/filewcount:2.0"
        ) in msg
        assert "filewcount:2.0" in _git(bare, "show", f"main:{MANIFEST}")
        for kind, name in (("gitrepository", "flux-system"), ("kustomization", "apps")):
            annotations = json.loads(cluster.kubectl("get", kind, "-n", "flux-system", name, "-o", "json"))["metadata"][
                "annotations"
            ]
            assert "reconcile.fluxcd.io/requestedAt" in annotations
        proc, stats, report = cluster.play(upgrade, filewcount_image_tag="2.0", **common)
        assert stats["changed"] == 0 and stats["failures"] == 0, _failure_message(report)
        proc, stats, report = cluster.play(upgrade, filewcount_image_tag="1.0", check=True, **common)
        assert stats["failures"] == 0 and stats["changed"] == 1
        assert "filewcount:2.0" in _git(bare, "show", f"main:{MANIFEST}")
        proc, stats, report = cluster.play(upgrade, filewcount_image_tag="1.0", **common)
        assert stats["failures"] == 0, _failure_message(report)
        msg = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]["msg"]
        assert "Cluster runs now: docker.io/bldrtech/filewcount:1.0" in msg
    finally:
        applier.stop.set()
        applier.join(timeout=5)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"filewcount_image_tag": "latest"}, "Refusing the tag 'latest'"),
        ({"filewcount_image_tag": "two"}, "does not match the expected version format"),
        ({}, "No image tag given: run ansible-playbook playbooks/upgrade.yml -e filewcount_image_tag=2.0"),
    ],
)
def test_upgrade_refuses_bad_tags(synced, checkout, extra, needle):
    cluster = synced
    work, bare = checkout
    head = _git(bare, "rev-parse", "main")
    _proc, stats, report = cluster.play(
        ROOT / "playbooks" / "upgrade.yml", upgrade_repo_dir=str(work), upgrade_kubeconfig=cluster.kubeconfig, **extra
    )
    assert stats["failures"] == 1
    assert needle in _failure_message(report)
    assert _git(bare, "rev-parse", "main") == head


def test_upgrade_refuses_a_dirty_tree(synced, checkout):
    cluster = synced
    work, _bare = checkout
    with open(work / MANIFEST, "a", encoding="utf-8") as handle:
        handle.write("# local edit\n")
    _proc, stats, report = cluster.play(
        ROOT / "playbooks" / "upgrade.yml",
        upgrade_repo_dir=str(work),
        upgrade_kubeconfig=cluster.kubeconfig,
        filewcount_image_tag="2.0",
    )
    assert stats["failures"] == 1
    assert _failure_message(report).startswith(f"The working tree has uncommitted changes ({MANIFEST})")
