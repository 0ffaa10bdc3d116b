"""A stand-in for GitHub (github.com and api.github.com) that the harness network serves (test harness only).

This is not GitHub: it answers the few requests that `flux bootstrap github`, source-controller and the
collection's github mode send, the way GitHub documents them, over TLS from the harness CA:

- git smart HTTP on https://github.com/<owner>/<repo>[.git]: the real `git http-backend` (CGI) over bare
  repositories `<state>/repos/<owner>/<repo>.git`; every request needs HTTP Basic credentials whose password is a
  known token (any username, as GitHub accepts for personal access tokens); without credentials the answer is
  401 with `WWW-Authenticate: Basic realm="GitHub"`, which makes git ask its credential helper;
- the REST API on https://api.github.com (`Authorization: token|Bearer <token>`, or Basic): `GET /user`,
  `GET /repos/{owner}/{repo}`, `POST /user/repos` and `POST /orgs/{org}/repos` (private unless `"private": false`;
  422 when the name exists); a wrong or missing token is 401 `{"message": "Bad credentials"}`, a repository the
  token cannot see is 404 `{"message": "Not Found"}`, as on GitHub.

State (outlives clusters, like GitHub): `$STANDIN_GITHUB_DIR`, else `$STANDIN_STATE_DIR/github`. Tests call
`add_token` (the token, its user's login and organisations) and `create_repository` (an existing repository);
`requests.log` holds one line per request (method, host, path, status; never a credential).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import ssl
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import cluster as harness
from cryptography import x509
from cryptography.hazmat.primitives import serialization

HOSTS = ("github.com", "api.github.com")
_LOCK = threading.Lock()


def state_dir(cluster_root: Path | None = None) -> Path:
    if os.environ.get("STANDIN_GITHUB_DIR"):
        return Path(os.environ["STANDIN_GITHUB_DIR"])
    if os.environ.get("STANDIN_STATE_DIR"):
        return Path(os.environ["STANDIN_STATE_DIR"]) / "github"
    if cluster_root is None:
        raise RuntimeError("set STANDIN_GITHUB_DIR or STANDIN_STATE_DIR for the GitHub stand-in")
    return cluster_root / "github"


# ------------------------------------------------------------------------------------------------ test set-up
def _tokens(state: Path) -> dict:
    try:
        return json.loads((state / "tokens.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def add_token(state: Path, token: str, login: str, orgs: tuple[str, ...] = ()) -> None:
    """Make `token` a valid token of user `login`, a member of `orgs`."""
    state.mkdir(parents=True, exist_ok=True)
    tokens = _tokens(state)
    tokens[token] = {"login": login, "orgs": list(orgs)}
    path = state / "tokens.json"
    path.write_text(json.dumps(tokens), encoding="utf-8")
    path.chmod(0o600)


def repository_path(state: Path, owner: str, name: str) -> Path:
    return state / "repos" / owner.lower() / f"{name.lower()}.git"


def create_repository(state: Path, owner: str, name: str, private: bool = True) -> Path:
    """A bare repository with an empty history and `main` as its default branch."""
    path = repository_path(state, owner, name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)], check=True, capture_output=True
        )
        subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)
        (path / "standin.json").write_text(json.dumps({"owner": owner, "name": name, "private": private}))
    return path


def requests_log(state: Path) -> list[str]:
    try:
        return (state / "requests.log").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


# ----------------------------------------------------------------------------------------------------- TLS
def tls_contexts(pki: Path) -> dict[str, ssl.SSLContext]:
    """Server contexts for github.com and api.github.com, signed by the harness CA in `pki` (ca.crt / ca.key)."""
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    contexts = {}
    for host in HOSTS:
        if not (pki / f"{host}.crt").exists():
            harness._leaf(pki, host, (ca_key, ca_cert), harness._name(host), server=True, client=False, names=[host])
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(pki / f"{host}.crt"), str(pki / f"{host}.key"))
        contexts[host] = ctx
    return contexts


# -------------------------------------------------------------------------------------------------- serving
def _repo_json(host: str, owner: str, name: str, private: bool) -> dict:
    return {
        "name": name,
        "full_name": f"{owner}/{name}",
        "owner": {"login": owner},
        "private": private,
        "visibility": "private" if private else "public",
        "default_branch": "main",
        "clone_url": f"https://{host}/{owner}/{name}.git",
        "html_url": f"https://{host}/{owner}/{name}",
    }


class Handler(http.server.BaseHTTPRequestHandler):
    """One TLS connection for `host` (set by `serve`), HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    host = "github.com"
    state = Path()

    def log_message(self, fmt, *args):  # the request log below replaces stderr logging
        pass

    # ------------------------------------------------------------------ helpers
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _record(self, status: int) -> None:
        with _LOCK:
            self.state.mkdir(parents=True, exist_ok=True)
            with (self.state / "requests.log").open("a", encoding="utf-8") as log:
                log.write(f"{self.command} {self.host} {urlsplit(self.path).path} {status}\n")

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict, extra: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", extra)

    def _user(self) -> dict | None:
        """The token's user ({"login", "orgs"}), or None for a missing or unknown token."""
        header = self.headers.get("Authorization", "")
        scheme, _space, value = header.partition(" ")
        token = ""
        if scheme.lower() in ("token", "bearer"):
            token = value.strip()
        elif scheme.lower() == "basic":
            try:
                token = base64.b64decode(value.strip()).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                token = ""
        return _tokens(self.state).get(token) if token else None

    @staticmethod
    def _can_see(user: dict, owner: str) -> bool:
        return owner.lower() == user["login"].lower() or owner.lower() in [o.lower() for o in user["orgs"]]

    def _meta(self, owner: str, name: str) -> dict | None:
        path = repository_path(self.state, owner, name)
        if not path.is_dir():
            return None
        try:
            return json.loads((path / "standin.json").read_text())
        except (FileNotFoundError, ValueError):
            return {"owner": owner, "name": name, "private": True}

    # ------------------------------------------------------------------ dispatch
    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self) -> None:
        body = self._body()
        try:
            if self.host == "api.github.com":
                self._api(body)
            else:
                self._git(body)
        except BrokenPipeError:
            pass

    # ------------------------------------------------------------------ REST API
    def _api(self, body: bytes) -> None:
        user = self._user()
        if user is None:
            self._json(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            return
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        if self.command == "GET" and parts == ["user"]:
            self._json(200, {"login": user["login"], "type": "User"})
        elif self.command == "GET" and len(parts) == 3 and parts[0] == "repos":
            meta = self._meta(parts[1], parts[2])
            if meta is None or not self._can_see(user, parts[1]):
                self._json(404, {"message": "Not Found"})
            else:
                self._json(200, _repo_json("github.com", meta["owner"], meta["name"], meta["private"]))
        elif self.command == "POST" and (
            parts == ["user", "repos"] or (len(parts) == 3 and parts[::2] == ["orgs", "repos"])
        ):
            owner = user["login"] if parts[0] == "user" else parts[1]
            if parts[0] == "orgs" and owner.lower() not in [o.lower() for o in user["orgs"]]:
                self._json(404, {"message": "Not Found"})
                return
            try:
                wanted = json.loads(body or b"{}")
            except ValueError:
                self._json(400, {"message": "Problems parsing JSON"})
                return
            name = str(wanted.get("name") or "")
            if not name:
                self._json(422, {"message": "Repository creation failed.", "errors": [{"field": "name"}]})
                return
            if self._meta(owner, name) is not None:
                self._json(
                    422,
                    {
                        "message": "Repository creation failed.",
                        "errors": [{"resource": "Repository", "field": "name", "message": "name already exists"}],
                    },
                )
                return
            private = bool(wanted.get("private", True))
            create_repository(self.state, owner, name, private=private)
            self._json(201, _repo_json("github.com", owner, name, private))
        else:
            self._json(404, {"message": "Not Found"})

    # ------------------------------------------------------------------ git smart HTTP
    def _git(self, body: bytes) -> None:
        url = urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 2)
        if len(parts) < 3:
            self._send(404, b"Not Found\n", "text/plain")
            return
        owner, name, rest = parts[0], parts[1].removesuffix(".git"), parts[2]
        user = self._user()
        if user is None:
            self._send(401, b"Authentication required\n", "text/plain", {"WWW-Authenticate": 'Basic realm="GitHub"'})
            return
        meta = self._meta(owner, name)
        if meta is None or not self._can_see(user, owner):
            self._send(404, b"Repository not found.\n", "text/plain")
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.state / "repos"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{owner.lower()}/{name.lower()}.git/{rest}",
            "QUERY_STRING": url.query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user["login"],
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        proc = subprocess.run(
            [shutil.which("git") or "git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _sep:
            head, _sep, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _colon, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        content_type = headers.pop("Content-Type", "application/octet-stream")
        headers.pop("Content-Length", None)
        if proc.returncode != 0 and not head:
            status, payload, content_type = 500, proc.stderr, "text/plain"
        self._send(status, payload, content_type, headers)


def serve(connection, client_address, server, host: str, state: Path) -> None:
    """Serve one (already TLS-wrapped) connection as `host`."""
    handler = type("GitHubHandler", (Handler,), {"host": host, "state": state})
    handler(connection, client_address, server)
