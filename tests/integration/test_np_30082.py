"""The NodePort 30082 stand-in serves real git smart HTTP: real `git push` and `git clone` against it.

A harness cluster (real control plane, kwok as the node, the local-path provisioner stand-in) is created through
the stand-in kind with node port 30082 published on a free host port, which starts the stand-in there. The git
server's own manifests (kube/bootstrap/git-server/) are applied with kubectl, because the stand-in only answers
while a Service with nodePort 30082 has an available Deployment behind it, as a real NodePort would; the
Deployment's PVC must be bound for its pod to be scheduled. Flux's in-cluster URL reaches it through the
harness network (tests/harness/network.py), as source-controller does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "kube" / "bootstrap" / "git-server"
sys.path.insert(0, str(ROOT / "tests" / "harness"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

from ansible_collections.filewcount.gitops.plugins.module_utils import git_remote  # noqa: E402

pytestmark = [pytest.mark.integration]
IN_CLUSTER_URL = "http://git-server.git-server.svc.cluster.local/filewcount.git"


@pytest.fixture(autouse=True)
def git_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    for key, value in {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ctx = kind_harness.create(tmp_path_factory.mktemp("np30082"), node_ports=(30082,))
    ctx["base"] = f"http://127.0.0.1:{ctx['host_ports'][30082]}"
    ctx["git_root"] = Path(ctx["env"]["STANDIN_STATE_DIR"])
    yield ctx
    kind_harness.delete(ctx)


@pytest.fixture(scope="module")
def applied(cluster):
    """The git server's manifests applied as the git_server role does, and its Deployment available."""
    harness.kubectl(cluster["kubeconfig"], "apply", "-k", str(MANIFESTS))

    def available():
        proc = harness.kubectl(
            cluster["kubeconfig"], "get", "deployment", "git-server", "-n", "git-server", "-o", "json", check=False
        )
        return proc.returncode == 0 and (json.loads(proc.stdout).get("status") or {}).get("availableReplicas")

    harness.wait_for("the git-server Deployment to be available", available, 120)
    return cluster


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture
def checkout(tmp_path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "--quiet", "-b", "main")
    (work / "README.md").write_text("hello\n")
    git(work, "add", "README.md")
    git(work, "commit", "--quiet", "-m", "Initial commit")
    return work


def test_creates_the_default_repository_on_start(cluster):
    bare = cluster["git_root"] / "git" / "filewcount.git"
    assert (bare / "HEAD").read_text().strip() == "ref: refs/heads/main"
    assert git(bare, "config", "http.receivepack").stdout.strip() == "true"


def test_answers_503_until_the_service_has_an_available_deployment(cluster, checkout):
    base = cluster["base"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/filewcount.git/info/refs?service=git-upload-pack", timeout=10)
    assert err.value.code == 503
    assert b"no service has nodePort 30082" in err.value.read()
    push = git(checkout, "push", f"{base}/filewcount.git", "HEAD:refs/heads/main", check=False)
    assert push.returncode != 0


def test_push_then_clone_round_trips_and_a_second_push_is_a_no_op(applied, checkout, tmp_path):
    base, state = applied["base"], applied["git_root"]
    with urllib.request.urlopen(f"{base}/filewcount.git/info/refs?service=git-upload-pack", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"

    remote = f"{base}/filewcount.git"
    head = git(checkout, "rev-parse", "HEAD").stdout.strip()
    git(checkout, "push", remote, "HEAD:refs/heads/main")
    assert git(state / "git" / "filewcount.git", "rev-parse", "refs/heads/main").stdout.strip() == head
    again = git(checkout, "push", remote, "HEAD:refs/heads/main")
    assert "Everything up-to-date" in again.stderr

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", remote, str(clone))
    assert git(clone, "rev-parse", "HEAD").stdout.strip() == head
    assert (clone / "README.md").read_text() == "hello\n"
    assert git(checkout, "ls-remote", remote, "refs/heads/main").stdout.split()[0] == head


def test_large_push_with_chunked_transfer(applied, checkout):
    base, state = applied["base"], applied["git_root"]
    # Incompressible content well over git's 1 MiB http.postBuffer, so git sends the pack chunked.
    (checkout / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git(checkout, "add", "blob.bin")
    git(checkout, "commit", "--quiet", "-m", "Add a large file")
    head = git(checkout, "rev-parse", "HEAD").stdout.strip()
    # A branch of its own: the module's tests share one server, and main already holds another test's history.
    git(checkout, "push", f"{base}/filewcount.git", "HEAD:refs/heads/large")
    assert git(state / "git" / "filewcount.git", "rev-parse", "refs/heads/large").stdout.strip() == head


def test_seeding_from_a_shallow_clone_names_the_fix(applied, checkout, tmp_path):
    """`git clone --depth 1` of this project, then bootstrap's seed step (git_remote.seed, as module git_seed runs it).

    The server refuses a shallow history ("shallow update not allowed"); the seed says so in one sentence with the
    fix instead of blaming the git server, pushes nothing, and works once the clone is unshallowed.
    """
    base, state = applied["base"], applied["git_root"]
    (checkout / "second.txt").write_text("second\n")
    git(checkout, "add", "second.txt")
    git(checkout, "commit", "--quiet", "-m", "Second commit")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "--quiet", "--depth", "1", f"file://{checkout}", str(shallow))
    remote = f"{base}/filewcount.git"
    bare = state / "git" / "filewcount.git"

    def run(argv, cwd):
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr

    refused = git(shallow, "push", remote, "HEAD:refs/heads/shallow-raw", check=False)
    assert "shallow update not allowed" in refused.stderr  # what the server says to a plain push
    with pytest.raises(git_remote.ShallowCheckout, match=r"shallow clone .* `git fetch --unshallow`"):
        git_remote.seed(git_remote.Checkout(str(shallow), run), "local", "shallow", url=remote)
    assert git(bare, "rev-parse", "--verify", "--quiet", "refs/heads/shallow", check=False).returncode != 0
    git(shallow, "fetch", "--quiet", "--unshallow")
    res = git_remote.seed(git_remote.Checkout(str(shallow), run), "local", "shallow", url=remote)
    assert res.changed
    assert (
        git(bare, "rev-parse", "refs/heads/shallow").stdout.strip() == git(checkout, "rev-parse", "HEAD").stdout.strip()
    )


def test_unknown_repository_is_404(applied):
    base = applied["base"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/other.git/info/refs?service=git-upload-pack", timeout=10)
    assert err.value.code == 404


def test_the_in_cluster_url_reaches_it_through_the_harness_network(applied):
    """What source-controller does: the Service's DNS name through HTTP_PROXY, routed to the published node port."""
    state = applied["state"]
    proxy = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{state.ports['proxy']}"})
    opener = urllib.request.build_opener(proxy)
    with opener.open(f"{IN_CLUSTER_URL}/info/refs?service=git-upload-pack", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open("http://nothing.git-server.svc.cluster.local/filewcount.git/info/refs", timeout=10)
    assert err.value.code == 503
    assert b"Service git-server/nothing does not exist" in err.value.read()
