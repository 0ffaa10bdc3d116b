# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that judge Kubernetes/Flux health and format reports; the logic lives in module_utils."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.filewcount.gitops.plugins.module_utils.k8s_compare import drifted
from ansible_collections.filewcount.gitops.plugins.module_utils.k8s_health import (
    HealthError,
    condition_status,
    describe_condition,
    describe_warnings,
    format_phase_durations,
    hpa_cpu,
    load_balancer_url,
    not_ready,
    phase_durations,
    recent_warnings,
    rollout_state,
    target_problems,
)
from ansible_collections.filewcount.gitops.plugins.module_utils.status_report import build_report


def _wrap(func):
    def _filter(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except HealthError as exc:
            raise AnsibleFilterError(f"{func.__name__}: {exc}") from exc

    _filter.__name__ = func.__name__
    _filter.__doc__ = func.__doc__
    return _filter


def _status_report(data):
    return "\n".join(build_report(data))


class FilterModule:
    """filewcount.gitops health filters."""

    def filters(self):
        return {
            "condition_status": _wrap(condition_status),
            "describe_condition": _wrap(describe_condition),
            "not_ready": _wrap(not_ready),
            "rollout_state": _wrap(rollout_state),
            "hpa_cpu": _wrap(hpa_cpu),
            "prometheus_target_problems": _wrap(target_problems),
            "recent_warnings": _wrap(recent_warnings),
            "describe_warnings": _wrap(describe_warnings),
            "phase_durations": _wrap(phase_durations),
            "format_phase_durations": _wrap(format_phase_durations),
            "status_report": _wrap(_status_report),
            "k8s_drifted": _wrap(drifted),
            "load_balancer_url": _wrap(load_balancer_url),
        }
