"""Tests for plugins/module_utils/k8s_compare.py: what counts as already applied, and what must be written."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils.k8s_compare import contains, drifted

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "git-server", "namespace": "git-server", "labels": {"app.kubernetes.io/name": "git-server"}},
    "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30082}]},
}


def live(manifest):
    """What the API server returns: the manifest plus defaults, server metadata and status."""
    obj = copy.deepcopy(manifest)
    obj["metadata"].update({"uid": "u", "resourceVersion": "7", "managedFields": [{"manager": "x"}]})
    obj["spec"]["clusterIP"] = "127.96.0.10"
    obj["spec"]["ports"][0]["protocol"] = "TCP"
    obj["status"] = {"loadBalancer": {}}
    return obj


def test_defaults_and_status_the_server_adds_do_not_count():
    assert contains(live(SERVICE), SERVICE)
    assert drifted([SERVICE], [[live(SERVICE)]]) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o["spec"]["ports"][0].update(nodePort=30083),
        lambda o: o["metadata"]["labels"].update({"app.kubernetes.io/name": "other"}),
        lambda o: o["spec"]["ports"].append({"name": "ssh", "port": 22}),
        lambda o: o["spec"].pop("type"),
    ],
)
def test_a_changed_or_missing_field_is_drift(change):
    current = live(SERVICE)
    change(current)
    assert not contains(current, SERVICE)
    assert drifted([SERVICE], [[current]]) == [SERVICE]


def test_a_missing_object_is_drift_whatever_form_the_lookup_took():
    assert drifted([SERVICE, SERVICE, SERVICE], [None, [], {}]) == [SERVICE, SERVICE, SERVICE]


def test_scalars_compare_by_value_and_booleans_strictly():
    assert contains({"a": 1, "b": "1Gi", "c": True}, {"a": 1, "b": "1Gi", "c": True})
    assert contains({"a": 1.0}, {"a": 1})
    assert not contains({"c": 1}, {"c": True})
    assert not contains({"c": "true"}, {"c": True})


def test_live_entries_must_line_up_with_the_manifests():
    with pytest.raises(ValueError, match="one live entry per manifest"):
        drifted([SERVICE], [])
