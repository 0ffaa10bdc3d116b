"""REST behaviour of the emulated Kubernetes API, through plain HTTP and the python client.

Each defect measured in kmock 0.8 (issue 4) has a test here proving this emulator does not have it.
"""

from __future__ import annotations

import json

import pytest
from conftest import namespace
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException


def _cm(name: str, ns: str, **extra) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, **extra}


def _dyn(emulator):
    return dynamic.DynamicClient(emulator.api_client())


# ------------------------------------------------------------------------------- kmock 0.8 defects, each absent
def test_namespaces_collection_is_not_misparsed_as_namespace_prefix(emulator):
    namespace(emulator, "parse-a")
    status, _headers, body = emulator.request("GET", "/api/v1/namespaces")
    assert status == 200
    assert body["kind"] == "NamespaceList"
    assert "parse-a" in [i["metadata"]["name"] for i in body["items"]]
    status, _headers, body = emulator.request("GET", "/api/v1/namespaces/parse-a")
    assert (status, body["kind"], body["metadata"]["name"]) == (200, "Namespace", "parse-a")
    status, _headers, body = emulator.request("GET", "/api/v1/namespaces/parse-a/configmaps")
    assert (status, body["kind"]) == (200, "ConfigMapList")


def test_put_is_a_full_replace(emulator):
    namespace(emulator, "put")
    emulator.request("POST", "/api/v1/namespaces/put/configmaps", _cm("c", "put", data={"a": "1", "b": "2"}))
    status, _headers, body = emulator.request(
        "PUT", "/api/v1/namespaces/put/configmaps/c", _cm("c", "put", data={"a": "9"})
    )
    assert status == 200
    assert body["data"] == {"a": "9"}
    assert emulator.request("GET", "/api/v1/namespaces/put/configmaps/c")[2]["data"] == {"a": "9"}


def test_put_with_stale_resource_version_is_a_conflict(emulator):
    namespace(emulator, "put")
    _status, _headers, created = emulator.request(
        "POST", "/api/v1/namespaces/put/configmaps", _cm("rv", "put", data={"a": "1"})
    )
    stale = created["metadata"]["resourceVersion"]
    emulator.request("PUT", "/api/v1/namespaces/put/configmaps/rv", _cm("rv", "put", data={"a": "2"}))
    body = _cm("rv", "put", data={"a": "3"})
    body["metadata"]["resourceVersion"] = stale
    status, _headers, err = emulator.request("PUT", "/api/v1/namespaces/put/configmaps/rv", body)
    assert (status, err["kind"], err["reason"]) == (409, "Status", "Conflict")


def test_server_side_apply_creates_missing_objects(emulator):
    namespace(emulator, "ssa")
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: ssa\ndata:\n  k: v\n"
    status, _headers, body = emulator.request(
        "PATCH",
        "/api/v1/namespaces/ssa/configmaps/applied?fieldManager=test",
        doc,
        content_type="application/apply-patch+yaml",
    )
    assert status == 200, body
    assert body["data"] == {"k": "v"}
    assert emulator.request("GET", "/api/v1/namespaces/ssa/configmaps/applied")[0] == 200


def test_server_side_apply_removes_fields_the_manager_stopped_applying(emulator):
    namespace(emulator, "ssa")
    path = "/api/v1/namespaces/ssa/configmaps/owned?fieldManager=mgr"
    for data in ({"a": "1", "b": "2"}, {"a": "1"}):
        emulator.request(
            "PATCH",
            path,
            json.dumps(_cm("owned", "ssa", data=data)).encode(),
            content_type="application/apply-patch+yaml",
        )
    assert emulator.request("GET", "/api/v1/namespaces/ssa/configmaps/owned")[2]["data"] == {"a": "1"}


def test_lists_carry_kind_and_api_version(emulator):
    status, _headers, body = emulator.request("GET", "/apis/apps/v1/deployments")
    assert (status, body["kind"], body["apiVersion"]) == (200, "DeploymentList", "apps/v1")
    assert "resourceVersion" in body["metadata"]


