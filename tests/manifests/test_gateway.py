"""The front door of the GitOps tree: Gateway API CRDs, Traefik and the routes (issue: traffic through a Gateway).

The generic checks (validate.py) already validate every object against its CRD schema and the Traefik values
against the chart; these tests pin the contract between the pieces: vendored CRDs equal to the pinned upstream
files, the Traefik NodePorts that kind publishes (roles/gitops/vars/main.yml), the listener on Traefik's entry
point, and routes whose parents, hostnames and backends exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate

ROOT = validate.REPO_ROOT
CRD_DIR = ROOT / "kube" / "infrastructure" / "crds" / "gateway-api"
GITOPS_VARS = ROOT / "roles" / "gitops" / "vars" / "main.yml"


def _objects(tree: validate.Tree, kind: str) -> dict[tuple[str, str], validate.Obj]:
    return {(o.namespace, o.name): o for o in tree.all_objects() if o.kind == kind}


def _allowed_namespaces(listener: dict) -> set[str]:
    (expression,) = listener["allowedRoutes"]["namespaces"]["selector"]["matchExpressions"]
    assert (expression["key"], expression["operator"]) == ("kubernetes.io/metadata.name", "In")
    return set(expression["values"])


def test_gateway_api_crds_are_the_pinned_upstream_files(schemas: Path) -> None:
    upstream = schemas.parent / "charts" / "gateway-api-crds-v1.5.1" / "standard"
    if not upstream.is_dir():
        pytest.skip(f"{upstream} is not here (the pinned Gateway API sources, ../shared/charts)")
    vendored = sorted(p.name for p in CRD_DIR.glob("gateway.networking.k8s.io_*.yaml"))
    assert vendored == sorted(p.name for p in upstream.glob("*.yaml"))
    for name in vendored:
        assert (CRD_DIR / name).read_bytes() == (upstream / name).read_bytes(), f"{name} differs from upstream v1.5.1"
    listed = yaml.safe_load((CRD_DIR / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == vendored


def test_traefik_serves_the_node_ports_kind_publishes(tree: validate.Tree) -> None:
    values = _objects(tree, "HelmRelease")[("traefik", "traefik")].spec["values"]
    services = yaml.safe_load(GITOPS_VARS.read_text())["gitops_services"]
    assert values["service"]["spec"]["type"] == "NodePort"
    assert values["ports"]["web"]["nodePort"] == services["gateway"]["node_port"]
    assert values["ports"]["websecure"]["nodePort"] == services["gateway_tls"]["node_port"]
    assert services["gateway"]["namespace"] == services["gateway_tls"]["namespace"] == "traefik"
    assert values["providers"]["kubernetesGateway"]["enabled"] is True
    assert values["gateway"]["enabled"] is False, "the tree's own Gateway replaces the chart's default one"
    assert values["gatewayClass"] == {"enabled": True, "name": "traefik"}


def test_gateway_listens_on_traefiks_web_entry_point(tree: validate.Tree, schemas: Path) -> None:
    (gateway,) = _objects(tree, "Gateway").values()
    assert (gateway.namespace, gateway.name) == ("traefik", "front-door")
    assert gateway.spec["gatewayClassName"] == "traefik"
    chart_values = yaml.safe_load((schemas.parent / "charts" / "traefik-41.3.0" / "values.yaml").read_text())
    listeners = {entry["name"]: entry for entry in gateway.spec["listeners"]}
    # Traefik attaches a listener to the entry point with the same (container) port.
    assert listeners["web"]["port"] == chart_values["ports"]["web"]["port"] == 8000
    assert listeners["websecure"]["port"] == chart_values["ports"]["websecure"]["port"] == 8443
    assert (listeners["web"]["protocol"], listeners["websecure"]["protocol"]) == ("HTTP", "HTTPS")
    assert listeners["web"]["hostname"] == listeners["websecure"]["hostname"] == "*.localhost"
    assert listeners["websecure"]["tls"] == {
        "mode": "Terminate",
        "certificateRefs": [{"kind": "Secret", "name": "front-door-tls"}],
    }
    # Plain HTTP also admits routes from traefik, where cert-manager's ACME HTTP-01 solver puts its route.
    web, websecure = (_allowed_namespaces(listeners[name]) for name in ("web", "websecure"))
    assert (web, websecure) == ({"filewcount", "monitoring", "traefik"}, {"filewcount", "monitoring"})


def test_the_gateway_certificate_comes_from_the_local_ca(tree: validate.Tree) -> None:
    certificates = _objects(tree, "Certificate")
    issuers = {name: o for (_ns, name), o in _objects(tree, "ClusterIssuer").items()}
    assert issuers["selfsigned"].spec == {"selfSigned": {}}
    ca = certificates[("cert-manager", "filewcount-ca")].spec
    assert ca["isCA"] is True
    assert ca["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "selfsigned"}
    # A CA ClusterIssuer reads its Secret from cert-manager's cluster resource namespace (cert-manager by default).
    assert issuers["filewcount-ca"].spec == {"ca": {"secretName": ca["secretName"]}}
    leaf = certificates[("traefik", "front-door")].spec
    assert leaf["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "filewcount-ca"}
    assert leaf["secretName"] == "front-door-tls"
    routes = _objects(tree, "HTTPRoute").values()
    assert sorted(leaf["dnsNames"]) == sorted(h for r in routes for h in r.spec["hostnames"])


def test_routes_attach_to_the_gateway_and_reach_services_of_the_tree(tree: validate.Tree) -> None:
    routes = _objects(tree, "HTTPRoute")
    assert set(routes) == {("filewcount", "filewcount"), ("monitoring", "grafana"), ("monitoring", "alertmanager")}
    (gateway,) = _objects(tree, "Gateway").values()
    allowed = gateway.spec["listeners"][0]["allowedRoutes"]["namespaces"]["selector"]["matchExpressions"][0]
    services = {(o.namespace, o.name): o for o in tree.all_objects() if o.kind == "Service"}
    for (namespace, name), route in routes.items():
        assert route.spec["parentRefs"] == [
            {"name": "front-door", "namespace": "traefik", "sectionName": section} for section in ("web", "websecure")
        ]
        assert namespace in allowed["values"], f"{namespace} may not attach routes to the Gateway"
        (hostname,) = route.spec["hostnames"]
        assert hostname == f"{name}.localhost"
        (rule,) = route.spec["rules"]
        (backend,) = rule["backendRefs"]
        if (namespace, backend["name"]) in services:
            ports = [p["port"] for p in services[(namespace, backend["name"])].doc["spec"]["ports"]]
            assert backend["port"] in ports
        else:  # Grafana's and Alertmanager's Services come from the kube-prometheus-stack chart.
            grafana = yaml.safe_load(GITOPS_VARS.read_text())["gitops_services"]["grafana"]
            assert (namespace, backend["name"], backend["port"]) in {
                (grafana["namespace"], grafana["name"], grafana["port"]),
                ("monitoring", "kube-prometheus-stack-alertmanager", 9093),
            }


# ---------------------------------------------------------------------------------------------------
# Cluster settings: bootstrap writes them, Flux substitutes them (domain, issuer, ACME contact)
# ---------------------------------------------------------------------------------------------------

BOOTSTRAP = ROOT / "playbooks" / "bootstrap.yml"
GITOPS_SPECS = ROOT / "roles" / "gitops" / "meta" / "argument_specs.yml"
ACME = {
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
}


def _bootstrap_settings() -> dict[str, str]:
    """The flux_cluster_settings that playbooks/bootstrap.yml passes to the flux role (name -> template)."""
    (play,) = yaml.safe_load(BOOTSTRAP.read_text())
    roles = {(t.get("ansible.builtin.include_role") or {}).get("name"): t for t in play["tasks"]}
    task = roles["filewcount.gitops.flux"]
    return task["vars"]["flux_cluster_settings"]


def _references(root: Path) -> set[str]:
    """The names of every ${name} reference in the values of the tree's manifests (comments aside)."""
    names: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            names.update(m.group(1) for m in validate.VARSUB.finditer(value) if m.group(1))

    for path in (root / "kube").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            walk(doc)
    return names


