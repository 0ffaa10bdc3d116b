"""Unit tests for plugins/module_utils/k8s_health.py."""

from __future__ import annotations

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils import k8s_health as h


def _obj(*, kind="HelmRelease", name="x", ns="monitoring", conditions=None, generation=None, observed=None, **status):
    meta = {"name": name, "namespace": ns}
    if generation is not None:
        meta["generation"] = generation
    st = dict(status)
    if conditions is not None:
        st["conditions"] = conditions
    if observed is not None:
        st["observedGeneration"] = observed
    return {"kind": kind, "metadata": meta, "status": st}


READY = {"type": "Ready", "status": "True", "reason": "InstallSucceeded", "message": "Helm install succeeded"}
FAILED = {"type": "Ready", "status": "False", "reason": "InstallFailed", "message": "context deadline exceeded"}


@pytest.mark.parametrize(
    ("objs", "expected"),
    [
        ([], "Missing"),
        (None, "Missing"),
        ([_obj(conditions=[READY])], "True"),
        (_obj(conditions=[READY]), "True"),
        ({"resources": [_obj(conditions=[FAILED])]}, "False"),
        ([_obj(conditions=[])], "Unknown"),
        ([_obj(conditions=[READY], generation=3, observed=2)], "Unknown"),
        ([_obj(conditions=[READY], generation=3, observed=3)], "True"),
    ],
)
def test_condition_status(objs, expected):
    assert h.condition_status(objs) == expected


def test_describe_condition_names_object_reason_and_message():
    text = h.describe_condition([_obj(name="kube-prometheus-stack", conditions=[FAILED])])
    assert text == (
        "HelmRelease monitoring/kube-prometheus-stack: Ready=False reason=InstallFailed "
        "message=context deadline exceeded"
    )
    assert "no Ready condition" in h.describe_condition([_obj(conditions=[])])
    assert h.describe_condition([]) == "object not found"


def test_first_rejects_wrong_type():
    with pytest.raises(h.HealthError):
        h.condition_status("HelmRelease")


def _deploy(
    *,
    replicas=3,
    updated=3,
    available=3,
    total=3,
    unavailable=None,
    generation=2,
    observed=2,
    image="docker.io/bldrtech/filewcount:1.0",
    conditions=None,
):
    status = {
        "updatedReplicas": updated,
        "availableReplicas": available,
        "replicas": total,
        "readyReplicas": available,
        "observedGeneration": observed,
        "conditions": conditions or [],
    }
    if unavailable is not None:
        status["unavailableReplicas"] = unavailable
    return {
        "kind": "Deployment",
        "metadata": {"name": "filewcount", "generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
        "status": status,
    }


@pytest.mark.parametrize(
    ("dep", "image", "complete", "reason_part"),
    [
        (_deploy(), None, True, "3 of 3 replicas updated and available"),
        (_deploy(), "docker.io/bldrtech/filewcount:1.0", True, "available"),
        (_deploy(), "docker.io/bldrtech/filewcount:2.0", False, "waiting for docker.io/bldrtech/filewcount:2.0"),
        (_deploy(observed=1), None, False, "not observed generation 2"),
        (_deploy(updated=1, total=4), None, False, "1 of 3 replicas updated"),
        (_deploy(total=4), None, False, "1 old replicas pending termination"),
        (_deploy(available=2), None, False, "2 of 3 updated replicas available"),
        (_deploy(unavailable=1), None, False, "1 replicas unavailable"),
        (
            _deploy(
                conditions=[
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet has timed out progressing.",
                    }
                ],
                updated=1,
            ),
            None,
            False,
            "exceeded its progress deadline: ReplicaSet has timed out",
        ),
        ([], None, False, "does not exist"),
    ],
)
def test_rollout_state(dep, image, complete, reason_part):
    state = h.rollout_state(dep, image)
    assert state["complete"] is complete
    assert reason_part in state["reason"]


def _hpa(current_metrics=None, target=70):
    return {
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "filewcount", "namespace": "filewcount"},
        "spec": {
            "minReplicas": 3,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
                }
            ],
        },
        "status": {
            "currentReplicas": 3,
            "desiredReplicas": 4,
            **({"currentMetrics": current_metrics} if current_metrics is not None else {}),
        },
    }


def test_hpa_cpu_reads_current_utilisation():
    cpu = h.hpa_cpu(
        [
            _hpa(
                [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "current": {"averageUtilization": 12, "averageValue": "12m"}},
                    }
                ]
            )
        ]
    )
    assert cpu == {
        "found": True,
        "current": "12%",
        "target": "70%",
        "current_replicas": 3,
        "desired_replicas": 4,
        "min_replicas": 3,
        "max_replicas": 10,
    }


