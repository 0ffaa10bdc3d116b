"""Tests of the port_forward module: its main() with patched arguments (the logic: module_utils tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.module_utils import port_forward as pf
from ansible_collections.filewcount.gitops.plugins.modules import port_forward

# Listens on the LOCAL of the last argument, like kubectl port-forward once it reached the pod.
FAKE_KUBECTL = """\
#!{python}
import socket, sys
local = int(sys.argv[-1].split(":")[0])
server = socket.socket()
server.bind(("127.0.0.1", local))
server.listen(16)
print(f"Forwarding from 127.0.0.1:{{local}}", flush=True)
while True:
    server.accept()[0].close()
"""


def run_module(capsys, args: dict) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        port_forward.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def args(tmp_path):
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield {
        "name": "grafana",
        "state_dir": str(tmp_path / "state"),
        "namespace": "monitoring",
        "resource": "service/grafana",
        "remote_port": 80,
        "local_port": port,
        "kubectl": str(kubectl),
        "timeout": 20,
    }
    record = pf.read_record(pf.Forward("grafana", str(tmp_path / "state")))
    if record and str(tmp_path) in (pf.process_cmdline(record.pid) or ""):
        os.kill(record.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record.pid, 0)


@pytest.mark.integration
def test_the_module_starts_keeps_and_stops_a_forward(capsys, args):
    started = run_module(capsys, args)
    assert started["changed"] is True
    assert started["local_address"] == f"127.0.0.1:{args['local_port']}"
    assert started["url"] == f"http://127.0.0.1:{args['local_port']}/"
    assert started["argv"][-3:] == ["127.0.0.1", "service/grafana", f"{args['local_port']}:80"]
    assert started["log"] == os.path.join(args["state_dir"], "port-forwards", "grafana.log")
    assert pf.accepts("127.0.0.1", args["local_port"])

    kept = run_module(capsys, args)
    assert kept["changed"] is False
    assert kept["pid"] == started["pid"]

    checked = run_module(capsys, {**args, "state": "absent", "_ansible_check_mode": True})
    assert checked["changed"] is True
    assert pf.process_cmdline(started["pid"]) is not None

    stopped = run_module(capsys, {"name": "grafana", "state_dir": args["state_dir"], "state": "absent"})
    assert stopped["changed"] is True
    assert stopped["stopped_pid"] == started["pid"]
    assert pf.process_cmdline(started["pid"]) is None
    assert not os.path.exists(started["state_file"])


def test_a_missing_kubectl_fails_with_one_sentence(capsys, args, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run_module(capsys, {**args, "kubectl": "kubectl"})
    assert result["failed"] is True
    assert result["msg"] == (
        "kubectl is not on PATH: install kubectl (https://kubernetes.io/docs/tasks/tools/) or set the module's "
        "kubectl option to its path."
    )


def test_started_needs_what_to_forward(capsys, args):
    result = run_module(capsys, {"name": "grafana", "state_dir": args["state_dir"]})
    assert result["failed"] is True
    assert "namespace" in result["msg"]
