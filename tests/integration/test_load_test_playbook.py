"""playbooks/load_test.yml for real: ansible-playbook runs Debian's ab against a Python test server on 127.0.0.1.

HPA sampling is off (no cluster here); molecule/default samples the harness's real HPA. The test
checks the report directory: results.json, report.md, chart.png, ab's stdout and its -e/-g files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import parse_gnuplot, parse_stdout
from tests.unit import ab_servers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        ab_servers.ab_path() is None,
        reason="ab is not installed (apt-get install apache2-utils) so the load test cannot run",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "load_test.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def play(state_dir: Path, extra_vars: dict, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, FILEWCOUNT_STATE_DIR=str(state_dir), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    argv = [str(ANSIBLE_PLAYBOOK), str(PLAYBOOK), "-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def report_dirs(state_dir: Path) -> list[Path]:
    base = state_dir / "load-tests"
    return sorted(base.iterdir()) if base.exists() else []


def test_load_test_writes_the_report(tmp_path):
    with ab_servers.serve("normal") as url:
        proc = play(
            tmp_path,
            {
                "load_test_url": url,
                "load_test_sample_hpa": False,
                "load_test_requests": 1500,
                "load_test_concurrency": 10,
                "load_test_thresholds": {"max_failed_requests": 0, "max_non_2xx": 0},
            },
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    [report_dir] = report_dirs(tmp_path)
    assert report_dir.name.endswith("Z")
    expected = {"results.json", "report.md", "chart.png", "ab-stdout.txt", "percentiles.csv", "gnuplot.tsv"}
    assert {path.name for path in report_dir.iterdir()} == expected

    results = json.loads((report_dir / "results.json").read_text())
    assert results["url"] == url
    assert results["passed"] is True
    assert results["report"]["complete_requests"] == 1500
    assert results["report"]["failed_requests"] == 0
    assert results["cmd"][1:5] == ["-n", "1500", "-c", "10"]
    assert results["hpa"]["samples"] == 0
    assert results["samples"] == []
    assert len(results["percentages_ms"]) == 101
    per_second = results["timeline"]["per_second"]
    assert sum(entry["requests"] for entry in per_second) == 1500
    # The saved files are ab's own and parse to the same numbers.
    assert parse_stdout((report_dir / "ab-stdout.txt").read_text()) == results["report"]
    assert parse_gnuplot((report_dir / "gnuplot.tsv").read_text()) == results["timeline"]

    markdown = (report_dir / "report.md").read_text()
    assert "| Complete requests | 1500 |" in markdown
    assert "The HPA was not sampled" in markdown
    assert "![requests, latency and replicas over time](chart.png)" in markdown
    chart = (report_dir / "chart.png").read_bytes()
    assert chart.startswith(PNG_SIGNATURE)
    assert len(chart) > 10_000
    assert "Report: " + str(report_dir) in proc.stdout


def test_broken_threshold_fails_after_writing_the_report(tmp_path):
    with ab_servers.serve("mixed") as url:
        proc = play(
            tmp_path,
            {
                "load_test_url": url,
                "load_test_sample_hpa": False,
                "load_test_requests": 150,
                "load_test_concurrency": 5,
                "load_test_thresholds": {"max_non_2xx": 0},
            },
        )
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "The number of non-2xx responses was 50, above max_non_2xx 0" in proc.stdout
    [report_dir] = report_dirs(tmp_path)
    results = json.loads((report_dir / "results.json").read_text())
    assert results["passed"] is False
    assert [item["name"] for item in results["broken_thresholds"]] == ["max_non_2xx"]


def test_connection_refused_is_abs_reason(tmp_path):
    proc = play(
        tmp_path,
        {
            "load_test_url": ab_servers.closed_port_url(),
            "load_test_sample_hpa": False,
            "load_test_requests": 5,
            "load_test_concurrency": 1,
        },
    )
    assert proc.returncode == 2
    assert "nothing accepts connections at http://127.0.0.1:" in proc.stdout


def test_scale_up_assertion_needs_sampling(tmp_path):
    proc = play(tmp_path, {"load_test_sample_hpa": False, "load_test_assert_scaled_up": True})
    assert proc.returncode == 2
    assert "load_test_assert_scaled_up needs the HPA samples" in proc.stdout
    assert report_dirs(tmp_path) == []


def test_check_mode_sends_no_load(tmp_path):
    with ab_servers.serve("normal") as url:
        proc = play(tmp_path, {"load_test_url": url, "load_test_sample_hpa": False}, check=True)
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert "no load was sent" in proc.stdout
    assert "ab -n 10000 -c 100" in proc.stdout
    assert report_dirs(tmp_path) == []


def test_saved_report_parses_with_the_filters(tmp_path):
    with ab_servers.serve("keepalive") as url:
        proc = play(
            tmp_path,
            {
                "load_test_url": url,
                "load_test_sample_hpa": False,
                "load_test_requests": 200,
                "load_test_concurrency": 4,
                "load_test_keep_alive": True,
            },
        )
    assert proc.returncode == 0, proc.stdout[-3000:]
    [report_dir] = report_dirs(tmp_path)
    expression = (
        "{{ (lookup('ansible.builtin.file', dir ~ '/ab-stdout.txt') | filewcount.gitops.ab_parse).keep_alive_requests"
        " }}/{{ (lookup('ansible.builtin.file', dir ~ '/gnuplot.tsv') | filewcount.gitops.ab_parse_gnuplot).requests"
        " }}/{{ (lookup('ansible.builtin.file', dir ~ '/percentiles.csv') | filewcount.gitops.ab_parse_csv) | length }}"
    )
    adhoc = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK.with_name("ansible")),
            "localhost",
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={expression}",
            "-e",
            json.dumps({"dir": str(report_dir)}),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert adhoc.returncode == 0, adhoc.stdout + adhoc.stderr
    assert "200/200/101" in adhoc.stdout
