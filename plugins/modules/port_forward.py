#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: port_forward
short_description: Keep a kubectl port-forward running after the play, and stop it later
description:
  - Starts C(kubectl port-forward) to a Service or Pod of a cluster in its own session, so it keeps running after
    the module and the play end (use it with the local connection), and stops it again with O(state=absent).
  - The forward is known by O(name). Its state file C(<state_dir>/port-forwards/<name>.json) (mode C(0600), in a
    directory of mode C(0700)) records the pid and the exact argv of the kubectl started; kubectl's output is
    appended to C(<state_dir>/port-forwards/<name>.log).
  - O(state=started) does nothing when the recorded process is alive, still runs the same argv and its local port
    accepts a TCP connection. A recorded process with other arguments (changed options) or that no longer listens is
    stopped and a new one started. It fails when another program holds the local port.
  - After starting, the module waits until the local port accepts a connection, and fails with kubectl's last line
    of output when kubectl exits first (for example that the Service does not exist) or after O(timeout).
  - O(state=absent) stops the recorded process (SIGTERM, then SIGKILL after 5 seconds) only when its command line
    is still the recorded kubectl port-forward, so a pid reused by another program is never signalled, and removes
    the state file and the log.
  - Only the paths and names of O(kubeconfig) and O(context) reach kubectl's command line, never a credential.
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
requirements:
  - kubectl on the host that runs the module
options:
  name:
    description:
      - Names the forward and its files; letters, digits, C(.), C(_) and C(-).
    type: str
    required: true
  state:
    description:
      - V(started) keeps the forward running; V(absent) stops it and removes its files.
    type: str
    choices: [started, absent]
    default: started
  state_dir:
    description: Directory whose C(port-forwards) subdirectory holds the state file and the log.
    type: path
    required: true
  kubeconfig:
    description: Kubeconfig file passed to kubectl as C(--kubeconfig); kubectl's default when unset.
    type: path
  context:
    description: Kubeconfig context passed to kubectl as C(--context); the current context when unset.
    type: str
  namespace:
    description: Namespace of O(resource). Required with O(state=started).
    type: str
  resource:
    description:
      - What to forward to, as kubectl names it, for example V(service/filewcount) or V(pod/web-0).
      - Required with O(state=started).
    type: str
  remote_port:
    description: Port of O(resource) to forward to. Required with O(state=started).
    type: int
  local_port:
    description: Local port to listen on. Required with O(state=started).
    type: int
  address:
    description: Local address to listen on (kubectl's C(--address)).
    type: str
    default: 127.0.0.1
  kubectl:
    description: The kubectl to run, a name looked up on E(PATH) or a path.
    type: str
    default: kubectl
  timeout:
    description: Seconds to wait until the local port accepts a connection after starting.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reports whether the forward would be started, restarted or stopped; starts, stops and writes nothing.
  diff_mode:
    support: none
    description: Reports no diff.
  idempotent:
    support: full
    description: A running forward with the same options is left alone, so a second run is not changed.
  platform:
    support: full
    platforms: posix
    description: Reads C(/proc/<pid>/cmdline), or C(ps) where there is no C(/proc).
notes:
  - The forward runs on the host that runs the module; with a remote host the forward listens there.
"""

EXAMPLES = r"""
- name: Forward filewcount's Service to localhost
  filewcount.gitops.port_forward:
    name: filewcount
    state_dir: "{{ playbook_dir }}/.state"
    kubeconfig: ~/.kube/config
    context: arn:aws:eks:eu-west-1:123456789012:cluster/filewcount
    namespace: filewcount
    resource: service/filewcount
    remote_port: 80
    local_port: 8080
  register: filewcount_forward

- name: Show where filewcount answers
  ansible.builtin.debug:
    msg: "filewcount: {{ filewcount_forward.url }}"

- name: Stop the forward at teardown
  filewcount.gitops.port_forward:
    name: filewcount
    state_dir: "{{ playbook_dir }}/.state"
    state: absent
"""

RETURN = r"""
pid:
  description: Pid of the running kubectl port-forward; null with O(state=absent) and in check mode when one would
    be started.
  returned: always
  type: int
  sample: 41236
stopped_pid:
  description: Pid of the kubectl port-forward stopped (or that would be stopped in check mode), else null.
  returned: always
  type: int
  sample: 40871
argv:
  description: The kubectl command line (recorded one with O(state=absent); empty when there was none).
  returned: always
  type: list
  elements: str
  sample: [/usr/local/bin/kubectl, --kubeconfig, /home/me/.kube/config, --namespace, filewcount, port-forward,
           --address, 127.0.0.1, service/filewcount, "8080:80"]
local_address:
  description: The local address and port the forward listens on.
  returned: always
  type: str
  sample: 127.0.0.1:8080
url:
  description: An HTTP URL of the local end.
  returned: always
  type: str
  sample: http://127.0.0.1:8080/
log:
  description: The file kubectl's output is appended to.
  returned: always
  type: str
  sample: /home/me/filewcount/.state/port-forwards/filewcount.log
state_file:
  description: The state file of the forward.
  returned: always
  type: str
  sample: /home/me/filewcount/.state/port-forwards/filewcount.json
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils import port_forward as pf  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=list(pf.STATES), default="started"),
            state_dir=dict(type="path", required=True),
            kubeconfig=dict(type="path"),
            context=dict(type="str"),
            namespace=dict(type="str"),
            resource=dict(type="str"),
            remote_port=dict(type="int"),
            local_port=dict(type="int"),
            address=dict(type="str", default="127.0.0.1"),
            kubectl=dict(type="str", default="kubectl"),
            timeout=dict(type="int", default=60),
        ),
        required_if=[("state", "started", ("namespace", "resource", "remote_port", "local_port"))],
        supports_check_mode=True,
    )
    try:
        desired = pf.build_desired(module.params)
        outcome = pf.reconcile(desired, check_mode=module.check_mode)
    except pf.PortForwardError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**outcome.as_dict())


if __name__ == "__main__":
    main()
