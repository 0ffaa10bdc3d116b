"""Object store and REST semantics of the emulated Kubernetes API (test double, never shipped).

All state lives in memory behind one lock; every persisted change gets a new cluster-wide resourceVersion and a
watch event. See emulator.py for the documented approximations.
"""

# Hashes and random numbers here make deterministic names and addresses, not secrets; the write paths take
# the REST call's arguments positionally like the HTTP layer passes them.
# ruff: noqa: S311, S324, PLR0917

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import random
import threading
import uuid
from typing import Any

import patching
import resources
import validation
from resources import ResourceType

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ApiError(Exception):
    """An error answered as a Kubernetes Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _qualified(rtype: ResourceType) -> str:
    return f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(rtype)} "{name}" not found',
        {"name": name, "group": rtype.group, "kind": rtype.plural},
    )


def namespace_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"})


def invalid(rtype: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiError:
    kind = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
    parts = [f"{f}: {m}" for f, m in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {joined}',
        {
            "name": name,
            "group": rtype.group,
            "kind": rtype.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
        },
    )


def _comparable(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    meta = out.get("metadata") or {}
    for key in ("resourceVersion", "managedFields", "generation"):
        meta.pop(key, None)
    return out


def _spec_part(obj: dict) -> dict:
    out = {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    meta = obj.get("metadata") or {}
    # CRDs and most kinds only bump generation for spec changes; deletionTimestamp also does in real servers.
    return {"spec": out, "deletion": meta.get("deletionTimestamp")}


_GENERATION_KINDS = {
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "CustomResourceDefinition",
    "Ingress",
    "NetworkPolicy",
    "Pod",
    "Namespace",
    "Service",
    "PersistentVolumeClaim",
    "APIService",
}


class Store:
    def __init__(self, controllers: bool = False, default_namespaces: bool = True):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 0
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
        self.events: list[tuple[int, str, tuple[str, str], dict, dict | None]] = []
        self.crd_types: dict[str, list[ResourceType]] = {}
        self.applied: dict[tuple, dict] = {}
        self.controllers_enabled = controllers
        self.controller = None  # set by controllers.Controllers
        self._in_controllers = False
        self.default_namespaces = default_namespaces
        self.generation_of_state = 0
        self.reset()

    # ----------------------------------------------------------------------------------------------- types
    def reset(self) -> None:
        with self.lock:
            self.objects.clear()
            self.crd_types.clear()
            self.applied.clear()
            self.events.clear()
            self.rv += 1
            self.generation_of_state += 1
            self.cond.notify_all()
            if self.default_namespaces:
                ns_type = self.find_type("", "v1", "namespaces")
                for name in DEFAULT_NAMESPACES:
                    self.create(ns_type, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def all_types(self) -> list[ResourceType]:
        out = list(resources.BUILTIN_TYPES)
        if self.controllers_enabled:
            out += resources.METRICS_TYPES
        for types in self.crd_types.values():
            out += types
        return out

    def find_type(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rtype in self.all_types():
            if rtype.group == group and rtype.version == version and rtype.plural == plural:
                return rtype
        return None

    def types_by_kind(self, kind: str) -> list[ResourceType]:
        return [t for t in self.all_types() if t.kind == kind]

    def crd_for(self, rtype: ResourceType) -> dict | None:
        crds = self.objects.get(("apiextensions.k8s.io", "customresourcedefinitions"), {})
        return crds.get(("", f"{rtype.plural}.{rtype.group}"))

    # --------------------------------------------------------------------------------------------- reading
    def _bucket(self, rtype: ResourceType) -> dict[tuple[str, str], dict]:
        return self.objects.setdefault(rtype.store_key, {})

    def _present(self, rtype: ResourceType, obj: dict) -> dict:
        out = copy.deepcopy(obj)
        out["apiVersion"] = rtype.group_version
        out["kind"] = rtype.kind
        return out

    def namespace_exists(self, name: str) -> bool:
        return ("", name) in self.objects.get(("", "namespaces"), {})

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict:
        with self.lock:
            obj = self._bucket(rtype).get((namespace if rtype.namespaced else "", name))
            if obj is None:
                raise not_found(rtype, name)
            return self._present(rtype, obj)

    def raw(self, rtype: ResourceType, namespace: str, name: str) -> dict | None:
        return self._bucket(rtype).get((namespace if rtype.namespaced else "", name))

    def list(self, rtype: ResourceType, namespace: str | None, match=None) -> tuple[list[dict], str]:
        with self.lock:
            items = []
            for (ns, _name), obj in sorted(self._bucket(rtype).items()):
                if namespace and rtype.namespaced and ns != namespace:
                    continue
                if match is None or match(obj):
                    items.append(self._present(rtype, obj))
            return items, str(self.rv)

    # --------------------------------------------------------------------------------------------- writing
    def _prepare(self, rtype: ResourceType, namespace: str, obj: dict, old: dict | None) -> dict:
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = rtype.group_version
        obj["kind"] = rtype.kind
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if old is not None:
            for key in ("uid", "creationTimestamp"):
                meta[key] = old["metadata"].get(key)
            if "generation" in old["metadata"]:
                meta["generation"] = old["metadata"]["generation"]
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if rtype.crd or rtype.kind in _GENERATION_KINDS:
                meta["generation"] = 1
            meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
        if not meta.get("labels"):
            meta.pop("labels", None)
        if not meta.get("annotations"):
            meta.pop("annotations", None)
        self._defaults(rtype, obj, old)
        if old is not None and "generation" in meta and _spec_part(obj) != _spec_part(old):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        return obj

    def _defaults(self, rtype: ResourceType, obj: dict, old: dict | None) -> None:
        kind = rtype.kind if not rtype.crd else ""
        if kind == "Secret":
            string_data = obj.pop("stringData", None)
            if isinstance(string_data, dict):
                data = obj.setdefault("data", {}) or {}
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
                obj["data"] = data
            obj.setdefault("type", "Opaque")
        elif kind == "Namespace":
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        elif kind == "Service":
            spec = obj.setdefault("spec", {})
            old_spec = (old or {}).get("spec") or {}
            spec.setdefault("type", "ClusterIP")
            if spec.get("clusterIP") is None and spec.get("type") != "ExternalName":
                spec["clusterIP"] = old_spec.get("clusterIP") or self._cluster_ip(obj)
                spec["clusterIPs"] = [spec["clusterIP"]]
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                used = self._used_node_ports(obj)
                old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or []}
                for port in spec.get("ports") or []:
                    if isinstance(port, dict) and not port.get("nodePort"):
                        port["nodePort"] = old_ports.get(port.get("port")) or self._free_node_port(used)
                        used.add(port["nodePort"])
        elif kind == "CustomResourceDefinition":
            self._crd_status(obj)
        elif kind in ("Deployment", "StatefulSet", "ReplicaSet"):
            # The defaults kube-apiserver applies that clients rely on (kubernetes.core's readiness check compares
            # spec.replicas with status.replicas).
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            if kind != "ReplicaSet":
                spec.setdefault("revisionHistoryLimit", 10)
            if kind == "Deployment":
                spec.setdefault("progressDeadlineSeconds", 600)
                spec.setdefault(
                    "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
                )
        elif kind == "HorizontalPodAutoscaler":
            obj.setdefault("spec", {}).setdefault("minReplicas", 1)

    def _cluster_ip(self, obj: dict) -> str:
        digest = hashlib.sha1(f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}".encode()).digest()
        return f"10.96.{digest[0]}.{max(digest[1], 2)}"

    def _used_node_ports(self, skip: dict) -> set[int]:
        used = set()
        for (ns, name), svc in self.objects.get(("", "services"), {}).items():
            if (ns, name) == (skip["metadata"].get("namespace"), skip["metadata"]["name"]):
                continue
            for port in (svc.get("spec") or {}).get("ports") or []:
                if port.get("nodePort"):
                    used.add(port["nodePort"])
        return used

    @staticmethod
    def _free_node_port(used: set[int]) -> int:
        rnd = random.Random(len(used))
        while True:
            port = rnd.randint(30000, 32767)
            if port not in used:
                return port

    @staticmethod
    def _crd_status(crd: dict) -> None:
        spec = crd.get("spec") or {}
        names = dict(spec.get("names") or {})
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", names.get("kind", "") + "List")
        stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        old_conditions = {c.get("type"): c for c in ((crd.get("status") or {}).get("conditions") or [])}
        conditions = []
        for ctype, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ):
            ts = (old_conditions.get(ctype) or {}).get("lastTransitionTime") or now()
            conditions.append(
                {"type": ctype, "status": "True", "reason": reason, "message": message, "lastTransitionTime": ts}
            )
        crd["status"] = {"acceptedNames": names, "conditions": conditions, "storedVersions": stored}

    def _validate(self, rtype: ResourceType, obj: dict) -> None:
        name = obj["metadata"].get("name") or ""
        try:
            validation.validate_metadata(obj, rtype.namespaced)
            if rtype.crd:
                crd = self.crd_for(rtype)
                schema = resources.crd_version_schema(crd, rtype.version) if crd else None
                validation.validate_custom(obj, schema)
            else:
                validation.validate_builtin(obj)
        except validation.Invalid as exc:
            raise invalid(rtype, name, exc.causes) from exc

    def _check_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if rtype.namespaced:
            if not namespace:
                raise ApiError(400, "BadRequest", "the server could not find the requested resource")
            if not self.namespace_exists(namespace):
                raise namespace_not_found(namespace)

    def _persist(self, rtype: ResourceType, obj: dict, old: dict | None, dry_run: bool, internal: bool) -> dict:
        """Store ``obj`` (already prepared and validated) unless it equals ``old``; returns the stored view."""
        if old is not None and _comparable(obj) == _comparable(old):
            return self._present(rtype, old)
        if dry_run:
            out = self._present(rtype, obj)
            if old is not None:
                out["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return out
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (obj["metadata"].get("namespace", "") if rtype.namespaced else "", obj["metadata"]["name"])
        self._bucket(rtype)[key] = obj
        self._event("ADDED" if old is None else "MODIFIED", rtype, obj, old)
        if rtype.kind == "CustomResourceDefinition" and rtype.group == "apiextensions.k8s.io":
            self.crd_types[obj["metadata"]["name"]] = resources.types_from_crd(obj)
        if not internal:
            self.run_controllers()
        return self._present(rtype, obj)

    def _event(self, etype: str, rtype: ResourceType, obj: dict, old: dict | None) -> None:
        self.events.append(
            (
                int(obj["metadata"]["resourceVersion"]),
                etype,
                rtype.store_key,
                copy.deepcopy(obj),
                copy.deepcopy(old) if old else None,
            )
        )
        if len(self.events) > 20000:
            del self.events[:5000]
        self.cond.notify_all()

    def run_controllers(self) -> None:
        if self.controller is None or self._in_controllers:
            return
        self._in_controllers = True
        try:
            self.controller.reconcile_all()
        finally:
            self._in_controllers = False

    def create(
        self, rtype: ResourceType, namespace: str, body: dict, dry_run: bool = False, internal: bool = False
    ) -> dict:
        with self.lock:
            meta = body.get("metadata") or {}
            if rtype.namespaced and meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            if not internal:
                self._check_namespace(rtype, namespace)
            body = copy.deepcopy(body)
            body.setdefault("metadata", {})
            if not body["metadata"].get("name") and body["metadata"].get("generateName"):
                suffix = "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _position in range(5))
                body["metadata"]["name"] = body["metadata"]["generateName"] + suffix
            name = body["metadata"].get("name") or ""
            if name and self.raw(rtype, namespace, name) is not None:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{_qualified(rtype)} "{name}" already exists',
                    {"name": name, "group": rtype.group, "kind": rtype.plural},
                )
            if "status" in rtype.subresources and rtype.kind != "Node" and not internal:
                body.pop("status", None)
            obj = self._prepare(rtype, namespace, body, None)
            if not internal:
                self._validate(rtype, obj)
            return self._persist(rtype, obj, None, dry_run, internal)

    def _existing(self, rtype: ResourceType, namespace: str, name: str) -> dict:
        old = self.raw(rtype, namespace, name)
        if old is None:
            raise not_found(rtype, name)
        return old

    def _check_identity(self, rtype: ResourceType, namespace: str, name: str, body: dict) -> None:
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})",
            )
        if rtype.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        if body.get("kind") and body["kind"] != rtype.kind:
            raise ApiError(
                400,
                "BadRequest",
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                f"{body['kind']}: the kind of the object does not match the URL",
            )

    def _write(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        new: dict,
        old: dict,
        subresource: str,
        dry_run: bool,
        internal: bool = False,
    ) -> dict:
        new = copy.deepcopy(new)
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif "status" in rtype.subresources:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        new.setdefault("metadata", {})["name"] = name
        obj = self._prepare(rtype, namespace, new, old)
        if not internal:
            self._validate(rtype, obj)
        return self._persist(rtype, obj, old, dry_run, internal)

    def replace(
        self, rtype: ResourceType, namespace: str, name: str, body: dict, subresource: str = "", dry_run: bool = False
    ) -> dict:
        with self.lock:
            self._check_identity(rtype, namespace, name, body)
            old = self._existing(rtype, namespace, name)
            want_rv = (body.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(rtype)} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": rtype.group, "kind": rtype.plural},
                )
            return self._write(rtype, namespace, name, body, old, subresource, dry_run)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        body: Any,
        subresource: str = "",
        dry_run: bool = False,
        field_manager: str = "",
        force: bool = False,
    ) -> dict:
        with self.lock:
            if patch_type == "apply":
                return self._apply(rtype, namespace, name, body, subresource, dry_run, field_manager)
            old = self._existing(rtype, namespace, name)
            current = self._present(rtype, old)
            try:
                if patch_type == "merge":
                    new = patching.merge_patch(current, body)
                elif patch_type == "json":
                    new = patching.json_patch(current, body)
                elif patch_type == "strategic":
                    if rtype.crd:
                        raise ApiError(
                            415,
                            "UnsupportedMediaType",
                            "the body of the request was in an unknown format - accepted media types "
                            "include: application/json-patch+json, application/merge-patch+json, "
                            "application/apply-patch+yaml",
                        )
                    new = patching.strategic_merge(current, body)
                else:
                    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type}")
            except patching.PatchError as exc:
                raise ApiError(422, "Invalid", str(exc)) from exc
            if not isinstance(new, dict):
                raise ApiError(400, "BadRequest", "the patch did not produce an object")
            want_rv = (new.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(rtype)} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": rtype.group, "kind": rtype.plural},
                )
            self._check_identity(rtype, namespace, name, new)
            return self._write(rtype, namespace, name, new, old, subresource, dry_run)

    def _apply(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str,
        dry_run: bool,
        field_manager: str,
    ) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of an apply patch must be an object")
        if not field_manager:
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
            )
        self._check_identity(rtype, namespace, name, body)
        body = copy.deepcopy(body)
        body.setdefault("metadata", {})["name"] = name
        key = (rtype.store_key, namespace if rtype.namespaced else "", name, field_manager, subresource)
        old = self.raw(rtype, namespace, name)
        if old is None:
            if subresource:
                raise not_found(rtype, name)
            result = self.create(rtype, namespace, body, dry_run=dry_run)
        else:
            current = self._present(rtype, old)
            merged = patching.strategic_merge(current, body)
            previous = self.applied.get(key)
            if previous is not None:
                patching.remove_unapplied(merged, previous, body)
            result = self._write(rtype, namespace, name, merged, old, subresource, dry_run)
        if not dry_run:
            self.applied[key] = body
        return result

    def delete(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        dry_run: bool = False,
        propagation: str = "Background",
        internal: bool = False,
    ) -> dict:
        with self.lock:
            old = self._existing(rtype, namespace, name)
            out = self._present(rtype, old)
            if dry_run:
                return out
            self._remove(rtype, old, propagation)
            if not internal:
                self.run_controllers()
            return out

    def _remove(self, rtype: ResourceType, obj: dict, propagation: str = "Background") -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", "") if rtype.namespaced else "", meta["name"])
        if self._bucket(rtype).pop(key, None) is None:
            return
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._event("DELETED", rtype, gone, None)
        for akey in [k for k in self.applied if k[0] == rtype.store_key and k[1:3] == key]:
            del self.applied[akey]
        if rtype.kind == "Namespace" and not rtype.crd:
            self._remove_namespace_content(meta["name"])
        if rtype.kind == "CustomResourceDefinition" and not rtype.crd:
            types = self.crd_types.pop(meta["name"], [])
            if types:
                for _key, child in list(self.objects.get(types[0].store_key, {}).items()):
                    self._remove(types[0], child)
                self.objects.pop(types[0].store_key, None)
        if propagation != "Orphan":
            self._collect_dependents(meta.get("uid"))

    def _type_for_store_key(self, store_key: tuple[str, str]) -> ResourceType | None:
        for rtype in self.all_types():
            if rtype.store_key == store_key and not rtype.virtual:
                return rtype
        return None

    def _remove_namespace_content(self, namespace: str) -> None:
        for store_key in list(self.objects):
            rtype = self._type_for_store_key(store_key)
            if rtype is None or not rtype.namespaced:
                continue
            for (ns, _name), obj in list(self.objects.get(store_key, {}).items()):
                if ns == namespace:
                    self._remove(rtype, obj)

    def _collect_dependents(self, uid: str | None) -> None:
        if not uid:
            return
        for store_key in list(self.objects):
            rtype = self._type_for_store_key(store_key)
            if rtype is None:
                continue
            for obj in list(self.objects.get(store_key, {}).values()):
                owners = obj["metadata"].get("ownerReferences") or []
                if any(o.get("uid") == uid for o in owners):
                    self._remove(rtype, obj)

    def delete_collection(self, rtype: ResourceType, namespace: str | None, match, dry_run: bool = False) -> list:
        with self.lock:
            items, _list_rv = self.list(rtype, namespace, match)
            if not dry_run:
                for item in items:
                    old = self.raw(rtype, item["metadata"].get("namespace", ""), item["metadata"]["name"])
                    if old is not None:
                        self._remove(rtype, old)
                self.run_controllers()
            return items

    # ------------------------------------------------------------------------------ controller-side helpers
    def put_internal(self, rtype: ResourceType, obj: dict) -> dict:
        """Create or update from a controller: no validation, no namespace check, no controller recursion."""
        meta = obj["metadata"]
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        old = self.raw(rtype, namespace, meta["name"])
        if old is None:
            return self.create(rtype, namespace, obj, internal=True)
        prepared = self._prepare(rtype, namespace, obj, old)
        return self._persist(rtype, prepared, old, False, True)

    def set_status_internal(self, rtype: ResourceType, obj: dict, status: dict) -> None:
        new = copy.deepcopy(obj)
        new["status"] = status
        if new == obj:
            return
        namespace = obj["metadata"].get("namespace", "") if rtype.namespaced else ""
        old = self.raw(rtype, namespace, obj["metadata"]["name"])
        if old is None:
            return
        self._write(rtype, namespace, obj["metadata"]["name"], new, old, "status", False, internal=True)

    def delete_internal(self, rtype: ResourceType, obj: dict) -> None:
        self._remove(rtype, obj)

    def events_since(self, rv: int) -> list:
        return [e for e in self.events if e[0] > rv]

    def oldest_event_rv(self) -> int:
        return self.events[0][0] if self.events else self.rv


def stable_hash(value: Any, length: int = 10) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]
