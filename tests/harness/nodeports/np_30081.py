# TEST DOUBLE: the host side of NodePort 30081 (Grafana of kube-prometheus-stack) for the stand-in kind cluster.
# Never used by the collection at runtime.
#
# A fake of the few Grafana HTTP API endpoints the collection calls, answered from the Kubernetes API
# (kubeconfig/context given to make_handler):
#   GET /api/health                      200 {"database": "ok", ...}, no auth (like Grafana)
#   GET /api/search                      basic auth against Secret monitoring/grafana-admin (keys admin-user,
#                                        admin-password); lists the dashboards found in ConfigMaps labelled
#                                        grafana_dashboard (what the chart's sidecar loads); 401 on bad credentials
#   GET /api/dashboards/uid/<uid>        basic auth; {"dashboard": ..., "meta": {...}} or 404
#   GET /api/datasources/proxy/uid/prometheus/api/v1/targets
#                                        basic auth; a Prometheus targets response synthesised from the cluster:
#                                        kubelet (/metrics, /metrics/cadvisor, /metrics/probes) per Node, one
#                                        kube-state-metrics target, and one target per pod selected by each
#                                        PodMonitor (job "<namespace>/<name>"); a pod that is not Ready is "down".
# It answers only while a Service with nodePort 30081 exists or HelmRelease monitoring/kube-prometheus-stack is
# Ready (the chart would create Grafana); otherwise 503. Knobs for error paths: a file
# <state_dir>/prometheus-down-jobs with one regular expression per line marks matching jobs "down"; a file
# <state_dir>/grafana-db-password makes Grafana accept that password instead of the Secret's (like a Grafana whose
# database kept the password it was first started with).
"""NodePort 30081 stand-in: a fake Grafana API (test double)."""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

NODE_PORT = 30081
NAMESPACE = "monitoring"
# The stand-ins are loaded by file path (server.py, tests), so their folder may not be on sys.path yet.
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeapi import KubeAPI  # noqa: E402

SECRET = "grafana-admin"
RELEASE = "kube-prometheus-stack"


class Unavailable(Exception):
    pass


