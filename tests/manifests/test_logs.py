"""Logs (issue 18, logs): Loki and Grafana Alloy in the GitOps tree, Loki as a Grafana data source, log panels and
Loki alerting rules.

The generic checks (validate.py) already validate the HelmReleases' values against the pinned charts and every
object against its schema; these tests pin the contract between the pieces: Loki monolithic with one replica, no
caches, its data on a filesystem volume of the retained class; Alloy reading pod logs and events through the
Kubernetes API only; the data source uid the dashboards' log panels name; rules that the Loki chart's sidecar loads
and whose alerts reach kube-prometheus-stack's Alertmanager. The charts are rendered with the harness's Helm from
the pinned sources (../shared/charts) with the tree's values.

Every LogQL expression of the tree (the Loki rules and the dashboards' Loki targets) is parsed by Grafana's own LogQL
grammar, the npm package @grafana/lezer-logql that Grafana's Loki query editor uses (Apache-2.0; the Loki Go module,
AGPL, is not used), pinned by logql/package-lock.json and installed by `make manifests` (npm ci into .venv/logql);
logql/check.cjs reports each expression's first error node with its offset.
"""

from __future__ import annotations

import base64
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

import test_alerting as alerting
import test_eks_overlay as eks_overlay
import validate

ROOT = validate.REPO_ROOT
CHECKER = Path(__file__).resolve().parent / "logql" / "check.cjs"
LOKI_URL = "http://loki.monitoring.svc.cluster.local:3100"
ALERTMANAGER_URL = "http://kube-prometheus-stack-alertmanager.monitoring.svc.cluster.local:9093"
EVENTS_JOB = "integrations/kubernetes/eventhandler"
RETAINED_CLASS = "filewcount-retain"
# The releases rendered here (chart folder, namespace and dependencies in test_eks_overlay.CHARTS).
CHARTS = {release: eks_overlay.CHARTS[release] for release in ("loki", "alloy", "kube-prometheus-stack")}

Key = tuple[str, str, str]  # kind, namespace, name


def _release(tree: validate.Tree, name: str) -> validate.Obj:
    (release,) = [o for o in tree.flux_objects() if o.kind == "HelmRelease" and o.name == name]
    return release


def _values(tree: validate.Tree, name: str) -> dict[str, Any]:
    return _release(tree, name).spec["values"]


def _rule_configmaps(tree: validate.Tree) -> list[validate.Obj]:
    return [o for o in tree.flux_objects() if o.kind == "ConfigMap" and "loki_rule" in o.labels]


def _rules(tree: validate.Tree) -> dict[str, dict[str, Any]]:
    """Alert name -> rule, from every Loki rules ConfigMap."""
    rules = {}
    for cm in _rule_configmaps(tree):
        for body in cm.doc["data"].values():
            for group in yaml.safe_load(body)["groups"]:
                for rule in group["rules"]:
                    rules[rule.get("alert") or rule["record"]] = rule
    return rules


def _dashboards(tree: validate.Tree) -> dict[str, dict[str, Any]]:
    found = {}
    for cm in tree.flux_objects():
        if cm.kind == "ConfigMap" and cm.labels.get("grafana_dashboard") == "1":
            for body in cm.doc["data"].values():
                dashboard = json.loads(body)
                found[dashboard["uid"]] = dashboard
    return found