def test_the_tree_substitutes_exactly_the_settings_bootstrap_writes() -> None:
    settings = _bootstrap_settings()
    assert _references(ROOT) == set(settings) == {"gateway_domain", "gateway_issuer", "acme_email", "storage_class"}
    assert "gitops_storage_class" in settings["storage_class"]
    assert settings["gateway_domain"] == "{{ gitops_gateway_domain }}"
    assert settings["gateway_issuer"] == "{{ gitops_gateway_issuer }}"
    assert settings["acme_email"] == "{{ gitops_acme_email }}"


def test_every_substituting_kustomization_reads_the_settings_configmap(schemas: Path) -> None:
    for sync_path in ("kube/clusters/kind", "kube/clusters/eks"):
        tree = validate.load_tree(ROOT, schemas, sync_path)
        for unit in tree.units:
            if unit.flux is None:
                continue
            post_build = unit.flux.spec.get("postBuild")
            if post_build is None:
                # Nothing substitutes into this unit, so it must hold no reference either.
                assert not _references_in(unit), f"{unit.label} has ${{...}} references but no postBuild"
                continue
            assert post_build == {
                "substituteStrategy": "Always",
                "substituteFrom": [{"kind": "ConfigMap", "name": "cluster-settings", "optional": True}],
            }, unit.label


def _references_in(unit: validate.Unit) -> bool:
    return any("${" in yaml.safe_dump(o.doc) for o in unit.objects)


