"""The chart repositories of the GitOps tree, packaged for the harness to serve at their real URLs (test only).

`build` packages the unmodified chart sources of ../shared/charts with the harness's Helm (dependencies copied
under each chart's charts/ folder, as a packaged chart carries them) into one folder per repository host, each
with an index.yaml whose URLs are the real ones. network.py answers a CONNECT to one of those hosts with a TLS
connection whose certificate (from the harness CA in <state>/pki/ca.crt, which the Flux controllers trust through
SSL_CERT_FILE) names that host, and serves its folder with `Files`. So the tree's HelmRepository URLs, chart names
and versions are what is tested, without editing kube/.

    python tests/harness/chartrepo.py build --state-dir DIR [--charts DIR]   # prints the repositories' folder
    (--charts defaults to $FILEWCOUNT_CHARTS_DIR, else ../shared/charts beside the repository)
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
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
    ("grafana-community.github.io", "/helm-charts"): ["grafana-12.11.1", "loki-18.11.0"],
    # Alloy, and rollout-operator, which Loki's chart names as a dependency from this repository.
    ("grafana.github.io", "/helm-charts"): ["alloy-1.11.1", "rollout-operator-0.51.1"],
    ("traefik.github.io", "/charts"): ["traefik-41.3.0"],
    ("charts.jetstack.io", ""): ["cert-manager-v1.21.1"],
    ("kedacore.github.io", "/charts"): ["keda-2.20.2"],
}
DEPENDENCIES = {
    "kube-prometheus-stack-88.5.3": [
        "kube-state-metrics-8.4.0",
        "prometheus-node-exporter-4.56.1",
        "grafana-12.11.1",
        "prometheus-windows-exporter-0.12.8",
    ],
    # Loki's remote dependencies (https://charts.min.io/ and grafana.github.io), packaged in as the published chart
    # carries them: helm needs every dependency under charts/, also a disabled one (minio and rollout_operator are).
    "loki-18.11.0": ["minio-5.4.0", "rollout-operator-0.51.1"],
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


class Files(http.server.SimpleHTTPRequestHandler):
    """Serves one repository host's folder (network.py hands it the TLS connection of a CONNECT)."""

    def log_message(self, fmt, *args):
        sys.stderr.write(f"chartrepo: {self.headers.get('Host', '?')} {fmt % args}\n")


def tls_contexts(state: Path) -> dict[str, ssl.SSLContext]:
    """A server TLS context per repository host, with its certificate from the harness CA."""
    contexts = {}
    for host, (cert, key) in _certificates(state).items():
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        contexts[host] = ctx
    return contexts


def charts_dir() -> Path:
    return Path(os.environ.get("FILEWCOUNT_CHARTS_DIR") or DEFAULT_CHARTS)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build",))
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--charts", default=str(charts_dir()))
    args = parser.parse_args(argv)
    print(build(Path(args.state_dir) / "repositories", Path(args.charts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
