"""The network between a harness cluster's host processes and its Services (test harness only).

On kind, Services are reached through kube-proxy and CoreDNS, and the internet through the host. In the harness
every program is a host process and kwok runs no pods, so one proxy on 127.0.0.1 plays those parts:

- the API server's traffic to the cluster (aggregated APIs, webhooks, the kubelet) comes through its egress
  selector (`cluster`, HTTP CONNECT over the unix socket `<cluster>/egress.sock`; Kubernetes' documented way to
  send that traffic through a proxy, as konnectivity does);
- the Flux controllers' traffic comes through HTTPS_PROXY and HTTP_PROXY (`ports["proxy"]` in cluster.json), as
  Flux documents for clusters behind a proxy.

Where a connection goes (`route`):
- a chart repository host of the tree (chartrepo.REPOSITORIES), port 443: answered here with TLS as that host and
  the packaged charts of ../shared/charts;
- github.com and api.github.com, port 443: answered here with TLS as that host by the GitHub stand-in
  (github.py: git smart HTTP and the few REST calls bootstrap makes, over repositories in its own state folder);
- a Service, by ClusterIP (the harness's service range 127.96.0.0/16) or by DNS name
  (`<name>.<namespace>.svc[.cluster.local]`): to the host process that plays its pods, registered in
  `<cluster>/backends.json` (`"<namespace>/<name>:<port>": "127.0.0.1:<port>"`, written by workloads.py), else, for
  a NodePort Service, to the host port that kind maps to that node port (`node_ports` in cluster.json, written by
  the stand-in kind), where the node-port stand-ins answer; a Service with neither is refused (503), like a
  Service without ready endpoints;
- a pod's address (as the API server's service proxy dials an endpoint): as the Service that selects the pod and
  whose targetPort is that port;
- any other 127.0.0.1 address (kwok's kubelet port, an ExternalName Service pointing at 127.0.0.1): directly;
- anything else: refused (403), since this machine has no internet.

    python tests/harness/network.py --cluster-root DIR    # serves until SIGTERM
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import ipaddress
import json
import select
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import chartrepo
import cluster as harness
import github

# ClusterIPs on the loopback range (the API server's --service-cluster-ip-range): nothing of the harness ever
# sends traffic to a private-range address, and the router recognises a Service by its address.
SERVICE_CIDR = "127.96.0.0/16"
SERVICE_RANGE = ipaddress.ip_network(SERVICE_CIDR)
SOCKET_NAME = "egress.sock"
CLUSTER_DOMAINS = (".svc.cluster.local", ".svc")


class Refused(Exception):
    """The proxy will not connect there; the message says why (sent to the client with the status)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def egress_configuration(root: Path) -> dict:
    """The API server's EgressSelectorConfiguration: cluster traffic through this proxy's unix socket."""
    return {
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [
            {
                "name": "cluster",
                "connection": {
                    "proxyProtocol": "HTTPConnect",
                    "transport": {"uds": {"udsName": str(socket_path(root))}},
                },
            }
        ],
    }


