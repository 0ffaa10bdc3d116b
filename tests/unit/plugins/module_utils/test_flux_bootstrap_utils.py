"""Unit tests of plugins/module_utils/flux_bootstrap.py: decision table, argv/env, error mapping, git provider.

The Kubernetes API is replaced at the boundary by :class:`FakeKube` (same methods as ``KubeApi``); the git
provider runs real ``git`` against a bare repository in a temporary directory.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import socket
import subprocess

import pytest
from urllib3.exceptions import MaxRetryError, NewConnectionError

from ansible_collections.filewcount.gitops.plugins.module_utils import flux_bootstrap as fb

TOKEN = "ghp_unitTestToken0123456789abcdef"
NEW_TOKEN = "ghp_rotatedToken9876543210fedcba"
VERSION = "v2.9.4"
PATH = "kube/clusters/kind"


# ----------------------------------------------------------------------------------------------- fake API
class FakeKube:
    """In-memory stand-in for KubeApi. ``controllers=True`` marks applied objects Ready like Flux would."""

    def __init__(self, controllers: bool = True):
        self.objects: dict[tuple, dict] = {}
        self.calls: list[tuple] = []
        self.controllers = controllers

    @staticmethod
    def _key(api, kind, name, ns):
        return (api, kind, ns or "", name)

    def get(self, api, kind, name, namespace=None):
        self.calls.append(("get", kind, name))
        obj = self.objects.get(self._key(api, kind, name, namespace))
        return copy.deepcopy(obj) if obj else None

    def list(self, api, kind, namespace=None, label_selector=None):
        self.calls.append(("list", kind))
        out = []
        for (a, k, ns, _name), obj in self.objects.items():
            if a != api or k != kind or (namespace and ns != namespace):
                continue
            if label_selector:
                key, _sep, value = label_selector.partition("=")
                if (obj["metadata"].get("labels") or {}).get(key) != value:
                    continue
            out.append(copy.deepcopy(obj))
        return out

    def apply(self, obj):
        self.calls.append(("apply", obj["kind"], obj["metadata"]["name"]))
        meta = obj["metadata"]
        key = self._key(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        old = self.objects.get(key) or {}
        new = copy.deepcopy(obj)
        generation = (old.get("metadata") or {}).get("generation", 0)
        changed = {k: v for k, v in old.items() if k not in ("status", "metadata")} != {
            k: v for k, v in new.items() if k not in ("status", "metadata")
        }
        new["metadata"]["generation"] = generation + (1 if changed or not old else 0)
        new["status"] = old.get("status", {})
        self.objects[key] = new
        if self.controllers:
            self._reconcile(new)
        return copy.deepcopy(new)

    def merge_patch(self, api, kind, name, namespace, patch):
        self.calls.append(("patch", kind, name))
        obj = self.objects[self._key(api, kind, name, namespace)]
        obj["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
        return copy.deepcopy(obj)

    def invalidate(self):
        self.calls.append(("invalidate",))

    def _reconcile(self, obj):
        gen = obj["metadata"]["generation"]
        if obj["kind"] == "Deployment":
            obj["status"] = {"availableReplicas": 1, "observedGeneration": gen}
        elif obj["kind"] == "CustomResourceDefinition":
            obj["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
        elif obj["kind"] in ("GitRepository", "Kustomization"):
            obj["status"] = {
                "observedGeneration": gen,
                "conditions": [{"type": "Ready", "status": "True", "message": "Applied revision: main@sha1:abc"}],
                "lastAppliedRevision": "main@sha1:abc",
                "artifact": {"revision": "main@sha1:abc"},
            }

    def mutating_calls(self):
        return [c for c in self.calls if c[0] in ("apply", "patch")]


def github_params(**over):
    params = {
        "provider": "github",
        "version": VERSION,
        "cli_path": "flux",
        "owner": "octo",
        "repository": "fleet",
        "personal": True,
        "token": TOKEN,
        "hostname": "github.com",
        "token_auth": True,
        "branch": "main",
        "path": PATH,
        "components": list(fb.DEFAULT_COMPONENTS),
        "components_extra": [],
        "interval": "1m",
        "timeout": "5m",
        "network_policy": True,
        "kubeconfig": "/tmp/kubeconfig",
        "context": "kind-filewcount",
    }
    params.update(over)
    return params


def git_params(**over):
    params = {
        "provider": "git",
        "version": VERSION,
        "cli_path": "flux",
        "url": "http://git-server.git-server.svc.cluster.local/filewcount.git",
        "push_url": "http://localhost:8082/filewcount.git",
        "allow_insecure_http": True,
        "branch": "main",
        "path": PATH,
        "components": list(fb.DEFAULT_COMPONENTS),
        "components_extra": [],
        "interval": "1m",
        "timeout": "5m",
        "network_policy": True,
    }
    params.update(over)
    return params


def synced_cluster(params, *, version=VERSION, ready=True, token=TOKEN) -> FakeKube:
    """A cluster bootstrapped with ``params`` (what a previous successful run leaves)."""
    kube = FakeKube()
    desired = fb.build_desired(params)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}})
    for comp in desired.components:
        kube.apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": comp,
                    "namespace": "flux-system",
                    "labels": {fb.PART_OF_LABEL: "flux", fb.VERSION_LABEL: version},
                },
                "spec": {
                    "replicas": 1,
                    "template": {
                        "spec": {"containers": [{"name": "manager", "image": f"ghcr.io/fluxcd/{comp}:v1.9.4"}]}
                    },
                },
            }
        )
    kube.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-egress", "namespace": "flux-system", "labels": {fb.PART_OF_LABEL: "flux"}},
            "spec": {},
        }
    )
    if desired.manage_secret:
        secret_params = dict(params, token=token)
        kube.apply(fb.secret_manifest(fb.build_desired(secret_params), secret_params))
    for obj in fb.sync_manifests(desired):
        kube.apply(obj)
    if not ready:
        for key in list(kube.objects):
            if key[1] in ("GitRepository", "Kustomization"):
                kube.objects[key]["status"] = {
                    "conditions": [{"type": "Ready", "status": "False", "message": "authentication required"}]
                }
    kube.calls.clear()
    return kube


class Runner:
    """Records argv/env; answers from a table of (argv prefix) -> (rc, out, err)."""

    def __init__(self, answers=None):
        self.calls: list[tuple[list[str], dict]] = []
        self.answers = answers or {}

    def __call__(self, argv, env):
        self.calls.append((list(argv), dict(env)))
        for prefix, answer in self.answers.items():
            if tuple(argv[1 : 1 + len(prefix)]) == prefix:
                return answer
        return (0, "", "")


# ---------------------------------------------------------------------------------------------- decision table
def _observe(kube, params):
    desired = fb.build_desired(params)
    return desired, fb.read_state(kube, desired, {"private_key": params.get("private_key")})


@pytest.mark.parametrize(
    ("case", "cluster", "wanted", "action", "reason_part"),
    [
        ("fresh cluster", FakeKube, github_params(), "bootstrap", "namespace flux-system does not exist"),
        ("already synced", lambda: synced_cluster(github_params()), github_params(), "none", None),
        (
            "other branch",
            lambda: synced_cluster(github_params()),
            github_params(branch="dev"),
            "bootstrap",
            "branch is main, wanted dev",
        ),
        (
            "other version",
            lambda: synced_cluster(github_params(), version="v2.8.8"),
            github_params(),
            "bootstrap",
            "components not at v2.9.4",
        ),
        (
            "token changed",
            lambda: synced_cluster(github_params()),
            github_params(token=NEW_TOKEN),
            "update_secret",
            "credentials differ",
        ),
        (
            "not Ready",
            lambda: synced_cluster(github_params(), ready=False),
            github_params(),
            "wait",
            "authentication required",
        ),
        (
            "other repository",
            lambda: synced_cluster(github_params()),
            github_params(repository="other"),
            "bootstrap",
            "source URL is",
        ),
        (
            "extra component wanted",
            lambda: synced_cluster(github_params()),
            github_params(components_extra=["image-reflector-controller"]),
            "bootstrap",
            "components missing",
        ),
        (
            "component to remove",
            lambda: synced_cluster(github_params()),
            github_params(components=["source-controller", "kustomize-controller"]),
            "bootstrap",
            "components to remove",
        ),
        (
            "other interval",
            lambda: synced_cluster(github_params()),
            github_params(interval="5m"),
            "bootstrap",
            "interval is 1m",
        ),
        (
            "same interval spelled 1m0s",
            lambda: synced_cluster(github_params()),
            github_params(interval="1m0s"),
            "none",
            None,
        ),
        (
            "network policy off",
            lambda: synced_cluster(github_params()),
            github_params(network_policy=False),
            "bootstrap",
            "network policies present",
        ),
        ("git: already synced", lambda: synced_cluster(git_params()), git_params(), "none", None),
        (
            "git: other in-cluster url",
            lambda: synced_cluster(git_params()),
            git_params(url="http://other.example/filewcount.git"),
            "bootstrap",
            "source URL is",
        ),
        (
            "git: push_url alone does not matter",
            lambda: synced_cluster(git_params()),
            git_params(push_url="http://127.0.0.1:8082/filewcount.git"),
            "none",
            None,
        ),
        (
            "git: credentials added",
            lambda: synced_cluster(git_params()),
            git_params(username="flux", password="s3cret-pass"),
            "bootstrap",
            "Secret flux-system/flux-system",
        ),
    ],
)
def test_decision_table(case, cluster, wanted, action, reason_part):
    desired, observed = _observe(cluster(), wanted)
    plan = fb.decide(desired, observed)
    assert plan.action == action, (case, plan.reasons)
    if reason_part:
        assert any(reason_part in r for r in plan.reasons), (case, plan.reasons)
    else:
        assert plan.reasons == []
    assert plan.changes == (action in ("bootstrap", "update_secret"))


def test_other_path_is_refused_with_both_paths_named():
    desired, observed = _observe(synced_cluster(github_params()), github_params(path="kube/clusters/prod"))
    with pytest.raises(fb.PathConflictError) as err:
        fb.decide(desired, observed)
    assert "already syncs path 'kube/clusters/kind', not 'kube/clusters/prod'" in str(err.value)


def test_path_synced_by_another_kustomization_is_refused():
    kube = synced_cluster(github_params())
    kube.apply(
        {
            "apiVersion": fb.KUSTOMIZE_API,
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "team"},
            "spec": {
                "path": "./kube/clusters/kind/",
                "sourceRef": {"kind": "GitRepository", "name": "flux-system", "namespace": "flux-system"},
            },
        }
    )
    desired, observed = _observe(kube, github_params())
    assert observed.conflicts == ["team/apps"]
    with pytest.raises(fb.PathConflictError, match="team/apps"):
        fb.decide(desired, observed)


def test_other_kustomizations_on_other_paths_are_no_conflict():
    kube = synced_cluster(github_params())
    kube.apply(
        {
            "apiVersion": fb.KUSTOMIZE_API,
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {"path": "./kube/apps", "sourceRef": {"kind": "GitRepository", "name": "flux-system"}},
        }
    )
    desired, observed = _observe(kube, github_params())
    assert fb.decide(desired, observed).action == "none"


def test_secret_without_annotation_is_compared_by_content():
    kube = synced_cluster(github_params())
    key = ("v1", "Secret", "flux-system", "flux-system")
    del kube.objects[key]["metadata"]["annotations"]
    _desired, same = _observe(kube, github_params())
    _desired, other = _observe(kube, github_params(token=NEW_TOKEN))
    assert same.credentials_match is True
    assert other.credentials_match is False


def test_ssh_deploy_key_mode_has_no_secret_to_compare():
    params = github_params(token_auth=False)
    desired, observed = _observe(synced_cluster(params), params)
    assert desired.url == "ssh://git@github.com/octo/fleet"
    assert desired.manage_secret is False
    assert fb.decide(desired, observed).action == "none"


# --------------------------------------------------------------------------------------------- run_bootstrap
def test_already_synced_runs_nothing_and_changes_nothing():
    kube, run = synced_cluster(github_params()), Runner()
    result = fb.run_bootstrap(run, kube, fb.build_desired(github_params()), github_params())
    assert result["changed"] is False
    assert result["action"] == "none"
    assert result["revision"] == "main@sha1:abc"
    assert run.calls == []
    assert kube.mutating_calls() == []


@pytest.mark.parametrize("wanted", [github_params(), github_params(branch="dev"), github_params(token=NEW_TOKEN)])
def test_check_mode_reports_and_changes_nothing(wanted):
    for kube in (FakeKube(), synced_cluster(github_params())):
        run = Runner()
        result = fb.run_bootstrap(run, kube, fb.build_desired(wanted), wanted, check_mode=True)
        assert run.calls == []
        assert kube.mutating_calls() == []
        assert result["changed"] == (result["action"] in ("bootstrap", "update_secret"))


def test_token_rotation_updates_only_the_secret():
    kube, run = synced_cluster(github_params()), Runner()
    params = github_params(token=NEW_TOKEN)
    result = fb.run_bootstrap(run, kube, fb.build_desired(params), params, sleep=lambda _: None)
    assert result["action"] == "update_secret"
    assert result["changed"] is True
    assert run.calls == []  # no flux bootstrap
    assert kube.mutating_calls() == [("apply", "Secret", "flux-system"), ("patch", "GitRepository", "flux-system")]
    secret = kube.objects[("v1", "Secret", "flux-system", "flux-system")]
    assert base64.b64decode(secret["data"]["password"]).decode() == NEW_TOKEN
    assert secret["metadata"]["annotations"][fb.CREDENTIALS_ANNOTATION] == fb.credentials_hash(NEW_TOKEN)
    again = fb.run_bootstrap(Runner(), kube, fb.build_desired(params), params)
    assert again["changed"] is False


def test_diff_shows_settings_never_secrets():
    kube = synced_cluster(github_params())
    params = github_params(token=NEW_TOKEN, branch="dev")
    result = fb.run_bootstrap(Runner(), kube, fb.build_desired(params), params, check_mode=True)
    assert result["diff"]["before"]["branch"] == "main"
    assert result["diff"]["after"]["branch"] == "dev"
    assert result["diff"]["after"]["credentials"] == "(rotated)"
    text = repr(result)
    for secret in (TOKEN, NEW_TOKEN, fb.credentials_hash(TOKEN), fb.credentials_hash(NEW_TOKEN)):
        assert secret not in text


def test_github_bootstrap_runs_the_cli_with_the_token_only_in_env():
    kube = FakeKube()
    answers = {("version", "--client"): (0, "flux: v2.9.4\n", "")}

    class BootstrapRunner(Runner):
        def __call__(self, argv, env):
            out = super().__call__(argv, env)
            if argv[1:3] == ["bootstrap", "github"]:  # what the real CLI leaves in the cluster
                params = github_params()
                desired = fb.build_desired(params)
                done = synced_cluster(params)
                del done.objects[("v1", "Secret", "flux-system", "flux-system")]["metadata"]["annotations"]
                kube.objects.update(done.objects)
                assert desired.url.startswith("https://github.com/octo/fleet")
            return out

    run = BootstrapRunner(answers)
    params = github_params()
    result = fb.run_bootstrap(run, kube, fb.build_desired(params), params, sleep=lambda _: None)
    assert result["changed"] is True
    argv, env = run.calls[1]
    assert argv == [
        "flux",
        "bootstrap",
        "github",
        "--owner=octo",
        "--repository=fleet",
        "--branch=main",
        f"--path={PATH}",
        "--personal=true",
        "--interval=1m",
        "--timeout=5m",
        "--components=source-controller,kustomize-controller,helm-controller,notification-controller",
        "--network-policy=true",
        "--token-auth=true",
        "--kubeconfig=/tmp/kubeconfig",
        "--context=kind-filewcount",
    ]
    assert env == {"GITHUB_TOKEN": TOKEN}
    assert TOKEN not in " ".join(argv)
    assert TOKEN not in repr(result)
    secret = kube.objects[("v1", "Secret", "flux-system", "flux-system")]
    assert secret["metadata"]["annotations"][fb.CREDENTIALS_ANNOTATION] == fb.credentials_hash(TOKEN)
    # second run: nothing
    run2 = Runner()
    assert fb.run_bootstrap(run2, kube, fb.build_desired(params), params)["changed"] is False
    assert run2.calls == []


def test_github_command_optional_flags():
    params = github_params(
        hostname="ghe.example.com",
        personal=False,
        components_extra=["source-watcher"],
        network_policy=False,
        token_auth=False,
        kubeconfig=None,
        context=None,
    )
    argv, env = fb.github_bootstrap_command("/c/flux-v2.9.4", fb.build_desired(params), params)
    assert argv[0] == "/c/flux-v2.9.4"
    assert "--hostname=ghe.example.com" in argv
    assert "--personal=false" in argv
    assert "--components-extra=source-watcher" in argv
    assert "--network-policy=false" in argv
    assert "--token-auth=false" in argv
    assert not any(a.startswith(("--kubeconfig", "--context")) for a in argv)
    assert env == {"GITHUB_TOKEN": TOKEN}


def test_install_export_argv():
    params = git_params(components_extra=["image-reflector-controller"], network_policy=False)
    assert fb.install_export_command("flux", fb.build_desired(params), params) == [
        "flux",
        "install",
        "--export",
        "--components=source-controller,kustomize-controller,helm-controller,notification-controller",
        "--components-extra=image-reflector-controller",
        "--network-policy=false",
    ]


def test_wrong_cli_version_fails_before_bootstrapping():
    run = Runner({("version", "--client"): (0, "flux: v2.8.8\n", "")})
    with pytest.raises(fb.FluxCliError, match=r"is v2\.8\.8 but version v2\.9\.4 was asked"):
        fb.run_bootstrap(run, FakeKube(), fb.build_desired(github_params()), github_params())
    assert len(run.calls) == 1


# ------------------------------------------------------------------------------------------------ error mapping
@pytest.mark.parametrize(
    ("output", "error", "text"),
    [
        (
            '✗ failed to get Git repository "https://github.com/octo/fleet": provider error: GET '
            "https://api.github.com/repos/octo/fleet: 401 Bad credentials []",
            fb.TokenRejectedError,
            "(401",
        ),
        (
            "✗ failed to get Git repository: provider error: GET https://api.github.com/repos/octo/fleet: 403 "
            "Resource not accessible by personal access token []",
            fb.AccessDeniedError,
            "no access to octo/fleet",
        ),
        (
            "✗ failed to clone repository: unable to clone 'https://github.com/octo/fleet.git': repository not found",
            fb.RepositoryNotFoundError,
            "Repository octo/fleet or branch 'main' was not found",
        ),
        ("✗ failed to clone repository: couldn't find remote ref refs/heads/main", fb.RepositoryNotFoundError, "(404)"),
        (
            '✗ sync path configuration ("kube/x") would overwrite path ("kube/clusters/kind") of existing '
            "Kustomization",
            fb.PathConflictError,
            "already syncs path 'kube/clusters/kind'",
        ),
        (
            '✗ no matches for kind "GitRepository" in version "source.toolkit.fluxcd.io/v1", ensure CRDs are installed '
            "first",
            fb.CrdNotEstablishedError,
            "CRDs were not established",
        ),
        (
            "✗ kustomization 'flux-system/flux-system' not ready: 'kustomization path not found: "
            "stat /tmp/kube/clusters/kind: no such file or directory'",
            fb.ComponentNotReadyError,
            "kustomization flux-system/flux-system was not Ready before the timeout: kustomization path not found",
        ),
        ("✗ context deadline exceeded", fb.ComponentNotReadyError, "did not finish before the timeout"),
        ("✗ something odd happened", fb.FluxCliError, "flux bootstrap github failed: something odd happened."),
    ],
)
def test_cli_failures_map_to_one_sentence(output, error, text):
    err = fb.classify_cli_failure(output, github_params())
    assert err.__class__ is error
    assert text in str(err)
    assert str(err).count(". ") == 0 or str(err).endswith(".")
    assert "\n" not in str(err)


def test_cli_failure_output_is_scrubbed_before_classification():
    kube = FakeKube()
    run = Runner(
        {
            ("version", "--client"): (0, "flux: v2.9.4\n", ""),
            ("bootstrap", "github"): (1, "", f"✗ weird failure with {TOKEN} inside"),
        }
    )
    with pytest.raises(fb.FluxCliError) as err:
        fb.run_bootstrap(run, kube, fb.build_desired(github_params()), github_params())
    assert TOKEN not in str(err.value)
    assert "********" in str(err.value)


def test_not_ready_timeout_names_the_component_and_its_message():
    kube = synced_cluster(github_params(), ready=False)
    ticks = iter(range(0, 10_000, 100))
    with pytest.raises(fb.ComponentNotReadyError) as err:
        fb.run_bootstrap(
            Runner(),
            kube,
            fb.build_desired(github_params()),
            github_params(),
            clock=lambda: next(ticks),
            sleep=lambda _: None,
        )
    assert "GitRepository flux-system/flux-system Ready=False: authentication required" in str(err.value)
    assert "still not Ready after 5m" in str(err.value)


def test_crds_not_established_in_time():
    kube = FakeKube(controllers=False)
    kube.apply(
        {
            "apiVersion": fb.CRD_API,
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "gitrepositories.source.toolkit.fluxcd.io"},
        }
    )
    ticks = iter(range(0, 10_000, 10))
    with pytest.raises(fb.CrdNotEstablishedError, match=r"gitrepositories\.source\.toolkit\.fluxcd\.io"):
        fb.wait_crds(
            kube, ["gitrepositories.source.toolkit.fluxcd.io"], 30, clock=lambda: next(ticks), sleep=lambda _: None
        )


# ------------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("params", "message"),
    [
        (github_params(token=""), "needs the option token"),
        (git_params(url=None), "needs the option url"),
        (git_params(allow_insecure_http=False), "uses plain HTTP"),
        (git_params(password="p"), "needs username"),
        (git_params(username="u", password="p", private_key="k"), "not both"),
        (github_params(components=["helm-controller"]), "source-controller is required"),
        (github_params(components_extra=["weave-controller"]), "Unknown Flux component"),
        (github_params(version="latest"), "not a release version"),
        (github_params(interval="soon"), "not a Go duration"),
        (github_params(path="/abs/path"), "relative to the repository root"),
        (github_params(path="kube/../etc"), "relative to the repository root"),
    ],
)
def test_invalid_options_fail_with_one_sentence(params, message):
    with pytest.raises(fb.InvalidOptionError, match=message):
        fb.build_desired(params)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("1m0s", 60), ("90s", 90), ("1h30m", 5400), ("500ms", 0.5), ("0", 0), ("10m0s", 600)],
)
def test_parse_duration(text, seconds):
    assert fb.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("a", "b", "ignore_scheme", "same"),
    [
        ("https://github.com/o/r.git", "https://github.com/o/r", False, True),
        ("https://GitHub.com/o/r/", "https://github.com/o/r.git", False, True),
        ("ssh://git@github.com/o/r", "https://github.com/o/r.git", True, True),
        ("ssh://git@github.com/o/r", "https://github.com/o/r.git", False, False),
        ("git@github.com:o/r.git", "https://github.com/o/r", True, True),
        ("https://user:pw@example.com/o/r", "https://example.com/o/r", False, True),
        ("https://github.com/o/r", "https://github.com/o/other", True, False),
    ],
)
def test_same_repo(a, b, ignore_scheme, same):
    assert fb._same_repo(a, b, ignore_scheme) is same


def test_credentials_hash_is_not_the_plain_sha256_and_differs_per_token():
    assert fb.credentials_hash(TOKEN) != hashlib.sha256(TOKEN.encode()).hexdigest()
    assert fb.credentials_hash(TOKEN) != fb.credentials_hash(NEW_TOKEN)
    assert fb.credentials_hash(None) is None
    assert TOKEN not in fb.credentials_hash(TOKEN)


# ----------------------------------------------------------------------------------------- git provider (real git)
def _real_run(argv, env):
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def bare_repo(tmp_path):
    bare = tmp_path / "filewcount.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(seed)], check=True)
    (seed / "README.md").write_text("seed\n")
    git = ["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "seed"], check=True)
    subprocess.run([*git, "push", "--quiet", str(bare), "HEAD:refs/heads/main"], check=True)
    return bare


def _components_yaml():
    return (
        "---\n# Flux Version: v2.9.4\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n---\n"
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n"
        "  name: gitrepositories.source.toolkit.fluxcd.io\n"
        + "".join(
            f"---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {c}\n  namespace: flux-system\n"
            f"  labels:\n    app.kubernetes.io/part-of: flux\n    app.kubernetes.io/version: v2.9.4\n"
            f"spec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - name: manager\n"
            f"        image: ghcr.io/fluxcd/{c}:v1.9.4\n"
            for c in fb.DEFAULT_COMPONENTS
        )
        + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-egress\n"
        "  namespace: flux-system\n  labels:\n    app.kubernetes.io/part-of: flux\nspec: {}\n"
    )


def test_git_provider_commits_pushes_applies_and_is_idempotent(bare_repo, tmp_path):
    params = git_params(push_url=f"file://{bare_repo}")
    kube = FakeKube()

    def run(argv, env):
        if argv[1:3] == ["version", "--client"]:
            return 0, "flux: v2.9.4\n", ""
        if argv[1:3] == ["install", "--export"]:
            return 0, _components_yaml(), ""
        return _real_run(argv, env)

    first = fb.run_bootstrap(run, kube, fb.build_desired(params), params, sleep=lambda _: None)
    assert first["changed"] is True
    assert first["pushed"] is True
    assert first["files"] == [
        f"{PATH}/flux-system/{n}" for n in ("gotk-components.yaml", "gotk-sync.yaml", "kustomization.yaml")
    ]
    log = subprocess.run(
        ["git", "--git-dir", str(bare_repo), "log", "--format=%H %s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(log) == 2
    assert log[0] == f"{first['commit']} Add Flux v2.9.4 component and sync manifests"
    sync = subprocess.run(
        ["git", "--git-dir", str(bare_repo), "show", f"main:{PATH}/flux-system/gotk-sync.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "url: http://git-server.git-server.svc.cluster.local/filewcount.git" in sync
    assert "path: ./kube/clusters/kind" in sync
    assert "secretRef" not in sync  # anonymous server, no credentials
    git_repo = kube.objects[(fb.SOURCE_API, "GitRepository", "flux-system", "flux-system")]
    assert git_repo["spec"]["url"] == params["url"]
    applied = [c[1] for c in kube.calls if c[0] == "apply"]
    assert applied.index("CustomResourceDefinition") < applied.index("Deployment") < applied.index("GitRepository")

    second = fb.run_bootstrap(run, kube, fb.build_desired(params), params)
    assert second["changed"] is False
    assert second["action"] == "none"

    # re-bootstrap on another branch with unchanged content of main: pushes a new branch, main stays
    third_params = dict(params, branch="dev")
    third = fb.run_bootstrap(run, kube, fb.build_desired(third_params), third_params, sleep=lambda _: None)
    assert third["pushed"] is True
    kube_git = kube.objects[(fb.SOURCE_API, "GitRepository", "flux-system", "flux-system")]
    assert kube_git["spec"]["ref"]["branch"] == "dev"


def test_git_provider_does_not_push_identical_content(bare_repo):
    params = git_params(push_url=f"file://{bare_repo}")
    desired = fb.build_desired(params)

    def run(argv, env):
        if argv[1:3] == ["install", "--export"]:
            return 0, _components_yaml(), ""
        return _real_run(argv, env)

    assert fb.bootstrap_git(run, FakeKube(), "flux", desired, params)["pushed"] is True
    again = fb.bootstrap_git(run, FakeKube(), "flux", desired, params)
    assert again["pushed"] is False


def test_git_credentials_stay_out_of_argv_and_into_the_secret(bare_repo):
    params = git_params(push_url=f"file://{bare_repo}", username="flux", password="pa55-word-XYZ")
    desired = fb.build_desired(params)
    seen = []

    def run(argv, env):
        seen.append(argv)
        if argv[1:3] == ["install", "--export"]:
            return 0, _components_yaml(), ""
        if argv[0] == "git":
            assert env["FLUX_BOOTSTRAP_GIT_PASSWORD"] == "pa55-word-XYZ"
        return _real_run(argv, env)

    kube = FakeKube()
    fb.bootstrap_git(run, kube, "flux", desired, params)
    assert all("pa55-word-XYZ" not in " ".join(a) for a in seen)
    secret = kube.objects[("v1", "Secret", "flux-system", "flux-system")]
    assert base64.b64decode(secret["data"]["password"]).decode() == "pa55-word-XYZ"
    git_repo = kube.objects[(fb.SOURCE_API, "GitRepository", "flux-system", "flux-system")]
    assert git_repo["spec"]["secretRef"] == {"name": "flux-system"}


def test_git_push_failure_is_one_sentence(tmp_path):
    params = git_params(push_url=f"file://{tmp_path}/missing.git")

    def run(argv, env):
        if argv[1:3] == ["install", "--export"]:
            return 0, _components_yaml(), ""
        return _real_run(argv, env)

    with pytest.raises(fb.GitError) as err:
        fb.bootstrap_git(run, FakeKube(), "flux", fb.build_desired(params), params)
    assert "missing.git" in str(err.value)
    assert "\n" not in str(err.value)


# -------------------------------------------------------------------------------- KubeApi: connection failures
def _kubeconfig(tmp_path, server: str):
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: not-a-secret}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return str(path)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_an_unreachable_api_server_is_one_sentence_without_urllib3_text(tmp_path):
    server = f"https://127.0.0.1:{_closed_port()}"
    clock = _Clock()
    kube = fb.KubeApi(_kubeconfig(tmp_path, server), retry_seconds=6, clock=clock, sleep=clock.sleep)
    with pytest.raises(fb.KubeApiError) as err:
        kube.get("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "flux-system")
    msg = str(err.value)
    assert msg == (
        f"Cannot reach the Kubernetes API at {server} to discover Kustomization (kustomize.toolkit.fluxcd.io/v1) "
        "(the connection was refused); check that the cluster runs (kind get clusters) and that the kubeconfig "
        "points at it, then run again."
    )
    assert "Pool" not in msg and "Max retries" not in msg and "\n" not in msg
    assert clock.sleeps == [fb.RETRY_DELAY] * 3  # tried again until retry_seconds had passed


class _Flaky:
    """A DynamicClient whose first ``failures`` calls find no API server, as while it restarts."""

    def __init__(self, failures: int, error: Exception):
        self.failures = failures
        self.error = error
        self.calls = 0
        self.resources = self

    def _maybe_fail(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    def get(self, res=None, name=None, namespace=None, api_version=None, kind=None, **kwargs):
        self._maybe_fail()
        if res is None:
            return "resource"

        class Answer:
            @staticmethod
            def to_dict():
                return {"metadata": {"name": name, "namespace": namespace}}

        return Answer()


def test_a_refused_connection_is_tried_again_until_the_api_server_answers(tmp_path):
    clock = _Clock()
    kube = fb.KubeApi(_kubeconfig(tmp_path, "https://127.0.0.1:1"), retry_seconds=30, clock=clock, sleep=clock.sleep)
    refused = MaxRetryError(None, "/apis", NewConnectionError(None, "[Errno 111] Connection refused"))
    kube._client = _Flaky(failures=3, error=refused)
    assert kube.get("v1", "Namespace", "flux-system") == {"metadata": {"name": "flux-system", "namespace": None}}
    assert clock.sleeps == [fb.RETRY_DELAY] * 3


def test_an_answer_from_the_api_server_is_not_tried_again(tmp_path):
    clock = _Clock()
    kube = fb.KubeApi(_kubeconfig(tmp_path, "https://127.0.0.1:1"), retry_seconds=30, clock=clock, sleep=clock.sleep)
    forbidden = Exception("Forbidden")
    forbidden.status = 403
    forbidden.body = '{"message": "namespaces is forbidden: User cannot get resource"}'
    kube._client = _Flaky(failures=1, error=forbidden)
    with pytest.raises(fb.KubeApiError, match=r"refused to discover Namespace \(v1\) \(403: namespaces is forbidden"):
        kube.get("v1", "Namespace", "flux-system")
    assert clock.sleeps == []
