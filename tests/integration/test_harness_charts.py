"""Real Helm charts through real Flux in the harness: the tree's metrics-server HelmRepository and HelmRelease,
applied unchanged, are fetched from the chart repository the harness builds from ../shared/charts (reached at
its real URL through the harness's HTTPS proxy) and installed by the real helm-controller with the tree's values.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
import cluster as harness  # noqa: E402
import workloads  # noqa: E402

FLUX = [sys.executable, str(HARNESS / "bin" / "flux")]


@pytest.fixture(scope="module")
def flux_cluster(tmp_path_factory):
    """A harness cluster without its own metrics API (the chart brings one), with Flux installed."""
    state_dir = tmp_path_factory.mktemp("charts")
    state = harness.start(state_dir, "charts", metrics_api=False)
    kubeconfig = state.root / "kubeconfig"
    kubeconfig.write_text(json.dumps(state.kubeconfig("kind-charts")))
    ctx = {"state": state, "kubeconfig": kubeconfig}
    components = subprocess.run([*FLUX, "install", "--export"], check=True, capture_output=True, text=True)
    kubectl(ctx, "apply", "--server-side", "-f", "-", stdin=components.stdout)
    for name in workloads.CONTROLLERS:
        wait_for(f"{name} to answer /readyz", lambda n=name: workloads.readyz(state.root, n), 90)
    yield ctx
    assert harness.stop(state_dir, "charts")


def kubectl(ctx, *args, stdin=None, check=True):
    return harness.kubectl(ctx["kubeconfig"], *args, stdin=stdin, check=check)


wait_for = harness.wait_for

TRANSIENT_REASONS = {"Progressing", "SourceNotReady", "DependencyNotReady", "ArtifactFailed"}


def condition(ctx, kind, namespace, name):
    proc = kubectl(ctx, "get", kind, name, "-n", namespace, "-o", "json", check=False)
    if proc.returncode != 0:
        return None, {}
    obj = json.loads(proc.stdout)
    return obj, {c["type"]: c for c in ((obj.get("status") or {}).get("conditions") or [])}.get("Ready", {})


def test_tree_metrics_server_release_installs_from_the_real_url(flux_cluster):
    kubectl(flux_cluster, "apply", "-k", str(ROOT / "kube" / "infrastructure" / "controllers" / "metrics-server"))

    def released():
        obj, ready = condition(flux_cluster, "helmrelease", "kube-system", "metrics-server")
        # helm-controller says Ready=False for a while on its way to a release (the chart still being fetched,
        # a dependency not ready): those reasons are passing states, anything else is the settled failure.
        if ready.get("status") == "False" and ready.get("reason") not in TRANSIENT_REASONS:
            return obj, ready
        # Released: Ready and the release recorded in its history (the two may land in separate status writes).
        return ready.get("status") == "True" and obj["status"].get("history") and (obj, ready)

    obj, ready = wait_for("the metrics-server HelmRelease to settle", released, 240, interval=2)
    repo, repo_ready = condition(flux_cluster, "helmrepository", "flux-system", "metrics-server")
    assert repo_ready.get("status") == "True", repo_ready
    assert repo["spec"]["url"] == "https://kubernetes-sigs.github.io/metrics-server/"  # the tree's URL, unchanged
    assert ready["status"] == "True", ready
    assert obj["status"]["history"][0]["chartVersion"] == "3.13.1"

    deployment = json.loads(
        kubectl(flux_cluster, "get", "deployment", "metrics-server", "-n", "kube-system", "-o", "json").stdout
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--kubelet-insecure-tls" in args  # the tree's value, rendered by the real chart
    apiservice = json.loads(kubectl(flux_cluster, "get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json").stdout)
    assert apiservice["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}
    listed = subprocess.run(
        [
            str(harness.binary("helm")),
            "--kubeconfig",
            str(flux_cluster["kubeconfig"]),
            "list",
            "-n",
            "kube-system",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    releases = {r["name"]: r for r in json.loads(listed.stdout)}
    assert releases["metrics-server"]["chart"] == "metrics-server-3.13.1"
    assert releases["metrics-server"]["status"] == "deployed"


def test_the_chart_metrics_server_serves_the_metrics_api(flux_cluster):
    """The chart's APIService answers: the API server reaches Service kube-system/metrics-server:443 through the
    harness network, where the real metrics-server runs with the Deployment's rendered arguments."""

    def available():
        proc = kubectl(flux_cluster, "get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json", check=False)
        conds = (json.loads(proc.stdout).get("status") or {}).get("conditions") or [] if proc.returncode == 0 else []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conds)

    wait_for("the chart's APIService to be Available", available, 180, interval=2)
    node = f"{flux_cluster['state'].name}-control-plane"
    top = wait_for(
        "kubectl top node to read the chart's metrics-server",
        lambda: (p := kubectl(flux_cluster, "top", "node", node, check=False)).returncode == 0 and p.stdout,
        120,
        interval=3,
    )
    assert node in top
    backends = json.loads((flux_cluster["state"].root / "backends.json").read_text(encoding="utf-8"))
    assert "kube-system/metrics-server:443" in backends, backends


