#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gitops_image_tag
short_description: Change a container image tag in a GitOps manifest, commit it and push it to the sync source
description:
  - Validates the tag (an explicit version, never C(latest)), refuses a working tree with uncommitted changes to
    tracked files, rewrites every C(image:) line of O(manifest) that references O(image) (quotes, indentation and
    comments kept, a digest pin dropped) and checks the result parses as YAML with only the new tag.
  - Commits only that file and pushes the current commit to O(remote)/O(branch), the git source Flux syncs.
  - Does nothing (changed=false) when the manifest already carries the tag both in the checkout and on the remote
    branch; pushes without a new commit when only the remote lags behind.
  - Fetches O(branch) from O(remote) to compare (also in check mode; that only updates C(FETCH_HEAD)).
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
options:
  repo_dir:
    description: Root of the git checkout.
    type: path
    required: true
  manifest:
    description: Path of the manifest, relative to O(repo_dir).
    type: str
    default: kube/apps/filewcount/deployment.yaml
  image:
    description: Image repository whose tag changes (Docker Hub spellings with and without C(docker.io/) match).
    type: str
    default: docker.io/bldrtech/filewcount
  tag:
    description: The wanted tag.
    type: str
    required: true
  tag_pattern:
    description: Regular expression the tag must match.
    type: str
    default: '^v?[0-9]+\.[0-9]+(\.[0-9]+)?$'
  remote:
    description: Git remote Flux syncs from (C(local) in local mode, C(origin) in github mode).
    type: str
    required: true
  branch:
    description: Remote branch Flux syncs; defaults to the checkout's current branch.
    type: str
  commit_message:
    description: Commit message; a default names the new image.
    type: str
  author_name:
    description:
      - Commit author name. Without it the user's git identity is used; when git has none (a fresh machine with
        no C(user.name)), the commit is made as C(filewcount.gitops).
    type: str
  author_email:
    description:
      - Commit author e-mail. Without it the user's git identity is used; when git has none, the commit is made
        as C(filewcount-gitops@localhost).
    type: str
  token:
    description:
      - HTTPS password for O(remote), for example a GitHub personal access token (github mode). Git gets it from a
        credential helper on its command line that reads an environment variable; never from argv, the remote's
        URL or C(.git/config).
    type: str
attributes:
  check_mode:
    support: full
    description: Reports what would change and the diff; writes, commits and pushes nothing.
  diff_mode:
    support: full
    description: Returns the manifest before and after.
  idempotent:
    support: full
    description: A second run with the same tag reports no change.
requirements:
  - git on PATH
notes:
  - Credentials for the remote come from git's own configuration (credential helper); none pass through this
    module.
"""

EXAMPLES = r"""
- name: Upgrade filewcount to 2.0 through GitOps
  filewcount.gitops.gitops_image_tag:
    repo_dir: "{{ playbook_dir | dirname }}"
    tag: "2.0"
    remote: local
    branch: main
  register: upgrade
"""

RETURN = r"""
old_images:
  description: Image references found in the manifest before the change.
  returned: always
  type: list
  elements: str
  sample: [docker.io/bldrtech/filewcount:1.0]
new_image:
  description: The image reference the manifest carries now.
  returned: always
  type: str
  sample: docker.io/bldrtech/filewcount:2.0
commit:
  description: The commit the remote branch points at after the run (the checkout's HEAD).
  returned: always
  type: str
committed:
  description: Whether a new commit was made.
  returned: always
  type: bool
pushed:
  description: Whether the branch was pushed.
  returned: always
  type: bool
branch:
  description: The remote branch.
  returned: always
  type: str
message:
  description: One sentence saying what was done.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.github_repository import (  # noqa: E402
    TOKEN_ENV,
    with_credentials,
)
from ansible_collections.filewcount.gitops.plugins.module_utils.gitops_image import (  # noqa: E402
    DEFAULT_TAG_PATTERN,
    Git,
    GitopsImageError,
    upgrade,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repo_dir=dict(type="path", required=True),
            manifest=dict(type="str", default="kube/apps/filewcount/deployment.yaml"),
            image=dict(type="str", default="docker.io/bldrtech/filewcount"),
            tag=dict(type="str", required=True),
            tag_pattern=dict(type="str", default=DEFAULT_TAG_PATTERN),
            remote=dict(type="str", required=True),
            branch=dict(type="str"),
            commit_message=dict(type="str"),
            author_name=dict(type="str"),
            author_email=dict(type="str"),
            token=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    identity = {k: v for k, v in (("user.name", params["author_name"]), ("user.email", params["author_email"])) if v}

    environ = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    if params["token"]:
        environ[TOKEN_ENV] = params["token"]

    def run(argv, cwd):
        argv = with_credentials(list(argv)) if params["token"] else list(argv)
        return module.run_command(argv, cwd=cwd, environ_update=environ)

    try:
        result = upgrade(
            Git(params["repo_dir"], run, identity),
            manifest=params["manifest"],
            image=params["image"],
            tag=params["tag"],
            remote=params["remote"],
            branch=params["branch"],
            check_mode=module.check_mode,
            tag_pattern=params["tag_pattern"],
            commit_message=params["commit_message"],
        )
    except GitopsImageError as exc:
        module.fail_json(msg=str(exc), error=type(exc).__name__)
    out = dict(
        changed=result.changed,
        old_images=result.old_images,
        new_image=result.new_image,
        commit=result.head,
        committed=bool(result.committed),
        pushed=result.pushed,
        branch=result.branch,
        message=result.message,
    )
    if module._diff and result.before != result.after:
        out["diff"] = dict(
            before=result.before, after=result.after, before_header=params["manifest"], after_header=params["manifest"]
        )
    module.exit_json(**out)


if __name__ == "__main__":
    main()
