"""Alerts that reach someone (issue 18, alerting): the Alertmanager configuration and the Flux events it receives.

The Alertmanager configuration is what Helm renders from the tree's kube-prometheus-stack values into the Secret the
operator reads (``helm template`` with the harness's Helm, on kind and EKS), checked by the real ``amtool`` of the
chart's Alertmanager version (v0.34.0, built by tests/harness/build-testbin.sh): ``amtool check-config``, and
``amtool config routes test`` for where each kind of alert goes. The PrometheusRules are validated by the manifest
suite (CRD schema, every expression by the promql-parser Python package) and by the real promtool
(test_promtool.py: ``promtool check rules`` and ``promtool test rules``).
"""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_eks_overlay as eks_overlay
import validate

ROOT = validate.REPO_ROOT
DOC = ROOT / "docs" / "alerting.md"
SECRET = ("Secret", "monitoring", "alertmanager-kube-prometheus-stack-alertmanager")


@pytest.fixture(scope="module", params=["kube/clusters/kind", "kube/clusters/eks"])
def config_file(request: pytest.FixtureRequest, schemas: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alertmanager.yaml as Helm renders it from the tree's values, for each cluster's tree."""
    helm = eks_overlay._helm()
    charts = Path(os.environ.get("FILEWCOUNT_CHARTS_DIR") or ROOT.parent / "shared" / "charts")
    if helm is None or not (charts / eks_overlay.CHARTS["kube-prometheus-stack"][0]).is_dir():
        pytest.skip("the harness's Helm (make testbin) or the chart sources (../shared/charts) are missing")
    tree = validate.load_tree(ROOT, schemas, request.param)
    work = tmp_path_factory.mktemp("alertmanager")
    values = copy.deepcopy(eks_overlay._values(tree, "kube-prometheus-stack"))
    rendered = eks_overlay._render(helm, charts, "kube-prometheus-stack", values, work)
    path = work / "alertmanager.yaml"
    path.write_bytes(base64.b64decode(rendered[SECRET]["data"]["alertmanager.yaml"]))
    return path


def _amtool_run(amtool: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(amtool), *args], capture_output=True, text=True, check=False, timeout=60)


def test_the_rendered_configuration_passes_amtool(amtool: Path, config_file: Path) -> None:
    proc = _amtool_run(amtool, "check-config", str(config_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=Watchdog", "severity=none"], "null"),
        (["alertname=InfoInhibitor", "severity=none"], "null"),
        (["alertname=FilewcountUnavailable", "namespace=filewcount", "severity=critical"], "inbox"),
        (["alertname=FluxReconciliationFailing", "namespace=monitoring", "severity=warning"], "inbox"),
        # notification-controller's alerts: Flux<Kind><Reason>, severity error.
        (["alertname=FluxKustomizationHealthCheckFailed", "namespace=flux-system", "severity=error"], "inbox"),
    ],
)
def test_alerts_are_routed_to_the_inbox_except_the_heartbeats(
    amtool: Path, config_file: Path, labels: list[str], receiver: str
) -> None:
    proc = _amtool_run(amtool, "config", "routes", "test", f"--config.file={config_file}", *labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == [receiver]


def test_flux_error_events_reach_alertmanager_from_every_namespace_of_the_tree(schemas: Path) -> None:
    """The Alert covers every namespace that holds a Flux object of the tree, and its Provider is Alertmanager."""
    for sync_path in ("kube/clusters/kind", "kube/clusters/eks"):
        tree = validate.load_tree(ROOT, schemas, sync_path)
        objects = list(tree.flux_objects())
        (alert,) = [o for o in objects if o.kind == "Alert"]
        (provider,) = [o for o in objects if o.kind == "Provider"]
        assert alert.spec["providerRef"] == {"name": provider.name} and alert.namespace == provider.namespace
        assert alert.spec["eventSeverity"] == "error"
        assert provider.spec["type"] == "alertmanager"
        assert provider.spec["address"] == (
            "http://kube-prometheus-stack-alertmanager.monitoring.svc.cluster.local:9093/api/v2/alerts/"
        )
        sources = {(s["kind"], s["namespace"]) for s in alert.spec["eventSources"] if s["name"] == "*"}
        watched = {"GitRepository", "Kustomization", "HelmRelease", "HelmRepository"}
        held = {(o.kind, o.namespace) for o in objects if o.kind in watched and o.group.endswith(".toolkit.fluxcd.io")}
        # The root sync objects (flux-system) are made by bootstrap, not by the tree.
        held |= {("GitRepository", "flux-system"), ("Kustomization", "flux-system")}
        assert held == sources, f"{sync_path}: Flux objects outside the Alert's sources: {held - sources}"


def _doc_receivers() -> list[dict]:
    """The ```yaml blocks of docs/alerting.md that start with `# receivers:` (examples of integrations)."""
    blocks = re.findall(r"```yaml\n(# receivers:.*?)```", DOC.read_text(), re.DOTALL)
    assert blocks, "docs/alerting.md shows no receiver example"
    return [yaml.safe_load(block) for block in blocks]


def test_the_documented_receivers_pass_amtool(amtool: Path, config_file: Path, tmp_path: Path) -> None:
    """Each example of docs/alerting.md, put in place of the inbox receiver, is a valid configuration."""
    for example in _doc_receivers():
        config = yaml.safe_load(config_file.read_text())
        (inbox,) = example["receivers"]
        assert inbox["name"] == "inbox"
        config["receivers"] = [r for r in config["receivers"] if r["name"] != "inbox"] + [inbox]
        path = tmp_path / "alertmanager.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = _amtool_run(amtool, "check-config", str(path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
