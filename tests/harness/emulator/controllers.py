"""Fake controllers of the emulated Kubernetes API (test double, never shipped).

They report what the real controllers would report once everything works, synchronously after every write:
Deployments roll out (ReplicaSet + Pods, status replicas = spec.replicas, Available), StatefulSets/DaemonSets are
ready, Pods run, Nodes are Ready, PVCs bound, APIServices available, HPAs read CPU metrics, Flux sources store an
artifact and Kustomizations/HelmReleases apply it (Ready=True; dependsOn honoured). ``--fail`` rules turn a named
object's Ready (Available for Deployments) condition False with the given reason and message.
Nothing here runs workloads or applies the content of a Flux source.
"""

# Hashes here derive deterministic fake IDs/revisions, not secrets.
# ruff: noqa: S324, PLR0917, PLR0911

from __future__ import annotations

import copy
import dataclasses
import glob
import hashlib
import os
import time

import gitops
import store as store_mod
import yaml
from store import Store, now, stable_hash

FLUX_SUFFIX = ".toolkit.fluxcd.io"
# Charts whose CRDs helm-controller would install, and the files of the shared schemas directory holding them.
# A failed Kustomization is retried after this many seconds (Flux: spec.retryInterval), on the next write or tick.
RETRY_SECONDS = 1.0
CHART_CRDS = {"kube-prometheus-stack": "monitoring.coreos.com_*.yaml"}


@dataclasses.dataclass(frozen=True)
class FailRule:
    kind: str
    namespace: str
    name: str
    reason: str
    message: str

    @classmethod
    def parse(cls, text: str) -> FailRule:
        try:
            target, outcome = text.split("=", 1)
            kind, namespace, name = target.split("/")
            reason, message = outcome.split(":", 1)
        except ValueError as exc:
            raise ValueError(f"--fail {text!r} is not KIND/NAMESPACE/NAME=REASON:MESSAGE") from exc
        if not (kind and name and reason):
            raise ValueError(f"--fail {text!r} needs a kind, a name and a reason")
        return cls(kind.lower(), "" if namespace in ("", "_") else namespace, name, reason, message)


def _condition(
    old_status: dict | None, ctype: str, status: str, reason: str, message: str, generation: int | None = None
) -> dict:
    """A condition; lastTransitionTime (and any extra field) is kept while the status stays the same."""
    out = None
    for cond in (old_status or {}).get("conditions") or []:
        if cond.get("type") == ctype and cond.get("status") == status:
            out = copy.deepcopy(cond)
            break
    if out is None:
        out = {"type": ctype, "status": status, "lastTransitionTime": now()}
    for key, value in (("reason", reason), ("message", message)):
        if value:
            out[key] = value
        else:
            out.pop(key, None)
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def _ready(obj: dict | None) -> bool:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _hex(seed: str, length: int) -> str:
    out = ""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).hexdigest()
        counter += 1
    return out[:length]


