"""TEST STAND-IN for kind's default storage: the StorageClass `standard` and rancher's local-path-provisioner.

A kind cluster installs rancher's local-path-provisioner and makes its StorageClass `standard` the default; the
product relies on it (kube/bootstrap/git-server/pvc.yaml asks for a 1Gi ReadWriteOnce claim of class `standard`).
The harness has no such Deployment (kwok runs no containers), so this module plays the provisioner's part:

- ensure_storage_class(cluster) creates the StorageClass exactly as kind declares it (STORAGE_CLASS);
- reconcile_volumes(cluster) is one pass of the provisioner's control loop, meant to be called about once a second:
  for a claim of class `standard` that the scheduler has picked a node for (WaitForFirstConsumer: the annotation
  volume.kubernetes.io/selected-node), it creates the PersistentVolume `pvc-<claim uid>`, a hostPath volume bound
  in advance to the claim and pinned to that node, and creates its directory world-writable (mkdir -m 0777, as
  local-path's setup script does); kube-controller-manager's PV controller then binds the claim, and the
  scheduler places the pod. For a volume it provisioned that is Released (its claim deleted) or Failed, with
  reclaim policy Delete, it removes the directory and deletes the PersistentVolume, as local-path's teardown does.

What differs from the real provisioner:
- no helper pod: the directory is made and removed by this process, directly on this host;
- the directories live on the host under <cluster folder>/volumes/<pv name> instead of under
  /var/local-path-provisioner/<pv>_<namespace>_<claim> inside the node container, so they go away with the
  cluster's folder (`stop`), as a kind node's go away with the node;
- no size limit, no Block volumes, no claim selectors, no events, no finalizer on the volume: it only provisions
  and deletes, polling instead of watching.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cluster.py may import this module; no import of it at run time.
    from cluster import Cluster

PROVISIONER = "rancher.io/local-path"
CLASS_NAME = "standard"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"

# The StorageClass kind installs in every node image: kubernetes-sigs/kind, pkg/build/nodeimage/const_storage.go,
# `defaultStorageManifest` (kind's customised copy of rancher/local-path-provisioner's deploy manifest, "install as
# the default storage class"). kind's manifest also sets metadata.namespace: kube-system, which the API server
# ignores for this cluster-scoped kind; it is left out here.
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": CLASS_NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
    "provisioner": PROVISIONER,
    "volumeBindingMode": "WaitForFirstConsumer",
    "reclaimPolicy": "Delete",
}


def volumes_dir(cluster: Cluster) -> Path:
    """Where the volumes' directories live: <cluster folder>/volumes, as an absolute path (hostPath needs one)."""
    return Path(os.path.abspath(cluster.root / "volumes"))


def ensure_storage_class(cluster: Cluster) -> None:
    """Create (or restore) the StorageClass `standard` by server-side apply as the field manager `harness`."""
    cluster.apply(STORAGE_CLASS)


def _items(cluster: Cluster, path: str) -> list[dict] | None:
    """The items of a list, or None when the API server did not answer with one."""
    status, body = cluster.request("GET", path)
    if status != 200 or not isinstance(body, dict):
        return None
    return body.get("items") or []


def _wants_volume(claim: dict) -> str | None:
    """The node to provision on when the claim is one this provisioner serves and that still lacks a volume."""
    meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
    # Unset means the default class (the API server's DefaultStorageClass admission fills it in when one exists);
    # "" asks explicitly for no class.
    if spec.get("storageClassName", CLASS_NAME) != CLASS_NAME:
        return None
    if spec.get("volumeName") or meta.get("deletionTimestamp"):
        return None
    if spec.get("volumeMode", "Filesystem") != "Filesystem" or spec.get("selector"):
        return None
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        return None
    return (meta.get("annotations") or {}).get(SELECTED_NODE_ANNOTATION) or None


def _volume_for(cluster: Cluster, claim: dict, node: str) -> dict:
    meta, spec = claim["metadata"], claim["spec"]
    name = f"pvc-{meta['uid']}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY_ANNOTATION: PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS_NAME,
            "volumeMode": "Filesystem",
            "hostPath": {"path": str(volumes_dir(cluster) / name), "type": "DirectoryOrCreate"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
                    ]
                }
            },
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def _make_directory(path: Path) -> None:
    """mkdir -m 0777 -p, as local-path's setup script: the pod's non-root user can write to it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # world-writable on purpose, as on kind


def _remove_directory(cluster: Cluster, volume: dict) -> None:
    """rm -rf the volume's directory, as local-path's teardown script; only ever under <cluster>/volumes."""
    path = ((volume.get("spec") or {}).get("hostPath") or {}).get("path")
    if not path:
        return
    target = Path(os.path.abspath(path))
    if target.parent == volumes_dir(cluster):
        shutil.rmtree(target, ignore_errors=True)


def _provision(cluster: Cluster, claims: list[dict]) -> list[str]:
    done = []
    for claim in claims:
        node = _wants_volume(claim)
        if not node:
            continue
        volume = _volume_for(cluster, claim, node)
        name = volume["metadata"]["name"]
        # The directory first, as local-path's helper pod makes it before the volume is created.
        _make_directory(Path(volume["spec"]["hostPath"]["path"]))
        status, answer = cluster.request("POST", "/api/v1/persistentvolumes", volume)
        if status in (200, 201):
            meta = claim["metadata"]
            done.append(f"provisioned {name} for {meta['namespace']}/{meta['name']} on {node}")
        elif status != 409:  # 409: made in an earlier pass, the PV controller has yet to bind it
            _remove_directory(cluster, volume)
            done.append(f"provisioning {name} answered HTTP {status}: {answer}")
    return done


def _delete_released(cluster: Cluster, volumes: list[dict]) -> list[str]:
    done = []
    for volume in volumes:
        meta, spec = volume.get("metadata") or {}, volume.get("spec") or {}
        if (meta.get("annotations") or {}).get(PROVISIONED_BY_ANNOTATION) != PROVISIONER:
            continue
        if (volume.get("status") or {}).get("phase") not in ("Released", "Failed"):
            continue
        if spec.get("persistentVolumeReclaimPolicy") != "Delete" or meta.get("deletionTimestamp"):
            continue
        _remove_directory(cluster, volume)
        status, answer = cluster.request("DELETE", f"/api/v1/persistentvolumes/{meta['name']}")
        if status in (200, 202):
            done.append(f"deleted {meta['name']}")
        elif status != 404:
            done.append(f"deleting {meta['name']} answered HTTP {status}: {answer}")
    return done


def reconcile_volumes(cluster: Cluster) -> list[str]:
    """One pass of the stand-in provisioner: provision the volumes claims wait for, delete released ones.

    Returns what it did, one line per volume (empty when nothing); does nothing while the API server is down."""
    done: list[str] = []
    with contextlib.suppress(OSError, http.client.HTTPException):
        claims = _items(cluster, "/api/v1/persistentvolumeclaims")
        if claims is not None:
            done += _provision(cluster, claims)
        volumes = _items(cluster, "/api/v1/persistentvolumes")
        if volumes is not None:
            done += _delete_released(cluster, volumes)
    return done
