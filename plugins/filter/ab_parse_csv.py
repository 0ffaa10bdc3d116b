# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ab_parse_csv: see DOCUMENTATION."""

from __future__ import annotations

DOCUMENTATION = r"""
name: ab_parse_csv
short_description: Parse the CSV file that ApacheBench writes with -e
version_added: 0.1.0
author: filewcount.gitops contributors
description:
  - Turns the C(ab -e FILE) CSV (header C(Percentage served,Time in ms), one row per percent from 0 to 100)
    into a dictionary from percent (a string, V("0") to V("100")) to milliseconds.
  - A file with another header or a malformed row fails the task with one sentence that says why.
options:
  _input:
    description: The content of the CSV file.
    type: str
    required: true
seealso:
  - plugin: filewcount.gitops.ab_parse
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Read the 99th percentile from an ab -e file
  ansible.builtin.debug:
    msg: "{{ (lookup('ansible.builtin.file', 'percentiles.csv') | filewcount.gitops.ab_parse_csv)['99'] }} ms"
"""

RETURN = r"""
_value:
  description: Percent served (string keys V("0") to V("100")) to milliseconds.
  type: dict
"""

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import AbReportError, parse_csv  # noqa: E402


def ab_parse_csv(data):
    """Apply parse_csv and turn its typed error into an Ansible filter error."""
    try:
        return parse_csv(data)
    except AbReportError as error:
        raise AnsibleFilterError(f"ab_parse_csv: {error}") from error


class FilterModule:
    """ab_parse_csv filter."""

    def filters(self):
        return {"ab_parse_csv": ab_parse_csv}
