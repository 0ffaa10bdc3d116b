"""Tests of the ab_load_job module: main() with patched arguments; the log is the Job's script run here for real."""

from __future__ import annotations

import json
import subprocess

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_job import job_manifest
from ansible_collections.filewcount.gitops.plugins.modules import ab_load_job
from tests.unit import ab_servers

AB = ab_servers.ab_path()
needs_ab = pytest.mark.skipif(AB is None, reason="ab (apache2-utils) is not installed")
JOB = {"name": "filewcount-load-test-x", "namespace": "filewcount", "image": "httpd:2.4.69-alpine"}


def run_module(capsys, args: dict, check_mode: bool = False) -> dict:
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        ab_load_job.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("check_mode", [False, True])
def test_without_a_log_it_returns_the_job_in_and_out_of_check_mode(capsys, check_mode):
    args = {**JOB, "requests": 100, "concurrency": 10, "deadline": 120, "ttl": 60, "run_as_user": 82}
    result = run_module(capsys, args, check_mode=check_mode)
    assert result["changed"] is False
    assert result["cmd"] == [
        "/usr/local/apache2/bin/ab",
        "-n",
        "100",
        "-c",
        "10",
        "-e",
        "percentiles.csv",
        "-g",
        "gnuplot.tsv",
        "http://filewcount.filewcount.svc.cluster.local/",
    ]
    job = result["job"]
    assert job["metadata"]["name"] == "filewcount-load-test-x" and job["metadata"]["namespace"] == "filewcount"
    assert job["spec"]["activeDeadlineSeconds"] == 120 and job["spec"]["ttlSecondsAfterFinished"] == 60
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == result["cmd"]


def test_an_invalid_option_fails_with_one_sentence(capsys):
    result = run_module(capsys, {**JOB, "requests": 5, "concurrency": 10})
    assert result["failed"] is True
    assert result["msg"] == (
        "concurrency 10 is greater than requests 5, which ab refuses; lower concurrency or raise requests."
    )


def container_log(cmd: list, tmp_path) -> str:
    """Run the Job's command as its container would; stdout and stderr merged as in a container log."""
    job = job_manifest("j", "ns", "image", cmd, deadline_s=60, ttl_s=60)
    container = job["spec"]["template"]["spec"]["containers"][0]
    return subprocess.run(
        [*container["command"], *cmd],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    ).stdout


@needs_ab
def test_the_log_is_parsed_into_the_local_result(capsys, tmp_path):
    with ab_servers.serve("normal") as url:
        args = {**JOB, "url": url, "ab_path": AB, "requests": 100, "concurrency": 4}
        described = run_module(capsys, args)
        log = container_log(described["cmd"], tmp_path)
    result = run_module(capsys, {**args, "log": log, "thresholds": {"max_failed_requests": 0}})
    assert result["changed"] is False and result["passed"] is True
    assert result["report"]["complete_requests"] == 100
    assert result["timeline"]["requests"] == 100
    assert "95" in result["percentages_ms"]


@needs_ab
def test_ab_failing_in_the_job_names_the_job_and_abs_reason(capsys, tmp_path):
    url = ab_servers.closed_port_url()
    args = {**JOB, "url": url, "ab_path": AB, "requests": 3, "concurrency": 1}
    log = container_log(run_module(capsys, args)["cmd"], tmp_path)
    result = run_module(capsys, {**args, "log": log})
    assert result["failed"] is True
    assert result["msg"].startswith("The load-test Job filewcount/filewcount-load-test-x failed: ab exited with code")
    assert "Connection refused" in result["msg"]


def test_a_log_that_is_not_the_scripts_names_its_last_line(capsys):
    result = run_module(capsys, {**JOB, "requests": 3, "log": "exec /bin/sh: exec format error\n"})
    assert result["failed"] is True
    assert "(last line: 'exec /bin/sh: exec format error')" in result["msg"]
