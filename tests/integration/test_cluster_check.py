"""The preflight role's `cluster` entry point (module cluster_check) run by ansible-playbook on a real API server.

One harness cluster for the whole file (tests/integration/kind_harness.py: etcd and kube-apiserver built from their
Go modules, RBAC authorization, kind's default StorageClass `standard`), treated as an existing cluster reached
through a kubeconfig: no kind, no Docker. Each case changes the kubeconfig or the cluster the way a user's situation
would, runs the role as a user does, and asserts the exact one sentence printed, and that the run wrote no object:
the API server's audit log (tests/harness/audit.py) shows no create, update, patch or delete by the run's user other
than SelfSubjectAccessReview and SelfSubjectReview creates, which ask the API server about the caller and store
nothing (audit.py counts every create as a write, so those two resources are left out of the assertion).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
CONTEXT = "kind-filewcount"
OURS = "https://github.com/example/filewcount-gitops"
FOREIGN = "https://github.com/other/fleet"
SELF_REVIEWS = ("authorization.k8s.io/selfsubjectaccessreviews", "authentication.k8s.io/selfsubjectreviews")
PLAYBOOK = """---
- name: Check the existing cluster
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the cluster entry point of the preflight role
      ansible.builtin.import_role:
        name: filewcount.gitops.preflight
        tasks_from: cluster
