"""playbooks/teardown.yml offline: it never downloads kind, and it is a no-op when nothing exists.

Downloads are made impossible (kind_download_base_url points at a closed port on 127.0.0.1), and PATH holds no
kind unless a test puts one there. With nothing existing the run reports ok and changed=0; a harness cluster
(tests/integration/kind_harness.py) is deleted with whatever kind is on PATH, whatever its version, or, with no
kind at all, by removing its node containers with docker as kind's docker provider does (the stand-in docker
stops the harness cluster when its node container is removed). A second run changes nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
import cluster as harness  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kind_harness  # noqa: E402

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
RECAP = re.compile(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)")


def stand_in(directory: Path, name: str) -> None:
    """Put a harness stand-in CLI on PATH as `name` (a wrapper, since the stand-ins find their helpers beside them)."""
    wrapper = directory / name
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {HARNESS / "bin" / name} "$@"\n')
    wrapper.chmod(0o755)


@pytest.fixture
def world(tmp_path):
    """Empty state and cache folders, a git checkout without remotes, and a PATH with the stand-in docker only."""
    tools = tmp_path / "tools"
    tools.mkdir()
    stand_in(tools, "docker")
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "init", "--quiet", str(checkout)], check=True)
    env = dict(
        kind_harness.environment(tmp_path),
        HOME=str(tmp_path / "home"),
        FILEWCOUNT_STATE_DIR=str(tmp_path / "state"),
        FILEWCOUNT_CACHE_DIR=str(tmp_path / "cache"),
        PATH=os.pathsep.join([str(tools), str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        ANSIBLE_NOCOLOR="true",
        ANSIBLE_FORCE_COLOR="false",
    )
    assert shutil.which("kind", path=env["PATH"]) is None
    yield {"tmp": tmp_path, "env": env, "tools": tools, "checkout": checkout}
    harness.stop(tmp_path / "standin" / "kind", "filewcount")


def teardown(world, *extra: str) -> tuple[int, int, subprocess.CompletedProcess]:
    argv = [
        str(ANSIBLE_PLAYBOOK),
        "playbooks/teardown.yml",
        # Nothing can be downloaded: the release URL is a closed port.
        "-e",
        "kind_download_base_url=http://127.0.0.1:9/unreachable",
        "-e",
        f"git_server_checkout_dir={world['checkout']}",
        *extra,
    ]
    proc = subprocess.run(argv, cwd=ROOT, env=world["env"], capture_output=True, text=True, timeout=600, check=False)
    found = RECAP.findall(proc.stdout)
    assert found, f"no play recap in:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    changed, failed = found[-1]
    return int(changed), int(failed), proc


def harness_cluster(world) -> dict:
    """A harness cluster named filewcount, its kubeconfig where bootstrap writes it (the state folder)."""
    ctx = kind_harness.create(world["tmp"], env=dict(world["env"], PATH=kind_harness.environment(world["tmp"])["PATH"]))
    state = world["tmp"] / "state"
    state.mkdir(parents=True, exist_ok=True)
    shutil.copy(ctx["kubeconfig"], state / "kubeconfig")
    return ctx


def gone(ctx) -> bool:
    state = ctx["state"]
    return not state.root.exists() and not any(harness._alive(pid) for pid in state.pids.values())


def test_nothing_exists_no_kind_no_network_is_a_no_op(world):
    changed, failed, proc = teardown(world)
    assert (changed, failed) == (0, 0), proc.stdout[-3000:]
    assert not (world["tmp"] / "cache" / "bin").exists(), "teardown created a download folder"
    # Purge too: it removes the (absent) caches and state and still downloads nothing.
    changed, failed, proc = teardown(world, "-e", "teardown_purge=true")
    assert (changed, failed) == (0, 0), proc.stdout[-3000:]


def test_teardown_keeps_the_volumes_and_purge_deletes_them_first_saying_so_but_keeps_the_backups(world):
    state = world["tmp"] / "state"
    volume = state / "volumes" / "monitoring" / "kube-prometheus-stack-grafana"
    volume.mkdir(parents=True)
    (volume / "grafana.db").write_text("data")
    # A volume of the Delete class (the git server): not listed.
    (state / "volumes" / "pvc-1_git-server_git-server-data" / "repo.git").mkdir(parents=True)
    backup = state / "backups" / "20261128T153000Z"
    backup.mkdir(parents=True)
    (backup / "backup.json").write_text("{}")
    (state / "grafana-admin-password").write_text("x")

    changed, failed, proc = teardown(world)
    assert (changed, failed) == (0, 0), proc.stdout[-3000:]
    said = " ".join(proc.stdout.split())
    assert (
        f"Kept the data of monitoring/kube-prometheus-stack-grafana in {state}/volumes for the next make bootstrap; "
        "make purge deletes it." in said
    )
    assert (volume / "grafana.db").is_file()

    changed, failed, proc = teardown(world, "-e", "teardown_purge=true")
    assert failed == 0 and changed > 0, proc.stdout[-3000:]
    said = " ".join(proc.stdout.split())
    grafana = "monitoring/kube-prometheus-stack-grafana"
    warned = said.index(f"make purge deletes the data of {grafana} in {state}/volumes now")
    assert warned < said.index("TASK [Remove the persisted volumes, caches and the state directory's files")
    assert f"Kept the backups in {state}/backups" in said
    assert not (state / "volumes").exists()
    assert not (state / "grafana-admin-password").exists()
    assert (backup / "backup.json").is_file()
    changed, failed, proc = teardown(world, "-e", "teardown_purge=true")
    assert (changed, failed) == (0, 0), proc.stdout[-3000:]


def assert_deleted_offline_then_unchanged(world: dict, ctx: dict) -> None:
    """Teardown deletes the cluster and its kubeconfig without downloading anything; a second run changes nothing."""
    changed, failed, proc = teardown(world)
    assert failed == 0 and changed > 0, proc.stdout[-3000:]
    assert gone(ctx)
    assert not (world["tmp"] / "state" / "kubeconfig").exists()
    assert not (world["tmp"] / "cache" / "bin").exists()
    changed, failed, proc = teardown(world)
    assert (changed, failed) == (0, 0), proc.stdout[-3000:]


def test_existing_cluster_is_deleted_with_any_kind_on_path(world):
    ctx = harness_cluster(world)
    # The stand-in kind on PATH, reporting a version other than the pinned one.
    stand_in(world["tools"], "kind")
    world["env"]["STANDIN_KIND_VERSION"] = "v0.29.0"
    assert_deleted_offline_then_unchanged(world, ctx)


def test_existing_cluster_without_kind_is_deleted_with_docker(world):
    ctx = harness_cluster(world)
    assert_deleted_offline_then_unchanged(world, ctx)


def kubeconfig_for(path: Path, server: str) -> Path:
    """A kubeconfig with one context, admin@elsewhere, whose API server is `server` (token auth)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: admin@elsewhere\n"
        f"clusters:\n- name: elsewhere\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n"
        "contexts:\n- name: admin@elsewhere\n  context: {cluster: elsewhere, user: admin}\n"
        "users:\n- name: admin\n  user: {token: not-a-real-token}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("context", "sentence"),
    [
        ("", "gitops_cluster is existing but no context is named: set gitops_kube_context to your cluster's context"),
        ("missing", "has no context missing (contexts in it: admin@elsewhere)"),
        ("admin@elsewhere", "is unreachable (the connection was refused)"),
    ],
    ids=["no-context", "unknown-context", "unreachable"],
)
def test_existing_cluster_bad_inputs_stop_with_one_sentence_and_touch_nothing(world, context, sentence):
    """Teardown of an existing cluster first proves the cluster answers; each bad input is one sentence."""
    kubeconfig = kubeconfig_for(world["tmp"] / "user-kubeconfig", f"https://127.0.0.1:{harness.free_port()}")
    subprocess.run(["git", "remote", "add", "local", "http://localhost:8082/x.git"], cwd=world["checkout"], check=True)
    existing = ["-e", "gitops_cluster=existing", "-e", f"gitops_kubeconfig={kubeconfig}"]
    changed, failed, proc = teardown(world, *existing, "-e", f"gitops_kube_context={context}")
    assert (changed, failed) == (0, 1), proc.stdout[-3000:]
    assert sentence in proc.stdout, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    # Nothing was removed: the git remote is still there.
    remotes = subprocess.run(["git", "remote"], cwd=world["checkout"], capture_output=True, text=True, check=True)
    assert remotes.stdout.split() == ["local"]
