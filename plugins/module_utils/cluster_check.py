# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only checks of an existing cluster (EKS or any cluster a kubeconfig reaches) before bootstrap.

Plain Python, importable without Ansible. Every problem is a typed ``ClusterCheckError`` carrying ONE sentence that
names the problem and the fix. The cluster is reached through a small API object (``KubeClusterApi`` over the
kubernetes client, or a fake in tests) that only sends GET and LIST requests plus SelfSubjectAccessReview and
SelfSubjectReview creates: those two ask the API server a question about the caller and persist nothing.

Order: the kubeconfig and its context, then the API server with those credentials (either failing stops the run:
nothing else can be asked), then the server version against the Flux support table, the cluster-wide permissions
bootstrap needs, a default StorageClass (when something needs a volume) and a Flux that syncs another repository.
Those four are independent; each adds its sentence.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ansible_collections.filewcount.gitops.plugins.module_utils.flux_bootstrap import normalize_url

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - depends on the host
    HAS_YAML = False

# Flux v2.9 release notes (https://github.com/fluxcd/flux2/releases/tag/v2.9.0, "Kubernetes compatibility"): the
# lowest supported patch of each supported minor. Update with flux_version in roles/flux/defaults/main.yml.
HAS_KUBERNETES = importlib.util.find_spec("kubernetes") is not None

FLUX_VERSION = "v2.9.4"
FLUX_KUBERNETES_VERSIONS = ("1.34.1", "1.35.0", "1.36.0")

