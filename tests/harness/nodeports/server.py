# TEST DOUBLE: serves the host side of a stand-in kind cluster's extraPortMappings. Started by the stand-in
# `kind create cluster` (tests/harness/bin/kind), stopped by `kind delete cluster` (SIGTERM). Never used by the
# collection at runtime. On a harness cluster that publishes no host port for a node port, workloads.py runs it
# (one mapping on a free port) as the program behind that application's Deployment.
#
#   server.py --kubeconfig PATH --context kind-NAME --state-dir DIR --map ADDRESS:HOSTPORT=NODEPORT [--map ...]
#
# Each mapping listens on ADDRESS:HOSTPORT (as real kind's Docker port publishing would) and serves the handler of
# module np_<NODEPORT>.py in this directory: `make_handler(kubeconfig, context, state_dir)` returns a
# BaseHTTPRequestHandler subclass. A missing module (or one that fails to import) answers 503.
"""Node-port stand-in server (test double)."""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import os
import signal
import sys
import threading
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def unavailable_handler(node_port: int, reason: str):
    class Unavailable(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            body = f"no service behind NodePort {node_port}: {reason}\n".encode()
            self.send_response(503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

        def log_message(self, fmt, *args):
            sys.stderr.write(f"np-{node_port}: {fmt % args}\n")

    return Unavailable


def load_handler(node_port: int, kubeconfig: str, context: str, state_dir: str, directory: str = HERE):
    path = os.path.join(directory, f"np_{node_port}.py")
    if not os.path.exists(path):
        return unavailable_handler(node_port, f"np_{node_port}.py does not exist")
    try:
        spec = importlib.util.spec_from_file_location(f"np_{node_port}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.make_handler(kubeconfig, context, state_dir)
    except Exception as exc:
        traceback.print_exc()
        return unavailable_handler(node_port, f"np_{node_port}.py failed to load: {exc}")


def parse_map(value: str):
    try:
        left, node_port = value.rsplit("=", 1)
        address, host_port = left.rsplit(":", 1)
        return address or "127.0.0.1", int(host_port), int(node_port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ADDRESS:HOSTPORT=NODEPORT, got {value!r}") from None


def build_servers(maps, kubeconfig, context, state_dir, directory=HERE):
    servers = []
    for address, host_port, node_port in maps:
        handler = load_handler(node_port, kubeconfig, context, state_dir, directory)
        server = http.server.ThreadingHTTPServer((address, host_port), handler)
        server.daemon_threads = True
        servers.append(server)
    return servers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--context", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--map", action="append", type=parse_map, default=[], required=True)
    args = parser.parse_args(argv)
    servers = build_servers(args.map, args.kubeconfig, args.context, args.state_dir)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    stop = threading.Event()

    def _stop(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sys.stderr.write("nodeports: serving {}\n".format(", ".join("{}:{}->{}".format(*m) for m in args.map)))
    sys.stderr.flush()
    stop.wait()
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
