"""The chart repositories of the GitOps tree, served on 127.0.0.1 at their real URLs (test harness only).

`build` packages the unmodified chart sources of ../shared/charts with the harness's Helm (dependencies copied
under each chart's charts/ folder, as a packaged chart carries them) into one folder per repository host, each
with an index.yaml whose URLs are the real ones. `serve` is an HTTPS proxy on 127.0.0.1: a client that reaches
the internet through HTTPS_PROXY (source-controller does, as Flux documents for proxies) and trusts the
harness's CA (SSL_CERT_FILE) gets, for a known repository host, a TLS connection with a certificate for that host
and the packaged files; any other host is refused, since this machine has no internet. So the tree's
HelmRepository URLs, chart names and versions are what is tested, without editing kube/.

    python tests/harness/chartrepo.py serve --state-dir DIR [--charts DIR] [--port N]   # prints PORT=<port>
    (--charts defaults to $FILEWCOUNT_CHARTS_DIR, else ../shared/charts beside the repository)
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import socketserver
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import cluster as harness

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHARTS = ROOT.parent / "shared" / "charts"

# Repository host and path -> charts it serves (folder names in ../shared/charts), with each chart's dependencies.
REPOSITORIES = {
    ("kubernetes-sigs.github.io", "/metrics-server"): ["metrics-server-3.13.1"],
    ("prometheus-community.github.io", "/helm-charts"): [
        "kube-prometheus-stack-88.5.3",
        "kube-state-metrics-8.4.0",
        "prometheus-node-exporter-4.56.1",
        "prometheus-windows-exporter-0.12.8",
    ],
    ("grafana-community.github.io", "/helm-charts"): ["grafana-12.11.1"],
}
DEPENDENCIES = {
    "kube-prometheus-stack-88.5.3": [
        "kube-state-metrics-8.4.0",
        "prometheus-node-exporter-4.56.1",
        "grafana-12.11.1",
        "prometheus-windows-exporter-0.12.8",
    ],
}


def _chart_name(folder: str) -> str:
    return folder.rsplit("-", 1)[0]


def build(out: Path, charts: Path = DEFAULT_CHARTS) -> Path:
    """Package every chart into out/<host><path>/ with an index.yaml; reuse a complete earlier build."""
    done = out / ".built"
    if done.exists():
        return out
    helm = harness.binary("helm")
    with tempfile.TemporaryDirectory() as tmp:
        for (host, path), folders in REPOSITORIES.items():
            repo = out / (host + path)
            repo.mkdir(parents=True, exist_ok=True)
            for folder in folders:
                source = Path(tmp) / _chart_name(folder)
                shutil.rmtree(source, ignore_errors=True)
                shutil.copytree(charts / folder, source)
                for dependency in DEPENDENCIES.get(folder, []):
                    shutil.copytree(charts / dependency, source / "charts" / _chart_name(dependency))
                subprocess.run([helm, "package", str(source), "-d", str(repo)], check=True, capture_output=True)
            subprocess.run(
                [helm, "repo", "index", str(repo), "--url", f"https://{host}{path}"], check=True, capture_output=True
            )
    done.touch()
    return out


def _certificates(state: Path) -> dict[str, tuple[Path, Path]]:
    """A CA (state/ca.crt, what clients trust) and a certificate for each repository host."""
    pki = state / "pki"
    if not (pki / "ca.crt").exists():
        pki.mkdir(parents=True, exist_ok=True)
        ca = harness._ca(pki, "ca", "filewcount harness chart repositories")
        for host, _path in REPOSITORIES:
            harness._leaf(pki, host, ca, harness._name(host), server=True, client=False, names=[host])
    return {host: (pki / f"{host}.crt", pki / f"{host}.key") for host, _path in REPOSITORIES}


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write(f"chartrepo: {self.headers.get('Host', '?')} {fmt % args}\n")


class Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: Path, repos: Path, port: int = 0):
        self.repos = repos
        self.contexts = {}
        for host, (cert, key) in _certificates(state).items():
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cert), str(key))
            self.contexts[host] = ctx
        super().__init__(("127.0.0.1", port), _Tunnel)


class _Tunnel(socketserver.StreamRequestHandler):
    """CONNECT host:443 for a known host: answer with TLS as that host and serve its repository folder."""

    def handle(self):
        line = self.rfile.readline(65536).decode("latin-1").strip()
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass
        method, _sep, rest = line.partition(" ")
        target = rest.split(" ")[0]
        host, _colon, port = target.rpartition(":")
        if method != "CONNECT" or port != "443" or host not in self.server.contexts:
            self.wfile.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                + f"the harness serves only its chart repositories, not {target}\n".encode()
            )
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        try:
            tls = self.server.contexts[host].wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            sys.stderr.write(f"chartrepo: TLS with a client for {host} failed: {exc}\n")
            return
        handler = functools.partial(_Files, directory=str(self.server.repos / host))
        handler(tls, self.client_address, self.server)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "serve"))
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--charts", default=os.environ.get("FILEWCOUNT_CHARTS_DIR") or str(DEFAULT_CHARTS))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    state = Path(args.state_dir)
    repos = build(state / "repositories", Path(args.charts))
    if args.action == "build":
        print(repos)
        return 0
    proxy = Proxy(state, repos, args.port)
    print(f"PORT={proxy.server_address[1]}", flush=True)
    proxy.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
