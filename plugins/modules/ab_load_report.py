#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ab_load_report
short_description: Write the report of an ab load test (results.json, report.md, a PNG chart)
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
description:
  - Combines the registered result of M(filewcount.gitops.ab_load_test) with the autoscaler samples taken while
    it ran and writes C(results.json), C(report.md) and C(chart.png) into a directory.
  - The chart shows requests per second and latency percentiles (p50, p95, p99) per second of the run, from
    ab's C(-g) file, and the HPA's current and desired replicas, the running pods and the CPU utilisation.
  - Files are only rewritten when their content differs.
requirements:
  - matplotlib (for the chart; set O(chart=false) without it).
options:
  dest:
    description: Report directory; created when missing.
    type: path
    required: true
  load_test:
    description: The registered result of M(filewcount.gitops.ab_load_test) (it must have run outside check mode).
    type: dict
    required: true
  samples:
    description:
      - Samples taken during the run, each with C(time) (epoch seconds), C(hpa_status) (the HPA's C(status)),
        C(pods_total) and C(pods_running).
    type: list
    elements: dict
    default: []
  url:
    description: The URL that was loaded, for the report.
    type: str
  started:
    description: When the run started (any text, for example an ISO 8601 time), for the report.
    type: str
  load_ended:
    description:
      - When ab finished, in epoch seconds. Samples from then on show how the autoscaler scaled back down; the
        report and the chart mark the moment.
    type: float
  title:
    description: Title of the chart.
    type: str
    default: Load test
  chart:
    description: Draw C(chart.png).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reports whether files would change and writes nothing.
  diff_mode:
    support: none
    description: Nothing to compare; the module reports no diff.
  idempotent:
    support: full
    description: Same inputs give the same files, so a second run reports C(changed=false).
seealso:
  - module: filewcount.gitops.ab_load_test
"""

EXAMPLES = r"""
- name: Write the report of the load test
  filewcount.gitops.ab_load_report:
    dest: /tmp/load-tests/20261124T092000Z
    load_test: "{{ load }}"
    samples: "{{ hpa_samples }}"
    url: http://localhost:8080/
    title: filewcount under ab -n 10000 -c 100
"""

RETURN = r"""
files:
  description: Paths of the files in O(dest), keyed by file name.
  returned: always
  type: dict
  sample:
    results.json: /tmp/load-tests/20261124T092000Z/results.json
    report.md: /tmp/load-tests/20261124T092000Z/report.md
    chart.png: /tmp/load-tests/20261124T092000Z/chart.png
hpa:
  description:
    - C(samples), C(samples_after_load), C(initial_replicas), C(max_current_replicas), C(max_desired_replicas),
      C(final_replicas), C(max_cpu_percent), C(max_request_rate), C(scaled_up) and C(scaled_down) (V(null)
      without samples).
    - C(max_request_rate) is the highest request rate (requests per second, all pods) that the HPA's external
      metric read, such as KEDA's Prometheus trigger; V(null) when the HPA has no external metric.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_load_report import (  # noqa: E402
    LoadReportError,
    build_results,
    write_report,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "load_test": {"type": "dict", "required": True},
            "samples": {"type": "list", "elements": "dict", "default": []},
            "url": {"type": "str"},
            "started": {"type": "str"},
            "load_ended": {"type": "float"},
            "title": {"type": "str", "default": "Load test"},
            "chart": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        results = build_results(
            params["load_test"], params["samples"], params["url"], params["started"], params["load_ended"]
        )
        written = write_report(
            params["dest"], results, chart=params["chart"], title=params["title"], check_mode=module.check_mode
        )
    except LoadReportError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=written["changed"], files=written["files"], hpa=results["hpa"])


if __name__ == "__main__":
    main()