def test_discovery_names_subresources_once_and_core_group_version_is_v1(emulator):
    _status, _headers, core = emulator.request("GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    _status, _headers, apps = emulator.request("GET", "/apis/apps/v1")
    names = [r["name"] for r in apps["resources"]]
    assert "deployments/status" in names and "deployments/scale" in names
    assert not [n for n in names if n.count("/") > 1 or n.startswith("deployments/deployments")]
    _status, _headers, groups = emulator.request("GET", "/apis")
    assert all(not v["groupVersion"].startswith("/") for g in groups["groups"] for v in g["versions"])


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_dry_run_all_persists_nothing(emulator, method):
    namespace(emulator, "dry")
    emulator.request("POST", "/api/v1/namespaces/dry/configmaps", _cm("keep", "dry", data={"a": "1"}))
    before = emulator.request("GET", "/api/v1/namespaces/dry/configmaps")[2]
    if method == "POST":
        status, _headers, body = emulator.request(
            "POST", "/api/v1/namespaces/dry/configmaps?dryRun=All", _cm("new", "dry", data={"x": "y"})
        )
        assert status == 201 and body["metadata"]["name"] == "new"
    elif method == "PUT":
        status, _headers, body = emulator.request(
            "PUT", "/api/v1/namespaces/dry/configmaps/keep?dryRun=All", _cm("keep", "dry", data={"a": "2"})
        )
        assert status == 200 and body["data"] == {"a": "2"}
    elif method == "PATCH":
        status, _headers, body = emulator.request(
            "PATCH",
            "/api/v1/namespaces/dry/configmaps/keep?dryRun=All",
            {"data": {"a": "3"}},
            content_type="application/merge-patch+json",
        )
        assert status == 200 and body["data"] == {"a": "3"}
    else:
        status, _headers, body = emulator.request("DELETE", "/api/v1/namespaces/dry/configmaps/keep?dryRun=All")
        assert status == 200
    after = emulator.request("GET", "/api/v1/namespaces/dry/configmaps")[2]
    assert after["items"] == before["items"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_dry_run_apply_of_a_missing_object_persists_nothing(emulator):
    namespace(emulator, "dry")
    status, _headers, _body = emulator.request(
        "PATCH",
        "/api/v1/namespaces/dry/configmaps/ghost?fieldManager=t&dryRun=All",
        json.dumps(_cm("ghost", "dry")).encode(),
        content_type="application/apply-patch+yaml",
    )
    assert status == 200
    assert emulator.request("GET", "/api/v1/namespaces/dry/configmaps/ghost")[0] == 404


def test_label_and_field_selectors_filter(emulator):
    namespace(emulator, "sel")
    for name, tier in (("one", "web"), ("two", "db"), ("three", "web")):
        body = _cm(name, "sel")
        body["metadata"]["labels"] = {"tier": tier}
        emulator.request("POST", "/api/v1/namespaces/sel/configmaps", body)

    def names(query):
        return sorted(i["metadata"]["name"] for i in emulator.request("GET", "/api/v1/configmaps?" + query)[2]["items"])

    assert names("labelSelector=tier%3Dweb") == ["one", "three"]
    assert names("labelSelector=tier%20in%20(db)") == ["two"]
    assert names("labelSelector=tier!%3Dweb,tier") == ["two"]
    assert names("fieldSelector=metadata.name%3Dtwo") == ["two"]
    assert names("fieldSelector=metadata.namespace%3Dsel,metadata.name!%3Dtwo") == ["one", "three"]


def test_kinds_of_a_created_crd_are_served_at_once(emulator, tmp_path):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer"},
                                        "port": {"x-kubernetes-int-or-string": True},
                                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    },
                                },
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }
    status, _headers, body = emulator.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201, body
    conditions = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    _status, _headers, groups = emulator.request("GET", "/apis")
    assert "example.com" in [g["name"] for g in groups["groups"]]
    namespace(emulator, "crs")
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "crs"},
        "spec": {"size": 3, "port": "http", "extra": {"anything": [1, 2]}},
    }
    widgets = _dyn(emulator).resources.get(api_version="example.com/v1", kind="Widget")
    created = widgets.create(body=widget, namespace="crs")
    assert created.spec.size == 3
    result = emulator.kubectl("get", "wd", "-n", "crs", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "widget.example.com/w"
    # Deleting the CRD removes its kind and its objects.
    emulator.request("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert emulator.request("GET", "/apis/example.com/v1/namespaces/crs/widgets/w")[0] == 404


def test_custom_resource_schema_violations_are_422(emulator):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer"},
                                        "port": {"x-kubernetes-int-or-string": True},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    emulator.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    namespace(emulator, "crs")
    path = "/apis/example.com/v1/namespaces/crs/gadgets"

    def gadget(name, spec):
        return {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec}

    assert emulator.request("POST", path, gadget("ok", {"size": 1, "port": 8080}))[0] == 201
    for name, spec, field in (
        ("unknown", {"size": 1, "colour": "red"}, "spec.colour"),
        ("wrongtype", {"size": "big"}, "spec.size"),
        ("missing", {}, "spec"),
    ):
        status, _headers, body = emulator.request("POST", path, gadget(name, spec))
        assert (status, body["reason"]) == (422, "Invalid"), body
        assert field in body["message"]
    # Strategic merge patch is not supported for custom resources (real servers answer 415 as well).
    status, _headers, _body = emulator.request(
        "PATCH", path + "/ok", {"spec": {"size": 2}}, content_type="application/strategic-merge-patch+json"
    )
    assert status == 415


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"spec": {"replicas": 1, "bogusField": True}}, "unknown field"),
        ({"spec": {"replicas": "three"}}, "spec.replicas"),
    ],
)
def test_invalid_builtin_objects_are_422(emulator, patch, reason):
    namespace(emulator, "bad")
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "bad"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
            },
        },
    }
    deploy["spec"].update(patch["spec"])
    status, _headers, body = emulator.request("POST", "/apis/apps/v1/namespaces/bad/deployments", deploy)
    assert (status, body["kind"], body["reason"], body["code"]) == (422, "Status", "Invalid", 422)
    assert reason in body["message"]
    assert body["details"]["causes"]