def socket_path(root: Path) -> Path:
    """<cluster>/egress.sock, or a short name in the temporary folder when that path is too long for a socket."""
    path = root / SOCKET_NAME
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"filewcount-harness-{digest}.sock"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Router:
    """Decides where a proxied connection goes (see the module docstring)."""

    def __init__(self, root: Path):
        self.cluster = harness.Cluster(name=root.name, root=root)
        self.cluster.load()
        self._services: tuple[float, list] = (0.0, [])

    def _backends(self) -> dict[str, str]:
        try:
            return json.loads((self.cluster.root / "backends.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def _service_list(self) -> list:
        fetched, items = self._services
        if time.monotonic() - fetched > 2.0:
            status, body = self.cluster.request("GET", "/api/v1/services")
            if status != 200 or not isinstance(body, dict):
                raise Refused(503, f"the API server answered HTTP {status} listing Services")
            items = body.get("items") or []
            self._services = (time.monotonic(), items)
        return items

    def _by_cluster_ip(self, host: str) -> dict | None:
        return next((s for s in self._service_list() if (s.get("spec") or {}).get("clusterIP") == host), None)

    def _service(self, host: str) -> dict | None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            if address not in SERVICE_RANGE:
                return None
            found = self._by_cluster_ip(host)
            if found is None:  # a Service newer than the cached list: list again once
                self._services = (0.0, [])
                found = self._by_cluster_ip(host)
            if found is None:
                raise Refused(503, f"no Service has the ClusterIP {host}")
            return found
        for domain in CLUSTER_DOMAINS:
            if host.endswith(domain):
                parts = host[: -len(domain)].split(".")
                if len(parts) != 2:
                    raise Refused(403, f"{host} is not <service>.<namespace>{domain}")
                name, namespace = parts
                status, body = self.cluster.request("GET", f"/api/v1/namespaces/{namespace}/services/{name}")
                if status != 200:
                    raise Refused(503, f"Service {namespace}/{name} does not exist (HTTP {status})")
                return body
        return None

    def _pod_service_port(self, host: str, port: int) -> tuple[dict, int] | None:
        """For a pod's address (kwok gives pods addresses that route nowhere), the Service that selects the pod and
        whose targetPort is `port`, with that Service port: the API server's service proxy dials an endpoint."""
        status, pods = self.cluster.request("GET", f"/api/v1/pods?fieldSelector=status.podIP%3D{host}")
        for pod in (pods.get("items") or []) if status == 200 else []:
            labels = pod["metadata"].get("labels") or {}
            named = {
                p.get("name"): p.get("containerPort")
                for c in pod["spec"].get("containers") or []
                for p in c.get("ports") or []
            }
            for service in self._service_list():
                spec = service.get("spec") or {}
                selector = spec.get("selector") or {}
                if service["metadata"]["namespace"] != pod["metadata"]["namespace"] or not selector:
                    continue
                if any(labels.get(k) != v for k, v in selector.items()):
                    continue
                for entry in spec.get("ports") or []:
                    target = entry.get("targetPort", entry["port"])
                    if (named.get(target) if isinstance(target, str) else target) == port:
                        return service, entry["port"]
        return None

    def route(self, host: str, port: int) -> tuple[str, int]:
        service = self._service(host)
        if service is None:
            if host in ("127.0.0.1", "localhost"):
                return "127.0.0.1", port
            found = self._pod_service_port(host, port) if _is_ip(host) else None
            if found is None:
                raise Refused(403, f"the harness has no internet; it does not connect to {host}:{port}")
            service, port = found[0], found[1]
        meta = service["metadata"]
        key = f"{meta['namespace']}/{meta['name']}:{port}"
        backend = self._backends().get(key)
        if backend:
            address, _colon, backend_port = backend.rpartition(":")
            return address, int(backend_port)
        self.cluster.load()
        for entry in (service.get("spec") or {}).get("ports") or []:
            if entry.get("port") == port and entry.get("nodePort"):
                mapped = self.cluster.node_ports.get(str(entry["nodePort"]))
                if mapped:
                    address, _colon, host_port = mapped.rpartition(":")
                    return address, int(host_port)
        raise Refused(503, f"nothing plays the pods of Service {key} (kwok runs no containers)")


def _relay(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [one, other]
    try:
        while True:
            readable, _writable, _errors = select.select(sockets, [], [], 300)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (other if sock is one else one).sendall(data)
    except OSError:
        return


class _Handler(socketserver.StreamRequestHandler):
    # Unbuffered: whatever follows the request head (a body, a TLS hello) stays in the socket for the relay.
    rbufsize = 0

    def handle(self):
        line = self.rfile.readline(65536).decode("latin-1").strip()
        headers = []
        while True:
            raw = self.rfile.readline(65536)
            if raw in (b"\r\n", b"\n", b""):
                break
            headers.append(raw)
        if not line:  # a connection that only checked the port
            return
        method, _sep, rest = line.partition(" ")
        target = rest.split(" ")[0]
        try:
            if method == "CONNECT":
                self.connect(target)
            elif target.startswith("http://"):
                self.forward(method, target, headers)
            else:
                raise Refused(400, f"expected CONNECT or an absolute http:// URL, got {line!r}")
        except Refused as exc:
            self.server.log(f"refused {line!r}: {exc}")
            body = f"harness network: {exc}\n".encode()
            reason = {400: "Bad Request", 403: "Forbidden", 503: "Service Unavailable"}.get(exc.status, "Error")
            self.wfile.write(
                f"HTTP/1.1 {exc.status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )

    def connect(self, target: str) -> None:
        host, _colon, port_text = target.rpartition(":")
        host = host.strip("[]")
        if not port_text.isdigit():
            raise Refused(400, f"CONNECT needs host:port, got {target!r}")
        port = int(port_text)
        if port == 443 and host in self.server.chart_contexts:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            self.serve_charts(host)
            return
        if port == 443 and host in github.HOSTS:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            self.serve_github(host)
            return
        upstream = self.open(host, port)
        with upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _relay(self.connection, upstream)

    def forward(self, method: str, url: str, headers: list[bytes]) -> None:
        """A plain-HTTP proxy request: send it in origin form to where the host routes, one request per connection."""
        authority, _slash, path = url[len("http://") :].partition("/")
        host, _colon, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "80")
        upstream = self.open(host, int(port_text))
        with upstream:
            kept = [h for h in headers if not h.lower().startswith((b"connection:", b"proxy-", b"keep-alive:"))]
            upstream.sendall(
                f"{method} /{path} HTTP/1.1\r\n".encode("latin-1") + b"".join(kept) + b"Connection: close\r\n\r\n"
            )
            self.wfile.flush()
            _relay(self.connection, upstream)

    def open(self, host: str, port: int) -> socket.socket:
        address, backend_port = self.server.router.route(host, port)
        try:
            return socket.create_connection((address, backend_port), timeout=10)
        except OSError as exc:
            raise Refused(503, f"{host}:{port} routes to {address}:{backend_port}, which refused: {exc}") from exc

    def serve_github(self, host: str) -> None:
        try:
            tls = self.server.github_contexts[host].wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.server.log(f"TLS with a client for {host} failed: {exc}")
            return
        github.serve(tls, self.client_address, self.server, host, github.state_dir(self.server.router.cluster.root))

    def serve_charts(self, host: str) -> None:
        try:
            tls = self.server.chart_contexts[host].wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.server.log(f"TLS with a client for {host} failed: {exc}")
            return
        handler = functools.partial(chartrepo.Files, directory=str(self.server.repositories / host))
        handler(tls, self.client_address, self.server)


class _Serving:
    """What both listeners share: the router, the chart repositories and their TLS contexts."""

    daemon_threads = True
    allow_reuse_address = True
    router: Router
    repositories: Path
    chart_contexts: dict[str, ssl.SSLContext]
    github_contexts: dict[str, ssl.SSLContext]

    @staticmethod
    def log(message: str) -> None:
        sys.stderr.write(f"network: {message}\n")
        sys.stderr.flush()


class TCPProxy(_Serving, socketserver.ThreadingTCPServer):
    pass


class UnixProxy(_Serving, socketserver.ThreadingUnixStreamServer):
    pass


def serve(root: Path, charts: Path) -> list[socketserver.BaseServer]:
    """Start both listeners in threads and return them (shut them down to stop)."""
    state = root / "charts"
    router = Router(root)
    repositories = chartrepo.build(state / "repositories", charts)
    contexts = chartrepo.tls_contexts(state)
    github_contexts = github.tls_contexts(state / "pki")
    path = socket_path(root)
    path.unlink(missing_ok=True)
    servers = [TCPProxy(("127.0.0.1", router.cluster.ports["proxy"]), _Handler), UnixProxy(str(path), _Handler)]
    for server in servers:
        server.router, server.repositories, server.chart_contexts = router, repositories, contexts
        server.github_contexts = github_contexts
        threading.Thread(target=server.serve_forever, daemon=True).start()
    path.chmod(0o600)
    return servers


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-root", required=True, help="the cluster's folder (<state-dir>/clusters/<name>)")
    parser.add_argument("--charts", default=str(chartrepo.charts_dir()))
    args = parser.parse_args(argv)
    root = Path(args.cluster_root)
    servers = serve(root, Path(args.charts))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_args: stopping.set())
    stopping.wait()
    for server in servers:
        server.shutdown()
        server.server_close()
    socket_path(root).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