@pytest.mark.parametrize(
    "metrics",
    [
        None,
        [],
        [{"type": "Resource", "resource": {"name": "memory", "current": {"averageUtilization": 50}}}],
        [{"type": "Resource", "resource": {"name": "cpu", "current": {}}}],
    ],
)
def test_hpa_cpu_without_a_cpu_reading(metrics):
    assert h.hpa_cpu([_hpa(metrics)])["current"] is None


def test_hpa_cpu_average_value_and_missing():
    cpu = h.hpa_cpu(
        [_hpa([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "250000000n"}}}])]
    )
    assert cpu["current"] == "250m"
    assert h.hpa_cpu([])["found"] is False


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("250m", 250), ("1", 1000), ("2.5", 2500), ("123456789n", 123.456789), ("1500u", 1.5), (0, 0), ("1e3", 1e6)],
)
def test_parse_cpu(text, millicores):
    assert h.parse_cpu(text) == pytest.approx(millicores)


@pytest.mark.parametrize(
    ("text", "num"), [("100Mi", 100 * 2**20), ("1Gi", 2**30), ("12345Ki", 12345 * 1024), ("1k", 1000), ("5", 5)]
)
def test_parse_memory(text, num):
    assert h.parse_memory(text) == num


@pytest.mark.parametrize("bad", ["abc", "12XB", "", True, "1.2.3m"])
def test_parse_quantity_rejects(bad):
    with pytest.raises(h.HealthError):
        h.parse_quantity(bad)


@pytest.mark.parametrize(("mc", "text"), [(3.4, "3m"), (250, "250m"), (12000, "12.00")])
def test_format_cpu(mc, text):
    assert h.format_cpu(mc) == text


@pytest.mark.parametrize(("num", "text"), [(512, "512B"), (2048, "2Ki"), (100 * 2**20, "100Mi"), (3 * 2**30, "3.0Gi")])
def test_format_memory(num, text):
    assert h.format_memory(num) == text


def _target(health="up", **labels):
    return {
        "labels": labels,
        "health": health,
        "scrapeUrl": f"http://{labels.get('pod', 'x')}:8080/metrics",
        "lastError": "" if health == "up" else "connection refused",
    }


def _all_targets():
    return [
        _target(job="kubelet", metrics_path="/metrics"),
        _target(job="kubelet", metrics_path="/metrics/cadvisor"),
        _target(job="kube-state-metrics"),
        *[
            _target(namespace="flux-system", pod=f"{c}-controller-5d8f7b9c4-abcde", job="flux-system/flux-system")
            for c in ("source", "kustomize", "helm", "notification")
        ],
    ]


def _resp(targets):
    return {"status": "success", "data": {"activeTargets": targets, "droppedTargets": []}}


def test_targets_all_up():
    assert h.target_problems(_resp(_all_targets())) == []


def test_targets_missing_and_down_are_named():
    targets = [t for t in _all_targets() if t["labels"].get("metrics_path") != "/metrics/cadvisor"]
    targets[1]["health"] = "down"  # kube-state-metrics
    targets[1]["lastError"] = "context deadline exceeded"
    problems = h.target_problems(_resp(targets))
    assert problems[0] == "cAdvisor: no scrape target with job=~kubelet, metrics_path=~/metrics/cadvisor"
    assert problems[1].startswith("kube-state-metrics: 1 target(s), none up (")
    assert "context deadline exceeded" in problems[1]
    assert len(problems) == 2


def test_targets_one_up_is_enough_and_patterns_are_full_match():
    targets = [*_all_targets(), _target(health="down", job="kube-state-metrics")]
    assert h.target_problems(_resp(targets)) == []
    # "kubelet-extra" must not satisfy job=kubelet
    required = [{"name": "k", "labels": {"job": "kubelet"}}]
    assert h.target_problems(_resp([_target(job="kubelet-extra")]), required) == [
        "k: no scrape target with job=~kubelet"
    ]


@pytest.mark.parametrize("resp", ["<html>502 Bad Gateway</html>", {"status": "error", "error": "boom"}, None])
def test_targets_bad_response(resp):
    problems = h.target_problems(resp)
    assert len(problems) == 1
    assert "Prometheus" in problems[0]


def test_targets_bad_pattern():
    with pytest.raises(h.HealthError):
        h.target_problems(_resp([]), [{"name": "x", "labels": {"job": "("}}])


