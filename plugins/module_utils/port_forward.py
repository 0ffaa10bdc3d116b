# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start, keep and stop a ``kubectl port-forward`` that outlives the Ansible run which started it.

Plain Python, importable without Ansible. Every problem is a typed ``PortForwardError`` carrying ONE sentence that
names the problem and the fix.

A forward is known by its name: ``<state_dir>/port-forwards/<name>.json`` (mode 0600, directory 0700) records the
pid and the exact argv of the kubectl it started, ``<name>.log`` collects kubectl's output. A recorded pid counts as
this forward only while the process is alive and its command line still ends with the recorded argv (a script
run through its interpreter has the interpreter in front), so a pid the kernel has handed to another program is
never stopped. Only paths and names reach kubectl's argv (``--kubeconfig``, ``--context``), never credentials.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KUBECTL_INSTALL_URL = "https://kubernetes.io/docs/tasks/tools/"
KUBECTL_OPTION = "the module's kubectl option"
STATES = ("started", "absent")
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
POLL_INTERVAL = 0.1
PROBE_TIMEOUT = 0.5

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --------------------------------------------------------------------------------------------------------- errors
class PortForwardError(Exception):
    """The forward cannot be brought to the wanted state; ``str(exc)`` is one sentence (problem and fix)."""


class InvalidOptionError(PortForwardError):
    pass


class KubectlNotFoundError(PortForwardError):
    pass


class PortTakenError(PortForwardError):
    pass


class ForwardExitedError(PortForwardError):
    pass


class ForwardTimeoutError(PortForwardError):
    pass


class StopError(PortForwardError):
    pass


# ------------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Forward:
    """Where a named forward keeps its state file and its log."""

    name: str
    state_dir: str

    @property
    def directory(self) -> str:
        return os.path.join(self.state_dir, "port-forwards")

    @property
    def state_file(self) -> str:
        return os.path.join(self.directory, f"{self.name}.json")

    @property
    def log(self) -> str:
        return os.path.join(self.directory, f"{self.name}.log")


@dataclass(frozen=True)
class Spec:
    """What kubectl port-forward should run (state=started)."""

    kubectl: str  # absolute path
    namespace: str
    resource: str
    remote_port: int
    local_port: int
    address: str = "127.0.0.1"
    kubeconfig: str = ""
    context: str = ""
    timeout: float = 60.0

    def argv(self) -> list[str]:
        argv = [self.kubectl]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--context", self.context]
        argv += ["--namespace", self.namespace, "port-forward", "--address", self.address]
        return [*argv, self.resource, f"{self.local_port}:{self.remote_port}"]

    @property
    def probe_host(self) -> str:
        """The host to connect to: a wildcard address is reached through loopback."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.address, self.address)  # noqa: S104

    @property
    def local_address(self) -> str:
        return _host_port(self.address, self.local_port)

    @property
    def url(self) -> str:
        return f"http://{_host_port(self.probe_host, self.local_port)}/"


@dataclass(frozen=True)
class Desired:
    """The module's parameters, parsed once."""

    forward: Forward
    state: str = "started"
    spec: Spec | None = None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_kubectl(kubectl: str, option: str = KUBECTL_OPTION) -> str:
    """The absolute path of ``kubectl`` (a name looked up on PATH, or a path)."""
    fix = f"install kubectl ({KUBECTL_INSTALL_URL}) or set {option} to its path"
    if os.sep in kubectl:
        path = os.path.abspath(kubectl)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise KubectlNotFoundError(f"kubectl {path} is not an executable file: {fix}.")
        return path
    found = shutil.which(kubectl)
    if not found:
        label = "kubectl" if kubectl == "kubectl" else f"kubectl ({kubectl})"
        raise KubectlNotFoundError(f"{label} is not on PATH: {fix}.")
    return os.path.abspath(found)


def build_desired(params: Mapping[str, Any], kubectl_option: str = KUBECTL_OPTION) -> Desired:
    """Parse the module's parameters; kubectl is resolved only for state=started."""
    name = params["name"]
    if not _NAME.match(name or ""):
        raise InvalidOptionError(
            f"The port forward name {name!r} names its files, so it may hold only letters, digits, '.', '_' and '-' "
            "and must start with a letter or digit: choose another name."
        )
    forward = Forward(name=name, state_dir=os.path.abspath(params["state_dir"]))
    state = params.get("state") or "started"
    if state not in STATES:
        raise InvalidOptionError(f"state must be one of {', '.join(STATES)}, not {state!r}: fix state.")
    if state == "absent":
        return Desired(forward=forward, state=state)
    for option in ("namespace", "resource", "remote_port", "local_port"):
        if params.get(option) in (None, ""):
            raise InvalidOptionError(f"The port forward {name} needs {option} to start: set {option}.")
    for option in ("remote_port", "local_port"):
        if not 1 <= int(params[option]) <= 65535:
            raise InvalidOptionError(f"{option} {params[option]} is not a TCP port: use a number from 1 to 65535.")
    timeout = params.get("timeout")
    if timeout is None or timeout <= 0:
        raise InvalidOptionError(f"timeout {timeout} is not a number of seconds above 0: fix timeout.")
    kubeconfig = params.get("kubeconfig") or ""
    spec = Spec(
        kubectl=resolve_kubectl(params.get("kubectl") or "kubectl", kubectl_option),
        namespace=params["namespace"],
        resource=params["resource"],
        remote_port=int(params["remote_port"]),
        local_port=int(params["local_port"]),
        address=params.get("address") or "127.0.0.1",
        kubeconfig=os.path.abspath(kubeconfig) if kubeconfig else "",
        context=params.get("context") or "",
        timeout=float(timeout),
    )
    return Desired(forward=forward, state=state, spec=spec)


