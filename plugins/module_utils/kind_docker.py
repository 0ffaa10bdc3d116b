# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delete a kind cluster without the kind CLI, for a teardown that must work offline.

A kind cluster on the docker provider is its node containers, labelled ``io.x-k8s.kind.cluster=<name>``, plus the
``kind-<name>`` entries kind wrote into a kubeconfig. kind itself lists a cluster's nodes with
``docker ps -a --filter label=io.x-k8s.kind.cluster=<name> --format {{.Names}}`` and deletes them with
``docker rm -f -v <nodes>`` (sigs.k8s.io/kind pkg/cluster/internal/providers/docker/provider.go and constants.go),
so this module does the same and removes the kubeconfig entries itself.

Plain Python, importable without Ansible.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

from ansible_collections.filewcount.gitops.plugins.module_utils.kind import (
    KindError,
    Outcome,
    _has_context,
    _load_yaml,
    context_name,
    user_kubeconfig_path,
)

CLUSTER_LABEL = "io.x-k8s.kind.cluster"

RunFn = Callable[[Sequence[str]], "tuple[int, str, str]"]


class DockerNodes:
    """The node containers of kind clusters, through the docker CLI (``docker`` is None when it is not installed)."""

    def __init__(self, run: RunFn, docker: str | None = "docker"):
        self.run = run
        self.docker = docker

    def list(self, name: str) -> list[str]:
        """Names of the cluster's node containers, stopped ones included; none when docker is not installed."""
        if not self.docker:
            return []
        argv = [self.docker, "ps", "-a", "--filter", f"label={CLUSTER_LABEL}={name}", "--format", "{{.Names}}"]
        rc, out, err = self.run(argv)
        if rc != 0:
            detail = (err or out).strip().splitlines()
            raise KindError(
                f"Cannot tell whether the kind cluster '{name}' exists: `docker ps` failed "
                f"({detail[-1] if detail else f'exit {rc}'}); start Docker and run again."
            )
        return [line.strip() for line in out.splitlines() if line.strip()]

    def remove(self, nodes: Sequence[str]) -> None:
        rc, out, err = self.run([self.docker, "rm", "-f", "-v", *nodes])
        if rc != 0:
            detail = (err or out).strip().splitlines()
            raise KindError(
                f"Deleting the kind node containers {', '.join(nodes)} with `docker rm -f -v` failed "
                f"({detail[-1] if detail else f'exit {rc}'}): remove them by hand and run again."
            )


def remove_kind_entries(path: str, name: str) -> bool:
    """Drop the context, cluster and user ``kind-<name>`` from a kubeconfig file (as kind delete does).

    Returns whether the file changed. The file is rewritten atomically with its mode kept.
    """
    import yaml  # noqa: PLC0415 (present wherever Ansible runs)

    with open(path, encoding="utf-8") as handle:
        data = _load_yaml(handle.read())
    if not isinstance(data, dict):
        return False
    entry = context_name(name)
    changed = False
    for key in ("contexts", "clusters", "users"):
        items = data.get(key) or []
        kept = [item for item in items if not (isinstance(item, dict) and item.get("name") == entry)]
        if len(kept) != len(items):
            data[key] = kept
            changed = True
    if data.get("current-context") == entry:
        data["current-context"] = ""
        changed = True
    if changed:
        mode = os.stat(path).st_mode & 0o777
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".kubeconfig-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump(data, handle, default_flow_style=False)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    return changed


def ensure_absent_without_kind(
    docker: DockerNodes,
    name: str,
    kubeconfig: str | None,
    *,
    check_mode: bool = False,
    clean_user_kubeconfig: bool = False,
    user_kubeconfig: str | None = None,
) -> Outcome:
    """Delete the cluster's node containers with docker and its kubeconfig entries (the project's and, when asked,
    the user's), needing neither kind nor the network. Nothing there: unchanged."""
    nodes = docker.list(name)
    files = [kubeconfig] if kubeconfig else []
    if clean_user_kubeconfig:
        files.append(user_kubeconfig or user_kubeconfig_path())
    stale = [path for path in files if _has_context(path, context_name(name))]
    outcome = Outcome(before={"name": name, "exists": bool(nodes)}, after={"name": name, "exists": False})
    if not docker.docker:
        outcome.warnings.append("docker is not installed, so no kind node container can exist; none was looked for.")
    if not nodes and not stale:
        return outcome
    outcome.changed = True
    outcome.deleted = bool(nodes)
    if check_mode:
        return outcome
    if nodes:
        docker.remove(nodes)
    for path in stale:
        remove_kind_entries(path, name)
    return outcome