class Cluster:
    """Reads the cluster's API through kind's kubeconfig (kubeapi.py)."""

    def __init__(self, api: KubeAPI | None):
        if api is None:
            raise Unavailable("no kubeconfig for the cluster")
        self.api = api

    def get(self, path: str, missing_ok: bool = True) -> dict | None:
        try:
            return self.api.get(path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return None
            raise Unavailable(f"the Kubernetes API answered {exc.code} for {path}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise Unavailable(f"the Kubernetes API did not answer ({exc})") from exc

    def items(self, path: str) -> list[dict]:
        return (self.get(path) or {}).get("items") or []


def _ready(obj: dict, ctype: str = "Ready") -> bool:
    return any(
        c.get("type") == ctype and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or []
    )


def grafana_up(cluster: Cluster) -> tuple[bool, str]:
    for svc in cluster.items("/api/v1/services"):
        if any(p.get("nodePort") == NODE_PORT for p in (svc.get("spec") or {}).get("ports") or []):
            return True, ""
    release = cluster.get(f"/apis/helm.toolkit.fluxcd.io/v2/namespaces/{NAMESPACE}/helmreleases/{RELEASE}")
    if release and _ready(release):
        return True, ""
    return False, f"no service has nodePort {NODE_PORT} and HelmRelease {NAMESPACE}/{RELEASE} is not Ready"


def credentials(cluster: Cluster) -> tuple[str, str] | None:
    secret = cluster.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}")
    if not secret:
        return None
    data = secret.get("data") or {}
    try:
        return (
            base64.b64decode(data.get("admin-user", "")).decode(),
            base64.b64decode(data.get("admin-password", "")).decode(),
        )
    except (binascii.Error, UnicodeDecodeError):
        return None


def dashboards(cluster: Cluster) -> list[dict]:
    found = []
    for cm in cluster.items("/api/v1/configmaps?labelSelector=grafana_dashboard"):
        for key, text in sorted((cm.get("data") or {}).items()):
            if not key.endswith(".json"):
                continue
            try:
                dash = json.loads(text)
            except ValueError:
                continue  # the real sidecar logs and skips a broken file
            if isinstance(dash, dict) and dash.get("uid"):
                found.append(dash)
    return sorted(found, key=lambda d: d.get("title", ""))


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def search_entry(index: int, dash: dict) -> dict:
    slug = _slug(dash.get("title", ""))
    return {
        "id": index,
        "uid": dash["uid"],
        "title": dash.get("title", ""),
        "uri": f"db/{slug}",
        "url": f"/d/{dash['uid']}/{slug}",
        "slug": "",
        "type": "dash-db",
        "tags": dash.get("tags") or [],
        "isStarred": False,
        "sortMeta": 0,
    }


def _selects(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def _target(labels: dict, url: str, up: bool, pool: str, error: str = "") -> dict:
    return {
        "discoveredLabels": {},
        "labels": labels,
        "scrapePool": pool,
        "scrapeUrl": url,
        "globalUrl": url,
        "lastError": "" if up else (error or "connection refused"),
        "lastScrape": "1970-01-01T00:00:00Z",
        "lastScrapeDuration": 0.01,
        "health": "up" if up else "down",
        "scrapeInterval": "30s",
        "scrapeTimeout": "10s",
    }


def targets(cluster: Cluster, down_jobs: list[str]) -> list[dict]:
    out = []
    for node in cluster.items("/api/v1/nodes"):
        name = node["metadata"]["name"]
        for index, path in enumerate(("/metrics", "/metrics/cadvisor", "/metrics/probes")):
            out.append(
                _target(
                    {
                        "job": "kubelet",
                        "metrics_path": path,
                        "node": name,
                        "namespace": "kube-system",
                        "service": f"{RELEASE}-kubelet",
                        "endpoint": "https-metrics",
                        "instance": "172.18.0.2:10250",
                    },
                    f"https://172.18.0.2:10250{path}",
                    _ready(node),
                    f"serviceMonitor/{NAMESPACE}/{RELEASE}-kubelet/{index}",
                    "node not Ready",
                )
            )
    out.append(
        _target(
            {
                "job": "kube-state-metrics",
                "namespace": NAMESPACE,
                "service": f"{RELEASE}-kube-state-metrics",
                "endpoint": "http",
                "instance": "10.244.0.10:8080",
            },
            "http://10.244.0.10:8080/metrics",
            True,
            f"serviceMonitor/{NAMESPACE}/{RELEASE}-kube-state-metrics/0",
        )
    )
    for monitor in cluster.items("/apis/monitoring.coreos.com/v1/podmonitors"):
        meta, spec = monitor["metadata"], monitor.get("spec") or {}
        namespaces = (spec.get("namespaceSelector") or {}).get("matchNames") or [meta["namespace"]]
        for namespace in namespaces:
            for pod in cluster.items(f"/api/v1/namespaces/{namespace}/pods"):
                if not _selects(spec.get("selector") or {}, pod["metadata"].get("labels") or {}):
                    continue
                for index, endpoint in enumerate(spec.get("podMetricsEndpoints") or [{}]):
                    ip = (pod.get("status") or {}).get("podIP") or "10.244.0.20"
                    out.append(
                        _target(
                            {
                                "job": f"{meta['namespace']}/{meta['name']}",
                                "namespace": namespace,
                                "pod": pod["metadata"]["name"],
                                "endpoint": endpoint.get("port", ""),
                                "container": ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", ""),
                                "instance": f"{ip}:8080",
                            },
                            f"http://{ip}:8080/metrics",
                            _ready(pod),
                            f"podMonitor/{meta['namespace']}/{meta['name']}/{index}",
                            "pod not Ready",
                        )
                    )
    for target in out:
        if any(re.fullmatch(pattern, target["labels"]["job"]) for pattern in down_jobs):
            target["health"], target["lastError"] = "down", "marked down by prometheus-down-jobs (test knob)"
    return out


def make_handler(kubeconfig: str, context: str, state_dir: str) -> type[http.server.BaseHTTPRequestHandler]:
    knob = os.path.join(state_dir, "prometheus-down-jobs")
    db_password = os.path.join(state_dir, "grafana-db-password")

    class FakeGrafana(http.server.BaseHTTPRequestHandler):
        server_version = "np-30081-grafana-test-double"

        def _json(self, status: int, payload) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authorised(self, cluster: Cluster) -> bool:
            header = self.headers.get("Authorization", "")
            wanted = credentials(cluster)
            if wanted and os.path.exists(db_password):
                with open(db_password, encoding="utf-8") as handle:
                    wanted = (wanted[0], handle.read().strip())
            if wanted and header.startswith("Basic "):
                try:
                    user, _sep, password = base64.b64decode(header[6:]).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    user, password = "", ""
                if (user, password) == wanted and password:
                    return True
            self._json(
                401,
                {
                    "message": "Invalid username or password",
                    "messageId": "password-auth.failed",
                    "statusCode": 401,
                    "traceID": "",
                },
            )
            return False

        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            path, query = parsed.path.rstrip("/") or "/", urllib.parse.parse_qs(parsed.query)
            try:
                cluster = Cluster(KubeAPI.from_kubeconfig(kubeconfig, context))
                up, reason = grafana_up(cluster)
                if not up:
                    self._json(503, {"message": f"no service behind NodePort {NODE_PORT}: {reason}"})
                    return
                if path == "/api/health":
                    self._json(200, {"commit": "test-double", "database": "ok", "version": "12.0.0-test-double"})
                elif not self._authorised(cluster):
                    return
                elif path == "/api/search":
                    self._search(cluster, query)
                elif path.startswith("/api/dashboards/uid/"):
                    uid = path.rsplit("/", 1)[1]
                    dash = next((d for d in dashboards(cluster) if d["uid"] == uid), None)
                    if dash is None:
                        self._json(404, {"message": "Dashboard not found"})
                    else:
                        meta = {"slug": _slug(dash.get("title", "")), "url": search_entry(0, dash)["url"]}
                        self._json(200, {"dashboard": dash, "meta": meta})
                elif path == "/api/datasources/proxy/uid/prometheus/api/v1/targets":
                    down = []
                    if os.path.exists(knob):
                        with open(knob, encoding="utf-8") as handle:
                            down = [line.strip() for line in handle if line.strip()]
                    state = (query.get("state") or ["any"])[0]
                    active = targets(cluster, down) if state in ("active", "any") else []
                    self._json(200, {"status": "success", "data": {"activeTargets": active, "droppedTargets": []}})
                elif path.startswith("/api/datasources/proxy/uid/"):
                    self._json(404, {"message": "Data source not found"})
                else:
                    self._json(404, {"message": "Not found"})
            except Unavailable as exc:
                self._json(502, {"message": f"Bad Gateway: {exc}"})

        def _search(self, cluster: Cluster, query: dict) -> None:
            kind = (query.get("type") or ["dash-db"])[0]
            text = (query.get("query") or [""])[0].lower()
            uids = query.get("dashboardUIDs") or []
            result = []
            if kind == "dash-db":
                for index, dash in enumerate(dashboards(cluster), start=1):
                    if text and text not in dash.get("title", "").lower():
                        continue
                    if uids and dash["uid"] not in uids:
                        continue
                    result.append(search_entry(index, dash))
            self._json(200, result)

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            sys.stderr.write(f"np-{NODE_PORT}: {fmt % args}\n")

    return FakeGrafana
