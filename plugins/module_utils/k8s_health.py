# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers that judge the health of Kubernetes and Flux objects.

Used by the roles ``monitoring`` and ``filewcount``, the status report and the upgrade playbook through the
filters in ``plugins/filter/health.py``. Everything here works on plain dicts as returned by
``kubernetes.core.k8s_info`` and imports without Ansible.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any


class HealthError(ValueError):
    """Raised when an input does not have the shape the helpers expect."""


# --------------------------------------------------------------------------------------------------- conditions
def condition(obj: Mapping[str, Any] | None, ctype: str = "Ready") -> dict[str, Any] | None:
    """Return the status condition of type ``ctype`` of ``obj``, or None."""
    if not obj:
        return None
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def condition_status(objs: Any, ctype: str = "Ready") -> str:
    """Return "True"/"False"/"Unknown" for the condition of the first object (a dict or a list of dicts).

    "Missing" when there is no object at all, "Unknown" when the object has no such condition yet. For Flux
    objects a Ready=True that is older than the object's generation counts as "Unknown" (still reconciling).
    """
    obj = _first(objs)
    if obj is None:
        return "Missing"
    cond = condition(obj, ctype)
    if cond is None:
        return "Unknown"
    status = str(cond.get("status", "Unknown"))
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if status == "True" and generation is not None and observed is not None and observed < generation:
        return "Unknown"
    return status


def describe_condition(objs: Any, ctype: str = "Ready") -> str:
    """One line naming the object and its condition, for failure messages."""
    obj = _first(objs)
    if obj is None:
        return "object not found"
    cond = condition(obj, ctype)
    name = _ref(obj)
    if cond is None:
        return f"{name}: no {ctype} condition reported yet"
    reason = cond.get("reason") or "-"
    message = (cond.get("message") or "").strip() or "-"
    return f"{name}: {ctype}={cond.get('status', 'Unknown')} reason={reason} message={message}"


def not_ready(results: Iterable[Mapping[str, Any]] | None, ctype: str = "Ready", kind: str = "object") -> list[str]:
    """Describe every registered ``k8s_info`` loop result whose object is not ``ctype``=True.

    Each result needs ``item`` (with ``name`` and ``namespace``) and ``resources``; a result without
    ``resources`` is an API error and is described with its ``msg``.
    """
    problems = []
    for res in results or []:
        item = res.get("item") or {}
        ref = f"{kind} {item.get('namespace', '?')}/{item.get('name', '?')}"
        if "resources" not in res:
            problems.append(f"{ref}: the API call failed: {res.get('msg', 'no message')}")
        elif not res["resources"]:
            problems.append(f"{ref}: not found (has Flux applied it yet?)")
        elif condition_status(res["resources"], ctype) != "True":
            problems.append(describe_condition(res["resources"], ctype))
    return problems


# ----------------------------------------------------------------------------------------------- deployments
def rollout_state(objs: Any, image: str | None = None) -> dict[str, Any]:
    """Judge a Deployment's rollout like ``kubectl rollout status`` does, plus zero unavailable replicas.

    Returns ``complete`` (bool), ``reason`` (one sentence), the replica counters and the container images.
    When ``image`` is given the rollout is only complete once the pod template uses that image.
    """
    dep = _first(objs)
    if dep is None:
        return {"complete": False, "reason": "the Deployment does not exist", "images": []}
    meta = dep.get("metadata") or {}
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    counts = {
        "replicas": want,
        "updated": int(status.get("updatedReplicas") or 0),
        "ready": int(status.get("readyReplicas") or 0),
        "available": int(status.get("availableReplicas") or 0),
        "unavailable": int(status.get("unavailableReplicas") or 0),
        "total": int(status.get("replicas") or 0),
    }
    images = [c.get("image", "") for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []]
    result: dict[str, Any] = {"complete": False, "images": images, **counts}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    progressing = condition(dep, "Progressing") or {}
    if image is not None and image not in images:
        result["reason"] = f"the pod template still uses {', '.join(images) or 'no image'}, waiting for {image}"
    elif generation is not None and (observed is None or observed < generation):
        result["reason"] = f"the controller has not observed generation {generation} yet (observed {observed})"
    elif progressing.get("reason") == "ProgressDeadlineExceeded":
        result["reason"] = f"the rollout exceeded its progress deadline: {progressing.get('message', '')}".strip()
    elif counts["updated"] < want:
        result["reason"] = f"{counts['updated']} of {want} replicas updated"
    elif counts["total"] > counts["updated"]:
        result["reason"] = f"{counts['total'] - counts['updated']} old replicas pending termination"
    elif counts["available"] < want:
        result["reason"] = f"{counts['available']} of {want} updated replicas available"
    elif counts["unavailable"] > 0:
        result["reason"] = f"{counts['unavailable']} replicas unavailable"
    else:
        result["complete"] = True
        result["reason"] = f"{want} of {want} replicas updated and available"
    return result


