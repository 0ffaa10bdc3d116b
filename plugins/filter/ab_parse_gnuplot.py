# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ab_parse_gnuplot: see DOCUMENTATION."""

from __future__ import annotations

DOCUMENTATION = r"""
name: ab_parse_gnuplot
short_description: Derive throughput and latency per second from the file ApacheBench writes with -g
version_added: 0.1.0
author: filewcount.gitops contributors
description:
  - Reads the C(ab -g FILE) TSV (one row per request, with the second it started and its times) and counts
    requests and latency percentiles per second of the run.
  - Seconds in which no request started appear with V(0) requests and V(null) latencies.
  - A file with another header or a malformed row fails the task with one sentence that says why.
options:
  _input:
    description: The content of the gnuplot file.
    type: str
    required: true
seealso:
  - plugin: filewcount.gitops.ab_parse
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Show the requests per second of each second of the run
  ansible.builtin.debug:
    msg: "{{ (lookup('ansible.builtin.file', 'gnuplot.tsv') | filewcount.gitops.ab_parse_gnuplot).per_second
             | map(attribute='requests') | list }}"
"""

RETURN = r"""
_value:
  description: Requests and latency over the run.
  type: dict
  contains:
    requests:
      description: Rows (requests) in the file.
      type: int
    start_epoch_s:
      description: Epoch second of the first request; V(null) for an empty file.
      type: int
    duration_s:
      description: Seconds from the first to the last request's start, inclusive.
      type: int
    ttime_ms:
      description: C(mean), C(p50), C(p95), C(p99) and C(max) of the total time of all requests.
      type: dict
    per_second:
      description: One entry per second, C(offset_s), C(epoch_s), C(requests) and C(ttime_ms) as above.
      type: list
      elements: dict
"""

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import AbReportError, parse_gnuplot  # noqa: E402


def ab_parse_gnuplot(data):
    """Apply parse_gnuplot and turn its typed error into an Ansible filter error."""
    try:
        return parse_gnuplot(data)
    except AbReportError as error:
        raise AnsibleFilterError(f"ab_parse_gnuplot: {error}") from error


class FilterModule:
    """ab_parse_gnuplot filter."""

    def filters(self):
        return {"ab_parse_gnuplot": ab_parse_gnuplot}
