"""The load profiles of the role load_test against the autoscaler they are meant to show.

`make load-test` must show a scale-up and the scale-down that follows on the HPA that KEDA makes from
kube/apps/filewcount/scaledobject.yaml: the default profile loads for longer than metrics-server (15 s resolution) and
the HPA (15 s sync) need to react to the CPU trigger, and keeps sampling for as long as the HPA's declared scale-down
takes. The seed's profile stays available as burst.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "load_test"
SCALED_OBJECT = ROOT / "kube" / "apps" / "filewcount" / "scaledobject.yaml"
METRICS_RESOLUTION_S = 15  # metrics-server chart 3.13.1 defaultArgs --metric-resolution=15s
HPA_SYNC_S = 15  # kube-controller-manager --horizontal-pod-autoscaler-sync-period default
# prometheusSpec.scrapeInterval in kube/infrastructure/controllers/kube-prometheus-stack/helmrelease.yaml
PROMETHEUS_SCRAPE_S = 30
AB_IMPLIED_REQUESTS = 50000  # ab -t implies -n 50000


def defaults() -> dict:
    """The role's defaults and its internal vars (the profiles)."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    return {**values, **yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))}


def scaled_object_spec() -> dict:
    return yaml.safe_load(SCALED_OBJECT.read_text(encoding="utf-8"))["spec"]


def hpa_behavior() -> dict:
    """The behavior KEDA copies into the HPA it makes (spec.advanced.horizontalPodAutoscalerConfig)."""
    return scaled_object_spec()["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]


def test_the_default_is_a_time_limited_profile_and_the_seeds_is_kept():
    values = defaults()
    assert values["load_test_profile"] == "sustained"
    profiles = values["__load_test_profiles"]
    assert profiles["burst"] == {"requests": 10000, "concurrency": 100, "time_limit": 0, "cooldown": 60}
    sustained = profiles["sustained"]
    assert sustained["time_limit"] > 0
    # With -t alone ab would stop at 50000 requests, seconds into the run on a fast machine.
    assert sustained["requests"] > AB_IMPLIED_REQUESTS
    for key in ("requests", "concurrency", "time_limit", "cooldown"):
        assert f"__load_test_profiles[load_test_profile].{key}" in values[f"load_test_{key}"]


def test_the_role_samples_the_hpa_keda_makes():
    config = scaled_object_spec()["advanced"]["horizontalPodAutoscalerConfig"]
    assert defaults()["load_test_hpa_name"] == config["name"]


def test_the_sustained_load_outlasts_the_first_scale_up_steps():
    up = hpa_behavior()["scaleUp"]
    assert up.get("stabilizationWindowSeconds", 0) == 0
    period = max(policy["periodSeconds"] for policy in up["policies"])
    # First reaction: a full rate window of the load, then the next sync; then one more scale-up period.
    needed = 2 * METRICS_RESOLUTION_S + HPA_SYNC_S + period
    assert defaults()["__load_test_profiles"]["sustained"]["time_limit"] >= needed


def test_the_sustained_cooldown_covers_the_declared_scale_down():
    spec = scaled_object_spec()
    down = hpa_behavior()["scaleDown"]
    window = down["stabilizationWindowSeconds"]
    [policy] = [p for p in down["policies"] if p["type"] == "Pods"]
    steps = math.ceil((spec["maxReplicaCount"] - spec["minReplicaCount"]) / policy["value"])
    # The first pods go once the window has passed the last high recommendation, then one step per period. The
    # request-rate trigger lags the load the most: its query averages over a range ([1m]) of series Prometheus
    # scrapes every PROMETHEUS_SCRAPE_S, and the HPA asks for it at its next sync; CPU lags less (metrics-server).
    [trigger] = [t for t in spec["triggers"] if t["type"] == "prometheus"]
    rate_window = int(re.search(r"\[(\d+)m\]", trigger["metadata"]["query"]).group(1)) * 60
    lag = max(rate_window + PROMETHEUS_SCRAPE_S, METRICS_RESOLUTION_S) + HPA_SYNC_S
    needed = window + lag + (steps - 1) * policy["periodSeconds"]
    assert defaults()["__load_test_profiles"]["sustained"]["cooldown"] >= needed


def test_the_playbook_leaves_the_load_to_the_profile():
    play = yaml.safe_load((ROOT / "playbooks" / "load_test.yml").read_text(encoding="utf-8"))[0]
    overridden = {"load_test_requests", "load_test_concurrency", "load_test_time_limit", "load_test_cooldown"}
    assert not overridden & set(play.get("vars") or {})
