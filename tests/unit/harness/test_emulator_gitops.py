"""Flux content emulation: a GitRepository served from a local bare repo, its Kustomization applied, pruned,
and refused with the API's 422 when a pushed manifest is invalid."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import yaml
from conftest import SCHEMAS_DIR, namespace, start_emulator, stop_emulator

GOOD_APP = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "docker.io/bldrtech/filewcount:1.0"}]
"""


def _git(*args: str, cwd) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def gitops_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("gitops")
    bare = base / "git" / "filewcount.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = base / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    _git("remote", "add", "origin", str(bare), cwd=work)
    emu = start_emulator(base / "emu", "--controllers", "--git-root", str(base / "git"), "--resync-seconds", "0")
    for name in ("source.toolkit.fluxcd.io_gitrepositories.yaml", "kustomize.toolkit.fluxcd.io_kustomizations.yaml"):
        path = SCHEMAS_DIR / "crds" / name
        if not path.exists():
            stop_emulator(emu)
            pytest.skip(f"{path} not found; set FILEWCOUNT_SCHEMAS_DIR to the shared schemas directory.")
        emu.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(path.read_text()))
    namespace(emu, "flux-system")
    yield emu, work
    stop_emulator(emu)


def _push(work, files: dict[str, str | None]) -> str:
    for rel, text in files.items():
        path = work / rel
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "change", cwd=work)
    _git("push", "-q", "origin", "main", cwd=work)
    return _git("rev-parse", "HEAD", cwd=work)


def _git_repository(emu) -> None:
    emu.request(
        "POST",
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories",
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "flux-system"},
            "spec": {
                "interval": "1m",
                "url": "http://git-server.git-server.svc.cluster.local/filewcount.git",
                "ref": {"branch": "main"},
            },
        },
    )


def _reconcile(emu) -> dict:
    """Ask for a reconcile like `flux reconcile` does (annotation), then read the Kustomization."""
    path = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/apps"
    emu.request(
        "PATCH",
        path,
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": str(time.time())}}},
        content_type="application/merge-patch+json",
    )
    return emu.request("GET", path)[2]


def _ready(obj: dict) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def test_push_apply_prune_and_refuse_invalid(gitops_env):
    emu, work = gitops_env
    sha = _push(work, {"apps/shop.yaml": GOOD_APP})
    emu.request(
        "POST",
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories",
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "flux-system"},
            "spec": {
                "interval": "1m",
                "url": "http://git-server.git-server.svc.cluster.local/filewcount.git",
                "ref": {"branch": "main"},
            },
        },
    )
    status, _headers, _body = emu.request(
        "POST",
        "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations",
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps"},
            "spec": {
                "interval": "10m",
                "path": "./apps",
                "prune": True,
                "wait": True,
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            },
        },
    )
    assert status == 201
    ks = _reconcile(emu)
    assert _ready(ks)["status"] == "True", ks["status"]
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"
    _status, _headers, dep = emu.request("GET", "/apis/apps/v1/namespaces/shop/deployments/web")
    assert dep["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "apps"
    assert dep["status"]["availableReplicas"] == 2

    # Deleting a manifest and pushing prunes the object.
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {a: b}\n"
    sha = _push(work, {"apps/shop.yaml": GOOD_APP.split("---", maxsplit=1)[0], "apps/settings.yaml": cm})
    ks = _reconcile(emu)
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"
    assert emu.request("GET", "/apis/apps/v1/namespaces/shop/deployments/web")[0] == 404
    assert emu.request("GET", "/api/v1/namespaces/shop/configmaps/settings")[0] == 200

    # A deliberately invalid manifest (unknown field, wrong type) is refused with the API's 422 message.
    bad = GOOD_APP.replace("replicas: 2", "replicas: two\n  bogusField: true")
    _push(work, {"apps/shop.yaml": bad})
    ks = _reconcile(emu)
    ready = _ready(ks)
    assert ready["status"] == "False" and ready["reason"] == "ReconciliationFailed"
    assert "Deployment/shop/web dry-run failed (Invalid)" in ready["message"]
    assert 'unknown field "bogusField"' in ready["message"] and "spec.replicas" in ready["message"]
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"  # the last good revision stays applied
    assert emu.request("GET", "/apis/apps/v1/namespaces/shop/deployments/web")[0] == 404


WIDGET = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: flux-system}\nspec: {size: 1}\n"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def test_a_failed_kustomization_is_retried_once_its_crd_exists(gitops_env):
    emu, work = gitops_env
    _push(work, {"crs/widget.yaml": WIDGET})
    _git_repository(emu)  # 409 when the first test created it already
    base = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations"
    emu.request(
        "POST",
        base,
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "crs"},
            "spec": {
                "interval": "10m",
                "path": "./crs",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            },
        },
    )
    ks = emu.request("GET", base + "/crs")[2]
    assert 'no matches for kind "Widget"' in _ready(ks)["message"]
    emu.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    time.sleep(1.2)  # past the retry interval; the next write or resync tick retries
    emu.request(
        "PATCH", base + "/crs", {"metadata": {"labels": {"poke": "1"}}}, content_type="application/merge-patch+json"
    )
    assert _ready(emu.request("GET", base + "/crs")[2])["status"] == "True"
    assert emu.request("GET", "/apis/example.com/v1/namespaces/flux-system/widgets/w")[0] == 200
