"""The git_server role and playbooks/sync.yml run with ansible-playbook against the emulated Kubernetes API (with its
fake controllers) and the NodePort 30082 stand-in (real `git http-backend`), on a temporary clone of this
repository: converge, idempotent re-run, check mode, Flux's bootstrap commit pulled into the checkout, make sync,
and teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "git_server.yml"
SYNC = ROOT / "playbooks" / "sync.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
EMULATOR = ROOT / "tests" / "harness" / "emulator" / "emulator.py"
NODEPORTS = ROOT / "tests" / "harness" / "nodeports" / "server.py"
KUBECTL = Path(sys.executable).with_name("kubectl")
SCHEMAS = Path(os.environ.get("FILEWCOUNT_SCHEMAS_DIR", ROOT.parent / "shared" / "schemas"))

FLUX_OBJECTS = """
apiVersion: v1
kind: Namespace
metadata: {name: flux-system}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: flux-system, namespace: flux-system}
spec:
  interval: 1m0s
  ref: {branch: main}
  url: http://git-server.git-server.svc.cluster.local/filewcount.git
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: flux-system, namespace: flux-system}
spec:
  interval: 10m0s
  path: ./kube/clusters/kind
  prune: true
  sourceRef: {kind: GitRepository, name: flux-system}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def harness(tmp_path):
    state = tmp_path / "standin"
    started = subprocess.run(
        [sys.executable, str(EMULATOR), "start", "--state-dir", str(state / "emulator"), "--controllers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    url = started.stdout.strip().rsplit("=", 1)[1]
    kubeconfig = state / "emulator" / "kubeconfig"
    port = free_port()
    nodeports = subprocess.Popen(
        [
            sys.executable,
            str(NODEPORTS),
            "--kubeconfig",
            str(kubeconfig),
            "--context",
            "kind-filewcount",
            "--state-dir",
            str(state),
            "--map",
            f"127.0.0.1:{port}=30082",
        ],
        stderr=subprocess.DEVNULL,
    )
    home = tmp_path / "home"
    home.mkdir()
    env = dict(
        os.environ,
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        STANDIN_STATE_DIR=str(state),
        STANDIN_API_SERVER=url,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    env.pop("KUBECONFIG", None)
    # The published checkout: a clone, so the tests never add remotes to or move this working tree.
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True, env=env)
    variables = {
        "git_server_kubeconfig": str(kubeconfig),
        "git_server_context": "kind-filewcount",
        "git_server_checkout_dir": str(checkout),
        "git_server_manifests_dir": str(ROOT / "kube" / "bootstrap" / "git-server"),
        "git_server_host_port": port,
        "git_server_wait_timeout": 30,
    }
    for _attempt in range(50):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield {"env": env, "vars": variables, "checkout": checkout, "kubeconfig": kubeconfig, "state": state, "port": port}
    nodeports.send_signal(signal.SIGTERM)
    nodeports.wait(timeout=30)
    subprocess.run([sys.executable, str(EMULATOR), "stop", "--state-dir", str(state / "emulator")], check=False)


def play(h: dict, playbook: Path, *args: str, extra: dict | None = None, check: bool = True) -> dict:
    variables = dict(h["vars"], **(extra or {}))
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), str(playbook), "-e", json.dumps(variables), *args],
        cwd=ROOT,
        env=h["env"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    stats = result["stats"]["localhost"]
    if check:
        assert proc.returncode == 0, json.dumps(failures(result), indent=1)
    return {"rc": proc.returncode, "stats": stats, "result": result}


def failures(result: dict) -> list:
    found = []
    for p in result["plays"]:
        for task in p["tasks"]:
            host = task["hosts"].get("localhost") or {}
            if host.get("failed"):
                found.append({"task": task["task"]["name"], "msg": host.get("msg")})
    return found


def task_result(run: dict, name: str) -> dict:
    for p in run["result"]["plays"]:
        for task in p["tasks"]:
            if task["task"]["name"] == name:
                return task["hosts"]["localhost"]
    raise AssertionError(f"no task named {name!r}")


def server_main(h: dict) -> str:
    return git(h["state"] / "git" / "filewcount.git", "rev-parse", "refs/heads/main")


def flux_commit(h: dict, tmp_path: Path) -> str:
    """What flux bootstrap does to the server: clone the push URL, commit flux-system/, push."""
    clone = tmp_path / "flux-clone"
    subprocess.run(
        ["git", "clone", "--quiet", f"http://localhost:{h['port']}/filewcount.git", str(clone)],
        check=True,
        env=h["env"],
    )
    target = clone / "kube" / "clusters" / "kind" / "flux-system" / "gotk-sync.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# written by the test in place of flux bootstrap\n")
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True, env=h["env"])
    subprocess.run(["git", "commit", "--quiet", "-m", "Add Flux sync manifests"], cwd=clone, check=True, env=h["env"])
    subprocess.run(["git", "push", "--quiet", "origin", "HEAD:main"], cwd=clone, check=True, env=h["env"])
    return git(clone, "rev-parse", "HEAD")