"""

sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit  # noqa: E402
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster_check")
    ctx = kind_harness.create(tmp / "cluster")
    playbook = tmp / "cluster_check.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    try:
        yield {**ctx, "tmp": tmp, "playbook": playbook, "admin": yaml.safe_load(ctx["kubeconfig"].read_text())}
    finally:
        kind_harness.delete(ctx)


def write_kubeconfig(h, name: str, change) -> Path:
    """A copy of the admin kubeconfig, changed by change(config) (which edits the dict in place)."""
    config = copy.deepcopy(h["admin"])
    change(config)
    path = h["tmp"] / name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def use_token(token: str):
    def change(config):
        config["users"][0]["user"] = {"token": token}

    return change


def play(h, check: bool = False, user: str = audit.PRODUCT_USER, **variables):
    """Run the role; return (rc, fail sentence or None, module result, object writes of `user`, its request count)."""
    extra = {"preflight_cluster_kubeconfig": str(h["kubeconfig"]), "preflight_cluster_context": CONTEXT}
    extra.update({f"preflight_cluster_{k}": v for k, v in variables.items()})
    env = dict(h["env"], ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    argv = [str(ANSIBLE_PLAYBOOK), str(h["playbook"]), "-e", json.dumps(extra), *(["--check"] if check else [])]
    since = audit.mark(h["state"].audit_log)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert "Traceback" not in proc.stdout + proc.stderr
    counted = audit.count(h["state"].audit_log, since, user)
    reviews = tuple(f"create {r}" for r in SELF_REVIEWS)
    writes = [w for w in counted["write_requests"] if not w.startswith(reviews)]
    h["self_reviews"] = len(counted["write_requests"]) - len(writes)
    report = json.loads(proc.stdout)
    sentence, result = None, None
    for task in report["plays"][0]["tasks"]:
        host = task["hosts"].get("localhost", {})
        if task["task"]["name"].endswith(
            "Check the kubeconfig, the API server, its version, permissions, storage and Flux of the existing cluster"
        ):
            result = host
        elif task["task"]["name"].endswith("Stop with the sentences of the failed cluster checks") and host.get(
            "failed"
        ):
            sentence = host["msg"]
    assert result is not None, proc.stdout[-3000:]
    return proc.returncode, sentence, result, writes, counted["requests"]


def test_an_existing_cluster_passes_and_nothing_is_written(h):
    for check in (False, True):
        rc, sentence, result, writes, requests = play(h, check=check, sync_url=OURS)
        assert (rc, sentence) == (0, None), result.get("failures")
        assert result["failures"] == [] and result["advice"] == []
        assert [c["name"] for c in result["checks"] if c["ok"] and not c["skipped"]] == [
            "kubeconfig",
            "api",
            "version",
            "rbac",
            "storage",
            "flux",
        ]
        assert result["version"]["git_version"] == f"v{harness.version_of('kube-apiserver').lstrip('v')}"
        assert result["version"]["supported"] is True
        assert result["contexts"] == [CONTEXT]
        assert result["default_storage_class"] == "standard"
        assert all(p["allowed"] for p in result["permissions"])
        assert result["flux"] == {"controllers": [], "sync_url": "", "foreign": False}
        assert requests > 0, "the audit log shows no request of the run"
        assert writes == []
        # audit.py counts the four SelfSubjectAccessReview creates as writes; they store nothing.
        assert h["self_reviews"] == 4


def test_a_context_that_does_not_exist(h):
    rc, sentence, _result, writes, requests = play(h, context="prod")
    assert rc != 0
    assert sentence == (
        f"The kubeconfig {h['kubeconfig']} has no context prod (contexts in it: {CONTEXT}): use one of those, or add "
        "it (for EKS: `aws eks update-kubeconfig --name <cluster> --region <region> --alias prod --kubeconfig "
        f"{h['kubeconfig']}`)."
    )
    assert (writes, requests) == ([], 0)


def test_an_unreachable_api_server(h):
    port = harness.free_port()  # nothing listens there
    server = f"https://127.0.0.1:{port}"
    path = write_kubeconfig(h, "closed-port", lambda c: c["clusters"][0]["cluster"].update(server=server))
    rc, sentence, _result, _writes, _requests = play(h, kubeconfig=str(path))
    assert rc != 0
    assert sentence == (
        f"The API server {server} of context {CONTEXT} is unreachable (the connection was refused): check that the "
        "cluster runs and that this machine can reach that address (VPN, firewall, or for EKS the cluster's public "
        "endpoint access), and run again."
    )


def test_wrong_credentials(h):
    path = write_kubeconfig(h, "bogus-token", use_token("bogus.token.value"))
    rc, sentence, _result, _writes, _requests = play(h, kubeconfig=str(path))
    assert rc != 0
    assert sentence == (
        f"The API server {h['state'].server} of context {CONTEXT} rejected its credentials (401 Unauthorized: wrong "
        "or expired): refresh them, for example with `aws sso login` and then `aws eks update-kubeconfig --name "
        "<cluster> --region <region>` for EKS, and run again."
    )


def test_a_server_certificate_the_kubeconfig_does_not_trust(h):
    other_ca = base64.b64encode((h["state"].pki / "front-proxy-ca.crt").read_bytes()).decode("ascii")
    path = write_kubeconfig(
        h, "other-ca", lambda c: c["clusters"][0]["cluster"].update({"certificate-authority-data": other_ca})
    )
    rc, sentence, _result, _writes, _requests = play(h, kubeconfig=str(path))
    assert rc != 0
    assert sentence.startswith(
        f"The API server {h['state'].server} of context {CONTEXT} presents a TLS certificate that the kubeconfig's "
        "certificate authority does not verify"
    )
    assert sentence.endswith(
        ": write the cluster's current certificate-authority-data into the kubeconfig (for EKS: `aws eks "
        "update-kubeconfig --name <cluster> --region <region>`) and check that the server URL is the cluster's."
    )


def test_a_user_without_cluster_rights(h):
    # A fresh ServiceAccount (authenticated, no bindings) and a token for it from the TokenRequest API.
    harness.kubectl(h["kubeconfig"], "create", "serviceaccount", "viewer", "-n", "default")
    token = harness.kubectl(h["kubeconfig"], "create", "token", "viewer", "-n", "default").stdout.strip()
    path = write_kubeconfig(h, "viewer", use_token(token))
    user = "system:serviceaccount:default:viewer"
    rc, sentence, result, writes, requests = play(h, kubeconfig=str(path), user=user)
    assert rc != 0
    assert sentence == (
        f"User {user} of context {CONTEXT} may not create customresourcedefinitions.apiextensions.k8s.io, create "
        "clusterroles.rbac.authorization.k8s.io, create clusterrolebindings.rbac.authorization.k8s.io, create "
        "namespaces cluster-wide: bootstrap needs cluster-admin, so bind that ClusterRole to this user or use a "
        "context that has it (for EKS: an access entry with the AmazonEKSClusterAdminPolicy)."
    )
    assert result["failures"] == [sentence]
    assert requests > 0
    assert writes == []


def test_a_kubernetes_version_the_flux_table_does_not_support(h):
    server = h["state"]
    version = f"v{harness.version_of('kube-apiserver').lstrip('v')}"
    rc, sentence, _result, writes, _requests = play(h, flux_kubernetes_versions=["1.37.0"], sync_url=OURS)
    assert rc != 0
    assert sentence == (
        f"Kubernetes {version} on context {CONTEXT} is not supported by Flux v2.9.4, which needs one of v1.37 from "
        "v1.37.0 (v1.37 from v1.37.0): upgrade the cluster, or pin a Flux release that supports this version."
    )
    assert writes == []
    rc, sentence, result, _writes, _requests = play(h, flux_kubernetes_versions=["1.34.1", "1.35.0"], sync_url=OURS)
    assert (rc, sentence) == (0, None)
    assert result["advice"] == [
        f"Kubernetes {version} on context {CONTEXT} is newer than Flux v2.9.4 was tested with (up to v1.35): "
        "bootstrap goes on, but if Flux misbehaves pin a Flux release that lists this minor in its notes."
    ]
    assert server.server  # the same cluster answered both runs


@pytest.fixture
def no_default_class(h):
    annotation = "storageclass.kubernetes.io/is-default-class"
    harness.kubectl(h["kubeconfig"], "annotate", "--overwrite", "storageclass", "standard", f"{annotation}=false")
    try:
        yield
    finally:
        harness.kubectl(h["kubeconfig"], "annotate", "--overwrite", "storageclass", "standard", f"{annotation}=true")


@pytest.mark.usefixtures("no_default_class")
def test_no_default_storage_class(h):
    rc, sentence, _result, writes, _requests = play(h, sync_url=OURS)
    assert rc != 0
    assert sentence == (
        f"Context {CONTEXT} has no default StorageClass (it has: standard), but the local-mode git server and "
        f"Prometheus need a volume: mark one default, for example `kubectl --context {CONTEXT} patch storageclass "
        'standard -p \'{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":"true"}}}\'`.'
    )
    assert writes == []
    rc, sentence, _result, _writes, _requests = play(h, sync_url=OURS, needs_volume=False)
    assert (rc, sentence) == (0, None)


@pytest.fixture
def foreign_flux(h):
    """The GitRepository CRD of the pinned Flux (from `flux install --export`) and a flux-system sync of FOREIGN."""
    exported = subprocess.run(
        [*kind_harness.FLUX, "install", "--export"], env=h["env"], check=True, capture_output=True, text=True
    ).stdout
    crds = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(exported)
        if doc and doc["kind"] == "CustomResourceDefinition"
    }
    crd = crds["gitrepositories.source.toolkit.fluxcd.io"]
    kubeconfig = h["kubeconfig"]
    harness.kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(crd))
    harness.kubectl(
        kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}"
    )
    repository = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "flux-system", "namespace": "flux-system"},
        "spec": {"interval": "1m0s", "ref": {"branch": "main"}, "url": FOREIGN},
    }
    harness.kubectl(kubeconfig, "create", "namespace", "flux-system")
    harness.kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(repository))
    try:
        yield
    finally:
        harness.kubectl(kubeconfig, "delete", "namespace", "flux-system", "--wait=false")
        harness.kubectl(kubeconfig, "delete", "crd", crd["metadata"]["name"])


@pytest.mark.usefixtures("foreign_flux")
def test_a_foreign_flux_is_refused_and_takeover_warns(h):
    rc, sentence, _result, writes, _requests = play(h, sync_url=OURS)
    assert rc != 0
    assert sentence == (
        f"Flux on context {CONTEXT} already syncs {FOREIGN} (GitRepository flux-system/flux-system), not {OURS}; "
        "bootstrap would take it over: run its teardown first, or set gitops_flux_takeover=true."
    )
    assert writes == []

    rc, sentence, result, writes, _requests = play(h, sync_url=OURS, takeover=True)
    assert (rc, sentence) == (0, None)
    assert result["flux"]["foreign"] is True
    warning = (
        f"Flux on context {CONTEXT} already syncs {FOREIGN} (GitRepository flux-system/flux-system), not {OURS}: "
        "bootstrap takes it over because gitops_flux_takeover is true."
    )
    assert result["advice"] == [warning]
    assert result["warnings"] == [warning]
    assert writes == []

    # The same repository written another way is this project's own sync.
    rc, sentence, result, _writes, _requests = play(h, sync_url="git@github.com:other/fleet.git")
    assert (rc, sentence) == (0, None)
    assert result["flux"]["foreign"] is False


def test_the_failure_reads_as_one_sentence_on_the_terminal(h):
    """With the callback ansible.cfg configures, a newcomer sees the sentence, not a result dump."""
    env = {k: v for k, v in h["env"].items() if k != "ANSIBLE_STDOUT_CALLBACK"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    extra = {"preflight_cluster_kubeconfig": str(h["kubeconfig"]), "preflight_cluster_context": "prod"}
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), str(h["playbook"]), "-e", json.dumps(extra)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "has no context prod (contexts in it: kind-filewcount)" in out
    assert "Traceback" not in out
    assert "client-key-data" not in out and os.fspath(h["state"].pki) not in out
