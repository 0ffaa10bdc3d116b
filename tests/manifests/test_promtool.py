"""Every PrometheusRule passes ``promtool check rules``, and the tree's alerts pass ``promtool test rules`` (issue 18).

promtool is the real one of the chart's Prometheus (kube-prometheus-stack 88.5.3: v3.14.0, Go module
github.com/prometheus/prometheus v0.314.0), built by tests/harness/build-testbin.sh and found through the harness's
``binary("promtool")``. For the kind tree and the EKS tree:

- each PrometheusRule of the tree, its spec written to a rule file as prometheus-operator writes it, passes
  ``promtool check rules`` with lint errors fatal (a duplicate rule fails);
- each PrometheusRule the kube-prometheus-stack chart renders from the tree's values (``helm template`` with the
  harness's Helm), the cluster's alerts about nodes, pods and volumes among them, passes ``promtool check rules``. Its
  lint warning (one recording rule of kube-apiserver-availability.rules twice, upstream) is reported, not fatal;
- each file of the tree that holds PrometheusRules has a unit test file promtool/<file stem>.test.yaml. The groups the
  tree renders from that file are written next to a copy of it, under the file's name, for ``promtool test rules``:
  the tree is the only copy of the rules. Every alert has a case where it fires and one where it stays quiet.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

import cluster as harness
import test_eks_overlay as eks_overlay
import validate

ROOT = validate.REPO_ROOT
TREES = ("kube/clusters/kind", "kube/clusters/eks")
UNIT_TESTS = Path(__file__).resolve().parent / "promtool"
UNIT_TEST_SUFFIX = ".test.yaml"
CHART = "kube-prometheus-stack"
# The chart's defaultRules that stand for "the cluster" in issue 18 (nodes, pods, volumes); the tree adds none.
CLUSTER_ALERTS = {
    "KubeNodeNotReady",
    "NodeFilesystemSpaceFillingUp",
    "KubePodCrashLooping",
    "KubePersistentVolumeFillingUp",
}


@pytest.fixture(scope="module")
def trees(schemas: Path) -> dict[str, validate.Tree]:
    return {sync_path: validate.load_tree(ROOT, schemas, sync_path) for sync_path in TREES}


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------
def prometheus_rules(tree: validate.Tree) -> list[validate.Obj]:
    return [o for o in tree.all_objects() if o.group == "monitoring.coreos.com" and o.kind == "PrometheusRule"]


def rule_files(tree: validate.Tree) -> dict[str, dict[str, Any]]:
    """The tree's files that hold PrometheusRules (repository-relative) -> the rule file they become: the groups of
    their PrometheusRules' specs, as the tree renders them."""
    files: dict[str, dict[str, Any]] = {}
    for obj in prometheus_rules(tree):
        files.setdefault(obj.origin, {"groups": []})["groups"] += copy.deepcopy(obj.spec.get("groups") or [])
    return files


def alerts_of(spec: dict[str, Any]) -> set[str]:
    return {rule["alert"] for group in spec.get("groups") or [] for rule in group.get("rules") or [] if "alert" in rule}


def _run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def _failure(what: str, proc: subprocess.CompletedProcess) -> str:
    output = (proc.stdout + proc.stderr).strip()
    return f"{what} exited {proc.returncode}:\n{textwrap.indent(output, '    ')}"


def check_rules(promtool: Path, rules: dict[str, dict[str, Any]], work: Path, *, lint_fatal: bool = True) -> list[str]:
    """``promtool check rules`` on each rule file (what it is -> its content); one readable problem per file it
    rejects, empty when it accepts them all."""
    problems = []
    work.mkdir(parents=True, exist_ok=True)
    for index, (what, spec) in enumerate(rules.items()):
        path = work / f"rules-{index}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        argv: list[str | Path] = [promtool, "check", "rules", *(["--lint-fatal"] if lint_fatal else []), path]
        proc = _run(argv, work)
        if proc.returncode != 0:
            problems.append(_failure(f"{what}: `promtool check rules`", proc))
    return problems


def unit_test_file(origin: str) -> Path:
    return UNIT_TESTS / (Path(origin).stem + UNIT_TEST_SUFFIX)


