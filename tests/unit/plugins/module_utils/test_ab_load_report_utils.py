"""Tests for plugins/module_utils/ab_load_report.py: samples, HPA summary, Markdown, the PNG chart, writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_load_report import (
    LoadReportError,
    build_results,
    hpa_summary,
    keep_sampling,
    render_chart,
    render_markdown,
    summarize_sample,
    write_report,
)
from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import parse_gnuplot, parse_stdout

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ab"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def hpa_status(current, desired, cpu=None, rate_per_pod=None) -> dict:
    status = {"currentReplicas": current, "desiredReplicas": desired}
    if cpu is not None:
        status["currentMetrics"] = [
            {"type": "Pods", "pods": {"metric": {"name": "x"}}},
            {"type": "Resource", "resource": {"name": "memory", "current": {"averageUtilization": 99}}},
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}},
        ]
    if rate_per_pod is not None:
        # As KEDA's HPA reports its Prometheus trigger (metricType AverageValue): a per-pod quantity.
        status.setdefault("currentMetrics", []).append(
            {
                "type": "External",
                "external": {"metric": {"name": "s0-prometheus"}, "current": {"averageValue": rate_per_pod}},
            }
        )
    return status


def load_test(name: str = "timelimit") -> dict:
    return {
        "cmd": ["ab", "-t", "1", "-c", "4", "http://127.0.0.1/"],
        "report": parse_stdout((FIXTURES / f"{name}.stdout").read_text()),
        "timeline": parse_gnuplot((FIXTURES / f"{name}.tsv").read_text()),
        "passed": True,
        "broken_thresholds": [],
    }


def samples_around(start: float) -> list:
    return [
        {"time": start + 6, "hpa_status": hpa_status(3, 6, 150), "pods_total": 4, "pods_running": 3},
        {"time": start - 1, "hpa_status": hpa_status(3, 3, 5), "pods_total": 3, "pods_running": 3},
        {"time": start + 12, "hpa_status": hpa_status(6, 6, 90), "pods_total": 6, "pods_running": 6},
    ]


def test_summarize_sample_reads_cpu_from_the_resource_metric():
    sample = summarize_sample({"time": 10, "hpa_status": hpa_status(3, 5, 87), "pods_total": 4, "pods_running": 3})
    assert sample == {
        "time": 10.0,
        "current_replicas": 3,
        "desired_replicas": 5,
        "cpu_percent": 87,
        "request_rate": None,
        "pods_total": 4,
        "pods_running": 3,
    }


@pytest.mark.parametrize(
    ("external", "rate"),
    [
        ({"averageValue": "25"}, 75.0),
        ({"averageValue": "333m"}, 0.999),
        ({"averageValue": "1500m"}, 4.5),
        ({"averageValue": "2k"}, 6000.0),
        ({"value": "120"}, 120.0),
        ({"averageValue": "many"}, None),
        ({}, None),
    ],
)
def test_summarize_sample_reads_the_request_rate_the_autoscaler_read(external, rate):
    status = {"currentReplicas": 3, "currentMetrics": [{"type": "External", "external": {"current": external}}]}
    assert summarize_sample({"time": 1, "hpa_status": status})["request_rate"] == rate


def test_the_peak_request_rate_reaches_the_summary_the_markdown_and_the_chart():
    run = load_test()
    start = run["timeline"]["start_epoch_s"]
    samples = [
        {"time": start, "hpa_status": hpa_status(3, 3, 5, "0")},
        {"time": start + 5, "hpa_status": hpa_status(3, 10, 40, "100")},
        {"time": start + 10, "hpa_status": hpa_status(6, 10, 30, "50")},
    ]
    results = build_results(run, samples)
    assert results["hpa"]["max_request_rate"] == 300.0
    assert "- Peak request rate the autoscaler read (requests/s): 300.0" in render_markdown(results)
    without = build_results(run, [{**s, "hpa_status": hpa_status(3, 3, 5)} for s in samples])
    assert "(requests/s): n/a" in render_markdown(without)
    assert render_chart(results, "t") != render_chart(without, "t")


def test_summarize_sample_without_hpa():
    sample = summarize_sample({"time": "12.5", "hpa_status": {}, "pods_total": 0, "pods_running": 0})
    assert sample["current_replicas"] is None
    assert sample["cpu_percent"] is None
    assert sample["time"] == 12.5


@pytest.mark.parametrize(
    ("sample", "words"),
    [
        ("x", "not a mapping"),
        ({"hpa_status": {}}, "no numeric 'time'"),
        ({"time": 1, "hpa_status": ["x"]}, "'hpa_status' is not a mapping"),
    ],
)
def test_bad_samples(sample, words):
    with pytest.raises(LoadReportError, match=words):
        summarize_sample(sample)


@pytest.mark.parametrize(
    ("currents", "desireds", "scaled"),
    [
        ([3, 3, 3], [3, 3, 3], False),
        ([3, 3, 3], [3, 6, 6], True),
        ([3, 4, 6], [3, 6, 6], True),
        ([None, None], [None, None], None),
    ],
)
def test_hpa_summary_scaled_up(currents, desireds, scaled):
    samples = [
        summarize_sample({"time": i, "hpa_status": {"currentReplicas": c, "desiredReplicas": d}})
        for i, (c, d) in enumerate(zip(currents, desireds, strict=True))
    ]
    assert hpa_summary(samples)["scaled_up"] is scaled


def test_build_results_sorts_samples_and_aligns_them_with_the_run():
    run = load_test()
    start = run["timeline"]["start_epoch_s"]
    results = build_results(run, samples_around(start), url="http://127.0.0.1/", started="2026-11-24T09:00:00Z")
    assert [s["offset_s"] for s in results["samples"]] == [-1.0, 6.0, 12.0]
    assert results["hpa"] == {
        "samples": 3,
        "samples_after_load": 0,
        "initial_replicas": 3,
        "max_current_replicas": 6,
        "max_desired_replicas": 6,
        "final_replicas": 6,
        "max_cpu_percent": 150,
        "max_request_rate": None,
        "scaled_up": True,
        "scaled_down": False,
    }
    assert results["load_ended_offset_s"] is None
    json.dumps(results)


def test_samples_after_the_load_show_the_scale_down():
    run = load_test()
    start = run["timeline"]["start_epoch_s"]
    after = [
        {"time": start + 340, "hpa_status": hpa_status(6, 4, 2), "pods_total": 6, "pods_running": 6},
        {"time": start + 400, "hpa_status": hpa_status(4, 3, 2), "pods_total": 4, "pods_running": 4},
        {"time": start + 460, "hpa_status": hpa_status(3, 3, 2), "pods_total": 3, "pods_running": 3},
    ]
    results = build_results(run, samples_around(start) + after, load_ended=start + 20)
    assert results["load_ended_offset_s"] == 20
    hpa = results["hpa"]
    assert (hpa["samples_after_load"], hpa["final_replicas"], hpa["scaled_up"], hpa["scaled_down"]) == (
        3,
        3,
        True,
        True,
    )
    text = render_markdown(results)
    assert "- Sampled after the load: 3 samples, from 20 s on" in text
    assert "- Replicas at the end: 3; scaled back down: True" in text
    assert render_chart(results).startswith(PNG_SIGNATURE)


def _raw(times_and_replicas):
    return [{"time": t, "hpa_status": hpa_status(c, d)} for t, c, d in times_and_replicas]


@pytest.mark.parametrize(
    ("samples", "now", "keep"),
    [
        # Still scaled up a minute after the load: keep sampling.
        (_raw([(0, 3, 3), (100, 7, 10), (160, 10, 10)]), 160, True),
        # Back at the start, but too soon after the load to rule out a late scale-up.
        (_raw([(0, 3, 3), (130, 3, 3)]), 130, True),
        # Back at the start after the settle time: done.
        (_raw([(0, 3, 3), (100, 10, 10), (500, 3, 3)]), 500, False),
        # Never scaled up, and the settle time is over: done.
        (_raw([(0, 3, 3), (170, 3, 3)]), 170, False),
        # Current back at the start but the HPA still wants more: keep sampling.
        (_raw([(0, 3, 3), (170, 3, 5)]), 170, True),
        # The cooldown is over, whatever the replicas.
        (_raw([(0, 3, 3), (100, 10, 10), (660, 8, 6)]), 660, False),
        # No HPA was found: nothing to watch.
        ([{"time": 0, "hpa_status": {}}, {"time": 130, "hpa_status": {}}], 130, False),
    ],
)
def test_keep_sampling_after_the_load(samples, now, keep):
    # The load ended at 120 s; a 540 s cooldown; settled from 45 s after the load on.
    assert keep_sampling(samples, 120.0, float(now), 540.0) is keep


def test_build_results_needs_a_report():
    with pytest.raises(LoadReportError, match="outside check mode"):
        build_results({"report": None, "cmd": ["ab"]}, [])


def test_markdown_lists_broken_thresholds_and_hpa():
    run = load_test()
    run["passed"] = False
    run["broken_thresholds"] = [{"name": "max_p95_ms", "message": "The 95th percentile latency was too high."}]
    results = build_results(run, samples_around(run["timeline"]["start_epoch_s"]))
    text = render_markdown(results)
    assert "- Thresholds: BROKEN" in text
    assert "  - The 95th percentile latency was too high." in text
    assert "- Scaled up: True" in text
    assert f"| Complete requests | {run['report']['complete_requests']} |" in text
    assert "| p50 | p66 | p75 | p80 | p90 | p95 | p98 | p99 | p100 |" in text


def test_chart_is_a_png_with_and_without_data():
    run = load_test()
    full = render_chart(build_results(run, samples_around(run["timeline"]["start_epoch_s"])), "t")
    assert full.startswith(PNG_SIGNATURE)
    empty = render_chart(build_results({**run, "timeline": None}, []), "t")
    assert empty.startswith(PNG_SIGNATURE)
    assert full != empty


def test_write_report_is_idempotent_and_honours_check_mode(tmp_path):
    run = load_test()
    results = build_results(run, samples_around(run["timeline"]["start_epoch_s"]))
    dest = tmp_path / "report"
    planned = write_report(str(dest), results, check_mode=True)
    assert planned["changed"] is True
    assert not dest.exists()
    first = write_report(str(dest), results)
    assert first["changed"] is True
    assert sorted(path.name for path in dest.iterdir()) == ["chart.png", "report.md", "results.json"]
    assert json.loads((dest / "results.json").read_text()) == json.loads(json.dumps(results))
    assert write_report(str(dest), results)["changed"] is False
    assert write_report(str(dest), results, check_mode=True)["changed"] is False
    (dest / "report.md").write_text("edited")
    assert write_report(str(dest), results, chart=False)["changed"] is True


def test_write_report_into_an_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    results = build_results(load_test(), [])
    with pytest.raises(LoadReportError, match="cannot be created"):
        write_report(str(blocker / "sub"), results, chart=False)
