"""The preflight role's failures, demonstrated for real with ansible-playbook.

Real here: the docker CLI with no daemon behind it (this machine has /usr/local/bin/docker and no dockerd), a
port held by a test server on 127.0.0.1, a missing GITHUB_TOKEN, the kernel's inotify limits read from /proc,
statvfs, Python imports, the docker CLI's own "permission denied" on a root-only socket (run as nobody), and the
output a newcomer reads (the default callback, as ansible.cfg configures it). The stand-in docker
(tests/harness/bin/docker) is used to show a port held by this project's own (stand-in) kind cluster passes and
that the stand-in environment passes every check; a one-file fake docker reports other host architectures.
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


def play_as_a_newcomer(extra_vars: dict, env: dict) -> tuple[int, str]:
    """Run the preflight playbook with the callback settings of ansible.cfg; return (rc, what the terminal shows)."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "GITHUB_TOKEN"}
    run_env.update({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    run_env.update(env)
    argv = [str(ANSIBLE_PLAYBOOK), str(PLAYBOOK), "-e", json.dumps(extra_vars)]
    proc = subprocess.run(argv, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def fake_docker(tmp_path: Path, architecture: str) -> Path:
    """A docker CLI whose daemon answers `version` and reports `architecture` (nothing else) on PATH."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1 $3" in\n'
        '  "version {{.Server.Version}}") echo 28.2.2 ;;\n'
        f'  "info {{{{.Architecture}}}}") echo {architecture} ;;\n'
        '  *) echo "unknown: $*" >&2; exit 125 ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return bindir


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
def test_inotify_with_the_real_defaults_warns_below_kinds_recommendation():
    """No threshold is lowered: the role's defaults against this kernel's real limits (stock here: 128 instances)."""
    watches = pf.read_sysctl("fs.inotify.max_user_watches")
    instances = pf.read_sysctl("fs.inotify.max_user_instances")
    rc, result, stdout = play({"preflight_checks": ["inotify"]})
    assert rc == 0, result["failures"]
    (check,) = result["checks"]
    short = {
        key: value
        for key, value, want in (
            ("fs.inotify.max_user_watches", watches, 524288),
            ("fs.inotify.max_user_instances", instances, 512),
        )
        if value < want
    }
    if not short:
        assert check["warning"] == "" and result["advice"] == []
        return
    assert watches >= 8192 and instances >= 128, "this kernel's limits were lowered below any stock default"
    cmd = "sudo sysctl " + " ".join(f"{key}={524288 if 'watches' in key else 512}" for key in short)
    assert check["ok"] and f"`{cmd}`" in check["warning"]
    assert check["warning"].startswith(" and ".join(f"{key} is {value}" for key, value in short.items()))
    assert "enough for this one-node kind cluster" in check["warning"]
    assert result["advice"] == [check["warning"]]
    assert cmd in stdout  # shown as an Ansible warning too


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify limits are checked on Linux only")
def test_inotify_below_the_one_node_floor_fails_with_the_command():
    watches = pf.read_sysctl("fs.inotify.max_user_watches")
    instances = pf.read_sysctl("fs.inotify.max_user_instances")
    # a floor just above this kernel's values stands in for a kernel lowered below the stock defaults
    floor_w, floor_i = watches + 1, instances + 1
    want_w, want_i = max(524288, floor_w), max(512, floor_i)
    rc, result, _stdout = play(
        {
            "preflight_checks": ["inotify"],
            "preflight_inotify_min_watches": floor_w,
            "preflight_inotify_min_instances": floor_i,
        }
    )
    assert rc == 2
    assert result["failures"] == [
        f"fs.inotify.max_user_watches is {watches} and fs.inotify.max_user_instances is {instances}, below the "
        f"{floor_w} and {floor_i} that even a one-node kind cluster needs (the lowest a stock Linux kernel sets): "
        f"run `sudo sysctl fs.inotify.max_user_watches={want_w} fs.inotify.max_user_instances={want_i}` (and add "
        "the same settings to /etc/sysctl.conf to keep them)."
    ]


def test_the_standin_environment_passes_every_check_with_the_real_defaults(tmp_path):
    """What molecule/default runs: the stand-in docker, no lowered thresholds (ports chosen free here)."""
    env = {"PATH": f"{HARNESS_BIN}:{os.environ['PATH']}", "STANDIN_STATE_DIR": str(tmp_path)}
    rc, result, _stdout = play({"preflight_ports": [free_port()], "preflight_disk_paths": [str(tmp_path)]}, env=env)
    assert rc == 0, result["failures"]
    assert [c["name"] for c in result["checks"]] == [
        "docker_cli",
        "docker_daemon",
        "arch",
        "ports",
        "inotify",
        "disk",
        "python",
        "mode",
    ]


@pytest.mark.skipif(REAL_DOCKER is None, reason="the docker CLI is not installed on this machine")
def test_a_newcomer_without_a_docker_daemon_reads_the_sentence_not_a_result_dump(tmp_path):
    """All checks, the real docker CLI, no daemon: the failure shows the failed checks' sentences only."""
    endpoint = f"unix://{tmp_path}/docker.sock"
    rc, shown = play_as_a_newcomer(
        {"preflight_disk_paths": [str(tmp_path)], "preflight_ports": [free_port()]},
        env={"DOCKER_HOST": endpoint, "PATH": f"{Path(REAL_DOCKER).parent}:{os.environ['PATH']}"},
    )
    assert rc == 2, shown
    failed = shown[shown.index("fatal: [localhost]: FAILED!") : shown.index("PLAY RECAP")]
    # only `changed` and `msg`: no checks, details or stderr of the checks that ran
    for key in ("checks:", "details:", "failures:", "stderr:", "skipped:", '"checks"'):
        assert key not in shown, shown
    assert " ".join(failed.split()) == (
        f"fatal: [localhost]: FAILED! => changed: false msg: 'The Docker daemon is not running or not reachable at "
        f"{endpoint}: start Docker (`sudo systemctl start docker`, or open Docker Desktop) and run again.'"
    ), shown
    assert "ok: [localhost]" in shown[shown.index("TASK [filewcount.gitops.preflight : Check docker") :]


@pytest.mark.parametrize(
    ("architecture", "rc", "expected"),
    [
        ("x86_64", 0, None),
        ("aarch64", 0, "Docker (docker info) reports the aarch64 architecture, and no public source we found says"),
        ("s390x", 2, "Docker (docker info) reports the s390x architecture, and kind ships pre-built node images for"),
    ],
)
def test_host_architecture_is_reported_before_anything_is_created(tmp_path, architecture, rc, expected):
    bindir = fake_docker(tmp_path, architecture)
    got_rc, result, stdout = play(
        {"preflight_checks": ["docker_cli", "docker_daemon", "arch"]}, env={"PATH": f"{bindir}:{os.environ['PATH']}"}
    )
    assert got_rc == rc, stdout[-2000:]
    arch = next(c for c in result["checks"] if c["name"] == "arch")
    assert arch["details"]["machine"] == architecture and arch["details"]["source"] == "Docker (docker info)"
    if expected is None:
        assert arch["warning"] == "" and result["failures"] == [] and result["advice"] == []
    elif rc == 0:
        assert arch["warning"].startswith(expected) and result["advice"] == [arch["warning"]]
        assert "docker.io/bldrtech/filewcount:1.0 and 2.0" in arch["warning"]
        assert 'README.md "Host architecture"' in arch["warning"]
    else:
        assert result["failures"] == [arch["message"]] and arch["message"].startswith(expected)


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
