# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ab_parse: parse the report ApacheBench (ab) prints; see DOCUMENTATION."""

from __future__ import annotations

DOCUMENTATION = r"""
name: ab_parse
short_description: Parse the report ApacheBench (ab) prints
version_added: 0.1.0
author: filewcount.gitops contributors
description:
  - Turns the stdout of C(ab) (ApacheBench 2.3) into a dictionary with typed numbers, for example a report
    saved earlier or the C(stdout) of an M(ansible.builtin.command) task.
  - Lines that ab prints only when they apply (failure breakdown, write errors, non-2xx responses, body sent)
    count as V(0) when the summary is present; C(keep_alive_requests) stays V(null) without C(-k).
  - Unknown summary lines, such as the TLS lines of newer builds, are ignored.
  - Text without statistics (ab failed, or the text was cut) fails the task with one sentence that says why.
  - Companion filters M(filewcount.gitops.ab_parse_csv) and M(filewcount.gitops.ab_parse_gnuplot) read the
    C(-e) and C(-g) files.
options:
  _input:
    description: The stdout of ab.
    type: str
    required: true
seealso:
  - module: filewcount.gitops.ab_load_test
  - plugin: filewcount.gitops.ab_parse_csv
    plugin_type: filter
  - plugin: filewcount.gitops.ab_parse_gnuplot
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Parse a saved ab report
  ansible.builtin.set_fact:
    ab_report: "{{ lookup('ansible.builtin.file', 'ab-output.txt') | filewcount.gitops.ab_parse }}"

- name: Show the throughput and the 95th percentile
  ansible.builtin.debug:
    msg: "{{ ab_report.requests_per_second }} req/s, p95 {{ ab_report.percentiles_ms['95'] }} ms"
"""

RETURN = r"""
_value:
  description:
    - The parsed report; keys are always present, V(null) where ab did not print the value.
  type: dict
  contains:
    server:
      description: C(software), C(hostname) and C(port) of the server ab talked to.
      type: dict
    document:
      description: C(path) and C(length_bytes) (V(null) with C(-l), the variable-length mode).
      type: dict
    concurrency:
      description: Concurrency level.
      type: int
    time_taken_s:
      description: Time taken for the tests, in seconds.
      type: float
    complete_requests:
      description: Complete requests.
      type: int
    failed_requests:
      description: Failed requests.
      type: int
    failed_breakdown:
      description: Failed requests by cause, C(connect), C(receive), C(length) and C(exceptions).
      type: dict
    write_errors:
      description: Write errors.
      type: int
    non_2xx_responses:
      description: Responses whose status was not 2xx.
      type: int
    keep_alive_requests:
      description: Keep-alive requests; V(null) when ab ran without C(-k).
      type: int
    total_body_sent_bytes:
      description: Request body bytes sent (POST or PUT).
      type: int
    total_transferred_bytes:
      description: Bytes received, headers included.
      type: int
    html_transferred_bytes:
      description: Body bytes received.
      type: int
    requests_per_second:
      description: Mean requests per second.
      type: float
    time_per_request_ms:
      description: Mean time per request, in milliseconds.
      type: float
    time_per_request_all_ms:
      description: Mean time per request across all concurrent requests, in milliseconds.
      type: float
    transfer_rate_kbytes_s:
      description: Received kilobytes per second.
      type: float
    connection_times_ms:
      description:
        - C(connect), C(processing), C(waiting) and C(total), each with C(min), C(mean), C(sd), C(median)
          and C(max) in milliseconds (C(sd) and C(median) are V(null) with C(-S)).
      type: dict
    percentiles_ms:
      description:
        - Keys C("50"), C("66"), C("75"), C("80"), C("90"), C("95"), C("98"), C("99"), C("100") to milliseconds.
      type: dict
"""

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import AbReportError, parse_stdout  # noqa: E402


def ab_parse(data):
    """Apply parse_stdout and turn its typed error into an Ansible filter error."""
    try:
        return parse_stdout(data)
    except AbReportError as error:
        raise AnsibleFilterError(f"ab_parse: {error}") from error


class FilterModule:
    """ab_parse filter."""

    def filters(self):
        return {"ab_parse": ab_parse}
