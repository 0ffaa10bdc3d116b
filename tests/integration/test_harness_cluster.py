"""The test harness's Kubernetes is the real thing: a control plane built from the pinned Go modules, started through
the stand-in kind CLI as bootstrap starts it, with kwok simulating the kind node.

Each test proves one property that a fake API could not: the pinned server version, a Ready node named as
kind names it, Deployments rolled out by the real controllers through kubernetes.core, namespace deletion that
garbage-collects, server-side apply conflicts and validation from the real API server, Job pods that succeed, the
metrics API, and KEDA with the real HPA controller scaling filewcount by the behaviour its ScaledObject declares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
import cluster as harness  # noqa: E402
import prometheus  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kind_harness  # noqa: E402

KIND = [sys.executable, str(HARNESS / "bin" / "kind")]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
NAME = "filewcount"
CONTEXT = f"kind-{NAME}"
APP = ROOT / "kube" / "apps" / "filewcount"


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory):
    """One cluster for the module, created and deleted with the stand-in kind (process backend)."""
    tmp = tmp_path_factory.mktemp("harness")
    env = dict(os.environ, STANDIN_STATE_DIR=str(tmp / "standin"), FILEWCOUNT_TESTBIN_DIR=str(harness.testbin_dir()))
    env.pop("STANDIN_API_SERVER", None)
    kubeconfig = tmp / "kubeconfig"
    config = tmp / "kind.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kind": "Cluster",
                "apiVersion": "kind.x-k8s.io/v1alpha4",
                "nodes": [{"role": "control-plane", "labels": {"ingress-ready": "true"}}],
            }
        )
    )
    created = subprocess.run(
        [*KIND, "create", "cluster", "--name", NAME, "--config", str(config), "--kubeconfig", str(kubeconfig)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    state = harness.Cluster.at(tmp / "standin" / "kind", NAME)
    assert state.load()
    yield {"env": env, "kubeconfig": kubeconfig, "state": state, "tmp": tmp}
    deleted = subprocess.run(
        [*KIND, "delete", "cluster", "--name", NAME, "--kubeconfig", str(kubeconfig)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert deleted.returncode == 0, deleted.stderr
    # Nothing of the cluster is left: no process, no listening port, no folder.
    assert not any(harness._alive(pid) for pid in state.pids.values())
    assert not state.root.exists()
    for port in state.ports.values():
        with harness.socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def kubectl(ctx, *args, stdin=None, check=True):
    return harness.kubectl(ctx["kubeconfig"], *args, stdin=stdin, check=check)


def get_json(kind_cluster, *args):
    return json.loads(kubectl(kind_cluster, "get", *args, "-o", "json").stdout)


wait_for = harness.wait_for


def test_server_reports_the_pinned_version(kind_cluster):
    version = json.loads(kubectl(kind_cluster, "version", "-o", "json").stdout)
    pinned = harness.versions()["KUBERNETES_VERSION"]
    assert version["serverVersion"]["gitVersion"] == pinned
    assert version["clientVersion"]["gitVersion"] == pinned


def test_node_is_named_and_labelled_as_kind_and_ready(kind_cluster):
    node = get_json(kind_cluster, "node", f"{NAME}-control-plane")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == f"{NAME}-control-plane"
    assert "node-role.kubernetes.io/control-plane" in labels
    assert labels["ingress-ready"] == "true"  # from the kind config, as kind sets it
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert not node["spec"].get("taints")  # kind removes the control-plane taint on a one-node cluster


def test_kubernetes_core_deployment_rolls_out(kind_cluster, tmp_path):
    playbook = tmp_path / "deploy.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Apply a Deployment with kubernetes.core",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Apply the namespace and the Deployment and wait for it",
                            "kubernetes.core.k8s": {
                                "kubeconfig": str(kind_cluster["kubeconfig"]),
                                "context": CONTEXT,
                                "wait": True,
                                "wait_timeout": 120,
                                "definition": [
                                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rollout"}},
                                    deployment("rollout", "web", 2),
                                ],
                            },
                        }
                    ],
                }
            ]
        )
    )
    interpreter = f"ansible_python_interpreter={sys.executable}"
    argv = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "-e", interpreter, str(playbook)]
    for run, want_changed in ((1, "changed=1"), (2, "changed=0")):
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert want_changed in proc.stdout, (run, proc.stdout[-2000:])
    replicasets = get_json(kind_cluster, "replicasets", "-n", "rollout")["items"]
    assert len(replicasets) == 1 and replicasets[0]["metadata"]["ownerReferences"][0]["name"] == "web"
    pods = get_json(kind_cluster, "pods", "-n", "rollout")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == f"{NAME}-control-plane"  # placed by the real scheduler
        assert pod["status"]["phase"] == "Running"
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"


def deployment(namespace, name, replicas):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "docker.io/bldrtech/filewcount:1.0"}]},
            },
        },
    }


def test_deleting_a_namespace_collects_its_objects(kind_cluster):
    manifest = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "doomed"}},
        deployment("doomed", "web", 1),
    ]
    kubectl(kind_cluster, "apply", "-f", "-", stdin=yaml.safe_dump_all(manifest))
    wait_for("a pod of the Deployment", lambda: get_json(kind_cluster, "pods", "-n", "doomed")["items"], 60)
    kubectl(kind_cluster, "delete", "namespace", "doomed", "--wait=false")
    gone = kubectl(kind_cluster, "get", "namespace", "doomed", check=False)
    wait_for(
        "the namespace to be deleted with its content",
        lambda: kubectl(kind_cluster, "get", "namespace", "doomed", check=False).returncode != 0,
        120,
    )
    assert gone.returncode == 0 or "NotFound" in gone.stderr
    for kind in ("configmaps", "deployments", "replicasets", "pods"):
        assert get_json(kind_cluster, kind, "-n", "doomed")["items"] == []


def test_server_side_apply_conflict_is_refused(kind_cluster):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned", "namespace": "default"}}
    first = dict(cm, data={"colour": "blue"})
    kubectl(kind_cluster, "apply", "--server-side", "--field-manager=first", "-f", "-", stdin=json.dumps(first))
    second = dict(cm, data={"colour": "red"})
    proc = kubectl(
        kind_cluster,
        "apply",
        "--server-side",
        "--field-manager=second",
        "-f",
        "-",
        stdin=json.dumps(second),
        check=False,
    )
    assert proc.returncode != 0
    assert "conflict" in proc.stderr.lower() and ".data.colour" in proc.stderr
    data = get_json(kind_cluster, "configmap", "owned", "-n", "default")["data"]
    assert data == {"colour": "blue"}


def test_invalid_object_is_refused_by_the_api_server(kind_cluster):
    bad = deployment("default", "bad", 1)
    bad["spec"]["replicas"] = -1
    proc = kubectl(kind_cluster, "apply", "-f", "-", stdin=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert 'The Deployment "bad" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0' in (
        proc.stderr
    )
    unknown = deployment("default", "bad", 1)
    unknown["spec"]["template"]["spec"]["containers"][0]["bogusField"] = True
    proc = kubectl(kind_cluster, "apply", "--validate=strict", "-f", "-", stdin=json.dumps(unknown), check=False)
    assert proc.returncode != 0 and 'unknown field "spec.template.spec.containers[0].bogusField"' in proc.stderr


def test_job_pods_succeed(kind_cluster):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once", "namespace": "default"},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "run", "image": "busybox:1.37"}]}}
        },
    }
    kubectl(kind_cluster, "apply", "-f", "-", stdin=json.dumps(job))
    kubectl(kind_cluster, "wait", "--for=condition=Complete", "job/once", "-n", "default", "--timeout=90s")
    pods = get_json(kind_cluster, "pods", "-n", "default", "-l", "job-name=once")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]


def load_test_job(name: str, script: str) -> dict:
    """A Job labelled as the load_test role labels its Job, whose command tests/harness/jobs.py runs on this host."""
    labels = {"app.kubernetes.io/name": "filewcount-load-test"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "ab", "image": "httpd:2.4.69-alpine", "command": ["/bin/sh", "-c", script]}
                    ],
                },
            },
        },
    }


def test_load_test_job_pods_run_their_command_on_the_host(kind_cluster):
    """Its pod stays Running while the command runs, then completes with its exit code and serves its output."""
    kubectl(kind_cluster, "apply", "-f", "-", stdin=json.dumps(load_test_job("ab-ok", "sleep 4; echo one; echo two")))
    time.sleep(2)
    pods = get_json(kind_cluster, "pods", "-n", "default", "-l", "job-name=ab-ok")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    kubectl(kind_cluster, "wait", "--for=condition=Complete", "job/ab-ok", "-n", "default", "--timeout=60s")
    assert kubectl(kind_cluster, "logs", "-n", "default", "job/ab-ok").stdout == "one\ntwo\n"

    kubectl(kind_cluster, "apply", "-f", "-", stdin=json.dumps(load_test_job("ab-bad", "echo broken >&2; exit 3")))
    kubectl(kind_cluster, "wait", "--for=condition=Failed", "job/ab-bad", "-n", "default", "--timeout=60s")
    pod = get_json(kind_cluster, "pods", "-n", "default", "-l", "job-name=ab-bad")["items"][0]
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert kubectl(kind_cluster, "logs", "-n", "default", "job/ab-bad").stdout == "broken\n"


def replicas(kind_cluster):
    return get_json(kind_cluster, "deployment", "filewcount", "-n", "filewcount").get("status", {}).get("replicas", 0)


def test_keda_scales_filewcount_on_the_request_rate_then_back(kind_cluster):
    """The tree's filewcount app (Namespace, Deployment, Service, HTTPRoute, ScaledObject, PDB) unchanged.

    Real: KEDA's operator turning the ScaledObject into the HorizontalPodAutoscaler filewcount and querying
    Prometheus; KEDA's metrics API server answering the external metric through the API server's aggregation
    layer; metrics-server for the CPU trigger; the HPA controller scaling. STAND-IN: Prometheus's query API
    (tests/harness/prometheus.py), which returns the request rate this test sets for the trigger's query.

    Up: 1000 requests per second against 25 per pod asks for 40 pods, so the HPA adds pods by its scaleUp policies
    (+100 % or +3 pods per 30 s) to maxReplicas. Down: the rate back to none (an empty result, which the trigger
    reads as 0); the HPA must wait out its 300 s stabilization window and then remove at most 2 pods per 60 s.
    """
    scaled = yaml.safe_load((APP / "scaledobject.yaml").read_text())
    spec = scaled["spec"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    trigger = next(t for t in spec["triggers"] if t["type"] == "prometheus")
    query = trigger["metadata"]["query"]
    root = kind_cluster["state"].root
    kind_harness.install_keda(kind_cluster["kubeconfig"], kind_cluster["tmp"])
    harness.apply_gateway_api_crds(kind_cluster["kubeconfig"])  # the HTTPRoute needs them (install_keda brought KEDA's)
    kubectl(kind_cluster, "apply", "-f", "-", stdin=harness.tree_manifests(APP))
    minimum, maximum = spec["minReplicaCount"], spec["maxReplicaCount"]

    def hpa():
        proc = kubectl(kind_cluster, "get", "hpa", "filewcount", "-n", "filewcount", "-o", "json", check=False)
        return proc.returncode == 0 and json.loads(proc.stdout)

    made = wait_for("KEDA to make the HorizontalPodAutoscaler filewcount", hpa, 180, interval=2)
    assert [o["kind"] for o in made["metadata"]["ownerReferences"]] == ["ScaledObject"]
    assert made["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert {m["type"] for m in made["spec"]["metrics"]} == {"External", "Resource"}
    wait_for(f"the HPA to raise filewcount to {minimum}", lambda: replicas(kind_cluster) >= minimum, 120)

    def reads_both():
        current = (hpa().get("status") or {}).get("currentMetrics") or []
        return {m["type"] for m in current} == {"External", "Resource"} and current

    current = wait_for("the HPA to read the request rate and CPU", reads_both, 180, interval=3)
    external = next(m["external"] for m in current if m["type"] == "External")
    assert external["current"]["averageValue"] == "0", current
    assert query in prometheus.queries(root), "KEDA never asked the trigger's query"

    prometheus.set_value(root, query, 1000)
    raised = time.monotonic()
    wait_for(f"the HPA to scale filewcount above {minimum}", lambda: replicas(kind_cluster) > minimum, 120, interval=2)
    first_up = time.monotonic() - raised
    wait_for(f"the HPA to reach maxReplicaCount {maximum}", lambda: replicas(kind_cluster) == maximum, 240, interval=2)
    status = hpa()["status"]
    assert status["desiredReplicas"] == maximum, status
    print(f"scale-up: above {minimum} after {first_up:.0f} s, at {maximum} after {time.monotonic() - raised:.0f} s")

    prometheus.set_value(root, query, None)
    lowered = time.monotonic()
    window = behavior["scaleDown"]["stabilizationWindowSeconds"]
    step = behavior["scaleDown"]["policies"][0]
    history = []  # (seconds since lowered, replicas)
    while time.monotonic() - lowered < window + 2 * step["periodSeconds"] + 90:
        history.append((time.monotonic() - lowered, replicas(kind_cluster)))
        drops = [t for (t, n), (_then, before) in zip(history[1:], history, strict=False) if n < before]
        if len(drops) >= 2:
            break
        time.sleep(3)
    print("scale-down:", [(round(t), n) for t, n in history if n != maximum][:10])
    drops = [(t, before - n) for (t, n), (_then, before) in zip(history[1:], history, strict=False) if n < before]
    assert len(drops) >= 2, f"the HPA did not scale down twice: {history[-5:]}"
    # Nothing before the stabilization window. The window runs from the HPA's last sync that still read the high
    # rate, which may fall up to one sync period (15 s) plus KEDA's polling interval before this test's clock.
    assert drops[0][0] >= window - 15 - spec["pollingInterval"], drops
    # At most `value` pods per period: each step removes at most 2, and the next comes a period later.
    assert all(n <= step["value"] for _when, n in drops), drops
    assert drops[1][0] - drops[0][0] >= step["periodSeconds"] - 5, drops
