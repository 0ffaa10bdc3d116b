"""Tests of the ab_load_test module: main() with patched arguments, ab mocked at run_command or run for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.modules import ab_load_test
from tests.unit import ab_servers

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ab"
needs_ab = pytest.mark.skipif(
    ab_servers.ab_path() is None, reason="ab is not installed (apt-get install apache2-utils) so no live ab run"
)


def fixture(name: str, kind: str) -> str:
    return (FIXTURES / f"{name}.{kind}").read_text(encoding="utf-8")


def run_module(capsys, args: dict, check_mode: bool = False) -> dict:
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        ab_load_test.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def fake_ab(monkeypatch, tmp_path):
    """Replace ab with a recorded run: run_command returns a fixture's rc, stdout and stderr."""
    calls = []
    executable = tmp_path / "ab"
    executable.write_text("#!/bin/sh\nexit 99\n")
    executable.chmod(0o755)

    def use(name: str):
        def run_command(self, argv, check_rc=False, **kwargs):
            calls.append(argv)
            return int(fixture(name, "rc")), fixture(name, "stdout"), fixture(name, "stderr")

        monkeypatch.setattr(AnsibleModule, "run_command", run_command)
        return str(executable)

    use.calls = calls
    return use


def test_check_mode_sends_no_load(capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("run_command must not be called in check mode")

    monkeypatch.setattr(AnsibleModule, "run_command", refuse)
    result = run_module(capsys, {"url": "http://127.0.0.1:9/", "requests": 10, "concurrency": 2}, check_mode=True)
    assert result["changed"] is False
    assert "no load was sent" in result["msg"]
    assert result["cmd"] == ["ab", "-n", "10", "-c", "2", "http://127.0.0.1:9/"]
    assert result["report"] is None
    assert result["passed"] is None


def test_check_mode_still_rejects_bad_options(capsys):
    result = run_module(capsys, {"requests": 1, "concurrency": 5}, check_mode=True)
    assert result["failed"] is True
    assert "greater than requests" in result["msg"]


def test_passing_run_returns_report_and_is_not_changed(capsys, fake_ab):
    ab = fake_ab("normal")
    result = run_module(
        capsys,
        {
            "url": "http://localhost:8080/",
            "requests": 200,
            "concurrency": 10,
            "ab_path": ab,
            "thresholds": {"max_failed_requests": 0, "max_non_2xx": 0},
        },
    )
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert result["passed"] is True
    assert result["broken_thresholds"] == []
    assert result["report"]["complete_requests"] == 200
    assert fake_ab.calls == [[ab, "-n", "200", "-c", "10", "http://localhost:8080/"]]


def test_broken_thresholds_fail_with_one_sentence_each(capsys, fake_ab):
    ab = fake_ab("mixed")
    result = run_module(
        capsys,
        {
            "requests": 150,
            "concurrency": 5,
            "ab_path": ab,
            "thresholds": {"max_failed_requests": 0, "max_non_2xx": 0, "max_p95_ms": 10000},
        },
    )
    assert result["failed"] is True
    assert result["passed"] is False
    assert [item["name"] for item in result["broken_thresholds"]] == ["max_failed_requests", "max_non_2xx"]
    assert result["msg"] == " ".join(item["message"] for item in result["broken_thresholds"])
    assert result["msg"].count("; ") == 2
    assert result["report"]["non_2xx_responses"] == 50


def test_broken_thresholds_can_be_left_to_the_play(capsys, fake_ab):
    ab = fake_ab("mixed")
    result = run_module(
        capsys,
        {
            "requests": 150,
            "concurrency": 5,
            "ab_path": ab,
            "fail_on_thresholds": False,
            "thresholds": {"max_non_2xx": 0},
        },
    )
    assert result.get("failed") is not True
    assert result["passed"] is False
    assert result["broken_thresholds"][0]["actual"] == 50


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("refused", "nothing accepts connections"),
        ("reset", "after 19 completed requests"),
        ("timeout", "raise socket_timeout"),
    ],
)
def test_ab_failure_reports_abs_reason(capsys, fake_ab, name, words):
    ab = fake_ab(name)
    result = run_module(capsys, {"requests": 100, "ab_path": ab})
    assert result["failed"] is True
    assert words in result["msg"]
    assert result["rc"] == int(fixture(name, "rc"))
    assert result["reason"] in fixture(name, "stderr")


def test_missing_ab_is_one_clear_sentence(capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = run_module(capsys, {"requests": 1, "ab_path": "ab-not-installed"})
    assert result["failed"] is True
    assert result["msg"].startswith("ab-not-installed is not on PATH; install apache2-utils")


def test_ab_path_that_is_not_executable(capsys, tmp_path):
    result = run_module(capsys, {"requests": 1, "ab_path": str(tmp_path / "nope" / "ab")})
    assert result["failed"] is True
    assert "is not an executable file" in result["msg"]


def test_requests_or_time_limit_is_required(capsys):
    result = run_module(capsys, {"url": "http://localhost:8080/"})
    assert result["failed"] is True
    assert "requests" in result["msg"]


@needs_ab
@pytest.mark.integration
def test_real_ab_against_loopback_server_with_csv_and_gnuplot(capsys, tmp_path):
    with ab_servers.serve("normal") as url:
        result = run_module(
            capsys,
            {
                "url": url,
                "requests": 300,
                "concurrency": 10,
                "csv_file": str(tmp_path / "p.csv"),
                "gnuplot_file": str(tmp_path / "g.tsv"),
                "thresholds": {"max_failed_requests": 0, "min_requests_per_second": 1},
            },
        )
    assert result.get("failed") is not True, result
    assert result["report"]["complete_requests"] == 300
    assert len(result["percentages_ms"]) == 101
    assert result["timeline"]["requests"] == 300
    assert sum(entry["requests"] for entry in result["timeline"]["per_second"]) == 300


@needs_ab
@pytest.mark.integration
def test_real_ab_post_with_body(capsys, tmp_path):
    body = tmp_path / "body.json"
    body.write_text('{"a": 1}\n')
    with ab_servers.serve("post") as url:
        result = run_module(
            capsys,
            {
                "url": url,
                "requests": 20,
                "concurrency": 2,
                "method": "POST",
                "body_file": str(body),
                "content_type": "application/json",
                "headers": {"X-Load-Test": "yes"},
            },
        )
    assert result.get("failed") is not True, result
    assert result["report"]["total_body_sent_bytes"] > 0
    assert "-H" in result["cmd"]


@needs_ab
@pytest.mark.integration
def test_real_ab_connection_refused(capsys):
    result = run_module(capsys, {"url": ab_servers.closed_port_url(), "requests": 3})
    assert result["failed"] is True
    assert result["rc"] == 111
    assert "nothing accepts connections" in result["msg"]
