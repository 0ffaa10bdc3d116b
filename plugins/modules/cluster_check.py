#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_check
short_description: Check that an existing cluster can take a GitOps bootstrap
description:
  - Runs read-only checks against a cluster a kubeconfig reaches (EKS or any other; no kind, no Docker) before
    bootstrap, and fails with one sentence per problem, each naming the problem and the fix.
  - The kubeconfig exists and has the context (the contexts it has are listed); the API server answers with those
    credentials (unreachable, rejected credentials and an untrusted TLS certificate are told apart); the server's
    Kubernetes version is one the pinned Flux supports (O(flux_kubernetes_versions)); the user may create
    CustomResourceDefinitions, ClusterRoles, ClusterRoleBindings and Namespaces cluster-wide; a default StorageClass
    exists when O(needs_volume) is set; and Flux on the cluster does not already sync another repository.
  - When the kubeconfig names an EKS cluster (an C(aws eks get-token) user, an EKS ARN as the context name or an
    EKS endpoint), the sentences give C(aws eks update-kubeconfig) with its name and region.
  - Sends only GET and LIST requests, plus SelfSubjectAccessReview and SelfSubjectReview creates, which ask the
    API server about the caller and store no object.
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
requirements:
  - kubernetes (Python library)
  - PyYAML
options:
  kubeconfig:
    description: Path of the kubeconfig file.
    type: path
    required: true
  context:
    description: Context of O(kubeconfig) to check; empty means the file's current context.
    type: str
    default: ""
  timeout:
    description: Seconds each API request may take (one retry on a connection failure).
    type: float
    default: 10
  flux_version:
    description: The pinned Flux release, named in the version sentences.
    type: str
    default: v2.9.4
  flux_kubernetes_versions:
    description:
      - The Kubernetes versions O(flux_version) supports, as the lowest supported patch of each minor.
      - A server below the lowest, on an unlisted minor between them, or below its minor's patch fails; a newer
        minor than the highest passes with a warning.
      - The default is the "Kubernetes compatibility" section of the Flux v2.9.0 release notes
        (U(https://github.com/fluxcd/flux2/releases/tag/v2.9.0)); change it together with O(flux_version).
    type: list
    elements: str
    default: ["1.34.1", "1.35.0", "1.36.0"]
  needs_volume:
    description: Whether something bootstrap installs needs a persistent volume, so a default StorageClass must exist.
    type: bool
    default: false
  volume_users:
    description: What needs the volume, named in the StorageClass sentence.
    type: list
    elements: str
    default: [the local-mode git server, Prometheus]
  sync_url:
    description:
      - The Git URL bootstrap will make Flux sync.
      - A GitRepository C(flux-system/flux-system) with another URL (compared by host and path) is another Flux's
        sync; when O(sync_url) is empty any existing one counts as foreign, because it cannot be told apart.
      - Flux controllers without that GitRepository are not foreign.
    type: str
    default: ""
  takeover:
    description: Turn the refusal to take over another Flux's sync into a warning.
    type: bool
    default: false
  takeover_variable:
    description: The variable the sentences tell the user to set to take over another Flux's sync.
    type: str
    default: gitops_flux_takeover
  checks:
    description:
      - The checks to run after the kubeconfig and the API server, which always run (for example none, when a
        playbook only needs to know that the cluster answers with those credentials).
    type: list
    elements: str
    choices: [version, rbac, storage, flux]
    default: [version, rbac, storage, flux]
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
- name: Check an EKS cluster before bootstrap
  filewcount.gitops.cluster_check:
    kubeconfig: ~/.kube/config
    context: arn:aws:eks:eu-west-1:123456789012:cluster/filewcount
    sync_url: https://github.com/example/filewcount-gitops
    needs_volume: true

- name: Check a cluster where this project's Flux may replace another
  filewcount.gitops.cluster_check:
    kubeconfig: /etc/kubernetes/admin.conf
    takeover: true
"""

RETURN = r"""
kubeconfig:
  description: The kubeconfig file read.
  returned: always
  type: str
context:
  description: The context checked.
  returned: always
  type: str
contexts:
  description: The contexts the kubeconfig has.
  returned: always
  type: list
  elements: str
server:
  description: The API server URL of the context.
  returned: always
  type: str
  sample: https://ABCD.gr7.eu-west-1.eks.amazonaws.com
version:
  description: The server's version and whether the pinned Flux supports it (empty when the server was not reached).
  returned: always
  type: dict
  sample: {git_version: v1.35.2-eks-abc123, version: 1.35.2, supported: true, flux_version: v2.9.4,
           flux_supported: [1.34.1, 1.35.0, 1.36.0]}
permissions:
  description: The cluster-wide permissions bootstrap needs and whether the user has each.
  returned: always
  type: list
  elements: dict
  sample: [{verb: create, group: apiextensions.k8s.io, resource: customresourcedefinitions, allowed: true}]
storage_classes:
  description: The StorageClasses (listed only when O(needs_volume) is set).
  returned: always
  type: list
  elements: dict
  sample: [{name: gp2, default: true, provisioner: kubernetes.io/aws-ebs}]
default_storage_class:
  description: The name of the one default StorageClass, else empty.
  returned: always
  type: str
flux:
  description: Flux found on the cluster.
  returned: always
  type: dict
  sample: {controllers: [source-controller], sync_url: "https://github.com/example/gitops", foreign: false}
checks:
  description: One entry per check, in order (kubeconfig, api, version, rbac, storage, flux).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: version, ok: true, skipped: false, message: "", warning: ""}
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils import cluster_check as cc  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kubeconfig=dict(type="path", required=True),
            context=dict(type="str", default=""),
            timeout=dict(type="float", default=10),
            flux_version=dict(type="str", default=cc.FLUX_VERSION),
            flux_kubernetes_versions=dict(type="list", elements="str", default=list(cc.FLUX_KUBERNETES_VERSIONS)),
            needs_volume=dict(type="bool", default=False),
            volume_users=dict(type="list", elements="str", default=["the local-mode git server", "Prometheus"]),
            sync_url=dict(type="str", default=""),
            takeover=dict(type="bool", default=False),
            takeover_variable=dict(type="str", default="gitops_flux_takeover"),
            checks=dict(
                type="list",
                elements="str",
                choices=list(cc.OPTIONAL_CHECKS),
                default=list(cc.OPTIONAL_CHECKS),
            ),
        ),
        supports_check_mode=True,
    )
    if not cc.HAS_KUBERNETES or not cc.HAS_YAML:
        module.fail_json(msg=missing_required_lib("kubernetes" if not cc.HAS_KUBERNETES else "PyYAML"))
    try:
        desired = cc.build_desired(module.params)
    except cc.InvalidOptionError as exc:
        msg = f"Cluster preflight could not run: {exc}."
        module.fail_json(msg=msg, checks=[], failures=[msg], advice=[])
    result = cc.run_checks(desired).as_dict()
    for sentence in result["advice"]:
        module.warn(sentence)
    if result["failures"]:
        module.fail_json(msg=" ".join(result["failures"]), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
