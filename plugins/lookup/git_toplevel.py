# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup git_toplevel: the root of the git repository a directory is in; see DOCUMENTATION."""

from __future__ import annotations

DOCUMENTATION = r"""
name: git_toplevel
short_description: The root of the git repository a directory is in
version_added: 0.1.0
author:
  - filewcount.gitops maintainers (@filewcount)
description:
  - Returns the absolute path of the top of the git work tree that contains the given directory, or an empty
    string when the directory does not exist or is not inside a git work tree (so a task can say what to do).
  - Without a term, or with an empty one, it looks at the directory C(ansible-playbook) was started from. That
    is not the playbook's directory, which is what modules and the M(ansible.builtin.pipe) lookup run in.
  - Runs C(git rev-parse --show-toplevel) on the controller.
options:
  _terms:
    description: The directory to look at; empty means the directory C(ansible-playbook) was started from.
    type: list
    elements: path
    required: false
  or_directory:
    description:
      - When the directory is not inside a git work tree, return the directory itself (absolute) instead of an
        empty string, for example to create a repository there.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Find the GitOps repository of the current directory
  ansible.builtin.set_fact:
    repository_root: "{{ lookup('filewcount.gitops.git_toplevel') }}"

- name: Find the repository of a directory, or the directory itself when it is not in one
  ansible.builtin.debug:
    msg: "{{ lookup('filewcount.gitops.git_toplevel', '~/src/new-gitops', or_directory=true) }}"

- name: Find the repository a given checkout belongs to
  ansible.builtin.debug:
    msg: "{{ lookup('filewcount.gitops.git_toplevel', '~/src/my-gitops') }}"
"""

RETURN = r"""
_raw:
  description: The top of the work tree, or an empty string when there is none.
  type: list
  elements: str
"""

import os  # noqa: E402
import subprocess  # noqa: E402

from ansible.module_utils.parsing.convert_bool import boolean  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402


def git_toplevel(directory: str, or_directory: bool = False) -> str:
    """The work tree root containing directory (absolute); else directory itself if or_directory, else ''."""
    path = os.path.abspath(os.path.expanduser(directory or os.getcwd()))
    fallback = path if or_directory else ""
    if not os.path.isdir(path):
        return fallback
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=path,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return fallback
    return proc.stdout.strip() if proc.returncode == 0 else fallback


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        or_directory = boolean(kwargs.get("or_directory", False), strict=True)
        return [git_toplevel(str(term) if term else "", or_directory) for term in (terms or [""])]
