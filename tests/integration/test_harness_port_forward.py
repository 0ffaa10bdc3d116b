"""The applications of an "existing" harness cluster, reached as existing-cluster mode reaches them.

A cluster started by `cluster.py start` (not by the stand-in kind, so no host port is published for a node port)
runs the node-port stand-ins behind the applications' Deployments (workloads.py); the real `kubectl port-forward`
reaches them through the API server and kwok's kubelet server (kwok's ClusterPortForward), and network.py sends a
Service's in-cluster traffic to them (backends.json). The tree's manifests are applied unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
import cluster as harness  # noqa: E402

NAME = "existing"
CONTEXT = "existing-admin@existing"
PORT_FORWARDS = "/apis/kwok.x-k8s.io/v1alpha1/clusterportforwards"
wait_for = harness.wait_for


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A cluster made by `cluster.py start --context`, as a user's existing cluster would be handed over."""
    tmp = tmp_path_factory.mktemp("port-forward")
    state_dir, kubeconfig = tmp / "state", tmp / "kubeconfig"
    env = dict(os.environ, FILEWCOUNT_TESTBIN_DIR=str(harness.testbin_dir()))
    env.pop("STANDIN_PROXY_PORT", None)
    started = subprocess.run(
        [
            sys.executable,
            str(HARNESS / "cluster.py"),
            "start",
            "--state-dir",
            str(state_dir),
            "--name",
            NAME,
            "--context",
            CONTEXT,
            "--kubeconfig",
            str(kubeconfig),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stderr
        state = harness.Cluster.at(state_dir, NAME)
        assert state.load()
        yield {"state": state, "state_dir": state_dir, "kubeconfig": kubeconfig, "tmp": tmp}
    finally:
        harness.stop(state_dir, NAME)


def kubectl(ctx, *args, stdin=None, check=True):
    return harness.kubectl(ctx["kubeconfig"], *args, stdin=stdin, check=check)


def apply(ctx, docs):
    kubectl(ctx, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def processes(ctx) -> dict:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return json.loads((ctx["state"].root / "flux" / "processes.json").read_text(encoding="utf-8"))["controllers"]
    return {}


def backends(ctx) -> dict:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return json.loads((ctx["state"].root / "backends.json").read_text(encoding="utf-8"))
    return {}


def port_forward_object(ctx, name):
    status, body = ctx["state"].request("GET", f"{PORT_FORWARDS}/{name}")
    return body if status == 200 else None


def http_get(url, proxy=None):
    handlers = [urllib.request.ProxyHandler({"http": proxy} if proxy else {})]
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=10) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return None, str(exc)


@contextlib.contextmanager
def port_forward(ctx, namespace, target, port):
    """The real `kubectl port-forward -n NAMESPACE TARGET LOCAL:PORT`; yields the local port."""
    local = harness.free_port()
    log = ctx["tmp"] / f"port-forward-{namespace}-{local}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(harness.binary("kubectl")),
                "--kubeconfig",
                str(ctx["kubeconfig"]),
                "-n",
                namespace,
                "port-forward",
                "--address",
                "127.0.0.1",
                target,
                f"{local}:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            f"kubectl port-forward {target} to listen ({log})",
            lambda: proc.poll() is None and b"Forwarding from" in log.read_bytes(),
            30,
            interval=0.2,
        )
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def app_running(ctx, name):
    entry = processes(ctx).get(name)
    return entry if entry and harness._alive(entry["pid"]) else None


def test_context_is_the_one_asked_for(existing):
    assert kubectl(existing, "config", "current-context").stdout.strip() == CONTEXT
    # Not made by the stand-in kind: no node port is published on a host port.
    assert existing["state"].node_ports == {}


def test_filewcount_answers_through_kubectl_port_forward(existing):
    harness.apply_app_crds(existing["kubeconfig"])  # the app's HTTPRoute and ScaledObject need them
    manifests = harness.tree_manifests(ROOT / "kube" / "apps" / "filewcount")
    kubectl(existing, "apply", "-f", "-", stdin=manifests)
    entry = wait_for("the filewcount stand-in to run", lambda: app_running(existing, "filewcount"), 60)
    forward = wait_for(
        "the ClusterPortForward of filewcount",
        lambda: port_forward_object(existing, "harness-filewcount-filewcount"),
        30,
    )
    assert forward["spec"] == {
        "selector": {"matchNamespaces": ["filewcount"]},
        "forwards": [{"ports": [80], "target": {"address": "127.0.0.1", "port": entry["ports"]["app"]}}],
    }
    with port_forward(existing, "filewcount", "svc/filewcount", 80) as local:
        # The handler answers once the Deployment has an available replica (as a NodePort would).
        _status, body = wait_for(
            "GET / through port-forward to answer 200",
            lambda: (r := http_get(f"http://127.0.0.1:{local}/"))[0] == 200 and r,
            60,
        )
    assert "<h1>filewcount</h1>" in body and "docker.io/bldrtech/filewcount" in body, body
    # In-cluster traffic (network.py) reaches the same process.
    assert backends(existing)["filewcount/filewcount:80"] == f"127.0.0.1:{entry['ports']['app']}"
    proxy = f"http://127.0.0.1:{existing['state'].ports['proxy']}"
    status, body = http_get("http://filewcount.filewcount.svc.cluster.local/", proxy)
    assert status == 200 and "<h1>filewcount</h1>" in body, body

    kubectl(existing, "delete", "deployment", "filewcount", "-n", "filewcount")
    wait_for("the filewcount stand-in to stop", lambda: not harness._alive(entry["pid"]), 30)
    wait_for(
        "the ClusterPortForward of filewcount to go",
        lambda: port_forward_object(existing, "harness-filewcount-filewcount") is None,
        30,
    )
    wait_for("backends.json to drop filewcount", lambda: "filewcount/filewcount:80" not in backends(existing), 30)


def test_git_server_serves_git_through_port_forward_and_in_cluster(existing, tmp_path):
    kubectl(existing, "apply", "-k", str(ROOT / "kube" / "bootstrap" / "git-server"))
    # kubectl port-forward needs a Running pod, and this one waits for its volume claim to be bound first.
    kubectl(existing, "rollout", "status", "deployment/git-server", "-n", "git-server", "--timeout=120s")
    entry = wait_for("the git server stand-in to run", lambda: app_running(existing, "git-server"), 60)
    forward = wait_for(
        "the ClusterPortForward of the git server",
        lambda: port_forward_object(existing, "harness-git-server-git-server"),
        30,
    )
    # The container port (23232, named http), not the Service's 80: kubectl resolves the Service's targetPort.
    assert forward["spec"]["forwards"][0]["ports"] == [23232], forward
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)

    def git(*args, cwd=None):
        return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)

    work = tmp_path / "work"
    assert git("init", "--quiet", "--initial-branch=main", str(work)).returncode == 0
    (work / "README").write_text("existing cluster\n")
    git("add", "README", cwd=work)
    committed = git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "--quiet", "-m", "One", cwd=work)
    assert committed.returncode == 0, committed.stderr
    head = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    with port_forward(existing, "git-server", "svc/git-server", 80) as local:
        url = f"http://127.0.0.1:{local}/filewcount.git"
        listed = wait_for(
            "git ls-remote through port-forward",
            lambda: (p := git("ls-remote", url)).returncode == 0 and p,
            60,
        )
        assert listed.stdout == "", listed.stdout  # the empty filewcount.git the server makes
        pushed = git("push", "--quiet", url, "main", cwd=work)
        assert pushed.returncode == 0, pushed.stderr
        assert git("ls-remote", url, "refs/heads/main").stdout.split()[0] == head
    # Flux's GitRepository URL, through network.py, reaches the same repository.
    assert backends(existing)["git-server/git-server:80"] == f"127.0.0.1:{entry['ports']['app']}"
    proxy = f"http://127.0.0.1:{existing['state'].ports['proxy']}"
    status, body = http_get(
        "http://git-server.git-server.svc.cluster.local/filewcount.git/info/refs?service=git-upload-pack", proxy
    )
    assert status == 200 and f"{head} refs/heads/main" in body, body