def test_an_unknown_repository_host_is_refused(flux_cluster):
    """Nothing leaves this machine: a HelmRepository elsewhere fails, and says so."""
    repo = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "elsewhere", "namespace": "flux-system"},
        "spec": {"url": "https://charts.example.org/", "interval": "1h"},
    }
    kubectl(flux_cluster, "apply", "-f", "-", stdin=json.dumps(repo))

    def failed():
        _obj, ready = condition(flux_cluster, "helmrepository", "flux-system", "elsewhere")
        return ready.get("status") == "False" and ready

    ready = wait_for("the unreachable HelmRepository to fail", failed, 90, interval=2)
    assert "charts.example.org" in ready["message"], ready


def wait_release_ready(ctx, namespace, name, timeout=300):
    """Wait until a HelmRelease is Ready; fail at once on a reason that is not transient."""

    def installed():
        obj, ready = condition(ctx, "helmrelease", namespace, name)
        if ready.get("status") == "False" and ready.get("reason") not in TRANSIENT_REASONS:
            pytest.fail(f"HelmRelease {namespace}/{name} failed: {ready}")
        return ready.get("status") == "True" and obj

    return wait_for(f"HelmRelease {namespace}/{name} to be Ready", installed, timeout, interval=3)


def _tree_documents(*relative: str) -> list[dict]:
    docs = []
    for path in relative:
        docs += [d for d in yaml.safe_load_all(harness.tree_manifests(ROOT / path)) if d]
    return docs


