"""Prometheus's query API for a harness cluster: a STAND-IN (test harness only), not Prometheus.

kube-prometheus-stack's Prometheus is a StatefulSet that its prometheus-operator makes; the harness runs neither
(the images cannot be pulled, and Prometheus's module needs its web UI built with npm). Its clients in the tree
need one thing of it: KEDA's Prometheus trigger (kube/apps/filewcount/scaledobject.yaml) sends an instant query
to http://kube-prometheus-stack-prometheus.monitoring.svc:9090/api/v1/query. This server answers that API:

- `GET|POST /api/v1/query?query=<q>`: a vector with one sample whose value a test set for exactly that query text
  (`set_value`), or an empty vector when none was set, as Prometheus answers for a series that does not exist;
  every query is appended to <cluster>/prometheus/queries.log, so a test can see who asked what;
- `GET /-/ready`, `GET /-/healthy`: 200.

No PromQL is evaluated and nothing is scraped: the value is what the test says the query returns. workloads.py
runs it while the chart's Deployment monitoring/kube-prometheus-stack-operator exists, as the operator would run
Prometheus, and sends Service monitoring/kube-prometheus-stack-prometheus port 9090 to it.

Two more parts of what the operator and Prometheus do, because `make backup` needs them (a STAND-IN still):

- `reconcile_statefulset(cluster)`, one pass per workloads loop while the operator Deployment exists: for the
  Prometheus object `monitoring/kube-prometheus-stack-prometheus` it creates the StatefulSet the operator would,
  `prometheus-kube-prometheus-stack-prometheus` (one replica, the operator's pod labels, which the chart's Service
  selects, container port `http-web` 9090, and the object's `spec.storage.volumeClaimTemplate` as the claim
  template `prometheus-kube-prometheus-stack-prometheus-db`), owned by the Prometheus object so that the garbage
  collector removes it with it. The real StatefulSet controller then makes the pod and its claim, the local-path
  stand-in its volume and kwok the pod Ready, so the Service has endpoints and the API server's service proxy
  reaches this server (network.py sends a pod's address to the process that plays it). Nothing else of the
  operator's work is done: no config Secret, no `prometheus-operated` Service, no status;
- `POST /api/v1/admin/tsdb/snapshot`: with `spec.enableAdminAPI` false on the Prometheus object, Prometheus's
  answer for disabled admin APIs (503, "admin APIs disabled"); else a snapshot named as Prometheus names them
  (`<UTC time>-<16 hex digits>`) in `<TSDB>/snapshots/`, the TSDB being the folder `prometheus-db` (the
  operator's sub-path) of the volume bound to the pod's claim: every block folder of the TSDB hard-linked into it,
  as Prometheus does. No head block is flushed (this server stores no samples).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import secrets
import shutil
import sys
import time
import urllib.parse
from pathlib import Path

import cluster as harness

NAMESPACE = "monitoring"
OPERATOR = "kube-prometheus-stack-operator"
SERVICE = "kube-prometheus-stack-prometheus"
SERVICE_PORT = 9090


PROMETHEUS = "kube-prometheus-stack-prometheus"  # the chart's Prometheus object (and Service)
PROMETHEUS_API = "/apis/monitoring.coreos.com/v1"
STATEFULSET = f"prometheus-{PROMETHEUS}"
CLAIM_TEMPLATE = f"prometheus-{PROMETHEUS}-db"
CLAIM = f"{CLAIM_TEMPLATE}-{STATEFULSET}-0"
SUB_PATH = "prometheus-db"
BLOCK = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # a ULID, the name of a TSDB block folder
POD_LABELS = {
    "app.kubernetes.io/name": "prometheus",
    "app.kubernetes.io/instance": PROMETHEUS,
    "app.kubernetes.io/managed-by": "prometheus-operator",
    "operator.prometheus.io/name": PROMETHEUS,
    "operator.prometheus.io/shard": "0",
    "prometheus": PROMETHEUS,
}

SELECTOR = {k: POD_LABELS[k] for k in ("app.kubernetes.io/name", "operator.prometheus.io/name")}


def _cluster(root: Path) -> harness.Cluster:
    state = harness.Cluster(name=Path(root).name, root=Path(root))
    state.load()
    return state


def _prometheus(state: harness.Cluster) -> dict | None:
    status, body = state.request("GET", f"{PROMETHEUS_API}/namespaces/{NAMESPACE}/prometheuses/{PROMETHEUS}")
    return body if status == 200 else None


def statefulset_for(prometheus: dict) -> dict:
    """The StatefulSet the operator makes for the Prometheus object (the parts the harness needs)."""
    spec, meta = prometheus.get("spec") or {}, prometheus["metadata"]
    template = dict((spec.get("storage") or {}).get("volumeClaimTemplate") or {})
    claims = []
    if template:
        claims = [{"metadata": {"name": CLAIM_TEMPLATE}, "spec": template.get("spec") or {}}]
    volume_mount = {"name": CLAIM_TEMPLATE, "mountPath": "/prometheus", "subPath": SUB_PATH}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": STATEFULSET,
            "namespace": NAMESPACE,
            "labels": {"operator.prometheus.io/name": PROMETHEUS, "harness.filewcount.io/stand-in": "prometheus"},
            "ownerReferences": [
                {
                    "apiVersion": "monitoring.coreos.com/v1",
                    "kind": "Prometheus",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 1,
            "serviceName": "prometheus-operated",
            "selector": {"matchLabels": SELECTOR},
            "template": {
                "metadata": {"labels": POD_LABELS},
                "spec": {
                    "containers": [
                        {
                            "name": "prometheus",
                            "image": "quay.io/prometheus/prometheus",
                            "ports": [{"name": spec.get("portName") or "http-web", "containerPort": 9090}],
                            "resources": spec.get("resources") or {},
                            "volumeMounts": [volume_mount] if claims else [],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": claims,
        },
    }


def reconcile_statefulset(state: harness.Cluster) -> str | None:
    """Create the operator's StatefulSet for the Prometheus object when it is missing; say what was done."""
    prometheus = _prometheus(state)
    if prometheus is None or (prometheus["metadata"].get("deletionTimestamp")):
        return None
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"
    if state.request("GET", f"{path}/{STATEFULSET}")[0] == 200:
        return None
    status, answer = state.request("POST", path, statefulset_for(prometheus))
    if status in (200, 201):
        return f"created StatefulSet {NAMESPACE}/{STATEFULSET}"
    return None if status == 409 else f"creating StatefulSet {NAMESPACE}/{STATEFULSET} answered HTTP {status}: {answer}"


