"""Real Flux in the harness: the controllers Flux v2.9.4 ships, built from their Go modules, run as host processes
while their flux-system Deployments exist (tests/harness/workloads.py), and reconcile this repository's tree
from a real git smart-HTTP server (`git http-backend`).

The seed's GitOps loop against the real source- and kustomize-controller: the tree's apps are applied; a
manifest added and pushed is created; deleted and pushed, it is pruned; an unknown field is dropped with a
warning, a wrong type turns the Kustomization not Ready with the API server's message, and the fix heals it.
Deleting the Deployments stops the controllers, and deleting the cluster leaves none of their processes.
"""

from __future__ import annotations

import http.server
import json
import shutil
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
sys.path.insert(0, str(HARNESS / "nodeports"))
import cluster as harness  # noqa: E402
import np_30082  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kind_harness  # noqa: E402


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    """filewcount.git served by `git http-backend` on 127.0.0.1 (the same handler as the NodePort 30082 stand-in)."""
    root = tmp_path_factory.mktemp("git")
    np_30082.ensure_repository(str(root))

    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self):
            np_30082.serve_git(self, str(root))

        do_GET = do_POST = do_HEAD = _handle

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/filewcount.git"
    work = tmp_path_factory.mktemp("checkout")
    git(work, "init", "--quiet", "--initial-branch=main")
    shutil.copytree(ROOT / "kube" / "apps", work / "kube" / "apps")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "The tree's apps")
    git(work, "push", "--quiet", url, "main")
    yield url, work
    server.shutdown()
    server.server_close()


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def flux_cluster(tmp_path_factory, git_server):
    # filewcount's NodePort mapped to a host port, as the kind role maps 8080 -> 30080.
    ctx = kind_harness.create(tmp_path_factory.mktemp("flux"), node_ports=(30080,))
    ctx["host_port"] = ctx["host_ports"][30080]
    kind_harness.install_flux(ctx)
    # On a cluster Flux applies them before kube/apps (Kustomization infrastructure-crds); its HTTPRoute needs them.
    harness.apply_gateway_api_crds(ctx["kubeconfig"])
    # And KEDA (the keda HelmRelease on a cluster), which makes the HPA of the app's ScaledObject.
    kind_harness.install_keda(ctx["kubeconfig"], tmp_path_factory.mktemp("keda"))
    yield ctx
    kind_harness.delete(ctx)


def kubectl(ctx, *args, stdin=None, check=True):
    return harness.kubectl(ctx["kubeconfig"], *args, stdin=stdin, check=check)


wait_for = harness.wait_for


