"""TEST STAND-IN for kind's default storage: the StorageClass `standard` and rancher's local-path-provisioner.

A kind cluster installs rancher's local-path-provisioner (kind v0.33.0: v0.0.34) and makes its StorageClass
`standard` the default; the product relies on it (kube/bootstrap/git-server/pvc.yaml asks for a 1Gi ReadWriteOnce
claim of class `standard`) and adds the class `filewcount-retain` of the same provisioner
(kube/infrastructure/controllers/storage). The harness has no such Deployment (kwok runs no containers), so this
module plays the provisioner's part:

- ensure_storage_class(cluster) creates the StorageClass `standard` exactly as kind declares it (STORAGE_CLASS);
- reconcile_volumes(cluster) is one pass of the provisioner's control loop, meant to be called about once a second:
  for a claim of any class whose provisioner is rancher.io/local-path, once the scheduler has picked a node for it
  (WaitForFirstConsumer: the annotation volume.kubernetes.io/selected-node), it creates the PersistentVolume
  `pvc-<claim uid>`, a hostPath volume bound in advance to the claim and pinned to that node, with the class's
  reclaim policy, in the folder the class names, and creates that folder world-writable (mkdir -m 0777 -p, as
  local-path's setup script does); kube-controller-manager's PV controller then binds the claim, and the scheduler
  places the pod. For a volume it provisioned that is Released (its claim deleted) or Failed, with reclaim policy
  Delete, it removes the folder and deletes the PersistentVolume, as local-path's teardown does; a Retain volume
  is left as it is, folder and all ("Retained volume" in the provisioner's log).

Folders, as v0.0.34's provisioner.go names them under its node path /var/local-path-provisioner:
`<pv name>_<namespace>_<claim>` by default, or the class's `pathPattern` parameter, a Go template of which this
stand-in knows `{{ .PVName }}`, `{{ .PVC.Namespace }}` and `{{ .PVC.Name }}` (anything else is reported, not
guessed), and which must start with `{{ .PVC.Namespace }}/{{ .PVC.Name }}/` unless `allowUnsafePathPattern` is
true. The node path is the host folder kind's extraMounts bind at /var/local-path-provisioner (`node_mounts`,
recorded by the stand-in kind), as on kind, where that folder outlives the cluster; without such a mount it is
<cluster folder>/volumes, which goes away with the cluster's folder (`stop`), as a kind node's does.

What differs from the real provisioner:
- no helper pod: the folder is made and removed by this process, directly on this host;
- no size limit, no Block volumes, no claim selectors, no nodePath parameter, no events, no finalizer on the
  volume: it only provisions and deletes, polling instead of watching.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
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


NODE_PATH = "/var/local-path-provisioner"  # kind's local-path-config: nodePathMap DEFAULT_PATH_FOR_NON_LISTED_NODES
PATTERN_FIELD = re.compile(r"\{\{\s*\.(PVName|PVC\.Namespace|PVC\.Name)\s*\}\}")


class UnsupportedPattern(ValueError):
    """A pathPattern this stand-in cannot render, or one the real provisioner refuses."""


def volumes_dir(cluster: Cluster) -> Path:
    """The provisioner's node path on this host: the folder kind's extraMounts bind at /var/local-path-provisioner,
    else <cluster folder>/volumes; absolute, as hostPath needs."""
    # Read afresh: the stand-in kind records the mounts in cluster.json after the cluster started.
    try:
        mounts = json.loads((cluster.root / "cluster.json").read_text(encoding="utf-8")).get("node_mounts") or {}
    except (OSError, ValueError):
        mounts = cluster.node_mounts
    return Path(os.path.abspath(mounts.get(NODE_PATH) or cluster.root / "volumes"))


def ensure_storage_class(cluster: Cluster) -> None:
    """Create (or restore) the StorageClass `standard` by server-side apply as the field manager `harness`."""
    cluster.apply(STORAGE_CLASS)


def _items(cluster: Cluster, path: str) -> list[dict] | None:
    """The items of a list, or None when the API server did not answer with one."""
    status, body = cluster.request("GET", path)
    if status != 200 or not isinstance(body, dict):
        return None
    return body.get("items") or []


def _classes(cluster: Cluster) -> tuple[dict[str, dict], str | None]:
    """The StorageClasses this provisioner serves by name, and the name of the default class (any provisioner)."""
    served, default = {}, None
    for item in _items(cluster, "/apis/storage.k8s.io/v1/storageclasses") or []:
        name = item["metadata"]["name"]
        if (item["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
            default = name
        if item.get("provisioner") == PROVISIONER:
            served[name] = item
    return served, default


def _wants_volume(claim: dict, classes: dict[str, dict], default: str | None) -> tuple[str, dict] | None:
    """The node and class to provision with, when the claim is one this provisioner serves and still lacks a volume."""
    meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
    # Unset means the default class (the API server's DefaultStorageClass admission fills it in when one exists);
    # "" asks explicitly for no class.
    storage_class = classes.get(spec.get("storageClassName", default) or "")
    if storage_class is None:
        return None
    if spec.get("volumeName") or meta.get("deletionTimestamp"):
        return None
    if spec.get("volumeMode", "Filesystem") != "Filesystem" or spec.get("selector"):
        return None
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        return None
    node = (meta.get("annotations") or {}).get(SELECTED_NODE_ANNOTATION)
    return (node, storage_class) if node else None


def folder_name(storage_class: dict, pv_name: str, namespace: str, claim: str) -> str:
    """The volume's folder under the node path, as local-path-provisioner v0.0.34 names it (pathFromPattern)."""
    params = storage_class.get("parameters") or {}
    pattern = params.get("pathPattern")
    if pattern is None:
        return f"{pv_name}_{namespace}_{claim}"
    values = {"PVName": pv_name, "PVC.Namespace": namespace, "PVC.Name": claim}
    path = PATTERN_FIELD.sub(lambda m: values[m.group(1)], pattern)
    if "{{" in path or "}}" in path:
        raise UnsupportedPattern(f"pathPattern {pattern!r} uses a template this stand-in does not render")
    unsafe = (params.get("allowUnsafePathPattern") or "").lower() == "true"
    if not unsafe and not path.startswith(f"{namespace}/{claim}/"):
        raise UnsupportedPattern(f"pathPattern must start with {{{{ .PVC.Namespace }}}}/{{{{ .PVC.Name }}}}/: {path}")
    if ".." in Path(path).parts:
        raise UnsupportedPattern(f"pathPattern {pattern!r} leaves the node path")
    return path


