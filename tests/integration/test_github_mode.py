"""github mode end to end on the real stack, with the harness's GitHub stand-in in place of GitHub (issue 15).

playbooks/bootstrap.yml runs as a user runs it (`GITHUB_TOKEN=... make bootstrap ARGS="-e gitops_mode=github ..."`),
with the stand-in kind starting the harness cluster (a real control plane and the real Flux controllers) and
tests/harness/github.py answering github.com and api.github.com through the harness network. The real
source-controller clones the repository from the stand-in over HTTPS with the token Flux keeps in its Secret.

This machine reaches the stand-in like a user behind a proxy reaches GitHub: HTTPS_PROXY is the harness proxy
(its port chosen up front through STANDIN_PROXY_PORT) and SSL_CERT_FILE / GIT_SSL_CAINFO name the harness CA;
a user needs none of this.

- missing repository: bootstrap creates it (private), publishes this tree, Flux adds its commit, the checkout is
  fast-forwarded to it, monitoring and filewcount converge; the token is in no output, argv or .git/config;
- a second run reports changed=0 and sends no write request to the Kubernetes API;
- `playbooks/sync.yml` publishes a new commit and Flux applies it; `playbooks/upgrade.yml -e filewcount_image_tag=2.0`
  rolls out 2.0 through the repository;
- an existing organisation repository (`gitops_github_personal=false`) whose `main` has unrelated history (a file
  committed on GitHub): bootstrap stops with one sentence naming the fix and pushes nothing; after the user merges that
  history as the sentence says, bootstrap converges on the existing repository without creating one.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit  # noqa: E402
import cluster as harness  # noqa: E402
import github  # noqa: E402
import kind_harness  # noqa: E402

OWNER = "octo-user"
ORG = "octo-org"
REPOSITORY = "filewcount-gitops"
SYNC_PATH = "kube/clusters/kind"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def world(tmp_path):
    tmp = tmp_path
    checkout = kind_harness.clone_checkout(tmp)
    git(checkout, "config", "user.name", "Test User")
    git(checkout, "config", "user.email", "test@example.com")
    token = "ghp_standin" + secrets.token_hex(16)
    github_dir = tmp / "github"
    github.add_token(github_dir, token, OWNER, orgs=(ORG,))
    kind_state = tmp / "standin" / "kind"
    ca = kind_state / "clusters" / "filewcount" / "charts" / "pki" / "ca.crt"
    proxy = f"http://127.0.0.1:{harness.free_port()}"
    env = kind_harness.bootstrap_environment(
        tmp,
        STANDIN_GITHUB_DIR=str(github_dir),
        STANDIN_PROXY_PORT=proxy.rsplit(":", 1)[1],
        # This machine behind a proxy: the harness network plays the internet (and GitHub) for it.
        HTTPS_PROXY=proxy,
        https_proxy=proxy,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        SSL_CERT_FILE=str(ca),
        GIT_SSL_CAINFO=str(ca),
        GITHUB_TOKEN=token,
    )
    for variable in ("HTTP_PROXY", "http_proxy"):
        env.pop(variable, None)
    ctx = {
        "tmp": tmp,
        "env": env,
        "checkout": checkout,
        "token": token,
        "github": github_dir,
        "bare": github.repository_path(github_dir, OWNER, REPOSITORY),
        "kind_state": kind_state,
        "outputs": [],
    }
    with kind_harness.default_host_ports():
        yield ctx
        playbook(ctx, "teardown.yml")
    assert not (kind_state / "clusters" / "filewcount").exists(), "teardown left the cluster"


def playbook(ctx: dict, name: str, *extra: str, overrides: dict | None = None) -> subprocess.CompletedProcess:
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        f"playbooks/{name}",
        f"--extra-vars=@{kind_harness.HARNESS_VARS}",
        "--extra-vars",
        json.dumps(
            {
                "gitops_mode": "github",
                "gitops_github_owner": OWNER,
                "gitops_github_repository": REPOSITORY,
                "flux_github_checkout_dir": str(ctx["checkout"]),
                "sync_checkout_dir": str(ctx["checkout"]),
                "upgrade_repo_dir": str(ctx["checkout"]),
                # Converging takes ~3 minutes here; a run that cannot converge fails in 7, not 15.
                "monitoring_ready_timeout": 420,
                **(overrides or {}),
            }
        ),
        *extra,
    ]
    proc = subprocess.run(argv, cwd=ROOT, env=ctx["env"], capture_output=True, text=True, timeout=1800, check=False)
    ctx["outputs"].append(proc.stdout + proc.stderr)
    return proc


def bare(ctx: dict, *args: str) -> str:
    return git(ctx["bare"], *args)


def kube(ctx: dict, *args: str) -> dict:
    state = harness.Cluster.at(ctx["kind_state"], "filewcount")
    assert state.load()
    return json.loads(harness.kubectl(state.components_kubeconfig, *args, "-o", "json").stdout)


def assert_token_nowhere(ctx: dict) -> None:
    token = ctx["token"]
    for index, output in enumerate(ctx["outputs"]):
        assert token not in output, f"the token is in the output of run {index}"
    config = (ctx["checkout"] / ".git" / "config").read_text(encoding="utf-8")
    assert token not in config
    assert not (ctx["checkout"] / ".git" / "credentials").exists()
    assert token not in (ctx["bare"] / "config").read_text(encoding="utf-8")


def test_github_mode_converges_then_syncs_and_upgrades(world):
    checkout, published = world["checkout"], git(world["checkout"], "rev-parse", "HEAD")
    assert not world["bare"].exists()

    first = playbook(world, "bootstrap.yml")
    assert first.returncode == 0, f"github mode did not converge:\n{first.stdout[-6000:]}\n{first.stderr[-2000:]}"
    assert kind_harness.recap(first)[1] == 0

    # The repository was created private, holds this tree with Flux's commit on top, and the checkout has that commit.
    assert json.loads((world["bare"] / "standin.json").read_text())["private"] is True
    assert "POST api.github.com /user/repos 201" in github.requests_log(world["github"])
    tip = bare(world, "rev-parse", "refs/heads/main")
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", published, tip], cwd=world["bare"], check=False)
    assert ancestor.returncode == 0, "the published commit is not in the repository's main"
    files = bare(world, "ls-tree", "-r", "--name-only", "main").splitlines()
    for name in ("apps.yaml", "infrastructure-controllers.yaml", "flux-system/gotk-sync.yaml"):
        assert f"{SYNC_PATH}/{name}" in files, name
    assert git(checkout, "rev-parse", "HEAD") == tip, "the checkout was not fast-forwarded to Flux's commit"
    assert git(checkout, "remote", "get-url", "github") == f"https://github.com/{OWNER}/{REPOSITORY}.git"
    source = kube(world, "get", "gitrepository", "flux-system", "-n", "flux-system")
    assert source["spec"]["url"] == f"https://github.com/{OWNER}/{REPOSITORY}.git"
    for name in ("flux-system", "infrastructure-controllers", "infrastructure-configs", "apps"):
        ks = kube(world, "get", "kustomization", name, "-n", "flux-system")
        ready = {c["type"]: c["status"] for c in (ks.get("status") or {}).get("conditions") or []}
        assert ready.get("Ready") == "True", (name, ks.get("status"))

    # A second run changes nothing and writes nothing.
    state = harness.Cluster.at(world["kind_state"], "filewcount")
    assert state.load()
    since = audit.mark(state.audit_log)
    second = playbook(world, "bootstrap.yml")
    counted = audit.count(state.audit_log, since)
    assert second.returncode == 0, second.stdout[-4000:]
    assert kind_harness.recap(second) == (0, 0), second.stdout[-4000:]
    assert counted["requests"] > 0 and counted["writes"] == 0, counted

    # make sync: a new commit reaches the repository through the remote `github` and Flux applies it.
    (checkout / "SYNC_CHECK.md").write_text("published by make sync\n", encoding="utf-8")
    git(checkout, "add", "SYNC_CHECK.md")
    git(checkout, "commit", "--quiet", "-m", "Check make sync in github mode")
    head = git(checkout, "rev-parse", "HEAD")
    synced = playbook(world, "sync.yml")
    assert synced.returncode == 0, synced.stdout[-4000:]
    assert bare(world, "rev-parse", "refs/heads/main") == head
    revision = kube(world, "get", "gitrepository", "flux-system", "-n", "flux-system")["status"]["artifact"]["revision"]
    assert head in revision

    # make upgrade TAG=2.0: the tag is committed, pushed to the repository, and rolled out.
    upgraded = playbook(world, "upgrade.yml", "-e", "filewcount_image_tag=2.0")
    assert upgraded.returncode == 0, upgraded.stdout[-4000:]
    manifest = bare(world, "show", "main:kube/apps/filewcount/deployment.yaml")
    assert "docker.io/bldrtech/filewcount:2.0" in manifest
    assert bare(world, "rev-parse", "refs/heads/main") == git(checkout, "rev-parse", "HEAD")
    deployment = kube(world, "get", "deployment", "filewcount", "-n", "filewcount")
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert "docker.io/bldrtech/filewcount:2.0" in images, images

    assert_token_nowhere(world)


def test_an_existing_organisation_repository_with_unrelated_history_is_refused_then_used(world):
    checkout, tmp = world["checkout"], world["tmp"]
    world["bare"] = github.create_repository(world["github"], ORG, REPOSITORY)
    made_on_github = tmp / "made-on-github"
    git(tmp, "clone", "--quiet", str(world["bare"]), str(made_on_github))
    (made_on_github / "NOTES.md").write_text("Made on GitHub before bootstrap.\n", encoding="utf-8")
    git(made_on_github, "add", "NOTES.md")
    identity = ["-c", "user.name=GitHub", "-c", "user.email=noreply@github.com"]
    git(made_on_github, *identity, "commit", "--quiet", "-m", "Initial commit")
    git(made_on_github, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    theirs = bare(world, "rev-parse", "refs/heads/main")
    organisation = {"gitops_github_owner": ORG, "gitops_github_personal": False}

    refused = playbook(world, "bootstrap.yml", overrides=organisation)
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "shares no history with this checkout" in refused.stdout, refused.stdout[-3000:]
    assert "git merge --allow-unrelated-histories github/main" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
    assert bare(world, "rev-parse", "refs/heads/main") == theirs, "the refused run changed the repository"

    # The user merges GitHub's history as the sentence says (fetched here straight from the stand-in's folder).
    git(checkout, "fetch", "--quiet", str(world["bare"]), "main")
    git(checkout, "merge", "--quiet", "--no-edit", "--allow-unrelated-histories", "FETCH_HEAD")
    converged = playbook(world, "bootstrap.yml", overrides=organisation)
    assert converged.returncode == 0, f"{converged.stdout[-6000:]}\n{converged.stderr[-2000:]}"
    tip = bare(world, "rev-parse", "refs/heads/main")
    assert git(checkout, "rev-parse", "HEAD") == tip
    kept = subprocess.run(["git", "merge-base", "--is-ancestor", theirs, tip], cwd=world["bare"], check=False)
    assert kept.returncode == 0, "GitHub's commit was lost"
    assert not [line for line in github.requests_log(world["github"]) if line.startswith("POST api.github.com")]
    source = kube(world, "get", "gitrepository", "flux-system", "-n", "flux-system")
    assert source["spec"]["url"] == f"https://github.com/{ORG}/{REPOSITORY}.git"
    assert_token_nowhere(world)
