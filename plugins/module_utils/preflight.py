# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight checks for the local kind flow.

Plain Python, importable without Ansible. Every check returns a ``CheckResult``; a failed result carries ONE
sentence that names the problem and the fix. Side effects (running commands, reading /proc, binding sockets,
statvfs) go through small injectable callables so the logic is unit-testable.
"""

from __future__ import annotations

import errno
import importlib
import os
import platform as _platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# kind's known issues page (https://kind.sigs.k8s.io/docs/user/known-issues/#pod-errors-due-to-too-many-open-files)
# recommends these values; it says the defaults (8192 watches and 128 instances on Ubuntu) are "not enough to create a
# cluster with many nodes". Below them preflight warns, with the sysctl command.
INOTIFY_RECOMMENDED_WATCHES = 524288
INOTIFY_RECOMMENDED_INSTANCES = 512
# Below these preflight fails: they are the lowest values a stock Linux kernel sets (128 instances always; 8192
# watches before Linux 5.11 and the floor of the RAM-scaled default since), which kind's page counts as short only for
# many nodes. A kernel below them was lowered by hand, and nothing says even one node runs there.
INOTIFY_MIN_WATCHES = 8192
INOTIFY_MIN_INSTANCES = 128

# kind ships pre-built node images for these architectures only (known issues, "Unsupported Architectures").
KIND_NODE_ARCHES = ("amd64", "arm64")
_ARCH_ALIASES = {"x86_64": "amd64", "amd64": "amd64", "x64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
FILEWCOUNT_IMAGE = "docker.io/bldrtech/filewcount"

# Free space wanted where Docker keeps images: the kindest/node image unpacks to about 1.5 GiB, the images the
# cluster pulls inside the node (Flux controllers, kube-prometheus-stack with Grafana, metrics-server, filewcount)
# add about 3 GiB, and Prometheus data plus container logs need headroom on top.
DEFAULT_MIN_FREE_DISK_GIB = 6

# import name -> pip distribution to install.
PIP_NAMES = {
    "kubernetes": "kubernetes",
    "yaml": "PyYAML",
    "jsonpatch": "jsonpatch",
    "requests": "requests",
    "jmespath": "jmespath",
}

ALL_CHECKS = ("docker_cli", "docker_daemon", "arch", "ports", "inotify", "disk", "python", "mode")

RunFn = Callable[[Sequence[str]], "tuple[int, str, str]"]


class PreflightError(Exception):
    """A preflight check could not run at all (bad input)."""


@dataclass
class CheckResult:
    name: str
    ok: bool
    message: str = ""
    details: dict = field(default_factory=dict)
    skipped: bool = False
    # A passed check may still carry ONE sentence of advice (problem and fix) that does not stop the run.
    warning: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "ok": self.ok,
            "skipped": self.skipped,
            "message": self.message,
            "warning": self.warning,
            "details": self.details,
        }


def _default_run(argv: Sequence[str]) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        return 127, "", str(exc)
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after 30 seconds"
    return proc.returncode, proc.stdout, proc.stderr


# --------------------------------------------------------------------------------------------------------------
# docker
# --------------------------------------------------------------------------------------------------------------
def check_docker_cli(docker: str = "docker", which: Callable[[str], str | None] | None = None) -> CheckResult:
    path = (which or shutil.which)(docker)
    if path:
        return CheckResult("docker_cli", True, details={"path": path})
    return CheckResult(
        "docker_cli",
        False,
        f"The docker CLI ({docker}) was not found on PATH: install Docker (https://docs.docker.com/get-docker/) "
        "and make sure `docker` is on PATH.",
    )


_SOCKET_RE = re.compile(r"((?:unix|tcp|npipe|ssh)://[^\s:\"]+(?::\d+)?)")


def classify_docker_error(stderr: str) -> str:
    """Return 'permission', 'not_running' or 'other' for the stderr of a failed docker command."""
    text = stderr.lower()
    if "permission denied" in text:
        return "permission"
    if (
        "cannot connect to the docker daemon" in text
        or "is the docker daemon running" in text
        or "connection refused" in text
        or "no such file or directory" in text
        or "error during connect" in text
    ):
        return "not_running"
    return "other"


def _docker_endpoint(stderr: str) -> str:
    match = _SOCKET_RE.search(stderr)
    if match:
        return match.group(1).rstrip(".")
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def check_docker_daemon(docker: str = "docker", run: RunFn = _default_run) -> CheckResult:
    rc, out, err = run([docker, "version", "--format", "{{.Server.Version}}"])
    if rc == 0 and out.strip():
        return CheckResult("docker_daemon", True, details={"server_version": out.strip()})
    endpoint = _docker_endpoint(err)
    kind = classify_docker_error(err)
    if kind == "permission":
        msg = (
            f"Your user may not use the Docker daemon socket {endpoint} (permission denied): add yourself to the "
            "docker group with `sudo usermod -aG docker $USER`, then log out and in again."
        )
    elif kind == "not_running":
        msg = (
            f"The Docker daemon is not running or not reachable at {endpoint}: start Docker (`sudo systemctl start "
            "docker`, or open Docker Desktop) and run again."
        )
    else:
        first = (err.strip().splitlines() or ["no output"])[0].split(". ")[0]
        msg = (
            "`{} version` failed ({}): fix the Docker installation until `docker version` shows a "
            "Server section, then run again."
        ).format(docker, first.rstrip("."))
    return CheckResult("docker_daemon", False, msg, details={"rc": rc, "stderr": err.strip(), "reason": kind})


def docker_root_dir(docker: str = "docker", run: RunFn = _default_run) -> str | None:
    rc, out, _err = run([docker, "info", "--format", "{{.DockerRootDir}}"])
    value = out.strip()
    if rc == 0 and value:
        return value
    return None


# --------------------------------------------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------------------------------------------
_PORT_LINE_RE = re.compile(r"^\s*(\d+)/(tcp|udp|sctp)\s*->\s*(\S+):(\d+)\s*$")


def parse_docker_port(output: str) -> dict[int, int]:
    """Parse `docker port CONTAINER` output into {host_port: container_port}."""
    mapping: dict[int, int] = {}
    for line in output.splitlines():
        match = _PORT_LINE_RE.match(line)
        if match:
            mapping[int(match.group(4))] = int(match.group(1))
    return mapping


def cluster_host_ports(cluster_name: str, docker: str = "docker", run: RunFn = _default_run) -> dict[int, int]:
    """Host ports published by the kind cluster's control-plane container ({} when it does not exist)."""
    rc, out, _err = run([docker, "port", f"{cluster_name}-control-plane"])
    if rc != 0:
        return {}
    return parse_docker_port(out)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a listener could bind host:port now (what kind's port mapping will need)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        sock.close()
    return True


def _listening_inodes(port: int, proc_root: str = "/proc") -> set[str]:
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        path = os.path.join(proc_root, table)
        try:
            with open(path, encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, state, inode = parts[1], parts[3], parts[9]
            if state != "0A":  # TCP_LISTEN
                continue
            try:
                local_port = int(local.rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue
            if local_port == port and inode != "0":
                inodes.add(inode)
    return inodes


def _describe_pid(pid: str, proc_root: str = "/proc") -> str:
    name = ""
    try:
        with open(os.path.join(proc_root, pid, "comm"), encoding="utf-8", errors="replace") as handle:
            name = handle.read().strip()
    except OSError:
        pass
    return "{} (pid {})".format(name or "process", pid)


def find_port_holder_proc(port: int, proc_root: str = "/proc") -> str | None:
    """Name the process listening on TCP `port` using /proc (Linux); None when it cannot be found."""
    inodes = _listening_inodes(port, proc_root)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    try:
        pids = [entry for entry in os.listdir(proc_root) if entry.isdigit()]
    except OSError:
        return None
    for pid in sorted(pids, key=int):
        fd_dir = os.path.join(proc_root, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in targets:
                    return _describe_pid(pid, proc_root)
            except OSError:
                continue
    return None


def parse_lsof(output: str) -> str | None:
    """Parse `lsof -F pc` output: first p<pid> / c<command> pair."""
    pid = name = None
    for line in output.splitlines():
        if line.startswith("p") and pid is None:
            pid = line[1:]
        elif line.startswith("c") and pid is not None and name is None:
            name = line[1:]
            break
    if pid:
        return "{} (pid {})".format(name or "process", pid)
    return None


def find_port_holder(
    port: int, run: RunFn = _default_run, proc_root: str = "/proc", which: Callable[[str], str | None] = shutil.which
) -> str | None:
    holder = None
    if os.path.isdir(os.path.join(proc_root, "net")):
        holder = find_port_holder_proc(port, proc_root)
    if holder is None and which("lsof"):
        rc, out, _err = run(["lsof", "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-F", "pc"])
        if rc == 0:
            holder = parse_lsof(out)
    return holder


def check_ports(
    ports: Iterable[int],
    cluster_name: str,
    *,
    docker: str = "docker",
    run: RunFn = _default_run,
    is_free: Callable[[int], bool] = port_is_free,
    holder: Callable[[int], str | None] | None = None,
) -> CheckResult:
    ports = [int(p) for p in ports]
    for port in ports:
        if not 0 < port < 65536:
            raise PreflightError(f"port {port} is not a TCP port number")
    holder = holder or (lambda p: find_port_holder(p, run=run))
    busy = [p for p in ports if not is_free(p)]
    details: dict = {"free": [p for p in ports if p not in busy], "cluster": [], "other": {}}
    if not busy:
        return CheckResult("ports", True, details=details)
    ours = cluster_host_ports(cluster_name, docker=docker, run=run)
    problems = {}
    for port in busy:
        if port in ours:
            details["cluster"].append(port)
            continue
        problems[port] = holder(port)
        details["other"][port] = problems[port]
    if not problems:
        return CheckResult("ports", True, details=details)
    tail = (
        f", not by the kind cluster '{cluster_name}': stop {{0}} or choose other free host ports for the "
        "cluster's port mappings."
    )
    if len(problems) == 1:
        port, who = next(iter(problems.items()))
        msg = f"Host port {port} is in use by {who or 'a program that could not be identified'}" + tail.format(
            "that program"
        )
    else:
        ports_text = ", ".join(str(p) for p in list(problems)[:-1]) + f" and {list(problems)[-1]}"
        whos = "; ".join(f"{p}: {w or 'unidentified'}" for p, w in problems.items())
        msg = f"Host ports {ports_text} are in use by other programs ({whos})" + tail.format("them")
    return CheckResult("ports", False, msg, details=details)


# --------------------------------------------------------------------------------------------------------------
# kernel, disk, python, mode
# --------------------------------------------------------------------------------------------------------------
def read_sysctl(name: str, proc_root: str = "/proc") -> int | None:
    path = os.path.join(proc_root, "sys", *name.split("."))
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def check_inotify(
    min_watches: int = INOTIFY_MIN_WATCHES,
    min_instances: int = INOTIFY_MIN_INSTANCES,
    platform: str = sys.platform,
    read: Callable[[str], int | None] = read_sysctl,
    *,
    recommended_watches: int = INOTIFY_RECOMMENDED_WATCHES,
    recommended_instances: int = INOTIFY_RECOMMENDED_INSTANCES,
) -> CheckResult:
    """Fail below the one-node floor (min_*); pass with a warning below kind's recommendation (recommended_*)."""
    if not platform.startswith("linux"):
        return CheckResult("inotify", True, skipped=True, details={"reason": "not Linux"})
    floor = {"fs.inotify.max_user_watches": int(min_watches), "fs.inotify.max_user_instances": int(min_instances)}
    recommended = {
        "fs.inotify.max_user_watches": max(int(recommended_watches), int(min_watches)),
        "fs.inotify.max_user_instances": max(int(recommended_instances), int(min_instances)),
    }
    current = {key: read(key) for key in floor}
    details = {"current": current, "minimum": floor, "recommended": recommended}
    too_low = [key for key in floor if current[key] is not None and current[key] < floor[key]]
    short = [key for key in floor if current[key] is not None and current[key] < recommended[key]]
    if not short:
        return CheckResult("inotify", True, details=details)
    have = " and ".join(f"{key} is {current[key]}" for key in short)
    cmd = "sudo sysctl " + " ".join(f"{key}={recommended[key]}" for key in short)
    keep = "(and add the same settings to /etc/sysctl.conf to keep them)"
    if too_low:
        low = " and ".join(f"{key} is {current[key]}" for key in too_low)
        floors = " and ".join(str(floor[key]) for key in too_low)
        msg = (
            f"{low}, below the {floors} that even a one-node kind cluster needs (the lowest a stock Linux kernel "
            f"sets): run `{cmd}` {keep}."
        )
        return CheckResult("inotify", False, msg, details=details)
    want = " and ".join(str(recommended[key]) for key in short)
    warning = (
        f"{have}: enough for this one-node kind cluster, but below the {want} that kind's known issues page "
        f'recommends against "too many open files" in clusters with many nodes; to raise them run `{cmd}` {keep}.'
    )
    return CheckResult("inotify", True, details=details, warning=warning)


# --------------------------------------------------------------------------------------------------------------
# architecture
# --------------------------------------------------------------------------------------------------------------
def docker_architecture(docker: str = "docker", run: RunFn = _default_run) -> str | None:
    """The Docker daemon's architecture as `docker info` reports it (x86_64, aarch64, ...); None when unknown."""
    rc, out, _err = run([docker, "info", "--format", "{{.Architecture}}"])
    value = out.strip()
    if rc == 0 and value:
        return value
    return None


def normalize_arch(machine: str) -> str:
    """Map uname/Docker machine names onto image platform names: x86_64 -> amd64, aarch64 -> arm64."""
    value = machine.strip().lower()
    return _ARCH_ALIASES.get(value, value)


def check_arch(machine: str | None, source: str, image: str = FILEWCOUNT_IMAGE) -> CheckResult:
    """Say what the host architecture means for kind's node image and the filewcount image.

    Public sources do not say which platforms the filewcount image is published for (see README.md, "Host
    architecture"), so a non-amd64 host gets a warning, not a failure; an architecture kind ships no node image for
    fails.
    """
    if not machine:
        return CheckResult("arch", True, skipped=True, details={"reason": "architecture unknown"})
    arch = normalize_arch(machine)
    details = {"machine": machine, "arch": arch, "source": source}
    if arch not in KIND_NODE_ARCHES:
        msg = (
            f"{source} reports the {machine} architecture, and kind ships pre-built node images for amd64 and "
            'arm64 only (kind\'s known issues page, "Unsupported Architectures"): run this project on an amd64 '
            "(x86_64) host."
        )
        return CheckResult("arch", False, msg, details=details)
    if arch == "amd64":
        return CheckResult("arch", True, details=details)
    warning = (
        f"{source} reports the {machine} architecture, and no public source we found says whether {image}:1.0 "
        "and 2.0 are published for arm64 (their Dockerfile is built with a plain `docker build`, which makes an "
        "image for the builder's architecture only), so the filewcount pods may never start (`exec format error`, "
        'CrashLoopBackOff): if so, run on an amd64 (x86_64) host, as README.md "Host architecture" explains.'
    )
    return CheckResult("arch", True, details=details, warning=warning)


def _gib(num: float) -> str:
    return f"{num / float(1 << 30):.1f}"


def check_disk(
    paths: Iterable[str],
    min_free_gib: float = DEFAULT_MIN_FREE_DISK_GIB,
    statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
) -> CheckResult:
    needed = float(min_free_gib) * (1 << 30)
    checked = {}
    for path in paths:
        probe = path
        while probe and not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        try:
            st = statvfs(probe)
        except OSError:
            continue
        free = st.f_bavail * st.f_frsize
        checked[path] = free
        if free < needed:
            msg = (
                f"Only {_gib(free)} GiB is free on {probe}, less than the {min_free_gib} GiB the kind node image "
                "and the cluster's images need: free some space (for example `docker system prune`) and run again."
            )
            return CheckResult("disk", False, msg, details={"free_bytes": checked})
    return CheckResult("disk", True, details={"free_bytes": checked})


def check_python(
    modules: Iterable[str], importer: Callable[[str], object] = importlib.import_module, python: str = sys.executable
) -> CheckResult:
    missing = []
    for name in modules:
        try:
            importer(name)
        except ImportError:
            missing.append(name)
    if not missing:
        return CheckResult("python", True, details={"python": python})
    pip = " ".join(PIP_NAMES.get(name, name) for name in missing)
    noun = "library" if len(missing) == 1 else "libraries"
    msg = (
        "The Python {0} {1} cannot be imported by {2}: install with `{2} -m pip install {3}` (or run `make bootstrap`)."
    ).format(noun, ", ".join(missing), python, pip)
    return CheckResult("python", False, msg, details={"python": python, "missing": missing})


TOKEN_VAR = "GITHUB_TOKEN"  # noqa: S105 - the name of an environment variable, not a secret


def check_mode(mode: str, env: Mapping[str, str] | None = None, token_var: str = TOKEN_VAR) -> CheckResult:
    env = os.environ if env is None else env
    if mode not in ("local", "github"):
        raise PreflightError(f"mode must be local or github, not {mode!r}")
    if mode == "github" and not env.get(token_var, "").strip():
        msg = (
            f"The github mode needs a GitHub token but {token_var} is not set: export {token_var} with a personal "
            "access token that may write to your repository, or use the local mode (-e gitops_mode=local)."
        )
        return CheckResult("mode", False, msg, details={"mode": mode})
    return CheckResult("mode", True, details={"mode": mode})


def _docker_checks(checks: Sequence[str], docker: str, run: RunFn) -> tuple[list[CheckResult], bool, bool]:
    results: list[CheckResult] = []
    cli_ok = daemon_ok = True
    if "docker_cli" in checks or "docker_daemon" in checks:
        res = check_docker_cli(docker)
        cli_ok = res.ok
        if "docker_cli" in checks or not res.ok:
            results.append(res)
    if "docker_daemon" in checks:
        daemon_ok = cli_ok
        if cli_ok:
            res = check_docker_daemon(docker, run)
            daemon_ok = res.ok
            results.append(res)
    return results, cli_ok, daemon_ok


def run_checks(
    checks: Sequence[str],
    *,
    docker: str = "docker",
    ports: Sequence[int] = (8080, 8081, 8082),
    cluster_name: str = "filewcount",
    mode: str = "local",
    min_free_disk_gib: float = 6,
    disk_paths: Sequence[str] = (),
    inotify_min_watches: int = INOTIFY_MIN_WATCHES,
    inotify_min_instances: int = INOTIFY_MIN_INSTANCES,
    inotify_recommended_watches: int = INOTIFY_RECOMMENDED_WATCHES,
    inotify_recommended_instances: int = INOTIFY_RECOMMENDED_INSTANCES,
    machine: Callable[[], str] = _platform.machine,
    python_modules: Sequence[str] = (),
    token_var: str = TOKEN_VAR,
    run: RunFn = _default_run,
    env: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """Run the named checks in a fixed order; docker-dependent checks are skipped when docker is unusable."""
    unknown = [c for c in checks if c not in ALL_CHECKS]
    if unknown:
        raise PreflightError("unknown check(s) {}; known: {}".format(", ".join(unknown), ", ".join(ALL_CHECKS)))
    env = os.environ if env is None else env
    results, cli_ok, daemon_ok = _docker_checks(checks, docker, run)
    if "arch" in checks:
        arch = docker_architecture(docker, run) if cli_ok and daemon_ok and "docker_daemon" in checks else None
        if arch:
            results.append(check_arch(arch, "Docker (docker info)"))
        else:
            results.append(check_arch(machine(), "This machine (uname)"))
    if "ports" in checks:
        results.append(check_ports(ports, cluster_name, docker=docker, run=run))
    if "inotify" in checks:
        results.append(
            check_inotify(
                inotify_min_watches,
                inotify_min_instances,
                recommended_watches=inotify_recommended_watches,
                recommended_instances=inotify_recommended_instances,
            )
        )
    if "disk" in checks:
        paths = list(disk_paths)
        if cli_ok and daemon_ok and "docker_daemon" in checks:
            root = docker_root_dir(docker, run)
            if root and os.path.isdir(root):
                paths.insert(0, root)
        results.append(check_disk(paths, min_free_disk_gib))
    if "python" in checks:
        results.append(check_python(python_modules))
    if "mode" in checks:
        results.append(check_mode(mode, env, token_var))
    return results