class Controllers:
    def __init__(
        self, store: Store, fail_rules: list[FailRule], git_root: str | None = None, schemas_dir: str | None = None
    ):
        self.store = store
        self.fail_rules = fail_rules
        self.sources = gitops.GitSources(git_root)
        self.schemas_dir = schemas_dir
        self._applied: dict[tuple[str, str], tuple] = {}
        store.controller = self

    # --------------------------------------------------------------------------------------------- helpers
    def _t(self, group: str, version: str, plural: str):
        return self.store.find_type(group, version, plural)

    def _failure(self, obj: dict) -> FailRule | None:
        meta = obj["metadata"]
        for rule in self.fail_rules:
            if (
                rule.kind == obj["kind"].lower()
                and rule.name == meta["name"]
                and rule.namespace == meta.get("namespace", "")
            ):
                return rule
        return None

    def _items(self, group: str, version: str, plural: str) -> list[tuple]:
        rtype = self._t(group, version, plural)
        if rtype is None:
            return []
        return [(rtype, obj) for obj in self.store.list(rtype, None)[0]]

    def _by_group(self, suffix: str) -> list[tuple]:
        out = []
        seen = set()
        for rtype in self.store.all_types():
            if rtype.group.endswith(suffix) and rtype.store_key not in seen:
                seen.add(rtype.store_key)
                out += [(rtype, obj) for obj in self.store.list(rtype, None)[0]]
        return out

    # ------------------------------------------------------------------------------------------- reconcile
    def reconcile_all(self) -> None:
        if not self.store.controllers_enabled:
            return
        self.sources.forget()
        for _round in range(12):
            before = self.store.rv
            self._nodes()
            self._workloads()
            self._pods()
            self._simple_status()
            self._hpas()
            self._flux()
            if self.store.rv == before:
                break

    def _nodes(self) -> None:
        for rtype, node in self._items("", "v1", "nodes"):
            old = node.get("status") or {}
            status = copy.deepcopy(old)
            fail = self._failure(node)
            status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
            for ctype in ("MemoryPressure", "DiskPressure", "PIDPressure"):
                if not any(c.get("type") == ctype for c in status["conditions"]):
                    status["conditions"].append(
                        _condition(old, ctype, "False", f"KubeletHasNo{ctype}", f"kubelet has no {ctype.lower()}")
                    )
            ready = _condition(
                old,
                "Ready",
                "False" if fail else "True",
                fail.reason if fail else "KubeletReady",
                fail.message if fail else "kubelet is posting ready status",
            )
            ready.setdefault("lastHeartbeatTime", ready["lastTransitionTime"])
            status["conditions"].append(ready)
            status.setdefault(
                "addresses",
                [
                    {"type": "InternalIP", "address": "172.18.0.2"},
                    {"type": "Hostname", "address": node["metadata"]["name"]},
                ],
            )
            status.setdefault("capacity", {"cpu": "2", "memory": "8Gi", "pods": "110"})
            status.setdefault("allocatable", {"cpu": "2", "memory": "8Gi", "pods": "110"})
            status.setdefault(
                "nodeInfo",
                {
                    "architecture": "amd64",
                    "bootID": _hex("boot" + node["metadata"]["name"], 32),
                    "containerRuntimeVersion": "containerd://2.1.0",
                    "kernelVersion": "6.1.0",
                    "kubeProxyVersion": "",
                    "kubeletVersion": "v1.36.3",
                    "machineID": _hex("machine" + node["metadata"]["name"], 32),
                    "operatingSystem": "linux",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "systemUUID": _hex("uuid" + node["metadata"]["name"], 32),
                },
            )
            self.store.set_status_internal(rtype, node, status)

    def _pod_template_pods(
        self, owner_type, owner: dict, template: dict, replicas: int, names: list[str], extra_labels: dict
    ) -> None:
        pod_type = self._t("", "v1", "pods")
        ns = owner["metadata"]["namespace"]
        uid = owner["metadata"]["uid"]
        wanted = set(names)
        nodes = self.store.list(self._t("", "v1", "nodes"), None)[0]
        node_name = nodes[0]["metadata"]["name"] if nodes else ""
        for pod in self.store.list(pod_type, ns)[0]:
            if (
                any(o.get("uid") == uid for o in pod["metadata"].get("ownerReferences") or [])
                and pod["metadata"]["name"] not in wanted
            ):
                self.store.delete_internal(pod_type, pod)
        for name in names:
            if self.store.raw(pod_type, ns, name) is not None:
                continue
            spec = copy.deepcopy((template or {}).get("spec") or {})
            if node_name:
                spec.setdefault("nodeName", node_name)
            labels = dict(((template or {}).get("metadata") or {}).get("labels") or {})
            labels.update(extra_labels)
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": labels,
                    "annotations": dict(((template or {}).get("metadata") or {}).get("annotations") or {}),
                    "ownerReferences": [
                        {
                            "apiVersion": owner["apiVersion"],
                            "kind": owner["kind"],
                            "name": owner["metadata"]["name"],
                            "uid": uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": spec,
            }
            self.store.put_internal(pod_type, pod)

    def _workloads(self) -> None:
        rs_type = self._t("apps", "v1", "replicasets")
        for rtype, dep in self._items("apps", "v1", "deployments"):
            spec = dep.get("spec") or {}
            replicas = int(spec.get("replicas", 1))
            template = spec.get("template") or {}
            pth = stable_hash(template, 10)
            rs_name = f"{dep['metadata']['name']}-{pth}"
            ns = dep["metadata"]["namespace"]
            for rs in self.store.list(rs_type, ns)[0]:
                owned = any(o.get("uid") == dep["metadata"]["uid"] for o in rs["metadata"].get("ownerReferences") or [])
                if owned and rs["metadata"]["name"] != rs_name and (rs.get("spec") or {}).get("replicas", 1) != 0:
                    scaled = copy.deepcopy(rs)
                    scaled["spec"]["replicas"] = 0
                    self.store.put_internal(rs_type, scaled)
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pth
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = pth
            existing = self.store.raw(rs_type, ns, rs_name)
            rs = (
                copy.deepcopy(existing)
                if existing
                else {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "namespace": ns,
                        "labels": dict(tmpl["metadata"]["labels"]),
                        "annotations": {"deployment.kubernetes.io/revision": "1"},
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "name": dep["metadata"]["name"],
                                "uid": dep["metadata"]["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": {"selector": selector, "template": tmpl},
                }
            )
            rs["spec"]["replicas"] = replicas
            self.store.put_internal(rs_type, rs)
            fail = self._failure(dep)
            ready = 0 if fail else replicas
            old = dep.get("status") or {}
            gen = dep["metadata"].get("generation", 1)
            if fail:
                conditions = [
                    _condition(old, "Available", "False", fail.reason, fail.message),
                    _condition(
                        old,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f'ReplicaSet "{rs_name}" has timed out progressing.',
                    ),
                ]
            else:
                conditions = [
                    _condition(
                        old, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
                    ),
                    _condition(
                        old,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{rs_name}" has successfully progressed.',
                    ),
                ]
            for cond in conditions:
                cond.setdefault("lastUpdateTime", cond["lastTransitionTime"])
            status = {
                "observedGeneration": gen,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "conditions": conditions,
            }
            if ready < replicas:
                status["unavailableReplicas"] = replicas - ready
            if ready == 0:
                status.pop("readyReplicas")
                status.pop("availableReplicas")
            self.store.set_status_internal(rtype, dep, status)
        for rtype, rs in self._items("apps", "v1", "replicasets"):
            replicas = int((rs.get("spec") or {}).get("replicas", 1))
            pth = ((rs["metadata"].get("labels") or {}).get("pod-template-hash")) or stable_hash(rs["spec"], 10)
            names = [f"{rs['metadata']['name']}-{_hex(rs['metadata']['name'] + str(i), 5)}" for i in range(replicas)]
            self._pod_template_pods(
                rtype, rs, (rs.get("spec") or {}).get("template"), replicas, names, {"pod-template-hash": pth}
            )
            status = {
                "observedGeneration": rs["metadata"].get("generation", 1),
                "replicas": replicas,
                "fullyLabeledReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
            self.store.set_status_internal(rtype, rs, status)
        for rtype, sts in self._items("apps", "v1", "statefulsets"):
            replicas = int((sts.get("spec") or {}).get("replicas", 1))
            rev = f"{sts['metadata']['name']}-{stable_hash((sts.get('spec') or {}).get('template'), 10)}"
            names = [f"{sts['metadata']['name']}-{i}" for i in range(replicas)]
            self._pod_template_pods(
                rtype,
                sts,
                (sts.get("spec") or {}).get("template"),
                replicas,
                names,
                {"controller-revision-hash": rev, "apps.kubernetes.io/pod-index": "0"},
            )
            fail = self._failure(sts)
            ready = 0 if fail else replicas
            status = {
                "observedGeneration": sts["metadata"].get("generation", 1),
                "replicas": replicas,
                "readyReplicas": ready,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": ready,
                "currentRevision": rev,
                "updateRevision": rev,
                "collisionCount": 0,
            }
            if fail:
                status["conditions"] = [_condition(sts.get("status"), "Ready", "False", fail.reason, fail.message)]
            self.store.set_status_internal(rtype, sts, status)
        nodes = len(self.store.list(self._t("", "v1", "nodes"), None)[0])
        for rtype, ds in self._items("apps", "v1", "daemonsets"):
            fail = self._failure(ds)
            ready = 0 if fail else nodes
            status = {
                "observedGeneration": ds["metadata"].get("generation", 1),
                "currentNumberScheduled": nodes,
                "desiredNumberScheduled": nodes,
                "numberMisscheduled": 0,
                "numberReady": ready,
                "numberAvailable": ready,
                "updatedNumberScheduled": nodes,
            }
            if fail:
                status["numberUnavailable"] = nodes
                status["conditions"] = [_condition(ds.get("status"), "Ready", "False", fail.reason, fail.message)]
            self.store.set_status_internal(rtype, ds, status)

    def _owner_failing(self, pod: dict) -> FailRule | None:
        fail = self._failure(pod)
        if fail:
            return fail
        ns = pod["metadata"]["namespace"]
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "ReplicaSet":
                rs = self.store.raw(self._t("apps", "v1", "replicasets"), ns, ref.get("name", ""))
                for rs_ref in ((rs or {}).get("metadata") or {}).get("ownerReferences") or []:
                    dep = self.store.raw(self._t("apps", "v1", "deployments"), ns, rs_ref.get("name", ""))
                    if dep is not None:
                        dep = dict(dep, kind="Deployment")
                        fail = self._failure(dep)
                        if fail:
                            return fail
            elif ref.get("kind") == "StatefulSet":
                sts = self.store.raw(self._t("apps", "v1", "statefulsets"), ns, ref.get("name", ""))
                if sts is not None:
                    fail = self._failure(dict(sts, kind="StatefulSet"))
                    if fail:
                        return fail
        return None

    def _pods(self) -> None:
        for rtype, pod in self._items("", "v1", "pods"):
            old = pod.get("status") or {}
            fail = self._owner_failing(pod)
            started = old.get("startTime") or pod["metadata"]["creationTimestamp"]
            containers = (pod.get("spec") or {}).get("containers") or []
            ok = "False" if fail else "True"
            conditions = [
                _condition(old, "PodScheduled", "True", "", ""),
                _condition(old, "Initialized", "True", "", ""),
                _condition(old, "ContainersReady", ok, fail.reason if fail else "", fail.message if fail else ""),
                _condition(old, "Ready", ok, fail.reason if fail else "", fail.message if fail else ""),
            ]
            statuses = []
            for c in containers:
                st = {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": c.get("image", ""),
                    "ready": not fail,
                    "started": not fail,
                    "restartCount": 0,
                    "containerID": "containerd://" + _hex(pod["metadata"]["uid"] + c.get("name", ""), 64),
                }
                st["state"] = (
                    {"waiting": {"reason": fail.reason, "message": fail.message}}
                    if fail
                    else {"running": {"startedAt": started}}
                )
                statuses.append(st)
            ip = hashlib.sha1(pod["metadata"]["uid"].encode()).digest()
            status = {
                "phase": "Pending" if fail else "Running",
                "conditions": conditions,
                "hostIP": "172.18.0.2",
                "podIP": f"10.244.{ip[0]}.{max(ip[1], 2)}",
                "startTime": started,
                "containerStatuses": statuses,
                "qosClass": "BestEffort",
            }
            status["podIPs"] = [{"ip": status["podIP"]}]
            self.store.set_status_internal(rtype, pod, status)

    def _simple_status(self) -> None:
        for rtype, pvc in self._items("", "v1", "persistentvolumeclaims"):
            spec = pvc.get("spec") or {}
            storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
            self.store.set_status_internal(
                rtype,
                pvc,
                {
                    "phase": "Bound",
                    "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                    "capacity": {"storage": storage},
                },
            )
        for rtype, svc in self._items("apiregistration.k8s.io", "v1", "apiservices"):
            fail = self._failure(svc)
            cond = _condition(
                svc.get("status"),
                "Available",
                "False" if fail else "True",
                fail.reason if fail else "Passed",
                fail.message if fail else "all checks passed",
            )
            self.store.set_status_internal(rtype, svc, {"conditions": [cond]})

    def _hpas(self) -> None:
        for rtype, hpa in self._items("autoscaling", "v2", "horizontalpodautoscalers"):
            spec = hpa.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            ns = hpa["metadata"]["namespace"]
            target = None
            for ttype in self.store.types_by_kind(ref.get("kind", "")):
                target = self.store.raw(ttype, ns, ref.get("name", ""))
                if target is not None:
                    break
            lo, hi = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
            old = hpa.get("status") or {}
            fail = self._failure(hpa)
            if target is None or fail:
                reason = fail.reason if fail else "FailedGetScale"
                message = (
                    fail.message
                    if fail
                    else (
                        f"the HPA controller was unable to get the target's current scale: "
                        f'{ref.get("kind", "").lower()}s.apps "{ref.get("name", "")}" not found'
                    )
                )
                status = {
                    "currentReplicas": 0,
                    "desiredReplicas": 0,
                    "conditions": [
                        _condition(old, "AbleToScale", "False" if target is None else "True", reason, message),
                        _condition(old, "ScalingActive", "False", reason, message),
                    ],
                }
                self.store.set_status_internal(rtype, hpa, status)
                continue
            current = int((target.get("status") or {}).get("replicas", (target.get("spec") or {}).get("replicas", 1)))
            desired = min(max(current, lo), hi)
            metrics = []
            for metric in spec.get("metrics") or []:
                if metric.get("type") != "Resource":
                    continue
                res = metric.get("resource") or {}
                value = "5m" if res.get("name") == "cpu" else "20Mi"
                cur = {"averageValue": value}
                if (res.get("target") or {}).get("type") == "Utilization":
                    cur["averageUtilization"] = 5 if res.get("name") == "cpu" else 10
                metrics.append({"type": "Resource", "resource": {"name": res.get("name"), "current": cur}})
            status = {
                "observedGeneration": hpa["metadata"].get("generation", 1),
                "currentReplicas": current,
                "desiredReplicas": desired,
                "currentMetrics": metrics,
                "conditions": [
                    _condition(old, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size"),
                    _condition(
                        old,
                        "ScalingActive",
                        "True",
                        "ValidMetricFound",
                        "the HPA was able to successfully calculate a replica count from "
                        "cpu resource utilization (percentage of request)",
                    ),
                    _condition(
                        old,
                        "ScalingLimited",
                        "False",
                        "DesiredWithinRange",
                        "the desired count is within the acceptable range",
                    ),
                ],
            }
            if not metrics:
                status.pop("currentMetrics")
            self.store.set_status_internal(rtype, hpa, status)

    # ------------------------------------------------------------------------------------------------ flux
    def _source(self, kind: str, namespace: str, name: str) -> dict | None:
        for rtype in self.store.types_by_kind(kind):
            if rtype.group.endswith(FLUX_SUFFIX):
                obj = self.store.raw(rtype, namespace, name)
                if obj is not None:
                    return obj
        return None

    def _artifact(self, obj: dict) -> dict | None:
        spec = obj.get("spec") or {}
        kind = obj["kind"]
        meta = obj["metadata"]
        seed = stable_hash(spec, 40) + str(meta.get("generation", 1))
        if kind == "GitRepository":
            ref = spec.get("ref") or {}
            label = ref.get("name") or ref.get("tag") or ref.get("branch") or "master"
            revision = f"{label}@sha1:{_hex(seed, 40)}"
        elif kind == "OCIRepository":
            ref = spec.get("ref") or {}
            revision = f"{ref.get('tag') or 'latest'}@sha256:{_hex(seed, 64)}"
        elif kind == "HelmChart":
            revision = spec.get("version") or "0.1.0"
        elif kind == "HelmRepository":
            if spec.get("type") == "oci":
                return None
            revision = f"sha256:{_hex(seed, 64)}"
        elif kind == "Bucket":
            revision = f"sha256:{_hex(seed, 64)}"
        else:
            return None
        plural = kind.lower()
        path = f"{plural}/{meta['namespace']}/{meta['name']}/{_hex(seed, 12)}.tar.gz"
        return {
            "digest": f"sha256:{_hex(seed + 'digest', 64)}",
            "lastUpdateTime": meta["creationTimestamp"],
            "path": path,
            "revision": revision,
            "size": 4096,
            "url": f"http://source-controller.flux-system.svc.cluster.local./{path}",
        }

    def _dependency_failure(self, obj: dict) -> tuple[str, str] | None:
        for dep in (obj.get("spec") or {}).get("dependsOn") or []:
            ns = dep.get("namespace") or obj["metadata"]["namespace"]
            other = None
            for rtype in self.store.types_by_kind(obj["kind"]):
                other = self.store.raw(rtype, ns, dep.get("name", ""))
                if other is not None:
                    break
            if not _ready(other):
                return "DependencyNotReady", f"dependency '{ns}/{dep.get('name')}' is not ready"
        return None

    def _flux(self) -> None:
        for rtype, obj in self._by_group(FLUX_SUFFIX):
            if "status" not in rtype.subresources:
                continue
            meta = obj["metadata"]
            gen = meta.get("generation", 1)
            old = obj.get("status") or {}
            status = copy.deepcopy(old)
            status["observedGeneration"] = gen
            requested = (meta.get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
            if requested:
                status["lastHandledReconcileAt"] = requested
            problem = None
            fail = self._failure(obj)
            if fail:
                problem = (fail.reason, fail.message)
            kind = obj["kind"]
            message = "Applied"
            local = self._local_commit(obj) if kind == "GitRepository" else None
            if local is not None:
                label, sha = local
                if sha is None:
                    problem = problem or (
                        "GitOperationFailed",
                        f"failed to checkout and determine revision: unable to clone '{obj['spec'].get('url')}': "
                        f"couldn't find remote ref {label}",
                    )
                else:
                    artifact = self._artifact(obj) or {}
                    revision = f"{label}@sha1:{sha}"
                    if (old.get("artifact") or {}).get("revision") == revision:
                        artifact = old["artifact"]
                    else:
                        artifact.update(revision=revision, lastUpdateTime=now())
                    status["artifact"] = artifact
                    message = f"stored artifact for revision '{revision}'"
            elif rtype.group.startswith("source."):
                if not fail and _ready(obj) and old.get("observedGeneration") == gen and old.get("artifact"):
                    artifact = old["artifact"]
                else:
                    artifact = self._artifact(obj)
                if artifact:
                    status["artifact"] = artifact
                    message = f"stored artifact for revision '{artifact['revision']}'"
                else:
                    message = "Helm repository is Ready"
            elif kind == "Kustomization":
                problem = problem or self._dependency_failure(obj)
                ref = (obj.get("spec") or {}).get("sourceRef") or {}
                source = self._source(
                    ref.get("kind", "GitRepository"), ref.get("namespace") or meta["namespace"], ref.get("name", "")
                )
                revision = ((source or {}).get("status") or {}).get("artifact", {}).get("revision")
                if not problem and (source is None or not revision):
                    problem = ("ArtifactFailed", "Source artifact not found, retrying in 30s")
                local = self._local_commit(source) if source is not None and source["kind"] == "GitRepository" else None
                if not problem and local is not None and local[1] is not None:
                    problem = self._reconcile_content(obj, local[1], status)
                if not problem:
                    status["lastAppliedRevision"] = revision
                    status["lastAttemptedRevision"] = revision
                    message = f"Applied revision: {revision}"
            elif kind == "HelmRelease":
                problem = problem or self._dependency_failure(obj)
                chart = (((obj.get("spec") or {}).get("chart") or {}).get("spec")) or {}
                chart_name = chart.get("chart") or meta["name"]
                version = chart.get("version") or "0.1.0"
                chart_ref = (obj.get("spec") or {}).get("chartRef")
                if chart_ref:
                    src = self._source(
                        chart_ref.get("kind", "OCIRepository"),
                        chart_ref.get("namespace") or meta["namespace"],
                        chart_ref.get("name", ""),
                    )
                    version = (((src or {}).get("status") or {}).get("artifact") or {}).get("revision", version)
                release = (obj.get("spec") or {}).get("releaseName") or meta["name"]
                target_ns = (obj.get("spec") or {}).get("targetNamespace") or meta["namespace"]
                if not problem:
                    self._install_chart_crds(chart_name)
                    status["lastAttemptedRevision"] = version
                    status["lastAttemptedGeneration"] = gen
                    status["lastAttemptedReleaseAction"] = "install"
                    status["helmChart"] = f"{meta['namespace']}/{meta['namespace']}-{meta['name']}"
                    status["storageNamespace"] = target_ns
                    first = ((old.get("history") or [{}])[0]).get("firstDeployed") or now()
                    status["history"] = [
                        {
                            "chartName": chart_name,
                            "chartVersion": version,
                            "configDigest": f"sha256:{_hex(stable_hash(obj.get('spec'), 40), 64)}",
                            "digest": f"sha256:{_hex(release + version, 64)}",
                            "firstDeployed": first,
                            "lastDeployed": first,
                            "name": release,
                            "namespace": target_ns,
                            "status": "deployed",
                            "version": 1,
                        }
                    ]
                    message = (
                        f"Helm install succeeded for release {target_ns}/{release}.v1 with chart {chart_name}@{version}"
                    )
            if problem:
                state = problem[2] if len(problem) > 2 else "False"
                ready = _condition(old, "Ready", state, problem[0], problem[1], None)
                status["conditions"] = [ready]
            else:
                reason = "Succeeded"
                if kind == "HelmRelease":
                    reason = "InstallSucceeded"
                elif kind == "Kustomization":
                    reason = "ReconciliationSucceeded"
                conditions = [_condition(old, "Ready", "True", reason, message, None)]
                if rtype.group.startswith("source.") and status.get("artifact"):
                    conditions.append(_condition(old, "ArtifactInStorage", "True", "Succeeded", message, None))
                if kind == "HelmRelease":
                    conditions.append(_condition(old, "Released", "True", "InstallSucceeded", message, None))
                if kind == "Kustomization":
                    conditions.append(_condition(old, "Healthy", "True", "Succeeded", "Health check passed", None))
                status["conditions"] = conditions
            for cond in status["conditions"]:
                cond["observedGeneration"] = gen
            self.store.set_status_internal(rtype, obj, status)

    def _install_chart_crds(self, chart: str) -> None:
        """helm-controller installs a chart's CRDs; do that for the charts whose CRDs the shared schemas hold."""
        pattern = CHART_CRDS.get(chart)
        if not pattern or not self.schemas_dir:
            return
        crd_type = self._t("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        for path in sorted(glob.glob(os.path.join(self.schemas_dir, "crds", pattern))):
            with open(path, encoding="utf-8") as fh:
                for doc in yaml.safe_load_all(fh):
                    if (
                        isinstance(doc, dict)
                        and doc.get("kind") == "CustomResourceDefinition"
                        and self.store.raw(crd_type, "", doc["metadata"]["name"]) is None
                    ):
                        self.store.put_internal(crd_type, doc)

    # ------------------------------------------------------------------------------- GitOps content (local git)
    def _local_commit(self, repo_obj: dict) -> tuple[str, str | None] | None:
        """(ref label, sha or None) for a GitRepository served from the local git root; None if not local."""
        spec = repo_obj.get("spec") or {}
        repo = self.sources.repo_for(spec.get("url", ""))
        if repo is None:
            return None
        ref = spec.get("ref") or {}
        resolved = self.sources.resolve(repo, ref)
        if resolved is None:
            return (ref.get("tag") or ref.get("name") or ref.get("branch") or "master", None)
        return resolved

    def _source_repo(self, ks: dict) -> str | None:
        ref = (ks.get("spec") or {}).get("sourceRef") or {}
        source = self._source("GitRepository", ref.get("namespace") or ks["metadata"]["namespace"], ref.get("name", ""))
        return self.sources.repo_for(((source or {}).get("spec") or {}).get("url", ""))

    def _type_for(self, api_version: str, kind: str):
        group, _sep, version = api_version.rpartition("/")
        for rtype in self.store.types_by_kind(kind):
            if rtype.group == group and rtype.version == version and not rtype.virtual:
                return rtype
        return None

    def _reconcile_content(self, ks: dict, sha: str, status: dict) -> tuple | None:
        """Build and apply the Kustomization's content like kustomize-controller; returns a problem or None."""
        meta, spec = ks["metadata"], ks.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        marker = (sha, meta.get("generation"), (meta.get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt"))
        previous = self._applied.get(key)
        retry = previous is not None and previous[1] is not None and time.monotonic() - previous[3] >= RETRY_SECONDS
        if previous is None or previous[0] != marker or retry:
            try:
                docs = self.sources.build(self._source_repo(ks), sha, spec.get("path") or "./")
            except gitops.BuildError as exc:
                self._applied[key] = (marker, ("BuildFailed", str(exc)), [], time.monotonic())
                return ("BuildFailed", str(exc))
            problem, applied = self._apply_all(ks, docs)
            if problem is None:
                self._prune(ks, applied)
                status["inventory"] = {"entries": [{"id": i, "v": v} for i, v, _rtype, _meta in applied]}
            self._applied[key] = (marker, problem, applied, time.monotonic())
        _marker, problem, applied, _applied_at = self._applied[key]
        if problem:
            return problem
        status["inventory"] = {"entries": [{"id": i, "v": v} for i, v, _rtype, _meta in applied]}
        if spec.get("wait"):
            return self._health(applied)
        return None

    def _apply_all(self, ks: dict, docs: list[dict]) -> tuple[tuple | None, list]:
        spec = ks.get("spec") or {}
        target_ns = spec.get("targetNamespace")
        labels = {
            "kustomize.toolkit.fluxcd.io/name": ks["metadata"]["name"],
            "kustomize.toolkit.fluxcd.io/namespace": ks["metadata"]["namespace"],
        }
        first = [d for d in docs if d.get("kind") in ("Namespace", "CustomResourceDefinition")]
        rest = [d for d in docs if d.get("kind") not in ("Namespace", "CustomResourceDefinition")]
        applied = []
        for stage in (first, rest):
            plan = []
            for original in stage:
                doc = copy.deepcopy(original)
                rtype = self._type_for(doc.get("apiVersion", ""), doc.get("kind", ""))
                meta = doc.setdefault("metadata", {})
                ref = f"{doc.get('kind')}/{meta.get('namespace', '')}/{meta.get('name', '')}"
                if rtype is None:
                    return (
                        (
                            "ReconciliationFailed",
                            f"{ref} dry-run failed: no matches for kind "
                            f'"{doc.get("kind")}" in version "{doc.get("apiVersion")}"',
                        ),
                        applied,
                    )
                if rtype.namespaced:
                    meta["namespace"] = target_ns or meta.get("namespace") or "default"
                else:
                    meta.pop("namespace", None)
                meta.setdefault("labels", {}).update(labels)
                plan.append((rtype, doc))
            for dry_run in (True, False):
                for rtype, doc in plan:
                    meta = doc["metadata"]
                    ref = f"{doc['kind']}/{meta.get('namespace', '')}/{meta['name']}".replace("//", "/")
                    try:
                        self.store.patch(
                            rtype,
                            meta.get("namespace", ""),
                            meta["name"],
                            "apply",
                            doc,
                            dry_run=dry_run,
                            field_manager="kustomize-controller",
                        )
                    except store_mod.ApiError as exc:
                        phase = "dry-run failed" if dry_run else "apply failed"
                        return (("ReconciliationFailed", f"{ref} {phase} ({exc.reason}): {exc.message}"), applied)
            for rtype, doc in plan:
                applied.append((gitops.inventory_id(doc, rtype.group), rtype.version, rtype, doc["metadata"]))
        return None, applied

    def _prune(self, ks: dict, applied: list) -> None:
        if not (ks.get("spec") or {}).get("prune"):
            return
        keep = {entry[0] for entry in applied}
        for entry in ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []:
            if entry.get("id") in keep:
                continue
            namespace, name, group, kind = [*entry.get("id", "").split("_"), "", "", "", ""][:4]
            for rtype in self.store.types_by_kind(kind):
                if rtype.group == group:
                    obj = self.store.raw(rtype, namespace, name)
                    if obj is not None:
                        self.store.delete_internal(rtype, obj)
                    break

    def _health(self, applied: list) -> tuple | None:
        for _id, _v, rtype, meta in applied:
            obj = self.store.raw(rtype, meta.get("namespace", ""), meta["name"])
            if obj is None:
                continue
            state = _health_state(obj)
            if state != "Current":
                ref = f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}".replace("//", "/")
                message = f"health check failed after 0s: timeout waiting for: [{ref} status: '{state}']"
                if state == "InProgress":
                    return ("Progressing", "Reconciliation in progress", "Unknown")
                return ("HealthCheckFailed", message)
        return None


def _health_state(obj: dict) -> str:
    """kstatus-like: Current, InProgress or Failed."""
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    kind = obj["kind"]
    if kind == "Deployment":
        if (conditions.get("Available") or {}).get("status") == "False":
            return "Failed"
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        if (
            status.get("observedGeneration") != obj["metadata"].get("generation")
            or status.get("availableReplicas", 0) < replicas
        ):
            return "InProgress"
        return "Current"
    if kind in ("StatefulSet", "ReplicaSet"):
        return (
            "Current"
            if status.get("readyReplicas", 0) >= (obj.get("spec") or {}).get("replicas", 1)
            else ("Failed" if (conditions.get("Ready") or {}).get("status") == "False" else "InProgress")
        )
    if kind == "DaemonSet":
        return (
            "Current"
            if status.get("numberReady", 0) >= status.get("desiredNumberScheduled", 0) and status
            else ("Failed" if (conditions.get("Ready") or {}).get("status") == "False" else "InProgress")
        )
    if "Ready" in conditions:
        ready = conditions["Ready"]
        if ready.get("status") == "True":
            return "Current"
        return "Failed" if ready.get("status") == "False" else "InProgress"
    return "Current"


# ---------------------------------------------------------------------------------------- metrics.k8s.io
def node_metrics(store: Store) -> list[dict]:
    out = []
    for node in store.list(store.find_type("", "v1", "nodes"), None)[0]:
        out.append(
            {
                "kind": "NodeMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {
                    "name": node["metadata"]["name"],
                    "creationTimestamp": now(),
                    "labels": node["metadata"].get("labels") or {},
                },
                "timestamp": now(),
                "window": "10.5s",
                "usage": {"cpu": "250m", "memory": "1024Mi"},
            }
        )
    return out


def pod_metrics(store: Store, namespace: str | None) -> list[dict]:
    out = []
    for pod in store.list(store.find_type("", "v1", "pods"), namespace)[0]:
        if (pod.get("status") or {}).get("phase") != "Running":
            continue
        containers = [
            {"name": c.get("name", ""), "usage": {"cpu": "5m", "memory": "20Mi"}}
            for c in (pod.get("spec") or {}).get("containers") or []
        ]
        out.append(
            {
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {
                    "name": pod["metadata"]["name"],
                    "namespace": pod["metadata"]["namespace"],
                    "creationTimestamp": now(),
                    "labels": pod["metadata"].get("labels") or {},
                },
                "timestamp": now(),
                "window": "10.5s",
                "containers": containers,
            }
        )
    return out


__all__ = ["Controllers", "FailRule", "node_metrics", "pod_metrics", "store_mod"]