# ------------------------------------------------------------------------------------------------------- HPA
def hpa_cpu(objs: Any) -> dict[str, Any]:
    """Return the CPU reading of an autoscaling/v2 HPA: current and target utilisation, replicas.

    ``current`` is None while the HPA cannot read metrics (status.currentMetrics has no cpu entry).
    """
    hpa = _first(objs)
    if hpa is None:
        return {"found": False, "current": None, "target": None, "current_replicas": None, "desired_replicas": None}
    spec = hpa.get("spec") or {}
    status = hpa.get("status") or {}
    target = None
    for metric in spec.get("metrics") or []:
        res = metric.get("resource") or {}
        if metric.get("type") == "Resource" and res.get("name") == "cpu":
            tgt = res.get("target") or {}
            target = _metric_text(tgt.get("averageUtilization"), tgt.get("averageValue") or tgt.get("value"))
    current = None
    for metric in status.get("currentMetrics") or []:
        res = metric.get("resource") or {}
        if metric.get("type") == "Resource" and res.get("name") == "cpu":
            cur = res.get("current") or {}
            current = _metric_text(cur.get("averageUtilization"), cur.get("averageValue") or cur.get("value"))
    return {
        "found": True,
        "current": current,
        "target": target,
        "current_replicas": status.get("currentReplicas"),
        "desired_replicas": status.get("desiredReplicas"),
        "min_replicas": spec.get("minReplicas", 1),
        "max_replicas": spec.get("maxReplicas"),
    }


def _metric_text(utilization: Any, value: Any) -> str | None:
    if utilization is not None:
        return f"{utilization}%"
    if value is not None:
        return format_cpu(parse_cpu(value))
    return None


