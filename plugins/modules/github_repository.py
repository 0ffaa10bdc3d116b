#!/usr/bin/python
# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: github_repository
short_description: Make sure the GitHub repository that Flux syncs exists, creating it private when missing
version_added: 0.1.0
description:
  - Reads C(GET /repos/{owner}/{repo}) of the GitHub REST API. When the repository exists nothing changes.
  - When it is missing, creates it with C(POST /user/repos) (O(personal=true); the token must belong to O(owner))
    or C(POST /orgs/{owner}/repos) (an organisation), private unless O(private=false), with no commit in it.
  - The token travels only in the C(Authorization) header of those HTTPS requests; it is never part of a URL, a
    result or a message. Proxies come from the standard C(HTTPS_PROXY) / C(NO_PROXY) variables.
author:
  - filewcount.gitops maintainers (@filewcount)
options:
  owner:
    description: The user or organisation that owns the repository.
    type: str
    required: true
  repository:
    description: The repository's name.
    type: str
    required: true
  personal:
    description: V(true) when O(owner) is a user account (the token's), V(false) for an organisation.
    type: bool
    default: true
  private:
    description: Visibility of a repository this module creates (an existing one is left as it is).
    type: bool
    default: true
  hostname:
    description: GitHub host; C(github.com) uses C(api.github.com), another host (GitHub Enterprise Server) C(/api/v3).
    type: str
    default: github.com
  token:
    description:
      - Personal access token. Classic tokens need the C(repo) scope; fine-grained tokens need Administration
        (read and write, to create) and Contents (read and write) on the repository.
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Reads the API and reports whether the repository would be created; creates nothing.
  diff_mode:
    support: full
    description: Shows the repository and its visibility, or C((absent)) before it is created.
  idempotent:
    support: full
    description: A second run finds the repository and changes nothing.
"""

EXAMPLES = r"""
- name: Make sure the repository exists (created private when missing)
  filewcount.gitops.github_repository:
    owner: my-user
    repository: filewcount-gitops
    token: "{{ lookup('ansible.builtin.env', 'GITHUB_TOKEN') }}"

- name: The same for an organisation
  filewcount.gitops.github_repository:
    owner: my-org
    repository: filewcount-gitops
    personal: false
    token: "{{ lookup('ansible.builtin.env', 'GITHUB_TOKEN') }}"
"""

RETURN = r"""
created:
  description: Whether the repository was (or, in check mode, would be) created.
  returned: success
  type: bool
full_name:
  description: C(owner/repository).
  returned: success
  type: str
  sample: my-user/filewcount-gitops
private:
  description: The repository's visibility.
  returned: success
  type: bool
default_branch:
  description: The default branch GitHub reports (null for a repository without commits).
  returned: success
  type: str
clone_url:
  description: The HTTPS URL of the repository, without credentials.
  returned: success
  type: str
  sample: https://github.com/my-user/filewcount-gitops.git
msg:
  description: One sentence saying what happened.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError  # noqa: E402
from ansible.module_utils.urls import open_url  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils.github_repository import (  # noqa: E402
    Api,
    GitHubError,
    Token,
    Wanted,
    ensure,
)


def _request(method, url, headers, body):
    """One HTTPS request; (0, reason) when nothing answered."""
    try:
        response = open_url(url, data=body, headers=headers, method=method, timeout=30, follow_redirects="safe")
        return response.getcode(), response.read().decode("utf-8", "replace")
    except HTTPError as exc:
        return exc.code, (exc.read() or b"").decode("utf-8", "replace")
    except (URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            owner=dict(type="str", required=True),
            repository=dict(type="str", required=True),
            personal=dict(type="bool", default=True),
            private=dict(type="bool", default=True),
            hostname=dict(type="str", default="github.com"),
            token=dict(type="str", required=True, no_log=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    wanted = Wanted(p["owner"], p["repository"], p["personal"], p["private"], p["hostname"])
    token = Token(p["token"])
    if not token:
        module.fail_json(msg="No GitHub token: export GITHUB_TOKEN (a personal access token), then run again.")
    try:
        res, existed = ensure(Api(_request, wanted.api_url, token), wanted, check_mode=module.check_mode)
    except GitHubError as exc:
        module.fail_json(msg=str(exc))
    result = res.as_dict()
    if module._diff:
        result["diff"] = res.diff(existed)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
