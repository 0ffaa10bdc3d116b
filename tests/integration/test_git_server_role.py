"""The git_server role and playbooks/sync.yml run with ansible-playbook against a real Kubernetes control plane and
the real Flux controllers, on a temporary clone of this repository: converge, idempotent re-run, check mode,
Flux's bootstrap commit pulled into the checkout, make sync, and teardown.

The cluster is a harness cluster made by the stand-in kind (tests/integration/kind_harness.py): etcd,
kube-apiserver, kube-controller-manager and kube-scheduler built from their Go modules, kwok as the node (the git
server's pod becomes Running and Ready, its Deployment Available through the real controllers; its volume is bound
by the stand-in local-path provisioner), with NodePort 30082 published on a free host port. There the NodePort
stand-in (tests/harness/nodeports/np_30082.py) answers with a real git smart-HTTP server (`git http-backend` on
$STANDIN_STATE_DIR/git) while the cluster has the git server's Service and an available Deployment, as the Soft
Serve pod would. For make sync the real source- and kustomize-controller run (kind_harness.install_flux): the
GitRepository at http://git-server.git-server.svc.cluster.local/filewcount.git really fetches the pushed commit
through tests/harness/network.py, and the Kustomization really applies kube/clusters/kind of that commit.

What the playbooks ask of the cluster is read from the API server's audit log (tests/harness/audit.py: the
requests of kind's user kubernetes-admin while a playbook runs; the harness and the Flux controllers have their own
identities): the first run creates exactly the four objects of
kube/bootstrap/git-server/; check runs and re-runs write nothing (check runs only dry runs; every object keeps its
resourceVersion); make sync writes only its two reconcile requests; post_flux, teardown (without
git_server_teardown_resources) and a refused make sync send no request at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "git_server.yml"
SYNC = ROOT / "playbooks" / "sync.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
MANIFESTS = ROOT / "kube" / "bootstrap" / "git-server"
CLUSTER_URL = "http://git-server.git-server.svc.cluster.local/filewcount.git"

sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit  # noqa: E402
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

# What flux bootstrap puts in the cluster for local mode (gotk-sync.yaml), with one addition: the Kustomization
# suspends the child Kustomizations it applies from kube/clusters/kind (infrastructure-controllers,
# infrastructure-configs, apps), so the real controllers do not go on to install kube-prometheus-stack here; the
# molecule scenario runs that whole loop. make sync only waits for flux-system itself.
FLUX_OBJECTS = [
    {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "flux-system", "namespace": "flux-system"},
        "spec": {"interval": "1m0s", "ref": {"branch": "main"}, "url": CLUSTER_URL},
    },
    {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "flux-system", "namespace": "flux-system"},
        "spec": {
            "interval": "10m0s",
            "path": "./kube/clusters/kind",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            "patches": [
                {
                    "target": {"group": "kustomize.toolkit.fluxcd.io", "kind": "Kustomization"},
                    "patch": yaml.safe_dump(
                        {
                            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                            "kind": "Kustomization",
                            "metadata": {"name": "any"},
                            "spec": {"suspend": True},
                        }
                    ),
                }
            ],
        },
    },
]
CHILDREN = ("apps", "infrastructure-configs", "infrastructure-controllers")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def h(tmp_path):
    ctx = kind_harness.create(tmp_path / "cluster", node_ports=(30082,))
    try:
        home = tmp_path / "home"
        home.mkdir()
        env = dict(
            ctx["env"],
            HOME=str(home),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_AUTHOR_NAME="Test",
            GIT_AUTHOR_EMAIL="test@example.invalid",
            GIT_COMMITTER_NAME="Test",
            GIT_COMMITTER_EMAIL="test@example.invalid",
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        )
        # The published checkout: a clone, so the tests never add remotes to or move this working tree.
        checkout = tmp_path / "checkout"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True, env=env)
        port = ctx["host_ports"][30082]
        variables = {
            "git_server_kubeconfig": str(ctx["kubeconfig"]),
            "git_server_context": ctx["context"],
            "git_server_checkout_dir": str(checkout),
            "git_server_manifests_dir": str(MANIFESTS),
            "git_server_host_port": port,
            "git_server_wait_timeout": 180,
        }
        yield {
            "ctx": ctx,
            "env": env,
            "vars": variables,
            "checkout": checkout,
            "kubeconfig": ctx["kubeconfig"],
            "port": port,
            # Where np_30082 keeps the repositories it serves ($STANDIN_STATE_DIR/git).
            "repository": Path(ctx["env"]["STANDIN_STATE_DIR"]) / "git" / "filewcount.git",
        }
    finally:
        kind_harness.delete(ctx)


def play(h: dict, playbook: Path, *args: str, extra: dict | None = None, check: bool = True) -> dict:
    """Run a playbook; the result carries the audit count of what it asked the API server (user kubernetes-admin)."""
    variables = dict(h["vars"], **(extra or {}))
    log = h["ctx"]["state"].audit_log
    since = audit.mark(log)
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), str(playbook), "-e", json.dumps(variables), *args],
        cwd=ROOT,
        env=h["env"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    stats = result["stats"]["localhost"]
    if check:
        assert proc.returncode == 0, json.dumps(failures(result), indent=1)
    return {"rc": proc.returncode, "stats": stats, "result": result, "api": audit.count(log, since)}


def failures(result: dict) -> list:
    found = []
    for p in result["plays"]:
        for task in p["tasks"]:
            host = task["hosts"].get("localhost") or {}
            if host.get("failed"):
                found.append({"task": task["task"]["name"], "msg": host.get("msg")})
    return found


def task_result(run: dict, name: str) -> dict:
    for p in run["result"]["plays"]:
        for task in p["tasks"]:
            if task["task"]["name"] == name:
                return task["hosts"]["localhost"]
    raise AssertionError(f"no task named {name!r}")


def kubectl(h: dict, *args: str, stdin: str | None = None, check: bool = True):
    return harness.kubectl(h["kubeconfig"], *args, stdin=stdin, check=check)


def get(h: dict, *args: str) -> dict:
    return json.loads(kubectl(h, "get", *args, "-o", "json").stdout)


# The objects of kube/bootstrap/git-server/ as audit.py names their creation ("<group>/<resource> <namespace>/<name>").
SERVER_OBJECTS = (
    "persistentvolumeclaims git-server/git-server-data",
    "apps/deployments git-server/git-server",
    "services git-server/git-server",
)
CREATED = sorted(["create namespaces git-server", *(f"create {o}" for o in SERVER_OBJECTS)])


def server_objects(h: dict) -> dict[str, str]:
    """resourceVersion of each object of the git server's manifests."""
    found = {}
    for kind, name in (
        ("namespace", "git-server"),
        ("persistentvolumeclaim", "git-server-data"),
        ("deployment", "git-server"),
        ("service", "git-server"),
    ):
        scope = [] if kind == "namespace" else ["-n", "git-server"]
        found[f"{kind}/{name}"] = get(h, kind, name, *scope)["metadata"]["resourceVersion"]
    return found


