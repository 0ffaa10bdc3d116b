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
"""

from __future__ import annotations

import argparse
import http.server
import json
import sys
import time
import urllib.parse
from pathlib import Path

NAMESPACE = "monitoring"
OPERATOR = "kube-prometheus-stack-operator"
SERVICE = "kube-prometheus-stack-prometheus"
SERVICE_PORT = 9090


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