def test_namespaced_objects_need_their_namespace(emulator):
    status, _headers, body = emulator.request("POST", "/api/v1/namespaces/nowhere/configmaps", _cm("c", "nowhere"))
    assert (status, body["reason"], body["message"]) == (404, "NotFound", 'namespaces "nowhere" not found')


def test_namespace_deletion_removes_its_objects(emulator):
    namespace(emulator, "doomed")
    emulator.request("POST", "/api/v1/namespaces/doomed/configmaps", _cm("c", "doomed"))
    assert emulator.request("DELETE", "/api/v1/namespaces/doomed")[0] == 200
    assert emulator.request("GET", "/api/v1/namespaces/doomed")[0] == 404
    assert emulator.request("GET", "/api/v1/configmaps?fieldSelector=metadata.namespace%3Ddoomed")[2]["items"] == []


def test_status_subresource_separates_status_from_spec(emulator):
    namespace(emulator, "st")
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "p", "namespace": "st"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"},
    }
    _status, _headers, created = emulator.request("POST", "/api/v1/namespaces/st/persistentvolumeclaims", pvc)
    assert "status" not in created  # dropped on create, like a real server
    status, _headers, body = emulator.request(
        "PATCH",
        "/api/v1/namespaces/st/persistentvolumeclaims/p/status",
        {"status": {"phase": "Bound"}, "spec": {"volumeName": "ignored"}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and body["status"] == {"phase": "Bound"} and "volumeName" not in body["spec"]
    _status, _headers, body = emulator.request(
        "PATCH",
        "/api/v1/namespaces/st/persistentvolumeclaims/p",
        {"status": {"phase": "Lost"}, "spec": {"volumeName": "v"}},
        content_type="application/merge-patch+json",
    )
    assert body["status"] == {"phase": "Bound"} and body["spec"]["volumeName"] == "v"


def test_patch_types(emulator):
    namespace(emulator, "pt")
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "pt"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "busybox:1.36"},
                    ]
                },
            },
        },
    }
    path = "/apis/apps/v1/namespaces/pt/deployments/d"
    emulator.request("POST", "/apis/apps/v1/namespaces/pt/deployments", deploy)
    _status, _headers, body = emulator.request(
        "PATCH",
        path,
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}},
        content_type="application/strategic-merge-patch+json",
    )
    containers = body["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "side"]
    assert containers[0]["image"] == "nginx:1.28" and containers[0]["env"] == [{"name": "A", "value": "1"}]
    assert body["metadata"]["generation"] == 2
    _status, _headers, body = emulator.request(
        "PATCH", path, [{"op": "add", "path": "/spec/replicas", "value": 4}], content_type="application/json-patch+json"
    )
    assert body["spec"]["replicas"] == 4
    status, _headers, body = emulator.request(
        "PATCH",
        path,
        [{"op": "replace", "path": "/spec/paused", "value": True}],
        content_type="application/json-patch+json",
    )
    assert status == 422  # RFC 6902: replace needs an existing member
    _status, _headers, body = emulator.request(
        "PATCH",
        path,
        {"metadata": {"labels": {"x": "y"}}, "spec": {"replicas": None}},
        content_type="application/merge-patch+json",
    )
    # replicas removed by the merge patch is defaulted back to 1, as kube-apiserver does
    assert body["metadata"]["labels"] == {"x": "y"} and body["spec"]["replicas"] == 1
    status, _headers, body = emulator.request("PATCH", path, {"spec": {}}, content_type="text/plain")
    assert status == 415


def test_unchanged_writes_keep_the_resource_version(emulator):
    namespace(emulator, "noop")
    _status, _headers, created = emulator.request(
        "POST", "/api/v1/namespaces/noop/configmaps", _cm("c", "noop", data={"a": "1"})
    )
    _status, _headers, patched = emulator.request(
        "PATCH",
        "/api/v1/namespaces/noop/configmaps/c",
        {"data": {"a": "1"}},
        content_type="application/strategic-merge-patch+json",
    )
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_errors_are_status_objects(emulator):
    status, _headers, body = emulator.request("GET", "/api/v1/namespaces/default/configmaps/missing")
    assert (status, body["kind"], body["reason"], body["message"]) == (
        404,
        "Status",
        "NotFound",
        'configmaps "missing" not found',
    )
    namespace(emulator, "dup")
    emulator.request("POST", "/api/v1/namespaces/dup/configmaps", _cm("c", "dup"))
    status, _headers, body = emulator.request("POST", "/api/v1/namespaces/dup/configmaps", _cm("c", "dup"))
    assert (status, body["reason"]) == (409, "AlreadyExists")


def test_python_client_typed_and_dynamic(emulator):
    core = client.CoreV1Api(emulator.api_client())
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "typed"}})
    core.create_namespaced_secret(
        "typed", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    )
    secret = core.read_namespaced_secret("s", "typed")
    assert secret.data == {"k": "dg=="} and secret.type == "Opaque"
    with pytest.raises(ApiException) as err:
        core.read_namespaced_secret("nope", "typed")
    assert err.value.status == 404
    services = _dyn(emulator).resources.get(api_version="v1", kind="Service")
    svc = services.create(
        namespace="typed",
        body={
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80, "nodePort": 30080}]},
        },
    )
    assert svc.spec.ports[0].nodePort == 30080 and svc.spec.clusterIP


def test_request_log_counts_verbs(emulator):
    emulator.request("POST", "/emulator/v1/reset-log")
    emulator.request("GET", "/api/v1/namespaces")
    emulator.request("GET", "/api/v1/namespaces/default")
    emulator.request("GET", "/apis")
    _status, _headers, log = emulator.request("GET", "/emulator/v1/requests")
    assert log["counts"] == {"list": 1, "get": 1, "discovery": 1}
    assert log["requests"][0] == {
        "method": "GET",
        "path": "/api/v1/namespaces",
        "verb": "list",
        "status": 200,
        "resource": "namespaces",
    }