def _loki_targets(tree: validate.Tree) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard uid, panel, target) of every target whose panel reads Loki."""
    return [
        (uid, panel, target)
        for uid, dashboard in _dashboards(tree).items()
        for panel in dashboard["panels"]
        if panel["datasource"]["type"] == "loki"
        for target in panel["targets"]
    ]


def _logql_expressions(tree: validate.Tree) -> dict[str, str]:
    """Where -> LogQL expression, for every rule and dashboard Loki target of the tree."""
    exprs = {f"rule {name}": rule["expr"] for name, rule in _rules(tree).items()}
    for uid, panel, target in _loki_targets(tree):
        exprs[f"dashboard {uid} panel {panel['title']!r} target {target['refId']}"] = target["expr"]
    return exprs


# ---------------------------------------------------------------------------------------------------
# LogQL: Grafana's grammar (@grafana/lezer-logql), run by node
# ---------------------------------------------------------------------------------------------------


def _logql_modules() -> Path:
    env = os.environ.get("FILEWCOUNT_LOGQL_MODULES")
    return Path(env) if env else Path(sys.prefix) / "logql" / "node_modules"


@pytest.fixture(scope="module")
def logql() -> Any:
    """A function: LogQL expressions -> each one's error (a sentence with the offset) or None."""
    node = shutil.which("node")
    modules = _logql_modules()
    if node is None or not (modules / "@grafana" / "lezer-logql").is_dir():
        pytest.skip(f"node or @grafana/lezer-logql in {modules} is missing: run `make manifests` (npm ci)")

    def errors(exprs: list[str]) -> list[str | None]:
        proc = subprocess.run(
            [node, str(CHECKER)],
            input=json.dumps(exprs),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, "NODE_PATH": str(modules)},
        )
        assert proc.returncode == 0, proc.stderr
        return [None if e is None else e["message"] for e in json.loads(proc.stdout)]

    return errors


def test_every_logql_expression_of_the_tree_parses(tree: validate.Tree, logql: Any) -> None:
    exprs = _logql_expressions(tree)
    assert len([w for w in exprs if w.startswith("rule ")]) >= 2
    assert len([w for w in exprs if w.startswith("dashboard ")]) >= 2
    assert dict(zip(exprs, logql(list(exprs.values())), strict=True)) == dict.fromkeys(exprs)


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ('{namespace="filewcount"}', None),
        ('sum by (pod) (count_over_time({namespace="filewcount"} |~ `(?i)error` [5m])) > 5', None),
        ('{job="x"} |= "type=Warning" | logfmt | __error__="" | type="Warning"', None),
        ('sum(count_over_time({namespace="filewcount"}[5m])', "does not parse as LogQL at the end"),
        ('rate({namespace="filewcount"})', "does not parse as LogQL at offset 29"),
        ("{namespace=filewcount}", "does not parse as LogQL at offset 11"),
        ('{namespace="filewcount"} |~ (?i)error', "does not parse as LogQL at offset 28"),
        ("", "does not parse as LogQL at the end"),
    ],
)
def test_the_parser_reports_where_an_expression_breaks(logql: Any, expr: str, error: str | None) -> None:
    (found,) = logql([expr])
    assert found == error if error is None else found.startswith(error), found


def test_a_broken_rule_of_the_tree_is_reported(tree: validate.Tree, logql: Any) -> None:
    """The tree's own rules with their last closing parenthesis dropped, or a stray pipe before the range, fail."""
    exprs = [rule["expr"] for rule in _rules(tree).values()]
    broken = [e[: e.rindex(")")] + e[e.rindex(")") + 1 :] for e in exprs]
    broken += [re.sub(r"(\[\d+m\])", r"| \1", e) for e in exprs]
    assert all(b not in exprs for b in broken)
    assert all(found is not None for found in logql(broken)), broken


# ---------------------------------------------------------------------------------------------------
# The HelmReleases' values
# ---------------------------------------------------------------------------------------------------


