"""Tests of the load_test_keep_sampling filter (the role's cooldown loop uses it; the logic is tested in
tests/unit/plugins/module_utils/test_ab_load_report_utils.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.filewcount.gitops.plugins.filter import load_test_keep_sampling

KEEP = load_test_keep_sampling.FilterModule().filters()["load_test_keep_sampling"]
SAMPLES = [
    {"time": 0, "hpa_status": {"currentReplicas": 3, "desiredReplicas": 3}},
    {"time": 200, "hpa_status": {"currentReplicas": 3, "desiredReplicas": 3}},
]


def test_values_arrive_as_ansible_passes_them():
    # The role passes the end of the load as text (a fact) and the cooldown as an int.
    assert KEEP(SAMPLES, "120.5", 200.0, 540) is False
    assert KEEP(SAMPLES, "120.5", 130.0, 540) is True
    assert KEEP(SAMPLES, "120.5", 130.0, 540, settle=5) is False


def test_bad_input_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match=r"load_test_keep_sampling: .*numeric 'time'"):
        KEEP([{"hpa_status": {}}], 0, 1, 10)
    with pytest.raises(AnsibleFilterError, match="load_test_keep_sampling"):
        KEEP(SAMPLES, "not a time", 1, 10)
