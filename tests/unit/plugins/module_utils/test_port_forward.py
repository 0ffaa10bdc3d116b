"""Tests of port_forward's logic against fake kubectl scripts that really listen, fail or hang."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils import port_forward as pf

pytestmark = pytest.mark.integration

# Parses the argv the module builds and behaves like kubectl port-forward: MODE listen prints kubectl's line and
# accepts connections (SIGUSR1 closes the listener, so the process lives on without listening); MODE error prints
# kubectl's error for a missing Service and exits 1; MODE hang never listens.
FAKE_KUBECTL = """\
#!{python}
import signal, socket, sys, time

MODE = {mode!r}
args = sys.argv[1:]
i = args.index("port-forward")
rest = args[i + 1:]
address = rest[rest.index("--address") + 1]
resource, ports = rest[-2], rest[-1]
local, remote = (int(p) for p in ports.split(":"))
if MODE == "error":
    print('error: services "nope" not found', file=sys.stderr, flush=True)
    sys.exit(1)
if MODE == "hang":
    print("waiting for the pod", flush=True)
    time.sleep(3600)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's net.Listen (kubectl) does
server.bind((address, local))
server.listen(16)
signal.signal(signal.SIGUSR1, lambda *a: server.close())
print(f"Forwarding from {{address}}:{{local}} -> {{remote}}", flush=True)
while True:
    try:
        conn, _peer = server.accept()
    except OSError:
        time.sleep(3600)
        continue
    print(f"Handling connection for {{local}}", flush=True)
    conn.close()
"""


def fake_kubectl(directory, mode: str = "listen") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kubectl"
    path.write_text(FAKE_KUBECTL.format(python=sys.executable, mode=mode))
    path.chmod(0o755)
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def alive(pid: int) -> bool:
    return pf.process_cmdline(pid) is not None


@pytest.fixture
def spawned(monkeypatch, tmp_path):
    """Record every process the code under test starts; kill those of this test's fake kubectl afterwards."""
    pids: list[int] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        pids.append(proc.pid)
        return proc

    monkeypatch.setattr(pf.subprocess, "Popen", recording_popen)
    yield pids
    monkeypatch.undo()
    for pid in pids:
        cmdline = pf.process_cmdline(pid) or ""
        if str(tmp_path) in cmdline:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)


@pytest.fixture
def forward(tmp_path):
    return pf.Forward(name="filewcount", state_dir=str(tmp_path / "state"))