def test_gateway_api_crds_traefik_and_the_routes(flux_cluster):
    """The front door as far as the harness's real programs can take it.

    Real: the API server installs the tree's Gateway API CRDs (with their CEL rules and the safe-upgrades
    ValidatingAdmissionPolicy) and validates the tree's Gateway and HTTPRoutes against them; the real
    helm-controller installs the Traefik chart from the vendored source with the tree's values. Not run: Traefik
    itself (kwok runs no containers), so no controller programs the Gateway and its status stays the CRD's default
    (Accepted Unknown, "Waiting for controller").
    """
    assert "gateways.gateway.networking.k8s.io" in harness.apply_gateway_api_crds(flux_cluster["kubeconfig"])
    # The tree's Traefik, less what needs kube-prometheus-stack and cert-manager (not installed on this test
    # cluster): its dependsOn, and the ServiceMonitor whose CRD kube-prometheus-stack brings. Bootstrap's tests
    # install it unedited.
    docs = _tree_documents(
        "kube/infrastructure/controllers/traefik/namespace.yaml",
        "kube/infrastructure/controllers/traefik/helmrepository.yaml",
        "kube/infrastructure/controllers/traefik/helmrelease.yaml",
    )
    release = docs[-1]
    assert release["spec"].pop("dependsOn") == [
        {"name": "kube-prometheus-stack", "namespace": "monitoring"},
        {"name": "cert-manager", "namespace": "cert-manager"},
    ]
    release["spec"]["values"]["metrics"]["prometheus"]["serviceMonitor"]["enabled"] = False
    kubectl(flux_cluster, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))

    wait_release_ready(flux_cluster, "traefik", "traefik")
    gateway_class = json.loads(kubectl(flux_cluster, "get", "gatewayclass", "traefik", "-o", "json").stdout)
    assert gateway_class["spec"]["controllerName"] == "traefik.io/gateway-controller"
    service = json.loads(kubectl(flux_cluster, "get", "service", "traefik", "-n", "traefik", "-o", "json").stdout)
    assert service["spec"]["type"] == "NodePort"
    assert {p["name"]: p["nodePort"] for p in service["spec"]["ports"]} == {"web": 30090, "websecure": 30443}
    assert kubectl(flux_cluster, "get", "gateway", "-A", "-o", "name").stdout.strip() == "", "the chart's own Gateway"

    for namespace in ("filewcount", "monitoring"):
        kubectl(flux_cluster, "create", "namespace", namespace, check=False)
    routes = _tree_documents(
        "kube/infrastructure/configs/gateway.yaml",
        "kube/infrastructure/configs/httproute-grafana.yaml",
        "kube/infrastructure/configs/httproute-alertmanager.yaml",
        "kube/apps/filewcount/httproute.yaml",
    )
    proc = kubectl(flux_cluster, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in routes))
    assert "gateway.gateway.networking.k8s.io/front-door created" in proc.stdout
    gateway = json.loads(kubectl(flux_cluster, "get", "gateway", "front-door", "-n", "traefik", "-o", "json").stdout)
    accepted = {c["type"]: c for c in gateway["status"]["conditions"]}["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("Unknown", "Pending")

    # The CRDs' CEL rules are live: a listener that names TLS on plain HTTP is refused by the API server.
    broken = routes[0] | {"metadata": {"name": "broken", "namespace": "traefik"}}
    broken["spec"] = dict(broken["spec"])
    broken["spec"]["listeners"] = [broken["spec"]["listeners"][0] | {"tls": {"mode": "Terminate"}}]
    proc = kubectl(flux_cluster, "apply", "-f", "-", stdin=json.dumps(broken), check=False)
    assert proc.returncode != 0
    assert "tls must not be specified for protocols" in proc.stderr, proc.stderr


def test_cert_manager_chart_and_the_local_ca(flux_cluster):
    """cert-manager from the vendored chart, and the tree's issuers and certificates.

    Real: the helm-controller installing the chart with the tree's values (CRDs, webhook configurations, the
    startupapicheck hook Job, which kwok completes), the API server calling the admission webhook for every
    cert-manager object and validating them against the chart's CRDs. STAND-IN (tests/harness/certmanager.py, since
    cert-manager's programs cannot be built here): the webhook's answers, the CA injection and the issuing.
    """
    docs = _tree_documents(
        "kube/infrastructure/controllers/cert-manager/namespace.yaml",
        "kube/infrastructure/controllers/cert-manager/helmrepository.yaml",
        "kube/infrastructure/controllers/cert-manager/helmrelease.yaml",
    )
    release = docs[-1]
    # As for Traefik: no kube-prometheus-stack here, so no dependsOn on it and no ServiceMonitor.
    assert release["spec"].pop("dependsOn") == [{"name": "kube-prometheus-stack", "namespace": "monitoring"}]
    release["spec"]["values"]["prometheus"]["servicemonitor"]["enabled"] = False
    kubectl(flux_cluster, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))

    wait_release_ready(flux_cluster, "cert-manager", "cert-manager")
    kubectl(flux_cluster, "create", "namespace", "traefik", check=False)
    tls = _tree_documents(
        *(
            f"kube/infrastructure/configs/tls/{name}"
            for name in yaml.safe_load((ROOT / "kube/infrastructure/configs/tls/kustomization.yaml").read_text())[
                "resources"
            ]
        )
    )

    # The webhook is called for every cert-manager object: until its CA is injected the API server refuses them.
    def applied():
        proc = kubectl(flux_cluster, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in tls), check=False)
        return proc.returncode == 0

    wait_for("the tree's issuers and certificates to be admitted", applied, 60, interval=2)
    webhook_log = (flux_cluster["state"].logs / "cert-manager-webhook.log").read_text(encoding="utf-8")
    # One validation per object (the chart's mutating webhook is for CertificateRequests, which nothing made here).
    assert webhook_log.count('"POST /validate') >= len(tls), webhook_log[-2000:]

    def ready(namespace, name):
        _obj, cond = condition(flux_cluster, "certificate", namespace, name)
        return cond.get("status") == "True"

    wait_for("Certificate front-door to be Ready", lambda: ready("traefik", "front-door"), 60, interval=2)

    def secret(namespace, name):
        data = json.loads(kubectl(flux_cluster, "get", "secret", name, "-n", namespace, "-o", "json").stdout)["data"]
        return {key: base64.b64decode(value) for key, value in data.items()}

    ca = x509.load_pem_x509_certificate(secret("cert-manager", "filewcount-ca")["tls.crt"])
    leaf_secret = secret("traefik", "front-door-tls")
    leaf = x509.load_pem_x509_certificate(leaf_secret["tls.crt"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(names) == ["alertmanager.localhost", "filewcount.localhost", "grafana.localhost"]
    assert leaf_secret["ca.crt"] == secret("cert-manager", "filewcount-ca")["tls.crt"]


def test_loki_and_alloy_install_from_the_vendored_charts(flux_cluster):
    """Logs: the tree's Loki and Alloy releases, unchanged, from the chart repositories the harness serves.

    Real: source-controller fetching loki 18.11.0 (its minio and rollout-operator dependencies packaged under charts/,
    as the published chart carries them) and alloy 1.11.1 from their real URLs, helm-controller installing them with
    the tree's values (Alloy after Loki, its dependsOn), kube-controller-manager's StatefulSet controller making Loki's
    claim from the chart's volumeClaimTemplate, the scheduler placing the pod once the claim is bound. STAND-IN: the
    local-path provisioner (tests/harness/storage.py) that binds the claim of class filewcount-retain; kwok makes the
    pods Running and Ready, and runs neither Loki nor Alloy, so no log is collected here.
    """
    storage_class = _tree_documents("kube/infrastructure/controllers/storage/storageclass-retain.yaml")
    kubectl(flux_cluster, "apply", "-f", "-", stdin=json.dumps(storage_class[0]))
    kubectl(flux_cluster, "create", "namespace", "monitoring", check=False)
    docs = _tree_documents(
        "kube/infrastructure/controllers/loki/helmrepository.yaml",
        "kube/infrastructure/controllers/loki/helmrelease.yaml",
        "kube/infrastructure/controllers/alloy/helmrepository.yaml",
        "kube/infrastructure/controllers/alloy/helmrelease.yaml",
    )
    kubectl(flux_cluster, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))

    loki = wait_release_ready(flux_cluster, "monitoring", "loki", timeout=420)
    alloy = wait_release_ready(flux_cluster, "monitoring", "alloy", timeout=300)
    assert loki["status"]["history"][0]["chartVersion"] == "18.11.0"
    assert alloy["status"]["history"][0]["chartVersion"] == "1.11.1"
    for name, url in (
        ("grafana-community", "https://grafana-community.github.io/helm-charts"),
        ("grafana", "https://grafana.github.io/helm-charts"),
    ):
        repo, repo_ready = condition(flux_cluster, "helmrepository", "flux-system", name)
        assert repo_ready.get("status") == "True", repo_ready
        assert repo["spec"]["url"] == url  # the tree's URL, unchanged

    statefulset = json.loads(
        kubectl(flux_cluster, "get", "statefulset", "loki", "-n", "monitoring", "-o", "json").stdout
    )
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["status"].get("readyReplicas") == 1
    claim = json.loads(kubectl(flux_cluster, "get", "pvc", "storage-loki-0", "-n", "monitoring", "-o", "json").stdout)
    assert claim["spec"]["storageClassName"] == "filewcount-retain"
    assert claim["status"]["phase"] == "Bound"
    volume = json.loads(kubectl(flux_cluster, "get", "pv", claim["spec"]["volumeName"], "-o", "json").stdout)
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"

    deployment = json.loads(
        kubectl(flux_cluster, "get", "deployment", "alloy", "-n", "monitoring", "-o", "json").stdout
    )
    assert deployment["spec"]["replicas"] == 1
    assert {c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]} == {"alloy", "config-reloader"}
    assert not kubectl(flux_cluster, "get", "daemonset", "-n", "monitoring", "-o", "name").stdout.strip()
    # The Loki rules ConfigMaps of kube/infrastructure/configs carry the label the chart's rules sidecar watches.
    sidecar_env = {
        e["name"]: e.get("value")
        for c in statefulset["spec"]["template"]["spec"]["containers"]
        if c["name"] == "loki-sc-rules"
        for e in c["env"]
    }
    for path in sorted((ROOT / "kube" / "infrastructure" / "configs").glob("loki-rules-*.yaml")):
        (rules,) = _tree_documents(str(path.relative_to(ROOT)))
        assert rules["metadata"]["labels"][sidecar_env["LABEL"]] == sidecar_env["LABEL_VALUE"], path.name