def ready(ctx, kind, name):
    proc = kubectl(ctx, "get", kind, name, "-n", "flux-system", "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    obj = json.loads(proc.stdout)
    conds = {c["type"]: c for c in ((obj.get("status") or {}).get("conditions") or [])}
    return obj, conds.get("Ready", {})


def reconcile(ctx, revision):
    """Ask for a reconcile now (as `make sync` does) and wait for the apps Kustomization's verdict on revision."""
    now = str(time.time())
    for kind in ("gitrepository/filewcount", "kustomization/apps"):
        kubectl(ctx, "annotate", "--overwrite", "-n", "flux-system", kind, f"reconcile.fluxcd.io/requestedAt={now}")

    def applied():
        found = ready(ctx, "kustomization", "apps")
        if not found:
            return None
        status, want = found[0].get("status", {}), f"main@sha1:{revision}"
        if status.get("lastHandledReconcileAt") != now or status.get("lastAttemptedRevision") != want:
            return None
        # Done: applied (Ready, lastAppliedRevision moved) or refused (Ready False).
        return found if status.get("lastAppliedRevision") == want or found[1].get("status") == "False" else None

    return wait_for(f"the apps Kustomization to try main@sha1:{revision}", applied, 120)


def push(work, url, message):
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", message)
    git(work, "push", "--quiet", url, "main")
    return git(work, "rev-parse", "HEAD")


def test_flux_controllers_apply_add_and_prune_the_tree(flux_cluster, git_server):
    url, work = git_server
    head = git(work, "rev-parse", "HEAD")
    sources = [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "filewcount", "namespace": "flux-system"},
            "spec": {"url": url, "ref": {"branch": "main"}, "interval": "1m"},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {
                "path": "./kube/apps",
                "prune": True,
                "wait": True,
                "timeout": "2m",
                "interval": "1m",
                "sourceRef": {"kind": "GitRepository", "name": "filewcount"},
                # As kube/clusters/kind/apps.yaml: the cluster settings' defaults (no ConfigMap here).
                "postBuild": {"substituteStrategy": "Always"},
            },
        },
    ]
    kubectl(flux_cluster, "apply", "-f", "-", stdin=yaml.safe_dump_all(sources))

    def synced():
        found = ready(flux_cluster, "kustomization", "apps")
        return found and found[1].get("status") == "True" and found

    obj, cond = wait_for("the apps Kustomization to be Ready", synced, 180)
    assert obj["status"]["lastAppliedRevision"] == f"main@sha1:{head}"

    def deployment():
        out = kubectl(flux_cluster, "get", "deployment", "filewcount", "-n", "filewcount", "-o", "json")
        return json.loads(out.stdout)

    assert deployment()["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "apps"
    # The tree's Deployment has no replicas: the HPA that KEDA makes from the ScaledObject raises it to 3.
    wait_for(
        "the HPA to raise filewcount to 3 Ready pods", lambda: deployment()["status"].get("readyReplicas") == 3, 90
    )

    # The NodePort stand-in for filewcount (tests/harness/nodeports/np_30080.py) reads the real API server through
    # kind's kubeconfig and answers on the mapped host port once the Deployment is available.
    with urllib.request.urlopen(f"http://127.0.0.1:{flux_cluster['host_port']}/", timeout=10) as response:
        assert response.status == 200
        assert "docker.io/bldrtech/filewcount:1.0" in response.read().decode()

    # Add a manifest and push: it is created.
    (work / "kube" / "apps" / "demo-namespace.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    )
    added = push(work, url, "Add the demo namespace")
    _kustomization, cond = reconcile(flux_cluster, added)
    assert cond["status"] == "True", cond
    assert kubectl(flux_cluster, "get", "namespace", "demo", check=False).returncode == 0

    # Delete it and push: it is pruned.
    (work / "kube" / "apps" / "demo-namespace.yaml").unlink()
    removed = push(work, url, "Remove the demo namespace")
    reconcile(flux_cluster, removed)
    wait_for(
        "the demo namespace to be pruned",
        lambda: kubectl(flux_cluster, "get", "namespace", "demo", check=False).returncode != 0,
        120,
    )

    # An unknown field: the real API server drops it with a warning on server-side apply (the retired emulated API said
    # 422), so the Kustomization applies the rest and stays Ready.
    broken = work / "kube" / "apps" / "broken.yaml"
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "broken", "namespace": "filewcount"}}
    broken.write_text(yaml.safe_dump({**manifest, "data": {"a": "b"}, "bogusField": True}))
    _kustomization, cond = reconcile(flux_cluster, push(work, url, "Push a manifest with an unknown field"))
    assert cond["status"] == "True", cond
    stored = json.loads(kubectl(flux_cluster, "get", "configmap", "broken", "-n", "filewcount", "-o", "json").stdout)
    assert "bogusField" not in stored and stored["data"] == {"a": "b"}

    # A wrong type is refused: the Kustomization is not Ready and its message names the object and the field.
    broken.write_text(yaml.safe_dump({**manifest, "data": {"a": {"nested": True}}}))
    _kustomization, cond = reconcile(flux_cluster, push(work, url, "Push a manifest with a wrong type"))
    assert cond["status"] == "False", cond
    assert "ConfigMap/filewcount/broken" in cond["message"] and ".data.a" in cond["message"], cond
    # Fixing it in git heals the Kustomization; nothing else was lost meanwhile.
    broken.unlink()
    _kustomization, cond = reconcile(flux_cluster, push(work, url, "Remove the broken manifest"))
    assert cond["status"] == "True", cond
    assert kubectl(flux_cluster, "get", "deployment", "filewcount", "-n", "filewcount", check=False).returncode == 0


def test_deleting_the_deployments_stops_the_controllers(flux_cluster):
    state = flux_cluster["state"]
    record = state.root / "flux" / "processes.json"
    before = json.loads(record.read_text())["controllers"]
    kubectl(flux_cluster, "delete", "deployment", "notification-controller", "-n", "flux-system")
    wait_for(
        "the supervisor to stop notification-controller",
        lambda: not harness._alive(before["notification-controller"]["pid"]),
        30,
    )
    assert harness._alive(before["source-controller"]["pid"])
