"""Fixtures that run the emulated Kubernetes API (tests/harness/emulator) as a real separate process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[3]
EMULATOR = REPO / "tests" / "harness" / "emulator" / "emulator.py"
VENV_BIN = Path(sys.executable).parent
KUBECTL = VENV_BIN / "kubectl"
SCHEMAS_DIR = Path(os.environ.get("FILEWCOUNT_SCHEMAS_DIR", REPO.parent / "shared" / "schemas"))


class RunningEmulator:
    def __init__(self, state_dir: Path, proc: subprocess.Popen, info: dict):
        self.state_dir = state_dir
        self.proc = proc
        self.url = info["url"]
        self.kubeconfig = info["kubeconfig"]
        self.context = info["context"]
        self.request_log = info["request_log"]

    def request(
        self, method: str, path: str, body=None, content_type: str = "application/json", headers: dict | None = None
    ):
        """Plain HTTP call; returns (status, headers, parsed JSON or raw bytes)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw, status, hdrs = err.read(), err.code, dict(err.headers)
        try:
            return status, hdrs, json.loads(raw)
        except ValueError:
            return status, hdrs, raw

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, HOME=str(self.state_dir))
        return subprocess.run(
            [str(KUBECTL), "--context", self.context, *args],
            input=stdin,
            text=True,
            capture_output=True,
            env=env,
            check=check,
            timeout=60,
        )

    def api_client(self):
        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, context=self.context, client_configuration=cfg)
        return client.ApiClient(cfg)


def start_emulator(state_dir: Path, *extra: str) -> RunningEmulator:
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "serve.log", "wb")  # noqa: SIM115 - kept open for the process lifetime
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EMULATOR),
            "serve",
            "--state-dir",
            str(state_dir),
            "--port",
            "0",
            "--context",
            "emulated",
            *extra,
        ],
        stdout=log,
        stderr=log,
    )
    info_path = state_dir / "emulator.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((state_dir / "serve.log").read_text())
        if info_path.exists():
            info = json.loads(info_path.read_text())
            if info["pid"] == proc.pid:
                return RunningEmulator(state_dir, proc, info)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the emulator did not start")


def stop_emulator(emu: RunningEmulator) -> None:
    emu.proc.terminate()
    try:
        emu.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        emu.proc.kill()
        emu.proc.wait()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("emulator"))
    yield emu
    stop_emulator(emu)


@pytest.fixture(scope="module")
def controllers_emulator(tmp_path_factory):
    emu = start_emulator(
        tmp_path_factory.mktemp("emulator-ctl"),
        "--controllers",
        "--fail",
        "HelmRelease/monitoring/broken=InstallFailed:chart pull failed",
        "--fail",
        "Deployment/apps/sad=ProgressDeadlineExceeded:image pull back-off",
    )
    yield emu
    stop_emulator(emu)


def namespace(emu: RunningEmulator, name: str) -> None:
    status, _headers, body = emu.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    assert status in (201, 409), body
