# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compact, plain-text status report of the GitOps environment (used by playbooks/status.yml).

``build_report(data)`` takes the objects gathered with ``kubernetes.core.k8s_info`` and returns a list of lines.
It imports without Ansible; the filter ``filewcount.gitops.status_report`` exposes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.filewcount.gitops.plugins.module_utils.k8s_health import (
    HealthError,
    condition,
    format_cpu,
    format_memory,
    hpa_cpu,
    parse_cpu,
    parse_memory,
    recent_warnings,
)

MESSAGE_WIDTH = 90
_SHA = re.compile(r"(sha1|sha256):([0-9a-f]{12})[0-9a-f]+")


def short_revision(revision: Any) -> str:
    """``main@sha1:0123456789abcdef...`` -> ``main@sha1:0123456789ab``; empty -> ``-``."""
    if not revision:
        return "-"
    return _SHA.sub(lambda m: f"{m.group(1)}:{m.group(2)}", str(revision))


def _clip(text: Any, width: int = MESSAGE_WIDTH) -> str:
    flat = _SHA.sub(lambda m: f"{m.group(1)}:{m.group(2)}", " ".join(str(text or "").split())) or "-"
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _ready(obj: Mapping[str, Any]) -> tuple[str, str]:
    if (obj.get("spec") or {}).get("suspend"):
        return "Suspended", "reconciliation suspended"
    cond = condition(obj, "Ready")
    if cond is None:
        return "Unknown", "no Ready condition yet"
    return str(cond.get("status", "Unknown")), str(cond.get("message") or cond.get("reason") or "")


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns; the last column is free text."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _section(title: str, rows: list[list[str]], empty: str) -> list[str]:
    return [title] + (_table(rows) if rows else [f"  ({empty})"])


def flux_rows(objs: Iterable[Mapping[str, Any]], revision_of) -> list[list[str]]:
    rows = []
    for obj in sorted(objs or [], key=lambda o: (o.get("kind", ""), _name(o))):
        ready, message = _ready(obj)
        rows.append(
            [f"{obj.get('kind', '')}", _name(obj), f"Ready={ready}", short_revision(revision_of(obj)), _clip(message)]
        )
    return rows


def _source_revision(obj: Mapping[str, Any]) -> Any:
    return ((obj.get("status") or {}).get("artifact") or {}).get("revision")


def _kustomization_revision(obj: Mapping[str, Any]) -> Any:
    status = obj.get("status") or {}
    return status.get("lastAppliedRevision") or status.get("lastAttemptedRevision")


def _helmrelease_revision(obj: Mapping[str, Any]) -> Any:
    status = obj.get("status") or {}
    history = status.get("history") or []
    if history and history[0].get("chartVersion"):
        return f"{history[0].get('chartName', '')}@{history[0]['chartVersion']}".lstrip("@")
    return status.get("lastAttemptedRevision")


def _usage(metrics: Mapping[str, Any] | None) -> tuple[str, str]:
    """(cpu, memory) text of a NodeMetrics (usage) or PodMetrics (sum of containers)."""
    if not metrics:
        return "-", "-"
    try:
        if "usage" in metrics:
            usage = [metrics["usage"]]
        else:
            usage = [c.get("usage") or {} for c in metrics.get("containers") or []]
        cpu = sum(parse_cpu(u.get("cpu", 0)) for u in usage)
        mem = sum(parse_memory(u.get("memory", 0)) for u in usage)
    except HealthError:
        return "?", "?"
    return format_cpu(cpu), format_memory(mem)


def _pod_state(pod: Mapping[str, Any]) -> tuple[str, str, int]:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or []) or len(containers)
    ready = sum(1 for c in containers if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in containers)
    phase = str(status.get("phase") or "Unknown")
    for c in containers:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            phase = str(waiting["reason"])
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    return phase, f"{ready}/{total}", restarts


def build_report(data: Mapping[str, Any]) -> list[str]:
    """Return the report lines. ``data`` keys (all optional lists of objects unless said otherwise):

    ``context`` (str), ``sources`` (GitRepository, OCIRepository, HelmRepository, HelmChart, Bucket),
    ``kustomizations``, ``helmreleases``,
    ``pods`` and ``hpas`` (the application's), ``node_metrics``, ``pod_metrics`` (any namespaces),
    ``metrics_available`` (bool, whether metrics.k8s.io answered), ``events`` (Event objects), ``events_limit``.
    """
    lines: list[str] = []
    if data.get("context"):
        lines.append(f"Cluster: {data['context']}")
    lines += _section("Flux sources", flux_rows(data.get("sources"), _source_revision), "none found")
    lines += _section(
        "Flux Kustomizations", flux_rows(data.get("kustomizations"), _kustomization_revision), "none found"
    )
    lines += _section("HelmReleases", flux_rows(data.get("helmreleases"), _helmrelease_revision), "none found")

    pod_metrics = {(_name(m)): m for m in data.get("pod_metrics") or []}
    app_rows = []
    for hpa in sorted(data.get("hpas") or [], key=_name):
        cpu = hpa_cpu(hpa)
        app_rows.append(
            [
                "HPA",
                _name(hpa),
                f"replicas {cpu['current_replicas'] if cpu['current_replicas'] is not None else '?'} current / "
                f"{cpu['desired_replicas'] if cpu['desired_replicas'] is not None else '?'} desired "
                f"(min {cpu['min_replicas']}, max {cpu['max_replicas']})",
                f"CPU {cpu['current'] or 'unknown (no metrics yet)'} of target {cpu['target'] or '-'}",
            ]
        )
    for pod in sorted(data.get("pods") or [], key=_name):
        phase, ready, restarts = _pod_state(pod)
        cpu, mem = _usage(pod_metrics.get(_name(pod)))
        image = ",".join(c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or [])
        app_rows.append(
            ["Pod", _name(pod), f"{phase} ready {ready} restarts {restarts}", f"cpu {cpu} mem {mem} {image}".rstrip()]
        )
    lines += _section("Application", app_rows, "no pods or HPA found")

    if data.get("metrics_available", True) is False:
        lines += ["Metrics", "  (metrics.k8s.io is not served: is metrics-server installed and Ready?)"]
    else:
        node_rows = []
        for node in sorted(data.get("node_metrics") or [], key=_name):
            cpu, mem = _usage(node)
            node_rows.append(["Node", _name(node), f"cpu {cpu}", f"mem {mem}"])
        all_pods = data.get("pod_metrics") or []
        if all_pods:
            total_cpu = sum(
                parse_cpu(c.get("usage", {}).get("cpu", 0)) for m in all_pods for c in m.get("containers") or []
            )
            total_mem = sum(
                parse_memory(c.get("usage", {}).get("memory", 0)) for m in all_pods for c in m.get("containers") or []
            )
            node_rows.append(
                [
                    "Pods",
                    f"{len(all_pods)} with metrics",
                    f"cpu {format_cpu(total_cpu)}",
                    f"mem {format_memory(total_mem)}",
                ]
            )
        lines += _section("Metrics", node_rows, "no node or pod metrics yet")

    warnings = recent_warnings(data.get("events"), int(data.get("events_limit", 10)))
    rows = [[w["time"] or "-", w["object"], w["reason"], _clip(f"{w['message']} (x{w['count']})")] for w in warnings]
    lines += _section("Recent Warning events (newest first)", rows, "none")
    return lines
