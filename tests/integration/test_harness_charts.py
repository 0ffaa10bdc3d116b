"""Real Helm charts through real Flux in the harness: the tree's metrics-server HelmRepository and HelmRelease,
applied unchanged, are fetched from the chart repository the harness builds from ../shared/charts (reached at
its real URL through the harness's HTTPS proxy) and installed by the real helm-controller with the tree's values.
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
import cluster as harness  # noqa: E402
import workloads  # noqa: E402

FLUX = [sys.executable, str(HARNESS / "bin" / "flux")]


@pytest.fixture(scope="module")
def flux_cluster(tmp_path_factory):
    """A harness cluster without its own metrics API (the chart brings one), with Flux installed."""
    state_dir = tmp_path_factory.mktemp("charts")
    state = harness.start(state_dir, "charts", metrics_api=False)
    kubeconfig = state.root / "kubeconfig"
    kubeconfig.write_text(json.dumps(state.kubeconfig("kind-charts")))
    ctx = {"state": state, "kubeconfig": kubeconfig}
    components = subprocess.run([*FLUX, "install", "--export"], check=True, capture_output=True, text=True)
    kubectl(ctx, "apply", "--server-side", "-f", "-", stdin=components.stdout)
    for name in workloads.CONTROLLERS:
        wait_for(f"{name} to answer /readyz", lambda n=name: workloads.readyz(state.root, n), 90)
    yield ctx
    assert harness.stop(state_dir, "charts")


def kubectl(ctx, *args, stdin=None, check=True):
    return harness.kubectl(ctx["kubeconfig"], *args, stdin=stdin, check=check)


wait_for = harness.wait_for

TRANSIENT_REASONS = {"Progressing", "SourceNotReady", "DependencyNotReady", "ArtifactFailed"}


def condition(ctx, kind, namespace, name):
    proc = kubectl(ctx, "get", kind, name, "-n", namespace, "-o", "json", check=False)
    if proc.returncode != 0:
        return None, {}
    obj = json.loads(proc.stdout)
    return obj, {c["type"]: c for c in ((obj.get("status") or {}).get("conditions") or [])}.get("Ready", {})


def test_tree_metrics_server_release_installs_from_the_real_url(flux_cluster):
    kubectl(flux_cluster, "apply", "-k", str(ROOT / "kube" / "infrastructure" / "controllers" / "metrics-server"))

    def released():
        obj, ready = condition(flux_cluster, "helmrelease", "kube-system", "metrics-server")
        # helm-controller says Ready=False for a while on its way to a release (the chart still being fetched,
        # a dependency not ready): those reasons are passing states, anything else is the settled failure.
        if ready.get("status") == "False" and ready.get("reason") not in TRANSIENT_REASONS:
            return obj, ready
        # Released: Ready and the release recorded in its history (the two may land in separate status writes).
        return ready.get("status") == "True" and obj["status"].get("history") and (obj, ready)

    obj, ready = wait_for("the metrics-server HelmRelease to settle", released, 240, interval=2)
    repo, repo_ready = condition(flux_cluster, "helmrepository", "flux-system", "metrics-server")
    assert repo_ready.get("status") == "True", repo_ready
    assert repo["spec"]["url"] == "https://kubernetes-sigs.github.io/metrics-server/"  # the tree's URL, unchanged
    assert ready["status"] == "True", ready
    assert obj["status"]["history"][0]["chartVersion"] == "3.13.1"

    deployment = json.loads(
        kubectl(flux_cluster, "get", "deployment", "metrics-server", "-n", "kube-system", "-o", "json").stdout
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--kubelet-insecure-tls" in args  # the tree's value, rendered by the real chart
    apiservice = json.loads(kubectl(flux_cluster, "get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json").stdout)
    assert apiservice["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}
    listed = subprocess.run(
        [
            str(harness.binary("helm")),
            "--kubeconfig",
            str(flux_cluster["kubeconfig"]),
            "list",
            "-n",
            "kube-system",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    releases = {r["name"]: r for r in json.loads(listed.stdout)}
    assert releases["metrics-server"]["chart"] == "metrics-server-3.13.1"
    assert releases["metrics-server"]["status"] == "deployed"


def test_the_chart_metrics_server_serves_the_metrics_api(flux_cluster):
    """The chart's APIService answers: the API server reaches Service kube-system/metrics-server:443 through the
    harness network, where the real metrics-server runs with the Deployment's rendered arguments."""

    def available():
        proc = kubectl(flux_cluster, "get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json", check=False)
        conds = (json.loads(proc.stdout).get("status") or {}).get("conditions") or [] if proc.returncode == 0 else []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conds)

    wait_for("the chart's APIService to be Available", available, 180, interval=2)
    node = f"{flux_cluster['state'].name}-control-plane"
    top = wait_for(
        "kubectl top node to read the chart's metrics-server",
        lambda: (p := kubectl(flux_cluster, "top", "node", node, check=False)).returncode == 0 and p.stdout,
        120,
        interval=3,
    )
    assert node in top
    backends = json.loads((flux_cluster["state"].root / "backends.json").read_text(encoding="utf-8"))
    assert "kube-system/metrics-server:443" in backends, backends


def test_an_unknown_repository_host_is_refused(flux_cluster):
    """Nothing leaves this machine: a HelmRepository elsewhere fails, and says so."""
    repo = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "elsewhere", "namespace": "flux-system"},
        "spec": {"url": "https://charts.example.org/", "interval": "1h"},
    }
    kubectl(flux_cluster, "apply", "-f", "-", stdin=json.dumps(repo))

    def failed():
        _obj, ready = condition(flux_cluster, "helmrepository", "flux-system", "elsewhere")
        return ready.get("status") == "False" and ready

    ready = wait_for("the unreachable HelmRepository to fail", failed, 90, interval=2)
    assert "charts.example.org" in ready["message"], ready
