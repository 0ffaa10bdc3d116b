"""The monitoring and filewcount roles, playbooks/status.yml and playbooks/upgrade.yml run with ansible-playbook
against harness clusters (tests/harness, created through tests/integration/kind_harness.py as the kind role would):
a real control plane with kwok as the node, and the real Flux controllers reconciling this repository's kube/ tree,
bootstrapped as local mode does it: the git server of kube/bootstrap/git-server (real `git http-backend` behind
NodePort 30082), a GitRepository at its in-cluster URL and a Kustomization of kube/clusters/kind. helm-controller
installs the real metrics-server and kube-prometheus-stack charts; the chart's metrics-server serves the metrics API
from the CPU kwok simulates (5m per filewcount pod, 5% of its request). Only what a container would answer is a
stand-in, answered from the cluster's real objects: filewcount's page on NodePort 30080 and Grafana's API (and the
Prometheus targets behind it) on NodePort 30081 (tests/harness/nodeports/np_3008[01].py, whose knob files under
$STANDIN_STATE_DIR make Prometheus jobs down or Grafana keep another password).

One module cluster serves the tests in file order: check mode on it while empty, the credentials step before Flux,
then (fixture `synced`) the full GitOps bootstrap, shared by the proofs, their failure paths, the status report and
the upgrade through git. The failed-release test has a cluster of its own, where the tree's kube-prometheus-stack
release really fails to install. The product's API requests are counted from the API server's audit log (user
kubernetes-admin, tests/harness/audit.py): check mode and re-runs must write nothing.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
import audit  # noqa: E402
import cluster as harness  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kind_harness  # noqa: E402

PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "monitoring_roles.yml"
UPGRADE = ROOT / "playbooks" / "upgrade.yml"
STATUS = ROOT / "playbooks" / "status.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
MANIFEST = "kube/apps/filewcount/deployment.yaml"
IMAGE = "docker.io/bldrtech/filewcount"
FLUX_NS = "flux-system"
# What `flux bootstrap git` (module flux_bootstrap) creates for local mode: the in-cluster URL of the git server.
IN_CLUSTER_GIT_URL = "http://git-server.git-server.svc.cluster.local/filewcount.git"
SYNC = [
    {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "flux-system", "namespace": FLUX_NS},
        "spec": {"interval": "1m", "url": IN_CLUSTER_GIT_URL, "ref": {"branch": "main"}},
    },
    {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "flux-system", "namespace": FLUX_NS},
        "spec": {
            "interval": "1m",
            "path": "./kube/clusters/kind",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
        },
    },
]
KUSTOMIZATIONS = ("flux-system", "infrastructure-controllers", "infrastructure-configs", "apps")
HELMRELEASES = (("kube-system", "metrics-server"), ("monitoring", "kube-prometheus-stack"))
# The CPU kwok reports for every filewcount container: 5% of its 100m request. The real metrics-server rates it
# over a 15 s window and the HPA truncates, so the HPA reads 5%, sometimes one point either side.
SIMULATED_CPU = "5m"
HPA_PERCENT = range(4, 7)
# Bootstrapping the tree (both charts, then configs, then apps) takes about 2 minutes here; a loaded machine more.
SYNC_TIMEOUT = 900
# The field manager of this test's own edits (suspending a Kustomization), which Flux leaves alone.
FIELD_MANAGER = "filewcount-test"


class Cluster:
    """A harness cluster (kind_harness) and what the playbooks need around it: the stand-ins' knob folder, the
    product's state folder and a HOME, an environment that makes ansible-playbook print JSON."""

    def __init__(self, tmp: Path, node_ports: tuple[int, ...]):
        self.tmp = tmp
        self.ctx = kind_harness.create(tmp, node_ports=node_ports)
        self.kubeconfig = str(self.ctx["kubeconfig"])
        self.host_ports = self.ctx["host_ports"]
        self.knobs = Path(self.ctx["env"]["STANDIN_STATE_DIR"])
        self.state_dir = tmp / "state" / "filewcount-gitops"
        (tmp / "home").mkdir()
        self.env = dict(self.ctx["env"], ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", HOME=str(tmp / "home"))
        self.revision = ""

    @property
    def app_port(self) -> int:
        return self.host_ports[30080]

    @property
    def git_url(self) -> str:
        """The git server as this machine reaches it (kind maps a host port to NodePort 30082)."""
        return f"http://127.0.0.1:{self.host_ports[30082]}/filewcount.git"

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return harness.kubectl(self.kubeconfig, *args, stdin=stdin, check=check).stdout

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        scope = ["-n", namespace] if namespace else []
        proc = harness.kubectl(self.kubeconfig, "get", kind, name, *scope, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def play(self, playbook: Path = PLAYBOOK, check: bool = False, **extra):
        """Run a playbook; returns (process, stats, JSON report, the product's API requests during the run)."""
        extra = {
            "test_kubeconfig": self.kubeconfig,
            "test_state_dir": str(self.state_dir),
            "test_grafana_port": self.host_ports.get(30081, 0),
            "test_app_port": self.host_ports.get(30080, 0),
            **extra,
        }
        argv = [str(ANSIBLE_PLAYBOOK), str(playbook), "-e", json.dumps(extra)] + (["--check"] if check else [])
        since = audit.mark(self.ctx["state"].audit_log)
        proc = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)
        requests = audit.count(self.ctx["state"].audit_log, since)
        try:
            report = json.loads(proc.stdout[proc.stdout.index("{") :])
        except ValueError:
            pytest.fail(f"no JSON from ansible-playbook (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}")
        return proc, report["stats"]["localhost"], report, requests

    def delete(self) -> None:
        kind_harness.delete(self.ctx)


def wait_until(what: str, probe, timeout: float, interval: float = 2.0):
    """Poll probe() -> (done, detail) until done; return detail. Fail with the last detail after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        done, detail = probe()
        if done:
            return detail
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout} s; last seen: {detail}")
        time.sleep(interval)


def _condition(obj: dict | None, ctype: str = "Ready") -> dict:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c.get("type") == ctype), {})


def _failure_message(report) -> str:
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get("localhost", {})
            if result.get("failed"):
                return result.get("msg", "")
    return ""


def _messages(report) -> str:
    """Every task message of the run (assert success_msg, debug), one per line."""
    out = []
    for play in report["plays"]:
        for task in play["tasks"]:
            msg = task["hosts"].get("localhost", {}).get("msg")
            if isinstance(msg, str):
                out.append(msg)
    return "\n".join(out)


def _secret_password(cluster: Cluster) -> tuple[str, str]:
    data = cluster.get("secret", "grafana-admin", "monitoring")["data"]
    return base64.b64decode(data["admin-password"]).decode(), base64.b64decode(data["admin-user"]).decode()


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _server_head(cluster: Cluster) -> str:
    """The commit main points at on the git server, asked over smart HTTP like any client."""
    return _git(cluster.tmp, "ls-remote", cluster.git_url, "refs/heads/main").split()[0]


def _server_file(cluster: Cluster, path: str) -> str:
    """A file of main on the git server, fetched over smart HTTP (as source-controller fetches it)."""
    scratch = cluster.tmp / "inspect.git"
    if not scratch.exists():
        _git(cluster.tmp, "init", "--quiet", "--bare", str(scratch))
    _git(scratch, "fetch", "--quiet", cluster.git_url, "main")
    return _git(scratch, "show", f"FETCH_HEAD:{path}")


def _hpa_percent(cluster: Cluster) -> int | None:
    hpa = cluster.get("hpa", "filewcount", "filewcount") or {}
    for metric in (hpa.get("status") or {}).get("currentMetrics") or []:
        utilisation = ((metric.get("resource") or {}).get("current") or {}).get("averageUtilization")
        if utilisation is not None:
            return utilisation
    return None


def _wait_for_hpa(cluster: Cluster) -> None:
    def reads():
        percent = _hpa_percent(cluster)
        return percent in HPA_PERCENT, percent

    wait_until(f"the HPA to read {SIMULATED_CPU} of 100m as CPU", reads, 240, interval=3)


def _wait_for_apps(cluster: Cluster, commit: str) -> None:
    """Wait until kustomize-controller reports `commit` applied. With wait: true it records the revision once its
    health checks pass, which may be a moment after the rollout the upgrade playbook waited for."""
    want = f"main@sha1:{commit}"

    def applied():
        obj = cluster.get("kustomization", "apps", FLUX_NS) or {}
        status = obj.get("status") or {}
        return status.get("lastAppliedRevision") == want and _condition(obj).get("status") == "True", status

    wait_until(f"Kustomization apps to report {want} applied", applied, 300)


def _deployment_images(cluster: Cluster) -> list[str]:
    dep = cluster.get("deployment", "filewcount", "filewcount")
    return [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]


def _page(cluster: Cluster) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.app_port}/", timeout=10) as response:
        return response.read().decode()


def _patch_kustomization(cluster: Cluster, name: str, patch: dict) -> None:
    cluster.kubectl(
        "patch",
        "kustomization",
        name,
        "-n",
        FLUX_NS,
        "--type=merge",
        f"--field-manager={FIELD_MANAGER}",
        "--patch",
        json.dumps(patch),
    )


def reconcile(cluster: Cluster, name: str, resume: bool = False, timeout: float = 300) -> dict:
    """Ask kustomize-controller to reconcile Kustomization `name` now (as `make sync` does; resume: also lift a
    suspend) and wait until it handled that request and is Ready."""
    token = datetime.datetime.now(datetime.UTC).isoformat()
    patch = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}
    if resume:
        patch["spec"] = {"suspend": False}
    _patch_kustomization(cluster, name, patch)

    def handled():
        obj = cluster.get("kustomization", name, FLUX_NS) or {}
        status = obj.get("status") or {}
        return status.get("lastHandledReconcileAt") == token and _condition(obj).get("status") == "True", status

    return wait_until(f"Kustomization {name} to reconcile", handled, timeout)


@contextlib.contextmanager
def flux_paused(cluster: Cluster, name: str):
    """Suspend Kustomization `name` while a test breaks what it applied (so no scheduled reconcile repairs it
    midway), then resume it and let Flux put the tree's objects back."""
    _patch_kustomization(cluster, name, {"spec": {"suspend": True}})
    try:
        yield
    finally:
        reconcile(cluster, name, resume=True)


# ------------------------------------------------------------------------------------------------- a failed release
def test_failed_release_shows_its_condition(tmp_path):
    """The tree's releases, with one value of kube-prometheus-stack that the API server rejects (Grafana's NodePort
    out of range): helm-controller really fails the install, remediates, retries and gives up; the role names that
    release with the condition helm-controller wrote, and not metrics-server, which installed."""
    failing = Cluster(tmp_path, node_ports=())
    try:
        kind_harness.install_flux(failing.ctx)
        # As infrastructure-controllers applies them: the cluster settings' defaults substituted.
        docs = [d for d in yaml.safe_load_all(harness.tree_manifests(ROOT / "kube/infrastructure/controllers")) if d]
        for doc in docs:
            if doc["kind"] == "HelmRelease" and doc["metadata"]["name"] == "kube-prometheus-stack":
                doc["spec"]["values"]["grafana"]["service"]["nodePort"] = 99999
        failing.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))

        def settled():
            server = failing.get("helmrelease", "metrics-server", "kube-system")
            stack = failing.get("helmrelease", "kube-prometheus-stack", "monitoring")
            states = {
                "metrics-server": _condition(server).get("status"),
                "kube-prometheus-stack": (_condition(stack).get("status"), _condition(stack, "Stalled").get("reason")),
            }
            return states == {"metrics-server": "True", "kube-prometheus-stack": ("False", "RetriesExceeded")}, states

        wait_until("metrics-server to install and kube-prometheus-stack to run out of retries", settled, 900, 5)
        ready = _condition(failing.get("helmrelease", "kube-prometheus-stack", "monitoring"))
        assert ready["reason"] == "InstallFailed", ready
        assert "provided port is not in the valid range" in ready["message"], ready

        proc, stats, report, _requests = failing.play(test_steps=["credentials", "wait"])
        assert stats["failures"] == 1, proc.stdout
        message = _failure_message(report)
        found = re.search(r"HelmRelease\(s\) not Ready after 4s: (.*)\. Inspect them with", message)
        assert found, message
        # Exactly one problem, with the reason and message helm-controller wrote: metrics-server is not listed.
        # (helm-controller may rewrite the message between the read above and the role's, e.g. with the attempt
        # count, on a loaded machine: the test checks its substance, not its wording at one instant.)
        problem = found.group(1)
        assert problem.startswith("HelmRelease monitoring/kube-prometheus-stack: Ready=False reason="), message
        assert "provided port is not in the valid range" in problem, message
        assert "metrics-server" not in problem and ";" not in problem, message
    finally:
        failing.delete()


