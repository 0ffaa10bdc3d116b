# TEST DOUBLE: the host side of NodePort 30082 (the local-mode git server, kube/bootstrap/git-server/) for the
# stand-in kind cluster. Never used by the collection at runtime.
#
# Real git smart HTTP: every request is handed to `git http-backend` as a CGI program, for bare repositories under
# <state_dir>/git (state_dir is $STANDIN_STATE_DIR). Like the real server (Soft Serve with
# SOFT_SERVE_DEFAULT_REPO=filewcount and SOFT_SERVE_ANON_ACCESS=read-write) it creates filewcount.git empty on start
# and accepts anonymous pushes. Like a real NodePort it only answers while the cluster has a Service with
# nodePort 30082 whose pods are available (a Deployment in the Service's namespace matching its selector with
# availableReplicas >= 1), read through the Kubernetes API named by the kubeconfig; otherwise 503.
"""NodePort 30082 stand-in: git smart HTTP through `git http-backend` (test double)."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import urllib.error
import urllib.request

# The stand-ins are loaded by file path (server.py, tests), so their folder may not be on sys.path yet.
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeapi import KubeAPI

NODE_PORT = 30082
DEFAULT_REPO = "filewcount"


def service_available(api: KubeAPI | None) -> tuple[bool, str]:
    """Whether the cluster serves NodePort 30082 with an available backend, and why not."""
    if api is None:
        return False, "no kubeconfig for the cluster"
    try:
        services = api.get("/api/v1/services").get("items") or []
        for svc in services:
            ports = (svc.get("spec") or {}).get("ports") or []
            if not any(p.get("nodePort") == NODE_PORT for p in ports):
                continue
            namespace = svc["metadata"]["namespace"]
            selector = (svc.get("spec") or {}).get("selector") or {}
            deployments = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments").get("items") or []
            for dep in deployments:
                labels = ((dep.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
                if selector and all(labels.get(k) == v for k, v in selector.items()):
                    if int((dep.get("status") or {}).get("availableReplicas") or 0) >= 1:
                        return True, ""
                    return False, f"deployment {namespace}/{dep['metadata']['name']} has no available replica"
            return False, f"no deployment in {namespace} matches service {svc['metadata']['name']}"
        return False, f"no service has nodePort {NODE_PORT}"
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        return False, f"the Kubernetes API did not answer ({exc})"


def ensure_repository(root: str, name: str = DEFAULT_REPO) -> str:
    """Create <root>/<name>.git bare (branch main, anonymous push allowed) unless it exists."""
    path = os.path.join(root, f"{name}.git")
    if not os.path.isdir(path):
        os.makedirs(root, exist_ok=True)
        subprocess.run(["git", "init", "--bare", "--quiet", path], check=True)
        subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=path, check=True)
        # git http-backend only runs receive-pack for anonymous clients when this is set.
        subprocess.run(["git", "config", "http.receivepack", "true"], cwd=path, check=True)
    return path


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _plain(handler: http.server.BaseHTTPRequestHandler, status: int, text: str) -> None:
    body = text.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def serve_git(handler: http.server.BaseHTTPRequestHandler, root: str) -> None:
    """Answer one request with `git http-backend` (smart HTTP, anonymous push) for the bare repositories in root."""
    path, _sep, query = handler.path.partition("?")
    if path in ("/livez", "/readyz"):
        _plain(handler, 200, "ok\n")
        return
    body = _read_body(handler)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": root,
        "GIT_PROJECT_ROOT": root,
        "GIT_HTTP_EXPORT_ALL": "1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": handler.request_version,
        "REQUEST_METHOD": handler.command,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": handler.client_address[0],
    }
    for header in ("Content-Encoding", "Git-Protocol", "Accept"):
        if handler.headers.get(header):
            env["HTTP_" + header.upper().replace("-", "_")] = handler.headers[header]
    proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
    if proc.stderr:
        sys.stderr.write(f"np-{NODE_PORT}: git http-backend: {proc.stderr.decode(errors='replace')}")
    head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
    if not sep:
        head, sep, payload = proc.stdout.partition(b"\n\n")
    if not sep:
        _plain(handler, 502, f"git http-backend failed (exit {proc.returncode})\n")
        return
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _sep, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    handler.send_response(status)
    for name, value in headers:
        if name.lower() != "content-length":
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def make_handler(kubeconfig: str, context: str, state_dir: str) -> type[http.server.BaseHTTPRequestHandler]:
    root = os.path.join(state_dir, "git")
    ensure_repository(root)

    class GitHttpBackend(http.server.BaseHTTPRequestHandler):
        server_version = "np-30082-git"

        def _handle(self) -> None:
            # Looked up per request: the port server starts before kind has written the kubeconfig.
            ok, reason = service_available(KubeAPI.from_kubeconfig(kubeconfig, context))
            if not ok:
                _plain(self, 503, f"no service behind NodePort {NODE_PORT}: {reason}\n")
                return
            serve_git(self, root)

        do_GET = do_POST = do_HEAD = _handle

        def log_message(self, fmt, *args):
            sys.stderr.write(f"np-{NODE_PORT}: {fmt % args}\n")

    return GitHttpBackend
