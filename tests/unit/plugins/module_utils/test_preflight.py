"""Tests of the preflight checks: injected command runners, a fake /proc tree, and real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import sys
from types import SimpleNamespace

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils import preflight as pf

NOT_RUNNING = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"
DENIED = (
    "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: "
    'Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.50/version": dial unix /var/run/docker.sock: connect: '
    "permission denied\n"
)


def runner(table):
    """A fake run(): maps a tuple(argv) prefix to (rc, out, err)."""
    calls = []

    def run(argv):
        calls.append(list(argv))
        for prefix, answer in table.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return answer
        return 1, "", f"unexpected command {argv}"

    run.calls = calls
    return run


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (NOT_RUNNING, "not_running"),
        (DENIED, "permission"),
        (
            "error during connect: Get http://docker.example:2375/v1.50/version: dial tcp: connection refused",
            "not_running",
        ),
        ("Error response from daemon: client version 1.99 is too new", "other"),
    ],
)
def test_classify_docker_error(stderr, expected):
    assert pf.classify_docker_error(stderr) == expected


def test_docker_daemon_ok():
    res = pf.check_docker_daemon(run=runner({("docker", "version"): (0, "28.2.2\n", "")}))
    assert res.ok and res.details["server_version"] == "28.2.2"


def test_docker_daemon_not_running_names_socket_and_fix():
    res = pf.check_docker_daemon(run=runner({("docker", "version"): (1, "\n", NOT_RUNNING)}))
    assert not res.ok
    assert res.message == (
        "The Docker daemon is not running or not reachable at unix:///var/run/docker.sock: start "
        "Docker (`sudo systemctl start docker`, or open Docker Desktop) and run again."
    )


def test_docker_daemon_permission_is_told_apart():
    res = pf.check_docker_daemon(run=runner({("docker", "version"): (1, "", DENIED)}))
    assert not res.ok and res.details["reason"] == "permission"
    assert "usermod -aG docker" in res.message and "unix:///var/run/docker.sock" in res.message


def test_docker_daemon_other_error_quotes_first_line():
    res = pf.check_docker_daemon(run=runner({("docker", "version"): (1, "", "weird failure. More text.\nsecond")}))
    assert not res.ok and "(weird failure)" in res.message and res.message.count(". ") == 0


def test_docker_cli_missing():
    res = pf.check_docker_cli("docker", which=lambda _name: None)
    assert not res.ok and res.message.startswith("The docker CLI (docker) was not found on PATH")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "30080/tcp -> 127.0.0.1:8080\n30081/tcp -> 127.0.0.1:8081\n6443/tcp -> 127.0.0.1:41234\n",
            {8080: 30080, 8081: 30081, 41234: 6443},
        ),
        ("30080/tcp -> [::]:8080\n", {8080: 30080}),
        ("", {}),
        ("garbage\n", {}),
    ],
)
def test_parse_docker_port(output, expected):
    assert pf.parse_docker_port(output) == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("p4242\ncpython3\nf3\n", "python3 (pid 4242)"),
        ("p17\n", "process (pid 17)"),
        ("", None),
    ],
)
def test_parse_lsof(output, expected):
    assert pf.parse_lsof(output) == expected


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_port_is_free_on_a_real_listener(listener):
    assert pf.port_is_free(listener) is False


def test_port_is_free_after_close():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert pf.port_is_free(port) is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc lookup is Linux only")
def test_find_port_holder_names_this_process(listener):
    holder = pf.find_port_holder_proc(listener)
    assert holder is not None
    assert holder.endswith(f"(pid {os.getpid()})")


def test_find_port_holder_in_a_fake_proc(tmp_path):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    # 0x1F90 == 8080, state 0A (LISTEN), inode 777; a second non-listening line on the same port is ignored
    (proc / "net" / "tcp").write_text(
        header
        + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1\n"
        + "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 778 1\n"
    )
    (proc / "net" / "tcp6").write_text(header)
    fd_dir = proc / "4242" / "fd"
    fd_dir.mkdir(parents=True)
    (proc / "4242" / "comm").write_text("nginx\n")
    os.symlink("socket:[777]", fd_dir / "3")
    other = proc / "99" / "fd"
    other.mkdir(parents=True)
    os.symlink("socket:[778]", other / "4")
    assert pf.find_port_holder_proc(8080, str(proc)) == "nginx (pid 4242)"
    assert pf.find_port_holder_proc(8081, str(proc)) is None


def test_ports_all_free():
    res = pf.check_ports([8080, 8081], "filewcount", run=runner({}), is_free=lambda p: True)
    assert res.ok and res.details["free"] == [8080, 8081]


def test_ports_held_by_own_cluster_pass():
    run = runner({("docker", "port", "filewcount-control-plane"): (0, "30080/tcp -> 127.0.0.1:8080\n", "")})
    res = pf.check_ports(
        [8080, 8081],
        "filewcount",
        run=run,
        is_free=lambda p: p != 8080,
        holder=lambda p: pytest.fail("must not look for another holder"),
    )
    assert res.ok and res.details["cluster"] == [8080]


def test_ports_held_by_another_program_fail_with_its_name():
    no_container = "Error response from daemon: No such container: filewcount-control-plane"
    run = runner({("docker", "port"): (1, "", no_container)})
    res = pf.check_ports(
        [8080, 8081, 8082],
        "filewcount",
        run=run,
        is_free=lambda p: p == 8081,
        holder=lambda p: "python3 (pid 12)" if p == 8080 else None,
    )
    assert not res.ok
    assert res.message == (
        "Host ports 8080 and 8082 are in use by other programs (8080: python3 (pid 12); 8082: "
        "unidentified), not by the kind cluster 'filewcount': stop them or choose other free host "
        "ports for the cluster's port mappings."
    )


def test_ports_single_busy_port_sentence():
    run = runner({("docker", "port"): (1, "", "no daemon")})
    res = pf.check_ports([8080], "filewcount", run=run, is_free=lambda p: False, holder=lambda p: "nc (pid 5)")
    assert res.message == (
        "Host port 8080 is in use by nc (pid 5), not by the kind cluster 'filewcount': stop that "
        "program or choose other free host ports for the cluster's port mappings."
    )


@pytest.mark.parametrize("bad", [0, 70000, -1])
def test_ports_reject_non_ports(bad):
    with pytest.raises(pf.PreflightError):
        pf.check_ports([bad], "x", run=runner({}), is_free=lambda p: True)


RAISE_BOTH = "sudo sysctl fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512`"


@pytest.mark.parametrize(
    ("watches", "instances", "ok", "warned", "command"),
    [
        (524288, 512, True, False, None),
        (1048576, 8192, True, False, None),
        # stock kernels: 128 instances, watches 8192 (before Linux 5.11) or scaled with RAM (this machine: 192536)
        (192536, 128, True, True, RAISE_BOTH),
        (60000, 128, True, True, RAISE_BOTH),
        (8192, 128, True, True, RAISE_BOTH),
        (8192, 512, True, True, "sudo sysctl fs.inotify.max_user_watches=524288`"),
        (524288, 128, True, True, "sudo sysctl fs.inotify.max_user_instances=512`"),
        # lowered by hand below any stock default: too low for even one node
        (4096, 128, False, False, RAISE_BOTH),
        (524288, 64, False, False, "sudo sysctl fs.inotify.max_user_instances=512`"),
    ],
)
def test_inotify_warns_below_kinds_recommendation_and_fails_below_stock_defaults(
    watches, instances, ok, warned, command
):
    values = {"fs.inotify.max_user_watches": watches, "fs.inotify.max_user_instances": instances}
    res = pf.check_inotify(platform="linux", read=values.get)
    assert res.ok is ok
    assert bool(res.warning) is warned
    text = res.warning or res.message
    if command:
        assert command in text and "/etc/sysctl.conf" in text
    else:
        assert text == ""
    if warned:
        assert res.message == ""
        assert "enough for this one-node kind cluster" in res.warning and "known issues page" in res.warning
    if not ok:
        assert "one-node kind cluster needs" in res.message


def test_inotify_warning_sentence_for_this_machines_defaults():
    values = {"fs.inotify.max_user_watches": 192536, "fs.inotify.max_user_instances": 128}
    res = pf.check_inotify(platform="linux", read=values.get)
    assert res.as_dict()["warning"] == (
        "fs.inotify.max_user_watches is 192536 and fs.inotify.max_user_instances is 128: enough for this one-node "
        "kind cluster, but below the 524288 and 512 that kind's known issues page recommends against \"too many "
        'open files" in clusters with many nodes; to raise them run `sudo sysctl fs.inotify.max_user_watches=524288 '
        "fs.inotify.max_user_instances=512` (and add the same settings to /etc/sysctl.conf to keep them)."
    )


def test_inotify_failure_sentence_below_the_floor():
    values = {"fs.inotify.max_user_watches": 4096, "fs.inotify.max_user_instances": 512}
    res = pf.check_inotify(platform="linux", read=values.get)
    assert res.message == (
        "fs.inotify.max_user_watches is 4096, below the 8192 that even a one-node kind cluster needs (the lowest a "
        "stock Linux kernel sets): run `sudo sysctl fs.inotify.max_user_watches=524288` (and add the same settings "
        "to /etc/sysctl.conf to keep them)."
    )


def test_inotify_unreadable_limits_pass():
    res = pf.check_inotify(platform="linux", read=lambda _k: None)
    assert res.ok and not res.warning and not res.skipped


@pytest.mark.parametrize(
    ("machine", "ok", "warned", "arch"),
    [
        ("x86_64", True, False, "amd64"),
        ("amd64", True, False, "amd64"),
        ("aarch64", True, True, "arm64"),
        ("arm64", True, True, "arm64"),
        ("s390x", False, False, "s390x"),
        ("armv7l", False, False, "armv7l"),
    ],
)
def test_arch(machine, ok, warned, arch):
    res = pf.check_arch(machine, "Docker (docker info)")
    assert res.ok is ok and bool(res.warning) is warned and res.details["arch"] == arch
    if warned:
        assert res.warning.startswith(f"Docker (docker info) reports the {machine} architecture")
        assert "docker.io/bldrtech/filewcount:1.0 and 2.0" in res.warning and "amd64 (x86_64) host" in res.warning
    if not ok:
        assert "kind ships pre-built node images for amd64 and arm64 only" in res.message


def test_arch_unknown_is_skipped():
    assert pf.check_arch("", "This machine (uname)").skipped


def test_run_checks_arch_from_docker_info(monkeypatch):
    monkeypatch.setattr(pf.shutil, "which", lambda _n: "/usr/bin/docker")
    run = runner({("docker", "version"): (0, "28.2.2\n", ""), ("docker", "info"): (0, "aarch64\n", "")})
    results = pf.run_checks(["docker_daemon", "arch"], run=run, machine=lambda: "x86_64")
    arch = next(r for r in results if r.name == "arch")
    assert arch.details == {"machine": "aarch64", "arch": "arm64", "source": "Docker (docker info)"}
    assert arch.ok and arch.warning
    assert ["docker", "info", "--format", "{{.Architecture}}"] in run.calls


def test_run_checks_arch_falls_back_to_this_machine_when_docker_is_down(monkeypatch):
    monkeypatch.setattr(pf.shutil, "which", lambda _n: "/usr/bin/docker")
    run = runner({("docker", "version"): (1, "", NOT_RUNNING)})
    results = pf.run_checks(["docker_daemon", "arch"], run=run, machine=lambda: "arm64")
    arch = next(r for r in results if r.name == "arch")
    assert arch.details["source"] == "This machine (uname)" and arch.details["arch"] == "arm64" and arch.warning
    assert not any(call[:2] == ["docker", "info"] for call in run.calls)


def test_inotify_skipped_off_linux():
    res = pf.check_inotify(platform="darwin", read=lambda _k: pytest.fail("must not read sysctl"))
    assert res.ok and res.skipped


def test_read_sysctl_from_fake_proc(tmp_path):
    target = tmp_path / "sys" / "fs" / "inotify"
    target.mkdir(parents=True)
    (target / "max_user_watches").write_text("192536\n")
    assert pf.read_sysctl("fs.inotify.max_user_watches", str(tmp_path)) == 192536
    assert pf.read_sysctl("fs.inotify.max_user_instances", str(tmp_path)) is None


def _statvfs(free_bytes):
    return lambda _path: SimpleNamespace(f_bavail=free_bytes // 4096, f_frsize=4096)


def test_disk_enough(tmp_path):
    res = pf.check_disk([str(tmp_path)], 6, statvfs=_statvfs(7 << 30))
    assert res.ok


def test_disk_too_little_names_path_and_threshold(tmp_path):
    res = pf.check_disk([str(tmp_path / "not" / "yet")], 6, statvfs=_statvfs(3 << 30))
    assert not res.ok
    assert res.message == (
        f"Only 3.0 GiB is free on {tmp_path}, less than the 6 GiB the kind node image and the "
        "cluster's "
        "images need: free some space (for example `docker system prune`) and run again."
    )


def test_disk_real_statvfs(tmp_path):
    assert pf.check_disk([str(tmp_path)], 0.001).ok
    assert not pf.check_disk([str(tmp_path)], 1 << 40).ok  # a petabyte is not free here


def test_python_missing_named_with_pip_names():
    def importer(name):
        if name in ("yaml", "no_such_mod"):
            raise ImportError(name)

    res = pf.check_python(["kubernetes", "yaml", "no_such_mod"], importer=importer, python="/venv/bin/python")
    assert not res.ok
    assert res.message == (
        "The Python libraries yaml, no_such_mod cannot be imported by /venv/bin/python: install "
        "with `/venv/bin/python -m pip install PyYAML no_such_mod` (or run `make bootstrap`)."
    )


def test_python_real_import():
    assert pf.check_python(["json", "os"]).ok
    assert not pf.check_python(["surely_not_installed_module_xyz"]).ok


@pytest.mark.parametrize(
    ("mode", "env", "ok"),
    [
        ("local", {}, True),
        ("github", {"GITHUB_TOKEN": "ghp_x"}, True),
        ("github", {}, False),
        ("github", {"GITHUB_TOKEN": "  "}, False),
    ],
)
def test_mode(mode, env, ok):
    res = pf.check_mode(mode, env)
    assert res.ok is ok
    if not ok:
        assert "GITHUB_TOKEN is not set" in res.message
    assert "ghp_x" not in repr(res.as_dict())


def test_mode_rejects_unknown():
    with pytest.raises(pf.PreflightError):
        pf.check_mode("gitlab", {})


def test_run_checks_skips_daemon_when_cli_missing(monkeypatch):
    monkeypatch.setattr(pf.shutil, "which", lambda _n: None)
    run = runner({})
    results = pf.run_checks(["docker_daemon", "mode"], run=run, env={})
    assert [r.name for r in results] == ["docker_cli", "mode"]
    assert run.calls == []


def test_run_checks_rejects_unknown_names():
    with pytest.raises(pf.PreflightError, match="unknown check"):
        pf.run_checks(["docker", "mode"])


def test_run_checks_adds_docker_root_to_disk_paths(monkeypatch, tmp_path):
    monkeypatch.setattr(pf.shutil, "which", lambda _n: "/usr/bin/docker")
    run = runner({("docker", "version"): (0, "28.2.2\n", ""), ("docker", "info"): (0, str(tmp_path) + "\n", "")})
    results = pf.run_checks(["docker_daemon", "disk"], run=run, min_free_disk_gib=0.001)
    disk = next(r for r in results if r.name == "disk")
    assert disk.ok and str(tmp_path) in disk.details["free_bytes"]


def test_ports_unidentified_single_holder():
    res = pf.check_ports([8080], "filewcount", run=runner({}), is_free=lambda p: False, holder=lambda p: None)
    assert res.message.startswith("Host port 8080 is in use by a program that could not be identified, not by")
