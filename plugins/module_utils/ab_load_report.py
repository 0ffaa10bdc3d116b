# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn one ab load test and the HPA samples taken while it ran into results.json, report.md and a PNG chart.

Plain Python; matplotlib is imported only when the chart is drawn (Agg backend, no display needed).
Errors are raised as :class:`LoadReportError` with one sentence naming the problem and the fix.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence

__all__ = [
    "LoadReportError",
    "build_results",
    "hpa_summary",
    "keep_sampling",
    "render_chart",
    "render_markdown",
    "summarize_sample",
    "write_report",
]

RESULTS_NAME = "results.json"
MARKDOWN_NAME = "report.md"
CHART_NAME = "chart.png"
# After the load, the replicas count as settled only once this many seconds have passed: metrics-server's 15 s
# resolution plus the HPA's 15 s sync period plus a margin, so a scale-up that the load caused but the HPA has not
# acted on yet is still seen.
SETTLE_SECONDS = 45


class LoadReportError(Exception):
    """The inputs cannot be turned into a report, or the report cannot be written."""


def _number(value):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value) if "." in str(value) else int(value)
    except (TypeError, ValueError):
        return None


def _hpa_cpu_percent(status: Mapping):
    for metric in status.get("currentMetrics") or []:
        resource = (metric or {}).get("resource") or {}
        if (metric or {}).get("type") == "Resource" and resource.get("name") == "cpu":
            return _number((resource.get("current") or {}).get("averageUtilization"))
    return None


# Kubernetes quantity suffixes an HPA's metric values carry (decimal SI only: metrics are never binary-suffixed).
_QUANTITY_SUFFIXES = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _quantity(value):
    """A Kubernetes quantity ("25", "333m", "1500m", "2k") as a float; None when it is not one."""
    text = str(value or "").strip()
    suffix = text[-1:] if text[-1:] in _QUANTITY_SUFFIXES and not text[-1:].isdigit() else ""
    try:
        return float(text[: len(text) - len(suffix)]) * _QUANTITY_SUFFIXES[suffix] if text else None
    except ValueError:
        return None


def _hpa_request_rate(status: Mapping):
    """The request rate the HPA's external metric (KEDA's Prometheus trigger) read, summed over the pods: the
    metric's value, or its per-pod average times the current replicas. None without an external metric."""
    for metric in status.get("currentMetrics") or []:
        if (metric or {}).get("type") != "External":
            continue
        current = ((metric.get("external") or {}).get("current")) or {}
        if current.get("value") is not None:
            return _quantity(current["value"])
        average, replicas = _quantity(current.get("averageValue")), _number(status.get("currentReplicas"))
        if average is not None and replicas is not None:
            return round(average * replicas, 3)
    return None


def summarize_sample(sample: Mapping) -> dict:
    """Reduce one raw sample ``{time, hpa_status, pods_total, pods_running}`` to typed numbers.

    ``hpa_status`` is the ``status`` of the HorizontalPodAutoscaler (autoscaling/v2) or empty when none was found.
    """
    if not isinstance(sample, Mapping):
        raise LoadReportError(
            f"A sample is {type(sample).__name__}, not a mapping; pass the samples the role collects."
        )
    when = _number(sample.get("time"))
    if when is None:
        raise LoadReportError("A sample has no numeric 'time' (epoch seconds); pass the samples the role collects.")
    status = sample.get("hpa_status") or {}
    if not isinstance(status, Mapping):
        raise LoadReportError("A sample's 'hpa_status' is not a mapping; pass the HPA's status object.")
    return {
        "time": float(when),
        "current_replicas": _number(status.get("currentReplicas")),
        "desired_replicas": _number(status.get("desiredReplicas")),
        "cpu_percent": _hpa_cpu_percent(status),
        "request_rate": _hpa_request_rate(status),
        "pods_total": _number(sample.get("pods_total")),
        "pods_running": _number(sample.get("pods_running")),
    }


