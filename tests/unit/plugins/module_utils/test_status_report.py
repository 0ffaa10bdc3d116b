"""Unit tests for plugins/module_utils/status_report.py."""

from __future__ import annotations

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils import status_report as s

SHA = "0123456789abcdef0123456789abcdef01234567"


def _flux(kind, name, ns="flux-system", ready="True", message="Applied revision", **status):
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "R", "message": message}], **status},
    }


def _data():
    return {
        "context": "kind-filewcount",
        "sources": [
            _flux(
                "GitRepository",
                "flux-system",
                artifact={"revision": f"main@sha1:{SHA}"},
                message=f"stored artifact for revision 'main@sha1:{SHA}'",
            )
        ],
        "kustomizations": [
            _flux("Kustomization", "apps", lastAppliedRevision=f"main@sha1:{SHA}"),
            _flux(
                "Kustomization",
                "infrastructure-configs",
                ready="False",
                message="dependency not ready " * 10,
                lastAttemptedRevision=f"main@sha1:{SHA}",
            ),
        ],
        "helmreleases": [
            _flux(
                "HelmRelease",
                "kube-prometheus-stack",
                ns="monitoring",
                history=[{"chartName": "kube-prometheus-stack", "chartVersion": "88.5.3"}],
            )
        ],
        "hpas": [
            {
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "filewcount", "namespace": "filewcount"},
                "spec": {
                    "minReplicas": 3,
                    "maxReplicas": 10,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                        }
                    ],
                },
                "status": {
                    "currentReplicas": 3,
                    "desiredReplicas": 3,
                    "currentMetrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 4}}}
                    ],
                },
            }
        ],
        "pods": [
            {
                "kind": "Pod",
                "metadata": {"name": "filewcount-abc", "namespace": "filewcount"},
                "spec": {"containers": [{"name": "app", "image": "docker.io/bldrtech/filewcount:1.0"}]},
                "status": {"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 1}]},
            },
            {
                "kind": "Pod",
                "metadata": {"name": "filewcount-def", "namespace": "filewcount"},
                "spec": {"containers": [{"name": "app", "image": "docker.io/bldrtech/filewcount:1.0"}]},
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {"ready": False, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                    ],
                },
            },
        ],
        "node_metrics": [
            {
                "kind": "NodeMetrics",
                "metadata": {"name": "filewcount-control-plane"},
                "usage": {"cpu": "250000000n", "memory": "1048576Ki"},
            }
        ],
        "pod_metrics": [
            {
                "kind": "PodMetrics",
                "metadata": {"name": "filewcount-abc", "namespace": "filewcount"},
                "containers": [{"name": "app", "usage": {"cpu": "3m", "memory": "12Mi"}}],
            },
            {
                "kind": "PodMetrics",
                "metadata": {"name": "x", "namespace": "kube-system"},
                "containers": [{"name": "a", "usage": {"cpu": "7m", "memory": "20Mi"}}],
            },
        ],
        "events": [
            {
                "type": "Warning",
                "reason": "BackOff",
                "lastTimestamp": "2026-11-24T09:00:00Z",
                "count": 3,
                "message": "Back-off restarting failed container",
                "involvedObject": {"kind": "Pod", "namespace": "filewcount", "name": "filewcount-def"},
            }
        ],
    }


def test_report_has_every_section_in_order():
    lines = s.build_report(_data())
    titles = [line for line in lines if not line.startswith(" ")]
    assert titles == [
        "Cluster: kind-filewcount",
        "Flux sources",
        "Flux Kustomizations",
        "HelmReleases",
        "Application",
        "Metrics",
        "Recent Warning events (newest first)",
    ]


def test_report_content():
    text = "\n".join(s.build_report(_data()))
    assert "GitRepository  flux-system/flux-system  Ready=True  main@sha1:0123456789ab  stored artifact" in text
    assert SHA not in text
    assert "Kustomization  flux-system/infrastructure-configs  Ready=False" in text
    assert "kube-prometheus-stack@88.5.3" in text
    assert "replicas 3 current / 3 desired (min 3, max 10)" in text
    assert "CPU 4% of target 70%" in text
    assert "filewcount/filewcount-abc  Running ready 1/1 restarts 1" in text
    assert "cpu 3m mem 12Mi docker.io/bldrtech/filewcount:1.0" in text
    assert "CrashLoopBackOff ready 0/1 restarts 4" in text
    flat = " ".join(text.split())
    assert "Node filewcount-control-plane cpu 250m mem 1.0Gi" in flat
    assert "Pods 2 with metrics cpu 10m mem 32Mi" in flat
    assert "Pod/filewcount/filewcount-def  BackOff  Back-off restarting failed container (x3)" in text