def test_the_issuer_choices_are_the_tree_s_cluster_issuers(schemas: Path) -> None:
    """gitops_gateway_issuer offers the CA issuer (both trees) and the ACME ones, which only the EKS tree has."""
    options = yaml.safe_load(GITOPS_SPECS.read_text())["argument_specs"]["main"]["options"]
    choices = set(options["gitops_gateway_issuer"]["choices"])
    issuers = {}
    for sync_path in ("kube/clusters/kind", "kube/clusters/eks"):
        tree = validate.load_tree(ROOT, schemas, sync_path)
        issuers[sync_path] = {name for (_ns, name) in _objects(tree, "ClusterIssuer")} - {"selfsigned"}
    assert issuers["kube/clusters/kind"] == {options["gitops_gateway_issuer"]["default"]} == {"filewcount-ca"}
    assert issuers["kube/clusters/eks"] == choices == {"filewcount-ca", *ACME}


@pytest.mark.parametrize("issuer", sorted(ACME))
def test_a_domain_and_an_acme_issuer_are_one_setting_away_on_eks(schemas: Path, issuer: str) -> None:
    """The EKS tree as Flux applies it with the settings bootstrap writes for a public domain and an ACME issuer."""
    settings = {"gateway_domain": "apps.example.com", "gateway_issuer": issuer, "acme_email": "ops@example.com"}
    tree = validate.load_tree(ROOT, schemas, "kube/clusters/eks", settings)
    for check in validate.CHECK_NAMES:
        assert validate.CHECKS[check](tree) == [], check
    (gateway,) = _objects(tree, "Gateway").values()
    assert {listener["hostname"] for listener in gateway.spec["listeners"]} == {"*.apps.example.com"}
    routes = _objects(tree, "HTTPRoute")
    assert {h for r in routes.values() for h in r.spec["hostnames"]} == {
        "filewcount.apps.example.com",
        "grafana.apps.example.com",
        "alertmanager.apps.example.com",
    }
    certificate = _objects(tree, "Certificate")[("traefik", "front-door")]
    assert sorted(certificate.spec["dnsNames"]) == sorted(h for r in routes.values() for h in r.spec["hostnames"])
    assert certificate.spec["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer}
    acme = {name: o for (_ns, name), o in _objects(tree, "ClusterIssuer").items()}[issuer].spec["acme"]
    assert (acme["server"], acme["email"]) == (ACME[issuer], "ops@example.com")
    # HTTP-01 through the Gateway: cert-manager puts the solver's HTTPRoute in the Certificate's namespace and
    # attaches it to the plain HTTP listener, which must admit routes from there.
    (solver,) = acme["solvers"]
    (parent,) = solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
    assert (parent["kind"], parent["namespace"], parent["name"]) == ("Gateway", gateway.namespace, gateway.name)
    (listener,) = [entry for entry in gateway.spec["listeners"] if entry["name"] == parent["sectionName"]]
    assert listener["protocol"] == "HTTP" and listener["port"] == 8000
    assert certificate.namespace in _allowed_namespaces(listener)


def test_without_settings_the_trees_keep_their_defaults(schemas: Path) -> None:
    """A tree synced without the ConfigMap (optional: true) gets localhost and the local CA on kind and EKS."""
    for sync_path in ("kube/clusters/kind", "kube/clusters/eks"):
        tree = validate.load_tree(ROOT, schemas, sync_path)
        certificate = _objects(tree, "Certificate")[("traefik", "front-door")]
        assert certificate.spec["issuerRef"]["name"] == "filewcount-ca"
        assert sorted(certificate.spec["dnsNames"]) == [
            "alertmanager.localhost",
            "filewcount.localhost",
            "grafana.localhost",
        ]
        for (_ns, name), issuer in _objects(tree, "ClusterIssuer").items():
            if name in ACME:
                # Flux writes "" for an unset contact; the API server prunes the null the unquoted YAML becomes.
                assert issuer.spec["acme"].get("email") in (None, "")


def test_grafana_dashboards_are_not_substituted() -> None:
    """Dashboards carry Grafana's own ${...} variables: their ConfigMaps turn Flux's substitution off."""
    kustomization = yaml.safe_load((ROOT / "kube" / "infrastructure" / "configs" / "kustomization.yaml").read_text())
    assert kustomization["generatorOptions"]["annotations"] == {validate.SUBSTITUTE_ANNOTATION: "disabled"}


def test_substitution_follows_flux() -> None:
    """validate.substitute does what kustomize-controller's post-build substitution does, case by case."""
    text = "a: ${x}\nb: ${y:=dflt}\nc: ${y:-d2}\nd: $${x}\ne: pre-${x}-post\nf: ${z}\ng: '${y:=}'\n"
    doc, missing = validate.substitute(text, {"x": "one", "y": ""})
    assert doc == {"a": "one", "b": "dflt", "c": "d2", "d": "${x}", "e": "pre-one-post", "f": None, "g": ""}
    assert missing == ["z"]
    disabled = "metadata:\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\nv: ${x}\n"
    assert validate.substitute(disabled, {"x": "one"})[0]["v"] == "${x}"
