"""The GitHub token and the git password never appear in anything a -vvv run prints, writes or runs.

Runs the role filewcount.gitops.flux through ansible-playbook at -vvv (with --diff) against a harness cluster made
by the stand-in kind (tests/integration/kind_harness.py: a real control plane built from the Go modules, kwok as
the node) with recognisable fake secrets, through the paths that handle them:

- local mode with a basic-auth password: the flux_bootstrap module pushes the flux-system manifests to the git
  server (the NodePort 30082 stand-in, `git http-backend`, behind kube/bootstrap/git-server/ applied to the
  cluster), applies the components and the Secret through the API, and the real Flux controllers it installs
  (tests/harness/workloads.py) fetch the repository from http://git-server.git-server.svc.cluster.local with the
  Secret's credentials (through tests/harness/network.py) and apply it: bootstrap, idempotent re-run, a check run
  that previews a password rotation, and the rotation itself (only the Secret is rewritten);
- github mode with a token: a check run (the token goes through the module's options, decision and diff), and a
  token GitHub rejects (the stand-in flux CLI fails and its output is mapped to a message).

After each run the canaries, and the base64 forms in which a Secret or an HTTP basic-auth header would carry them,
must be absent from stdout/stderr, from every argv: the argv of every git and flux the product ran (recorded by
wrappers first on PATH) and of every process on this machine while the run went on (/proc/*/cmdline, sampled),
and from every file below the test's temporary folder: HOME (git config), TMPDIR, the Ansible log and temp folders,
the flux cache, the git repositories the server holds (and their config), and the whole harness cluster folder,
with the API server's audit log and the logs of every harness program and Flux controller. The one exception is
the cluster's etcd data directory: the API server stores the Secret there, as on kind (a positive control checks
that the password is found there, so the scan would see it anywhere else).

Successful github-mode runs (bootstrap, re-run, token rotation) cannot run on the harness yet: the stand-in flux
CLI cannot authenticate to the real API server (it sends no client certificate), and nothing stands in for GitHub,
so the real source-controller could never fetch https://github.com/octo/fleet.git. The local mode covers the same
module paths (the Secret with its credentials hash, update_secret) for real.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "tests" / "harness"
VENV_BIN = Path(sys.executable).parent
GIT_SERVER = REPO / "kube" / "bootstrap" / "git-server"
CLUSTER_URL = "http://git-server.git-server.svc.cluster.local/filewcount.git"

sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit  # noqa: E402
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

TOKEN = "ghp_CANARYfluxTokenAlpha0123456789abcdef"
BAD_TOKEN = "standin-bad-CANARYfluxTokenCharlie4242"
PASSWORD = "CANARYgitPassword-Delta-31337"
ROTATED = "CANARYgitPassword-Echo-27182"
USERNAME = "flux"
CANARIES = (TOKEN, BAD_TOKEN, PASSWORD, ROTATED)


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


# Each canary, its base64 (a Secret's data) and the base64 of the basic-auth pair (an Authorization header).
NEEDLES = {
    **{c.encode(): c for c in CANARIES},
    **{_b64(c): f"base64 of {c}" for c in CANARIES},
    **{_b64(f"git:{t}"): f"basic auth git:{t}" for t in (TOKEN, BAD_TOKEN)},
    **{_b64(f"{USERNAME}:{p}"): f"basic auth {USERNAME}:{p}" for p in (PASSWORD, ROTATED)},
}

PLAYBOOK = """\
- name: Bootstrap Flux for the secret-leak test
  hosts: localhost
  gather_facts: false
  roles:
    - role: filewcount.gitops.flux
      vars:
        flux_mode: "{{ mode }}"
        flux_kubeconfig: "{{ kubeconfig }}"
        flux_kube_context: "{{ context }}"
        flux_cache_dir: "{{ cache_dir }}"
        flux_timeout: 5m
        flux_github_owner: octo
        flux_github_repository: fleet
        # The flux_bootstrap module alone (test_github_mode.py covers publishing the checkout to the repository).
        flux_github_publish: false
        flux_git_url: http://git-server.git-server.svc.cluster.local/filewcount.git
        flux_git_push_url: "{{ push_url }}"
        flux_git_username: "{{ 'flux' if mode == 'local' else '' }}"
        flux_git_password: "{{ lookup('ansible.builtin.env', 'TEST_GIT_PASSWORD') }}"
