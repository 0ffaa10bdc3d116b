"""The EKS entry point kube/clusters/eks renders, validates like the kind tree, and differs from it only as intended.

Run: ``.venv/bin/pytest tests/manifests/test_eks_overlay.py -q`` (schemas from FILEWCOUNT_SCHEMAS_DIR). The tree is
built with the same ``validate.load_tree`` as kube/clusters/kind, from the sync path kube/clusters/eks; the
optional load balancer patches are taken from docs/eks.md and checked the same way. When the harness's Helm and the
chart sources (../shared/charts) are present, the charts are also rendered with kind's and EKS's values, and what
they render is validated like the tree: built-in kinds against Kubernetes, custom resources against their CRDs, and
the CRDs that validate.py reads from the chart sources against the ones the charts render.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate

KIND = "kube/clusters/kind"
EKS = "kube/clusters/eks"
EKS_OVERLAY = "kube/overlays/eks"
DOC = validate.REPO_ROOT / "docs" / "eks.md"
INSECURE = "--kubelet-insecure-tls"

Key = tuple[str, str, str]  # kind, namespace, name

# Every difference between what kind and EKS apply: object -> the value paths that differ ("+" / "-": the
# object exists on one side only). Anything not listed must be identical.
INTENDED = {
    ("Kustomization", "flux-system", "infrastructure-controllers"): {"spec.path"},
    ("Kustomization", "flux-system", "apps"): {"spec.patches"},
    ("HelmRelease", "kube-system", "metrics-server"): {"spec.values.args"},
    ("HelmRelease", "monitoring", "kube-prometheus-stack"): {
        "spec.values.prometheus-node-exporter.hostRootFsMount.enabled",
        "spec.values.prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec.storageClassName",
        "spec.values.grafana.persistence.storageClassName",
        "spec.values.grafana.service.type",
        "spec.values.grafana.service.nodePort",
    },
    ("HelmRelease", "monitoring", "loki"): {"spec.values.singleBinary.persistence.storageClass"},
    ("Service", "filewcount", "filewcount"): {"spec.type", "spec.ports.0.nodePort"},
    # The ACME issuers that gitops_gateway_issuer may name on a cluster the internet reaches.
    ("Kustomization", "flux-system", "acme-issuers"): {"+"},
    ("ClusterIssuer", "", "letsencrypt-staging"): {"+"},
    ("ClusterIssuer", "", "letsencrypt"): {"+"},
    ("HelmRelease", "traefik", "traefik"): {"spec.values.service.spec.type", "spec.values.ports"},
    ("StorageClass", "", "gp3"): {"+"},
    # kind's retained local-path class (controllers/storage): EKS runs no local-path-provisioner.
    ("StorageClass", "", "filewcount-retain"): {"-"},
}


@pytest.fixture(scope="module")
def eks(schemas: Path) -> validate.Tree:
    return validate.load_tree(validate.REPO_ROOT, schemas, EKS)


@pytest.fixture(scope="module")
def kind(schemas: Path) -> validate.Tree:
    return validate.load_tree(validate.REPO_ROOT, schemas, KIND)


def _flux_applied(tree: validate.Tree) -> dict[Key, dict[str, Any]]:
    """What Flux applies (kube/bootstrap is applied by Ansible in local mode only)."""
    return {(o.kind, o.namespace, o.name): o.doc for o in tree.flux_objects()}


def _diff(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for key in set(a) | set(b):
            path = f"{prefix}.{key}" if prefix else str(key)
            out |= {path} if (key in a) != (key in b) else _diff(a[key], b[key], path)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = set()
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out |= _diff(x, y, f"{prefix}.{i}")
        return out
    return set() if a == b else {prefix}


def _values(tree: validate.Tree, name: str) -> dict[str, Any]:
    return next(o for o in tree.flux_objects() if o.kind == "HelmRelease" and o.name == name).spec["values"]


# ---------------------------------------------------------------------------------------------------
# It renders and passes every check the kind tree passes
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", validate.CHECK_NAMES)
def test_eks_tree_passes(eks: validate.Tree, check: str) -> None:
    assert validate.CHECKS[check](eks) == []


def test_eks_entry_points_and_chain(eks: validate.Tree) -> None:
    assert {u.path for u in eks.units} >= {
        EKS,
        f"{EKS_OVERLAY}/infrastructure/controllers",
        "kube/infrastructure/configs",
        "kube/apps",
    }
    ks = {o.name: o for o in eks.flux_objects() if o.kind == "Kustomization"}
    chain = {
        "infrastructure-crds": ("./kube/infrastructure/crds", []),
        "infrastructure-controllers": (f"./{EKS_OVERLAY}/infrastructure/controllers", ["infrastructure-crds"]),
        "infrastructure-configs": ("./kube/infrastructure/configs", ["infrastructure-controllers"]),
        "apps": ("./kube/apps", ["infrastructure-configs"]),
        "acme-issuers": (f"./{EKS_OVERLAY}/infrastructure/acme", ["infrastructure-controllers"]),
    }
    assert set(ks) == set(chain)
    for name, (path, deps) in chain.items():
        spec = ks[name].spec
        assert spec["path"] == path
        assert [d["name"] for d in spec.get("dependsOn", [])] == deps
        # The ACME issuers alone are not waited for: one that cannot reach its server must not hold up the tree.
        assert spec["prune"] is True and spec["wait"] is (name != "acme-issuers")


# ---------------------------------------------------------------------------------------------------
# It differs from kind exactly as intended
# ---------------------------------------------------------------------------------------------------


def test_differences_from_kind_are_exactly_the_intended_ones(kind: validate.Tree, eks: validate.Tree) -> None:
    a, b = _flux_applied(kind), _flux_applied(eks)
    found: dict[Key, set[str]] = {}
    for key in set(a) | set(b):
        if key not in a:
            found[key] = {"+"}
        elif key not in b:
            found[key] = {"-"}
        elif delta := _diff(a[key], b[key]):
            found[key] = delta
    assert found == INTENDED


def test_metrics_server_verifies_kubelet_certificates(kind: validate.Tree, eks: validate.Tree) -> None:
    assert INSECURE in _values(kind, "metrics-server")["args"]
    values = _values(eks, "metrics-server")
    assert "args" not in values  # the chart default, []
    assert INSECURE not in yaml.safe_dump(values)


def test_kube_prometheus_stack_on_eks(eks: validate.Tree) -> None:
    values = _values(eks, "kube-prometheus-stack")
    # Not scrapable on EKS either: the managed control plane, and kube-proxy's 127.0.0.1 metrics address.
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[component]["enabled"] is False
    # kind-only workaround undone: node-exporter mounts the node's root filesystem again.
    assert values["prometheus-node-exporter"]["hostRootFsMount"]["enabled"] is True
    claim = values["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "gp3"
    assert values["grafana"]["service"] == {"type": "ClusterIP"}
    (sc,) = [o for o in eks.flux_objects() if o.kind == "StorageClass"]
    assert sc.name == "gp3"
    assert sc.doc["provisioner"] == "ebs.csi.aws.com"
    assert sc.doc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc.doc["parameters"]["type"] == "gp3"
    # The StorageClass is applied by the same Kustomization as the HelmRelease whose volume uses it.
    units = {o.unit.path for o in eks.flux_objects() if o.kind == "StorageClass" or o.name == "kube-prometheus-stack"}
    assert units == {f"{EKS_OVERLAY}/infrastructure/controllers"}


def test_filewcount_service_is_cluster_internal(eks: validate.Tree) -> None:
    (service,) = [o for o in eks.flux_objects() if o.kind == "Service" and o.name == "filewcount"]
    assert service.spec["type"] == "ClusterIP"
    assert "nodePort" not in service.spec["ports"][0]
    assert service.spec["ports"][0]["port"] == 80


# ---------------------------------------------------------------------------------------------------
# The kind tree does not depend on anything EKS adds
# ---------------------------------------------------------------------------------------------------


def _rendering(tree: validate.Tree) -> tuple[dict[str, Any], list[str]]:
    return {u.path: [o.doc for o in u.objects] for u in tree.units}, tree.build_problems


def test_kind_renders_the_same_without_the_eks_files(kind: validate.Tree, schemas: Path, tmp_path: Path) -> None:
    shutil.copytree(validate.REPO_ROOT / "kube", tmp_path / "kube")
    for extra in (EKS, EKS_OVERLAY):
        shutil.rmtree(tmp_path / extra)
    without = validate.load_tree(tmp_path, schemas, KIND)
    assert _rendering(without) == _rendering(kind)
    for unit in kind.units:
        assert not {f for f in unit.files if f.startswith((f"{EKS}/", f"{EKS_OVERLAY}/"))}, unit.path


def test_each_cluster_reports_files_nothing_applies(schemas: Path, tmp_path: Path) -> None:
    """The orphan check still bites inside the EKS directories, for the EKS tree only."""
    shutil.copytree(validate.REPO_ROOT / "kube", tmp_path / "kube")
    stray = tmp_path / EKS_OVERLAY / "infrastructure" / "controllers" / "forgotten.yaml"
    stray.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: monitoring\n")
    eks_problems = validate.load_tree(tmp_path, schemas, EKS).build_problems
    assert any(f"{EKS_OVERLAY}/infrastructure/controllers/forgotten.yaml is not applied" in p for p in eks_problems)
    assert validate.load_tree(tmp_path, schemas, KIND).build_problems == []


# ---------------------------------------------------------------------------------------------------
# The optional load balancers of docs/eks.md
# ---------------------------------------------------------------------------------------------------


def _doc_patches() -> dict[str, list[dict[str, Any]]]:
    """The ```yaml blocks of docs/eks.md that start with `# kube/clusters/eks/<file>: spec.patches`."""
    out = {}
    for block in re.findall(r"^```yaml\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL):
        first = block.splitlines()[0]
        match = re.fullmatch(r"# (kube/clusters/eks/[\w.-]+): spec\.patches", first)
        if match:
            out[match.group(1)] = yaml.safe_load(block)
    return out


def test_documented_load_balancer_patches_render_and_validate(schemas: Path, tmp_path: Path) -> None:
    patches = _doc_patches()
    assert set(patches) == {f"{EKS}/apps.yaml", f"{EKS}/infrastructure-controllers.yaml"}
    shutil.copytree(validate.REPO_ROOT / "kube", tmp_path / "kube")
    for file, entries in patches.items():
        path = tmp_path / file
        doc = yaml.safe_load(path.read_text())
        doc["spec"]["patches"] = entries
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    tree = validate.load_tree(tmp_path, schemas, EKS)
    assert {name: check(tree) for name, check in validate.CHECKS.items()} == {n: [] for n in validate.CHECK_NAMES}
    wanted = {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
    }
    (service,) = [o for o in tree.flux_objects() if o.kind == "Service" and o.name == "filewcount"]
    assert service.spec["type"] == "LoadBalancer"
    assert "nodePort" not in service.spec["ports"][0]
    assert service.doc["metadata"]["annotations"] == wanted
    grafana = _values(tree, "kube-prometheus-stack")["grafana"]["service"]
    assert grafana["type"] == "LoadBalancer"
    assert grafana["annotations"] == wanted
    assert grafana["loadBalancerSourceRanges"]


# ---------------------------------------------------------------------------------------------------
# The charts, rendered with Helm from the pinned sources
# ---------------------------------------------------------------------------------------------------

CHARTS = {
    "metrics-server": ("metrics-server-3.13.1", "kube-system", []),
    "kube-prometheus-stack": (
        "kube-prometheus-stack-88.5.3",
        "monitoring",
        [
            "grafana-12.11.1",
            "kube-state-metrics-8.4.0",
            "prometheus-node-exporter-4.56.1",
            "prometheus-windows-exporter-0.12.8",
        ],
    ),
    "traefik": ("traefik-41.3.0", "traefik", []),
    "cert-manager": ("cert-manager-v1.21.1", "cert-manager", []),
    "keda": ("keda-2.20.2", "keda", []),
    "loki": ("loki-18.11.0", "monitoring", ["minio-5.4.0", "rollout-operator-0.51.1"]),
    "alloy": ("alloy-1.11.1", "monitoring", []),
}

# APIs the cluster serves when helm-controller installs a release (its dependsOn and infrastructure-crds see to it),
# which `helm template` cannot ask a cluster for: Traefik and cert-manager refuse to render their ServiceMonitors
# without monitoring.coreos.com/v1, as helm would on a cluster without kube-prometheus-stack. keda 2.20.2 asks for no
# API (its ServiceMonitors render whenever enabled); it is given what its dependsOn guarantees all the same.
API_VERSIONS = {
    "traefik": ["monitoring.coreos.com/v1", "gateway.networking.k8s.io/v1"],
    "cert-manager": ["monitoring.coreos.com/v1", "gateway.networking.k8s.io/v1"],
    "keda": ["monitoring.coreos.com/v1"],
}


def _helm() -> Path | None:
    versions = validate.REPO_ROOT / "tests" / "harness" / "versions.env"
    match = re.search(r"^HELM_VERSION=(\S+)$", versions.read_text(), re.MULTILINE) if versions.is_file() else None
    cache = os.environ.get("FILEWCOUNT_CACHE_DIR") or str(Path.home() / ".cache" / "filewcount-gitops")
    testbin = Path(os.environ.get("FILEWCOUNT_TESTBIN_DIR") or Path(cache) / "testbin")
    helm = testbin / f"helm-{match.group(1)}" / "helm" if match else None
    return helm if helm is not None and os.access(helm, os.X_OK) else None


def _render(helm: Path, charts: Path, release: str, values: dict[str, Any], work: Path) -> dict[Key, dict[str, Any]]:
    folder, namespace, dependencies = CHARTS[release]
    chart = work / folder
    if not chart.is_dir():
        shutil.copytree(charts / folder, chart)
        for dep in dependencies:
            shutil.copytree(charts / dep, chart / "charts" / dep)
    values_file = work / f"{release}-{len(list(work.iterdir()))}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    argv = [str(helm), "template", release, str(chart), "-n", namespace, "-f", str(values_file)]
    argv += [f"--api-versions={api}" for api in API_VERSIONS.get(release, [])]
    proc = subprocess.run(
        [*argv, "--kube-version", f"{validate.KUBERNETES_VERSION}.0"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
        for d in yaml.safe_load_all(proc.stdout)
        if d
    }


@pytest.fixture(scope="module")
def rendered(kind: validate.Tree, eks: validate.Tree, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    helm = _helm()
    charts = Path(os.environ.get("FILEWCOUNT_CHARTS_DIR") or validate.REPO_ROOT.parent / "shared" / "charts")
    if helm is None or not all((charts / spec[0]).is_dir() for spec in CHARTS.values()):
        pytest.skip("the harness's Helm (make testbin) or the chart sources (../shared/charts) are missing")
    work = tmp_path_factory.mktemp("charts")
    return {
        (cluster, release): _render(helm, charts, release, copy.deepcopy(_values(tree, release)), work)
        for cluster, tree in (("kind", kind), ("eks", eks))
        for release in CHARTS
    }


def test_rendered_charts_differ_only_as_intended(rendered: dict[Any, dict[Key, dict[str, Any]]]) -> None:
    for release in CHARTS:
        assert set(rendered[("kind", release)]) == set(rendered[("eks", release)]), release

    def args(cluster: str) -> list[str]:
        deploy = rendered[(cluster, "metrics-server")][("Deployment", "kube-system", "metrics-server")]
        return deploy["spec"]["template"]["spec"]["containers"][0]["args"]

    assert INSECURE in args("kind")
    assert INSECURE not in args("eks")
    assert "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname" in args("eks")

    kps = {c: rendered[(c, "kube-prometheus-stack")] for c in ("kind", "eks")}
    prometheus = {c: next(d for k, d in kps[c].items() if k[0] == "Prometheus") for c in kps}
    for cluster, storage_class in (("kind", "filewcount-retain"), ("eks", "gp3")):
        claim = prometheus[cluster]["spec"]["storage"]["volumeClaimTemplate"]["spec"]
        assert claim["storageClassName"] == storage_class
        grafana_claim = kps[cluster][("PersistentVolumeClaim", "monitoring", "kube-prometheus-stack-grafana")]
        assert grafana_claim["spec"]["storageClassName"] == storage_class
    grafana = {c: kps[c][("Service", "monitoring", "kube-prometheus-stack-grafana")]["spec"] for c in kps}
    assert (grafana["kind"]["type"], grafana["eks"]["type"]) == ("NodePort", "ClusterIP")
    exporter = {
        c: kps[c][("DaemonSet", "monitoring", "kube-prometheus-stack-prometheus-node-exporter")]["spec"] for c in kps
    }
    volumes = {c: {v["name"] for v in exporter[c]["template"]["spec"]["volumes"]} for c in kps}
    assert "root" not in volumes["kind"]
    assert "root" in volumes["eks"]
    traefik = {c: rendered[(c, "traefik")][("Service", "traefik", "traefik")]["spec"] for c in ("kind", "eks")}
    assert traefik["kind"]["type"] == "NodePort"
    assert {p["name"]: p.get("nodePort") for p in traefik["kind"]["ports"]} == {"web": 30090, "websecure": 30443}
    assert traefik["eks"]["type"] == "LoadBalancer"
    assert all("nodePort" not in p for p in traefik["eks"]["ports"])
    for cluster in ("kind", "eks"):
        objects = rendered[(cluster, "traefik")]
        assert ("GatewayClass", "", "traefik") in objects
        assert not [k for k in objects if k[0] == "Gateway"], "the tree's own Gateway replaces the chart's"
        assert objects[("ServiceMonitor", "traefik", "traefik")]["metadata"]["labels"]["release"] == (
            "kube-prometheus-stack"
        )
        cert_manager = rendered[(cluster, "cert-manager")]
        crds = {k[2] for k in cert_manager if k[0] == "CustomResourceDefinition"}
        assert {"certificates.cert-manager.io", "clusterissuers.cert-manager.io"} <= crds
        config = yaml.safe_load(cert_manager[("ConfigMap", "cert-manager", "cert-manager")]["data"]["config.yaml"])
        assert config["gatewayAPI"] == {"enabled": True}
        assert cert_manager[("ServiceMonitor", "cert-manager", "cert-manager")]["metadata"]["labels"]["release"] == (
            "kube-prometheus-stack"
        )
    for objects in kps.values():  # no control-plane or kube-proxy scrape configuration on either
        monitors = {k[2] for k in objects if k[0] == "ServiceMonitor"}
        assert not {m for m in monitors if re.search(r"controller-manager|scheduler|etcd|kube-proxy", m)}, monitors


def test_rendered_keda_serves_the_scaled_object(
    rendered: dict[Any, dict[Key, dict[str, Any]]], kind: validate.Tree
) -> None:
    """KEDA's chart installs what the ScaledObject of filewcount needs, with the resources the HelmRelease sets."""
    values = _values(kind, "keda")
    (scaled,) = [o for o in kind.flux_objects() if o.kind == "ScaledObject"]
    for cluster in ("kind", "eks"):
        keda = rendered[(cluster, "keda")]
        crds = {k[2] for k in keda if k[0] == "CustomResourceDefinition"}
        assert {"scaledobjects.keda.sh", "triggerauthentications.keda.sh"} <= crds
        # The HPA controller reads the trigger's value through KEDA's external metrics API.
        assert ("APIService", "", "v1beta1.external.metrics.k8s.io") in keda
        # The chart leaves the ServiceMonitors' namespace to Helm, which puts them in the release's.
        for monitor in ("keda-operator", "keda-operator-metrics-apiserver"):
            assert keda[("ServiceMonitor", "", monitor)]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        # resources is keyed by component (validate.BY_COMPONENT): each Deployment gets its own.
        for deployment, component in (
            ("keda-operator", "operator"),
            ("keda-operator-metrics-apiserver", "metricServer"),
            ("keda-admission-webhooks", "webhooks"),
        ):
            (container,) = keda[("Deployment", "keda", deployment)]["spec"]["template"]["spec"]["containers"]
            assert container["resources"] == values["resources"][component], deployment
        # The prometheus trigger asks kube-prometheus-stack's Prometheus Service.
        for trigger in scaled.spec["triggers"]:
            if trigger["type"] == "prometheus":
                url = re.fullmatch(r"http://([\w-]+)\.([\w-]+)\.svc:(\d+)", trigger["metadata"]["serverAddress"])
                assert url, trigger["metadata"]["serverAddress"]
                service = rendered[(cluster, "kube-prometheus-stack")][("Service", url[2], url[1])]
                assert int(url[3]) in [port["port"] for port in service["spec"]["ports"]]


def test_chart_crds_read_from_the_sources_are_the_rendered_ones(
    rendered: dict[Any, dict[Key, dict[str, Any]]], eks: validate.Tree
) -> None:
    """validate.py's text-level reading of the charts' templated CRDs gives the spec that Helm renders."""
    compared = set()
    for (cluster, release), objects in rendered.items():
        if cluster != "eks" or release not in validate.CHART_CRD_GROUPS:
            continue
        for doc in objects.values():
            if doc["kind"] == "CustomResourceDefinition":
                key = (doc["spec"]["group"], doc["spec"]["names"]["kind"])
                assert eks.crds[key]["spec"] == doc["spec"], doc["metadata"]["name"]
                compared.add(key)
    assert {("keda.sh", "ScaledObject"), ("cert-manager.io", "Certificate")} <= compared


def test_rendered_custom_resources_match_their_crds(
    rendered: dict[Any, dict[Key, dict[str, Any]]], eks: validate.Tree
) -> None:
    crds = {**validate._tree_crds(eks), **eks.crds}
    problems, checked = [], set()
    for (cluster, release), objects in rendered.items():
        for key, doc in objects.items():
            group, _slash, version = doc["apiVersion"].rpartition("/")
            crd = crds.get((group, doc["kind"]))
            if crd is None:
                continue  # built in (test_rendered_builtin_objects_validate), or a kind without a pinned CRD
            served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served", True)}
            if version not in served:
                problems.append(f"{cluster} {release} {key}: {doc['apiVersion']} is not served")
                continue
            schema = served[version].get("schema", {}).get("openAPIV3Schema", {})
            validator = validate._crd_validator(json.dumps(schema, sort_keys=True))
            problems += [f"{cluster} {release} {key}: {e.message}" for e in validator.iter_errors(doc)]
            checked.add((release, doc["kind"]))
    assert problems == []
    assert {("keda", "ServiceMonitor"), ("traefik", "GatewayClass"), ("cert-manager", "ServiceMonitor")} <= checked


def test_rendered_builtin_objects_validate(rendered: dict[Any, dict[Key, dict[str, Any]]], eks: validate.Tree) -> None:
    problems = []
    custom_kinds = set(eks.crds) | set(validate._tree_crds(eks))
    for (cluster, _release), objects in rendered.items():
        if cluster != "eks":
            continue
        for key, doc in objects.items():
            group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
            if (group, doc["kind"]) in custom_kinds or ("." in group and not group.endswith(".k8s.io")):
                continue  # custom resources (monitoring.coreos.com, Gateway API): their CRDs validate them
            try:
                validate.kubernetes_validate.validate(doc, validate.KUBERNETES_VERSION, strict=True)
            except validate.kubernetes_validate.ValidationError as exc:
                problems.append(f"{key}: {exc.message}")
    assert problems == []


def _volume_classes(tree: validate.Tree) -> dict[str, str]:
    """The StorageClass each volume of the stack asks for, from the HelmReleases' values."""
    kps, loki = _values(tree, "kube-prometheus-stack"), _values(tree, "loki")
    return {
        "prometheus": kps["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"][
            "storageClassName"
        ],
        "grafana": kps["grafana"]["persistence"]["storageClassName"],
        "loki": loki["singleBinary"]["persistence"]["storageClass"],
    }


@pytest.mark.parametrize(
    ("sync_path", "settings", "expected"),
    [
        # kind: bootstrap writes filewcount-retain; without the ConfigMap the tree's default is the same.
        (KIND, {}, "filewcount-retain"),
        (KIND, {"storage_class": "filewcount-retain"}, "filewcount-retain"),
        # An existing cluster synced from the kind tree: bootstrap writes the cluster's default class.
        (KIND, {"storage_class": "standard"}, "standard"),
        # EKS: always the overlay's gp3, whatever the setting.
        (EKS, {"storage_class": "gp2"}, "gp3"),
    ],
)
def test_the_volumes_use_the_storage_class_setting(schemas: Path, sync_path: str, settings: dict, expected: str):
    tree = validate.load_tree(validate.REPO_ROOT, schemas, sync_path, settings=settings)
    assert _volume_classes(tree) == dict.fromkeys(("prometheus", "grafana", "loki"), expected)
    assert validate.check_values(tree) == []
