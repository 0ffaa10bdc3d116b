"""The NodePort 30082 stand-in serves real git smart HTTP: real `git push` and `git clone` against it.

The emulated Kubernetes API (tests/harness/emulator) runs with its fake controllers; the git server's own manifests
(kube/bootstrap/git-server/) are created in it, because the stand-in only answers while a Service with nodePort
30082 has an available Deployment behind it, as a real NodePort would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
EMULATOR = ROOT / "tests" / "harness" / "emulator" / "emulator.py"
MANIFESTS = ROOT / "kube" / "bootstrap" / "git-server"

_spec = importlib.util.spec_from_file_location("np_30082", ROOT / "tests" / "harness" / "nodeports" / "np_30082.py")
np_30082 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(np_30082)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def git_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    for key, value in {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def emulator(tmp_path):
    state = tmp_path / "emulator"
    proc = subprocess.run(
        [sys.executable, str(EMULATOR), "start", "--state-dir", str(state), "--controllers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    url = proc.stdout.strip().split("=", 1)[1]
    yield url, str(state / "kubeconfig")
    subprocess.run([sys.executable, str(EMULATOR), "stop", "--state-dir", str(state)], check=False, timeout=60)


def api(url: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def apply_git_server(url: str) -> None:
    """Create the objects of kube/bootstrap/git-server/ through the API, as the git_server role does."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for obj in yaml.safe_load_all((MANIFESTS / name).read_text()):
            kind, ns = obj["kind"], obj["metadata"].get("namespace")
            path = {
                "Namespace": "/api/v1/namespaces",
                "PersistentVolumeClaim": f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
                "Service": f"/api/v1/namespaces/{ns}/services",
                "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
            }[kind]
            api(url, "POST", path, obj)


def wait_available(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = api(url, "GET", "/apis/apps/v1/namespaces/git-server/deployments/git-server")
        if (dep.get("status") or {}).get("availableReplicas"):
            return
        time.sleep(0.2)
    raise AssertionError("the emulator's controllers never made the git-server Deployment available")


@pytest.fixture
def nodeport(tmp_path, emulator):
    url, kubeconfig = emulator
    state = tmp_path / "standin"
    handler = np_30082.make_handler(kubeconfig, "kind-filewcount", str(state))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", url, state
    server.shutdown()
    server.server_close()


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture
def checkout(tmp_path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "--quiet", "-b", "main")
    (work / "README.md").write_text("hello\n")
    git(work, "add", "README.md")
    git(work, "commit", "--quiet", "-m", "Initial commit")
    return work


def test_creates_the_default_repository_on_start(nodeport):
    _base, _url, state = nodeport
    bare = state / "git" / "filewcount.git"
    assert (bare / "HEAD").read_text().strip() == "ref: refs/heads/main"
    assert git(bare, "config", "http.receivepack").stdout.strip() == "true"


def test_answers_503_until_the_service_has_an_available_deployment(nodeport, checkout):
    base, _url, _state = nodeport
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/filewcount.git/info/refs?service=git-upload-pack", timeout=10)
    assert err.value.code == 503
    assert b"no service has nodePort 30082" in err.value.read()
    push = git(checkout, "push", f"{base}/filewcount.git", "HEAD:refs/heads/main", check=False)
    assert push.returncode != 0


def test_push_then_clone_round_trips_and_a_second_push_is_a_no_op(nodeport, checkout, tmp_path):
    base, url, state = nodeport
    apply_git_server(url)
    wait_available(url)
    with urllib.request.urlopen(f"{base}/filewcount.git/info/refs?service=git-upload-pack", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"

    remote = f"{base}/filewcount.git"
    head = git(checkout, "rev-parse", "HEAD").stdout.strip()
    git(checkout, "push", remote, "HEAD:refs/heads/main")
    assert git(state / "git" / "filewcount.git", "rev-parse", "refs/heads/main").stdout.strip() == head
    again = git(checkout, "push", remote, "HEAD:refs/heads/main")
    assert "Everything up-to-date" in again.stderr

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", remote, str(clone))
    assert git(clone, "rev-parse", "HEAD").stdout.strip() == head
    assert (clone / "README.md").read_text() == "hello\n"
    assert git(checkout, "ls-remote", remote, "refs/heads/main").stdout.split()[0] == head


def test_large_push_with_chunked_transfer(nodeport, checkout):
    base, url, state = nodeport
    apply_git_server(url)
    wait_available(url)
    # Incompressible content well over git's 1 MiB http.postBuffer, so git sends the pack chunked.
    (checkout / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git(checkout, "add", "blob.bin")
    git(checkout, "commit", "--quiet", "-m", "Add a large file")
    head = git(checkout, "rev-parse", "HEAD").stdout.strip()
    git(checkout, "push", f"{base}/filewcount.git", "HEAD:refs/heads/main")
    assert git(state / "git" / "filewcount.git", "rev-parse", "refs/heads/main").stdout.strip() == head


def test_unknown_repository_is_404(nodeport):
    base, url, _state = nodeport
    apply_git_server(url)
    wait_available(url)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/other.git/info/refs?service=git-upload-pack", timeout=10)
    assert err.value.code == 404
