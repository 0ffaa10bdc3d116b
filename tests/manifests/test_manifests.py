"""The GitOps tree under kube/ is valid offline, keeps the project's contract, and each check bites.

Run: ``.venv/bin/pytest tests/manifests -q`` (schema directory from FILEWCOUNT_SCHEMAS_DIR, default
../shared/schemas). Negative fixtures live in fixtures/negative/<check>/<case>/: the real tree plus one
mistake (files overlaid under kube/ and/or edits.yaml), and each must make its check report the message
listed in NEGATIVE below (a tuple: exactly these problems, one each).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate

HERE = Path(__file__).resolve().parent
TWO_AUTOSCALERS = (
    "Deployment filewcount/filewcount is scaled by both ScaledObject filewcount/filewcount "
    "(kube/apps/filewcount/scaledobject.yaml) and HorizontalPodAutoscaler filewcount/filewcount "
    "(kube/apps/filewcount/hpa.yaml), which fight over its replicas; remove the HorizontalPodAutoscaler "
    "filewcount/filewcount: the ScaledObject filewcount/filewcount makes its own."
)
NEGATIVE_DIR = HERE / "fixtures" / "negative"
POSITIVE_DIR = HERE / "fixtures" / "positive"

# (check, case) -> a substring the check's report must contain, or a tuple of substrings: the check reports
# exactly one problem containing each, and nothing else.
NEGATIVE: dict[tuple[str, str], str | tuple[str, ...]] = {
    (
        "build",
        "missing-resource",
    ): "Kustomization flux-system/apps (path ./kube/apps): `kubectl kustomize ./kube/apps` failed",
    ("build", "orphan-file"): "kube/infrastructure/configs/forgotten.yaml is not applied by anything",
    ("build", "orphan-in-app"): "kube/apps/filewcount/configmap.yaml is not applied by anything",
    (
        "build",
        "bad-path",
    ): "Kustomization flux-system/apps (path ./kube/app): path ./kube/app does not exist in the repository.",
    ("build", "unknown-setting"): (
        "Kustomization flux-system/apps (path ./kube/apps): ${gateway_domian} in HTTPRoute filewcount has no value "
        "and no default; write it as ${name:=default}, or add it to the cluster settings that bootstrap writes",
    ),
    ("build", "not-a-manifest"): "notes.yaml is not a Kubernetes manifest (every document needs apiVersion and kind)",
    ("builtin", "unknown-field"): (
        "Service filewcount/filewcount (kube/apps/filewcount/service.yaml): invalid for Kubernetes 1.36 at "
        "spec.ports.0: Additional properties are not allowed ('nodeport' was unexpected)."
    ),
    ("builtin", "removed-api"): (
        "PodDisruptionBudget filewcount/filewcount (kube/apps/filewcount/pdb.yaml): policy/v1beta1 "
        "PodDisruptionBudget is neither a Kubernetes 1.36 kind nor a CRD in the schema directory"
    ),
    ("builtin", "wrong-type"): "at spec.replicas: 'three' is not of type 'integer'",
    ("crd", "unknown-field"): (
        "HelmRelease kube-system/metrics-server (kube/infrastructure/controllers/metrics-server/helmrelease.yaml): "
        "does not match the HelmRelease CRD at spec.install: "
        "Additional properties are not allowed ('crd' was unexpected)."
    ),
    ("crd", "no-crd-schema"): (
        "AlertmanagerConfig filewcount/filewcount (kube/apps/alertmanager-config.yaml): no CRD for AlertmanagerConfig "
        "(monitoring.coreos.com) in"
    ),
    ("crd", "bad-promql"): (
        "PrometheusRule monitoring/flux (kube/infrastructure/configs/prometheusrule-flux.yaml): rule "
        "FluxPodsRestarting in group flux.pods is not valid PromQL"
    ),
    ("crd", "substitution-skipped"): (
        "HTTPRoute filewcount/filewcount (kube/apps/filewcount/httproute.yaml): does not match the HTTPRoute CRD at "
        "spec.hostnames.0: 'filewcount.${gateway_domain:=localhost}' does not match",
    ),
    ("crd", "bad-enum"): "at spec.driftDetection.mode: 'on' is not one of ['enabled', 'warn', 'disabled'].",
    ("crd", "scaledobject-hpa-field"): (
        "ScaledObject filewcount/filewcount (kube/apps/filewcount/scaledobject.yaml): does not match the "
        "ScaledObject CRD at spec: Additional properties are not allowed ('minReplicas' was unexpected).",
    ),
    ("crd", "unserved-version"): (
        "monitoring.coreos.com/v1beta1 is not served by the pinned PrometheusRule CRD (served: v1); "
        "use monitoring.coreos.com/v1."
    ),
    ("values", "chart-schema"): "values break chart traefik 41.3.0's values.schema.json at ports.web.nodePort",
    ("values", "typo"): (
        "HelmRelease monitoring/kube-prometheus-stack (kube/infrastructure/controllers/kube-prometheus-stack/"
        "helmrelease.yaml): values key grafana.service.nodeport is not a value of chart kube-prometheus-stack 88.5.3"
    ),
    ("values", "unpinned-values"): "chart metrics-server 3.12.2 has no pinned values in",
    ("values", "by-component-typo"): (
        "HelmRelease keda/keda (kube/infrastructure/controllers/keda/helmrelease.yaml): values key "
        "resources.metricsServer is not a value of chart keda 2.20.2",
    ),
    ("values", "values-from-configmap"): (
        "values from ConfigMap kube-system/metrics-server-values (values.yaml) key argz is not a value of chart "
        "metrics-server 3.13.1"
    ),
    ("graph", "missing-source"): "sourceRef HelmRepository flux-system/metrics-servers does not exist in the tree.",
    ("graph", "missing-dependency"): (
        "Kustomization flux-system/apps (kube/clusters/kind/apps.yaml): dependsOn Kustomization "
        "flux-system/infrastructure-config does not exist in the tree."
    ),
    ("graph", "cycle"): (
        "Kustomization dependsOn cycle: flux-system/apps -> flux-system/infrastructure-configs -> "
        "flux-system/infrastructure-controllers -> flux-system/apps"
    ),
    ("graph", "crd-order"): (
        "PrometheusRule monitoring/filewcount (kube/infrastructure/configs/prometheusrule-filewcount.yaml): its "
        "monitoring.coreos.com CRD is installed by HelmRelease monitoring/kube-prometheus-stack in Kustomization "
        "flux-system/infrastructure-controllers, which Kustomization flux-system/infrastructure-configs does not "
        "depend on"
    ),
    ("graph", "missing-values-from"): (
        "valuesFrom Secret monitoring/kube-prometheus-stack-values does not exist in the tree"
    ),
    ("graph", "unselected-rule"): (
        "PrometheusRule monitoring/flux (kube/infrastructure/configs/prometheusrule-flux.yaml): lacks label "
        "release: kube-prometheus-stack"
    ),
    ("policy", "latest-image"): "image docker.io/bldrtech/filewcount:latest uses the latest tag",
    ("policy", "untagged-image"): "image docker.io/bldrtech/filewcount has no tag, so it means latest",
    ("policy", "no-limits"): "container filewcount has no limits for cpu and memory",
    ("policy", "no-probes"): "container filewcount has no readinessProbe",
    ("policy", "replicas-with-hpa"): (
        "Deployment filewcount/filewcount (kube/apps/filewcount/deployment.yaml): sets spec.replicas although "
        "ScaledObject filewcount/filewcount scales it, so every apply resets the replica count; remove spec.replicas "
        "(minReplicaCount applies).",
    ),
    ("policy", "unpinned-chart"): "chart version 88.x is not pinned",
    ("policy", "beta-flux-api"): (
        "uses the beta Flux API kustomize.toolkit.fluxcd.io/v1beta2, which Flux 2.8 removed; use "
        "kustomize.toolkit.fluxcd.io/v1."
    ),
    # The v1 HPA is also a second autoscaler of filewcount, next to the tree's ScaledObject.
    ("policy", "hpa-v1"): (
        "HorizontalPodAutoscaler filewcount/filewcount (kube/apps/filewcount/hpa.yaml): uses autoscaling/v1; use "
        "autoscaling/v2.",
        TWO_AUTOSCALERS,
    ),
    ("policy", "hpa-and-scaledobject"): (TWO_AUTOSCALERS,),
    ("policy", "no-namespace"): "Service filewcount (kube/apps/filewcount/service.yaml): has no metadata.namespace",
}


def _objects(tree: validate.Tree, kind: str) -> dict[tuple[str, str], validate.Obj]:
    return {(o.namespace, o.name): o for o in tree.all_objects() if o.kind == kind}


# ---------------------------------------------------------------------------------------------------
# The real tree passes every check
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", validate.CHECK_NAMES)
def test_tree_passes(tree: validate.Tree, check: str) -> None:
    assert validate.CHECKS[check](tree) == []


def test_every_flux_path_and_bootstrap_entry_is_built(tree: validate.Tree) -> None:
    paths = {u.path for u in tree.units}
    assert {
        "kube/clusters/kind",
        "kube/infrastructure/controllers",
        "kube/infrastructure/configs",
        "kube/apps",
    } <= paths
    bootstrap = validate.REPO_ROOT / validate.BOOTSTRAP_DIR
    if bootstrap.is_dir():
        for entry in bootstrap.iterdir():
            if entry.is_dir() or entry.suffix in (".yaml", ".yml"):
                assert str(entry.relative_to(validate.REPO_ROOT)) in paths


def test_every_object_is_validated_by_a_schema(tree: validate.Tree) -> None:
    """No object slips through both schema checks."""
    in_tree = validate._tree_crds(tree)
    for obj in tree.all_objects():
        custom = (obj.group, obj.kind) in tree.crds or (obj.group, obj.kind) in in_tree
        assert custom or not validate._is_custom(obj, tree), obj.ref()


def test_tree_with_committed_flux_system_passes(schemas: Path, tmp_path: Path) -> None:
    root = validate.materialize_fixture(POSITIVE_DIR / "flux-system-committed", tmp_path)
    tree = validate.load_tree(root, schemas)
    assert {name: check(tree) for name, check in validate.CHECKS.items()} == {n: [] for n in validate.CHECK_NAMES}
    assert "kube/clusters/kind/flux-system/gotk-sync.yaml" in {o.origin for o in tree.all_objects()}


# ---------------------------------------------------------------------------------------------------
# Each check fails on the mistake it targets
# ---------------------------------------------------------------------------------------------------


def test_every_check_has_negative_fixtures() -> None:
    on_disk = {(c.parent.name, c.name) for c in NEGATIVE_DIR.glob("*/*") if c.is_dir()}
    assert on_disk == set(NEGATIVE), "fixtures on disk and the NEGATIVE table differ"
    assert {key[0] for key in NEGATIVE} == set(validate.CHECK_NAMES)


# Cases that need an optional tool, with the pip requirement that provides it.
NEEDS = {("crd", "bad-promql"): ("promql_parser", "promql-parser")}


@pytest.mark.parametrize(("check", "case"), sorted(NEGATIVE), ids=[f"{c}-{n}" for c, n in sorted(NEGATIVE)])
def test_negative_fixture_fails_its_check(schemas: Path, tmp_path: Path, check: str, case: str) -> None:
    if (check, case) in NEEDS:
        module, requirement = NEEDS[(check, case)]
        pytest.importorskip(module, reason=f"{requirement} is not installed (requirements-test.txt)")
    root = validate.materialize_fixture(NEGATIVE_DIR / check / case, tmp_path)
    problems = validate.CHECKS[check](validate.load_tree(root, schemas))
    expected = NEGATIVE[(check, case)]
    if isinstance(expected, str):
        assert any(expected in p for p in problems), f"expected {expected!r} in:\n" + "\n".join(problems)
    else:
        # Each problem contains one expected substring, and each substring is in one problem.
        matches = [[e for e in expected if e in p] for p in problems]
        assert all(len(m) == 1 for m in matches) and sorted(m[0] for m in matches) == sorted(expected), (
            f"expected exactly {expected!r}, got:\n" + "\n".join(problems)
        )


# ---------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("docker.io/bldrtech/filewcount:1.0", None),
        ("registry:5000/team/app:2.0", None),
        ("ghcr.io/x/y@sha256:" + "a" * 64, None),
        ("docker.io/bldrtech/filewcount", "has no tag, so it means latest"),
        ("registry:5000/team/app", "has no tag, so it means latest"),
        ("nginx:latest", "uses the latest tag"),
    ],
)
def test_image_problem(image: str, problem: str | None) -> None:
    assert validate.image_problem(image) == problem


def test_crd_schema_conversion_handles_kubernetes_extensions() -> None:
    schema = validate.crd_to_jsonschema(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "free": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"a": {"type": "string"}},
                },
                "maybe": {"type": "string", "nullable": True},
            },
        }
    )
    validator = validate.jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors({"port": 80, "free": {"a": "x", "b": 1}, "maybe": None}))
    assert not list(validator.iter_errors({"port": "http"}))
    assert [e.message for e in validator.iter_errors({"typo": 1})] == [
        "Additional properties are not allowed ('typo' was unexpected)"
    ]


def test_unknown_value_paths_stop_at_free_form_keys_and_lists() -> None:
    known = frozenset({"a", "a.b", "a.resources", "a.list"})
    values = {"a": {"b": 1, "resources": {"limits": {"cpu": 1}}, "list": [{"x": 1}], "c": 2}, "z": {}}
    assert validate.unknown_value_paths(values, known) == ["a.c", "z"]


def test_unknown_value_paths_check_the_components_of_a_map_keyed_by_component() -> None:
    known = frozenset({"resources", "resources.operator", "resources.operator.limits", "resources.webhooks"})
    values = {"resources": {"operator": {"requests": {"ephemeral-storage": "1Gi"}}, "operatr": {"limits": {}}}}
    assert validate.unknown_value_paths(values, known) == []
    assert validate.unknown_value_paths(values, known, by_component=frozenset({"resources"})) == ["resources.operatr"]


def _autoscaler(kind: str, name: str, target: dict[str, str]) -> dict[str, object]:
    api = "keda.sh/v1alpha1" if kind == "ScaledObject" else "autoscaling/v2"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "filewcount"},
        "spec": {"scaleTargetRef": target},
    }


HPA_TARGET = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "filewcount"}


@pytest.mark.parametrize(
    ("scalers", "problems"),
    [
        pytest.param(
            [("HorizontalPodAutoscaler", "a", HPA_TARGET), ("ScaledObject", "b", {"name": "filewcount"})],
            [
                "Deployment filewcount/filewcount is scaled by both ScaledObject filewcount/b (t.yaml) and "
                "HorizontalPodAutoscaler filewcount/a (t.yaml), which fight over its replicas; remove the "
                "HorizontalPodAutoscaler filewcount/a: the ScaledObject filewcount/b makes its own."
            ],
            id="hpa-and-scaledobject-kind-defaults-to-deployment",
        ),
        pytest.param(
            [("HorizontalPodAutoscaler", "a", HPA_TARGET), ("HorizontalPodAutoscaler", "b", HPA_TARGET)],
            [
                "Deployment filewcount/filewcount is scaled by both HorizontalPodAutoscaler filewcount/a (t.yaml) "
                "and HorizontalPodAutoscaler filewcount/b (t.yaml), which fight over its replicas; keep one "
                "HorizontalPodAutoscaler, HorizontalPodAutoscaler filewcount/a or HorizontalPodAutoscaler filewcount/b."
            ],
            id="two-hpas",
        ),
        pytest.param(
            [("ScaledObject", "a", {"name": "filewcount"}), ("ScaledObject", "b", HPA_TARGET)],
            [
                "Deployment filewcount/filewcount is scaled by both ScaledObject filewcount/a (t.yaml) and "
                "ScaledObject filewcount/b (t.yaml), which fight over its replicas; keep one ScaledObject, "
                "ScaledObject filewcount/a or ScaledObject filewcount/b (KEDA's webhook rejects the second)."
            ],
            id="two-scaledobjects",
        ),
        pytest.param(
            [
                ("HorizontalPodAutoscaler", "a", HPA_TARGET),
                ("ScaledObject", "b", {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "filewcount"}),
                ("ScaledObject", "c", {"name": "other"}),
            ],
            [],
            id="different-targets",
        ),
    ],
)
def test_one_autoscaler_per_workload(scalers: list[tuple[str, str, dict[str, str]]], problems: list[str]) -> None:
    unit = validate.Unit("kube/apps", None, "test")
    unit.objects = [validate.Obj(_autoscaler(*scaler), unit, "t.yaml") for scaler in scalers]
    tree = validate.Tree(validate.REPO_ROOT, Path("."), [unit], [], {})
    assert validate.check_policy(tree) == problems


# ---------------------------------------------------------------------------------------------------
# The contract other parts of the project rely on (../shared/DESIGN.md, /tmp/agents/COMMON.md)
# ---------------------------------------------------------------------------------------------------


def test_kustomization_chain(tree: validate.Tree) -> None:
    ks = _objects(tree, "Kustomization")
    chain = {
        "infrastructure-crds": ("./kube/infrastructure/crds", []),
        "infrastructure-controllers": ("./kube/infrastructure/controllers", ["infrastructure-crds"]),
        "infrastructure-configs": ("./kube/infrastructure/configs", ["infrastructure-controllers"]),
        "apps": ("./kube/apps", ["infrastructure-configs"]),
    }
    for name, (path, deps) in chain.items():
        spec = ks[("flux-system", name)].spec
        assert ks[("flux-system", name)].api_version == "kustomize.toolkit.fluxcd.io/v1"
        assert spec["path"] == path
        assert [d["name"] for d in spec.get("dependsOn", [])] == deps
        assert spec["prune"] is True and spec["wait"] is True
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
        assert spec["interval"] and spec["timeout"]


def test_helm_releases(tree: validate.Tree) -> None:
    releases = _objects(tree, "HelmRelease")
    repos = _objects(tree, "HelmRepository")
    expected = {
        ("kube-system", "metrics-server"): (
            "metrics-server",
            "3.13.1",
            "metrics-server",
            "https://kubernetes-sigs.github.io/metrics-server/",
        ),
        ("monitoring", "kube-prometheus-stack"): (
            "kube-prometheus-stack",
            "88.5.3",
            "prometheus-community",
            "https://prometheus-community.github.io/helm-charts",
        ),
        ("traefik", "traefik"): ("traefik", "41.3.0", "traefik", "https://traefik.github.io/charts"),
        ("cert-manager", "cert-manager"): ("cert-manager", "v1.21.1", "jetstack", "https://charts.jetstack.io"),
        ("keda", "keda"): ("keda", "2.20.2", "kedacore", "https://kedacore.github.io/charts"),
        ("monitoring", "loki"): (
            "loki",
            "18.11.0",
            "grafana-community",
            "https://grafana-community.github.io/helm-charts",
        ),
        ("monitoring", "alloy"): ("alloy", "1.11.1", "grafana", "https://grafana.github.io/helm-charts"),
    }
    assert set(releases) == set(expected)
    for key, (chart, version, repo, url) in expected.items():
        hr = releases[key]
        assert hr.api_version == "helm.toolkit.fluxcd.io/v2"
        spec = hr.spec["chart"]["spec"]
        assert (spec["chart"], spec["version"], spec["sourceRef"]["name"]) == (chart, version, repo)
        assert repos[("flux-system", repo)].spec["url"] == url
        assert hr.spec["install"]["crds"] == "CreateReplace"
        assert hr.spec["upgrade"]["crds"] == "CreateReplace"
        assert hr.spec["driftDetection"]["mode"] == "enabled"
    assert "--kubelet-insecure-tls" in releases[("kube-system", "metrics-server")].spec["values"]["args"]


def test_kube_prometheus_stack_values(tree: validate.Tree) -> None:
    values = _objects(tree, "HelmRelease")[("monitoring", "kube-prometheus-stack")].spec["values"]
    grafana = values["grafana"]
    assert grafana["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert "adminPassword" not in grafana
    assert grafana["service"] == {"type": "NodePort", "nodePort": 30081}
    sidecar = grafana["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == ("grafana_dashboard", "1")
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[component]["enabled"] is False
    assert values["prometheus-node-exporter"]["hostRootFsMount"]["enabled"] is False
    prom = values["prometheus"]["prometheusSpec"]
    assert prom["retention"] and prom["retentionSize"]
    assert prom["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]


def test_dashboards(tree: validate.Tree) -> None:
    found = {}
    for cm in _objects(tree, "ConfigMap").values():
        if cm.labels.get("grafana_dashboard") == "1":
            assert cm.namespace == "monitoring"
            for body in cm.doc["data"].values():
                dashboard = json.loads(body)
                found[dashboard["uid"]] = dashboard
    assert set(found) == {"flux-cluster", "filewcount"}
    # Grafana's URL slug: lower-case title, runs of non-alphanumerics become '-'.
    assert re.sub(r"[^a-z0-9]+", "-", found["flux-cluster"]["title"].lower()).strip("-") == "flux-cluster-stats"
    exprs = " ".join(t["expr"] for p in found["filewcount"]["panels"] for t in p["targets"])
    for metric in (
        "kube_deployment_status_replicas_available",
        "kube_horizontalpodautoscaler_spec_target_metric",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "kube_pod_container_status_restarts_total",
        # Traefik's per-router series (the chart's metrics.prometheus.addRoutersLabels) for the filewcount route.
        'traefik_router_requests_total{router=~"httproute-filewcount-filewcount-.*"}',
        'traefik_router_request_duration_seconds_bucket{router=~"httproute-filewcount-filewcount-.*"}',
    ):
        assert metric in exprs
    for dashboard in found.values():
        for panel in dashboard["panels"]:
            # Metrics from Prometheus; the log panels (tests/manifests/test_logs.py) from Loki.
            assert panel["datasource"]["uid"] == {"logs": "loki"}.get(panel["type"], "prometheus")


def test_dashboard_and_rule_queries_parse(tree: validate.Tree) -> None:
    pytest.importorskip("promql_parser", reason="promql-parser is not installed (requirements-test.txt)")
    exprs = []
    for cm in _objects(tree, "ConfigMap").values():
        if cm.labels.get("grafana_dashboard") == "1":
            for body in cm.doc["data"].values():
                panels = json.loads(body)["panels"]
                # LogQL of the log panels is parsed by tests/manifests/test_logs.py.
                exprs += [t["expr"] for p in panels for t in p["targets"] if p["datasource"]["type"] == "prometheus"]
    for rule in _objects(tree, "PrometheusRule").values():
        exprs += [r["expr"] for g in rule.spec["groups"] for r in g["rules"]]
    assert len(exprs) > 20
    assert {e: validate.promql_error(e) for e in exprs if validate.promql_error(e)} == {}
    assert validate.promql_error("sum(rate(x[5m])") is not None


def test_alerts(tree: validate.Tree) -> None:
    alerts = {
        r["alert"]
        for rule in _objects(tree, "PrometheusRule").values()
        for g in rule.spec["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert {
        "FilewcountUnavailable",
        "FilewcountHPAAtMaxReplicas",
        "FluxReconciliationFailing",
        "FilewcountPodsRestarting",
    } <= alerts
    monitor = _objects(tree, "PodMonitor")[("monitoring", "flux-system")]
    assert [e["port"] for e in monitor.spec["podMetricsEndpoints"]] == ["http-prom"]
    assert monitor.spec["namespaceSelector"] == {"matchNames": ["flux-system"]}


def test_filewcount_app(tree: validate.Tree) -> None:
    deploy = _objects(tree, "Deployment")[("filewcount", "filewcount")].doc
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "docker.io/bldrtech/filewcount:1.0"
    assert [p["containerPort"] for p in container["ports"]] == [80]
    assert "replicas" not in deploy["spec"]  # the HPA KEDA makes from the ScaledObject owns it (minReplicaCount 3)
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "20Mi"},
        "limits": {"cpu": "800m", "memory": "100Mi"},
    }
    service = _objects(tree, "Service")[("filewcount", "filewcount")].spec
    assert service["type"] == "NodePort" and service["ports"][0]["nodePort"] == 30080
    assert not _objects(tree, "HorizontalPodAutoscaler"), "KEDA makes the HPA from the ScaledObject"
    scaled = _objects(tree, "ScaledObject")[("filewcount", "filewcount")]
    assert scaled.api_version == "keda.sh/v1alpha1"
    assert scaled.spec["scaleTargetRef"]["name"] == "filewcount"
    assert scaled.spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert (scaled.spec["minReplicaCount"], scaled.spec["maxReplicaCount"]) == (3, 10)
    hpa = scaled.spec["advanced"]["horizontalPodAutoscalerConfig"]
    # The HPA keeps the name of the plain one it replaced (dashboards, alerts and the load test read it).
    assert hpa["name"] == "filewcount"
    assert hpa["behavior"]["scaleUp"] and hpa["behavior"]["scaleDown"]
    triggers = {t["type"]: t for t in scaled.spec["triggers"]}
    assert set(triggers) == {"prometheus", "cpu"}
    assert triggers["cpu"]["metricType"] == "Utilization"
    prometheus = triggers["prometheus"]["metadata"]
    assert 'router=~"httproute-filewcount-filewcount-.*"' in prometheus["query"]
    assert validate.promql_error(prometheus["query"]) is None
    assert ("filewcount", "filewcount") in _objects(tree, "PodDisruptionBudget")
    assert ("", "filewcount") in _objects(tree, "Namespace")


def test_upgrade_edit_touches_only_the_tag() -> None:
    """docs/gitops.md upgrades with a sed on the image line; it must match exactly one line."""
    text = (validate.REPO_ROOT / "kube/apps/filewcount/deployment.yaml").read_text()
    assert len(re.findall(r"image: docker\.io/bldrtech/filewcount:", text)) == 1
    upgraded = re.sub(r"(image: docker\.io/bldrtech/filewcount:)\S+", r"\g<1>2.0", text)
    docs = list(yaml.safe_load_all(upgraded))
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "docker.io/bldrtech/filewcount:2.0"
