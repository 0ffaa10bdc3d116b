"""Tests of the test doubles: stand-in kind and docker CLIs (tests/harness/bin) and the NodePort server."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from fake_nodes_api import FakeNodesAPI

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / "tests" / "harness" / "bin"
SERVER = ROOT / "tests" / "harness" / "nodeports" / "server.py"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Env(dict):
    """The environment for the stand-ins, with the fake API attached."""

    api: FakeNodesAPI


@pytest.fixture
def env(tmp_path):
    with FakeNodesAPI() as api:
        environ = Env(
            os.environ,
            STANDIN_STATE_DIR=str(tmp_path / "state"),
            STANDIN_API_SERVER=api.url,
            HOME=str(tmp_path / "home"),
        )
        environ.pop("KUBECONFIG", None)
        environ.pop("STANDIN_DOCKER_DAEMON", None)
        environ.api = api
        yield environ
        subprocess.run(
            [sys.executable, str(BIN / "kind"), "delete", "cluster", "--name", "t", "-q"], env=environ, check=False
        )


@pytest.fixture
def standin(env):
    holder = env

    def run(tool, *args, extra=None):
        run_env = dict(holder)
        run_env.update(extra or {})
        return subprocess.run(
            [sys.executable, str(BIN / tool), *args],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    run.env = holder
    return run


def test_headers_say_test_double():
    for path in (BIN / "kind", BIN / "docker", SERVER):
        head = path.read_text().splitlines()[:3]
        assert any("TEST DOUBLE" in line for line in head), path
        if path.parent == BIN:
            assert os.access(path, os.X_OK)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["create", "cluster", "--nope"], "ERROR: unknown flag: --nope"),
        (["create", "cluster", "-x"], "ERROR: unknown shorthand flag: 'x' in -x"),
        (["get", "clusters", "--name", "a"], "ERROR: unknown flag: --name"),
        (["delete", "cluster", "--config", "x"], "ERROR: unknown flag: --config"),
        (["delete", "cluster", "--wait", "1s"], "ERROR: unknown flag: --wait"),
        (["get", "kubeconfig", "--kubeconfig", "x"], "ERROR: unknown flag: --kubeconfig"),
        (["create", "cluster", "--wait", "soon"], 'ERROR: invalid argument "soon" for "--wait" flag'),
        (["create", "cluster", "--name"], "ERROR: flag needs an argument: --name"),
        (["create", "clusters"], 'ERROR: unknown command "clusters" for "kind create"'),
        (["frobnicate"], 'ERROR: unknown command "frobnicate" for "kind"'),
        (["get", "clusters", "extra"], 'ERROR: unknown command "extra" for "kind get clusters"'),
    ],
)
def test_kind_rejects_what_real_kind_rejects(standin, args, error):
    proc = standin("kind", *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith(error)


def test_kind_version_and_empty_list(standin):
    assert standin("kind", "version").stdout == "kind v0.33.0 go1.26.7 linux/amd64\n"
    assert standin("kind", "version", "-q").stdout == "0.33.0\n"
    proc = standin("kind", "get", "clusters")
    assert proc.returncode == 0 and proc.stdout == "" and "No kind clusters found." in proc.stderr


def test_kind_lifecycle_with_every_documented_flag(standin, tmp_path):
    port = free_port()
    config = tmp_path / "kind.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kind": "Cluster",
                "apiVersion": "kind.x-k8s.io/v1alpha4",
                "name": "ignored-by-flag",
                "nodes": [
                    {
                        "role": "control-plane",
                        "labels": {"tier": "cp"},
                        "extraPortMappings": [{"containerPort": 30099, "hostPort": port, "listenAddress": "127.0.0.1"}],
                    },
                    {"role": "worker"},
                    {"role": "worker", "labels": {"tier": "w"}},
                ],
            }
        )
    )
    kubeconfig = tmp_path / "kc"
    proc = standin(
        "kind",
        "create",
        "cluster",
        "-n",
        "t",
        "--config",
        str(config),
        "--image",
        "kindest/node:x",
        "--retain",
        "--wait=2m30s",
        "--kubeconfig",
        str(kubeconfig),
        "-v",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert 'Set kubectl context to "kind-t"' in proc.stderr

    nodes = standin.env.api.nodes
    assert sorted(nodes) == ["t-control-plane", "t-worker", "t-worker2"]
    assert nodes["t-control-plane"]["metadata"]["labels"]["tier"] == "cp"
    assert "node-role.kubernetes.io/control-plane" in nodes["t-control-plane"]["metadata"]["labels"]
    assert nodes["t-worker2"]["metadata"]["labels"]["tier"] == "w"
    assert nodes["t-worker"]["status"]["conditions"][0] == {
        **nodes["t-worker"]["status"]["conditions"][0],
        "type": "Ready",
        "status": "True",
    }

    written = yaml.safe_load(kubeconfig.read_text())
    assert written["current-context"] == "kind-t"
    assert written["clusters"][0]["cluster"]["server"] == standin.env["STANDIN_API_SERVER"]
    assert not (tmp_path / "home" / ".kube" / "config").exists()

    again = standin("kind", "create", "cluster", "--name", "t", "--kubeconfig", str(kubeconfig))
    assert again.returncode == 1
    assert 'node(s) already exist for a cluster with the name "t"' in again.stderr

    assert standin("kind", "get", "clusters").stdout == "t\n"
    assert standin("kind", "get", "nodes", "--name", "t").stdout.split() == ["t-control-plane", "t-worker", "t-worker2"]
    assert standin("kind", "get", "nodes", "-A").stdout.split()[0] == "t-control-plane"
    got = yaml.safe_load(standin("kind", "get", "kubeconfig", "--name", "t", "--internal").stdout)
    assert got["contexts"][0]["name"] == "kind-t"

    # the port mapping is served (no np_30099.py exists, so 503), and docker reports it
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    assert err.value.code == 503
    ports = standin("docker", "port", "t-control-plane").stdout
    assert f"30099/tcp -> 127.0.0.1:{port}" in ports
    names = standin("docker", "ps", "--filter", "label=io.x-k8s.kind.cluster=t", "--format", "{{.Names}}").stdout
    assert names.split() == ["t-control-plane", "t-worker", "t-worker2"]

    user = tmp_path / "home" / ".kube" / "config"
    assert standin("kind", "export", "kubeconfig", "--name", "t").returncode == 0
    assert "kind-t" in user.read_text()

    gone = standin("kind", "delete", "cluster", "--name", "t", "--kubeconfig", str(kubeconfig))
    assert gone.returncode == 0 and "Deleted nodes" in gone.stderr
    assert nodes == {}
    assert yaml.safe_load(kubeconfig.read_text())["contexts"] == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    assert standin("kind", "delete", "cluster", "--name", "t").returncode == 0  # idempotent like real kind
    assert standin("kind", "get", "kubeconfig", "--name", "t").returncode == 1
    assert standin("docker", "port", "t-control-plane").returncode == 1


def test_kind_create_fails_like_docker_on_a_busy_port(standin, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        config = tmp_path / "kind.yaml"
        config.write_text(
            json.dumps(
                {
                    "kind": "Cluster",
                    "apiVersion": "kind.x-k8s.io/v1alpha4",
                    "nodes": [
                        {
                            "role": "control-plane",
                            "extraPortMappings": [
                                {"containerPort": 30080, "hostPort": port, "listenAddress": "127.0.0.1"}
                            ],
                        }
                    ],
                }
            )
        )
        proc = standin("kind", "create", "cluster", "--name", "t", "--config", str(config))
    assert proc.returncode == 1
    assert f"Bind for 127.0.0.1:{port} failed: port is already allocated" in proc.stderr
    assert standin.env.api.nodes == {}
    assert standin("kind", "get", "clusters").stdout == ""


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["version", "--bogus"], "unknown flag: --bogus"),
        (["ps", "-z"], "unknown shorthand flag: 'z' in -z"),
        (["port"], '"docker port" requires at least 1 and at most 2 arguments.'),
        (["run", "x"], "'run' is not a docker command"),
    ],
)
def test_docker_rejects_unknown_usage(standin, args, error):
    proc = standin("docker", *args)
    assert proc.returncode == 125
    assert proc.stderr.startswith(error)


@pytest.mark.parametrize(
    ("state", "needle"),
    [
        ("down", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"),
        ("denied", "permission denied while trying to connect to the Docker daemon socket"),
    ],
)
def test_docker_daemon_states(standin, state, needle):
    for args in (
        ["version"],
        ["version", "--format", "{{.Server.Version}}"],
        ["info"],
        ["ps"],
        ["port", "x-control-plane"],
    ):
        proc = standin("docker", *args, extra={"STANDIN_DOCKER_DAEMON": state})
        assert proc.returncode == 1 and needle in proc.stderr, args


def test_docker_up(standin):
    assert standin("docker", "version", "-f", "{{.Server.Version}}").stdout == "28.2.2\n"
    root = standin("docker", "info", "--format", "{{.DockerRootDir}}").stdout.strip()
    assert os.path.isdir(root) and root.startswith(standin.env["STANDIN_STATE_DIR"])
    assert standin("docker", "ps", "-a", "-q").stdout == ""


def _load_server():
    spec = importlib.util.spec_from_file_location("nodeports_server", SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nodeport_server_serves_handler_modules(tmp_path):
    server = _load_server()
    (tmp_path / "np_30123.py").write_text(
        "import http.server\n"
        "def make_handler(kubeconfig, context, state_dir):\n"
        "    class H(http.server.BaseHTTPRequestHandler):\n"
        "        def do_GET(self):\n"
        "            body = ('%s|%s|%s' % (kubeconfig, context, state_dir)).encode()\n"
        "            self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
        "            self.end_headers(); self.wfile.write(body)\n"
        "        def log_message(self, *a): pass\n"
        "    return H\n"
    )
    (tmp_path / "np_30124.py").write_text("raise RuntimeError('broken on purpose')\n")
    p1, p2, p3 = free_port(), free_port(), free_port()
    servers = server.build_servers(
        [("127.0.0.1", p1, 30123), ("127.0.0.1", p2, 30124), ("127.0.0.1", p3, 30125)],
        "/k",
        "kind-x",
        "/s",
        directory=str(tmp_path),
    )
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        assert urllib.request.urlopen(f"http://127.0.0.1:{p1}/", timeout=5).read() == b"/k|kind-x|/s"
        for port, needle in ((p2, b"failed to load"), (p3, b"does not exist")):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            assert err.value.code == 503 and needle in err.value.read()
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()


@pytest.mark.parametrize("bad", ["127.0.0.1:8080", "8080=30080", "host:x=1"])
def test_nodeport_server_map_syntax(bad):
    server = _load_server()
    with pytest.raises(Exception, match="ADDRESS:HOSTPORT=NODEPORT"):
        server.parse_map(bad)
