#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ab_load_test
short_description: Load-test an HTTP endpoint with ApacheBench (ab) and check thresholds
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
description:
  - Runs C(ab) with an argument list (never through a shell), parses every section of its report (summary,
    failure breakdown, non-2xx responses, connection times, percentiles) and, when asked, the C(-e) CSV and
    C(-g) per-request file, and returns typed numbers.
  - Compares the result with optional thresholds and fails with one sentence per broken threshold, or with
    ab's own reason when ab itself failed (connection refused, reset, socket timeout).
  - It sends load but changes no state, so C(changed) is always V(false). In check mode it sends no load.
requirements:
  - C(ab) (ApacheBench 2.3) from C(apache2-utils) (Debian, Ubuntu) or C(httpd-tools) (Fedora, RHEL).
options:
  url:
    description:
      - The C(http://) or C(https://) URL to load. A URL without a path gets V(/).
    type: str
    default: http://localhost:8080/
  requests:
    description:
      - Number of requests (C(-n)). Set this, O(time_limit), or both.
    type: int
  concurrency:
    description: Requests in flight at a time (C(-c)); not more than O(requests).
    type: int
    default: 1
  time_limit:
    description:
      - Stop after this many seconds (C(-t)). ab then stops after 50000 requests unless O(requests) is set too.
    type: int
  keep_alive:
    description: Reuse connections with HTTP keep-alive (C(-k)).
    type: bool
    default: false
  socket_timeout:
    description: Seconds to wait for each response before ab gives up (C(-s)); ab's default is 30.
    type: int
  headers:
    description:
      - Extra request headers (C(-H)), name to value.
      - ab receives them on its command line, which other local users can see; do not put credentials here.
    type: dict
    default: {}
  method:
    description:
      - HTTP method. V(POST) and V(PUT) need O(body_file); V(HEAD) uses C(-i); others use C(-m).
    type: str
    choices: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS]
    default: GET
  body_file:
    description: File whose content is sent as the request body (C(-p) or C(-u)).
    type: path
  content_type:
    description: Content-Type of the body (C(-T)); V(application/octet-stream) when O(body_file) is set without it.
    type: str
  tls_protocol:
    description:
      - The SSL/TLS protocol ab speaks to an https:// O(url) (C(-f)); ab's own default when unset.
      - ab does not verify the server's certificate, and sends SNI only for a host name (not for an IP address).
    type: str
    choices: [TLS1, TLS1.1, TLS1.2, TLS1.3, ALL]
  variable_length:
    description:
      - Accept responses of varying length (C(-l)), for dynamic pages; otherwise ab counts them as length failures.
    type: bool
    default: false
  continue_on_receive_errors:
    description:
      - Keep going after socket receive errors such as resets (C(-r)) and count them as failed requests.
    type: bool
    default: false
  ab_path:
    description: The ab executable, a name looked up on C(PATH) or a path.
    type: str
    default: ab
  csv_file:
    description: Where ab writes its percentile CSV (C(-e)); the module parses it into RV(percentages_ms).
    type: path
  gnuplot_file:
    description:
      - Where ab writes one row per request (C(-g)); the module derives requests and latency per second from it
        into RV(timeline).
    type: path
  thresholds:
    description: Limits the run must keep. Unset limits are not checked.
    type: dict
    default: {}
    suboptions:
      max_failed_requests:
        description: Most failed requests allowed.
        type: int
      max_non_2xx:
        description: Most non-2xx responses allowed.
        type: int
      max_p95_ms:
        description: Highest 95th percentile latency allowed, in milliseconds.
        type: float
      max_p99_ms:
        description: Highest 99th percentile latency allowed, in milliseconds.
        type: float
      min_requests_per_second:
        description: Lowest mean throughput allowed, in requests per second.
        type: float
  fail_on_thresholds:
    description:
      - Fail the task when a threshold is broken. With V(false) the task succeeds and returns RV(passed) and
        RV(broken_thresholds), so a play can save the results first and fail afterwards.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: In check mode ab is not run and no load is sent; RV(cmd) shows what would run.
  diff_mode:
    support: none
    description: Nothing to compare; the module reports no diff.
  idempotent:
    support: full
    description: It changes no state; every run reports C(changed=false).
seealso:
  - plugin: filewcount.gitops.ab_parse
    plugin_type: filter
notes:
  - The URL is only contacted by ab; the module does no HTTP itself.
"""

EXAMPLES = r"""
- name: Load filewcount like the original experiment and keep the results
  filewcount.gitops.ab_load_test:
    url: http://localhost:8080/
    requests: 10000
    concurrency: 100
    gnuplot_file: /tmp/load/gnuplot.tsv
    thresholds:
      max_failed_requests: 0
      max_p95_ms: 500
      min_requests_per_second: 200
  register: load

