"""The preflight role's failures, demonstrated for real with ansible-playbook.

Real here: the docker CLI with no daemon behind it (this machine has /usr/local/bin/docker and no dockerd), a
port held by a test server on 127.0.0.1, a missing GITHUB_TOKEN, the kernel's inotify limits read from /proc,
statvfs, Python imports, and the docker CLI's own "permission denied" on a root-only socket (run as nobody).
The stand-in docker (tests/harness/bin/docker) is used only to show a port held by this project's own (stand-in)
kind cluster passes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils import preflight as pf

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "preflight.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
HARNESS_BIN = ROOT / "tests" / "harness" / "bin"
REAL_DOCKER = shutil.which("docker", path=os.defpath + ":/usr/local/bin")


def play(extra_vars: dict, env: dict | None = None, check: bool = False):
    """Run the preflight playbook; return (rc, {failures, checks}) read from the JSON callback."""
    run_env = dict(os.environ)
    run_env.update(
        {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    )
    run_env.pop("GITHUB_TOKEN", None)
    run_env.update(env or {})
    argv = [str(ANSIBLE_PLAYBOOK), str(PLAYBOOK), "-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"ansible-playbook printed no JSON (rc={proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    result = None
    for play_ in report["plays"]:
        for task in play_["tasks"]:
            if "localhost" in task["hosts"] and "checks" in task["hosts"]["localhost"]:
                result = task["hosts"]["localhost"]
    assert result is not None, proc.stdout[-3000:]
    return proc.returncode, result, proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(REAL_DOCKER is None, reason="the docker CLI is not installed on this machine")
def test_daemon_down_with_the_real_docker_cli(tmp_path):
    # A socket path where nothing listens: the real CLI's own error, whatever runs on the default socket.
    endpoint = f"unix://{tmp_path}/docker.sock"
    rc, result, _stdout = play(
        {"preflight_checks": ["docker_cli", "docker_daemon"]},
        env={"DOCKER_HOST": endpoint, "PATH": f"{Path(REAL_DOCKER).parent}:{os.environ['PATH']}"},
    )
    assert rc == 2
    assert result["failures"] == [
        f"The Docker daemon is not running or not reachable at {endpoint}: start Docker (`sudo systemctl start "
        "docker`, or open Docker Desktop) and run again."
    ]


def test_docker_cli_missing(tmp_path):
    rc, result, _stdout = play(
        {"preflight_checks": ["docker_cli", "docker_daemon"], "preflight_docker_command": "docker-not-installed-here"}
    )
    assert rc == 2
    assert result["failures"] == [
        "The docker CLI (docker-not-installed-here) was not found on PATH: install Docker "
        "(https://docs.docker.com/get-docker/) and make sure `docker` is on PATH."
    ]


@pytest.mark.skipif(
    REAL_DOCKER is None or os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="needs root, runuser and the docker CLI to make a socket only root may use",
)
def test_permission_denied_from_the_real_docker_cli(tmp_path):
    """The real CLI, run as nobody against a socket only root may open, is classified as a permission problem."""
    sock_dir = tmp_path / "run"
    sock_dir.mkdir()
    sock_dir.chmod(0o755)
    tmp_path.chmod(0o755)
    path = sock_dir / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    path.chmod(0o600)
    try:
        proc = subprocess.run(
            [
                "runuser",
                "-u",
                "nobody",
                "--",
                REAL_DOCKER,
                "-H",
                f"unix://{path}",
                "version",
                "--format",
                "{{.Server.Version}}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.close()
    assert proc.returncode != 0
    result = pf.check_docker_daemon(run=lambda _argv: (proc.returncode, proc.stdout, proc.stderr))
    assert result.details["reason"] == "permission", proc.stderr
    assert result.message.startswith(
        f"Your user may not use the Docker daemon socket unix://{path} "
        "(permission denied): add yourself to the docker group"
    )


def test_permission_denied_through_the_playbook_with_the_standin_docker(tmp_path):
    rc, result, _stdout = play(
        {"preflight_checks": ["docker_daemon"]},
        env={
            "PATH": f"{HARNESS_BIN}:{os.environ['PATH']}",
            "STANDIN_DOCKER_DAEMON": "denied",
            "STANDIN_STATE_DIR": str(tmp_path),
        },
    )
    assert rc == 2
    assert result["failures"] == [
        "Your user may not use the Docker daemon socket unix:///var/run/docker.sock (permission denied): add "
        "yourself to the docker group with `sudo usermod -aG docker $USER`, then log out and in again."
    ]


def test_port_busy_names_the_holder(tmp_path):
    busy, free = free_port(), free_port()
    holder = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(busy), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _attempt in range(100):
            if not pf.port_is_free(busy):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        rc, result, _stdout = play(
            {"preflight_checks": ["ports"], "preflight_ports": [busy, free]},
            env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
        )
    finally:
        holder.terminate()
        holder.wait()
    assert rc == 2
    name = Path(sys.executable).name[:15]  # /proc/PID/comm is cut at 15 characters
    assert result["failures"] == [
        f"Host port {busy} is in use by {name} (pid {holder.pid}), not by the kind cluster 'filewcount': stop that "
        "program or choose other free host ports for the cluster's port mappings."
    ]
    # and with the port released the same check passes
    rc, result, _stdout = play({"preflight_checks": ["ports"], "preflight_ports": [busy, free]})
    assert rc == 0 and result["failures"] == []


def test_port_held_by_this_projects_cluster_passes(tmp_path):
    port = free_port()
    state = tmp_path / "standin"
    clusters = state / "kind" / "clusters"
    clusters.mkdir(parents=True)
    # What the stand-in kind records for a cluster whose mapping serves `port` (and the stand-in docker reads).
    (clusters / "filewcount.json").write_text(
        json.dumps(
            {
                "name": "filewcount",
                "nodes": ["filewcount-control-plane"],
                "api_server": "http://127.0.0.1:6443",
                "mappings": [{"address": "127.0.0.1", "host_port": port, "node_port": 30080}],
            }
        )
    )
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen(1)
        env = {"PATH": f"{HARNESS_BIN}:{os.environ['PATH']}", "STANDIN_STATE_DIR": str(state)}
        rc, result, _stdout = play({"preflight_checks": ["ports"], "preflight_ports": [port]}, env=env)
        assert rc == 0, result
        assert result["checks"][0]["details"]["cluster"] == [port]
        rc, result, _stdout = play(
            {"preflight_checks": ["ports"], "preflight_ports": [port], "preflight_cluster_name": "other"}, env=env
        )
        assert rc == 2 and "not by the kind cluster 'other'" in result["failures"][0]


def test_github_mode_without_token_and_with_one():
    rc, result, _stdout = play({"preflight_checks": ["mode"], "preflight_mode": "github"})
    assert rc == 2
    assert result["failures"] == [
        "The github mode needs a GitHub token but GITHUB_TOKEN is not set: export GITHUB_TOKEN with a personal "
        "access token that may write to your repository, or use the local mode (-e gitops_mode=local)."
    ]
    secret = "ghp_preflightTestTokenValue123"
    rc, result, stdout = play({"preflight_checks": ["mode"], "preflight_mode": "github"}, env={"GITHUB_TOKEN": secret})
    assert rc == 0 and secret not in stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify limits are checked on Linux only")
def test_inotify_limits_read_from_the_kernel():
    watches = pf.read_sysctl("fs.inotify.max_user_watches")
    instances = pf.read_sysctl("fs.inotify.max_user_instances")
    # kind's recommendation when this kernel is below it (as on this machine), else just above what it has
    want_w = 524288 if watches < 524288 else watches + 1
    want_i = 512 if instances < 512 else instances + 1
    rc, result, _stdout = play(
        {
            "preflight_checks": ["inotify"],
            "preflight_inotify_min_watches": want_w,
            "preflight_inotify_min_instances": want_i,
        }
    )
    assert rc == 2
    assert result["failures"] == [
        f"fs.inotify.max_user_watches is {watches} and fs.inotify.max_user_instances is {instances}, below the "
        f'{want_w} and {want_i} that kind\'s known issues page recommends against "too many open files": run '
        f"`sudo sysctl fs.inotify.max_user_watches={want_w} fs.inotify.max_user_instances={want_i}` (and add the "
        "same settings to /etc/sysctl.conf to keep them)."
    ]
    rc, _result, _stdout = play(
        {
            "preflight_checks": ["inotify"],
            "preflight_inotify_min_watches": watches,
            "preflight_inotify_min_instances": instances,
        }
    )
    assert rc == 0


def test_disk_python_and_check_mode_change_nothing(tmp_path):
    rc, result, _stdout = play(
        {
            "preflight_checks": ["disk", "python"],
            "preflight_disk_paths": [str(tmp_path)],
            "preflight_min_free_disk_gib": 1048576,
            "preflight_python_modules": ["kubernetes", "yaml", "no_such_module_xyz"],
        },
        check=True,
    )
    assert rc == 2
    disk, python = result["failures"]
    assert disk.startswith("Only ") and f"GiB is free on {tmp_path}, less than the 1048576.0 GiB" in disk
    match = re.fullmatch(
        r"The Python library no_such_module_xyz cannot be imported by (\S+): install with "
        r"`(\S+) -m pip install no_such_module_xyz` \(or run `make bootstrap`\)\.",
        python,
    )
    assert match and match.group(1) == match.group(2), python
    # the interpreter named is the one running ansible-playbook (ansible_playbook_python)
    assert os.path.realpath(match.group(1)) == os.path.realpath(sys.executable)
    assert result["changed"] is False