def hpa_summary(samples: Sequence[Mapping], load_ended: float | None = None) -> dict:
    """Summarise typed samples: replicas at the start, the most seen, peak CPU, whether the HPA scaled up and, from
    the samples taken after the load (``load_ended``, epoch seconds), whether it scaled back down."""
    current = [s["current_replicas"] for s in samples if s["current_replicas"] is not None]
    desired = [s["desired_replicas"] for s in samples if s["desired_replicas"] is not None]
    cpu = [s["cpu_percent"] for s in samples if s["cpu_percent"] is not None]
    rate = [s.get("request_rate") for s in samples if s.get("request_rate") is not None]
    initial = current[0] if current else None
    most = max(current + desired) if current or desired else None
    peak = max(current) if current else None
    after_peak = current[current.index(peak) :] if current else []
    after_load = [
        s["current_replicas"]
        for s in samples
        if load_ended is not None and s["time"] >= load_ended and s["current_replicas"] is not None
    ]
    return {
        "samples": len(samples),
        "samples_after_load": len(after_load),
        "initial_replicas": initial,
        "max_current_replicas": peak,
        "max_desired_replicas": max(desired) if desired else None,
        "final_replicas": current[-1] if current else None,
        "max_cpu_percent": max(cpu) if cpu else None,
        "max_request_rate": max(rate) if rate else None,
        "scaled_up": None if initial is None else most > initial,
        "scaled_down": None if initial is None else peak > initial and min(after_peak) < peak,
    }


def keep_sampling(
    samples: Sequence[Mapping],
    load_ended: float,
    now: float,
    cooldown: float,
    settle: float = SETTLE_SECONDS,
) -> bool:
    """Whether to take another sample after the load (raw samples as the role collects them, times in epoch s).

    No: once ``cooldown`` seconds have passed since the load ended, when the HPA was not found, or when at least
    ``settle`` seconds have passed and the last sample has current and desired replicas back at the starting count.
    """
    typed = [summarize_sample(sample) for sample in samples or []]
    current = [s["current_replicas"] for s in typed if s["current_replicas"] is not None]
    if now - load_ended >= cooldown or not current:
        return False
    last = typed[-1]
    settled = last["current_replicas"] == current[0] and last["desired_replicas"] in (None, current[0])
    return not (now - load_ended >= settle and settled)


def build_results(
    load_test: Mapping,
    samples: Sequence[Mapping],
    url: str | None = None,
    started: str | None = None,
    load_ended: float | None = None,
) -> dict:
    """Combine the registered result of ``ab_load_test`` with the typed samples into the results document."""
    if not isinstance(load_test, Mapping) or not isinstance(load_test.get("report"), Mapping):
        raise LoadReportError(
            "load_test has no 'report'; pass the registered result of filewcount.gitops.ab_load_test run outside "
            "check mode."
        )
    typed = sorted((summarize_sample(sample) for sample in samples or []), key=lambda item: item["time"])
    timeline = load_test.get("timeline")
    start = (timeline or {}).get("start_epoch_s")
    if start is None and typed:
        start = typed[0]["time"]
    for item in typed:
        item["offset_s"] = None if start is None else round(item["time"] - start, 3)
    return {
        "url": url,
        "started": started,
        "load_ended_offset_s": None if start is None or load_ended is None else round(load_ended - start, 3),
        "cmd": list(load_test.get("cmd") or []),
        "passed": load_test.get("passed"),
        "broken_thresholds": list(load_test.get("broken_thresholds") or []),
        "report": dict(load_test["report"]),
        "percentages_ms": load_test.get("percentages_ms"),
        "timeline": timeline,
        "hpa": hpa_summary(typed, load_ended),
        "samples": typed,
    }


def _cell(value) -> str:
    return "n/a" if value is None else str(value)