# ------------------------------------------------------------------------------------------------- module cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The module's cluster, with filewcount, Grafana and the git server published on host ports (as the kind role
    maps 8080-8082). Empty until `synced` bootstraps it."""
    c = Cluster(tmp_path_factory.mktemp("monitoring"), node_ports=(30080, 30081, 30082))
    yield c
    c.delete()


@pytest.fixture(scope="module")
def synced(cluster):
    """The module's cluster after bootstrap as local mode runs it: credentials, Flux, the git server seeded with
    this tree, Flux synced (both charts installed, configs and apps applied), and the HPA reading CPU."""
    if cluster.get("secret", "grafana-admin", "monitoring") is None:
        proc, stats, _report, _requests = cluster.play(test_steps=["credentials"])
        assert stats["failures"] == 0, proc.stdout
    kind_harness.install_flux(cluster.ctx)
    cluster.kubectl("apply", "-k", str(ROOT / "kube" / "bootstrap" / "git-server"))

    def git_answers():
        proc = subprocess.run(["git", "ls-remote", cluster.git_url], capture_output=True, text=True, check=False)
        return proc.returncode == 0, proc.stderr.strip()

    wait_until("the git server to answer on its NodePort", git_answers, 300)
    seed = cluster.tmp / "seed"
    _git(cluster.tmp, "init", "--quiet", "--initial-branch=main", str(seed))
    shutil.copytree(ROOT / "kube", seed / "kube")
    _git(seed, "add", "-A")
    _git(seed, "-c", "user.name=Test", "-c", "user.email=test@example.invalid", "commit", "--quiet", "-m", "seed")
    _git(seed, "push", "--quiet", cluster.git_url, "main")
    cluster.revision = _git(seed, "rev-parse", "HEAD")
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(SYNC))

    want = f"main@sha1:{cluster.revision}"

    def applied():
        states = {}
        for name in KUSTOMIZATIONS:
            obj = cluster.get("kustomization", name, FLUX_NS)
            cond = _condition(obj)
            states[name] = (cond.get("status"), ((obj or {}).get("status") or {}).get("lastAppliedRevision"))
            if cond.get("status") != "True":
                states[name] += (cond.get("message"),)
        for namespace, name in HELMRELEASES:
            states[name] = _condition(cluster.get("helmrelease", name, namespace)).get("status")
        done = all(states[n][:2] == ("True", want) for n in KUSTOMIZATIONS) and all(
            states[n] == "True" for _ns, n in HELMRELEASES
        )
        return done, states

    wait_until("Flux to apply the tree", applied, SYNC_TIMEOUT, interval=5)
    state = cluster.ctx["state"]
    harness.set_usage(state.root.parent.parent, state.name, "filewcount", cpu=SIMULATED_CPU)
    _wait_for_hpa(cluster)
    return cluster


def test_check_mode_on_an_empty_cluster_changes_nothing(cluster):
    # First on the module's cluster, while it is empty (the next test and `synced` fill it).
    assert "namespace/monitoring" not in cluster.kubectl("get", "namespaces", "-o", "name")
    proc, stats, _report, requests = cluster.play(test_steps=["credentials"], check=True)
    assert stats["failures"] == 0, proc.stdout
    assert not (cluster.state_dir / "grafana-admin-password").exists()
    assert not cluster.state_dir.exists()
    assert "namespace/monitoring" not in cluster.kubectl("get", "namespaces", "-o", "name")
    # Nothing written: the Namespace was only sent as a dry run.
    assert requests["writes"] == 0, requests
    assert requests["dry_run_writes"] >= 1, requests


def test_credentials_before_flux_are_generated_once_and_kept(cluster):
    proc, stats, _report, requests = cluster.play(test_steps=["credentials"])
    assert stats["failures"] == 0, proc.stdout
    assert stats["changed"] == 4  # state dir, password file, namespace, Secret
    assert sorted(requests["write_requests"]) == [
        "create namespaces monitoring",
        "create secrets monitoring/grafana-admin",
    ]
    pw_file = cluster.state_dir / "grafana-admin-password"
    password = pw_file.read_text()
    assert len(password) == 32 and password.isalnum()
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster.state_dir.stat().st_mode) == 0o700
    assert _secret_password(cluster) == (password, "admin")
    assert password not in proc.stdout + proc.stderr
    proc, stats, _report, requests = cluster.play(test_steps=["credentials"])
    assert stats["changed"] == 0, proc.stdout
    assert requests["writes"] == 0, requests
    proc, stats, _report, requests = cluster.play(test_steps=["credentials"], check=True)
    assert stats["changed"] == 0 and stats["failures"] == 0, proc.stdout
    assert requests["writes"] == 0, requests
    # The cluster lost its Secret (re-created cluster): the saved file brings the same password back.
    cluster.kubectl("delete", "secret", "-n", "monitoring", "grafana-admin")
    proc, stats, _report, requests = cluster.play(test_steps=["credentials"])
    assert stats["changed"] == 1
    assert requests["write_requests"] == ["create secrets monitoring/grafana-admin"], requests
    assert _secret_password(cluster)[0] == password
    # The file was lost: the cluster's Secret wins and the file is written again.
    pw_file.unlink()
    proc, stats, _report, requests = cluster.play(test_steps=["credentials"])
    assert stats["changed"] == 1
    assert requests["writes"] == 0, requests
    assert pw_file.read_text() == password
    assert password not in proc.stdout + proc.stderr


def test_wait_and_prove_after_flux_synced(synced):
    cluster = synced
    proc, stats, report, requests = cluster.play(test_run_filewcount=True, test_timeout=120)
    assert stats["failures"] == 0, _failure_message(report) or proc.stdout
    assert stats["changed"] == 0
    assert requests["writes"] == 0, requests
    out = _messages(report)
    for needle in (
        "Ready: metrics-server, kube-prometheus-stack",
        "Grafana accepted the user in Secret monitoring/grafana-admin",
        "Grafana lists the dashboards flux-cluster, filewcount",
        "Prometheus targets up: kubelet, cAdvisor, kube-state-metrics, Flux source-controller, "
        "Flux kustomize-controller, Flux helm-controller, Flux notification-controller",
        f"Kustomization flux-system/apps is Ready (main@sha1:{cluster.revision})",
        f"Deployment filewcount/filewcount: 3 of 3 replicas updated and available ({IMAGE}:1.0)",
        f"GET http://127.0.0.1:{cluster.app_port}/ answered 200",
    ):
        assert needle in out, f"{needle!r} not in:\n{out}"
    assert re.search(r"Metrics API answers: 1 node\(s\), \d+ pod\(s\) with metrics", out), out
    hpa = re.search(r"HPA filewcount/filewcount reads CPU (\d+)% \(target 70%\), replicas 3 current / 3 desired", out)
    assert hpa and int(hpa.group(1)) in HPA_PERCENT, out
    password = cluster.state_dir.joinpath("grafana-admin-password").read_text()
    assert password not in proc.stdout + proc.stderr
    proc, stats, report, requests = cluster.play(test_run_filewcount=True, test_timeout=120, check=True)
    assert stats["failures"] == 0 and stats["changed"] == 0, _failure_message(report)
    assert requests["writes"] == 0, requests


def test_prove_failures_name_what_failed(synced):
    cluster = synced
    knob = cluster.knobs / "prometheus-down-jobs"
    knob.write_text("kube-state-metrics\n")
    try:
        _proc, stats, report, _requests = cluster.play(test_steps=["prove"])
    finally:
        knob.unlink()
    assert stats["failures"] == 1
    message = _failure_message(report)
    assert "Prometheus targets not up after 4s" in message
    assert "kube-state-metrics: 1 target(s), none up" in message
    assert "marked down by prometheus-down-jobs" in message

    # A dashboard ConfigMap of the tree goes missing; Flux puts it back afterwards.
    with flux_paused(cluster, "infrastructure-configs"):
        cluster.kubectl("delete", "configmap", "-n", "monitoring", "dashboard-filewcount")
        dashboards = json.loads(cluster.kubectl("get", "configmaps", "-A", "-l", "grafana_dashboard", "-o", "json"))
        _proc, stats, report, _requests = cluster.play(test_steps=["prove"])
    assert stats["failures"] == 1
    message = _failure_message(report)
    listed = re.search(r"Grafana does not list the dashboard uid\(s\) filewcount after 4s \(it lists: (.*?)\)", message)
    assert listed, message
    # It lists what the remaining ConfigMaps hold: ours (flux-cluster) and the chart's own dashboards.
    uids = {
        json.loads(text)["uid"]
        for cm in dashboards["items"]
        for key, text in (cm.get("data") or {}).items()
        if key.endswith(".json")
    }
    assert set(listed.group(1).split(", ")) == uids, message
    assert "flux-cluster" in uids and "filewcount" not in uids
    restored = cluster.get("configmap", "dashboard-filewcount", "monitoring")
    assert restored["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "infrastructure-configs"


def test_wrong_grafana_password_is_named_at_once(synced):
    cluster = synced
    knob = cluster.knobs / "grafana-db-password"
    knob.write_text("the-password-grafana-kept\n")
    try:
        started = time.monotonic()
        _proc, stats, report, _requests = cluster.play(test_steps=["prove"], test_timeout=120)
        elapsed = time.monotonic() - started
    finally:
        knob.unlink()
    assert stats["failures"] == 1
    message = _failure_message(report)
    assert message.startswith("Grafana answered /api/search with 401 for the user in Secret monitoring/grafana-admin")
    assert "reset-admin-password" in message
    assert elapsed < 120  # a 401 is final: the role does not retry until the timeout


def test_filewcount_failures_name_the_step(synced):
    cluster = synced
    with flux_paused(cluster, "apps"):
        # KEDA owns the HPA and would make it again at once: delete the ScaledObject, and KEDA deletes the HPA.
        cluster.kubectl("delete", "scaledobject", "-n", "filewcount", "filewcount", "--wait=true")
        wait_until(
            "KEDA to delete the HPA of the deleted ScaledObject",
            lambda: (cluster.get("hpa", "filewcount", "filewcount") is None, None),
            60,
        )
        _proc, stats, report, _requests = cluster.play(test_steps=[], test_run_filewcount=True)
    assert stats["failures"] == 1
    assert _failure_message(report).startswith(
        "Step 3/4 (HPA metrics) failed after 4s: HorizontalPodAutoscaler filewcount/filewcount does not exist"
    )
    # Flux re-created the ScaledObject from git, and KEDA the HPA from it.
    wait_until(
        "KEDA to make the HPA again", lambda: (cluster.get("hpa", "filewcount", "filewcount") is not None, None), 120
    )


# A chart repository whose index the harness proxy refuses (it answers 403 for any host but the tree's chart hosts).
UNREACHABLE_REPOSITORY = {
    "apiVersion": "source.toolkit.fluxcd.io/v1",
    "kind": "HelmRepository",
    "metadata": {"name": "unreachable", "namespace": FLUX_NS},
    "spec": {"interval": "1m", "url": "https://charts.unreachable.example/"},
}


def test_status_report(synced):
    cluster = synced
    _wait_for_hpa(cluster)  # the HPA may have been re-created by the test before
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(UNREACHABLE_REPOSITORY))
    try:
        failing = wait_until(
            "source-controller to mark HelmRepository unreachable not Ready",
            lambda: (
                _condition(cluster.get("helmrepository", "unreachable", FLUX_NS)).get("status") == "False",
                _condition(cluster.get("helmrepository", "unreachable", FLUX_NS)),
            ),
            120,
        )
        # source-controller retries the fetch with a backoff, and while it does the condition reads Ready=Unknown
        # "building artifact": the report shows that instant. Read again (a read-only play) until it catches the
        # failure, as a user running make status again would.
        for _attempt in range(4):
            _proc, stats, report, requests = cluster.play(STATUS, status_kubeconfig=cluster.kubeconfig)
            assert stats["failures"] == 0 and stats["changed"] == 0
            assert requests["writes"] == 0, requests
            msg = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]["msg"]
            if re.search(r"HelmRepository +flux-system/unreachable +Ready=False", msg):
                break
            time.sleep(2)
    finally:
        cluster.kubectl("delete", "helmrepository", "unreachable", "-n", FLUX_NS, "--ignore-not-found")
    # Every source kind is listed, so the columns of the sources table are as wide as its longest kind and name.
    git_source = rf"GitRepository +flux-system/flux-system +Ready=True +main@sha1:{cluster.revision[:12]} "
    assert re.search(git_source, msg), msg
    for needle in (
        "Flux sources",
        "HelmRelease  monitoring/kube-prometheus-stack  Ready=True  kube-prometheus-stack@88.5.3",
        "Node  filewcount-control-plane",
        "Recent Warning events (newest first)",
    ):
        assert needle in msg, f"{needle!r} not in:\n{msg}"
    # The tree's chart repositories are Ready; the one whose index cannot be fetched is not, with source-controller's
    # own message (clipped to the report's width).
    assert re.search(r"HelmRepository +flux-system/metrics-server +Ready=True +sha256:[0-9a-f]{12} ", msg), msg
    line = next((row for row in msg.splitlines() if "flux-system/unreachable" in row), None)
    assert line is not None, f"HelmRepository flux-system/unreachable not in:\n{msg}"
    assert re.match(r" +HelmRepository +flux-system/unreachable +Ready=False +- +\S", line), line
    shown = line.split("Ready=False", 1)[1].strip()[1:].strip().removesuffix("...")
    assert " ".join(failing["message"].split()).startswith(shown), (shown, failing["message"])
    assert re.search(r"HelmRelease +kube-system/metrics-server +Ready=True +metrics-server@3\.13\.1", msg), msg
    hpa = re.search(r"desired \(min 3, max 10\) +CPU (\d+)% of target 70%", msg)
    assert hpa and int(hpa.group(1)) in HPA_PERCENT, msg


# ------------------------------------------------------------------------------------------------- upgrade
@pytest.fixture
def checkout(synced, tmp_path):
    """A clone of what Flux syncs, from the git server on its host port, with that remote named local (as the
    git_server role names it)."""
    work = tmp_path / "work"
    _git(tmp_path, "clone", "--quiet", "--origin", "local", synced.git_url, str(work))
    for key, value in (("user.name", "Test"), ("user.email", "test@example.invalid")):
        _git(work, "config", key, value)
    return work


class ReadyPodsWatch:
    """Samples filewcount's Deployment (as the harness, so the audit counts stay the product's) every 0.2 s while
    a rollout runs: the fewest ready and available replicas seen, and the replicas wanted."""

    def __init__(self, cluster: Cluster):
        self.state = cluster.ctx["state"]
        self.samples: list[tuple[int, int, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            status, obj = self.state.request("GET", "/apis/apps/v1/namespaces/filewcount/deployments/filewcount")
            if status == 200:
                st = obj.get("status") or {}
                self.samples.append(
                    (obj["spec"]["replicas"], st.get("readyReplicas") or 0, st.get("availableReplicas") or 0)
                )
            time.sleep(0.2)

    def __enter__(self) -> ReadyPodsWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_upgrade_and_downgrade_through_gitops(synced, checkout):
    cluster, work = synced, checkout
    common = {"upgrade_repo_dir": str(work), "upgrade_kubeconfig": cluster.kubeconfig, "upgrade_kube_context": ""}
    # maxUnavailable: 0 (kube/apps/filewcount/deployment.yaml): while the real Deployment controller rolls the new
    # image out, never fewer ready or available pods than the Deployment wants.
    with ReadyPodsWatch(cluster) as watch:
        proc, stats, report, requests = cluster.play(UPGRADE, filewcount_image_tag="2.0", **common)
    assert len(watch.samples) > 10, watch.samples
    assert all(ready >= wanted and available >= wanted for wanted, ready, available in watch.samples), [
        s for s in watch.samples if s[1] < s[0] or s[2] < s[0]
    ]
    assert stats["failures"] == 0, _failure_message(report) or proc.stdout
    assert stats["changed"] == 2  # the commit + push, and the reconcile annotations (one loop task)
    assert sorted(requests["write_requests"]) == [
        "patch kustomize.toolkit.fluxcd.io/kustomizations flux-system/apps",
        "patch source.toolkit.fluxcd.io/gitrepositories flux-system/flux-system",
    ], requests
    msg = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]["msg"]
    assert f"Changed {IMAGE}:1.0 to {IMAGE}:2.0" in msg
    assert f"Cluster ran before: {IMAGE}:1.0\nCluster runs now: {IMAGE}:2.0" in msg
    pushed = _server_head(cluster)
    assert f"Pushed {pushed[:12]} to local/main" in msg
    assert f"{IMAGE}:2.0" in _server_file(cluster, MANIFEST)
    # Flux took the pushed commit, applied it, and the rolled-out pods answer through the NodePort.
    for kind, name in (("gitrepository", "flux-system"), ("kustomization", "apps")):
        obj = cluster.get(kind, name, FLUX_NS)
        token = obj["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
        assert obj["status"]["lastHandledReconcileAt"] == token
    assert cluster.get("gitrepository", "flux-system", FLUX_NS)["status"]["artifact"]["revision"] == (
        f"main@sha1:{pushed}"
    )
    _wait_for_apps(cluster, pushed)
    assert _deployment_images(cluster) == [f"{IMAGE}:2.0"]
    assert f"image: {IMAGE}:2.0" in _page(cluster)

    proc, stats, report, requests = cluster.play(UPGRADE, filewcount_image_tag="2.0", **common)
    assert stats["changed"] == 0 and stats["failures"] == 0, _failure_message(report)
    assert requests["writes"] == 0, requests
    assert _server_head(cluster) == pushed

    proc, stats, report, requests = cluster.play(UPGRADE, filewcount_image_tag="1.0", check=True, **common)
    assert stats["failures"] == 0 and stats["changed"] == 1
    assert requests["writes"] == 0, requests
    assert _server_head(cluster) == pushed
    assert f"{IMAGE}:2.0" in _server_file(cluster, MANIFEST)
    assert _deployment_images(cluster) == [f"{IMAGE}:2.0"]

    proc, stats, report, requests = cluster.play(UPGRADE, filewcount_image_tag="1.0", **common)
    assert stats["failures"] == 0, _failure_message(report)
    msg = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]["msg"]
    assert f"Cluster ran before: {IMAGE}:2.0\nCluster runs now: {IMAGE}:1.0" in msg
    assert f"{IMAGE}:1.0" in _server_file(cluster, MANIFEST)
    downgraded = _server_head(cluster)
    assert downgraded != pushed
    _wait_for_apps(cluster, downgraded)
    assert _deployment_images(cluster) == [f"{IMAGE}:1.0"]
    assert f"image: {IMAGE}:1.0" in _page(cluster)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"filewcount_image_tag": "latest"}, "Refusing the tag 'latest'"),
        ({"filewcount_image_tag": "two"}, "does not match the expected version format"),
        ({}, "No image tag given: run ansible-playbook playbooks/upgrade.yml -e filewcount_image_tag=2.0"),
    ],
)
def test_upgrade_refuses_bad_tags(synced, checkout, extra, needle):
    cluster, work = synced, checkout
    head = _server_head(cluster)
    _proc, stats, report, requests = cluster.play(
        UPGRADE, upgrade_repo_dir=str(work), upgrade_kubeconfig=cluster.kubeconfig, **extra
    )
    assert stats["failures"] == 1
    assert needle in _failure_message(report)
    assert _server_head(cluster) == head
    assert _git(work, "rev-parse", "HEAD") == head
    assert requests["writes"] == 0, requests


def test_upgrade_refuses_a_dirty_tree(synced, checkout):
    cluster, work = synced, checkout
    head = _server_head(cluster)
    with open(work / MANIFEST, "a", encoding="utf-8") as handle:
        handle.write("# local edit\n")
    _proc, stats, report, requests = cluster.play(
        UPGRADE, upgrade_repo_dir=str(work), upgrade_kubeconfig=cluster.kubeconfig, filewcount_image_tag="2.0"
    )
    assert stats["failures"] == 1
    assert _failure_message(report).startswith(f"The working tree has uncommitted changes ({MANIFEST})")
    assert _server_head(cluster) == head
    assert requests["writes"] == 0, requests
