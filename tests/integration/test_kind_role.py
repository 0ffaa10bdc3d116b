"""The kind role (after preflight) run with ansible-playbook against the harness: the stand-in kind starts a real
control plane (tests/harness/cluster.py) whose node kwok simulates, and the stand-in docker answers preflight.
Create, idempotent re-run, check mode, config change refused, download of a pinned kind from a local HTTP server
verified by checksum (and refused on a mismatch), a node that never turns Ready, and idempotent deletion."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "kind.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
HARNESS_BIN = ROOT / "tests" / "harness" / "bin"
sys.path.insert(0, str(ROOT / "tests" / "harness"))
import cluster as harness_cluster  # noqa: E402


def free_ports(count):
    socks = []
    for _port in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


@pytest.fixture
def harness(tmp_path):
    state = tmp_path / "standin"
    env = dict(
        os.environ,
        STANDIN_STATE_DIR=str(state),
        FILEWCOUNT_TESTBIN_DIR=str(harness_cluster.testbin_dir()),
        HOME=str(tmp_path / "home"),
        PATH=f"{HARNESS_BIN}:{os.environ['PATH']}",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    for variable in ("KUBECONFIG", "GITHUB_TOKEN", "STANDIN_API_SERVER"):
        env.pop(variable, None)
    ports = free_ports(3)
    variables = {
        "kind_cluster_name": "filewcount",
        "kind_kubeconfig": str(tmp_path / "state" / "kubeconfig"),
        "kind_cache_dir": str(tmp_path / "cache"),
        "kind_data_dir": str(tmp_path / "data"),
        "kind_port_mappings": [
            {"host_port": p, "node_port": n} for p, n in zip(ports, (30080, 30081, 30082), strict=True)
        ],
    }
    yield env, variables, tmp_path
    subprocess.run(
        [sys.executable, str(HARNESS_BIN / "kind"), "delete", "cluster", "--name", "filewcount", "-q"],
        env=env,
        check=False,
    )
    # Whatever a test left, no process of the cluster keeps running.
    assert not harness_cluster.stop(state / "kind", "filewcount")


def play(env, variables, *extra):
    argv = [str(ANSIBLE_PLAYBOOK), str(PLAYBOOK), "-e", json.dumps(variables), *extra]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    report = json.loads(proc.stdout)
    if "localhost" not in report["stats"]:
        pytest.fail(proc.stdout[-3000:] + proc.stderr[-3000:])
    stats = report["stats"]["localhost"]
    tasks = {}
    for play_ in report["plays"]:
        for task in play_["tasks"]:
            # the role prefix ("filewcount.gitops.kind : ") is not part of the name here
            tasks[task["task"]["name"].split(" : ", 1)[-1]] = task["hosts"].get("localhost", {})
    return proc.returncode, stats, tasks


CREATE = "Create the kind cluster when absent, or check its config"
DELETE = "Delete the kind cluster (absent is fine)"
DOWNLOAD = "Download kind and verify its checksum (reused when already cached)"


def test_create_rerun_check_mismatch_delete(harness):
    env, variables, tmp_path = harness
    rc, stats, tasks = play(env, variables, "--check")
    assert rc == 0 and tasks[CREATE]["created"] and not Path(variables["kind_kubeconfig"]).exists()

    rc, stats, tasks = play(env, variables)
    assert rc == 0, tasks
    assert tasks[CREATE]["changed"] and tasks[CREATE]["created"]
    assert tasks["Wait until every node is Ready"]["resources"][0]["metadata"]["name"] == "filewcount-control-plane"
    kubeconfig = yaml.safe_load(Path(variables["kind_kubeconfig"]).read_text())
    assert kubeconfig["current-context"] == "kind-filewcount"
    assert not (tmp_path / "home" / ".kube").exists()
    rendered = tasks[CREATE]["rendered_config"]["nodes"][0]
    assert rendered["image"].startswith("kindest/node:v1.36.4@sha256:")
    assert rendered["extraMounts"] == [
        {"hostPath": variables["kind_data_dir"], "containerPath": "/var/local-path-provisioner"}
    ]
    assert [m["containerPort"] for m in rendered["extraPortMappings"]] == [30080, 30081, 30082]
    assert {m["listenAddress"] for m in rendered["extraPortMappings"]} == {"127.0.0.1"}

    rc, stats, tasks = play(env, variables)
    assert rc == 0 and stats["changed"] == 0, tasks
    rc, stats, _tasks = play(env, variables, "--check")
    assert rc == 0 and stats["changed"] == 0

    changed = dict(
        variables,
        kind_node_image="kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0",
    )
    rc, stats, tasks = play(env, changed)
    assert rc == 2
    msg = tasks[CREATE]["msg"]
    assert msg.startswith("The kind cluster 'filewcount' was created from a different configuration")
    assert msg.endswith(
        f"recreate it with `make teardown && make bootstrap`, or `kind delete cluster --name "
        f"filewcount --kubeconfig {variables['kind_kubeconfig']}` and run again."
    )

    absent = dict(variables, kind_state="absent")
    rc, stats, tasks = play(env, absent, "--check")
    assert rc == 0 and tasks[DELETE]["changed"] and Path(variables["kind_kubeconfig"]).exists()
    rc, stats, tasks = play(env, absent)
    assert rc == 0 and tasks[DELETE]["deleted"] and not Path(variables["kind_kubeconfig"]).exists()
    rc, stats, _tasks = play(env, absent)
    assert rc == 0 and stats["changed"] == 0


@pytest.fixture
def release_server(tmp_path):
    """A local HTTP server laid out like the kind release downloads, serving the stand-in kind as the binary."""
    root = tmp_path / "releases"
    (root / "v9.9.9").mkdir(parents=True)
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    platform = f"linux-{arch}"
    binary = root / "v9.9.9" / f"kind-{platform}"
    # The "release binary": a wrapper running the stand-in kind (which finds the NodePort server beside itself).
    binary.write_text(f'#!/bin/sh\nexec {sys.executable} {HARNESS_BIN / "kind"} "$@"\n')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", platform, hashlib.sha256(binary.read_bytes()).hexdigest()
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the release layout here is built for Linux")
def test_pinned_kind_is_downloaded_verified_and_reused(harness, release_server):
    env, variables, tmp_path = harness
    base, platform, digest = release_server
    # No kind on PATH at all (only the stand-in docker for preflight), so the role must download the pinned one.
    only_docker = tmp_path / "only-docker"
    only_docker.mkdir()
    (only_docker / "docker").symlink_to(HARNESS_BIN / "docker")
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(HARNESS_BIN))
    env = dict(env, PATH=f"{only_docker}{os.pathsep}{path}", STANDIN_KIND_VERSION="v9.9.9")
    assert shutil.which("kind", path=env["PATH"]) is None
    pinned = dict(variables, kind_version="v9.9.9", kind_download_base_url=base)

    # A wrong checksum is refused and nothing is kept.
    rc, _stats, tasks = play(env, dict(pinned, kind_checksums={platform: "0" * 64}))
    assert rc == 2 and "checksum" in tasks[DOWNLOAD]["msg"].lower()
    assert not (tmp_path / "cache" / "bin" / "kind-v9.9.9").exists()

    rc, _stats, tasks = play(env, dict(pinned, kind_checksums={platform: digest}))
    assert rc == 0, [t.get("msg") for t in tasks.values() if t.get("failed")]
    cached = tmp_path / "cache" / "bin" / "kind-v9.9.9"
    assert tasks[DOWNLOAD]["changed"] and cached.exists() and os.access(cached, os.X_OK)
    assert tasks[CREATE]["created"]
    rc, stats, tasks = play(env, dict(pinned, kind_checksums={platform: digest}))
    assert rc == 0, [t.get("msg") for t in tasks.values() if t.get("failed")]
    assert stats["changed"] == 0 and not tasks[DOWNLOAD]["changed"]


def test_nodes_never_ready_fail_with_one_clear_message(harness):
    env, variables, _tmp_path = harness
    env = dict(env, STANDIN_KIND_NODE_READY="false")
    rc, _stats, tasks = play(env, dict(variables, kind_wait_timeout=3))
    assert rc == 2
    assert tasks[CREATE]["created"]
    msg = tasks["Explain why the nodes are not Ready"]["msg"]
    assert msg.startswith("The nodes of the kind cluster 'filewcount' were not listed and Ready within 3 seconds (")
    assert msg.endswith("`docker logs filewcount-control-plane`, or raise kind_wait_timeout.")
