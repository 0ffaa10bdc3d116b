"""Tests of the cluster_check module: its main() with patched arguments (the checks themselves: module_utils tests)."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.module_utils import cluster_check as cc
from ansible_collections.filewcount.gitops.plugins.modules import cluster_check


def run_module(capsys, args: dict) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        cluster_check.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_missing_kubeconfig_fails_with_its_sentence_in_and_out_of_check_mode(tmp_path, capsys, check_mode):
    path = tmp_path / "absent"
    result = run_module(capsys, {"kubeconfig": str(path), "_ansible_check_mode": check_mode})
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["msg"] == result["failures"][0]
    assert result["msg"].startswith(f"The kubeconfig {path} does not exist: ")
    assert result["checks"] == [
        {"name": "kubeconfig", "ok": False, "skipped": False, "message": result["msg"], "warning": ""}
    ]


def test_warnings_are_module_warnings(tmp_path, capsys, monkeypatch):
    report = cc.Report(advice=["Kubernetes v1.37.0 on context c is newer than Flux v2.9.4 was tested with."])
    monkeypatch.setattr(cc, "run_checks", lambda desired: report)
    result = run_module(capsys, {"kubeconfig": str(tmp_path / "k")})
    assert result.get("failed") is not True
    assert result["advice"] == report.advice
    assert [w["event"]["msg"] for w in result["warnings"]] == report.advice  # ansible-core 2.19 WarningSummary


def test_a_bad_table_fails_before_any_request(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cc, "run_checks", lambda desired: pytest.fail("must not run"))
    result = run_module(capsys, {"kubeconfig": str(tmp_path / "k"), "flux_kubernetes_versions": ["latest"]})
    assert result["failed"] is True
    assert result["msg"] == (
        "Cluster preflight could not run: 'latest' is not a Kubernetes version; write it like 1.35.2."
    )
