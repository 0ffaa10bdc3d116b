"""The GitHub token and the git password never appear in anything a -vvv run prints or writes.

Runs the role filewcount.gitops.flux through ansible-playbook at -vvv (with --diff) against the emulated
Kubernetes API (tests/harness/emulator) and the stand-in flux CLI (tests/harness/bin/flux), with recognisable
fake secrets, through the paths that handle them: github bootstrap, token rotation, a token GitHub rejects
(the CLI fails and its output is mapped to a message), and local mode with a basic-auth password. After each
run the canaries must be absent from stdout/stderr, from the Ansible log file, and from every file the run
wrote below its temporary HOME/state/cache (the cluster keeps them only base64-encoded in the Secret, which
lives in the emulator's memory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TOKEN_A = "ghp_CANARYfluxTokenAlpha0123456789abcdef"
TOKEN_B = "ghp_CANARYfluxTokenBravo9876543210fedcba"
BAD_TOKEN = "standin-bad-CANARYfluxTokenCharlie4242"
PASSWORD = "CANARYgitPassword-Delta-31337"
CANARIES = (TOKEN_A, TOKEN_B, BAD_TOKEN, PASSWORD)

PLAYBOOK = """\
- name: Bootstrap Flux for the secret-leak test
  hosts: localhost
  gather_facts: false
  roles:
    - role: filewcount.gitops.flux
      vars:
        flux_mode: "{{ mode }}"
        flux_kubeconfig: "{{ kubeconfig }}"
        flux_kube_context: kind-filewcount
        flux_cache_dir: "{{ cache_dir }}"
        flux_timeout: 1m
        flux_github_owner: octo
        flux_github_repository: fleet
        flux_git_url: http://git-server.git-server.svc.cluster.local/filewcount.git
        flux_git_push_url: "{{ push_url }}"
        flux_git_username: "{{ 'flux' if mode == 'local' else '' }}"
        flux_git_password: "{{ lookup('ansible.builtin.env', 'TEST_GIT_PASSWORD') }}"
"""


@pytest.fixture
def world(tmp_path):
    home = tmp_path / "home"
    state = tmp_path / "state"
    for d in (home, state):
        d.mkdir()
    start = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/harness/emulator/emulator.py"),
            "start",
            "--state-dir",
            str(state / "emulator"),
            "--controllers",
            "--context",
            "kind-filewcount",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    server = start.stdout.strip().split("=", 1)[1]
    bare = tmp_path / "filewcount.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)], check=True)
    playbook = tmp_path / "flux.yml"
    playbook.write_text(PLAYBOOK)
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{REPO / 'tests/harness/bin'}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "STANDIN_API_SERVER": server,
        "STANDIN_STATE_DIR": str(state),
        "ANSIBLE_LOG_PATH": str(tmp_path / "ansible.log"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    env.pop("GITHUB_TOKEN", None)
    yield {"tmp": tmp_path, "env": env, "server": server, "playbook": playbook, "bare": bare, "state": state}
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/harness/emulator/emulator.py"),
            "stop",
            "--state-dir",
            str(state / "emulator"),
        ],
        capture_output=True,
        check=False,
        cwd=REPO,
    )


def _play(world, mode: str, token: str = "", password: str = "", check: bool = False):
    env = dict(world["env"], GITHUB_TOKEN=token, TEST_GIT_PASSWORD=password)
    extra = {
        "mode": mode,
        "kubeconfig": str(world["state"] / "emulator/kubeconfig"),
        "cache_dir": str(world["tmp"] / "cache"),
        "push_url": f"file://{world['bare']}",
    }
    argv = [str(VENV_BIN / "ansible-playbook"), "-vvv", "--diff", str(world["playbook"]), "-e", json.dumps(extra)]
    if check:
        argv.append("--check")
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=300)


def _assert_no_canary(world, proc):
    printed = proc.stdout + proc.stderr
    for canary in CANARIES:
        assert canary not in printed, f"secret printed by ansible-playbook -vvv: {canary}"
    for path in world["tmp"].rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for canary in CANARIES:
                assert canary.encode() not in data, f"secret written to {path}"


def _reset_cluster(world):
    req = urllib.request.Request(world["server"] + "/emulator/v1/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def test_no_secret_in_output_or_files(world):
    first = _play(world, "github", token=TOKEN_A)
    assert first.returncode == 0, first.stdout[-3000:]
    assert "changed=1" in first.stdout
    assert "at revision" in first.stdout
    _assert_no_canary(world, first)

    again = _play(world, "github", token=TOKEN_A)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout
    _assert_no_canary(world, again)

    preview = _play(world, "github", token=TOKEN_B, check=True)
    assert preview.returncode == 0, preview.stdout[-3000:]
    assert "credentials: (rotated)" in preview.stdout
    _assert_no_canary(world, preview)

    rotated = _play(world, "github", token=TOKEN_B)
    assert rotated.returncode == 0, rotated.stdout[-3000:]
    assert '"action": "update_secret"' in rotated.stdout or "action: update_secret" in rotated.stdout
    _assert_no_canary(world, rotated)

    _reset_cluster(world)
    rejected = _play(world, "github", token=BAD_TOKEN)
    assert rejected.returncode != 0
    assert "github.com rejected the token (401 Bad credentials)" in rejected.stdout
    _assert_no_canary(world, rejected)

    _reset_cluster(world)
    local = _play(world, "local", password=PASSWORD)
    assert local.returncode == 0, local.stdout[-3000:]
    assert "changed=1" in local.stdout
    _assert_no_canary(world, local)
    pushed = subprocess.run(
        ["git", "--git-dir", str(world["bare"]), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert pushed == [
        f"kube/clusters/kind/flux-system/{n}" for n in ("gotk-components.yaml", "gotk-sync.yaml", "kustomization.yaml")
    ]