# ------------------------------------------------------------------------------------------------------- result
@dataclass
class Outcome:
    changed: bool
    pid: int | None
    argv: list[str]
    local_address: str
    url: str
    log: str
    state_file: str
    stopped_pid: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "pid": self.pid,
            "stopped_pid": self.stopped_pid,
            "argv": list(self.argv),
            "local_address": self.local_address,
            "url": self.url,
            "log": self.log,
            "state_file": self.state_file,
        }


@dataclass
class Record:
    """The state file of a forward: what was started, and as which pid."""

    pid: int
    argv: list[str]
    started_at: str = ""
    local_address: str = ""
    url: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "argv": list(self.argv),
            "started_at": self.started_at,
            "local_address": self.local_address,
            "url": self.url,
        }


# ------------------------------------------------------------------------------------------------ state files
def read_record(forward: Forward) -> Record | None:
    """The recorded forward, or None when there is no state file or it is not one this module wrote."""
    try:
        with open(forward.state_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid, argv = data.get("pid"), data.get("argv")
    if not isinstance(pid, int) or pid <= 0 or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None
    return Record(
        pid=pid,
        argv=argv,
        started_at=str(data.get("started_at") or ""),
        local_address=str(data.get("local_address") or ""),
        url=str(data.get("url") or ""),
    )


def _write_record(forward: Forward, record: Record) -> None:
    _make_directory(forward)
    handle, tmp = tempfile.mkstemp(dir=forward.directory, prefix=f".{forward.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record.as_dict(), out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, forward.state_file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _make_directory(forward: Forward) -> None:
    os.makedirs(forward.directory, mode=0o700, exist_ok=True)
    os.chmod(forward.directory, 0o700)


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# -------------------------------------------------------------------------------------------------- processes
def process_cmdline(pid: int) -> str | None:
    """The command line of a live process joined by spaces, or None when it is gone (or a zombie)."""
    if not os.path.isdir("/proc/self"):
        return _ps_cmdline(pid)
    # A process in the middle of exec has no arguments for a moment; a kernel thread never has any.
    for attempt in range(3):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                raw = handle.read()
        except OSError:
            return None
        if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] in ("Z", "X"):
            return None
        if raw:
            return " ".join(part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0"))
        if attempt < 2:
            time.sleep(0.01)
    return None


def _ps_cmdline(pid: int) -> str | None:
    """The same through ps, where there is no /proc (macOS, the BSDs)."""
    ps = shutil.which("ps") or "/bin/ps"
    try:
        done = subprocess.run(
            [ps, "-ww", "-o", "stat=", "-o", "args=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    line = done.stdout.strip()
    if done.returncode != 0 or not line:
        return None
    status, _sep, args = line.partition(" ")
    if status.startswith("Z") or not args.strip():
        return None
    return args.strip()


def runs(cmdline: str | None, argv: list[str]) -> bool:
    """Whether a process with this command line runs argv (directly, or as a script through an interpreter)."""
    if not cmdline or not argv:
        return False
    wanted = " ".join(argv)
    return cmdline == wanted or cmdline.endswith(" " + wanted)


def is_port_forward(argv: list[str]) -> bool:
    return "port-forward" in argv and os.path.basename(argv[0]).startswith("kubectl")


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (a test, or a start that failed)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _gone(pid: int, argv: list[str]) -> bool:
    _reap(pid)
    return not runs(process_cmdline(pid), argv)


def stop(pid: int, argv: list[str], grace: float = STOP_GRACE) -> None:
    """SIGTERM the process running argv, SIGKILL it after ``grace`` seconds; the caller checked that it runs argv."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            raise StopError(
                f"kubectl port-forward pid {pid} could not be stopped ({exc.strerror}): stop it as the user who "
                "started it."
            ) from exc
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _gone(pid, argv):
                return
            time.sleep(POLL_INTERVAL)
    if not _gone(pid, argv):
        raise StopError(f"kubectl port-forward pid {pid} did not exit after SIGKILL: stop it by hand.")


# -------------------------------------------------------------------------------------------------- the port
def accepts(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether host:port accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _bind_refused(address: str, port: int) -> bool:
    """Whether another socket holds address:port, so kubectl could not listen there."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return False
    for family, kind, proto, _canon, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
    return False


def port_taken(spec: Spec) -> bool:
    return accepts(spec.probe_host, spec.local_port) or _bind_refused(spec.address, spec.local_port)


# ------------------------------------------------------------------------------------------------- the logic
def reconcile(desired: Desired, check_mode: bool = False) -> Outcome:
    if desired.state == "absent":
        return ensure_absent(desired.forward, check_mode=check_mode)
    if desired.spec is None:
        raise InvalidOptionError(f"The port forward {desired.forward.name} has nothing to start: set its options.")
    return ensure_started(desired.forward, desired.spec, check_mode=check_mode)


def _live(record: Record | None) -> bool:
    """Whether the recorded pid still runs the recorded kubectl port-forward."""
    return bool(record and is_port_forward(record.argv) and runs(process_cmdline(record.pid), record.argv))


def ensure_started(forward: Forward, spec: Spec, check_mode: bool = False) -> Outcome:
    argv = spec.argv()
    outcome = Outcome(
        changed=False,
        pid=None,
        argv=argv,
        local_address=spec.local_address,
        url=spec.url,
        log=forward.log,
        state_file=forward.state_file,
    )
    record = read_record(forward)
    live = _live(record)
    if record and live and record.argv == argv and accepts(spec.probe_host, spec.local_port):
        outcome.pid = record.pid
        return outcome

    outcome.changed = True
    if record and live:
        outcome.stopped_pid = record.pid
        if not check_mode:
            stop(record.pid, record.argv)
    # In check mode the running forward was not stopped: the port it holds counts as free when it is the same one.
    frees_port = check_mode and live and record.local_address == spec.local_address
    if not frees_port and port_taken(spec):
        raise PortTakenError(
            f"Local port {spec.local_address} for the port forward {forward.name} is taken by another program: "
            "stop that program or choose another local port (local_port)."
        )
    if check_mode:
        return outcome
    outcome.pid = _start(forward, spec, argv)
    return outcome


def _start(forward: Forward, spec: Spec, argv: list[str]) -> int:
    _make_directory(forward)
    log_fd = os.open(forward.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    offset = os.lseek(log_fd, 0, os.SEEK_END)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            close_fds=True,
            start_new_session=True,
            cwd=forward.directory,
        )
    except OSError as exc:
        raise ForwardExitedError(
            f"kubectl port-forward for {spec.resource} in namespace {spec.namespace} could not start: "
            f"{exc.strerror or exc}; check the kubectl option."
        ) from exc
    finally:
        os.close(log_fd)
    _write_record(
        forward,
        Record(
            pid=proc.pid,
            argv=argv,
            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            local_address=spec.local_address,
            url=spec.url,
        ),
    )
    try:
        _wait_listening(forward, spec, proc, offset)
    except PortForwardError:
        _remove(forward.state_file)
        raise
    _detach(proc)
    return proc.pid


def _detach(proc: subprocess.Popen) -> None:
    """Let the forward outlive this process: forget it without the 'still running' warning of Popen.__del__."""
    proc.returncode = 0


def _wait_listening(
    forward: Forward,
    spec: Spec,
    proc: subprocess.Popen,
    offset: int,
) -> None:
    what = f"kubectl port-forward for {spec.resource} in namespace {spec.namespace}"
    deadline = time.monotonic() + spec.timeout
    while True:
        code = proc.poll()
        if code is not None:
            line = last_line(forward.log, offset)
            if line:
                raise ForwardExitedError(f"{what} exited: {_sentence_end(line)}")
            raise ForwardExitedError(f"{what} exited with code {code} and wrote nothing to {forward.log}.")
        if accepts(spec.probe_host, spec.local_port):
            return
        if time.monotonic() >= deadline:
            _kill(proc)
            line = last_line(forward.log, offset) or "it wrote nothing"
            raise ForwardTimeoutError(
                f"{what} did not listen on {spec.local_address} within {spec.timeout:g} seconds and was stopped: "
                f"{_sentence_end(line)}"
            )
        time.sleep(POLL_INTERVAL)


def _kill(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _sentence_end(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


def last_line(path: str, offset: int = 0, limit: int = 300) -> str:
    """The last non-empty line written to path after offset, shortened to limit characters."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def ensure_absent(forward: Forward, check_mode: bool = False) -> Outcome:
    record = read_record(forward)
    outcome = Outcome(
        changed=False,
        pid=None,
        argv=list(record.argv) if record else [],
        local_address=record.local_address if record else "",
        url=record.url if record else "",
        log=forward.log,
        state_file=forward.state_file,
    )
    if _live(record):
        outcome.stopped_pid = record.pid
        outcome.changed = True
        if not check_mode:
            stop(record.pid, record.argv)
    exists = [path for path in (forward.state_file, forward.log) if os.path.lexists(path)]
    if exists:
        outcome.changed = True
        if not check_mode:
            for path in exists:
                _remove(path)
    return outcome
