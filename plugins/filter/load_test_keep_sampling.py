# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter load_test_keep_sampling: whether the load test should sample the autoscaler again; see DOCUMENTATION."""

from __future__ import annotations

DOCUMENTATION = r"""
name: load_test_keep_sampling
short_description: Decide whether to sample the autoscaler again after a load test
version_added: 0.1.0
author: filewcount.gitops contributors
description:
  - Used by the role filewcount.gitops.load_test after ab has finished, so the report shows the scale-down that
    follows the load.
  - Returns V(false) once O(cooldown) seconds have passed since the load ended, when the samples found no HPA, or
    when O(settle) seconds have passed and the last sample has its current and desired replicas back at the
    count of the first sample. Otherwise it returns V(true).
options:
  _input:
    description:
      - The samples taken so far, each with C(time) (epoch seconds) and C(hpa_status) (the HPA's C(status)).
    type: list
    elements: dict
    required: true
  load_ended:
    description: When ab finished, in epoch seconds.
    type: float
    required: true
  now:
    description: The current time, in epoch seconds.
    type: float
    required: true
  cooldown:
    description: Most seconds to keep sampling after the load.
    type: float
    required: true
  settle:
    description:
      - Seconds after the load before replicas back at the start end the sampling. The default, 45, is
        metrics-server's 15 s resolution plus the HPA's 15 s sync period plus a margin.
    type: float
    default: 45
"""

EXAMPLES = r"""
- name: Sample again while the autoscaler has not settled
  ansible.builtin.include_tasks: cooldown.yml
  when: samples | filewcount.gitops.load_test_keep_sampling(load_ended, now().timestamp(), 540)
"""

RETURN = r"""
_value:
  description: Whether to take another sample.
  type: bool
"""

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_load_report import (  # noqa: E402
    SETTLE_SECONDS,
    LoadReportError,
    keep_sampling,
)


def load_test_keep_sampling(samples, load_ended, now, cooldown, settle=SETTLE_SECONDS):
    """Apply keep_sampling and turn its typed error into an Ansible filter error."""
    try:
        return keep_sampling(samples, float(load_ended), float(now), float(cooldown), float(settle))
    except (LoadReportError, TypeError, ValueError) as error:
        raise AnsibleFilterError(f"load_test_keep_sampling: {error}") from error


class FilterModule:
    """load_test_keep_sampling filter."""

    def filters(self):
        return {"load_test_keep_sampling": load_test_keep_sampling}