def run_unit_tests(promtool: Path, origin: str, spec: dict[str, Any], work: Path) -> str | None:
    """``promtool test rules`` of promtool/<stem>.test.yaml against the rule file ``spec`` of the tree's ``origin``
    file; None when every case passes, else what failed."""
    test_file = unit_test_file(origin)
    if not test_file.is_file():
        return f"{origin} holds PrometheusRules but has no unit test file: add {test_file.relative_to(ROOT)}."
    wanted = [Path(origin).name]
    named = (yaml.safe_load(test_file.read_text(encoding="utf-8")) or {}).get("rule_files")
    if named != wanted:
        return f"{test_file.relative_to(ROOT)}: rule_files must be {wanted} (the rules of {origin}), not {named}."
    work.mkdir(parents=True, exist_ok=True)
    (work / Path(origin).name).write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    shutil.copy(test_file, work / test_file.name)
    proc = _run([promtool, "test", "rules", test_file.name], work)
    if proc.returncode != 0:
        return _failure(f"{origin}: `promtool test rules {test_file.relative_to(ROOT)}`", proc)
    return None


def coverage_problems(origin: str, spec: dict[str, Any], test_doc: dict[str, Any]) -> list[str]:
    """Each alert of the rule file has a case where it fires (exp_alerts) and one where it stays quiet (none), and the
    test file expects no alert the rule file lacks."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in test_doc.get("tests") or []:
        for check in case.get("alert_rule_test") or []:
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = alerts_of(spec)
    test_file = unit_test_file(origin).relative_to(ROOT)
    problems = [
        f"{test_file}: no case where {name} fires (exp_alerts), for {origin}" for name in sorted(alerts - fired)
    ]
    problems += [f"{test_file}: no case where {name} stays quiet (exp_alerts: [])" for name in sorted(alerts - quiet)]
    problems += [
        f"{test_file}: tests {name}, which {origin} does not define" for name in sorted((fired | quiet) - alerts)
    ]
    return problems


# ----------------------------------------------------------------------------------------------------------------
# promtool check rules
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sync_path", TREES)
def test_the_tree_rules_pass_promtool_check(
    promtool: Path, trees: dict[str, validate.Tree], sync_path: str, tmp_path: Path
) -> None:
    rules = {obj.ref(): obj.spec for obj in prometheus_rules(trees[sync_path])}
    assert len(rules) >= 2, f"{sync_path}: expected the filewcount and flux PrometheusRules, found {sorted(rules)}"
    assert check_rules(promtool, rules, tmp_path) == []


@pytest.mark.parametrize("sync_path", TREES)
def test_the_chart_rules_pass_promtool_check(
    promtool: Path, trees: dict[str, validate.Tree], sync_path: str, tmp_path: Path
) -> None:
    """The chart's PrometheusRules, rendered with the tree's values: its defaultRules are the cluster's alerts."""
    charts = Path(os.environ.get("FILEWCOUNT_CHARTS_DIR") or ROOT.parent / "shared" / "charts")
    try:
        helm = harness.binary("helm")
    except harness.HarnessError as exc:
        pytest.skip(f"the harness's Helm is not built: {exc}")
    if not (charts / eks_overlay.CHARTS[CHART][0]).is_dir():
        pytest.skip(f"the chart sources are missing in {charts} (FILEWCOUNT_CHARTS_DIR)")
    tree = trees[sync_path]
    rendered = eks_overlay._render(helm, charts, CHART, copy.deepcopy(eks_overlay._values(tree, CHART)), tmp_path)
    rules = {
        f"PrometheusRule {namespace}/{name} (chart {eks_overlay.CHARTS[CHART][0]}, values of {sync_path})": doc["spec"]
        for (kind, namespace, name), doc in sorted(rendered.items())
        if kind == "PrometheusRule"
    }
    assert len(rules) > 10, sorted(rules)
    assert check_rules(promtool, rules, tmp_path / "rules", lint_fatal=False) == []
    chart_alerts = set().union(*(alerts_of(spec) for spec in rules.values()))
    assert chart_alerts >= CLUSTER_ALERTS
    tree_alerts = set().union(*(alerts_of(spec) for spec in rule_files(tree).values()))
    assert not tree_alerts & chart_alerts, "the tree repeats alerts of the chart's defaultRules"