def _volume_for(cluster: Cluster, claim: dict, node: str, storage_class: dict) -> dict:
    meta, spec = claim["metadata"], claim["spec"]
    name = f"pvc-{meta['uid']}"
    folder = volumes_dir(cluster) / folder_name(storage_class, name, meta["namespace"], meta["name"])
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY_ANNOTATION: PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": "Filesystem",
            "hostPath": {"path": os.path.normpath(folder), "type": "DirectoryOrCreate"},
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
    target, root = Path(os.path.abspath(path)), volumes_dir(cluster)
    if target != root and target.is_relative_to(root):
        shutil.rmtree(target, ignore_errors=True)


def _provision(cluster: Cluster, claims: list[dict], classes: dict[str, dict], default: str | None) -> list[str]:
    done = []
    for claim in claims:
        wanted = _wants_volume(claim, classes, default)
        if not wanted:
            continue
        node, storage_class = wanted
        try:
            volume = _volume_for(cluster, claim, node, storage_class)
        except UnsupportedPattern as exc:
            done.append(f"cannot provision {claim['metadata']['namespace']}/{claim['metadata']['name']}: {exc}")
            continue
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
        classes, default = _classes(cluster)
        claims = _items(cluster, "/api/v1/persistentvolumeclaims")
        if claims is not None:
            done += _provision(cluster, claims, classes, default)
        volumes = _items(cluster, "/api/v1/persistentvolumes")
        if volumes is not None:
            done += _delete_released(cluster, volumes)
    return done
