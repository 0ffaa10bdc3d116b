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
    assert listeners["web"]["allowedRoutes"] == listeners["websecure"]["allowedRoutes"]


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
    assert set(routes) == {("filewcount", "filewcount"), ("monitoring", "grafana")}
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
        else:  # Grafana's Service comes from the kube-prometheus-stack chart (gitops_services names it).
            grafana = yaml.safe_load(GITOPS_VARS.read_text())["gitops_services"]["grafana"]
            assert (namespace, backend["name"], backend["port"]) == (
                grafana["namespace"],
                grafana["name"],
                grafana["port"],
            )