def test_loki_is_one_monolithic_replica_on_a_retained_filesystem_volume(tree: validate.Tree) -> None:
    release = _release(tree, "loki")
    assert release.namespace == "monitoring"
    assert release.spec["chart"]["spec"]["version"] == "18.11.0"
    values = release.spec["values"]
    # Monolithic is the chart's name for the single binary (SingleBinary is its deprecated alias).
    assert values["deploymentMode"] == "Monolithic"
    assert values["singleBinary"]["replicas"] == 1
    persistence = values["singleBinary"]["persistence"]
    assert persistence["enabled"] is True
    assert persistence["storageClass"] == RETAINED_CLASS
    loki = values["loki"]
    assert loki["auth_enabled"] is False
    assert loki["commonConfig"]["replication_factor"] == 1
    assert loki["storage"]["type"] == "filesystem"
    (schema,) = loki["schemaConfig"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    # Logs are kept 7 days: the compactor deletes what is older than the retention period.
    assert loki["limits_config"]["retention_period"] == "168h"
    assert loki["compactor"] == {"retention_enabled": True, "delete_request_store": "filesystem"}
    for cache in ("chunksCache", "resultsCache"):
        assert values[cache]["enabled"] is False, cache
    for component in ("gateway", "lokiCanary", "test", "minio", "rollout_operator"):
        assert values[component]["enabled"] is False, component
    for component in ("backend", "read", "write", "ingester", "querier", "distributor", "compactor", "ruler"):
        assert values[component]["replicas"] == 0, component


def test_the_retained_class_is_in_the_tree(tree: validate.Tree) -> None:
    classes = {o.name: o.doc for o in tree.flux_objects() if o.kind == "StorageClass"}
    if RETAINED_CLASS not in classes:
        pytest.skip(f"StorageClass {RETAINED_CLASS} is not in the tree yet (kube/infrastructure/controllers/storage)")
    assert classes[RETAINED_CLASS]["reclaimPolicy"] == "Retain"


def _alloy_config(tree: validate.Tree) -> str:
    return _values(tree, "alloy")["alloy"]["configMap"]["content"]


def _blocks(config: str) -> list[str]:
    """The component blocks of an Alloy configuration: `name "label"` at the start of a line."""
    return re.findall(r'(?m)^([a-z_][a-z0-9_.]*) "[^"]*" \{', config)


def test_alloy_reads_pod_logs_and_events_through_the_kubernetes_api(tree: validate.Tree) -> None:
    values = _values(tree, "alloy")
    assert (values["controller"]["type"], values["controller"]["replicas"]) == ("deployment", 1)
    assert not (values["alloy"].get("mounts") or {}).get("varlog")
    assert not (values["alloy"].get("mounts") or {}).get("dockercontainers")
    config = _alloy_config(tree)
    blocks = _blocks(config)
    assert sorted(blocks) == sorted(
        [
            "discovery.kubernetes",
            "discovery.relabel",
            "loki.source.kubernetes",
            "loki.source.kubernetes_events",
            "loki.write",
        ]
    )
    # No file tailing (loki.source.file, local.file_match, the promtail way), and no double braces (the chart's tpl).
    assert not {b for b in blocks if b in ("loki.source.file", "local.file_match", "loki.source.docker")}
    assert "/var/log" not in config and "{{" not in config
    for label in ("namespace", "pod", "container", "app"):
        assert f'target_label  = "{label}"' in config, label
    assert f'job_name   = "{EVENTS_JOB}"' in config
    assert f'url = "{LOKI_URL}/loki/api/v1/push"' in config
    assert _release(tree, "alloy").spec["dependsOn"] == [{"name": "loki"}]


# ---------------------------------------------------------------------------------------------------
# Grafana, dashboards and rules
# ---------------------------------------------------------------------------------------------------


def _loki_data_source(tree: validate.Tree) -> dict[str, Any]:
    sources = _values(tree, "kube-prometheus-stack")["grafana"]["additionalDataSources"]
    (loki,) = [s for s in sources if s["type"] == "loki"]
    return loki


def test_the_loki_data_source_is_the_one_the_dashboards_name(tree: validate.Tree) -> None:
    source = _loki_data_source(tree)
    assert (source["uid"], source["url"], source["access"]) == ("loki", LOKI_URL, "proxy")
    targets = _loki_targets(tree)
    assert {uid for uid, _panel, _target in targets} == {"filewcount", "flux-cluster"}
    for _uid, panel, target in targets:
        assert panel["type"] == "logs"
        assert panel["datasource"] == target["datasource"] == {"type": "loki", "uid": source["uid"]}
    exprs = {uid: target["expr"] for uid, _panel, target in targets}
    assert exprs["filewcount"].startswith('{namespace="filewcount"')
    assert exprs["flux-cluster"].startswith('{namespace="flux-system"')
    # The Flux controllers' pods carry app=<controller> (Alloy's app label: app.kubernetes.io/name, else app).
    for controller in ("source", "kustomize", "helm", "notification"):
        assert f"{controller}-controller" in exprs["flux-cluster"]


def test_the_rules_are_loaded_by_the_loki_sidecar(tree: validate.Tree) -> None:
    sidecar = _values(tree, "loki")["sidecar"]["rules"]
    ruler = _values(tree, "loki")["loki"]["rulerConfig"]
    configmaps = _rule_configmaps(tree)
    assert len(configmaps) >= 2
    keys = [key for cm in configmaps for key in cm.doc["data"]]
    assert len(keys) == len(set(keys)), "each data key is a file in the same folder"
    for cm in configmaps:
        # The sidecar searches its own namespace (searchNamespace unset) for its label and value.
        assert cm.namespace == _release(tree, "loki").namespace
        assert cm.labels[sidecar["label"]] == sidecar["labelValue"]
    # The local rule store reads <directory>/<tenant>/; without auth_enabled the tenant is "fake".
    assert ruler["storage"] == {"type": "local", "local": {"directory": "/rules"}}
    assert sidecar["folder"] == "/rules/fake"


def test_every_rule_reaches_alertmanager_with_a_severity_and_a_description(tree: validate.Tree) -> None:
    assert _values(tree, "loki")["loki"]["rulerConfig"]["alertmanager_url"] == ALERTMANAGER_URL
    rules = _rules(tree)
    assert {"FilewcountErrorLogs", "KubernetesWarningEventsRepeated"} <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    # The streams the rules read: filewcount's container (kube/apps) and the events Alloy labels with its job.
    deployment = next(o for o in tree.flux_objects() if o.kind == "Deployment" and o.name == "filewcount")
    (container,) = deployment.doc["spec"]["template"]["spec"]["containers"]
    assert f'{{namespace="filewcount", container="{container["name"]}"}}' in rules["FilewcountErrorLogs"]["expr"]
    assert f'{{job="{EVENTS_JOB}"}}' in rules["KubernetesWarningEventsRepeated"]["expr"]


# ---------------------------------------------------------------------------------------------------
# The charts, rendered with Helm from the pinned sources
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tree: validate.Tree, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[Key, dict[str, Any]]]:
    helm = eks_overlay._helm()
    charts = Path(os.environ.get("FILEWCOUNT_CHARTS_DIR") or ROOT.parent / "shared" / "charts")
    needed = [charts / folder for folder, _ns, deps in CHARTS.values() for folder in [folder, *deps]]
    if helm is None or not all(path.is_dir() for path in needed):
        pytest.skip("the harness's Helm (make testbin) or the chart sources (../shared/charts) are missing")
    work = tmp_path_factory.mktemp("logs-charts")
    return {
        release: eks_overlay._render(helm, charts, release, copy.deepcopy(_values(tree, release)), work)
        for release in CHARTS
    }