def assert_no_write(run: dict) -> None:
    assert run["api"]["writes"] == 0, run["api"]["write_requests"]


def assert_no_request(run: dict) -> None:
    assert run["api"]["requests"] == 0, run["api"]


def server_main(h: dict) -> str:
    return git(h["repository"], "rev-parse", "refs/heads/main")


def flux_commit(h: dict, tmp_path: Path) -> str:
    """What flux bootstrap does to the server: clone the push URL, commit flux-system/, push."""
    clone = tmp_path / "flux-clone"
    subprocess.run(
        ["git", "clone", "--quiet", f"http://localhost:{h['port']}/filewcount.git", str(clone)],
        check=True,
        env=h["env"],
    )
    target = clone / "kube" / "clusters" / "kind" / "flux-system" / "gotk-sync.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# written by the test in place of flux bootstrap\n")
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True, env=h["env"])
    subprocess.run(["git", "commit", "--quiet", "-m", "Add Flux sync manifests"], cwd=clone, check=True, env=h["env"])
    subprocess.run(["git", "push", "--quiet", "origin", "HEAD:main"], cwd=clone, check=True, env=h["env"])
    return git(clone, "rev-parse", "HEAD")


def test_converge_idempotence_check_mode_post_flux_sync_teardown(h, tmp_path):
    checkout = h["checkout"]
    head = git(checkout, "rev-parse", "HEAD")

    # A check run on a cluster without the server predicts the change, writes nothing and does not fail.
    predicted = play(h, PLAYBOOK, "--check")
    assert predicted["stats"]["failures"] == 0
    assert predicted["stats"]["changed"] >= 1
    assert_no_write(predicted)
    assert predicted["api"]["dry_run_writes"] >= 1, predicted["api"]
    assert kubectl(h, "get", "namespace", "git-server", check=False).returncode != 0
    assert git(checkout, "remote") == "origin"
    assert git(h["repository"], "for-each-ref") == ""

    first = play(h, PLAYBOOK)
    assert first["stats"]["changed"] >= 2
    assert sorted(first["api"]["write_requests"]) == CREATED, first["api"]
    assert server_main(h) == head
    assert git(checkout, "remote", "get-url", "local") == f"http://localhost:{h['port']}/filewcount.git"
    urls = task_result(first, "Report the URLs the flux role receives")["msg"]
    assert urls == f"push=http://localhost:{h['port']}/filewcount.git cluster={CLUSTER_URL}"
    # The real controllers rolled the server out: its Deployment is Available and its volume Bound.
    deployment = get(h, "deployment", "git-server", "-n", "git-server")
    conditions = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
    assert conditions["Available"] == "True"
    assert get(h, "pvc", "git-server-data", "-n", "git-server")["status"]["phase"] == "Bound"

    # Re-run: nothing changes and nothing is written (every object of the server keeps its resourceVersion).
    objects = server_objects(h)
    again = play(h, PLAYBOOK)
    assert again["stats"]["changed"] == 0
    assert_no_write(again)
    assert server_objects(h) == objects
    checked = play(h, PLAYBOOK, "--check")
    assert checked["stats"]["changed"] == 0
    assert_no_write(checked)
    assert server_objects(h) == objects

    # Flux bootstrap's commit lands on the server: re-running bootstrap pushes nothing, post_flux pulls it once.
    flux = flux_commit(h, tmp_path)
    rerun = play(h, PLAYBOOK)
    assert rerun["stats"]["changed"] == 0
    assert_no_write(rerun)
    assert server_main(h) == flux
    preview = play(h, PLAYBOOK, "--check", extra={"git_server_entry": "post_flux"})
    assert preview["stats"]["changed"] == 1
    assert_no_request(preview)
    assert git(checkout, "rev-parse", "HEAD") == head
    pulled = play(h, PLAYBOOK, extra={"git_server_entry": "post_flux"})
    assert pulled["stats"]["changed"] == 1
    assert_no_request(pulled)
    assert git(checkout, "rev-parse", "HEAD") == flux
    assert play(h, PLAYBOOK, extra={"git_server_entry": "post_flux"})["stats"]["changed"] == 0

    # make sync: a new commit is pushed, the real source-controller fetches exactly it from the in-cluster URL and
    # the real kustomize-controller applies it; a dirty tree is refused.
    kind_harness.install_flux(h["ctx"])
    kubectl(h, "apply", "-f", "-", stdin=yaml.safe_dump_all(FLUX_OBJECTS))
    (checkout / "NOTES.md").write_text("a change to publish\n")
    git(checkout, "add", "NOTES.md")
    subprocess.run(["git", "commit", "--quiet", "-m", "Publish a note"], cwd=checkout, check=True, env=h["env"])
    published = git(checkout, "rev-parse", "HEAD")
    sync_vars = {
        "gitops_kubeconfig": str(h["kubeconfig"]),
        "gitops_kube_context": h["ctx"]["context"],
        "gitops_mode": "local",
        "sync_checkout_dir": str(checkout),
        "sync_push_url": f"http://localhost:{h['port']}/filewcount.git",
        "sync_timeout": 300,
    }
    synced = play(h, SYNC, extra=sync_vars)
    assert server_main(h) == published
    # Its only writes are the two reconcile requests (annotations); Flux's controllers do the rest.
    assert sorted(synced["api"]["write_requests"]) == [
        "patch kustomize.toolkit.fluxcd.io/kustomizations flux-system/flux-system",
        "patch source.toolkit.fluxcd.io/gitrepositories flux-system/flux-system",
    ], synced["api"]
    report = task_result(synced, "Report the applied revision")["msg"]
    assert report.startswith(f"Flux applied revision main@sha1:{published} of local/main."), report
    source = get(h, "gitrepository", "flux-system", "-n", "flux-system")
    assert source["status"]["artifact"]["revision"] == f"main@sha1:{published}"
    applied = get(h, "kustomization", "flux-system", "-n", "flux-system")
    assert applied["status"]["lastAppliedRevision"] == f"main@sha1:{published}"
    # What kustomize-controller applied from kube/clusters/kind of that commit: the child Kustomizations.
    for name in CHILDREN:
        child = get(h, "kustomization", name, "-n", "flux-system")
        assert child["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "flux-system"
        assert child["spec"]["suspend"] is True  # the test's patch: the stack itself is left to molecule

    (checkout / "NOTES.md").write_text("not committed\n")
    refused = play(h, SYNC, extra=sync_vars, check=False)
    assert refused["rc"] != 0
    assert failures(refused["result"])[0]["msg"] == (
        "The checkout has uncommitted changes; commit or stash them, then run again."
    )
    assert_no_request(refused)
    assert server_main(h) == published
    git(checkout, "checkout", "--", "NOTES.md")

    # Teardown removes the remote, once, and leaves the cluster alone (git_server_teardown_resources is false).
    removed = play(h, PLAYBOOK, extra={"git_server_entry": "teardown"})
    assert removed["stats"]["changed"] == 1
    assert_no_request(removed)
    assert git(checkout, "remote") == "origin"
    assert play(h, PLAYBOOK, extra={"git_server_entry": "teardown"})["stats"]["changed"] == 0
    assert kubectl(h, "get", "namespace", "git-server", check=False).returncode == 0