"""

# Wrapper first on PATH: appends its argv (NUL-separated, one record per line) to a log, then runs the real program.
WRAPPER = """\
#!/bin/sh
printf '%s\\0' {name} "$@" >> '{log}'
printf '\\n' >> '{log}'
exec '{real}' "$@"
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("leak")
    ctx = kind_harness.create(tmp / "cluster", node_ports=(30082,))
    try:
        port = ctx["host_ports"][30082]
        # The local-mode git server, as role git_server applies it; np_30082 answers once its Deployment is available.
        harness.kubectl(ctx["kubeconfig"], "apply", "-k", str(GIT_SERVER))
        harness.wait_for(
            "the git server to answer on its host port",
            lambda: _answers(f"http://127.0.0.1:{port}/filewcount.git/info/refs?service=git-upload-pack"),
            180,
        )
        dirs = {name: tmp / name for name in ("home", "bin", "tmp", "ansible-local", "ansible-remote")}
        for path in dirs.values():
            path.mkdir()
        argv_log = tmp / "argv.log"
        for name, real in (("git", shutil.which("git")), ("flux", HARNESS / "bin" / "flux")):
            wrapper = dirs["bin"] / name
            wrapper.write_text(WRAPPER.format(name=name, log=argv_log, real=real))
            wrapper.chmod(0o755)
        playbook = tmp / "flux.yml"
        playbook.write_text(PLAYBOOK)
        env = dict(
            ctx["env"],
            HOME=str(dirs["home"]),
            TMPDIR=str(dirs["tmp"]),
            PATH=f"{dirs['bin']}{os.pathsep}{ctx['env']['PATH']}",
            ANSIBLE_LOG_PATH=str(tmp / "ansible.log"),
            ANSIBLE_LOCAL_TEMP=str(dirs["ansible-local"]),
            ANSIBLE_REMOTE_TEMP=str(dirs["ansible-remote"]),
            ANSIBLE_NOCOLOR="1",
            GIT_CONFIG_NOSYSTEM="1",
        )
        env.pop("GITHUB_TOKEN", None)
        yield {
            "tmp": tmp,
            "ctx": ctx,
            "env": env,
            "playbook": playbook,
            "argv_log": argv_log,
            "push_url": f"http://localhost:{port}/filewcount.git",
            "repository": Path(ctx["env"]["STANDIN_STATE_DIR"]) / "git" / "filewcount.git",
        }
    finally:
        kind_harness.delete(ctx)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class ArgvWatch:
    """Samples /proc/*/cmdline while a run goes on; keeps every command line that holds a needle."""

    def __init__(self):
        self.found: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    cmdline = (proc / "cmdline").read_bytes()
                    for needle, what in NEEDLES.items():
                        if needle in cmdline:
                            self.found.add(f"{what} in the argv of pid {proc.name}: {cmdline[:200]!r}")
            self.samples += 1
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _play(world, mode: str, token: str = "", password: str = "", check: bool = False) -> dict:
    env = dict(world["env"], GITHUB_TOKEN=token, TEST_GIT_PASSWORD=password)
    extra = {
        "mode": mode,
        "kubeconfig": str(world["ctx"]["kubeconfig"]),
        "context": world["ctx"]["context"],
        "cache_dir": str(world["tmp"] / "cache"),
        "push_url": world["push_url"],
    }
    argv = [str(VENV_BIN / "ansible-playbook"), "-vvv", "--diff", str(world["playbook"]), "-e", json.dumps(extra)]
    if check:
        argv.append("--check")
    log = world["ctx"]["state"].audit_log
    since = audit.mark(log)
    recorded = world["argv_log"].stat().st_size if world["argv_log"].exists() else 0
    with ArgvWatch() as watch:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=900)
    with world["argv_log"].open("rb") as handle:
        handle.seek(recorded)
        commands = [line.rstrip(b"\0").split(b"\0") for line in handle.read().splitlines() if line]
    return {
        "rc": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "api": audit.count(log, since),
        "commands": commands,
        "argv_seen": sorted(watch.found),
        "argv_samples": watch.samples,
    }


def _ran(run: dict, program: str, *words: str) -> bool:
    """Whether the product ran the wrapped program (git or flux) with all these arguments."""
    wanted = [w.encode() for w in words]
    return any(c[0] == program.encode() and all(w in c[1:] for w in wanted) for c in run["commands"])


def _assert_no_canary(world, run: dict, *also_scanned: Path) -> None:
    printed = (run["stdout"] + run["stderr"]).encode()
    for needle, what in NEEDLES.items():
        assert needle not in printed, f"secret printed by ansible-playbook -vvv: {what}"
    # argv: every git and flux the product ran, and every process alive while it ran.
    assert run["commands"], "the git/flux wrappers recorded no command: the argv check saw nothing"
    assert run["argv_samples"] >= 1
    for command in run["commands"]:
        for needle, what in NEEDLES.items():
            assert not any(needle in arg for arg in command), f"{what} in the argv of {command[:3]!r}"
    assert not run["argv_seen"], run["argv_seen"]
    # Files: everything below the test's folder but the cluster's etcd data (where the API server keeps Secrets).
    state = world["ctx"]["state"]
    assert state.audit_log.stat().st_size > 0
    assert any(state.logs.iterdir())
    etcd = state.root / "etcd"
    scanned = set()
    for path in world["tmp"].rglob("*"):
        if etcd in path.parents or not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        scanned.add(path)
        for needle, what in NEEDLES.items():
            assert needle not in data, f"{what} written to {path}"
    covered = [
        state.audit_log,
        state.logs / "kube-apiserver.log",
        world["tmp"] / "ansible.log",
        world["argv_log"],
        world["repository"] / "config",
        *also_scanned,
    ]
    assert not [p for p in covered if p not in scanned], f"the scan did not cover {covered}"


