"""Flux source-controller / kustomize-controller stand-ins of the emulated API (test double, never shipped).

A GitRepository whose URL ends in ``<name>.git`` is served from the bare repository ``<git-root>/<name>.git`` when
it exists (the harness's local git server keeps its repositories there): the artifact revision is the real commit
(``<branch>@sha1:<40 hex>``). A Kustomization pointing at such a source is built like kustomize-controller does
(``kubectl kustomize`` of spec.path, or, without a kustomization file, every manifest under the path), and its
objects are server-side applied with field manager ``kustomize-controller`` after a dry run of all of them, with
spec.targetNamespace, pruning through status.inventory when spec.prune is true, and health checks when spec.wait
is true. Anything the API refuses (a 422 from validation, a kind without CRD) makes the Kustomization Ready=False
with the API's message, as Flux reports it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class BuildError(Exception):
    """The source could not be fetched or built."""


def _kubectl() -> str:
    sibling = os.path.join(os.path.dirname(sys.executable), "kubectl")
    return sibling if os.path.exists(sibling) else (shutil.which("kubectl") or "kubectl")


class GitSources:
    def __init__(self, git_root: str | None):
        self.git_root = git_root
        self._builds: dict[tuple[str, str, str], list[dict]] = {}
        self._resolved: dict[tuple, tuple[str, str] | None] = {}

    def repo_for(self, url: str) -> str | None:
        if not self.git_root or not url:
            return None
        path = urllib.parse.urlsplit(url).path.strip("/")
        for candidate in (path, os.path.basename(path)):
            if not candidate:
                continue
            name = candidate if candidate.endswith(".git") else candidate + ".git"
            full = os.path.join(self.git_root, name)
            if os.path.isdir(full):
                return full
        return None

    def resolve(self, repo: str, ref: dict) -> tuple[str, str] | None:
        """(label, commit sha) of the ref in the bare repository, or None when it does not exist (yet)."""
        key = (repo, tuple(sorted(ref.items())))
        if key not in self._resolved:
            self._resolved[key] = self._resolve(repo, ref)
        return self._resolved[key]

    def forget(self) -> None:
        """Resolve refs afresh (called once per reconcile round, so a push is seen by the next write or tick)."""
        self._resolved.clear()

    @staticmethod
    def _resolve(repo: str, ref: dict) -> tuple[str, str] | None:
        if ref.get("commit"):
            candidates = [(ref.get("branch") or "HEAD", ref["commit"])]
        elif ref.get("tag"):
            candidates = [(ref["tag"], f"refs/tags/{ref['tag']}")]
        elif ref.get("name"):
            candidates = [(ref["name"], ref["name"])]
        else:
            branch = ref.get("branch") or "master"
            candidates = [(branch, f"refs/heads/{branch}")]
        for label, rev in candidates:
            proc = subprocess.run(
                ["git", "--git-dir", repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode == 0 and proc.stdout.strip():
                return label, proc.stdout.strip()
        return None

    def build(self, repo: str, sha: str, path: str) -> list[dict]:
        key = (repo, sha, path)
        if key not in self._builds:
            self._builds[key] = self._build(repo, sha, path)
        return [dict(obj) for obj in self._builds[key]]

    def _build(self, repo: str, sha: str, path: str) -> list[dict]:
        archive = subprocess.run(
            ["git", "--git-dir", repo, "archive", "--format=tar", sha], capture_output=True, check=False
        )
        if archive.returncode != 0:
            raise BuildError(f"failed to checkout {sha}: {archive.stderr.decode(errors='replace').strip()}")
        with tempfile.TemporaryDirectory(prefix="emulator-ks-") as tmp:
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(tmp, filter="data")
            root = os.path.realpath(os.path.join(tmp, path.lstrip("./") if path not in (".", "./", "") else ""))
            if not root.startswith(os.path.realpath(tmp)) or not os.path.isdir(root):
                raise BuildError(f"kustomization path not found: stat {path}: no such file or directory")
            docs: list[dict] = []
            for text in self._render(root):
                for doc in yaml.safe_load_all(text):
                    if isinstance(doc, dict) and doc.get("kind"):
                        docs.append(doc)
            return docs

    def _render(self, directory: str) -> list[str]:
        if any(os.path.exists(os.path.join(directory, name)) for name in KUSTOMIZATION_FILES):
            proc = subprocess.run([_kubectl(), "kustomize", directory], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise BuildError(f"kustomize build failed: {proc.stderr.strip()}")
            return [proc.stdout]
        out = []
        for entry in sorted(os.listdir(directory)):
            full = os.path.join(directory, entry)
            if os.path.isdir(full):
                out += self._render(full)
            elif entry.endswith((".yaml", ".yml")):
                with open(full, encoding="utf-8") as fh:
                    out.append(fh.read())
        return out


def inventory_id(obj: dict, group: str) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}_{meta['name']}_{group}_{obj['kind']}"