- name: Run for 60 seconds with keep-alive, and decide later
  filewcount.gitops.ab_load_test:
    url: http://localhost:8080/
    time_limit: 60
    concurrency: 50
    keep_alive: true
    thresholds:
      max_non_2xx: 0
    fail_on_thresholds: false
  register: soak

- name: POST a JSON body
  filewcount.gitops.ab_load_test:
    url: http://localhost:8080/api
    requests: 500
    concurrency: 10
    method: POST
    body_file: files/body.json
    content_type: application/json
"""

RETURN = r"""
cmd:
  description: The argv ab was (or in check mode would be) run with.
  returned: always
  type: list
  elements: str
rc:
  description: ab's exit code.
  returned: when ab ran
  type: int
stdout:
  description: ab's report as printed.
  returned: when ab ran
  type: str
report:
  description:
    - The parsed report (see the M(filewcount.gitops.ab_parse) filter for every key); V(null) in check mode.
  returned: always
  type: dict
  sample:
    complete_requests: 10000
    failed_requests: 0
    requests_per_second: 812.4
    percentiles_ms: {"50": 110, "95": 240, "99": 380, "100": 1020}
percentages_ms:
  description: Percent served (V("0") to V("100")) to milliseconds, from O(csv_file).
  returned: always; V(null) unless O(csv_file) is set and ab ran
  type: dict
timeline:
  description:
    - Requests and latency per second from O(gnuplot_file) (see the M(filewcount.gitops.ab_parse_gnuplot) filter).
  returned: always; V(null) unless O(gnuplot_file) is set and ab ran
  type: dict
passed:
  description: Whether every threshold held; V(null) in check mode.
  returned: always
  type: bool
broken_thresholds:
  description: One entry per broken threshold with C(name), C(limit), C(actual) and a one-sentence C(message).
  returned: always
  type: list
  elements: dict
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import (  # noqa: E402
    LOAD_ARGUMENT_SPEC,
    LOAD_ARGV_OPTIONS,
    AbReportError,
    AbRunError,
    build_argv,
    run_load_test,
)

# ab_load_job's options plus those of a run on this host (the request body, resets, ab's -e and -g files).
_ARGV_OPTIONS = (
    *LOAD_ARGV_OPTIONS,
    "method",
    "body_file",
    "content_type",
    "continue_on_receive_errors",
    "csv_file",
    "gnuplot_file",
)


def _ab_path(module: AnsibleModule) -> str:
    name = module.params["ab_path"]
    if os.sep in name:
        if not os.access(name, os.X_OK):
            module.fail_json(msg=f"ab_path {name} is not an executable file; fix ab_path or install ab there.")
        return name
    found = module.get_bin_path(name)
    if not found:
        module.fail_json(
            msg=f"{name} is not on PATH; install apache2-utils (Debian, Ubuntu) or httpd-tools (Fedora, RHEL), "
            "or set ab_path."
        )
    return found


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://localhost:8080/"},
            **LOAD_ARGUMENT_SPEC,
            "method": {
                "type": "str",
                "default": "GET",
                "choices": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            },
            "body_file": {"type": "path"},
            "content_type": {"type": "str"},
            "continue_on_receive_errors": {"type": "bool", "default": False},
            "ab_path": {"type": "str", "default": "ab"},
            "csv_file": {"type": "path"},
            "gnuplot_file": {"type": "path"},
            "fail_on_thresholds": {"type": "bool", "default": True},
        },
        required_one_of=[("requests", "time_limit")],
        supports_check_mode=True,
    )
    params = module.params
    url = params["url"]
    argv_options = {key: params[key] for key in _ARGV_OPTIONS}
    thresholds = {key: value for key, value in (params["thresholds"] or {}).items() if value is not None}

    if module.check_mode:
        try:
            cmd = build_argv(url, ab_path=params["ab_path"], **argv_options)
        except AbReportError as error:
            module.fail_json(msg=str(error))
        module.exit_json(
            changed=False,
            cmd=cmd,
            report=None,
            passed=None,
            broken_thresholds=[],
            msg=f"Check mode: ab was not run and no load was sent to {url}.",
        )

    argv_options["ab_path"] = _ab_path(module)
    try:
        outcome = run_load_test(lambda argv: module.run_command(argv, check_rc=False), url, argv_options, thresholds)
    except AbRunError as error:
        module.fail_json(msg=str(error), rc=error.rc, reason=error.reason, completed_requests=error.completed)
    except AbReportError as error:
        module.fail_json(msg=str(error))

    if not outcome["passed"] and params["fail_on_thresholds"]:
        module.fail_json(
            msg=" ".join(item["message"] for item in outcome["broken_thresholds"]), changed=False, **outcome
        )
    module.exit_json(changed=False, **outcome)


if __name__ == "__main__":
    main()
