#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kind_cluster
short_description: Create, check or delete a kind cluster from a wanted config
description:
  - Drives the kind CLI (C(kind get clusters), C(kind create cluster), C(kind get kubeconfig),
    C(kind export kubeconfig), C(kind delete cluster)) with argv lists.
  - The wanted config is hashed and the hash is written as the node label C(gitops.filewcount.io/kind-config-hash)
    into the rendered config, so the record travels with the cluster. When the cluster exists the label is read
    back through the Kubernetes API and compared; a different or missing hash fails (or warns) with the command
    that recreates the cluster.
  - The kubeconfig goes to O(kubeconfig) only; the user's own kubeconfig is touched only with
    O(export_user_kubeconfig=true).
  - Reports changed only when it created or deleted the cluster or (re)wrote a kubeconfig.
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
options:
  name:
    description: Cluster name (kind's C(--name)); the kubeconfig context is C(kind-<name>).
    type: str
    required: true
  state:
    description: C(present) creates the cluster when absent and checks its config when it exists; C(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - The wanted kind Cluster config (C(apiVersion kind.x-k8s.io/v1alpha4)), as data. Required with O(state=present).
      - Put the node image (pinned by digest), port mappings and mounts here; they are all part of the hash.
    type: dict
  kubeconfig:
    description: Kubeconfig file the project owns; passed to kind as C(--kubeconfig).
    type: path
    required: true
  kind_command:
    description:
      - Name or path of the kind CLI.
      - With O(state=absent) it may be empty or missing. The module then deletes the cluster as kind's docker
        provider does, without kind and without the network. It lists the node containers labelled
        C(io.x-k8s.kind.cluster=<name>) with C(docker ps -a), removes them with C(docker rm -f -v), and drops the
        C(kind-<name>) entries from O(kubeconfig). When nothing exists it changes nothing.
    type: path
    default: kind
  on_config_change:
    description: What to do when the existing cluster's config hash differs from the wanted one.
    type: str
    choices: [fail, warn]
    default: fail
  wait:
    description: Seconds passed to C(kind create cluster --wait) (0 leaves waiting to the caller).
    type: int
    default: 0
  retain:
    description: Pass C(--retain) so failed nodes stay for debugging.
    type: bool
    default: false
  export_user_kubeconfig:
    description:
      - Also export the context into the user's kubeconfig (C($KUBECONFIG) or C(~/.kube/config)).
      - With O(state=absent), also remove the C(kind-<name>) context from it.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads the clusters and the API but creates, deletes and writes nothing.
  diff_mode:
    support: full
    description: Returns the cluster's existence and config hash before and after.
  idempotent:
    support: full
    description: A second run with the same config reports no change.
"""

EXAMPLES = r"""
- name: Create the kind cluster when absent
  filewcount.gitops.kind_cluster:
    name: filewcount
    kubeconfig: "{{ lookup('ansible.builtin.env', 'HOME') }}/.local/state/filewcount-gitops/kubeconfig"
    config:
      kind: Cluster
      apiVersion: kind.x-k8s.io/v1alpha4
      nodes:
        - role: control-plane
          image: kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed
          extraPortMappings:
            - {containerPort: 30080, hostPort: 8080, listenAddress: 127.0.0.1}

- name: Delete the kind cluster
  filewcount.gitops.kind_cluster:
    name: filewcount
    state: absent
    kubeconfig: /home/me/.local/state/filewcount-gitops/kubeconfig
"""

RETURN = r"""
created:
  description: Whether the cluster was (or in check mode would be) created.
  returned: always
  type: bool
deleted:
  description: Whether the cluster was (or in check mode would be) deleted.
  returned: always
  type: bool
kubeconfig_written:
  description: Whether the project kubeconfig was (or would be) written.
  returned: always
  type: bool
config_hash:
  description: Hash of the wanted config (empty for state=absent).
  returned: always
  type: str
  sample: 3f1c0e5f9b2a4d6e8f0a1b2c3d4e5f60718293a4
current_hash:
  description: Hash label found on the existing cluster's nodes (null when none or when just created).
  returned: always
  type: str
context:
  description: The kubeconfig context of the cluster.
  returned: always
  type: str
  sample: kind-filewcount
rendered_config:
  description: The config given to kind, with name and hash label (state=present).
  returned: always
  type: dict
"""

import shutil  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.kind import (  # noqa: E402
    KindCLI,
    KindError,
    context_name,
    ensure_absent,
    ensure_present,
)
from ansible_collections.filewcount.gitops.plugins.module_utils.kind_docker import (  # noqa: E402
    DockerNodes,
    ensure_absent_without_kind,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            config=dict(type="dict"),
            kubeconfig=dict(type="path", required=True),
            kind_command=dict(type="path", default="kind"),
            on_config_change=dict(type="str", choices=["fail", "warn"], default="fail"),
            wait=dict(type="int", default=0),
            retain=dict(type="bool", default=False),
            export_user_kubeconfig=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ["config"])],
        supports_check_mode=True,
    )
    p = module.params

    def run(argv):
        return module.run_command(list(argv), check_rc=False)

    without_kind = p["state"] == "absent" and not (p["kind_command"] and shutil.which(p["kind_command"]))
    if not without_kind and not shutil.which(p["kind_command"] or "kind"):
        module.fail_json(
            msg=f"The kind CLI ({p['kind_command']}) was not found: install kind or let the "
            "filewcount.gitops.kind role download it."
        )
    cli = KindCLI(run, kind=p["kind_command"])
    try:
        if without_kind:
            outcome = ensure_absent_without_kind(
                DockerNodes(run, module.get_bin_path("docker")),
                p["name"],
                p["kubeconfig"],
                check_mode=module.check_mode,
                clean_user_kubeconfig=p["export_user_kubeconfig"],
            )
        elif p["state"] == "present":
            outcome = ensure_present(
                cli,
                p["name"],
                p["config"],
                p["kubeconfig"],
                check_mode=module.check_mode,
                on_mismatch=p["on_config_change"],
                wait=p["wait"],
                retain=p["retain"],
                export_user_kubeconfig=p["export_user_kubeconfig"],
                tmpdir=module.tmpdir,
            )
        else:
            outcome = ensure_absent(
                cli,
                p["name"],
                p["kubeconfig"],
                check_mode=module.check_mode,
                clean_user_kubeconfig=p["export_user_kubeconfig"],
            )
    except KindError as exc:
        module.fail_json(msg=str(exc), context=context_name(p["name"]))
    for warning in outcome.warnings:
        module.warn(warning)
    result = dict(
        changed=outcome.changed,
        created=outcome.created,
        deleted=outcome.deleted,
        kubeconfig_written=outcome.kubeconfig_written,
        config_hash=outcome.config_hash,
        current_hash=outcome.current_hash,
        context=context_name(p["name"]),
        rendered_config=outcome.config,
    )
    if module._diff:
        result["diff"] = dict(before=outcome.before, after=outcome.after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
