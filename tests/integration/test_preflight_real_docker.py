"""Preflight against a REAL Docker daemon (Debian's docker.io dockerd, started here as root on a private socket).

No image can be pulled in this workplace, so the "kind node" is a container made from a local busybox-static
import, named like kind names it (<cluster>-control-plane) and publishing a port on 127.0.0.1 like kind's
extraPortMappings: the real docker-proxy then holds the host port, and preflight must accept it for this project's
cluster and name docker-proxy for any other cluster. Skipped (with the reason) where dockerd, root or busybox is
missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "preflight.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
DOCKERD = shutil.which("dockerd", path=os.defpath + ":/usr/sbin:/usr/local/sbin")
DOCKER = shutil.which("docker", path=os.defpath + ":/usr/local/bin")
BUSYBOX = shutil.which("busybox", path="/bin:/usr/bin")

needs = []
if os.geteuid() != 0:
    needs.append("root")
if not DOCKERD:
    needs.append("dockerd (apt-get install docker.io)")
if not DOCKER:
    needs.append("the docker CLI")
if not BUSYBOX:
    needs.append("busybox (apt-get install busybox-static)")
if not needs:
    # busybox must be static to run alone in a scratch image
    with open(BUSYBOX, "rb") as handle:
        if b"ld-linux" in handle.read(1 << 20):
            needs.append("a static busybox (apt-get install busybox-static)")
skip_reason = "needs " + ", ".join(needs) if needs else ""


def docker(host, *args, check=True):
    return subprocess.run([DOCKER, "-H", host, *args], capture_output=True, text=True, timeout=120, check=check)


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    if needs:
        pytest.skip(skip_reason)
    base = Path("/tmp") / f"fwc-dockerd-{os.getpid()}"  # unix socket paths must stay short
    base.mkdir(exist_ok=True)
    host = f"unix://{base}/docker.sock"
    log = open(base / "dockerd.log", "wb")  # noqa: SIM115 - open for the daemon's lifetime
    proc = subprocess.Popen(
        [
            DOCKERD,
            "--host",
            host,
            "--data-root",
            str(base / "root"),
            "--exec-root",
            str(base / "exec"),
            "--pidfile",
            str(base / "docker.pid"),
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        for _attempt in range(120):
            if docker(host, "version", "--format", "{{.Server.Version}}", check=False).returncode == 0:
                break
            if proc.poll() is not None:
                pytest.skip(f"dockerd cannot run here: {(base / 'dockerd.log').read_text()[-500:]}")
            time.sleep(0.5)
        else:
            pytest.skip("dockerd did not answer within 60 seconds")
        image_dir = tmp_path_factory.mktemp("image")
        tar_path = image_dir / "busybox.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(BUSYBOX, arcname="bin/busybox")
        with open(tar_path, "rb") as handle:
            subprocess.run(
                [DOCKER, "-H", host, "import", "-", "fwc-preflight-busybox:local"],
                stdin=handle,
                capture_output=True,
                check=True,
                timeout=120,
            )
        yield host
    finally:
        docker(host, "rm", "-f", "fwctest-control-plane", check=False)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def play(host, extra_vars):
    env = dict(
        os.environ,
        DOCKER_HOST=host,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        PATH=f"{Path(DOCKER).parent}:{os.environ['PATH']}",
    )
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), str(PLAYBOOK), "-e", json.dumps(extra_vars)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(proc.stdout)
    for play_ in report["plays"]:
        for task in play_["tasks"]:
            result = task["hosts"].get("localhost", {})
            if "checks" in result:
                return proc.returncode, result
    pytest.fail(proc.stdout[-3000:])
    return None


def test_daemon_up_and_disk_measured_at_docker_root(dockerd):
    rc, result = play(
        dockerd, {"preflight_checks": ["docker_cli", "docker_daemon", "disk"], "preflight_min_free_disk_gib": 0.01}
    )
    assert rc == 0, result["failures"]
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["docker_daemon"]["details"]["server_version"]
    # the daemon's own root dir (docker info) is among the measured paths
    assert any(path.endswith("/root") for path in checks["disk"]["details"]["free_bytes"])


def test_port_published_by_the_clusters_node_container(dockerd):
    port = free_port()
    docker(
        dockerd,
        "run",
        "-d",
        "--name",
        "fwctest-control-plane",
        "-p",
        f"127.0.0.1:{port}:30080",
        "fwc-preflight-busybox:local",
        "/bin/busybox",
        "sleep",
        "600",
    )
    try:
        assert f"30080/tcp -> 127.0.0.1:{port}" in docker(dockerd, "port", "fwctest-control-plane").stdout
        rc, result = play(
            dockerd, {"preflight_checks": ["ports"], "preflight_ports": [port], "preflight_cluster_name": "fwctest"}
        )
        assert rc == 0, result["failures"]
        assert result["checks"][0]["details"]["cluster"] == [port]

        rc, result = play(
            dockerd, {"preflight_checks": ["ports"], "preflight_ports": [port], "preflight_cluster_name": "filewcount"}
        )
        assert rc == 2
        assert result["failures"][0].startswith(f"Host port {port} is in use by docker-proxy (pid ")
        assert result["failures"][0].endswith(
            "not by the kind cluster 'filewcount': stop that program or choose "
            "other free host ports for the cluster's port mappings."
        )
    finally:
        docker(dockerd, "rm", "-f", "fwctest-control-plane", check=False)
