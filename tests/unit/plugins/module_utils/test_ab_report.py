"""Tests for plugins/module_utils/ab_report.py on real ab 2.3 output (saved fixtures and live runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.filewcount.gitops.plugins.module_utils import ab_report
from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import (
    AbArgumentError,
    AbFormatError,
    AbNoStatisticsError,
    AbReportError,
    AbRunError,
    build_argv,
    evaluate_thresholds,
    parse_csv,
    parse_gnuplot,
    parse_stdout,
    run_failure,
)
from tests.unit import ab_servers

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ab"
REPORT_KEYS = {
    "server",
    "document",
    "concurrency",
    "time_taken_s",
    "complete_requests",
    "failed_requests",
    "failed_breakdown",
    "write_errors",
    "non_2xx_responses",
    "keep_alive_requests",
    "total_body_sent_bytes",
    "total_transferred_bytes",
    "html_transferred_bytes",
    "requests_per_second",
    "time_per_request_ms",
    "time_per_request_all_ms",
    "transfer_rate_kbytes_s",
    "connection_times_ms",
    "percentiles_ms",
}
STAT_SCENARIOS = sorted(name for name in ab_servers.SCENARIOS if name not in ("refused", "reset", "timeout"))
needs_ab = pytest.mark.skipif(
    ab_servers.ab_path() is None, reason="ab is not installed (apt-get install apache2-utils) so no live ab run"
)


def fixture(name: str, kind: str) -> str:
    return (FIXTURES / f"{name}.{kind}").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# invariants that hold for every report ab prints with statistics
# ---------------------------------------------------------------------------------------------------------------------


def check_invariants(report: dict) -> None:
    assert set(report) == REPORT_KEYS
    assert set(report["server"]) == {"software", "hostname", "port"}
    assert set(report["document"]) == {"path", "length_bytes"}
    assert set(report["failed_breakdown"]) == {"connect", "receive", "length", "exceptions"}
    assert report["server"]["hostname"] == "127.0.0.1"
    assert report["server"]["software"] == "abtest/1.0"
    assert isinstance(report["server"]["port"], int)
    assert report["document"]["path"] == "/"
    assert report["complete_requests"] > 0
    assert report["time_taken_s"] > 0
    # ab prints concurrency * time / done and time / done; the parser keeps them apart.
    # Both are printed with 3 decimals, so allow the rounding of each.
    assert report["time_per_request_ms"] == pytest.approx(
        report["time_per_request_all_ms"] * report["concurrency"], abs=0.001 * (report["concurrency"] + 1)
    )
    # The time taken is printed rounded to 1 ms, so the rate lies between the two bounds that allows.
    done, taken = report["complete_requests"], report["time_taken_s"]
    assert done / (taken + 0.0005) - 0.01 <= report["requests_per_second"] <= done / max(taken - 0.0005, 1e-9) + 0.01
    assert set(report["connection_times_ms"]) == {"connect", "processing", "waiting", "total"}
    assert list(report["percentiles_ms"]) == list(ab_report.PERCENTILES)
    values = list(report["percentiles_ms"].values())
    assert values == sorted(values)
    assert report["percentiles_ms"]["100"] == report["connection_times_ms"]["total"]["max"]


@pytest.mark.parametrize("name", STAT_SCENARIOS)
def test_fixture_reports_hold_invariants(name):
    check_invariants(parse_stdout(fixture(name, "stdout")))


def test_normal_run_values():
    report = parse_stdout(fixture("normal", "stdout"))
    assert report["concurrency"] == 10
    assert report["complete_requests"] == 200
    assert report["failed_requests"] == 0
    assert report["failed_breakdown"] == {"connect": 0, "receive": 0, "length": 0, "exceptions": 0}
    assert report["document"]["length_bytes"] == 13
    assert report["html_transferred_bytes"] == 200 * 13
    assert report["non_2xx_responses"] == 0
    assert report["write_errors"] == 0
    assert report["total_body_sent_bytes"] == 0
    assert report["keep_alive_requests"] is None
    assert isinstance(report["requests_per_second"], float)
    assert set(report["connection_times_ms"]["total"]) == {"min", "mean", "sd", "median", "max"}


def test_all_non_2xx_counts_every_response_but_no_failure():
    report = parse_stdout(fixture("non2xx", "stdout"))
    assert report["non_2xx_responses"] == report["complete_requests"] == 100
    assert report["failed_requests"] == 0


def test_mixed_5xx_and_varying_lengths_give_length_failures():
    report = parse_stdout(fixture("mixed", "stdout"))
    assert report["non_2xx_responses"] == 50
    breakdown = report["failed_breakdown"]
    assert breakdown["length"] == report["failed_requests"] > 0
    assert breakdown["connect"] == breakdown["receive"] == breakdown["exceptions"] == 0


def test_variable_length_has_no_document_length_and_no_length_failures():
    report = parse_stdout(fixture("variable", "stdout"))
    assert report["document"]["length_bytes"] is None
    assert report["failed_requests"] == 0
    assert report["non_2xx_responses"] == 10


def test_keep_alive_counts_kept_connections():
    report = parse_stdout(fixture("keepalive", "stdout"))
    assert report["keep_alive_requests"] == report["complete_requests"] == 200


def test_post_reports_body_sent():
    report = parse_stdout(fixture("post", "stdout"))
    assert report["total_body_sent_bytes"] > 0
    assert report["complete_requests"] == 50


def test_time_limited_run_has_time_and_requests():
    report = parse_stdout(fixture("timelimit", "stdout"))
    assert report["time_taken_s"] == pytest.approx(1.0, abs=0.2)
    timeline = parse_gnuplot(fixture("timelimit", "tsv"))
    assert timeline["requests"] == report["complete_requests"]
    assert sum(entry["requests"] for entry in timeline["per_second"]) == report["complete_requests"]


def test_no_confidence_table_has_no_sd_or_median():
    report = parse_stdout(fixture("no_sd", "stdout"))
    total = report["connection_times_ms"]["total"]
    assert total["sd"] is None
    assert total["median"] is None
    assert total["min"] <= total["mean"] <= total["max"]


def test_receive_errors_breakdown():
    report = parse_stdout(fixture("receive_errors", "stdout"))
    breakdown = report["failed_breakdown"]
    assert breakdown["receive"] > 0
    assert report["failed_requests"] == sum(breakdown.values())


@pytest.mark.parametrize(
    ("name", "rc", "errno", "completed"),
    [("refused", 111, "111", None), ("reset", 104, "104", 19), ("timeout", 119, "70007", None)],
)
def test_failed_runs_print_no_statistics_and_explain(name, rc, errno, completed):
    assert int(fixture(name, "rc")) == rc
    with pytest.raises(AbNoStatisticsError) as caught:
        parse_stdout(fixture(name, "stdout"))
    assert caught.value.completed == completed
    error = run_failure(rc, fixture(name, "stdout"), fixture(name, "stderr"), "http://127.0.0.1:9/")
    assert isinstance(error, AbRunError)
    assert error.rc == rc
    assert error.completed == completed
    assert f"({errno})" in error.reason
    assert str(error).count(". ") == 0, "one sentence"
    assert str(error).endswith(".")


def test_run_failure_messages_name_the_fix():
    refused = run_failure(111, fixture("refused", "stdout"), fixture("refused", "stderr"), "http://x/")
    assert "nothing accepts connections at http://x/" in str(refused)
    timeout = run_failure(119, fixture("timeout", "stdout"), fixture("timeout", "stderr"), "http://x/")
    assert "socket_timeout" in str(timeout)
    reset = run_failure(104, fixture("reset", "stdout"), fixture("reset", "stderr"), "http://x/")
    assert "after 19 completed requests" in str(reset)
    unknown = run_failure(3, "", "Completed 100 requests\nsomething odd\n", "http://x/")
    assert unknown.reason == "something odd"


def test_newer_builds_extra_keys_are_tolerated():
    text = (
        fixture("normal", "stdout")
        .replace(
            "Server Port:",
            "SSL/TLS Protocol:       TLSv1.3,TLS_AES_256_GCM_SHA384,2048,256\n"
            "Server Temp Key:        X25519 253 bits\nTLS Server Name:        localhost\nServer Port:",
        )
        .replace("Total transferred:", "Some Future Counter:    42 widgets\nTotal transferred:")
    )
    assert parse_stdout(text) == parse_stdout(fixture("normal", "stdout"))


def test_bytes_input_is_decoded():
    assert parse_stdout(fixture("normal", "stdout").encode()) == parse_stdout(fixture("normal", "stdout"))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", AbNoStatisticsError),
        ("hello\nworld\n", AbNoStatisticsError),
        ("Complete requests:      12\n", AbFormatError),
        ("Complete requests:      12\nFailed requests:        3\n", AbFormatError),
        ("Complete requests:      twelve\n", AbFormatError),
        ("Complete requests:      1.5\nFailed requests: 0\n", AbFormatError),
        (None, AbFormatError),
        (42, AbFormatError),
    ],
)
def test_bad_input_raises_typed_error(text, error):
    with pytest.raises(error):
        parse_stdout(text)


def test_garbled_connection_and_percentile_rows():
    text = fixture("normal", "stdout")
    connect = next(row for row in text.splitlines() if row.startswith("Connect:"))
    with pytest.raises(AbFormatError, match="connection-time values"):
        parse_stdout(text.replace(connect, "Connect: 0 0"))
    line = next(row for row in text.splitlines() if row.strip().startswith("95%"))
    with pytest.raises(AbFormatError, match="percentile"):
        parse_stdout(text.replace(line, "  95%      x1"))


def test_minimal_report_fills_defaults():
    report = parse_stdout("Complete requests:      1\nFailed requests:        0\n")
    assert report["complete_requests"] == 1
    assert report["non_2xx_responses"] == 0
    assert report["connection_times_ms"] is None
    assert report["percentiles_ms"] is None
    assert report["requests_per_second"] is None


# ---------------------------------------------------------------------------------------------------------------------
# -e CSV and -g TSV
# ---------------------------------------------------------------------------------------------------------------------


def test_csv_maps_every_percent_to_milliseconds():
    table = parse_csv(fixture("normal", "csv"))
    assert list(table) == [str(p) for p in range(101)]
    values = list(table.values())
    assert values == sorted(values)
    report = parse_stdout(fixture("normal", "stdout"))
    # ab's integer percentile table and the CSV's fractional one describe the same run.
    assert abs(table["100"] - report["percentiles_ms"]["100"]) <= 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Percentage served,Time in ms\n",
        "wrong header\n0,1.0\n",
        "Percentage served,Time in ms\n101,1.0\n",
        "Percentage served,Time in ms\n5;1.0\n",
        "Percentage served,Time in ms\n5,abc\n",
    ],
)
def test_csv_errors(text):
    with pytest.raises(AbFormatError):
        parse_csv(text)


def test_gnuplot_fixture_counts_requests():
    result = parse_gnuplot(fixture("normal", "tsv"))
    assert result["requests"] == 200
    assert result["duration_s"] == len(result["per_second"]) >= 1
    assert result["ttime_ms"]["max"] >= result["ttime_ms"]["p99"] >= result["ttime_ms"]["p50"]


def test_gnuplot_per_second_throughput_and_gaps():
    header = "starttime\tseconds\tctime\tdtime\tttime\twait\n"
    rows = [(100, 5), (100, 7), (100, 9), (102, 20)]
    text = header + "".join(f"Tue Nov 24 09:00:00 2026\t{s}\t0\t{t}\t{t}\t{t}\n" for s, t in rows)
    result = parse_gnuplot(text)
    assert result["requests"] == 4
    assert result["start_epoch_s"] == 100
    assert [entry["requests"] for entry in result["per_second"]] == [3, 0, 1]
    assert [entry["offset_s"] for entry in result["per_second"]] == [0, 1, 2]
    assert result["per_second"][0]["ttime_ms"] == {"mean": 7.0, "p50": 7, "p95": 9, "p99": 9, "max": 9}
    assert result["per_second"][1]["ttime_ms"]["p95"] is None
    assert result["ttime_ms"]["max"] == 20


def test_gnuplot_streams_lines_from_an_open_file():
    with (FIXTURES / "timelimit.tsv").open(encoding="utf-8") as handle:
        assert parse_gnuplot(handle) == parse_gnuplot(fixture("timelimit", "tsv"))


def test_gnuplot_header_only_is_an_empty_run():
    result = parse_gnuplot("starttime\tseconds\tctime\tdtime\tttime\twait\n")
    assert result["requests"] == 0
    assert result["per_second"] == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "seconds\tttime\n",
        "starttime\tseconds\tctime\tdtime\tttime\twait\nx\t1\t2\n",
        "starttime\tseconds\tctime\tdtime\tttime\twait\nday\tnow\t0\t1\t1\t1\n",
        "starttime\tseconds\tctime\tdtime\tttime\twait\nday\t-5\t0\t1\t1\t1\n",
        "starttime\tseconds\tctime\tdtime\tttime\twait\nday\t0\t0\t1\t1\t1\nday\t1795500000\t0\t1\t1\t1\n",
    ],
)
def test_gnuplot_errors(text):
    with pytest.raises(AbFormatError):
        parse_gnuplot(text)


# ---------------------------------------------------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "thresholds", "broken"),
    [
        ("normal", {}, []),
        (
            "normal",
            {
                "max_failed_requests": 0,
                "max_non_2xx": 0,
                "max_p95_ms": 1000,
                "max_p99_ms": 1000,
                "min_requests_per_second": 1,
            },
            [],
        ),
        ("mixed", {"max_failed_requests": 0}, ["max_failed_requests"]),
        ("mixed", {"max_failed_requests": 1000, "max_non_2xx": 10}, ["max_non_2xx"]),
        ("non2xx", {"max_non_2xx": 0, "max_failed_requests": 0}, ["max_non_2xx"]),
        ("normal", {"max_p95_ms": -1, "max_p99_ms": -1}, ["max_p95_ms", "max_p99_ms"]),
        ("normal", {"min_requests_per_second": 10**9}, ["min_requests_per_second"]),
        ("normal", {"max_p95_ms": None, "min_requests_per_second": None}, []),
    ],
)
def test_thresholds(name, thresholds, broken):
    result = evaluate_thresholds(parse_stdout(fixture(name, "stdout")), thresholds)
    assert [item["name"] for item in result] == broken
    for item in result:
        assert item["message"].endswith(".")
        assert item["name"] in item["message"]


def test_threshold_without_percentiles_is_broken():
    report = parse_stdout("Complete requests:      1\nFailed requests:        0\n")
    result = evaluate_thresholds(report, {"max_p95_ms": 10, "min_requests_per_second": 1})
    assert [item["actual"] for item in result] == [None, None]


def test_unknown_threshold_is_rejected():
    with pytest.raises(AbArgumentError, match="max_p90_ms"):
        evaluate_thresholds({}, {"max_p90_ms": 3})


# ---------------------------------------------------------------------------------------------------------------------
# argv
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argv"),
    [
        ({"requests": 10000, "concurrency": 100}, ["ab", "-n", "10000", "-c", "100", "http://localhost:8080/"]),
        ({"requests": 5, "url": "http://localhost:8080"}, ["ab", "-n", "5", "-c", "1", "http://localhost:8080/"]),
        ({"requests": 5, "url": "http://h:1?q=1"}, ["ab", "-n", "5", "-c", "1", "http://h:1/?q=1"]),
        (
            {"time_limit": 30, "requests": 1000, "concurrency": 10},
            ["ab", "-t", "30", "-n", "1000", "-c", "10", "http://localhost:8080/"],
        ),
        (
            {
                "time_limit": 30,
                "keep_alive": True,
                "socket_timeout": 5,
                "variable_length": True,
                "continue_on_receive_errors": True,
                "ab_path": "/usr/bin/ab",
            },
            ["/usr/bin/ab", "-t", "30", "-c", "1", "-s", "5", "-k", "-l", "-r", "http://localhost:8080/"],
        ),
        (
            {"requests": 2, "headers": {"Accept": "text/plain", "X-Test": "a b"}},
            ["ab", "-n", "2", "-c", "1", "-H", "Accept: text/plain", "-H", "X-Test: a b", "http://localhost:8080/"],
        ),
        ({"requests": 2, "method": "head"}, ["ab", "-n", "2", "-c", "1", "-i", "http://localhost:8080/"]),
        (
            {"requests": 2, "method": "POST", "body_file": "/b", "content_type": "application/json"},
            ["ab", "-n", "2", "-c", "1", "-p", "/b", "-T", "application/json", "http://localhost:8080/"],
        ),
        (
            {"requests": 2, "method": "PUT", "body_file": "/b"},
            ["ab", "-n", "2", "-c", "1", "-u", "/b", "-T", "application/octet-stream", "http://localhost:8080/"],
        ),
        ({"requests": 2, "method": "DELETE"}, ["ab", "-n", "2", "-c", "1", "-m", "DELETE", "http://localhost:8080/"]),
        (
            {"requests": 2, "csv_file": "/r/p.csv", "gnuplot_file": "/r/g.tsv"},
            ["ab", "-n", "2", "-c", "1", "-e", "/r/p.csv", "-g", "/r/g.tsv", "http://localhost:8080/"],
        ),
        (
            # Through the Gateway: an address URL (no SNI) and the route's host name in the Host header.
            {
                "requests": 2,
                "url": "https://127.0.0.1:8443/",
                "tls_protocol": "TLS1.2",
                "headers": {"Host": "filewcount.localhost"},
            },
            ["ab", "-n", "2", "-c", "1", "-f", "TLS1.2", "-H", "Host: filewcount.localhost", "https://127.0.0.1:8443/"],
        ),
    ],
)
def test_build_argv(kwargs, argv):
    kwargs.setdefault("url", "http://localhost:8080/")
    assert build_argv(kwargs.pop("url"), **kwargs) == argv


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "Neither requests nor time_limit"),
        ({"requests": 0}, "requests must be"),
        ({"requests": True}, "requests must be"),
        ({"requests": 5, "concurrency": 6}, "greater than requests"),
        ({"time_limit": 5, "concurrency": 20001}, "limit of 20000"),
        ({"requests": 5, "socket_timeout": -1}, "socket_timeout"),
        ({"requests": 5, "url": "ftp://host/"}, "http:// or https://"),
        ({"requests": 5, "url": "http:///x"}, "with a host"),
        ({"requests": 5, "url": "http://h/ x"}, "without spaces"),
        ({"requests": 5, "url": "http://h/#frag"}, "fragment"),
        ({"requests": 5, "headers": {"Bad Name": "x"}}, "HTTP token"),
        ({"requests": 5, "headers": {"X": "a\r\nInjected: 1"}}, "line break"),
        ({"requests": 5, "method": "TRACE"}, "not supported"),
        ({"requests": 5, "method": "POST"}, "needs body_file"),
        ({"requests": 5, "body_file": "/b"}, "sends no body"),
        ({"requests": 5, "content_type": "text/plain"}, "no body_file"),
        ({"requests": 5, "tls_protocol": "TLS1.2"}, "is not https://"),
        ({"requests": 5, "url": "https://h/", "tls_protocol": "SSL3"}, "not one ab knows"),
    ],
)
def test_build_argv_rejects(kwargs, match):
    kwargs.setdefault("url", "http://localhost:8080/")
    with pytest.raises(AbArgumentError, match=match):
        build_argv(kwargs.pop("url"), **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# property tests: truncated or garbled input raises nothing but AbReportError
# ---------------------------------------------------------------------------------------------------------------------

ALL_STDOUT = [fixture(name, "stdout") for name in sorted(ab_servers.SCENARIOS)]


def _parse_or_typed_error(parser, text) -> None:
    try:
        parser(text)
    except AbReportError as error:
        assert str(error)


@pytest.mark.parametrize("name", sorted(ab_servers.SCENARIOS))
def test_every_truncation_of_every_fixture_is_typed(name):
    text = fixture(name, "stdout")
    for cut in range(len(text) + 1):
        _parse_or_typed_error(parse_stdout, text[:cut])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbled_stdout_raises_only_typed_errors(data):
    text = data.draw(st.sampled_from(ALL_STDOUT))
    chars = list(text)
    edits = st.tuples(st.integers(0, 10**6), st.sampled_from(("replace", "delete", "insert")), st.characters())
    for where, action, noise in data.draw(st.lists(edits, min_size=1, max_size=40)):
        position = where % len(chars)
        if action == "replace":
            chars[position] = noise
        elif action == "delete":
            del chars[position]
        else:
            chars.insert(position, noise)
    _parse_or_typed_error(parse_stdout, "".join(chars))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_only_typed_errors(text):
    _parse_or_typed_error(parse_stdout, text)
    _parse_or_typed_error(parse_csv, text)
    _parse_or_typed_error(parse_gnuplot, text)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 5000), noise=st.text(max_size=20))
def test_truncated_csv_and_gnuplot_raise_only_typed_errors(cut, noise):
    _parse_or_typed_error(parse_csv, fixture("normal", "csv")[:cut] + noise)
    _parse_or_typed_error(parse_gnuplot, fixture("normal", "tsv")[:cut] + noise)


# ---------------------------------------------------------------------------------------------------------------------
# live: run Debian's ab against the loopback servers now
# ---------------------------------------------------------------------------------------------------------------------


@needs_ab
@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(ab_servers.SCENARIOS))
def test_live_ab_run_parses_like_the_fixture(name, tmp_path):
    result = ab_servers.run_scenario(name, str(tmp_path))
    assert result["rc"] == int(fixture(name, "rc")), result["stderr"]
    if result["rc"] != 0:
        with pytest.raises(AbNoStatisticsError):
            parse_stdout(result["stdout"])
        error = run_failure(result["rc"], result["stdout"], result["stderr"], result["url"])
        assert error.reason == ab_servers_reason(name)
        return
    live = parse_stdout(result["stdout"])
    check_invariants(live)
    saved = parse_stdout(fixture(name, "stdout"))
    # Timings differ run to run; the counts and the shape of the report do not.
    stable = ["concurrency", "non_2xx_responses", "write_errors", "total_body_sent_bytes", "keep_alive_requests"]
    if name == "mixed":
        # The first response ab reads sets the expected length, and which one comes first varies.
        assert live["failed_breakdown"]["length"] == live["failed_requests"] > 0
    else:
        stable += ["document", "failed_breakdown", "failed_requests"]
    for key in stable:
        assert live[key] == saved[key], key
    if name != "timelimit":
        assert live["complete_requests"] == saved["complete_requests"]
    if "csv" in result:
        assert len(parse_csv(result["csv"])) == 101
    if "tsv" in result:
        assert parse_gnuplot(result["tsv"])["requests"] == live["complete_requests"]


def ab_servers_reason(name: str) -> str:
    return fixture(name, "stderr").strip().splitlines()[-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 2**40), st.integers(-5, 10**6)), max_size=30))
def test_gnuplot_rows_of_any_numbers_give_a_bounded_timeline_or_typed_error(rows):
    text = "starttime\tseconds\tctime\tdtime\tttime\twait\n" + "".join(
        f"day\t{second}\t0\t0\t{ttime}\t0\n" for second, ttime in rows
    )
    try:
        result = parse_gnuplot(text)
    except AbReportError:
        return
    assert result["requests"] == len(rows)
    assert len(result["per_second"]) <= ab_report.MAX_GNUPLOT_SPAN_S + 1