def test_long_messages_are_clipped():
    lines = s.build_report(_data())
    line = next(line for line in lines if "infrastructure-configs" in line)
    assert line.endswith("...")
    assert len(line.split("main@sha1:0123456789ab", 1)[1].strip()) == s.MESSAGE_WIDTH


def test_empty_cluster_report():
    lines = s.build_report({})
    assert "  (none found)" in lines
    assert "  (no pods or HPA found)" in lines
    assert "  (no node or pod metrics yet)" in lines
    assert lines[-1] == "  (none)"


def test_metrics_api_missing_is_said():
    text = "\n".join(s.build_report({"metrics_available": False}))
    assert "metrics.k8s.io is not served" in text


def test_hpa_without_metrics_and_suspended_objects():
    data = _data()
    data["hpas"][0]["status"] = {}
    data["kustomizations"][0]["spec"] = {"suspend": True}
    text = "\n".join(s.build_report(data))
    assert "replicas ? current / ? desired" in text
    assert "CPU unknown (no metrics yet) of target 70%" in text
    apps = next(line for line in text.splitlines() if "flux-system/apps " in line)
    assert apps.split()[2] == "Ready=Suspended"


@pytest.mark.parametrize(
    ("rev", "short"),
    [
        (None, "-"),
        ("", "-"),
        (f"main@sha1:{SHA}", "main@sha1:0123456789ab"),
        ("88.5.3", "88.5.3"),
        ("latest@sha256:" + "f" * 64, "latest@sha256:ffffffffffff"),
    ],
)
def test_short_revision(rev, short):
    assert s.short_revision(rev) == short


# What source-controller writes when it cannot fetch a chart repository's index (here the harness proxy refuses it).
INDEX_FAILURE = (
    "failed to fetch Helm repository index: failed to cache index to temporary file: failed to fetch "
    "https://charts.unreachable.example/index.yaml : 403 Forbidden"
)


def test_helm_and_oci_sources_show_ready_and_message():
    data = _data()
    data["sources"] += [
        _flux("HelmRepository", "unreachable", ready="False", message=INDEX_FAILURE),
        _flux(
            "HelmRepository",
            "metrics-server",
            ns="kube-system",
            artifact={"revision": "sha256:" + "a" * 64},
            message="stored artifact: revision 'sha256:" + "a" * 64 + "'",
        ),
        _flux("OCIRepository", "podinfo", artifact={"revision": "6.1.6@sha256:" + "b" * 64}, message="stored"),
        _flux("HelmChart", "kube-system-metrics-server", artifact={"revision": "3.13.1"}, message="pulled"),
    ]
    lines = s.build_report(data)
    sources = lines[lines.index("Flux sources") + 1 : lines.index("Flux Kustomizations")]
    assert [line.split()[:3] for line in sources] == [
        ["GitRepository", "flux-system/flux-system", "Ready=True"],
        ["HelmChart", "flux-system/kube-system-metrics-server", "Ready=True"],
        ["HelmRepository", "flux-system/unreachable", "Ready=False"],
        ["HelmRepository", "kube-system/metrics-server", "Ready=True"],
        ["OCIRepository", "flux-system/podinfo", "Ready=True"],
    ]
    failing = " ".join(sources[2].split())
    assert failing.startswith(
        "HelmRepository flux-system/unreachable Ready=False - failed to fetch Helm repository index"
    )
    assert failing.endswith("...") and len(sources[2].split(" - ", 1)[1].strip()) == s.MESSAGE_WIDTH
    assert "sha256:aaaaaaaaaaaa" in sources[3] and "a" * 13 not in sources[3]
    assert "6.1.6@sha256:bbbbbbbbbbbb" in sources[4]