@pytest.fixture
def spec(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    return pf.Spec(
        kubectl=fake_kubectl(tmp_path / "bin"),
        kubeconfig=str(kubeconfig),
        context="kind-filewcount",
        namespace="filewcount",
        resource="service/filewcount",
        remote_port=80,
        local_port=free_port(),
        timeout=20,
    )


def with_(spec: pf.Spec, **changes) -> pf.Spec:
    return pf.Spec(**{**spec.__dict__, **changes})


def test_argv_passes_paths_and_names_in_kubectl_order(spec):
    assert spec.argv() == [
        spec.kubectl,
        "--kubeconfig",
        spec.kubeconfig,
        "--context",
        "kind-filewcount",
        "--namespace",
        "filewcount",
        "port-forward",
        "--address",
        "127.0.0.1",
        "service/filewcount",
        f"{spec.local_port}:80",
    ]
    assert with_(spec, kubeconfig="", context="").argv()[1:3] == ["--namespace", "filewcount"]


def test_start_listens_writes_a_private_state_file_and_is_changed(forward, spec, spawned):
    outcome = pf.ensure_started(forward, spec)
    assert outcome.changed is True
    assert outcome.pid == spawned[0]
    assert alive(outcome.pid)
    assert pf.accepts("127.0.0.1", spec.local_port)
    assert outcome.local_address == f"127.0.0.1:{spec.local_port}"
    assert outcome.url == f"http://127.0.0.1:{spec.local_port}/"
    assert outcome.argv == spec.argv()
    assert stat.S_IMODE(os.stat(forward.state_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(forward.directory).st_mode) == 0o700
    record = json.loads(read(forward.state_file))
    assert record["pid"] == outcome.pid
    assert record["argv"] == spec.argv()
    assert record["started_at"].endswith("Z")
    assert record["url"] == outcome.url
    assert "apiVersion" not in read(forward.state_file)  # a path, never the contents
    assert "Forwarding from" in read(outcome.log)


def test_second_start_is_unchanged_with_the_same_pid(forward, spec, spawned):
    first = pf.ensure_started(forward, spec)
    second = pf.ensure_started(forward, spec)
    assert second.changed is False
    assert second.pid == first.pid
    assert second.stopped_pid is None
    assert len(spawned) == 1


def test_changed_options_restart_the_forward(forward, spec, spawned):
    first = pf.ensure_started(forward, spec)
    second = pf.ensure_started(forward, with_(spec, remote_port=8080))
    assert second.changed is True
    assert second.stopped_pid == first.pid
    assert second.pid != first.pid
    assert not alive(first.pid)
    assert alive(second.pid)
    assert pf.read_record(forward).argv[-1] == f"{spec.local_port}:8080"


def test_a_forward_killed_outside_is_started_again(forward, spec, spawned):
    first = pf.ensure_started(forward, spec)
    os.kill(first.pid, signal.SIGKILL)
    os.waitpid(first.pid, 0)
    second = pf.ensure_started(forward, spec)
    assert second.changed is True
    assert second.stopped_pid is None
    assert alive(second.pid)
    assert pf.accepts("127.0.0.1", spec.local_port)


def test_a_forward_alive_but_not_listening_is_restarted(forward, spec, spawned):
    first = pf.ensure_started(forward, spec)
    os.kill(first.pid, signal.SIGUSR1)  # the fake closes its listener and lives on
    deadline = time.monotonic() + 5
    while pf.accepts("127.0.0.1", spec.local_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = pf.ensure_started(forward, spec)
    assert second.changed is True
    assert second.stopped_pid == first.pid
    assert not alive(first.pid)
    assert pf.accepts("127.0.0.1", spec.local_port)


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_port_taken_by_another_program_fails_with_the_sentence(forward, spec, spawned, check_mode):
    with socket.socket() as other:
        other.bind(("127.0.0.1", spec.local_port))
        other.listen(1)
        with pytest.raises(pf.PortTakenError) as caught:
            pf.ensure_started(forward, spec, check_mode=check_mode)
    assert str(caught.value) == (
        f"Local port 127.0.0.1:{spec.local_port} for the port forward filewcount is taken by another program: "
        "stop that program or choose another local port (local_port)."
    )
    assert spawned == []
    assert not os.path.exists(forward.state_file)


def test_kubectl_exiting_fails_with_its_own_line(forward, spec, spawned, tmp_path):
    failing = with_(spec, kubectl=fake_kubectl(tmp_path / "error-bin", "error"), resource="service/nope")
    with pytest.raises(pf.ForwardExitedError) as caught:
        pf.ensure_started(forward, failing)
    assert str(caught.value) == (
        'kubectl port-forward for service/nope in namespace filewcount exited: error: services "nope" not found.'
    )
    assert not os.path.exists(forward.state_file)


def test_a_forward_that_never_listens_is_stopped_after_the_timeout(forward, spec, spawned, tmp_path):
    hanging = with_(spec, kubectl=fake_kubectl(tmp_path / "hang-bin", "hang"), timeout=1)
    started = time.monotonic()
    with pytest.raises(pf.ForwardTimeoutError) as caught:
        pf.ensure_started(forward, hanging)
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"kubectl port-forward for service/filewcount in namespace filewcount did not listen on "
        f"127.0.0.1:{spec.local_port} within 1 seconds and was stopped: waiting for the pod."
    )
    assert not alive(spawned[0])
    assert not os.path.exists(forward.state_file)


def test_absent_stops_the_forward_and_removes_its_files_then_is_unchanged(forward, spec, spawned):
    started = pf.ensure_started(forward, spec)
    stopped = pf.ensure_absent(forward)
    assert stopped.changed is True
    assert stopped.stopped_pid == started.pid
    assert stopped.pid is None
    assert stopped.argv == spec.argv()
    assert not alive(started.pid)
    assert not os.path.exists(forward.state_file)
    assert not os.path.exists(forward.log)
    again = pf.ensure_absent(forward)
    assert again.changed is False
    assert again.stopped_pid is None


def test_absent_never_signals_a_pid_reused_by_another_program(forward, spec, spawned):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.makedirs(forward.directory)
        with open(forward.state_file, "w", encoding="utf-8") as out:
            json.dump({"pid": other.pid, "argv": spec.argv(), "started_at": "2026-01-01T00:00:00Z"}, out)
        outcome = pf.ensure_absent(forward)
        assert outcome.changed is True  # the stale state file was removed
        assert outcome.stopped_pid is None
        assert other.poll() is None
        assert not os.path.exists(forward.state_file)
    finally:
        other.kill()
        other.wait()


def test_start_replaces_a_state_file_whose_pid_was_reused(forward, spec, spawned):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.makedirs(forward.directory)
        with open(forward.state_file, "w", encoding="utf-8") as out:
            json.dump({"pid": other.pid, "argv": spec.argv()}, out)
        outcome = pf.ensure_started(forward, spec)
        assert outcome.changed is True
        assert outcome.stopped_pid is None
        assert other.poll() is None
        assert pf.read_record(forward).pid == outcome.pid != other.pid
    finally:
        other.kill()
        other.wait()


def test_check_mode_starts_and_stops_nothing_and_writes_nothing(forward, spec, spawned):
    would_start = pf.ensure_started(forward, spec, check_mode=True)
    assert would_start.changed is True
    assert would_start.pid is None
    assert spawned == []
    assert not os.path.exists(forward.state_dir)
    assert pf.ensure_absent(forward, check_mode=True).changed is False

    running = pf.ensure_started(forward, spec)
    state = read(forward.state_file)
    assert pf.ensure_started(forward, spec, check_mode=True).changed is False
    would_restart = pf.ensure_started(forward, with_(spec, remote_port=8080), check_mode=True)
    assert would_restart.changed is True
    assert would_restart.stopped_pid == running.pid
    would_stop = pf.ensure_absent(forward, check_mode=True)
    assert would_stop.changed is True
    assert would_stop.stopped_pid == running.pid
    assert len(spawned) == 1
    assert alive(running.pid)
    assert read(forward.state_file) == state
    assert os.path.exists(forward.log)


def params(tmp_path, **changes) -> dict:
    base = {
        "name": "filewcount",
        "state": "started",
        "state_dir": str(tmp_path / "state"),
        "kubeconfig": None,
        "context": None,
        "namespace": "filewcount",
        "resource": "service/filewcount",
        "remote_port": 80,
        "local_port": 8080,
        "address": "127.0.0.1",
        "kubectl": "kubectl",
        "timeout": 60,
    }
    return {**base, **changes}


def test_a_missing_kubectl_fails_with_the_install_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(pf.KubectlNotFoundError) as caught:
        pf.build_desired(params(tmp_path))
    assert str(caught.value) == (
        "kubectl is not on PATH: install kubectl (https://kubernetes.io/docs/tasks/tools/) or set the module's "
        "kubectl option to its path."
    )
    with pytest.raises(pf.KubectlNotFoundError, match=r"^kubectl /nowhere/kubectl is not an executable file: "):
        pf.build_desired(params(tmp_path, kubectl="/nowhere/kubectl"))


def test_build_desired_resolves_kubectl_on_path_and_absent_needs_no_kubectl(tmp_path, monkeypatch):
    kubectl = fake_kubectl(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    desired = pf.build_desired(params(tmp_path, kubeconfig="kc", context="ctx"))
    assert desired.spec.argv()[:5] == [kubectl, "--kubeconfig", os.path.abspath("kc"), "--context", "ctx"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    absent = pf.build_desired({"name": "filewcount", "state": "absent", "state_dir": str(tmp_path)})
    assert absent.spec is None
    assert absent.forward.state_file == str(tmp_path / "port-forwards" / "filewcount.json")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "../x"}, "The port forward name '../x' names its files"),
        ({"local_port": 0}, "local_port 0 is not a TCP port"),
        ({"remote_port": 70000}, "remote_port 70000 is not a TCP port"),
        ({"timeout": 0}, "timeout 0 is not a number of seconds above 0"),
        ({"namespace": ""}, "The port forward filewcount needs namespace to start"),
    ],
)
def test_bad_options_fail_before_anything_runs(tmp_path, changes, message):
    with pytest.raises(pf.InvalidOptionError, match=f"^{message}"):
        pf.build_desired(params(tmp_path, **changes))


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        ("/usr/bin/kubectl port-forward svc/a 1:2", True),
        ("/usr/bin/python3 /usr/bin/kubectl port-forward svc/a 1:2", True),
        ("/usr/bin/kubectl port-forward svc/a 1:3", False),
        ("/usr/bin/xkubectl port-forward svc/a 1:2", False),
        ("sleep 60", False),
        (None, False),
    ],
)
def test_runs_matches_the_argv_as_a_suffix_of_the_command_line(cmdline, expected):
    assert pf.runs(cmdline, ["/usr/bin/kubectl", "port-forward", "svc/a", "1:2"]) is expected


def test_process_cmdline_through_proc_and_ps(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path)])
    try:
        assert pf.process_cmdline(child.pid).endswith(f"import time; time.sleep(60) {tmp_path}")
        if shutil.which("ps"):
            assert pf._ps_cmdline(child.pid).endswith(f"import time; time.sleep(60) {tmp_path}")
    finally:
        child.kill()
        time.sleep(0.2)  # now a zombie until waited for: gone for both readers
        assert pf.process_cmdline(child.pid) is None
        if shutil.which("ps"):
            assert pf._ps_cmdline(child.pid) is None
        child.wait()


def test_last_line_reads_only_what_came_after_the_offset(tmp_path):
    log = tmp_path / "log"
    log.write_text("old error\n")
    offset = log.stat().st_size
    assert pf.last_line(str(log), offset) == ""
    with log.open("a") as out:
        out.write("Forwarding from 127.0.0.1:1 -> 2\n\nerror: lost connection to pod\n  \n")
    assert pf.last_line(str(log), offset) == "error: lost connection to pod"
    assert pf.last_line(str(tmp_path / "none")) == ""