@pytest.mark.parametrize(
    ("rules", "complaint"),
    [
        ({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(rate(x[5m])"}]}]}, "parse error"),
        (
            {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "annotations": {"s": "{{ $x"}}]}]},
            "template",
        ),
        ({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "fro": "5m"}]}]}, "field fro not found"),
        (
            {"groups": [{"name": "g", "rules": [{"record": "r", "expr": "up"}, {"record": "r", "expr": "up"}]}]},
            "duplicate",
        ),
    ],
    ids=["promql", "annotation-template", "unknown-field", "duplicate-rule"],
)
def test_check_reports_a_broken_rule_file(
    promtool: Path, tmp_path: Path, rules: dict[str, Any], complaint: str
) -> None:
    problems = check_rules(promtool, {"PrometheusRule monitoring/broken (x.yaml)": rules}, tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith("PrometheusRule monitoring/broken (x.yaml): `promtool check rules` exited ")
    assert complaint in problems[0]


# ----------------------------------------------------------------------------------------------------------------
# promtool test rules
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sync_path", TREES)
def test_the_tree_alerts_pass_their_unit_tests(
    promtool: Path, trees: dict[str, validate.Tree], sync_path: str, tmp_path: Path
) -> None:
    files = rule_files(trees[sync_path])
    assert files, f"{sync_path} holds no PrometheusRule"
    failures = [run_unit_tests(promtool, origin, spec, tmp_path / Path(origin).stem) for origin, spec in files.items()]
    assert [f for f in failures if f] == []


@pytest.mark.parametrize("sync_path", TREES)
def test_every_alert_has_a_firing_and_a_quiet_case(trees: dict[str, validate.Tree], sync_path: str) -> None:
    """Alert names in the tree == alert names with exp_alerts in the unit tests, so a new alert without a test fails."""
    problems = []
    for origin, spec in rule_files(trees[sync_path]).items():
        test_file = unit_test_file(origin)
        if not test_file.is_file():
            problems.append(f"{origin} holds PrometheusRules but has no unit test file {test_file.relative_to(ROOT)}")
            continue
        problems += coverage_problems(origin, spec, yaml.safe_load(test_file.read_text(encoding="utf-8")))
    assert problems == []


def test_every_unit_test_file_belongs_to_a_rule_file(trees: dict[str, validate.Tree]) -> None:
    origins = {origin for tree in trees.values() for origin in rule_files(tree)}
    assert len({Path(origin).name for origin in origins}) == len(origins), f"two rule files share a name: {origins}"
    expected = {unit_test_file(origin).name for origin in origins}
    assert {p.name for p in UNIT_TESTS.iterdir()} == expected


def test_unit_tests_report_a_changed_rule(promtool: Path, trees: dict[str, validate.Tree], tmp_path: Path) -> None:
    """A rule that fires later than its tests expect makes ``promtool test rules`` fail, and the report says so."""
    files = rule_files(trees[TREES[0]])
    origin = next(o for o, spec in files.items() if "FilewcountUnavailable" in alerts_of(spec))
    spec = copy.deepcopy(files[origin])
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "FilewcountUnavailable":
                rule["for"] = "30m"
    failure = run_unit_tests(promtool, origin, spec, tmp_path)
    assert failure is not None
    assert failure.startswith(f"{origin}: `promtool test rules tests/manifests/promtool/")
    assert "alertname: FilewcountUnavailable" in failure


def test_coverage_reports_an_alert_without_cases(trees: dict[str, validate.Tree]) -> None:
    files = rule_files(trees[TREES[0]])
    origin = next(o for o, spec in files.items() if "FluxResourceSuspended" in alerts_of(spec))
    spec = copy.deepcopy(files[origin])
    spec["groups"][0]["rules"].append({"alert": "FluxNew", "expr": "vector(1)"})
    test_doc = yaml.safe_load(unit_test_file(origin).read_text(encoding="utf-8"))
    for case in test_doc["tests"]:
        case["alert_rule_test"] = [
            c for c in case["alert_rule_test"] if c["alertname"] != "FluxResourceSuspended" or c.get("exp_alerts")
        ]
    test_doc["tests"][0]["alert_rule_test"].append({"eval_time": "1m", "alertname": "FluxGone", "exp_alerts": []})
    test_file = unit_test_file(origin).relative_to(ROOT)
    assert coverage_problems(origin, spec, test_doc) == [
        f"{test_file}: no case where FluxNew fires (exp_alerts), for {origin}",
        f"{test_file}: no case where FluxNew stays quiet (exp_alerts: [])",
        f"{test_file}: no case where FluxResourceSuspended stays quiet (exp_alerts: [])",
        f"{test_file}: tests FluxGone, which {origin} does not define",
    ]
