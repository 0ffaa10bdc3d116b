# TEST DOUBLE support: how the NodePort stand-ins read the cluster. Never used by the collection at runtime.
"""The Kubernetes API of a kubeconfig context, for the NodePort stand-ins (test double support).

A stand-in answers like a NodePort only while the cluster has the Service and an available backend, so it reads
the cluster through the kubeconfig that kind wrote: plain HTTP for a fake API in unit tests, HTTPS with the cluster's CA
and the client certificate (or a bearer token) for the harness's real API server.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.request

import yaml  # the harness runs with the project's virtualenv, which has PyYAML


def _pem(entry: dict, key: str) -> bytes | None:
    """`<key>-data` (base64) or the file named by `<key>` of a kubeconfig entry."""
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        with open(entry[key], "rb") as handle:
            return handle.read()
    return None


class KubeAPI:
    def __init__(self, server: str, context: ssl.SSLContext | None = None, token: str | None = None):
        self.server = server.rstrip("/")
        self.context = context
        self.token = token

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str, context: str = "") -> KubeAPI | None:
        """The API of `context` (else the current one) in kubeconfig; None while there is no such kubeconfig."""
        if not kubeconfig or not os.path.exists(kubeconfig):
            return None
        with open(kubeconfig, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
        contexts = {c["name"]: c.get("context") or {} for c in config.get("contexts") or []}
        clusters = {c["name"]: c.get("cluster") or {} for c in config.get("clusters") or []}
        users = {u["name"]: u.get("user") or {} for u in config.get("users") or []}
        chosen = contexts.get(context or config.get("current-context", "")) or {}
        cluster, user = clusters.get(chosen.get("cluster", ""), {}), users.get(chosen.get("user", ""), {})
        if not cluster.get("server"):
            return None
        tls = None
        if cluster["server"].startswith("https://"):
            ca = _pem(cluster, "certificate-authority")
            tls = ssl.create_default_context(cadata=ca.decode() if ca else None)
            cert, key = _pem(user, "client-certificate"), _pem(user, "client-key")
            if cert and key:
                # ssl loads a client certificate from files only: a private folder that lives for this call.
                with tempfile.TemporaryDirectory() as folder:
                    paths = [os.path.join(folder, name) for name in ("client.crt", "client.key")]
                    for path, pem in zip(paths, (cert, key), strict=True):
                        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                            handle.write(pem)
                    tls.load_cert_chain(*paths)
        return cls(cluster["server"], tls, user.get("token"))

    def get(self, path: str) -> dict:
        """GET path as JSON; raises urllib's HTTPError / URLError (or OSError, ValueError) as urlopen does."""
        request = urllib.request.Request(self.server + path, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=5, context=self.context) as response:
            return json.loads(response.read())
