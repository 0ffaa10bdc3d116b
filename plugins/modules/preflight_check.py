#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight_check
short_description: Check that this host can run the local kind GitOps flow
description:
  - Runs read-only checks before a kind cluster is created and fails with one sentence per problem, each naming
    the problem and the fix. Advice that should not stop the run (inotify limits below kind's recommendation, a
    host architecture the filewcount image may not be published for) is a warning, one sentence each.
  - Checks are the docker CLI, the Docker daemon (telling a stopped daemon from a permission problem on its
    socket), the architecture Docker runs (C(docker info), else this machine's), free host ports (a port held by
    this project's own kind cluster counts as free; another holder is named when it can be found), Linux inotify
    limits, free disk where Docker keeps images, importable Python libraries, and the inputs of the chosen mode
    (GITHUB_TOKEN in github mode).
  - Never changes anything.
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
options:
  checks:
    description: Names of the checks to run.
    type: list
    elements: str
    choices: [docker_cli, docker_daemon, arch, ports, inotify, disk, python, mode]
    default: [docker_cli, docker_daemon, arch, ports, inotify, disk, python, mode]
  docker_command:
    description: Name or path of the docker CLI.
    type: str
    default: docker
  cluster_name:
    description:
      - Name of this project's kind cluster.
      - Ports published by its C(<name>-control-plane) container count as free.
    type: str
    default: filewcount
  ports:
    description: Host TCP ports (on 127.0.0.1) the cluster's port mappings will bind.
    type: list
    elements: int
    default: [8080, 8081, 8082]
  mode:
    description: C(local) or C(github); github needs the token variable named by O(token_env) in the environment.
    type: str
    choices: [local, github]
    default: local
  token_env:
    description: Name of the environment variable that holds the GitHub token (its value is never returned).
    type: str
    default: GITHUB_TOKEN
  min_free_disk_gib:
    description: Free space wanted, in GiB, where Docker keeps images and on O(disk_paths).
    type: float
    default: 6
  disk_paths:
    description:
      - Extra host paths whose file systems need O(min_free_disk_gib) free.
      - The nearest existing parent of each path is measured.
    type: list
    elements: path
    default: []
  inotify_min_watches:
    description:
      - C(fs.inotify.max_user_watches) below this fails.
      - The default is the lowest a stock Linux kernel sets (8192), enough for this one-node cluster.
    type: int
    default: 8192
  inotify_min_instances:
    description:
      - C(fs.inotify.max_user_instances) below this fails.
      - The default is the stock Linux kernel default (128), enough for this one-node cluster.
    type: int
    default: 128
  inotify_recommended_watches:
    description:
      - C(fs.inotify.max_user_watches) below this passes with a warning that gives the sysctl command.
      - kind's known issues page recommends 524288 against "too many open files" in clusters with many nodes.
    type: int
    default: 524288
  inotify_recommended_instances:
    description:
      - C(fs.inotify.max_user_instances) below this passes with a warning that gives the sysctl command.
      - kind's known issues page recommends 512 against "too many open files" in clusters with many nodes.
    type: int
    default: 512
  python_modules:
    description: Python modules that must be importable by the interpreter running this module.
    type: list
    elements: str
    default: [kubernetes, yaml, jsonpatch]
attributes:
  check_mode:
    support: full
    description: Runs the same read-only checks in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
"""

EXAMPLES = r"""
- name: Check this host before creating the kind cluster
  filewcount.gitops.preflight_check:
    cluster_name: filewcount
    ports: [8080, 8081, 8082]
    mode: local

- name: Check only the mode inputs
  filewcount.gitops.preflight_check:
    checks: [mode]
    mode: github
"""

RETURN = r"""
checks:
  description: One entry per check that ran.
  returned: always
  type: list
  elements: dict
  sample:
    - name: ports
      ok: true
      skipped: false
      message: ""
      warning: ""
      details: {free: [8080], cluster: [8081], other: {}}
failures:
  description: The one-sentence messages of the failed checks, in order.
  returned: always
  type: list
  elements: str
advice:
  description: The one-sentence warnings of the passed checks, in order (also shown as warnings).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.preflight import (  # noqa: E402
    ALL_CHECKS,
    PreflightError,
    run_checks,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="str", choices=list(ALL_CHECKS), default=list(ALL_CHECKS)),
            docker_command=dict(type="str", default="docker"),
            cluster_name=dict(type="str", default="filewcount"),
            ports=dict(type="list", elements="int", default=[8080, 8081, 8082]),
            mode=dict(type="str", choices=["local", "github"], default="local"),
            token_env=dict(type="str", default="GITHUB_TOKEN", no_log=False),
            min_free_disk_gib=dict(type="float", default=6),
            disk_paths=dict(type="list", elements="path", default=[]),
            inotify_min_watches=dict(type="int", default=8192),
            inotify_min_instances=dict(type="int", default=128),
            inotify_recommended_watches=dict(type="int", default=524288),
            inotify_recommended_instances=dict(type="int", default=512),
            python_modules=dict(type="list", elements="str", default=["kubernetes", "yaml", "jsonpatch"]),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def run(argv):
        return module.run_command(list(argv), check_rc=False)

    try:
        results = run_checks(
            p["checks"],
            docker=p["docker_command"],
            ports=p["ports"],
            cluster_name=p["cluster_name"],
            mode=p["mode"],
            min_free_disk_gib=p["min_free_disk_gib"],
            disk_paths=p["disk_paths"],
            inotify_min_watches=p["inotify_min_watches"],
            inotify_min_instances=p["inotify_min_instances"],
            inotify_recommended_watches=p["inotify_recommended_watches"],
            inotify_recommended_instances=p["inotify_recommended_instances"],
            python_modules=p["python_modules"],
            token_var=p["token_env"],
            run=run,
        )
    except PreflightError as exc:
        msg = f"Preflight could not run: {exc}."
        module.fail_json(msg=msg, checks=[], failures=[msg], advice=[])
    checks = [r.as_dict() for r in results]
    failures = [r.message for r in results if not r.ok]
    advice = [r.warning for r in results if r.ok and r.warning]
    for sentence in advice:
        module.warn(sentence)
    if failures:
        module.fail_json(msg=" ".join(failures), checks=checks, failures=failures, advice=advice, changed=False)
    module.exit_json(changed=False, checks=checks, failures=[], advice=advice)


if __name__ == "__main__":
    main()
