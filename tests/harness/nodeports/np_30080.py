# TEST DOUBLE: the host side of NodePort 30080 (the filewcount Service, kube/apps/filewcount/) for the stand-in kind
# cluster. Never used by the collection at runtime.
#
# Like a real NodePort it only answers while the cluster has a Service with nodePort 30080 whose Deployment (same
# namespace, pod template matching the Service selector) has at least one available replica, read through the
# Kubernetes API named by the kubeconfig; otherwise 503 with the reason. When it answers, GET / returns 200 and a
# small HTML page naming the image the Deployment runs (so an upgrade is visible from the host).
"""NodePort 30080 stand-in: the filewcount web page (test double)."""

from __future__ import annotations

import html
import http.server
import os
import sys
import urllib.error
import urllib.request

# The stand-ins are loaded by file path (server.py, tests), so their folder may not be on sys.path yet.
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeapi import KubeAPI

NODE_PORT = 30080


def backend(api: KubeAPI | None) -> tuple[dict | None, str]:
    """(the available Deployment behind NodePort 30080, "") or (None, why not)."""
    if api is None:
        return None, "no kubeconfig for the cluster"
    try:
        for svc in api.get("/api/v1/services").get("items") or []:
            if not any(p.get("nodePort") == NODE_PORT for p in (svc.get("spec") or {}).get("ports") or []):
                continue
            namespace = svc["metadata"]["namespace"]
            selector = (svc.get("spec") or {}).get("selector") or {}
            for dep in api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments").get("items") or []:
                labels = ((dep.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
                if selector and all(labels.get(k) == v for k, v in selector.items()):
                    if int((dep.get("status") or {}).get("availableReplicas") or 0) >= 1:
                        return dep, ""
                    return None, f"deployment {namespace}/{dep['metadata']['name']} has no available replica"
            return None, f"no deployment in {namespace} matches service {svc['metadata']['name']}"
        return None, f"no service has nodePort {NODE_PORT}"
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        return None, f"the Kubernetes API did not answer ({exc})"


def make_handler(kubeconfig: str, context: str, state_dir: str) -> type[http.server.BaseHTTPRequestHandler]:
    del state_dir  # nothing kept on disk

    class FakeFilewcount(http.server.BaseHTTPRequestHandler):
        server_version = "np-30080-filewcount-test-double"

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            dep, reason = backend(KubeAPI.from_kubeconfig(kubeconfig, context))
            if dep is None:
                self._send(
                    503, f"no service behind NodePort {NODE_PORT}: {reason}\n".encode(), "text/plain; charset=utf-8"
                )
                return
            if self.path.split("?")[0] != "/":
                self._send(404, b"<html><body><h1>404 Not Found</h1></body></html>\n", "text/html")
                return
            images = ", ".join(c.get("image", "") for c in dep["spec"]["template"]["spec"].get("containers") or [])
            body = (
                "<!DOCTYPE html><html><head><title>filewcount</title></head><body>"
                "<h1>filewcount</h1><p>Upload a file to count its words (test double).</p>"
                f"<p>image: {html.escape(images)}</p></body></html>\n"
            ).encode()
            self._send(200, body, "text/html; charset=utf-8")

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            sys.stderr.write(f"np-{NODE_PORT}: {fmt % args}\n")

    return FakeFilewcount
