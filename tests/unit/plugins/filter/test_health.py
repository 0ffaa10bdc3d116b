"""Tests of the health filters: names, delegation to module_utils and error mapping."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.filewcount.gitops.plugins.filter.health import FilterModule

FILTERS = FilterModule().filters()


def test_filter_names():
    assert sorted(FILTERS) == sorted(
        [
            "condition_status",
            "describe_condition",
            "not_ready",
            "rollout_state",
            "hpa_cpu",
            "prometheus_target_problems",
            "recent_warnings",
            "describe_warnings",
            "phase_durations",
            "format_phase_durations",
            "status_report",
            "k8s_drifted",
            "load_balancer_url",
        ]
    )


def test_k8s_drifted_returns_what_the_cluster_lacks_or_holds_otherwise():
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}
    held = {**manifest, "metadata": {"name": "monitoring", "uid": "u"}, "status": {"phase": "Active"}}
    assert FILTERS["k8s_drifted"]([manifest, manifest], [[held], []]) == [manifest]


def test_condition_status_on_a_registered_result():
    result = {
        "resources": [
            {
                "kind": "Kustomization",
                "metadata": {"name": "apps"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
        ]
    }
    assert FILTERS["condition_status"](result) == "True"


def test_status_report_is_one_string():
    text = FILTERS["status_report"]({"context": "c"})
    assert text.startswith("Cluster: c\nFlux sources\n")


def test_module_utils_errors_become_filter_errors():
    with pytest.raises(AnsibleFilterError, match="condition_status: expected a Kubernetes object"):
        FILTERS["condition_status"]("not an object")
    with pytest.raises(AnsibleFilterError, match="bad label pattern"):
        FILTERS["prometheus_target_problems"](
            {"status": "success", "data": {"activeTargets": []}}, [{"name": "x", "labels": {"job": "("}}]
        )
