"""Test doubles: small HTTP servers on 127.0.0.1 that ApacheBench (ab) is run against in the tests.

Never used by the collection at runtime. Every server binds the loopback interface on an ephemeral port,
answers a bounded number of requests per connection and is shut down by the context manager that started it.

Modes (the ``mode`` argument of :func:`serve`):

- ``normal``: 200 with a fixed 13-byte body.
- ``non2xx``: every request answers 404 with a fixed body.
- ``mixed``: every third request answers 500, and the body length varies, so ab counts length failures.
- ``keepalive``: HTTP/1.1 with ``Connection: keep-alive`` and ``Content-Length`` (for ``ab -k``).
- ``post``: reads the request body and answers 201 with the number of bytes received.
- ``reset``: answers normally, then resets the TCP connection (RST) from request number 20 on.
- ``slow``: sleeps ``slow_seconds`` before answering (for ``ab -s``).

Run ``python tests/unit/ab_servers.py MODE [PORT]`` to serve one mode in the foreground (Ctrl-C stops it), or
``python tests/unit/ab_servers.py --write-fixtures tests/unit/fixtures/ab`` to regenerate the saved ab outputs.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

MODES = ("normal", "non2xx", "mixed", "keepalive", "post", "reset", "slow")
RESET_AFTER = 20


def _make_handler(mode: str, slow_seconds: float) -> type[http.server.BaseHTTPRequestHandler]:
    counter = itertools.count(1)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "abtest/1.0"
        sys_version = ""
        protocol_version = "HTTP/1.1" if mode == "keepalive" else "HTTP/1.0"
        # Buffer the response so headers and body leave in one segment (no 40 ms delayed-ACK stall on keep-alive).
        wbufsize = 65536

        def log_message(self, format, *args):
            return

        def _next(self) -> int:
            with lock:
                return next(counter)

        def _send(self, status: int, body: bytes, keep_alive: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "keep-alive" if keep_alive else "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def do_GET(self):
            n = self._next()
            if mode == "normal":
                self._send(200, b"hello, world\n")
            elif mode == "non2xx":
                self._send(404, b"not found\n")
            elif mode == "mixed":
                if n % 3 == 0:
                    self._send(500, b"boom\n")
                else:
                    self._send(200, b"x" * (10 + n % 7))
            elif mode == "keepalive":
                self._send(200, b"kept alive\n", keep_alive=self.headers.get("Connection", "").lower() == "keep-alive")
            elif mode == "reset":
                if n >= RESET_AFTER:
                    self._reset()
                    return
                self._send(200, b"hello, world\n")
            elif mode == "slow":
                time.sleep(slow_seconds)
                self._send(200, b"finally\n")
            else:
                self._send(200, b"hello, world\n")

        do_HEAD = do_GET

        def do_POST(self):
            self._next()
            length = int(self.headers.get("Content-Length", "0") or 0)
            data = self.rfile.read(min(length, 1 << 20)) if length else b""
            self._send(201, b"received %d bytes\n" % len(data))

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


@contextlib.contextmanager
def serve(mode: str = "normal", slow_seconds: float = 3.0) -> Iterator[str]:
    """Serve ``mode`` on 127.0.0.1 in a background thread and yield its base URL (ending in ``/``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    server = _Server(("127.0.0.1", 0), _make_handler(mode, slow_seconds))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """Return a loopback URL on a port nothing listens on (bind, read the port, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# name -> (server mode or None for a closed port, ab options before the URL, files ab writes)
SCENARIOS = {
    "normal": ("normal", ["-n", "200", "-c", "10"], ("csv", "tsv")),
    "non2xx": ("non2xx", ["-n", "100", "-c", "5"], ()),
    "mixed": ("mixed", ["-n", "150", "-c", "5"], ()),
    "keepalive": ("keepalive", ["-k", "-n", "200", "-c", "10"], ()),
    "post": ("post", ["-n", "50", "-c", "5", "-T", "application/json", "-p", "{body}"], ()),
    "timelimit": ("normal", ["-t", "1", "-c", "4"], ("tsv",)),
    "no_sd": ("normal", ["-S", "-n", "20", "-c", "2"], ()),
    "variable": ("mixed", ["-l", "-n", "30", "-c", "3"], ()),
    "receive_errors": ("reset", ["-r", "-n", "40", "-c", "1"], ()),
    "refused": (None, ["-n", "5", "-c", "1"], ()),
    "reset": ("reset", ["-n", "100", "-c", "1"], ()),
    "timeout": ("slow", ["-s", "1", "-n", "2", "-c", "1"], ()),
}
POST_BODY = b'{"files": ["a.txt", "b.txt"], "note": "ab POST body"}\n'


def ab_path() -> str | None:
    """Return the path of ab, or None when apache2-utils is not installed."""
    return shutil.which("ab")


def run_scenario(name: str, workdir: str) -> dict:
    """Run ab for scenario ``name`` against its loopback server; return argv, rc, stdout, stderr and file texts.

    The URL's port is random, so callers compare structure and numbers, not the exact text.
    """
    mode, options, files = SCENARIOS[name]
    body = os.path.join(workdir, f"{name}.body")
    with open(body, "wb") as handle:
        handle.write(POST_BODY)
    paths = {kind: os.path.join(workdir, f"{name}.{kind}") for kind in files}
    argv = [ab_path() or "ab"] + [body if option == "{body}" else option for option in options]
    if "csv" in paths:
        argv += ["-e", paths["csv"]]
    if "tsv" in paths:
        argv += ["-g", paths["tsv"]]
    server = serve(mode) if mode else contextlib.nullcontext(closed_port_url())
    with server as url:
        argv.append(url)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    result = {"argv": argv, "url": url, "rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
    for kind, path in paths.items():
        with open(path, encoding="utf-8") as handle:
            result[kind] = handle.read()
    return result


def write_fixtures(directory: str) -> None:
    """Regenerate tests/unit/fixtures/ab/: <name>.stdout, <name>.stderr, <name>.rc and the -e/-g files."""
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        for name in SCENARIOS:
            result = run_scenario(name, workdir)
            for kind in ("stdout", "stderr", "csv", "tsv"):
                if kind in result:
                    with open(os.path.join(directory, f"{name}.{kind}"), "w", encoding="utf-8") as handle:
                        handle.write(result[kind])
            with open(os.path.join(directory, f"{name}.rc"), "w", encoding="utf-8") as handle:
                handle.write(f"{result['rc']}\n")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write-fixtures"] and len(argv) == 2:
        write_fixtures(argv[1])
        return 0
    if not argv or argv[0] not in MODES:
        print(f"usage: ab_servers.py {{{'|'.join(MODES)}}} [PORT]", file=sys.stderr)
        return 2
    port = int(argv[1]) if len(argv) > 1 else 0
    server = _Server(("127.0.0.1", port), _make_handler(argv[0], 3.0))
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