# What bootstrap creates cluster-wide (Flux's CRDs, its ClusterRoles and bindings, the flux-system namespace and the
# application namespaces): (verb, API group, resource).
BOOTSTRAP_PERMISSIONS = (
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("create", "rbac.authorization.k8s.io", "clusterroles"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ("create", "", "namespaces"),
)

DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
FLUX_NAMESPACE = "flux-system"
FLUX_SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")

ALL_CHECKS = ("kubeconfig", "api", "version", "rbac", "storage", "flux")

_EKS_ARN = re.compile(r"^arn:aws[\w-]*:eks:(?P<region>[\w-]+):\d+:cluster/(?P<name>[\w.-]+)$")
_EKS_HOST = re.compile(r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.eks\.amazonaws\.com(?:\.cn)?$")
_GIT_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


# --------------------------------------------------------------------------------------------------------- errors
# The checks after the kubeconfig and the API server (which always run), in the order they run.
OPTIONAL_CHECKS = ("version", "rbac", "storage", "flux")


class ClusterCheckError(Exception):
    """A check failed; ``str(exc)`` is its one sentence (problem and fix)."""

    check = "cluster"


class KubeconfigError(ClusterCheckError):
    check = "kubeconfig"


class ApiUnreachableError(ClusterCheckError):
    check = "api"


class CredentialsRejectedError(ClusterCheckError):
    check = "api"


class TlsVerifyError(ClusterCheckError):
    check = "api"


class ApiCallError(ClusterCheckError):
    """The API server answered a request with an unexpected HTTP status."""

    check = "api"


class UnsupportedVersionError(ClusterCheckError):
    check = "version"


class PermissionDeniedError(ClusterCheckError):
    check = "rbac"


class NoDefaultStorageClassError(ClusterCheckError):
    check = "storage"


class ForeignFluxError(ClusterCheckError):
    check = "flux"


class InvalidOptionError(ClusterCheckError):
    check = "options"


# ------------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Desired:
    """What the caller asked for, parsed once from the module's parameters."""

    kubeconfig: str
    context: str = ""
    timeout: float = 10.0
    flux_version: str = FLUX_VERSION
    flux_kubernetes_versions: tuple[str, ...] = FLUX_KUBERNETES_VERSIONS
    needs_volume: bool = False
    volume_users: tuple[str, ...] = ("the local-mode git server", "Prometheus")
    sync_url: str = ""
    takeover: bool = False
    takeover_variable: str = "gitops_flux_takeover"
    checks: tuple[str, ...] = OPTIONAL_CHECKS


@dataclass
class Target:
    """The kubeconfig context to check, as read from the file."""

    kubeconfig: str
    context: str
    contexts: list[str]
    server: str
    eks_name: str = ""
    eks_region: str = ""

    def update_kubeconfig(self) -> str:
        return _update_kubeconfig(self.eks_name, self.eks_region)


def _update_kubeconfig(name: str = "", region: str = "") -> str:
    return f"`aws eks update-kubeconfig --name {name or '<cluster>'} --region {region or '<region>'}`"


# ----------------------------------------------------------------------------------------------- 1. kubeconfig
def _named(items: Any, name: str, key: str) -> dict | None:
    for item in items or []:
        if isinstance(item, Mapping) and item.get("name") == name:
            value = item.get(key)
            return value if isinstance(value, Mapping) else {}
    return None


def _eks_hint(context: str, server: str, user: Mapping[str, Any]) -> tuple[str, str]:
    """(cluster name, region) of an EKS context, from its exec arguments, its ARN name or its server host."""
    name = region = ""
    args = [str(a) for a in ((user.get("exec") or {}).get("args") or [])]
    for index, flag in enumerate(args[:-1]):
        value = args[index + 1]
        if flag in ("--cluster-name", "--cluster-id", "-i"):
            name = value
        elif flag == "--region":
            region = value
    for env in (user.get("exec") or {}).get("env") or []:
        if isinstance(env, Mapping) and env.get("name") in ("AWS_REGION", "AWS_DEFAULT_REGION") and not region:
            region = str(env.get("value") or "")
    arn = _EKS_ARN.match(context)
    if arn:
        name, region = name or arn.group("name"), region or arn.group("region")
    host = re.sub(r"^\w+://", "", server).split("/")[0].split(":")[0].lower()
    match = _EKS_HOST.search(host)
    if match:
        region = region or match.group("region")
    return name, region


def read_kubeconfig(path: str, context: str = "") -> Target:
    """Check that the kubeconfig exists and defines the context (with its cluster and user); return the target."""
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise KubeconfigError(
            f"The kubeconfig {path} does not exist: give the path of a kubeconfig that reaches your cluster, or "
            f"write one (for EKS: {_update_kubeconfig()[:-1]} --kubeconfig {path}`)."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KubeconfigError(
            f"The kubeconfig {path} cannot be read as YAML ({reason.rstrip('.:')}): fix the file or write it anew "
            f"(for EKS: {_update_kubeconfig()[:-1]} --kubeconfig {path}`)."
        ) from exc
    if not isinstance(data, Mapping):
        data = {}
    contexts = [str(c.get("name")) for c in data.get("contexts") or [] if isinstance(c, Mapping) and c.get("name")]
    listed = ", ".join(contexts) if contexts else "none"
    wanted = context or str(data.get("current-context") or "")
    if not wanted:
        raise KubeconfigError(
            f"The kubeconfig {path} sets no current context and none was given (contexts in it: {listed}): name the "
            "context to use."
        )
    ctx = _named(data.get("contexts"), wanted, "context")
    if ctx is None:
        eks = _EKS_ARN.match(wanted)
        command = _update_kubeconfig(*(eks.group("name", "region") if eks else ("", "")))[:-1]
        alias = "" if eks else f" --alias {wanted}"
        raise KubeconfigError(
            f"The kubeconfig {path} has no context {wanted} (contexts in it: {listed}): use one of those, or add it "
            f"(for EKS: {command}{alias} --kubeconfig {path}`)."
        )
    cluster = _named(data.get("clusters"), str(ctx.get("cluster") or ""), "cluster")
    user = _named(data.get("users"), str(ctx.get("user") or ""), "user")
    missing = [
        f"{kind} {ctx.get(kind) or '(none)'}" for kind, value in (("cluster", cluster), ("user", user)) if value is None
    ]
    server = str((cluster or {}).get("server") or "")
    if missing or not server:
        what = " and ".join(missing) if missing else f"cluster {ctx.get('cluster')} without a server URL"
        raise KubeconfigError(
            f"Context {wanted} in the kubeconfig {path} refers to {what} that the file does not define: write the "
            f"context anew (for EKS: {_update_kubeconfig()[:-1]} --kubeconfig {path}`)."
        )
    name, region = _eks_hint(wanted, server, user or {})
    return Target(path, wanted, contexts, server, name, region)


# -------------------------------------------------------------------------------------------------- 2. reaching
_UNREACHABLE_REASONS = (
    (("certificate verify failed", "certificate_verify_failed"), "tls"),
    (("connection refused",), "the connection was refused"),
    (("timed out", "timeout"), "the connection timed out"),
    (
        ("name or service not known", "nodename nor servname", "failed to resolve", "temporary failure in name"),
        "its host name does not resolve",
    ),
    (("no route to host", "network is unreachable"), "there is no route to it"),
    (("connection reset", "remotedisconnected", "connection aborted", "eof occurred"), "the connection was closed"),
)


def _api_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None) or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    match = re.search(r'"message"\s*:\s*"([^"]+)"', str(body))
    if match:
        return match.group(1)
    return str(getattr(exc, "reason", "") or type(exc).__name__)


def api_error(exc: BaseException, target: Target, what: str) -> ClusterCheckError:
    """Turn an exception of the kubernetes client into the typed error with its sentence."""
    status = getattr(exc, "status", None)
    where = f"The API server {target.server} of context {target.context}"
    if status == 401:
        return CredentialsRejectedError(
            f"{where} rejected its credentials (401 Unauthorized: wrong or expired): refresh them, for example "
            f"with `aws sso login` and then {target.update_kubeconfig()} for EKS, and run again."
        )
    if status is not None:
        return ApiCallError(
            f"{where} answered {status} ({_api_message(exc)}) when asked to {what}: fix that on the cluster or use a "
            "context whose user may do it, and run again."
        )
    text = f"{type(exc).__name__} {exc}".lower()
    reason = next((r for needles, r in _UNREACHABLE_REASONS if any(n in text for n in needles)), "no answer came back")
    if reason == "tls":
        detail = re.search(r"certificate verify failed: ([^()'\"]+)", str(exc))
        why = f" ({detail.group(1).strip().rstrip('.')})" if detail else ""
        return TlsVerifyError(
            f"{where} presents a TLS certificate that the kubeconfig's certificate authority does not verify{why}: "
            f"write the cluster's current certificate-authority-data into the kubeconfig (for EKS: "
            f"{target.update_kubeconfig()}) and check that the server URL is the cluster's."
        )
    return ApiUnreachableError(
        f"{where} is unreachable ({reason}): check that the cluster runs and that this machine can reach that "
        "address (VPN, firewall, or for EKS the cluster's public endpoint access), and run again."
    )


# ------------------------------------------------------------------------------------------------- the cluster
class ClusterApi(Protocol):
    """The requests the checks send (reads, plus the two self-reviews that persist nothing)."""

    def version(self) -> Mapping[str, Any]: ...

    def whoami(self) -> str: ...

    def can_i(self, verb: str, group: str, resource: str) -> bool: ...

    def storage_classes(self) -> list[Mapping[str, Any]]: ...

    def flux_git_repository(self) -> Mapping[str, Any] | None: ...

    def flux_controllers(self) -> list[str]: ...


class KubeClusterApi:
    """ClusterApi over the kubernetes client, built the way kubernetes.config.new_client_from_config builds one.

    ``new_client_from_config`` has no way to set urllib3's retries before the connection pool exists, so this
    loads the same configuration into a ``Configuration`` first and allows one retry: an unreachable server then
    fails within about twice ``timeout`` seconds instead of four times.
    """

    def __init__(self, target: Target, timeout: float):
        from kubernetes import client, config  # noqa: PLC0415 - imported only when a real cluster is asked

        self._client = client
        self._target = target
        self._timeout = timeout
        configuration = client.Configuration()
        try:
            config.load_kube_config(
                config_file=target.kubeconfig, context=target.context, client_configuration=configuration
            )
        except Exception as exc:  # the loader raises ConfigException, but also OSError and ValueError
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise KubeconfigError(
                f"The kubeconfig {target.kubeconfig} cannot be loaded for context {target.context} "
                f"({reason.rstrip('.')}): fix that context's cluster and user entries (for EKS: "
                f"{target.update_kubeconfig()})."
            ) from exc
        configuration.retries = 1
        self._api = client.ApiClient(configuration=configuration)

    def _call(self, what: str, func, *args, **kwargs):
        try:
            return func(*args, _request_timeout=self._timeout, **kwargs)
        except Exception as exc:  # ApiException, urllib3 errors, OSError: classified into one sentence
            raise api_error(exc, self._target, what) from exc

    def version(self) -> Mapping[str, Any]:
        info = self._call("tell its version (GET /version)", self._client.VersionApi(self._api).get_code)
        return {"gitVersion": info.git_version, "platform": info.platform}

    def whoami(self) -> str:
        review = self._client.V1SelfSubjectReview()
        try:
            answer = self._client.AuthenticationV1Api(self._api).create_self_subject_review(
                review, _request_timeout=self._timeout
            )
        except Exception:  # pylint: disable=broad-except
            # The name only improves the permissions sentence; without it the sentence says "the user".
            return ""
        return str(getattr(getattr(answer.status, "user_info", None), "username", "") or "")

    def can_i(self, verb: str, group: str, resource: str) -> bool:
        client = self._client
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource)
            )
        )
        answer = self._call(
            f"review whether it may {verb} {resource} (SelfSubjectAccessReview)",
            client.AuthorizationV1Api(self._api).create_self_subject_access_review,
            review,
        )
        return bool(answer.status.allowed)

    def storage_classes(self) -> list[Mapping[str, Any]]:
        answer = self._call("list StorageClasses", self._client.StorageV1Api(self._api).list_storage_class)
        return [
            {
                "name": item.metadata.name,
                "annotations": dict(item.metadata.annotations or {}),
                "provisioner": item.provisioner,
            }
            for item in answer.items
        ]

    def flux_git_repository(self) -> Mapping[str, Any] | None:
        group, version, plural = FLUX_SOURCE
        api = self._client.CustomObjectsApi(self._api)
        try:
            return api.get_namespaced_custom_object(
                group, version, FLUX_NAMESPACE, plural, FLUX_NAMESPACE, _request_timeout=self._timeout
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 404:  # no such object, or no GitRepository CRD at all: no Flux sync
                return None
            raise api_error(exc, self._target, "read GitRepository flux-system/flux-system") from exc

    def flux_controllers(self) -> list[str]:
        answer = self._call(
            "list the Deployments in flux-system",
            self._client.AppsV1Api(self._api).list_namespaced_deployment,
            FLUX_NAMESPACE,
        )
        return sorted(item.metadata.name for item in answer.items)


# --------------------------------------------------------------------------------------------------- 3. version
def parse_version(text: str) -> tuple[int, int, int]:
    """``v1.35.2-eks-abc123`` -> (1, 35, 2)."""
    match = _GIT_VERSION.match(str(text or "").strip())
    if not match:
        raise InvalidOptionError(f"{text!r} is not a Kubernetes version; write it like 1.35.2")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


def _dotted(version: Sequence[int]) -> str:
    return ".".join(str(v) for v in version)


def check_version(git_version: str, target: Target, desired: Desired) -> tuple[dict, str]:
    """Return (details, warning); raise UnsupportedVersionError below the Flux support table."""
    table = sorted(parse_version(v) for v in desired.flux_kubernetes_versions)
    try:
        version = parse_version(git_version)
    except InvalidOptionError:
        return {"git_version": git_version, "supported": None}, (
            f"Context {target.context} reports the Kubernetes version {git_version or '(none)'!r}, which is not a "
            f"version number, so preflight cannot tell whether Flux {desired.flux_version} supports it: check its "
            "release notes by hand."
        )
    by_minor = {v[:2]: v for v in table}
    supported = ", ".join(f"v{_dotted(v[:2])} from v{_dotted(v)}" for v in table)
    details = {
        "git_version": git_version,
        "version": _dotted(version),
        "flux_version": desired.flux_version,
        "flux_supported": [_dotted(v) for v in table],
    }
    on = f"Kubernetes {git_version} on context {target.context}"
    if version[:2] > table[-1][:2]:
        details["supported"] = True
        return details, (
            f"{on} is newer than Flux {desired.flux_version} was tested with (up to v{_dotted(table[-1][:2])}): "
            "bootstrap goes on, but if Flux misbehaves pin a Flux release that lists this minor in its notes."
        )
    floor = by_minor.get(version[:2])
    if floor is None or version < floor:
        details["supported"] = False
        need = f"v{_dotted(floor)} or later of v{_dotted(floor[:2])}" if floor else f"one of {supported}"
        raise UnsupportedVersionError(
            f"{on} is not supported by Flux {desired.flux_version}, which needs {need} ({supported}): upgrade the "
            "cluster, or pin a Flux release that supports this version."
        )
    details["supported"] = True
    return details, ""


# ------------------------------------------------------------------------------------------------------ 4. RBAC
def _resource_name(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def check_permissions(api: ClusterApi, target: Target) -> list[dict]:
    results = [
        {"verb": verb, "group": group, "resource": resource, "allowed": api.can_i(verb, group, resource)}
        for verb, group, resource in BOOTSTRAP_PERMISSIONS
    ]
    denied = [r for r in results if not r["allowed"]]
    if denied:
        user = api.whoami()
        who = f"User {user} of context {target.context}" if user else f"The user of context {target.context}"
        listed = ", ".join(f"{r['verb']} {_resource_name(r['group'], r['resource'])}" for r in denied)
        raise PermissionDeniedError(
            f"{who} may not {listed} cluster-wide: bootstrap needs cluster-admin, so bind that ClusterRole to this "
            "user or use a context that has it (for EKS: an access entry with the AmazonEKSClusterAdminPolicy)."
        )
    return results


# -------------------------------------------------------------------------------------------------- 5. storage
def is_default_class(storage_class: Mapping[str, Any]) -> bool:
    annotations = storage_class.get("annotations") or {}
    return any(str(annotations.get(key, "")).lower() == "true" for key in DEFAULT_CLASS_ANNOTATIONS)


def check_storage(classes: Iterable[Mapping[str, Any]], target: Target, desired: Desired) -> tuple[list[dict], str]:
    found = [
        {"name": str(c.get("name")), "default": is_default_class(c), "provisioner": str(c.get("provisioner") or "")}
        for c in classes
    ]
    defaults = [c["name"] for c in found if c["default"]]
    users = " and ".join(desired.volume_users) or "bootstrap"
    if not desired.needs_volume or len(defaults) == 1:
        return found, ""
    if len(defaults) > 1:
        return found, (
            f"Context {target.context} has {len(defaults)} default StorageClasses ({', '.join(defaults)}) and "
            "Kubernetes gives new volumes the newest of them: remove the annotation "
            "storageclass.kubernetes.io/is-default-class from all but one."
        )
    if not found:
        raise NoDefaultStorageClassError(
            f"Context {target.context} has no StorageClass at all, but {users} need a volume: install a storage "
            "provisioner (for EKS: the Amazon EBS CSI driver add-on) and mark its StorageClass default."
        )
    name = found[0]["name"]
    patch = '{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":"true"}}}'
    raise NoDefaultStorageClassError(
        f"Context {target.context} has no default StorageClass (it has: {', '.join(c['name'] for c in found)}), but "
        f"{users} need a volume: mark one default, for example `kubectl --context {target.context} patch "
        f"storageclass {name} -p '{patch}'`."
    )


# ----------------------------------------------------------------------------------------------------- 6. Flux
def _same_repository(a: str, b: str) -> bool:
    """Same host and path (``ssh://git@github.com/o/r`` is ``https://github.com/o/r.git``)."""
    na, nb = normalize_url(a).split("://", 1)[-1], normalize_url(b).split("://", 1)[-1]
    return bool(na) and na == nb


def check_flux(
    repository: Mapping[str, Any] | None, controllers: list[str], target: Target, desired: Desired
) -> tuple[dict, str]:
    """Refuse (or with takeover warn) when Flux here already syncs a repository other than ours."""
    url = str(((repository or {}).get("spec") or {}).get("url") or "")
    details = {"controllers": controllers, "sync_url": url, "foreign": False}
    if repository is None:
        # No GitRepository flux-system/flux-system (controllers alone, or no Flux CRDs): bootstrap installs ours.
        return details, ""
    if desired.sync_url and _same_repository(url, desired.sync_url):
        return details, ""
    details["foreign"] = True
    where = (
        f"Flux on context {target.context} already syncs {url or '(no URL)'} (GitRepository flux-system/flux-system)"
    )
    if desired.sync_url:
        problem = f"{where}, not {desired.sync_url}"
    else:
        problem = f"{where} and the URL bootstrap will sync was not given, so it cannot be told apart from another"
    if desired.takeover:
        return details, f"{problem}: bootstrap takes it over because {desired.takeover_variable} is true."
    raise ForeignFluxError(
        f"{problem}; bootstrap would take it over: run its teardown first, or set {desired.takeover_variable}=true."
    )


# ------------------------------------------------------------------------------------------------------ runner
def build_desired(params: Mapping[str, Any]) -> Desired:
    """Parse the module's parameters once; a bad value raises InvalidOptionError."""
    table = tuple(str(v) for v in params.get("flux_kubernetes_versions") or ())
    if not table:
        raise InvalidOptionError("flux_kubernetes_versions is empty; list the lowest supported patch of each minor")
    for value in table:
        parse_version(value)
    if params.get("timeout", 10) <= 0:
        raise InvalidOptionError("timeout must be a positive number of seconds")
    return Desired(
        kubeconfig=str(params["kubeconfig"]),
        context=str(params.get("context") or ""),
        timeout=float(params.get("timeout", 10)),
        flux_version=str(params.get("flux_version") or FLUX_VERSION),
        flux_kubernetes_versions=table,
        needs_volume=bool(params.get("needs_volume")),
        volume_users=tuple(str(v) for v in params.get("volume_users") or ()),
        sync_url=str(params.get("sync_url") or ""),
        takeover=bool(params.get("takeover")),
        takeover_variable=str(params.get("takeover_variable") or "gitops_flux_takeover"),
        checks=tuple(str(c) for c in (OPTIONAL_CHECKS if params.get("checks") is None else params["checks"])),
    )


@dataclass
class Report:
    target: Target | None = None
    user: str = ""
    version: dict = field(default_factory=dict)
    permissions: list = field(default_factory=list)
    storage_classes: list = field(default_factory=list)
    flux: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    advice: list = field(default_factory=list)

    def record(self, name: str, error: ClusterCheckError | None = None, warning: str = "", skipped: bool = False):
        message = str(error) if error else ""
        self.checks.append(
            {"name": name, "ok": error is None, "skipped": skipped, "message": message, "warning": warning}
        )
        if error:
            self.failures.append(message)
        if warning:
            self.advice.append(warning)

    def as_dict(self) -> dict:
        target = self.target
        default = [c["name"] for c in self.storage_classes if c["default"]]
        return {
            "kubeconfig": target.kubeconfig if target else "",
            "context": target.context if target else "",
            "contexts": target.contexts if target else [],
            "server": target.server if target else "",
            "version": self.version,
            "permissions": self.permissions,
            "storage_classes": self.storage_classes,
            "default_storage_class": default[0] if len(default) == 1 else "",
            "flux": self.flux,
            "checks": self.checks,
            "failures": self.failures,
            "advice": self.advice,
        }


def _denied(report: Report) -> bool:
    return any(c["name"] == "rbac" and not c["ok"] for c in report.checks)


def run_checks(desired: Desired, connect=KubeClusterApi) -> Report:
    """Run every check; ``connect(target, timeout)`` returns the ClusterApi (a fake in tests)."""
    report = Report()
    try:
        report.target = read_kubeconfig(desired.kubeconfig, desired.context)
    except KubeconfigError as exc:
        report.record("kubeconfig", exc)
        return report
    report.record("kubeconfig")
    target = report.target
    try:
        api = connect(target, desired.timeout)
        git_version = str(api.version().get("gitVersion") or "")
    except ClusterCheckError as exc:
        report.record(exc.check if exc.check == "kubeconfig" else "api", exc)
        return report
    report.record("api")

    def guarded(name, func):
        try:
            warning = func()
        except (UnsupportedVersionError, PermissionDeniedError, NoDefaultStorageClassError, ForeignFluxError) as exc:
            report.record(name, exc)
        else:
            report.record(name, warning=warning or "")

    def version():
        report.version, warning = check_version(git_version, target, desired)
        return warning

    def rbac():
        report.permissions = check_permissions(api, target)

    def storage():
        report.storage_classes, warning = check_storage(api.storage_classes(), target, desired)
        return warning

    def flux():
        report.flux, warning = check_flux(api.flux_git_repository(), api.flux_controllers(), target, desired)
        return warning

    try:
        for name, func in (("version", version), ("rbac", rbac), ("storage", storage), ("flux", flux)):
            if name not in desired.checks or (name == "storage" and not desired.needs_volume):
                report.record(name, skipped=True)
            elif name in ("storage", "flux") and _denied(report):
                # Without cluster-admin these reads would only add 403 sentences to the one that says what to grant.
                report.record(name, skipped=True)
            else:
                guarded(name, func)
    except ClusterCheckError as exc:  # the API server stopped answering, or answered an unexpected status
        report.record(exc.check, exc)
    return report
