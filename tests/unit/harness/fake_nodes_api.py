"""A tiny in-process stand-in for the Node endpoints of the Kubernetes API, for testing the stand-in kind CLI.

Only what the stand-in kind uses: POST /api/v1/nodes, PUT /api/v1/nodes/NAME/status, GET /api/v1/nodes[/NAME],
DELETE /api/v1/nodes/NAME. Objects live in `FakeNodesAPI.nodes`.
"""

from __future__ import annotations

import http.server
import json
import threading


class FakeNodesAPI:
    def __init__(self):
        self.nodes: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_POST(self):
                api.requests.append(("POST", self.path))
                if self.path != "/api/v1/nodes":
                    return self._send(404, {})
                obj = self._body()
                name = obj["metadata"]["name"]
                if name in api.nodes:
                    return self._send(409, {"reason": "AlreadyExists"})
                obj.pop("status", None)
                api.nodes[name] = obj
                return self._send(201, obj)

            def do_PUT(self):
                api.requests.append(("PUT", self.path))
                parts = self.path.strip("/").split("/")
                if len(parts) == 5 and parts[4] == "status" and parts[3] in api.nodes:
                    api.nodes[parts[3]]["status"] = self._body().get("status", {})
                    return self._send(200, api.nodes[parts[3]])
                return self._send(404, {})

            def do_GET(self):
                api.requests.append(("GET", self.path))
                if self.path == "/api/v1/nodes":
                    return self._send(200, {"kind": "NodeList", "items": list(api.nodes.values())})
                name = self.path.rsplit("/", 1)[-1]
                if name in api.nodes:
                    return self._send(200, api.nodes[name])
                return self._send(404, {})

            def do_DELETE(self):
                api.requests.append(("DELETE", self.path))
                name = self.path.rsplit("/", 1)[-1]
                if api.nodes.pop(name, None) is None:
                    return self._send(404, {})
                return self._send(200, {})

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
