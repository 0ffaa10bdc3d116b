"""Resource types served by the emulated Kubernetes API (test double, never shipped).

Built-in kinds are a fixed table; kinds of CustomResourceDefinitions are added and removed at runtime.
"""

# ruff: noqa: PLR0917 - the built-in table reads best as positional rows

from __future__ import annotations

import dataclasses

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
READ_VERBS = ["get", "list"]


@dataclasses.dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(ALL_VERBS)
    singular: str = ""
    crd: bool = False
    # How many other fields than metadata/status make up the "spec" for generation purposes.
    virtual: bool = False

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store_key(self) -> tuple[str, str]:
        """Objects are stored per group and plural, shared by every served version (no conversion)."""
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


def _rt(group, version, plural, kind, namespaced, short=(), sub=("status",), cats=(), verbs=tuple(ALL_VERBS)):
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        short_names=tuple(short),
        subresources=tuple(sub),
        categories=tuple(cats),
        verbs=tuple(verbs),
        singular=kind.lower(),
    )


BUILTIN_TYPES: list[ResourceType] = [
    _rt("", "v1", "namespaces", "Namespace", False, ("ns",)),
    _rt("", "v1", "nodes", "Node", False, ("no",)),
    _rt("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    _rt("", "v1", "secrets", "Secret", True, (), ()),
    _rt("", "v1", "configmaps", "ConfigMap", True, ("cm",), ()),
    _rt("", "v1", "services", "Service", True, ("svc",), ("status",), ("all",)),
    _rt("", "v1", "pods", "Pod", True, ("po",), ("status",), ("all",)),
    _rt("", "v1", "events", "Event", True, ("ev",), ()),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), ()),
    _rt("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    _rt("", "v1", "endpoints", "Endpoints", True, ("ep",), ()),
    _rt("", "v1", "limitranges", "LimitRange", True, ("limits",), ()),
    _rt("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",)),
    _rt("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), ("all",)),
    _rt("apps", "v1", "controllerrevisions", "ControllerRevision", True, (), ()),
    _rt("batch", "v1", "jobs", "Job", True, (), ("status",), ("all",)),
    _rt("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",), ("all",)),
    _rt(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ("hpa",),
        ("status",),
        ("all",),
    ),
    _rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",)),
    _rt("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False, ("crd", "crds")),
    _rt("apiregistration.k8s.io", "v1", "apiservices", "APIService", False),
    _rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, (), ()),
    _rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, (), ()),
    _rt("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), ()),
    _rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (), ()),
    _rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), ()),
    _rt("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    _rt("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, (), ()),
    _rt("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",), ()),
    _rt("coordination.k8s.io", "v1", "leases", "Lease", True, (), ()),
    _rt("events.k8s.io", "v1", "events", "Event", True, ("ev",), ()),
    _rt("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",), ()),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        (),
        (),
    ),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        (),
        (),
    ),
]

# Served only in controllers mode (what metrics-server would provide); read-only.
METRICS_TYPES: list[ResourceType] = [
    dataclasses.replace(
        _rt("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", False, (), (), (), READ_VERBS), virtual=True
    ),
    dataclasses.replace(
        _rt("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", True, (), (), (), READ_VERBS), virtual=True
    ),
]


def types_from_crd(crd: dict) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for ver in spec.get("versions") or []:
        if not ver.get("served", True):
            continue
        subs = []
        if (ver.get("subresources") or {}).get("status") is not None:
            subs.append("status")
        if (ver.get("subresources") or {}).get("scale") is not None:
            subs.append("scale")
        out.append(
            ResourceType(
                group=spec.get("group", ""),
                version=ver["name"],
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                subresources=tuple(subs),
                categories=tuple(names.get("categories") or ()),
                singular=names.get("singular") or names.get("kind", "").lower(),
                crd=True,
            )
        )
    return out


def crd_version_schema(crd: dict, version: str) -> dict | None:
    for ver in (crd.get("spec") or {}).get("versions") or []:
        if ver.get("name") == version:
            return ((ver.get("schema") or {}).get("openAPIV3Schema")) or None
    return None