def _event(kind="Warning", reason="BackOff", when="2026-11-24T09:00:00Z", name="p", message="Back-off  restarting"):
    return {
        "type": kind,
        "reason": reason,
        "lastTimestamp": when,
        "message": message,
        "count": 2,
        "involvedObject": {"kind": "Pod", "namespace": "filewcount", "name": name},
        "metadata": {"namespace": "filewcount"},
    }


def test_recent_warnings_newest_first_and_limited():
    events = [
        _event(when="2026-11-24T09:00:00Z", name="a"),
        _event(kind="Normal", name="n"),
        _event(when="2026-11-24T09:05:00Z", name="b"),
        _event(when="2026-11-24T08:00:00Z", name="c"),
    ]
    rows = h.recent_warnings(events, 2)
    assert [r["object"] for r in rows] == ["Pod/filewcount/b", "Pod/filewcount/a"]
    assert rows[0]["message"] == "Back-off restarting"
    assert "Pod/filewcount/b BackOff" in h.describe_warnings(events)
    assert h.describe_warnings([]) == "no recent Warning events"


def test_phase_durations():
    marks = [
        {"phase": "kind", "at": 110.0},
        {"phase": "preflight", "at": 100.0},
        {"phase": "end", "at": 250.4},
        {"phase": "flux", "at": 180},
    ]
    assert h.phase_durations(marks) == [
        {"phase": "preflight", "seconds": 10.0, "text": "10s"},
        {"phase": "kind", "seconds": 70.0, "text": "1m10s"},
        {"phase": "flux", "seconds": 70.4, "text": "1m10s"},
        {"phase": "total", "seconds": 150.4, "text": "2m30s"},
    ]
    assert h.format_phase_durations(marks) == "preflight 10s, kind 1m10s, flux 1m10s, total 2m30s"
    assert h.phase_durations([]) == []
    assert h.phase_durations([{"phase": "only", "at": 1}]) == []


def test_not_ready_describes_each_failure():
    results = [
        {
            "item": {"name": "metrics-server", "namespace": "kube-system"},
            "resources": [_obj(name="metrics-server", ns="kube-system", conditions=[READY])],
        },
        {
            "item": {"name": "kube-prometheus-stack", "namespace": "monitoring"},
            "resources": [_obj(name="kube-prometheus-stack", conditions=[FAILED])],
        },
        {"item": {"name": "gone", "namespace": "monitoring"}, "resources": []},
        {"item": {"name": "err", "namespace": "monitoring"}, "msg": "Unauthorized"},
    ]
    assert h.not_ready(results, kind="HelmRelease") == [
        "HelmRelease monitoring/kube-prometheus-stack: Ready=False reason=InstallFailed "
        "message=context deadline exceeded",
        "HelmRelease monitoring/gone: not found (has Flux applied it yet?)",
        "HelmRelease monitoring/err: the API call failed: Unauthorized",
    ]
    assert h.not_ready(results[:1]) == []


def _service(kind="LoadBalancer", port=80, ingress=None):
    return {
        "kind": "Service",
        "spec": {"type": kind, "ports": [{"port": port}]},
        "status": {"loadBalancer": {"ingress": ingress if ingress is not None else []}},
    }


@pytest.mark.parametrize(
    ("service", "url"),
    [
        (
            _service(ingress=[{"hostname": "k8s-filewcou-abc.elb.eu-west-1.amazonaws.com"}]),
            "http://k8s-filewcou-abc.elb.eu-west-1.amazonaws.com/",
        ),
        (_service(port=8080, ingress=[{"ip": "203.0.113.7"}]), "http://203.0.113.7:8080/"),
        (_service(ingress=[{"ip": "2001:db8::7"}]), "http://[2001:db8::7]/"),
        (_service(ingress=[{}, {"ip": "203.0.113.8"}]), "http://203.0.113.8/"),
        (_service(ingress=[]), ""),  # not provisioned yet
        (_service(kind="ClusterIP"), ""),
        (_service(kind="NodePort", ingress=[{"ip": "203.0.113.7"}]), ""),
        (None, ""),
        ({"resources": []}, ""),  # a k8s_info result that found nothing
    ],
)
def test_load_balancer_url(service, url):
    assert h.load_balancer_url(service) == url


def test_load_balancer_url_reads_a_registered_k8s_info_result():
    result = {"resources": [_service(ingress=[{"ip": "203.0.113.7"}])], "changed": False}
    assert h.load_balancer_url(result, "") == "http://203.0.113.7"