def render_markdown(results: Mapping) -> str:
    """Render the results as a short Markdown report."""
    report = results["report"]
    percentiles = report.get("percentiles_ms") or {}
    hpa = results["hpa"]
    lines = [
        "# Load test report",
        "",
        f"- URL: {_cell(results.get('url'))}",
        f"- Started: {_cell(results.get('started'))}",
        f"- Command: `{' '.join(results.get('cmd') or [])}`",
        f"- Thresholds: {'passed' if results.get('passed') else 'BROKEN' if results.get('passed') is False else 'n/a'}",
    ]
    lines += [f"  - {item['message']}" for item in results.get("broken_thresholds") or []]
    lines += [
        "",
        "## ab summary",
        "",
        "| Measure | Value |",
        "| --- | --- |",
        f"| Complete requests | {_cell(report.get('complete_requests'))} |",
        f"| Failed requests | {_cell(report.get('failed_requests'))} |",
        f"| Non-2xx responses | {_cell(report.get('non_2xx_responses'))} |",
        f"| Concurrency | {_cell(report.get('concurrency'))} |",
        f"| Time taken (s) | {_cell(report.get('time_taken_s'))} |",
        f"| Requests per second | {_cell(report.get('requests_per_second'))} |",
        f"| Mean time per request (ms) | {_cell(report.get('time_per_request_ms'))} |",
        "",
        "## Latency percentiles (ms)",
        "",
        "| " + " | ".join(f"p{key}" for key in percentiles) + " |" if percentiles else "ab printed no percentiles.",
    ]
    if percentiles:
        lines += ["|" + " --- |" * len(percentiles), "| " + " | ".join(_cell(v) for v in percentiles.values()) + " |"]
    lines += [
        "",
        "## Autoscaler",
        "",
    ]
    if hpa["samples"]:
        lines += [
            f"- Samples: {hpa['samples']}",
            f"- Replicas at the start: {_cell(hpa['initial_replicas'])}",
            f"- Most current replicas: {_cell(hpa['max_current_replicas'])}; "
            f"most desired: {_cell(hpa['max_desired_replicas'])}",
            f"- Peak CPU (percent of request): {_cell(hpa['max_cpu_percent'])}",
            f"- Peak request rate the autoscaler read (requests/s): {_cell(hpa.get('max_request_rate'))}",
            f"- Scaled up: {_cell(hpa['scaled_up'])}",
            f"- Sampled after the load: {_cell(hpa.get('samples_after_load'))} samples, from "
            f"{_cell(results.get('load_ended_offset_s'))} s on",
            f"- Replicas at the end: {_cell(hpa.get('final_replicas'))}; "
            f"scaled back down: {_cell(hpa.get('scaled_down'))}",
        ]
    else:
        lines.append("The HPA was not sampled during this run.")
    lines += ["", f"![requests, latency and replicas over time]({CHART_NAME})", ""]
    return "\n".join(lines)


def _load_panels(ax_rps, ax_lat, per_second: list, title: str) -> None:
    seconds = [entry["offset_s"] for entry in per_second]
    ax_rps.bar(seconds, [entry["requests"] for entry in per_second], width=0.9, color="tab:blue")
    ax_rps.set_ylabel("requests/s")
    ax_rps.set_title(title)
    for key, color in (("p50", "tab:green"), ("p95", "tab:orange"), ("p99", "tab:red")):
        ax_lat.plot(seconds, [entry["ttime_ms"][key] for entry in per_second], label=key, color=color, marker=".")
    ax_lat.set_ylabel("latency (ms)")
    if per_second:
        ax_lat.legend(loc="upper left")
    else:
        for axis in (ax_rps, ax_lat):
            axis.text(0.5, 0.5, "no -g data", ha="center", va="center", transform=axis.transAxes)


def _autoscaler_rate(ax_rps, samples: list) -> None:
    """Over ab's own requests per second: the rate the autoscaler's request trigger read, when the HPA has one."""
    points = [(s["offset_s"], s["request_rate"]) for s in samples if s.get("request_rate") is not None]
    if points:
        ax_rps.step(
            [p[0] for p in points],
            [p[1] for p in points],
            where="post",
            color="tab:orange",
            linewidth=2,
            label="rate the autoscaler read",
        )
        ax_rps.legend(loc="upper right")