def test_converge_idempotence_check_mode_post_flux_sync_teardown(harness, tmp_path):
    h, checkout = harness, harness["checkout"]
    head = git(checkout, "rev-parse", "HEAD")

    # A check run on a cluster without the server changes nothing and does not fail.
    predicted = play(h, PLAYBOOK, "--check")
    assert predicted["stats"]["failures"] == 0
    assert git(checkout, "remote") == "origin"

    first = play(h, PLAYBOOK)
    assert first["stats"]["changed"] >= 2
    assert server_main(h) == head
    assert git(checkout, "remote", "get-url", "local") == f"http://localhost:{h['port']}/filewcount.git"
    urls = task_result(first, "Report the URLs the flux role receives")["msg"]
    assert urls == (
        f"push=http://localhost:{h['port']}/filewcount.git "
        "cluster=http://git-server.git-server.svc.cluster.local/filewcount.git"
    )

    assert play(h, PLAYBOOK)["stats"]["changed"] == 0
    assert play(h, PLAYBOOK, "--check")["stats"]["changed"] == 0

    # Flux bootstrap's commit lands on the server: re-running bootstrap pushes nothing, post_flux pulls it once.
    flux = flux_commit(h, tmp_path)
    assert play(h, PLAYBOOK)["stats"]["changed"] == 0
    assert play(h, PLAYBOOK, "--check", extra={"git_server_entry": "post_flux"})["stats"]["changed"] == 1
    assert git(checkout, "rev-parse", "HEAD") == head
    assert play(h, PLAYBOOK, extra={"git_server_entry": "post_flux"})["stats"]["changed"] == 1
    assert git(checkout, "rev-parse", "HEAD") == flux
    assert play(h, PLAYBOOK, extra={"git_server_entry": "post_flux"})["stats"]["changed"] == 0

    # make sync: a new commit is pushed and Flux is asked to reconcile; a dirty tree is refused.
    subprocess.run(
        [
            str(KUBECTL),
            "--kubeconfig",
            str(h["kubeconfig"]),
            "apply",
            "-f",
            str(SCHEMAS / "crds" / "source.toolkit.fluxcd.io_gitrepositories.yaml"),
            "-f",
            str(SCHEMAS / "crds" / "kustomize.toolkit.fluxcd.io_kustomizations.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(h["kubeconfig"]), "apply", "-f", "-"],
        input=FLUX_OBJECTS,
        text=True,
        check=True,
        capture_output=True,
    )
    (checkout / "NOTES.md").write_text("a change to publish\n")
    git(checkout, "add", "NOTES.md")
    subprocess.run(["git", "commit", "--quiet", "-m", "Publish a note"], cwd=checkout, check=True, env=h["env"])
    sync_vars = {
        "gitops_kubeconfig": str(h["kubeconfig"]),
        "gitops_kube_context": "kind-filewcount",
        "gitops_mode": "local",
        "sync_checkout_dir": str(checkout),
        "sync_push_url": f"http://localhost:{h['port']}/filewcount.git",
        # The emulated source-controller invents revisions instead of reading the git server.
        "sync_require_pushed_revision": False,
        "sync_timeout": 30,
    }
    synced = play(h, SYNC, extra=sync_vars)
    assert server_main(h) == git(checkout, "rev-parse", "HEAD")
    report = task_result(synced, "Report the applied revision")["msg"]
    assert report.startswith("Flux applied revision main@sha1:")

    (checkout / "NOTES.md").write_text("not committed\n")
    refused = play(h, SYNC, extra=sync_vars, check=False)
    assert refused["rc"] != 0
    assert failures(refused["result"])[0]["msg"] == (
        "The checkout has uncommitted changes; commit or stash them, then run again."
    )
    git(checkout, "checkout", "--", "NOTES.md")

    # Teardown removes the remote, once.
    assert play(h, PLAYBOOK, extra={"git_server_entry": "teardown"})["stats"]["changed"] == 1
    assert git(checkout, "remote") == "origin"
    assert play(h, PLAYBOOK, extra={"git_server_entry": "teardown"})["stats"]["changed"] == 0
