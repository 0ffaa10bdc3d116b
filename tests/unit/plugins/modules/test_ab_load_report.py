"""Tests of the ab_load_report module's main() with patched arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import parse_gnuplot, parse_stdout
from ansible_collections.filewcount.gitops.plugins.modules import ab_load_report

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ab"


def run_module(capsys, args: dict, check_mode: bool = False) -> dict:
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        ab_load_report.main()
    return json.loads(capsys.readouterr().out)


def arguments(dest: Path) -> dict:
    timeline = parse_gnuplot((FIXTURES / "normal.tsv").read_text())
    return {
        "dest": str(dest),
        "load_test": {
            "report": parse_stdout((FIXTURES / "normal.stdout").read_text()),
            "timeline": timeline,
            "passed": True,
            "broken_thresholds": [],
            "cmd": ["ab", "-n", "200", "-c", "10", "http://x/"],
        },
        "samples": [
            {
                "time": timeline["start_epoch_s"],
                "hpa_status": {"currentReplicas": 3, "desiredReplicas": 4},
                "pods_total": 3,
                "pods_running": 3,
            }
        ],
        "url": "http://x/",
        "chart": False,
    }


def test_check_mode_then_write_then_unchanged(capsys, tmp_path):
    dest = tmp_path / "r"
    planned = run_module(capsys, arguments(dest), check_mode=True)
    assert planned["changed"] is True
    assert not dest.exists()
    first = run_module(capsys, arguments(dest))
    assert first["changed"] is True
    assert first["hpa"]["scaled_up"] is True
    assert Path(first["files"]["results.json"]).is_file()
    assert "chart.png" not in first["files"]
    again = run_module(capsys, arguments(dest))
    assert again["changed"] is False


def test_load_test_from_check_mode_is_refused(capsys, tmp_path):
    args = arguments(tmp_path / "r")
    args["load_test"] = {"report": None, "cmd": ["ab"], "passed": None}
    result = run_module(capsys, args)
    assert result["failed"] is True
    assert "outside check mode" in result["msg"]