def _workloads(objects: dict[Key, dict[str, Any]]) -> set[Key]:
    return {k for k in objects if k[0] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")}


def test_rendered_loki_is_one_statefulset_with_a_retained_volume(rendered: dict[str, dict[Key, Any]]) -> None:
    loki = rendered["loki"]
    assert _workloads(loki) == {("StatefulSet", "monitoring", "loki")}, "no gateway, cache, canary or other target"
    statefulset = loki[("StatefulSet", "monitoring", "loki")]["spec"]
    assert statefulset["replicas"] == 1
    (claim,) = statefulset["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == RETAINED_CLASS
    pod = statefulset["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"loki", "loki-sc-rules"}
    assert "-target=all" in containers["loki"]["args"]
    env = {e["name"]: e.get("value") for e in containers["loki-sc-rules"]["env"]}
    assert (env["LABEL"], env["LABEL_VALUE"], env["FOLDER"], env["RESOURCE"]) == (
        "loki_rule",
        "1",
        "/rules/fake",
        "configmap",
    )
    mounts = {m["mountPath"] for c in containers.values() for m in c["volumeMounts"]}
    assert "/rules/fake" in mounts
    # The rules sidecar reads ConfigMaps of its namespace only (rbac.namespaced: a Role, no ClusterRole).
    assert not [k for k in loki if k[0] in ("ClusterRole", "ClusterRoleBinding")]
    config = yaml.safe_load(loki[("ConfigMap", "monitoring", "loki")]["data"]["config.yaml"])
    assert config["auth_enabled"] is False
    assert config["common"]["storage"] == {
        "filesystem": {"chunks_directory": "/var/loki/chunks", "rules_directory": "/var/loki/rules"}
    }
    assert config["ruler"]["alertmanager_url"] == ALERTMANAGER_URL
    assert config["ruler"]["storage"] == {"type": "local", "local": {"directory": "/rules"}}
    assert config["limits_config"]["retention_period"] == "168h"
    assert config["compactor"]["retention_enabled"] is True
    assert config["analytics"] == {"reporting_enabled": False}
    assert "chunk_store_config" not in config and "results_cache" not in config["query_range"]
    # The Service that Grafana's data source and Alloy's loki.write name.
    service = loki[("Service", "monitoring", "loki")]["spec"]
    assert 3100 in [p["port"] for p in service["ports"]]


def test_rendered_alloy_is_one_deployment_that_may_read_pod_logs_and_events(
    rendered: dict[str, dict[Key, Any]],
) -> None:
    alloy = rendered["alloy"]
    assert _workloads(alloy) == {("Deployment", "monitoring", "alloy")}
    deployment = alloy[("Deployment", "monitoring", "alloy")]["spec"]
    assert deployment["replicas"] == 1
    volumes = deployment["template"]["spec"].get("volumes") or []
    assert not [v for v in volumes if "hostPath" in v], "no host paths: logs come through the API"
    (role,) = [d for k, d in alloy.items() if k[0] == "ClusterRole"]
    granted = {(r, v) for rule in role["rules"] for r in rule.get("resources", []) for v in rule["verbs"]}
    for resource in ("pods", "pods/log", "namespaces", "events"):
        assert {(resource, "get"), (resource, "list"), (resource, "watch")} <= granted, resource
    assert not {r for r, _v in granted if r in ("secrets", "configmaps")}
    assert not [k for k in alloy if k[0] == "CustomResourceDefinition"]


@pytest.mark.parametrize(
    ("alert", "labels"),
    [
        ("FilewcountErrorLogs", ["namespace=filewcount", "pod=filewcount-0"]),
        (
            "KubernetesWarningEventsRepeated",
            ["namespace=filewcount", "kind=Pod", "name=filewcount-0", "reason=BackOff"],
        ),
    ],
)
def test_the_loki_alerts_are_routed_to_the_inbox(  # noqa: PLR0917 - pytest fixtures and parameters
    tree: validate.Tree,
    rendered: dict[str, dict[Key, Any]],
    amtool: Path,
    tmp_path: Path,
    alert: str,
    labels: list[str],
) -> None:
    """Where Alertmanager sends each Loki alert (its rule's labels and its `by` labels), asked of the real amtool with
    the configuration Helm renders from the tree's kube-prometheus-stack values (test_alerting.py checks that one)."""
    secret = rendered["kube-prometheus-stack"][alerting.SECRET]
    config = tmp_path / "alertmanager.yaml"
    config.write_bytes(base64.b64decode(secret["data"]["alertmanager.yaml"]))
    severity = _rules(tree)[alert]["labels"]["severity"]
    argv = ["config", "routes", "test", f"--config.file={config}", f"alertname={alert}", f"severity={severity}"]
    proc = alerting._amtool_run(amtool, *argv, *labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["inbox"]


def test_the_loki_rules_reach_the_alertmanager_service(rendered: dict[str, dict[Key, Any]]) -> None:
    match = re.fullmatch(r"http://([\w-]+)\.([\w-]+)\.svc\.cluster\.local:(\d+)", ALERTMANAGER_URL)
    assert match
    service = rendered["kube-prometheus-stack"][("Service", match[2], match[1])]["spec"]
    assert int(match[3]) in [p["port"] for p in service["ports"]]
    # And the Loki data source is provisioned into Grafana next to Prometheus.
    datasources = [
        d
        for k, d in rendered["kube-prometheus-stack"].items()
        if k[0] == "ConfigMap" and (d["metadata"].get("labels") or {}).get("grafana_datasource") == "1"
    ]
    provisioned = [s for d in datasources for body in d["data"].values() for s in yaml.safe_load(body)["datasources"]]
    assert {(s["type"], s["uid"], s["url"]) for s in provisioned if s["type"] == "loki"} == {("loki", "loki", LOKI_URL)}