GRAFANA = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}},
    # What kube-prometheus-stack renders for Grafana, reduced to the names the harness keys on.
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "kube-prometheus-stack-grafana", "namespace": "monitoring"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "grafana"}},
                "spec": {
                    "containers": [
                        {
                            "name": "grafana",
                            "image": "docker.io/grafana/grafana:12.1.1",
                            "ports": [{"name": "grafana", "containerPort": 3000}],
                        }
                    ]
                },
            },
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-prometheus-stack-grafana", "namespace": "monitoring"},
        "spec": {
            "type": "NodePort",
            "selector": {"app.kubernetes.io/name": "grafana"},
            "ports": [{"name": "http-web", "port": 80, "targetPort": "grafana", "nodePort": 30081}],
        },
    },
]


def test_grafana_stand_in_runs_until_a_host_port_serves_its_node_port(existing):
    apply(existing, GRAFANA)
    name = "kube-prometheus-stack-grafana"
    entry = wait_for("the Grafana stand-in to run", lambda: app_running(existing, name), 60)
    wait_for("its ClusterPortForward", lambda: port_forward_object(existing, f"harness-monitoring-{name}"), 30)
    with port_forward(existing, "monitoring", f"svc/{name}", 80) as local:
        _status, body = wait_for(
            "GET /api/health through port-forward",
            lambda: (r := http_get(f"http://127.0.0.1:{local}/api/health"))[0] == 200 and r,
            60,
        )
    assert json.loads(body)["database"] == "ok", body
    # A cluster that publishes 30081 on a host port (the stand-in kind's record) serves it there: the supervisor
    # stops its own stand-in, as it never starts one on a kind cluster.
    harness.set_node_ports(existing["state_dir"], NAME, {30081: "127.0.0.1:1"})
    try:
        wait_for("the Grafana stand-in to stop", lambda: not harness._alive(entry["pid"]), 30)
        wait_for(
            "its ClusterPortForward to go",
            lambda: port_forward_object(existing, f"harness-monitoring-{name}") is None,
            30,
        )
        assert f"monitoring/{name}:80" not in backends(existing)
    finally:
        harness.set_node_ports(existing["state_dir"], NAME, {})
    wait_for("the Grafana stand-in to run again", lambda: app_running(existing, name), 60)