def _kubectl_json(world, *args: str) -> dict:
    return json.loads(harness.kubectl(world["ctx"]["kubeconfig"], *args, "-o", "json").stdout)


def _secret_password(world) -> str:
    secret = _kubectl_json(world, "get", "secret", "flux-system", "-n", "flux-system")
    return base64.b64decode(secret["data"]["password"]).decode()


def _in_etcd(world, secret: str) -> bool:
    etcd = world["ctx"]["state"].root / "etcd"
    return any(secret.encode() in p.read_bytes() for p in etcd.rglob("*") if p.is_file())


def _git_source(world) -> dict:
    return _kubectl_json(world, "get", "gitrepository", "flux-system", "-n", "flux-system")


def _ready(obj: dict) -> str:
    conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    return conditions.get("Ready", {}).get("status", "Unknown")


def test_local_mode_password_never_leaks(world):
    first = _play(world, "local", password=PASSWORD)
    assert first["rc"] == 0, first["stdout"][-3000:]
    assert "changed=1" in first["stdout"]
    head = subprocess.run(
        ["git", "--git-dir", str(world["repository"]), "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert f"at revision main@sha1:{head}" in first["stdout"]
    assert _ran(first, "flux", "install", "--export") and _ran(first, "git", "push")
    controller_logs = [world["ctx"]["state"].logs / f"{c}-controller.log" for c in ("source", "kustomize")]
    _assert_no_canary(world, first, *controller_logs)
    pushed = subprocess.run(
        ["git", "--git-dir", str(world["repository"]), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert pushed == [
        f"kube/clusters/kind/flux-system/{n}" for n in ("gotk-components.yaml", "gotk-sync.yaml", "kustomization.yaml")
    ]
    # The real source-controller fetched that commit from the in-cluster URL with the Secret's credentials.
    source = _git_source(world)
    assert source["spec"]["url"] == CLUSTER_URL and source["spec"]["secretRef"] == {"name": "flux-system"}
    assert source["status"]["artifact"]["revision"] == f"main@sha1:{head}" and _ready(source) == "True"
    # The password is in the cluster's Secret, and so in etcd: the one place the file scan leaves out.
    assert _secret_password(world) == PASSWORD
    assert _in_etcd(world, PASSWORD), "positive control: the password is not found in etcd's files"

    again = _play(world, "local", password=PASSWORD)
    assert again["rc"] == 0, again["stdout"][-3000:]
    assert "changed=0" in again["stdout"]
    assert again["api"]["writes"] == 0, again["api"]
    _assert_no_canary(world, again, *controller_logs)

    preview = _play(world, "local", password=ROTATED, check=True)
    assert preview["rc"] == 0, preview["stdout"][-3000:]
    assert "changed=1" in preview["stdout"]
    assert "credentials: (rotated)" in preview["stdout"]
    assert preview["api"]["writes"] == 0, preview["api"]
    assert _secret_password(world) == PASSWORD
    _assert_no_canary(world, preview, *controller_logs)

    rotated = _play(world, "local", password=ROTATED)
    assert rotated["rc"] == 0, rotated["stdout"][-3000:]
    assert '"action": "update_secret"' in rotated["stdout"] or "action: update_secret" in rotated["stdout"]
    # Only the Secret is rewritten and the source asked to reconcile; nothing is pushed.
    assert sorted(rotated["api"]["write_requests"]) == [
        "patch secrets flux-system/flux-system",
        "patch source.toolkit.fluxcd.io/gitrepositories flux-system/flux-system",
    ], rotated["api"]
    assert not _ran(rotated, "git", "push")
    assert _secret_password(world) == ROTATED

    def fetched_again():
        source = _git_source(world)
        requested = source["metadata"].get("annotations", {}).get("reconcile.fluxcd.io/requestedAt")
        return requested and source["status"].get("lastHandledReconcileAt") == requested and _ready(source) == "True"

    # The real source-controller handled the reconcile request: it fetched again with the rotated Secret.
    harness.wait_for("source-controller to fetch with the rotated Secret", fetched_again, 120)
    _assert_no_canary(world, rotated, *controller_logs)


def test_github_mode_token_never_leaks(world):
    # Check mode: the token goes through the module's options, decision and diff; no CLI bootstrap, no write.
    preview = _play(world, "github", token=TOKEN, check=True)
    assert preview["rc"] == 0, preview["stdout"][-3000:]
    assert "changed=1" in preview["stdout"]
    assert "Would bootstrap Flux" in preview["stdout"]
    assert preview["api"]["writes"] == 0, preview["api"]
    assert not _ran(preview, "flux", "bootstrap")
    _assert_no_canary(world, preview)

    # A token GitHub rejects: flux bootstrap github gets it in its environment only, fails, and the module says why.
    rejected = _play(world, "github", token=BAD_TOKEN)
    assert rejected["rc"] != 0
    assert "github.com rejected the token (401 Bad credentials)" in rejected["stdout"]
    assert _ran(rejected, "flux", "bootstrap", "github")
    assert rejected["api"]["writes"] == 0, rejected["api"]
    _assert_no_canary(world, rejected)
