"""Tests of module_utils/cluster_check.py: kubeconfig reading, error sentences, and each check on a fake cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import urllib3
import yaml

from ansible_collections.filewcount.gitops.plugins.module_utils import cluster_check as cc

ROOT = Path(__file__).resolve().parents[4]
EKS_CONTEXT = "arn:aws:eks:eu-west-1:123456789012:cluster/prod"
EKS_SERVER = "https://ABCDEF0123.gr7.eu-west-1.eks.amazonaws.com"
TARGET = cc.Target("/k/config", "admin@dev", ["admin@dev"], "https://10.0.0.1:6443")
EKS_TARGET = cc.Target("/k/config", EKS_CONTEXT, [EKS_CONTEXT], EKS_SERVER, "prod", "eu-west-1")
DEFAULT = {"storageclass.kubernetes.io/is-default-class": "true"}


def kubeconfig(tmp_path: Path, contexts=("admin@dev",), current="admin@dev", user=None, server=None) -> str:
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [{"name": c, "cluster": {"server": server or "https://10.0.0.1:6443"}} for c in contexts],
        "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in contexts],
        "users": [{"name": c, "user": user or {"token": "x"}} for c in contexts],
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


class FakeApi:
    """A ClusterApi answering from fixed data; records what was asked."""

    def __init__(
        self,
        *,
        version="v1.36.3",
        denied=(),
        user="alice",
        classes=None,
        repository=None,
        controllers=(),
        fail: Exception | None = None,
    ):
        self._version, self._denied, self._user = version, set(denied), user
        self._classes = [{"name": "standard", "annotations": DEFAULT}] if classes is None else classes
        self._repository, self._controllers, self._fail = repository, list(controllers), fail
        self.asked: list[str] = []

    def version(self):
        self.asked.append("version")
        return {"gitVersion": self._version}

    def whoami(self):
        return self._user

    def can_i(self, verb, group, resource):
        self.asked.append(f"can_i {verb} {resource}")
        return resource not in self._denied

    def storage_classes(self):
        self.asked.append("storage_classes")
        if self._fail:
            raise self._fail
        return self._classes

    def flux_git_repository(self):
        self.asked.append("flux_git_repository")
        return self._repository

    def flux_controllers(self):
        return self._controllers


def desired(path="/k/config", **kwargs) -> cc.Desired:
    return cc.Desired(kubeconfig=path, **kwargs)


# ------------------------------------------------------------------------------------------------------- version
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1.35.2-eks-abc123", (1, 35, 2)),
        ("v1.36.3", (1, 36, 3)),
        ("1.34.1", (1, 34, 1)),
        ("v1.34.1+k3s1", (1, 34, 1)),
        ("v1.33.5-gke.1080000", (1, 33, 5)),
    ],
)
def test_parse_version(text, expected):
    assert cc.parse_version(text) == expected


def test_parse_version_rejects_words():
    with pytest.raises(cc.InvalidOptionError):
        cc.parse_version("latest")


@pytest.mark.parametrize("version", ["v1.34.1", "v1.35.2-eks-abc123", "v1.35.0", "v1.36.0", "v1.36.3"])
def test_supported_versions_pass_quietly(version):
    details, warning = cc.check_version(version, TARGET, desired())
    assert details["supported"] is True
    assert warning == ""


@pytest.mark.parametrize(
    ("version", "need"),
    [
        ("v1.33.9-eks-1234567", "one of v1.34 from v1.34.1, v1.35 from v1.35.0, v1.36 from v1.36.0"),
        ("v1.34.0", "v1.34.1 or later of v1.34"),
        ("v1.29.0", "one of v1.34 from v1.34.1, v1.35 from v1.35.0, v1.36 from v1.36.0"),
    ],
)
def test_old_versions_fail_with_one_sentence(version, need):
    with pytest.raises(cc.UnsupportedVersionError) as caught:
        cc.check_version(version, TARGET, desired())
    assert str(caught.value) == (
        f"Kubernetes {version} on context admin@dev is not supported by Flux v2.9.4, which needs {need} "
        "(v1.34 from v1.34.1, v1.35 from v1.35.0, v1.36 from v1.36.0): upgrade the cluster, or pin a Flux release "
        "that supports this version."
    )


def test_a_gap_in_the_table_fails():
    with pytest.raises(cc.UnsupportedVersionError, match=r"needs one of v1\.34 from v1\.34\.1, v1\.36 from v1\.36\.0"):
        cc.check_version("v1.35.4", TARGET, desired(flux_kubernetes_versions=("1.34.1", "1.36.0")))


def test_newer_minor_warns():
    details, warning = cc.check_version("v1.37.0-eks-0a1b2c3", TARGET, desired())
    assert details["supported"] is True
    assert warning == (
        "Kubernetes v1.37.0-eks-0a1b2c3 on context admin@dev is newer than Flux v2.9.4 was tested with (up to "
        "v1.36): bootstrap goes on, but if Flux misbehaves pin a Flux release that lists this minor in its notes."
    )


def test_unparsable_server_version_warns():
    details, warning = cc.check_version("weird", TARGET, desired())
    assert details["supported"] is None
    assert "not a version number" in warning


def test_role_default_table_moves_with_the_flux_pin():
    flux = yaml.safe_load((ROOT / "roles" / "flux" / "defaults" / "main.yml").read_text())
    preflight = yaml.safe_load((ROOT / "roles" / "preflight" / "defaults" / "main.yml").read_text())
    assert preflight["preflight_cluster_flux_version"] == flux["flux_version"] == cc.FLUX_VERSION
    assert tuple(preflight["preflight_cluster_flux_kubernetes_versions"]) == cc.FLUX_KUBERNETES_VERSIONS


# ---------------------------------------------------------------------------------------------------- kubeconfig
def test_missing_kubeconfig(tmp_path):
    path = tmp_path / "nope"
    with pytest.raises(cc.KubeconfigError) as caught:
        cc.read_kubeconfig(str(path), "x")
    assert str(caught.value) == (
        f"The kubeconfig {path} does not exist: give the path of a kubeconfig that reaches your cluster, or write "
        f"one (for EKS: `aws eks update-kubeconfig --name <cluster> --region <region> --kubeconfig {path}`)."
    )


def test_missing_context_lists_the_contexts(tmp_path):
    path = kubeconfig(tmp_path, contexts=("kind-a", "kind-b"), current="kind-a")
    with pytest.raises(cc.KubeconfigError) as caught:
        cc.read_kubeconfig(path, "prod")
    assert str(caught.value) == (
        f"The kubeconfig {path} has no context prod (contexts in it: kind-a, kind-b): use one of those, or add it "
        f"(for EKS: `aws eks update-kubeconfig --name <cluster> --region <region> --alias prod --kubeconfig {path}`)."
    )


def test_missing_eks_context_gives_its_update_kubeconfig(tmp_path):
    path = kubeconfig(tmp_path, contexts=(), current="")
    with pytest.raises(cc.KubeconfigError) as caught:
        cc.read_kubeconfig(path, EKS_CONTEXT)
    assert str(caught.value) == (
        f"The kubeconfig {path} has no context {EKS_CONTEXT} (contexts in it: none): use one of those, or add it "
        f"(for EKS: `aws eks update-kubeconfig --name prod --region eu-west-1 --kubeconfig {path}`)."
    )


def test_no_current_context(tmp_path):
    path = kubeconfig(tmp_path, contexts=("a",), current="")
    with pytest.raises(cc.KubeconfigError, match=r"sets no current context and none was given \(contexts in it: a\)"):
        cc.read_kubeconfig(path)


def test_current_context_is_the_default(tmp_path):
    target = cc.read_kubeconfig(kubeconfig(tmp_path, contexts=("a", "b"), current="b"))
    assert (target.context, target.contexts, target.server) == ("b", ["a", "b"], "https://10.0.0.1:6443")


def test_broken_yaml(tmp_path):
    path = tmp_path / "config"
    path.write_text("contexts: [", encoding="utf-8")
    with pytest.raises(cc.KubeconfigError, match=r"cannot be read as YAML .*: fix the file or write it anew"):
        cc.read_kubeconfig(str(path), "a")


def test_context_with_an_undefined_user(tmp_path):
    path = tmp_path / "config"
    data = {"contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}], "clusters": []}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(cc.KubeconfigError) as caught:
        cc.read_kubeconfig(str(path), "a")
    assert str(caught.value).startswith(f"Context a in the kubeconfig {path} refers to cluster c and user u that ")


def test_eks_hint_from_exec_arguments(tmp_path):
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["--region", "us-east-2", "eks", "get-token", "--cluster-name", "shop", "--output", "json"],
        }
    }
    target = cc.read_kubeconfig(kubeconfig(tmp_path, contexts=("shop",), current="shop", user=user))
    assert (target.eks_name, target.eks_region) == ("shop", "us-east-2")


def test_eks_hint_from_arn_and_server(tmp_path):
    target = cc.read_kubeconfig(kubeconfig(tmp_path, contexts=(EKS_CONTEXT,), current=EKS_CONTEXT, server=EKS_SERVER))
    assert target.update_kubeconfig() == "`aws eks update-kubeconfig --name prod --region eu-west-1`"


# ------------------------------------------------------------------------------------------------ reaching the API
class Status(Exception):
    def __init__(self, status, body=""):
        super().__init__(f"({status})")
        self.status, self.body, self.reason = status, body, "Reason"


def test_401_says_refresh_credentials():
    error = cc.api_error(Status(401), EKS_TARGET, "tell its version (GET /version)")
    assert isinstance(error, cc.CredentialsRejectedError)
    assert str(error) == (
        f"The API server {EKS_SERVER} of context {EKS_CONTEXT} rejected its credentials (401 Unauthorized: wrong or "
        "expired): refresh them, for example with `aws sso login` and then `aws eks update-kubeconfig --name prod "
        "--region eu-west-1` for EKS, and run again."
    )


def test_other_status_names_the_request():
    error = cc.api_error(Status(500, '{"message": "etcdserver: leader changed"}'), TARGET, "list StorageClasses")
    assert str(error) == (
        "The API server https://10.0.0.1:6443 of context admin@dev answered 500 (etcdserver: leader changed) when "
        "asked to list StorageClasses: fix that on the cluster or use a context whose user may do it, and run again."
    )


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            urllib3.exceptions.MaxRetryError(
                None, "/version", urllib3.exceptions.NewConnectionError(None, "[Errno 111] Connection refused")
            ),
            "the connection was refused",
        ),
        (
            urllib3.exceptions.MaxRetryError(
                None,
                "/version",
                urllib3.exceptions.NameResolutionError("x.invalid", None, OSError("Name or service not known")),
            ),
            "its host name does not resolve",
        ),
        (urllib3.exceptions.ConnectTimeoutError("timed out"), "the connection timed out"),
        (OSError("something odd"), "no answer came back"),
    ],
)
def test_unreachable_names_server_context_and_reason(exc, reason):
    error = cc.api_error(exc, TARGET, "tell its version (GET /version)")
    assert isinstance(error, cc.ApiUnreachableError)
    assert str(error) == (
        f"The API server https://10.0.0.1:6443 of context admin@dev is unreachable ({reason}): check that the "
        "cluster runs and that this machine can reach that address (VPN, firewall, or for EKS the cluster's public "
        "endpoint access), and run again."
    )


def test_tls_verify_failure_says_so():
    exc = urllib3.exceptions.MaxRetryError(
        None,
        "/version",
        urllib3.exceptions.SSLError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate "
            "(_ssl.c:1006)"
        ),
    )
    error = cc.api_error(exc, TARGET, "tell its version (GET /version)")
    assert isinstance(error, cc.TlsVerifyError)
    assert str(error) == (
        "The API server https://10.0.0.1:6443 of context admin@dev presents a TLS certificate that the kubeconfig's "
        "certificate authority does not verify (unable to get local issuer certificate): write the cluster's current "
        "certificate-authority-data into the kubeconfig (for EKS: `aws eks update-kubeconfig --name <cluster> "
        "--region <region>`) and check that the server URL is the cluster's."
    )


# ------------------------------------------------------------------------------------------------------------ RBAC
def test_permissions_all_allowed():
    results = cc.check_permissions(FakeApi(), TARGET)
    assert [r["allowed"] for r in results] == [True] * 4
    assert [r["resource"] for r in results] == [
        "customresourcedefinitions",
        "clusterroles",
        "clusterrolebindings",
        "namespaces",
    ]


def test_denied_permissions_are_listed_in_one_sentence():
    api = FakeApi(denied=("customresourcedefinitions", "clusterrolebindings", "namespaces"), user="viewer")
    with pytest.raises(cc.PermissionDeniedError) as caught:
        cc.check_permissions(api, TARGET)
    assert str(caught.value) == (
        "User viewer of context admin@dev may not create customresourcedefinitions.apiextensions.k8s.io, create "
        "clusterrolebindings.rbac.authorization.k8s.io, create namespaces cluster-wide: bootstrap needs "
        "cluster-admin, so bind that ClusterRole to this user or use a context that has it (for EKS: an access "
        "entry with the AmazonEKSClusterAdminPolicy)."
    )


def test_denied_without_a_user_name():
    with pytest.raises(cc.PermissionDeniedError, match=r"^The user of context admin@dev may not create clusterroles"):
        cc.check_permissions(FakeApi(denied=("clusterroles",), user=""), TARGET)


# --------------------------------------------------------------------------------------------------------- storage
@pytest.mark.parametrize(
    "annotations",
    [DEFAULT, {"storageclass.beta.kubernetes.io/is-default-class": "true"}, {cc.DEFAULT_CLASS_ANNOTATIONS[0]: "True"}],
)
def test_default_class_detection(annotations):
    assert cc.is_default_class({"name": "gp3", "annotations": annotations})


def test_not_default():
    assert not cc.is_default_class({"name": "gp2", "annotations": {cc.DEFAULT_CLASS_ANNOTATIONS[0]: "false"}})
    assert not cc.is_default_class({"name": "gp2"})


def test_one_default_passes():
    classes = [{"name": "gp2", "annotations": {}}, {"name": "gp3", "annotations": DEFAULT, "provisioner": "ebs"}]
    found, warning = cc.check_storage(classes, TARGET, desired(needs_volume=True))
    assert warning == ""
    assert found == [
        {"name": "gp2", "default": False, "provisioner": ""},
        {"name": "gp3", "default": True, "provisioner": "ebs"},
    ]


def test_no_default_gives_the_patch_command():
    classes = [{"name": "gp2", "annotations": {}}, {"name": "efs", "annotations": {}}]
    with pytest.raises(cc.NoDefaultStorageClassError) as caught:
        cc.check_storage(classes, TARGET, desired(needs_volume=True))
    assert str(caught.value) == (
        "Context admin@dev has no default StorageClass (it has: gp2, efs), but the local-mode git server and "
        "Prometheus need a volume: mark one default, for example `kubectl --context admin@dev patch storageclass "
        'gp2 -p \'{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":"true"}}}\'`.'
    )


def test_no_class_at_all():
    with pytest.raises(cc.NoDefaultStorageClassError) as caught:
        cc.check_storage([], TARGET, desired(needs_volume=True))
    assert str(caught.value) == (
        "Context admin@dev has no StorageClass at all, but the local-mode git server and Prometheus need a volume: "
        "install a storage provisioner (for EKS: the Amazon EBS CSI driver add-on) and mark its StorageClass default."
    )


def test_two_defaults_warn():
    classes = [{"name": "a", "annotations": DEFAULT}, {"name": "b", "annotations": DEFAULT}]
    _found, warning = cc.check_storage(classes, TARGET, desired(needs_volume=True))
    assert warning.startswith("Context admin@dev has 2 default StorageClasses (a, b)")


# ------------------------------------------------------------------------------------------------------------ Flux
def repository(url):
    return {"metadata": {"name": "flux-system", "namespace": "flux-system"}, "spec": {"url": url}}


def test_no_flux_is_not_foreign():
    details, warning = cc.check_flux(None, [], TARGET, desired(sync_url="https://github.com/o/r"))
    assert (details["foreign"], warning) == (False, "")


def test_controllers_without_git_repository_are_ours_to_install():
    controllers = ["helm-controller", "source-controller"]
    details, warning = cc.check_flux(None, controllers, TARGET, desired())
    assert details == {"controllers": controllers, "sync_url": "", "foreign": False}
    assert warning == ""


@pytest.mark.parametrize(
    "ours",
    ["ssh://git@github.com/o/r", "https://github.com/o/r.git", "git@github.com:o/r.git", "https://GitHub.com/o/r/"],
)
def test_the_same_repository_in_another_form_is_ours(ours):
    details, warning = cc.check_flux(repository(ours), [], TARGET, desired(sync_url="https://github.com/o/r"))
    assert (details["foreign"], warning) == (False, "")


def test_another_repository_is_refused():
    with pytest.raises(cc.ForeignFluxError) as caught:
        cc.check_flux(
            repository("https://github.com/other/fleet"), [], TARGET, desired(sync_url="https://github.com/o/r")
        )
    assert str(caught.value) == (
        "Flux on context admin@dev already syncs https://github.com/other/fleet (GitRepository "
        "flux-system/flux-system), not https://github.com/o/r; bootstrap would take it over: run its teardown first, "
        "or set gitops_flux_takeover=true."
    )


def test_unknown_sync_url_counts_any_existing_sync_as_foreign():
    with pytest.raises(cc.ForeignFluxError) as caught:
        cc.check_flux(repository("https://github.com/other/fleet"), [], TARGET, desired())
    assert str(caught.value) == (
        "Flux on context admin@dev already syncs https://github.com/other/fleet (GitRepository "
        "flux-system/flux-system) and the URL bootstrap will sync was not given, so it cannot be told apart from "
        "another; bootstrap would take it over: run its teardown first, or set gitops_flux_takeover=true."
    )


def test_takeover_turns_the_refusal_into_a_warning():
    details, warning = cc.check_flux(
        repository("https://github.com/other/fleet"),
        [],
        TARGET,
        desired(sync_url="https://github.com/o/r", takeover=True),
    )
    assert details["foreign"] is True
    assert warning == (
        "Flux on context admin@dev already syncs https://github.com/other/fleet (GitRepository "
        "flux-system/flux-system), not https://github.com/o/r: bootstrap takes it over because gitops_flux_takeover "
        "is true."
    )


# ------------------------------------------------------------------------------------------------------- whole run
def test_a_passing_run_returns_the_structured_results(tmp_path):
    api = FakeApi(version="v1.35.2-eks-abc123", controllers=["source-controller"])
    path = kubeconfig(tmp_path, contexts=("a", "admin@dev"))
    report = cc.run_checks(desired(path, needs_volume=True), connect=lambda target, timeout: api).as_dict()
    assert report["failures"] == []
    assert report["advice"] == []
    assert [(c["name"], c["ok"], c["skipped"]) for c in report["checks"]] == [
        ("kubeconfig", True, False),
        ("api", True, False),
        ("version", True, False),
        ("rbac", True, False),
        ("storage", True, False),
        ("flux", True, False),
    ]
    assert report["contexts"] == ["a", "admin@dev"]
    assert report["context"] == "admin@dev"
    assert report["version"]["version"] == "1.35.2"
    assert report["default_storage_class"] == "standard"
    assert report["flux"]["controllers"] == ["source-controller"]


def test_no_volume_needed_skips_storage(tmp_path):
    api = FakeApi(classes=[])
    report = cc.run_checks(desired(kubeconfig(tmp_path)), connect=lambda target, timeout: api).as_dict()
    assert report["failures"] == []
    assert "storage_classes" not in api.asked
    assert {"name": "storage", "ok": True, "skipped": True, "message": "", "warning": ""} in report["checks"]


def test_only_the_chosen_checks_run_after_the_connection(tmp_path):
    """checks=() asks only whether the cluster answers with these credentials (teardown, status)."""
    api = FakeApi(version="v1.20.0", denied=["customresourcedefinitions"], repository=repository("https://x/y"))
    report = cc.run_checks(desired(kubeconfig(tmp_path), needs_volume=True, checks=()), connect=lambda t, s: api)
    result = report.as_dict()
    assert result["failures"] == []
    assert [(c["name"], c["ok"], c["skipped"]) for c in result["checks"]] == [
        ("kubeconfig", True, False),
        ("api", True, False),
        ("version", True, True),
        ("rbac", True, True),
        ("storage", True, True),
        ("flux", True, True),
    ]
    assert api.asked == ["version"]


def test_build_desired_takes_the_checks():
    params = {"kubeconfig": "/k", "flux_kubernetes_versions": ["1.34.1"], "checks": ["flux"]}
    assert cc.build_desired(params).checks == ("flux",)
    assert cc.build_desired({**params, "checks": None}).checks == cc.OPTIONAL_CHECKS


def test_independent_failures_are_all_reported(tmp_path):
    api = FakeApi(version="v1.33.1", classes=[], repository=repository("https://x/y"))
    report = cc.run_checks(
        desired(kubeconfig(tmp_path), needs_volume=True, sync_url="https://a/b"), connect=lambda t, s: api
    ).as_dict()
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["version", "storage", "flux"]
    assert len(report["failures"]) == 3


def test_an_unreachable_server_stops_the_run(tmp_path):
    class Down(FakeApi):
        def version(self):
            raise cc.api_error(ConnectionRefusedError("Connection refused"), TARGET, "tell its version")

    api = Down()
    report = cc.run_checks(desired(kubeconfig(tmp_path)), connect=lambda t, s: api).as_dict()
    assert [c["name"] for c in report["checks"]] == ["kubeconfig", "api"]
    assert report["failures"] == [
        "The API server https://10.0.0.1:6443 of context admin@dev is unreachable (the connection was refused): "
        "check that the cluster runs and that this machine can reach that address (VPN, firewall, or for EKS the "
        "cluster's public endpoint access), and run again."
    ]


def test_an_api_failure_in_a_later_check_is_one_sentence(tmp_path):
    api = FakeApi(fail=cc.api_error(Status(403, '{"message": "forbidden"}'), TARGET, "list StorageClasses"))
    report = cc.run_checks(desired(kubeconfig(tmp_path), needs_volume=True), connect=lambda t, s: api).as_dict()
    assert report["failures"] == [
        "The API server https://10.0.0.1:6443 of context admin@dev answered 403 (forbidden) when asked to list "
        "StorageClasses: fix that on the cluster or use a context whose user may do it, and run again."
    ]


def test_a_missing_kubeconfig_stops_before_connecting(tmp_path):
    def connect(target, timeout):
        raise AssertionError("must not connect")

    report = cc.run_checks(desired(str(tmp_path / "none")), connect=connect).as_dict()
    assert [c["name"] for c in report["checks"]] == ["kubeconfig"]
    assert len(report["failures"]) == 1


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"flux_kubernetes_versions": []}, "flux_kubernetes_versions is empty"),
        ({"flux_kubernetes_versions": ["one.two"]}, "'one.two' is not a Kubernetes version"),
        ({"timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_build_desired_rejects_bad_options(params, match):
    base = {"kubeconfig": "/k", "flux_kubernetes_versions": ["1.34.1"], "timeout": 10}
    with pytest.raises(cc.InvalidOptionError, match=match):
        cc.build_desired({**base, **params})


def test_missing_permissions_skip_the_reads_that_would_only_be_denied(tmp_path):
    api = FakeApi(denied=("namespaces",))
    report = cc.run_checks(desired(kubeconfig(tmp_path), needs_volume=True), connect=lambda t, s: api).as_dict()
    assert len(report["failures"]) == 1
    assert report["failures"][0].startswith("User alice of context admin@dev may not create namespaces cluster-wide")
    assert [(c["name"], c["skipped"]) for c in report["checks"][-2:]] == [("storage", True), ("flux", True)]
    assert "storage_classes" not in api.asked
    assert "flux_git_repository" not in api.asked
