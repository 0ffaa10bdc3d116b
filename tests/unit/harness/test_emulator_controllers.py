"""Controllers mode of the emulated Kubernetes API: what the real controllers would report, and --fail rules."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, namespace

SCHEMAS = Path(os.environ.get("FILEWCOUNT_SCHEMAS_DIR", REPO.parent / "shared" / "schemas")) / "crds"


def _post(emu, path: str, body: dict) -> dict:
    status, _headers, out = emu.request("POST", path, body)
    assert status == 201, out
    return out


def _conditions(obj: dict) -> dict:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _flux_crds(emu) -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"Flux CRDs not found in {SCHEMAS}; set FILEWCOUNT_SCHEMAS_DIR to the shared schemas directory.")
    for name in (
        "source.toolkit.fluxcd.io_gitrepositories.yaml",
        "source.toolkit.fluxcd.io_helmrepositories.yaml",
        "kustomize.toolkit.fluxcd.io_kustomizations.yaml",
        "helm.toolkit.fluxcd.io_helmreleases.yaml",
    ):
        crd = yaml.safe_load((SCHEMAS / name).read_text())
        status, _headers, body = emu.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        assert status in (201, 409), body


def test_deployment_rolls_out_with_pods_and_metrics(controllers_emulator):
    emu = controllers_emulator
    namespace(emu, "apps")
    _post(
        emu,
        "/apis/apps/v1/namespaces/apps/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
    )
    _status, _headers, dep = emu.request("GET", "/apis/apps/v1/namespaces/apps/deployments/web")
    status = dep["status"]
    assert (
        status["replicas"],
        status["readyReplicas"],
        status["availableReplicas"],
        status["updatedReplicas"],
        status["observedGeneration"],
    ) == (3, 3, 3, 3, 1)
    assert _conditions(dep)["Available"]["status"] == "True"
    _status, _headers, pods = emu.request("GET", "/api/v1/namespaces/apps/pods?labelSelector=app%3Dweb")
    assert len(pods["items"]) == 3
    assert {p["status"]["phase"] for p in pods["items"]} == {"Running"}
    _status, _headers, metrics = emu.request("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods")
    assert metrics["kind"] == "PodMetricsList" and len(metrics["items"]) == 3
    # Scaling down removes pods; deleting the Deployment collects its ReplicaSets and Pods.
    emu.request(
        "PATCH",
        "/apis/apps/v1/namespaces/apps/deployments/web",
        {"spec": {"replicas": 1}},
        content_type="application/merge-patch+json",
    )
    assert len(emu.request("GET", "/api/v1/namespaces/apps/pods?labelSelector=app%3Dweb")[2]["items"]) == 1
    emu.request("DELETE", "/apis/apps/v1/namespaces/apps/deployments/web")
    assert emu.request("GET", "/api/v1/namespaces/apps/pods?labelSelector=app%3Dweb")[2]["items"] == []


def test_failing_deployment_reports_the_reason(controllers_emulator):
    emu = controllers_emulator
    namespace(emu, "apps")
    _post(
        emu,
        "/apis/apps/v1/namespaces/apps/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "sad"},
            "spec": {
                "selector": {"matchLabels": {"app": "sad"}},
                "template": {
                    "metadata": {"labels": {"app": "sad"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
                },
            },
        },
    )
    _status, _headers, dep = emu.request("GET", "/apis/apps/v1/namespaces/apps/deployments/sad")
    available = _conditions(dep)["Available"]
    assert (available["status"], available["reason"], available["message"]) == (
        "False",
        "ProgressDeadlineExceeded",
        "image pull back-off",
    )
    assert "readyReplicas" not in dep["status"]


def test_hpa_reads_cpu_metrics_and_nodes_are_ready(controllers_emulator):
    emu = controllers_emulator
    _post(emu, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "filewcount-control-plane"}})
    _status, _headers, node = emu.request("GET", "/api/v1/nodes/filewcount-control-plane")
    assert _conditions(node)["Ready"]["status"] == "True"
    _status, _headers, nm = emu.request("GET", "/apis/metrics.k8s.io/v1beta1/nodes/filewcount-control-plane")
    assert nm["usage"]["cpu"]
    namespace(emu, "hpa")
    _post(
        emu,
        "/apis/apps/v1/namespaces/hpa/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
    )
    _post(
        emu,
        "/apis/autoscaling/v2/namespaces/hpa/horizontalpodautoscalers",
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                    }
                ],
            },
        },
    )
    _status, _headers, hpa = emu.request("GET", "/apis/autoscaling/v2/namespaces/hpa/horizontalpodautoscalers/web")
    assert (hpa["status"]["currentReplicas"], hpa["status"]["desiredReplicas"]) == (2, 2)
    assert hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] >= 0
    assert _conditions(hpa)["ScalingActive"]["status"] == "True"


def test_flux_objects_become_ready_in_dependency_order(controllers_emulator):
    emu = controllers_emulator
    _flux_crds(emu)
    namespace(emu, "flux-system")
    _post(
        emu,
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories",
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "flux-system"},
            "spec": {"interval": "1m", "url": "http://git/filewcount.git", "ref": {"branch": "main"}},
        },
    )
    base = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations"
    for name, deps in (("apps", ["infra"]), ("infra", [])):
        _post(
            emu,
            base,
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": name},
                "spec": {
                    "interval": "10m",
                    "path": f"./{name}",
                    "prune": True,
                    "wait": True,
                    "dependsOn": [{"name": d} for d in deps],
                    "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                },
            },
        )
    _status, _headers, repo = emu.request(
        "GET", "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system"
    )
    revision = repo["status"]["artifact"]["revision"]
    assert re.fullmatch(r"main@sha1:[0-9a-f]{40}", revision)
    _status, _headers, apps = emu.request("GET", base + "/apps")
    assert _conditions(apps)["Ready"]["status"] == "True"
    assert apps["status"]["lastAppliedRevision"] == revision
    assert apps["status"]["observedGeneration"] == apps["metadata"]["generation"]


def test_fail_rule_makes_a_helmrelease_not_ready(controllers_emulator):
    emu = controllers_emulator
    _flux_crds(emu)
    namespace(emu, "monitoring")
    for name in ("broken", "fine"):
        _post(
            emu,
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/monitoring/helmreleases",
            {
                "apiVersion": "helm.toolkit.fluxcd.io/v2",
                "kind": "HelmRelease",
                "metadata": {"name": name},
                "spec": {
                    "interval": "10m",
                    "chart": {
                        "spec": {
                            "chart": "kube-prometheus-stack",
                            "version": "88.5.3",
                            "sourceRef": {
                                "kind": "HelmRepository",
                                "name": "prometheus-community",
                                "namespace": "flux-system",
                            },
                        }
                    },
                },
            },
        )
    _status, _headers, broken = emu.request(
        "GET", "/apis/helm.toolkit.fluxcd.io/v2/namespaces/monitoring/helmreleases/broken"
    )
    ready = _conditions(broken)["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "InstallFailed", "chart pull failed")
    _status, _headers, fine = emu.request(
        "GET", "/apis/helm.toolkit.fluxcd.io/v2/namespaces/monitoring/helmreleases/fine"
    )
    assert _conditions(fine)["Ready"]["status"] == "True"
    assert fine["status"]["history"][0]["chartVersion"] == "88.5.3"


def test_metrics_api_is_read_only(controllers_emulator):
    status, _headers, body = controllers_emulator.request(
        "POST", "/apis/metrics.k8s.io/v1beta1/nodes", {"kind": "NodeMetrics", "metadata": {"name": "x"}}
    )
    assert status == 405 and body["reason"] == "MethodNotAllowed"


def test_metrics_api_is_absent_without_controllers(emulator):
    _status, _headers, groups = emulator.request("GET", "/apis")
    assert "metrics.k8s.io" not in [g["name"] for g in groups["groups"]]


def test_controllers_settle_so_idle_clusters_do_not_change(controllers_emulator):
    """Check mode and idempotence rely on this: with nothing written, the resourceVersion stays put."""
    emu = controllers_emulator
    namespace(emu, "quiet")
    _post(emu, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "quiet-node"}})
    _post(
        emu,
        "/apis/apps/v1/namespaces/quiet/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
    )
    before = emu.request("GET", "/api/v1/namespaces")[2]["metadata"]["resourceVersion"]
    time.sleep(2.5)  # longer than the default --resync-seconds
    assert emu.request("GET", "/api/v1/namespaces")[2]["metadata"]["resourceVersion"] == before


def test_kube_prometheus_stack_release_installs_the_operator_crds(controllers_emulator):
    emu = controllers_emulator
    _flux_crds(emu)
    namespace(emu, "monitoring")
    _post(
        emu,
        "/apis/helm.toolkit.fluxcd.io/v2/namespaces/monitoring/helmreleases",
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "kube-prometheus-stack"},
            "spec": {
                "interval": "10m",
                "chart": {
                    "spec": {
                        "chart": "kube-prometheus-stack",
                        "version": "88.5.3",
                        "sourceRef": {
                            "kind": "HelmRepository",
                            "name": "prometheus-community",
                            "namespace": "flux-system",
                        },
                    }
                },
            },
        },
    )
    _status, _headers, resources = emu.request("GET", "/apis/monitoring.coreos.com/v1")
    assert {"PodMonitor", "ServiceMonitor", "PrometheusRule"} <= {r["kind"] for r in resources["resources"]}
