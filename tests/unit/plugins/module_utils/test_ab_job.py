"""Tests for plugins/module_utils/ab_job.py: the load-test Job's manifest and its pod's log read back.

The logs are real: the Job's own shell script runs here with /bin/sh and ab against tests/unit/ab_servers.py, in a
temporary working directory as the container's /work, its stdout and stderr merged as a container log is.
"""

from __future__ import annotations

import base64
import gzip
import subprocess

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_job import (
    CSV_MARK,
    GNUPLOT_MARK,
    JOB_LABEL,
    STDERR_MARK,
    AbJobError,
    job_argv,
    job_manifest,
    job_outcome,
    job_script,
    split_log,
)
from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import AbRunError, build_argv
from tests.unit import ab_servers

AB = ab_servers.ab_path()
needs_ab = pytest.mark.skipif(AB is None, reason="ab (apache2-utils) is not installed")
OPTIONS = {"requests": 200, "concurrency": 5, "time_limit": None, "keep_alive": False, "socket_timeout": 5}


def container_log(argv: list, workdir) -> tuple[int, str]:
    """Run the Job's command as the container would and return its exit code and merged log."""
    manifest = job_manifest("j", "ns", "image", argv, deadline_s=60, ttl_s=60)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    proc = subprocess.run(
        [*container["command"], *container["args"]],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout


def test_the_job_runs_abs_argv_once_as_a_non_root_user_with_bounds():
    argv = job_argv("http://filewcount.filewcount.svc.cluster.local/", "/usr/local/apache2/bin/ab", OPTIONS)
    job = job_manifest(
        "filewcount-load-test-20260101t000000z",
        "filewcount",
        "httpd:2.4.69-alpine",
        argv,
        deadline_s=900,
        ttl_s=600,
        resources={"limits": {"cpu": "2"}},
        run_as_user=82,
    )
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == JOB_LABEL
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == JOB_LABEL
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (0, 900, 600)
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 82
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"] == {"limits": {"cpu": "2"}}
    assert container["image"] == "httpd:2.4.69-alpine"
    # ab's argv is the script's positional parameters, the same flags the local mode builds.
    assert container["command"] == ["/bin/sh", "-c", job_script(), JOB_LABEL]
    assert container["args"] == build_argv(
        "http://filewcount.filewcount.svc.cluster.local/",
        ab_path="/usr/local/apache2/bin/ab",
        csv_file="percentiles.csv",
        gnuplot_file="gnuplot.tsv",
        **OPTIONS,
    )


def test_without_a_user_the_image_must_name_a_non_root_one():
    job = job_manifest("j", "ns", "image", ["ab", "http://x/"], deadline_s=1, ttl_s=1)
    security = job["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and "runAsUser" not in security


@needs_ab
def test_a_real_container_log_gives_the_local_outcome(tmp_path):
    with ab_servers.serve("normal") as url:
        argv = job_argv(url, AB, OPTIONS)
        rc, log = container_log(argv, tmp_path)
    assert rc == 0, log
    for mark in (STDERR_MARK, CSV_MARK, GNUPLOT_MARK):
        assert log.count(mark) == 1
    result = job_outcome(log, argv, url, {"max_failed_requests": 0})
    assert result["cmd"] == argv and result["rc"] == 0
    assert result["report"]["complete_requests"] == 200
    assert result["report"]["failed_requests"] == 0
    assert set(result["percentages_ms"]) >= {"50", "95", "99"}
    assert result["timeline"]["requests"] == 200
    assert result["passed"] is True and result["broken_thresholds"] == []
    assert "Completed 100 requests" in result["stderr"]
    assert STDERR_MARK not in result["stdout"]


@needs_ab
def test_ab_failing_in_the_container_is_one_sentence_with_its_reason(tmp_path):
    url = ab_servers.closed_port_url()
    argv = job_argv(url, AB, {**OPTIONS, "requests": 5, "concurrency": 1})
    rc, log = container_log(argv, tmp_path)
    assert rc != 0
    with pytest.raises(AbRunError, match=r"^ab exited with code \d+ \(.*Connection refused.*\): nothing accepts"):
        job_outcome(log, argv, url)


@needs_ab
def test_a_broken_threshold_is_reported_not_raised(tmp_path):
    with ab_servers.serve("non2xx") as url:
        argv = job_argv(url, AB, OPTIONS)
        _rc, log = container_log(argv, tmp_path)
    result = job_outcome(log, argv, url, {"max_non_2xx": 0})
    assert result["passed"] is False
    assert [item["name"] for item in result["broken_thresholds"]] == ["max_non_2xx"]


def _log(stdout="out\n", stderr="err", csv="Percentage served,Time in ms\n", gnuplot=None, rc="0"):
    encoded = base64.b64encode(gzip.compress(gnuplot.encode())).decode() if gnuplot else ""
    return (
        f"{stdout}{STDERR_MARK}\n{stderr}\n{CSV_MARK}\n{csv}{GNUPLOT_MARK}\n{encoded}\n"
        f"===== filewcount-load-test: end, ab exit code {rc} =====\n"
    )


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (_log(), ("out\n", "err\n", "Percentage served,Time in ms\n", None, 0)),
        (_log(csv="", rc="22"), ("out\n", "err\n", None, None, 22)),
        (
            _log(gnuplot="starttime\tseconds\n"),
            ("out\n", "err\n", "Percentage served,Time in ms\n", "starttime\tseconds\n", 0),
        ),
        (_log(stdout="a\r\nb\n"), ("a\nb\n", "err\n", "Percentage served,Time in ms\n", None, 0)),
    ],
)
def test_split_log(log, expected):
    parts = split_log(log)
    assert (parts.stdout, parts.stderr, parts.csv_text, parts.gnuplot_text, parts.rc) == expected


@pytest.mark.parametrize(
    ("log", "last"),
    [
        ("", "(empty log)"),
        ("exec /bin/sh: no such file or directory\n", "exec /bin/sh: no such file or directory"),
        (f"This is ApacheBench\n{STDERR_MARK}\nkilled\n", "killed"),
    ],
)
def test_a_log_without_the_end_marker_names_its_last_line(log, last):
    with pytest.raises(AbJobError, match=r"^The load-test pod's log ends before the script's end marker \(last line: "):
        split_log(log)
    with pytest.raises(AbJobError) as caught:
        split_log(log)
    assert repr(last) in str(caught.value)


def test_gnuplot_data_that_is_not_gzip_is_one_sentence():
    log = _log().replace(f"{GNUPLOT_MARK}\n\n", f"{GNUPLOT_MARK}\nbm90IGd6aXA=\n")
    with pytest.raises(AbJobError, match=r"^The -g data in the load-test pod's log is not gzip in base64"):
        split_log(log)
