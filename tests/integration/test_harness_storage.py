"""kind's default storage in the harness: the StorageClass `standard` and the stand-in for rancher's
local-path-provisioner (tests/harness/storage.py), against the real API server, PV controller and scheduler.

The product's git server claim and Deployment (kube/bootstrap/git-server), applied unchanged, get a volume: the
scheduler picks the node, the stand-in provisions a hostPath volume under the cluster's folder, the real PV
controller binds the claim and the pod is scheduled and made Ready; deleting the claim deletes the volume and its
directory. Claims of another class are left alone.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
import cluster as harness  # noqa: E402
import storage  # noqa: E402

NAME = "storage"
GIT_SERVER = ROOT / "kube" / "bootstrap" / "git-server"
RETAIN = ROOT / "kube" / "infrastructure" / "controllers" / "storage" / "storageclass-retain.yaml"
wait_for = harness.wait_for


@pytest.fixture(scope="module")
def storage_cluster(tmp_path_factory):
    """A harness cluster with the StorageClass and the stand-in provisioner looping every 0.5 s in a thread.

    The thread makes the test independent of whether the harness's own loop also runs the stand-in: two passes at
    once are harmless (the second POST of a volume answers 409, the second DELETE 404)."""
    state_dir = tmp_path_factory.mktemp("storage")
    state = harness.start(state_dir, NAME, metrics_api=False)
    kubeconfig = state.root / "kubeconfig"
    kubeconfig.write_text(json.dumps(state.kubeconfig(f"kind-{NAME}")))
    storage.ensure_storage_class(state)
    actions: list[str] = []
    stopping = threading.Event()

    def loop():
        while not stopping.is_set():
            actions.extend(storage.reconcile_volumes(state))
            stopping.wait(0.5)

    provisioner = threading.Thread(target=loop, name="local-path-stand-in", daemon=True)
    provisioner.start()
    yield {"state": state, "kubeconfig": kubeconfig, "actions": actions}
    stopping.set()
    provisioner.join(timeout=15)
    assert harness.stop(state_dir, NAME)


def kubectl(ctx, *args, stdin=None, check=True):
    return harness.kubectl(ctx["kubeconfig"], *args, stdin=stdin, check=check)


def get(ctx, path):
    status, body = ctx["state"].request("GET", path)
    return body if status == 200 else None


def test_standard_is_kinds_default_storage_class(storage_cluster):
    sc = get(storage_cluster, "/apis/storage.k8s.io/v1/storageclasses/standard")
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == "rancher.io/local-path"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["reclaimPolicy"] == "Delete"
    # Applying again is harmless (cluster start may call it on every start).
    storage.ensure_storage_class(storage_cluster["state"])
    # Default for real: the API server's DefaultStorageClass admission gives a claim without a class `standard`.
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "no-class", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    status, created = storage_cluster["state"].request(
        "POST", "/api/v1/namespaces/default/persistentvolumeclaims", claim
    )
    assert status == 201, created
    assert created["spec"]["storageClassName"] == "standard"
    kubectl(storage_cluster, "delete", "pvc", "no-class", "-n", "default", "--wait=true")


def test_git_server_claim_gets_a_volume_and_gives_it_back(storage_cluster):
    ctx, state = storage_cluster, storage_cluster["state"]
    for manifest in ("namespace.yaml", "pvc.yaml", "deployment.yaml"):
        kubectl(ctx, "apply", "-f", str(GIT_SERVER / manifest))
    claims = "/api/v1/namespaces/git-server/persistentvolumeclaims"

    # The scheduler picks the node, the stand-in provisions, the PV controller binds.
    claim = wait_for(
        "the git server's claim to be Bound",
        lambda: (c := get(ctx, f"{claims}/git-server-data")) and (c.get("status") or {}).get("phase") == "Bound" and c,
        60,
        interval=0.5,
    )
    assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == state.node_name
    pv_name = f"pvc-{claim['metadata']['uid']}"
    assert claim["spec"]["volumeName"] == pv_name
    assert claim["status"]["capacity"]["storage"] == "1Gi"
    pv = get(ctx, f"/api/v1/persistentvolumes/{pv_name}")
    assert pv["status"]["phase"] == "Bound"
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"
    assert pv["spec"]["storageClassName"] == "standard"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pv["spec"]["capacity"]["storage"] == "1Gi"
    ref = pv["spec"]["claimRef"]
    assert (ref["namespace"], ref["name"], ref["uid"]) == ("git-server", "git-server-data", claim["metadata"]["uid"])
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [state.node_name]}]}
    ]
    directory = Path(pv["spec"]["hostPath"]["path"])
    assert pv["spec"]["hostPath"]["type"] == "DirectoryOrCreate"
    # local-path's default folder name: <pv name>_<namespace>_<claim>; no extraMounts here, so under the cluster.
    assert directory == state.root / "volumes" / f"{pv_name}_git-server_git-server-data"
    assert directory.is_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o777

    # The pod, which could not be scheduled without the volume, is placed on the node and made Ready.
    def ready_pod():
        pods = get(ctx, "/api/v1/namespaces/git-server/pods?labelSelector=app.kubernetes.io%2Fname%3Dgit-server")
        for pod in (pods or {}).get("items") or []:
            conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
            if conditions.get("PodScheduled") == "True" and conditions.get("Ready") == "True":
                return pod
        return None

    pod = wait_for("the git server's pod to be scheduled and Ready", ready_pod, 60, interval=0.5)
    assert pod["spec"]["nodeName"] == state.node_name
    kubectl(ctx, "rollout", "status", "deployment/git-server", "-n", "git-server", "--timeout=60s")

    # Deleting the Deployment and the claim releases the volume; the stand-in deletes it and its directory.
    kubectl(ctx, "delete", "deployment", "git-server", "-n", "git-server", "--wait=true", "--timeout=60s")
    kubectl(ctx, "delete", "pvc", "git-server-data", "-n", "git-server", "--wait=true", "--timeout=60s")
    wait_for(
        f"PersistentVolume {pv_name} to be deleted",
        lambda: state.request("GET", f"/api/v1/persistentvolumes/{pv_name}")[0] == 404,
        60,
        interval=0.5,
    )
    wait_for(f"{directory} to be removed", lambda: not directory.exists(), 10, interval=0.5)


def _claim_and_pod(ctx, name: str, storage_class: str) -> dict:
    """A claim of the class and a pod that mounts it (WaitForFirstConsumer provisions for a scheduled pod only);
    returns the Bound claim."""
    manifest = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-user", "namespace": "default"},
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox", "volumeMounts": [{"name": "v", "mountPath": "/data"}]}
                ],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": name}}],
            },
        },
    ]
    kubectl(ctx, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest}))
    path = f"/api/v1/namespaces/default/persistentvolumeclaims/{name}"
    return wait_for(
        f"claim {name} to be Bound",
        lambda: (c := get(ctx, path)) and (c.get("status") or {}).get("phase") == "Bound" and c,
        60,
        interval=0.5,
    )


def test_the_retained_class_keeps_the_folder_on_the_mounted_host_path_for_the_next_claim(storage_cluster, tmp_path):
    """The tree's filewcount-retain class, with the node path bound to a host folder as the kind role's extraMounts
    do: the claim's folder is <host folder>/<namespace>/<claim>, deleting the claim keeps the volume (Released) and
    the folder with its data, and a new claim of the same name gets a new volume in the same folder."""
    ctx, state = storage_cluster, storage_cluster["state"]
    host = tmp_path / "volumes"
    host.mkdir()
    harness.set_node_mounts(state.root.parent.parent, NAME, {storage.NODE_PATH: str(host)})
    kubectl(ctx, "apply", "-f", str(RETAIN))
    try:
        claim = _claim_and_pod(ctx, "kept", "filewcount-retain")
        first = get(ctx, f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
        assert first["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert first["spec"]["storageClassName"] == "filewcount-retain"
        folder = host / "default" / "kept"
        assert Path(first["spec"]["hostPath"]["path"]) == folder
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777
        (folder / "marker").write_text("written before the claim went away\n")

        kubectl(ctx, "delete", "pod", "kept-user", "-n", "default", "--wait=true", "--timeout=60s")
        kubectl(ctx, "delete", "pvc", "kept", "-n", "default", "--wait=true", "--timeout=60s")
        name = first["metadata"]["name"]
        wait_for(
            f"PersistentVolume {name} to be Released",
            lambda: (get(ctx, f"/api/v1/persistentvolumes/{name}") or {}).get("status", {}).get("phase") == "Released",
            60,
            interval=0.5,
        )
        time.sleep(2)  # a few passes of the stand-in: a retained volume is not deleted
        assert get(ctx, f"/api/v1/persistentvolumes/{name}") is not None
        assert (folder / "marker").read_text() == "written before the claim went away\n"

        again = _claim_and_pod(ctx, "kept", "filewcount-retain")
        second = get(ctx, f"/api/v1/persistentvolumes/{again['spec']['volumeName']}")
        assert second["metadata"]["name"] != name
        assert Path(second["spec"]["hostPath"]["path"]) == folder
        assert (folder / "marker").exists()
        assert not [line for line in ctx["actions"] if "cannot provision" in line]
    finally:
        kubectl(ctx, "delete", "pod", "kept-user", "-n", "default", "--ignore-not-found", "--wait=true", check=False)
        kubectl(ctx, "delete", "pvc", "kept", "-n", "default", "--ignore-not-found", "--wait=true", check=False)
        for pv in (get(ctx, "/api/v1/persistentvolumes") or {}).get("items") or []:
            if pv["spec"].get("storageClassName") == "filewcount-retain":  # Retain: nobody else deletes them
                state.request("DELETE", f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
        harness.set_node_mounts(state.root.parent.parent, NAME, {})


def test_a_claim_of_another_class_is_left_alone(storage_cluster):
    ctx, state = storage_cluster, storage_cluster["state"]
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "elsewhere",
            "namespace": "default",
            # As if the scheduler had picked the node: only the class keeps the stand-in away.
            "annotations": {"volume.kubernetes.io/selected-node": state.node_name},
        },
        "spec": {
            "storageClassName": "other",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    status, created = state.request("POST", "/api/v1/namespaces/default/persistentvolumeclaims", claim)
    assert status == 201, created
    uid = created["metadata"]["uid"]
    assert not any(uid in line for line in storage.reconcile_volumes(state))
    time.sleep(3)  # several passes of the background loop
    assert get(ctx, f"/api/v1/persistentvolumes/pvc-{uid}") is None
    after = get(ctx, "/api/v1/namespaces/default/persistentvolumeclaims/elsewhere")
    assert (after.get("status") or {}).get("phase") == "Pending"
    assert not after["spec"].get("volumeName")
    assert not any(uid in line for line in ctx["actions"])
    kubectl(ctx, "delete", "pvc", "elsewhere", "-n", "default", "--wait=true")


def test_an_unreachable_api_server_is_a_pass_that_does_nothing(storage_cluster):
    state = storage_cluster["state"]
    down = dataclasses.replace(state, ports={**state.ports, "apiserver": harness.free_port()})
    assert storage.reconcile_volumes(down) == []