# ------------------------------------------------------------------------------------------------ quantities
_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(value: Any) -> Decimal:
    """Parse a Kubernetes resource quantity ("250m", "1", "12345n", "100Mi", "1e3") into a Decimal."""
    if isinstance(value, bool):
        raise HealthError(f"not a Kubernetes quantity: {value!r}")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise HealthError(f"not a Kubernetes quantity: {value!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise HealthError(f"not a Kubernetes quantity: {value!r}") from exc
    return number * _SUFFIXES[match.group(2) or ""]


def parse_cpu(value: Any) -> float:
    """CPU quantity in millicores."""
    return float(parse_quantity(value) * 1000)


def parse_memory(value: Any) -> int:
    """Memory quantity in bytes."""
    return int(parse_quantity(value))


def format_cpu(millicores: float) -> str:
    return f"{millicores / 1000:.2f}" if millicores >= 10000 else f"{round(millicores)}m"


def format_memory(num_bytes: int) -> str:
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if num_bytes >= size:
            return f"{num_bytes / size:.1f}{unit}" if unit == "Gi" else f"{round(num_bytes / size)}{unit}"
    return f"{num_bytes}B"


# ---------------------------------------------------------------------------------------- Prometheus targets
DEFAULT_REQUIRED_TARGETS: list[dict[str, Any]] = [
    {"name": "kubelet", "labels": {"job": "kubelet", "metrics_path": "/metrics"}},
    {"name": "cAdvisor", "labels": {"job": "kubelet", "metrics_path": "/metrics/cadvisor"}},
    {"name": "kube-state-metrics", "labels": {"job": ".*kube-state-metrics"}},
    {"name": "Flux source-controller", "labels": {"namespace": "flux-system", "pod": "source-controller-.*"}},
    {"name": "Flux kustomize-controller", "labels": {"namespace": "flux-system", "pod": "kustomize-controller-.*"}},
    {"name": "Flux helm-controller", "labels": {"namespace": "flux-system", "pod": "helm-controller-.*"}},
    {
        "name": "Flux notification-controller",
        "labels": {"namespace": "flux-system", "pod": "notification-controller-.*"},
    },
]


def target_problems(response: Any, required: Iterable[Mapping[str, Any]] | None = None) -> list[str]:
    """Check a Prometheus ``/api/v1/targets`` response: every required group needs at least one target up.

    ``required`` is a list of ``{name, labels}``; each label value is a regular expression that must match the
    whole label value of the target. Returns one sentence per problem (empty list: all good).
    """
    if isinstance(response, (str, bytes)):
        return [f"Prometheus did not return JSON: {str(response)[:200]}"]
    if not isinstance(response, Mapping) or response.get("status") != "success":
        error = response.get("error") if isinstance(response, Mapping) else None
        return [f"Prometheus answered without success: {error or str(response)[:200]}"]
    active = ((response.get("data") or {}).get("activeTargets")) or []
    problems = []
    for group in DEFAULT_REQUIRED_TARGETS if required is None else required:
        try:
            patterns = {k: re.compile(str(v)) for k, v in (group.get("labels") or {}).items()}
        except re.error as exc:
            raise HealthError(f"bad label pattern in required target {group.get('name')!r}: {exc}") from exc
        matching = [
            t for t in active if all(p.fullmatch(str((t.get("labels") or {}).get(k, ""))) for k, p in patterns.items())
        ]
        if not matching:
            wanted = ", ".join(f"{k}=~{v}" for k, v in (group.get("labels") or {}).items())
            problems.append(f"{group.get('name')}: no scrape target with {wanted}")
        elif not any(t.get("health") == "up" for t in matching):
            errors = "; ".join(
                sorted({f"{t.get('scrapeUrl', '?')} {t.get('health')}: {t.get('lastError') or '-'}" for t in matching})
            )
            problems.append(f"{group.get('name')}: {len(matching)} target(s), none up ({errors})")
    return problems


# -------------------------------------------------------------------------------------------------- events
def recent_warnings(events: Iterable[Mapping[str, Any]] | None, limit: int = 10) -> list[dict[str, Any]]:
    """Newest Warning events first, at most ``limit``, as small dicts."""
    rows = []
    for ev in events or []:
        if ev.get("type", "Normal") != "Warning":
            continue
        obj = ev.get("involvedObject") or ev.get("regarding") or {}
        when = (
            ev.get("lastTimestamp")
            or ev.get("eventTime")
            or ev.get("firstTimestamp")
            or (ev.get("metadata") or {}).get("creationTimestamp")
            or ""
        )
        namespace = obj.get("namespace") or (ev.get("metadata") or {}).get("namespace")
        rows.append(
            {
                "time": str(when),
                "object": "/".join(p for p in (obj.get("kind", "?"), namespace, obj.get("name", "?")) if p),
                "reason": ev.get("reason") or "-",
                "message": " ".join(str(ev.get("message") or ev.get("note") or "").split()),
                "count": ev.get("count") or (ev.get("series") or {}).get("count") or 1,
            }
        )
    rows.sort(key=lambda r: r["time"], reverse=True)
    return rows[: max(0, int(limit))]


def describe_warnings(events: Iterable[Mapping[str, Any]] | None, limit: int = 5) -> str:
    rows = recent_warnings(events, limit)
    if not rows:
        return "no recent Warning events"
    return "recent Warning events: " + " | ".join(f"{r['object']} {r['reason']}: {r['message']}" for r in rows)


# ------------------------------------------------------------------------------------------- phase durations
def phase_durations(marks: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Turn ordered marks ``[{phase, at}]`` (``at`` in epoch seconds) into ``[{phase, seconds, text}]``.

    Each phase lasts from its mark to the next one; a final mark named ``end`` closes the last phase and is not
    reported itself. Marks are sorted by time, so re-recording is harmless.
    """
    ordered = sorted(({"phase": str(m["phase"]), "at": float(m["at"])} for m in marks or []), key=lambda m: m["at"])
    rows = []
    for cur, nxt in pairwise(ordered):
        if cur["phase"] == "end":
            continue
        seconds = max(0.0, nxt["at"] - cur["at"])
        rows.append({"phase": cur["phase"], "seconds": round(seconds, 1), "text": format_duration(seconds)})
    if ordered and len(ordered) > 1:
        total = ordered[-1]["at"] - ordered[0]["at"]
        rows.append({"phase": "total", "seconds": round(total, 1), "text": format_duration(total)})
    return rows


def format_phase_durations(marks: Iterable[Mapping[str, Any]] | None) -> str:
    """One line: ``preflight 10s, kind 1m10s, total 1m20s`` (empty when fewer than two marks)."""
    return ", ".join(f"{row['phase']} {row['text']}" for row in phase_durations(marks))


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, sec = divmod(seconds, 60)
    return f"{minutes}m{sec:02d}s" if minutes else f"{sec}s"


# --------------------------------------------------------------------------------------------------- helpers
def _first(objs: Any) -> Mapping[str, Any] | None:
    if objs is None:
        return None
    if isinstance(objs, Mapping):
        if "resources" in objs and "kind" not in objs:  # a registered k8s_info result
            return _first(objs.get("resources"))
        return objs
    if isinstance(objs, (list, tuple)):
        return objs[0] if objs else None
    raise HealthError(f"expected a Kubernetes object or a list of them, got {type(objs).__name__}")


def _ref(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind', 'object')} {ns + '/' if ns else ''}{meta.get('name', '?')}"


def load_balancer_url(objs: Any, path: str = "/") -> str:
    """http://<address>[:<port>]<path> of a Service of type LoadBalancer once it has an address, else "".

    The address is the first ingress entry's hostname (AWS load balancers) or IP; the port is the Service's first
    port, left out when it is 80. Anything else (no Service, another type, no address yet) gives "", so the caller
    falls back to a port-forward.
    """
    service = _first(objs)
    if not service:
        return ""
    spec = service.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return ""
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    for entry in ingress:
        address = (entry or {}).get("hostname") or (entry or {}).get("ip")
        if address:
            port = int(((spec.get("ports") or [{}])[0] or {}).get("port") or 80)
            host = f"[{address}]" if ":" in address else address
            return f"http://{host}{'' if port == 80 else f':{port}'}{path}"
    return ""
