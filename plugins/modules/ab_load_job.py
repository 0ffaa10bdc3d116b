#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ab_load_job
short_description: Describe the Kubernetes Job that runs ab inside the cluster, or read its pod's log
version_added: 0.2.0
author:
  - filewcount.gitops maintainers (@filewcount)
description:
  - Without O(log), returns the batch/v1 Job (RV(job)) that runs C(ab) once in the cluster with the same flags
    as M(filewcount.gitops.ab_load_test) builds, against a Service's cluster DNS name, so kube-proxy spreads
    ab's connections over every ready endpoint. Create it with M(kubernetes.core.k8s).
  - With O(log), the log of the Job's pod, returns what M(filewcount.gitops.ab_load_test) returns for a local
    run (RV(report), RV(percentages_ms), RV(timeline), thresholds). The container prints ab's report, then its
    stderr, the C(-e) CSV and the C(-g) file (gzip, base64) after marker lines, then ab's exit code.
  - It touches nothing (no cluster access), so C(changed) is always V(false); it runs the same in check mode.
attributes:
  check_mode:
    support: full
    description: Builds and returns the Job or parses the log as in a normal run; the module changes nothing anyway.
  diff_mode:
    support: none
    description: Reports no diff.
  idempotent:
    support: full
    description: It only builds a manifest or parses text, so the same input gives the same result.
options:
  url:
    description: The URL ab loads from inside the cluster; a Service's cluster DNS name spreads over its pods.
    type: str
    default: http://filewcount.filewcount.svc.cluster.local/
  requests:
    description: Number of requests (C(-n)). Set this, O(time_limit), or both.
    type: int
  concurrency:
    description: Requests in flight at a time (C(-c)).
    type: int
    default: 1
  time_limit:
    description: Stop after this many seconds (C(-t)).
    type: int
  keep_alive:
    description: Reuse connections with HTTP keep-alive (C(-k)).
    type: bool
    default: false
  socket_timeout:
    description: Seconds to wait for each response (C(-s)).
    type: int
  headers:
    description: Extra request headers (C(-H)); they are in the Job's spec, so put no credentials here.
    type: dict
    default: {}
  tls_protocol:
    description:
      - The SSL/TLS protocol ab speaks to an https:// O(url) (C(-f)); ab's own default when unset.
      - ab does not verify the server's certificate, and sends SNI only for a host name (not for an IP address).
    type: str
    choices: [TLS1, TLS1.1, TLS1.2, TLS1.3, ALL]
  variable_length:
    description: Accept responses of varying length (C(-l)).
    type: bool
    default: false
  ab_path:
    description: ab in the image.
    type: str
    default: /usr/local/apache2/bin/ab
  name:
    description: The Job's name.
    type: str
    required: true
  namespace:
    description: The Job's namespace.
    type: str
    required: true
  image:
    description: An image with C(/bin/sh), C(gzip), C(base64) and ab at O(ab_path).
    type: str
    required: true
  run_as_user:
    description: The numeric user the container runs as (C(runAsNonRoot) needs one when the image names none).
    type: int
  resources:
    description: The container's resource requests and limits.
    type: dict
    default: {}
  deadline:
    description: Seconds after which Kubernetes stops the Job (C(activeDeadlineSeconds)).
    type: int
    default: 900
  ttl:
    description: Seconds after it finished that Kubernetes deletes the Job (C(ttlSecondsAfterFinished)).
    type: int
    default: 600
  log:
    description: The log of the Job's pod; when set, the module parses it instead of returning the Job.
    type: str
  thresholds:
    description: Limits checked when O(log) is parsed, as M(filewcount.gitops.ab_load_test) takes them.
    type: dict
    default: {}
    suboptions:
      max_failed_requests:
        description: Most failed requests.
        type: int
      max_non_2xx:
        description: Most non-2xx responses.
        type: int
      max_p95_ms:
        description: Highest 95th percentile latency in ms.
        type: float
      max_p99_ms:
        description: Highest 99th percentile latency in ms.
        type: float
      min_requests_per_second:
        description: Lowest throughput.
        type: float
"""

EXAMPLES = r"""
- name: Describe the load-test Job
  filewcount.gitops.ab_load_job:
    name: filewcount-load-test-20260101t000000z
    namespace: filewcount
    image: httpd:2.4.69-alpine
    run_as_user: 82
    time_limit: 60
    requests: 1000000
    concurrency: 100
  register: described

- name: Create it
  kubernetes.core.k8s:
    definition: "{{ described.job }}"

- name: Parse its pod's log
  filewcount.gitops.ab_load_job:
    name: filewcount-load-test-20260101t000000z
    namespace: filewcount
    image: httpd:2.4.69-alpine
    time_limit: 60
    requests: 1000000
    concurrency: 100
    log: "{{ pod_log.log }}"
"""

RETURN = r"""
job:
  description: The Job to create (without O(log)).
  returned: when log is not set
  type: dict
cmd:
  description: ab's argv in the container.
  returned: always
  type: list
  elements: str
report:
  description: ab's report as M(filewcount.gitops.ab_load_test) returns it.
  returned: when log is set
  type: dict
percentages_ms:
  description: The C(-e) percentiles.
  returned: when log is set
  type: dict
timeline:
  description: Requests and latency per second from the C(-g) file.
  returned: when log is set
  type: dict
stdout:
  description: ab's own report.
  returned: when log is set
  type: str
passed:
  description: Whether every threshold held.
  returned: when log is set
  type: bool
broken_thresholds:
  description: One entry per broken threshold with C(name), C(limit), C(actual) and C(message).
  returned: when log is set
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_job import (  # noqa: E402
    job_argv,
    job_manifest,
    job_outcome,
)
from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import (  # noqa: E402
    LOAD_ARGUMENT_SPEC,
    LOAD_ARGV_OPTIONS,
    AbReportError,
    AbRunError,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://filewcount.filewcount.svc.cluster.local/"},
            **LOAD_ARGUMENT_SPEC,
            "ab_path": {"type": "str", "default": "/usr/local/apache2/bin/ab"},
            "name": {"type": "str", "required": True},
            "namespace": {"type": "str", "required": True},
            "image": {"type": "str", "required": True},
            "run_as_user": {"type": "int"},
            "resources": {"type": "dict", "default": {}},
            "deadline": {"type": "int", "default": 900},
            "ttl": {"type": "int", "default": 600},
            "log": {"type": "str"},
        },
        required_one_of=[("requests", "time_limit")],
        supports_check_mode=True,
    )
    params = module.params
    url = params["url"]
    thresholds = {key: value for key, value in (params["thresholds"] or {}).items() if value is not None}
    try:
        argv = job_argv(url, params["ab_path"], {key: params[key] for key in LOAD_ARGV_OPTIONS})
        if params["log"] is None:
            job = job_manifest(
                params["name"],
                params["namespace"],
                params["image"],
                argv,
                deadline_s=params["deadline"],
                ttl_s=params["ttl"],
                resources=params["resources"],
                run_as_user=params["run_as_user"],
            )
            module.exit_json(changed=False, job=job, cmd=argv)
        result = job_outcome(params["log"], argv, url, thresholds)
    except AbRunError as error:
        module.fail_json(
            msg=f"The load-test Job {params['namespace']}/{params['name']} failed: {error}",
            rc=error.rc,
            reason=error.reason,
            completed_requests=error.completed,
        )
    except AbReportError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