def _replica_panel(ax_rep, samples: list, locator) -> None:
    offsets = [s["offset_s"] for s in samples]
    drawn = False
    styles = (
        ("current_replicas", "current replicas", "tab:blue", "-", 3.0, None),
        ("desired_replicas", "desired replicas", "tab:purple", "--", 1.5, None),
        ("pods_running", "running pods", "black", ":", 1.5, "o"),
    )
    for key, label, color, linestyle, width, marker in styles:
        points = [(x, s[key]) for x, s in zip(offsets, samples, strict=True) if s[key] is not None]
        if points:
            ax_rep.step(
                [p[0] for p in points],
                [p[1] for p in points],
                where="post",
                label=label,
                color=color,
                linestyle=linestyle,
                linewidth=width,
                marker=marker,
                markersize=4,
            )
            drawn = True
    ax_rep.set_ylabel("replicas")
    ax_rep.set_xlabel("seconds since the load started")
    ax_rep.set_ylim(bottom=0)
    ax_rep.yaxis.set_major_locator(locator)
    cpu = [(x, s["cpu_percent"]) for x, s in zip(offsets, samples, strict=True) if s["cpu_percent"] is not None]
    if cpu:
        ax_cpu = ax_rep.twinx()
        ax_cpu.plot([p[0] for p in cpu], [p[1] for p in cpu], color="tab:red", linestyle="--", label="CPU %")
        ax_cpu.set_ylabel("CPU % of request")
        ax_cpu.set_ylim(bottom=0)
        ax_cpu.legend(loc="upper right")
    if drawn:
        ax_rep.legend(loc="upper left")
    else:
        ax_rep.text(0.5, 0.5, "HPA not sampled", ha="center", va="center", transform=ax_rep.transAxes)


def render_chart(results: Mapping, title: str = "Load test") -> bytes:
    """Draw requests/s, latency percentiles and replicas over time as PNG bytes (matplotlib, Agg backend)."""
    try:
        import matplotlib  # noqa: PLC0415 - optional dependency, only needed for the chart

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt  # noqa: PLC0415
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415
    except ImportError:
        raise LoadReportError(
            "matplotlib is not installed for the Python that runs the module; pip install matplotlib or set "
            "the chart option to false."
        ) from None
    per_second = (results.get("timeline") or {}).get("per_second") or []
    samples = [s for s in results.get("samples") or [] if s.get("offset_s") is not None]
    figure, (ax_rps, ax_lat, ax_rep) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    try:
        _load_panels(ax_rps, ax_lat, per_second, title)
        _autoscaler_rate(ax_rps, samples)
        _replica_panel(ax_rep, samples, MaxNLocator(integer=True))
        for axis in (ax_rps, ax_lat, ax_rep):
            axis.grid(True, alpha=0.3)
            if results.get("load_ended_offset_s") is not None:
                axis.axvline(results["load_ended_offset_s"], color="grey", linestyle="-.", linewidth=1)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _write_if_changed(path: str, content: bytes, check_mode: bool) -> bool:
    try:
        with open(path, "rb") as handle:
            if handle.read() == content:
                return False
    except FileNotFoundError:
        pass
    except OSError as error:
        raise LoadReportError(f"{path} cannot be read ({error.strerror}); fix its permissions.") from None
    if check_mode:
        return True
    directory = os.path.dirname(path)
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except OSError as error:
        raise LoadReportError(
            f"{path} cannot be written ({error.strerror}); choose a writable report directory."
        ) from None
    return True


def write_report(
    dest: str, results: Mapping, chart: bool = True, title: str = "Load test", check_mode: bool = False
) -> dict:
    """Write results.json, report.md and (with ``chart``) chart.png into ``dest``; return paths and changed."""
    if not check_mode:
        try:
            os.makedirs(dest, mode=0o755, exist_ok=True)
        except OSError as error:
            raise LoadReportError(
                f"Report directory {dest} cannot be created ({error.strerror}); choose a writable path."
            ) from None
    files = {
        RESULTS_NAME: (json.dumps(results, indent=2, sort_keys=True) + "\n").encode(),
        MARKDOWN_NAME: render_markdown(results).encode(),
    }
    if chart:
        files[CHART_NAME] = render_chart(results, title)
    changed = False
    paths = {}
    for name, content in files.items():
        path = os.path.join(dest, name)
        changed = _write_if_changed(path, content, check_mode) or changed
        paths[name] = path
    return {"changed": changed, "files": paths}