def tsdb_folder(state: harness.Cluster) -> Path | None:
    """Where the pod's TSDB is on this host: the sub-path of the volume bound to its claim."""
    status, claim = state.request("GET", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/{CLAIM}")
    volume = (claim.get("spec") or {}).get("volumeName") if status == 200 else None
    if not volume:
        return None
    status, pv = state.request("GET", f"/api/v1/persistentvolumes/{volume}")
    path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path") if status == 200 else None
    return Path(path) / SUB_PATH if path else None


def snapshot(root: Path) -> tuple[int, dict]:
    """What Prometheus answers to POST /api/v1/admin/tsdb/snapshot (see the module docstring)."""
    state = _cluster(root)
    prometheus = _prometheus(state)
    if not prometheus or not (prometheus.get("spec") or {}).get("enableAdminAPI"):
        return 503, {"status": "error", "errorType": "unavailable", "error": "admin APIs disabled"}
    tsdb = tsdb_folder(state)
    if tsdb is None:
        return 500, {"status": "error", "errorType": "internal", "error": "create snapshot: no TSDB volume (stand-in)"}
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(8)
    target = tsdb / "snapshots" / name
    target.mkdir(parents=True)
    for block in sorted(p for p in tsdb.iterdir() if p.is_dir() and BLOCK.match(p.name)):
        shutil.copytree(block, target / block.name, copy_function=os.link)
    return 200, {"status": "success", "data": {"name": name}}


def _folder(root: Path) -> Path:
    folder = Path(root) / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def values(root: Path) -> dict[str, float]:
    try:
        return json.loads((_folder(root) / "values.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def set_value(root: Path, query: str, value: float | None) -> None:
    """Make `query` return `value` from now on (None: an empty result again). `root` is the cluster's folder."""
    data = values(root)
    if value is None:
        data.pop(query, None)
    else:
        data[query] = float(value)
    tmp = _folder(root) / "values.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(_folder(root) / "values.json")


def queries(root: Path) -> list[str]:
    """The query texts received so far, oldest first."""
    try:
        lines = (_folder(root) / "queries.log").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line)["query"] for line in lines if line.strip()]


def answer(root: Path, query: str, now: float) -> dict:
    value = values(root).get(query)
    result = [] if value is None else [{"metric": {}, "value": [now, repr(float(value))]}]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


class Handler(http.server.BaseHTTPRequestHandler):
    root: Path

    def _send(self, status: int, body: dict | str) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _query(self, params: dict[str, list[str]]) -> None:
        query = (params.get("query") or [""])[0]
        if not query:
            self._send(400, {"status": "error", "errorType": "bad_data", "error": "query is required"})
            return
        with (_folder(self.root) / "queries.log").open("a", encoding="utf-8") as log:
            log.write(json.dumps({"time": time.time(), "query": query}) + "\n")
        self._send(200, answer(self.root, query, time.time()))

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/-/ready", "/-/healthy"):
            self._send(200, "Prometheus stand-in is Ready.\n")
        elif url.path == "/api/v1/query":
            self._query(urllib.parse.parse_qs(url.query))
        else:
            self._send(404, {"status": "error", "errorType": "not_found", "error": f"not served here: {url.path}"})

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/v1/admin/tsdb/snapshot":
            self._send(*snapshot(self.root))
            return
        if url.path != "/api/v1/query":
            self._send(404, {"status": "error", "errorType": "not_found", "error": f"not served here: {url.path}"})
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._query({**urllib.parse.parse_qs(url.query), **urllib.parse.parse_qs(body)})

    def log_message(self, fmt: str, *args) -> None:
        sys.stderr.write("prometheus stand-in: " + (fmt % args) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Serve Prometheus's query API for a harness cluster (stand-in).")
    parser.add_argument("--cluster-root", required=True, help="the cluster's folder (<state-dir>/clusters/<name>)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    Handler.root = Path(args.cluster_root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
