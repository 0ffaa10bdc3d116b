#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: git_seed
short_description: Publish a checkout's HEAD to a git remote branch, or bring the checkout up to date with it
description:
  - With O(state=seeded), makes the git remote O(remote) point at O(url) (adding or updating it) and makes its
    branch O(branch) contain the checkout's HEAD. Nothing is pushed when the branch already contains HEAD (it is
    HEAD, or HEAD is one of its ancestors, for example after Flux added its C(flux-system) commit on top). A
    missing or older branch is fast-forwarded by a push. Diverged histories fail with the command that fixes them;
    nothing is ever force-pushed.
  - With O(state=pulled), fetches O(remote)/O(branch) and fast-forwards the checkout to it, but only when HEAD is
    an ancestor of it and tracked files have no uncommitted changes. Otherwise nothing changes and RV(commands)
    holds the exact command to run.
  - With O(state=absent), removes the git remote O(remote) (and its remote-tracking branches) when it exists.
  - Git runs with C(GIT_TERMINAL_PROMPT=0), so a server asking for credentials fails instead of hanging.
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
options:
  path:
    description: The git checkout (its working tree or any directory inside it).
    type: path
    required: true
  remote:
    description: Name of the git remote.
    type: str
    default: local
  url:
    description:
      - URL the remote must point at. The remote is added, or its URL changed, when it differs.
      - When omitted, the remote must already exist and is used as it is (for example C(origin) in github mode).
      - Only used with O(state=seeded).
    type: str
  branch:
    description: Branch on the remote that carries the published commit.
    type: str
    default: main
  state:
    description: V(seeded) publishes HEAD, V(pulled) fast-forwards the checkout, V(absent) removes the remote.
    type: str
    choices: [seeded, pulled, absent]
    default: seeded
  require_clean:
    description:
      - With O(state=seeded), fail when tracked files have uncommitted changes, because only commits are
        published (used by C(make sync), where unpublished edits would be a surprise).
    type: bool
    default: false
  token:
    description:
      - HTTPS password for the remote, for example a GitHub personal access token (github mode).
      - Git gets it from a credential helper given on its command line that reads it from an environment variable
        of the git process; it is never in argv, in the remote's URL, in C(.git/config) or in a credential store.
    type: str
attributes:
  check_mode:
    support: full
    description: >-
      Reads the remote with C(git ls-remote) and reports what would change; adds, pushes, fetches and merges
      nothing.
  diff_mode:
    support: full
    description: Shows the remote's URL and branch tip before and after.
  idempotent:
    support: full
    description: >-
      A second run finds the branch already containing HEAD (or the checkout at the branch) and changes
      nothing.
requirements:
  - git on the PATH of the managed host
"""

EXAMPLES = r"""
- name: Publish the current commit to the in-cluster git server
  filewcount.gitops.git_seed:
    path: "{{ playbook_dir | dirname }}"
    remote: local
    url: http://localhost:8082/filewcount.git
    branch: main

- name: Bring the checkout up to date with the commit flux bootstrap added
  filewcount.gitops.git_seed:
    path: "{{ playbook_dir | dirname }}"
    remote: local
    branch: main
    state: pulled
  register: pulled

- name: Say what to run when the checkout could not be fast-forwarded
  ansible.builtin.debug:
    msg: "{{ pulled.msg }}"
  when: pulled.commands | length > 0

- name: Remove the remote on teardown
  filewcount.gitops.git_seed:
    path: "{{ playbook_dir | dirname }}"
    remote: local
    state: absent
"""

RETURN = r"""
head:
  description: The checkout's HEAD commit after the run.
  returned: when the checkout is a git repository with commits
  type: str
  sample: 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c
remote_sha_before:
  description: The remote branch's commit before the run (null when the branch did not exist).
  returned: success
  type: str
remote_sha:
  description: The remote branch's commit after the run (or, in check mode, what it would be).
  returned: success
  type: str
remote_url:
  description: The remote's URL after the run.
  returned: success
  type: str
actions:
  description: What was done (or, in check mode, would be done), one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["Add git remote local to http://localhost:8082/filewcount.git", "Push 0f1e2d3c4b5a to local/main"]
commands:
  description: Commands for the user to run when the module left something alone on purpose (state=pulled).
  returned: always
  type: list
  elements: str
  sample: ["git fetch local && git merge --ff-only local/main"]
msg:
  description: One sentence saying what happened.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.git_remote import (  # noqa: E402
    GIT_ENV,
    Checkout,
    GitRemoteError,
    pull,
    remove,
    seed,
)
from ansible_collections.filewcount.gitops.plugins.module_utils.github_repository import (  # noqa: E402
    TOKEN_ENV,
    with_credentials,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            remote=dict(type="str", default="local"),
            url=dict(type="str"),
            branch=dict(type="str", default="main"),
            state=dict(type="str", choices=["seeded", "pulled", "absent"], default="seeded"),
            require_clean=dict(type="bool", default=False),
            token=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    git = module.get_bin_path("git", required=True)

    environ = dict(GIT_ENV)
    if p["token"]:
        environ[TOKEN_ENV] = p["token"]

    def run(argv, cwd):
        argv = with_credentials(list(argv)) if p["token"] else list(argv)
        return module.run_command(argv, cwd=cwd, environ_update=environ, check_rc=False)

    checkout = Checkout(p["path"], run, git=git)
    try:
        if p["state"] == "seeded":
            res = seed(
                checkout,
                p["remote"],
                p["branch"],
                url=p["url"],
                check_mode=module.check_mode,
                require_clean=p["require_clean"],
            )
        elif p["state"] == "pulled":
            res = pull(checkout, p["remote"], p["branch"], check_mode=module.check_mode)
        else:
            res = remove(checkout, p["remote"], check_mode=module.check_mode)
    except GitRemoteError as exc:
        module.fail_json(msg=str(exc), actions=[], commands=[])
    for warning in res.warnings:
        module.warn(warning)
    result = res.as_dict()
    if module._diff:
        result["diff"] = res.diff(p["remote"], p["branch"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
