#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: volume_backup
short_description: Back up the kind cluster's retained volumes to a folder on this machine, or restore one
description:
  - Works on the folders C(<data_dir>/<namespace>/<claim>) in which kind's local-path-provisioner keeps the volumes of
    the StorageClass C(filewcount-retain) (mounted from this machine by the kind role).
  - O(operation=backup) copies every such folder that holds data into C(<backups_dir>/<name>), except Prometheus's,
    for which it asks Prometheus's admin API for a TSDB snapshot (through the API server's service proxy) and copies
    the snapshot instead, then removes the snapshot from the volume. The folder gets a C(backup.json) with the
    size and SHA-256 of every file. It is built under a temporary name and renamed when complete. A backup of that
    name that exists already is left alone (not changed).
  - O(operation=restore) checks every file of O(backup) against its C(backup.json), refuses when a folder it would
    write already holds data, copies the folders into O(data_dir) with modes the containers' users can write, and
    records the backup in C(<data_dir>/.restored-from); restoring the same backup again changes nothing.
  - Every refusal is one sentence that says what to do.
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
requirements:
  - the kubernetes Python library, for the snapshot
options:
  operation:
    description: V(backup) or V(restore).
    type: str
    choices: [backup, restore]
    required: true
  data_dir:
    description: The folder of the volumes (the gitops role's C(gitops_data_dir)).
    type: path
    required: true
  backups_dir:
    description: Where backups are written. Required with O(operation=backup).
    type: path
  name:
    description: Name of the backup folder; a UTC timestamp when unset.
    type: str
  backup:
    description: The backup folder to restore. Required with O(operation=restore).
    type: path
  kubeconfig:
    description: Kubeconfig of the cluster whose Prometheus takes the snapshot.
    type: path
  context:
    description: Context of O(kubeconfig).
    type: str
  prometheus:
    description: Where Prometheus is; the defaults are kube-prometheus-stack's names in the tree.
    type: dict
    default: {}
    suboptions:
      namespace:
        description: Namespace of Prometheus's Service and claim.
        type: str
        default: monitoring
      service:
        description: Prometheus's Service.
        type: str
        default: kube-prometheus-stack-prometheus
      port:
        description: Name of the Service's port of the web API.
        type: str
        default: http-web
      claim:
        description: Prometheus's PersistentVolumeClaim (prometheus-operator names it C(<template>-<pod>)).
        type: str
        default: prometheus-kube-prometheus-stack-prometheus-db-prometheus-kube-prometheus-stack-prometheus-0
      sub_path:
        description: Folder of the TSDB inside the volume (prometheus-operator's sub-path).
        type: str
        default: prometheus-db
"""

EXAMPLES = r"""
- name: Back up the volumes
  filewcount.gitops.volume_backup:
    operation: backup
    data_dir: ~/.local/state/filewcount-gitops/volumes
    backups_dir: ~/.local/state/filewcount-gitops/backups
    kubeconfig: ~/.local/state/filewcount-gitops/kubeconfig
    context: kind-filewcount

- name: Restore one before the cluster is created
  filewcount.gitops.volume_backup:
    operation: restore
    data_dir: ~/.local/state/filewcount-gitops/volumes
    backup: ~/.local/state/filewcount-gitops/backups/20261128T153000Z
"""

RETURN = r"""
path:
  description: The backup folder written or found (O(operation=backup)).
  returned: when O(operation=backup)
  type: str
backup:
  description: The backup's name, creation time, folders, Prometheus snapshot name, number of files and bytes.
  returned: when the backup exists or was written, and with O(operation=restore)
  type: dict
folders:
  description: The folders a backup would copy (check mode).
  returned: in check mode, when a backup would be written
  type: list
  elements: str
data_dir:
  description: The folder restored into.
  returned: when O(operation=restore)
  type: str
"""

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils import volume_backup as vb  # noqa: E402

# The suboptions of ``prometheus``, with the defaults of vb.Prometheus (the documentation above repeats them).
PROMETHEUS_OPTIONS = {f.name: dict(type="str", default=f.default) for f in dataclasses.fields(vb.Prometheus)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            operation=dict(type="str", choices=["backup", "restore"], required=True),
            data_dir=dict(type="path", required=True),
            backups_dir=dict(type="path"),
            name=dict(type="str"),
            backup=dict(type="path"),
            kubeconfig=dict(type="path"),
            context=dict(type="str"),
            prometheus=dict(type="dict", default={}, options=PROMETHEUS_OPTIONS),
        ),
        required_if=[("operation", "backup", ("backups_dir",)), ("operation", "restore", ("backup",))],
        supports_check_mode=True,
    )
    p = module.params
    prometheus = vb.Prometheus(**p["prometheus"])
    try:
        if p["operation"] == "backup":
            changed, result = vb.run_backup(
                Path(p["data_dir"]),
                Path(p["backups_dir"]),
                p["name"] or vb.default_name(),
                prometheus=prometheus,
                check_mode=module.check_mode,
                snapshot=lambda: vb.take_snapshot(p["kubeconfig"], p["context"], prometheus),
            )
        else:
            changed, result = vb.run_restore(Path(p["backup"]), Path(p["data_dir"]), module.check_mode)
    except vb.BackupError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
