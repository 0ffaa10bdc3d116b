"""A real Kubernetes control plane as host processes, with kwok simulating the kind node (test harness only).

Real programs, built from their Go modules by tests/harness/build-testbin.sh at the versions in versions.env:
etcd, kube-apiserver, kube-controller-manager (HPA, garbage collector, namespace, deployment, job... controllers),
kube-scheduler, metrics-server behind the v1beta1.metrics.k8s.io APIService. Simulated by kwok: the kubelet (the
node's status and lease, pods made Running and Ready, Job pods Succeeded, deleted pods removed) and the
resource usage the kubelet would report (kwok's ClusterResourceUsage; tests set it per namespace).

Usage (from the repository root, with the project's virtualenv):
    python tests/harness/cluster.py start --state-dir DIR [--name filewcount] [--kubeconfig PATH]
                                          [--context NAME] [--node-label KEY=VALUE ...]
    python tests/harness/cluster.py stop --state-dir DIR [--name filewcount]
    python tests/harness/cluster.py status --state-dir DIR [--name filewcount]
    python tests/harness/cluster.py usage --state-dir DIR --namespace NS [--cpu 200m] [--memory 64Mi]

`start` returns once the API server answers, the node is Ready and the metrics API serves; it prints
`KUBECONFIG=<path>`. Everything lives under DIR/clusters/<name>/ (certificates, etcd data, logs, audit log,
cluster.json with the processes and ports); `stop` ends every process and removes that folder.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import chartrepo
import flux_varsub
import network
import storage
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"
BUILD_SCRIPT = HERE / "build-testbin.sh"
DEFAULT_NAME = "filewcount"
# kube-controller-manager's HPA controller syncs every 15 s by default; kept, so the HPA behaves as on kind.
METRIC_RESOLUTION = "15s"
# What the simulated node itself uses besides its pods (see start_kwok).
SYSTEM_CPU_CORES = 0.1
SYSTEM_MEMORY_BYTES = 256 * 1024 * 1024
# kwok's CRDs the harness uses (plural names), applied from the kwok module's files before kwok starts.
KWOK_CRDS = ("metrics", "clusterresourceusages", "clusterportforwards", "logs")
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
# The harness's one ClusterResourceUsage (see apply_usage).
USAGE_NAME = "harness-usage"


class HarnessError(Exception):
    """A start or stop step failed; the message says which and where its log is."""


# ----------------------------------------------------------------------------------------------------------------
# binaries
# ----------------------------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    out = {}
    for raw in VERSIONS_FILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _sep, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def testbin_dir() -> Path:
    explicit = os.environ.get("FILEWCOUNT_TESTBIN_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("FILEWCOUNT_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "filewcount-gitops"
    )
    return Path(cache) / "testbin"


def version_of(name: str) -> str:
    """The pinned version of a harness program: <NAME>_VERSION in versions.env, Kubernetes for kube-* and kubectl."""
    v = versions()
    if name.startswith("kube-") or name == "kubectl":
        return v["KUBERNETES_VERSION"]
    if name.startswith("keda-"):  # keda-operator and keda-adapter, one module
        return v["KEDA_VERSION"]
    if name == "amtool":  # Alertmanager's CLI, at the chart's Alertmanager version
        return v["ALERTMANAGER_VERSION"]
    if name == "promtool":  # Prometheus's CLI, at the chart's Prometheus version
        return v["PROMETHEUS_VERSION"]
    return v[name.upper().replace("-", "_") + "_VERSION"]


def binary(name: str) -> Path:
    """Path of a harness program at its pinned version; says how to build it when missing."""
    path = testbin_dir() / f"{name}-{version_of(name)}" / name
    if not os.access(path, os.X_OK):
        raise HarnessError(
            f"{path} is missing: build the harness programs with `bash {BUILD_SCRIPT}` (or `make testbin`)."
        )
    return path


def kwok_data(relative: str) -> Path:
    """A data file of the kwok module (CRDs, metric definitions), copied next to the binary by the build script."""
    path = binary("kwok").parent / relative
    if not path.is_file():
        raise HarnessError(f"{path} is missing: rebuild kwok with `bash {BUILD_SCRIPT} kwok`.")
    return path


# ----------------------------------------------------------------------------------------------------------------
# certificates (ECDSA P-256: quick to generate, accepted by every component)
# ----------------------------------------------------------------------------------------------------------------
def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=7))
    )


def _ca(pki: Path, stem: str, common_name: str):
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(pki / f"{stem}.key", key)
    _write_cert(pki / f"{stem}.crt", cert)
    return key, cert


# The names a serving certificate of the control plane answers to.
CONTROL_PLANE_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "127.0.0.1",
    "127.96.0.1",
)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _leaf(
    pki: Path, stem: str, ca, subject: x509.Name, *, server: bool, client: bool, names=CONTROL_PLANE_NAMES
) -> None:
    ca_key, ca_cert = ca
    key = _key()
    usages = ([x509.ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
    _write_key(pki / f"{stem}.key", key)
    _write_cert(pki / f"{stem}.crt", builder.sign(ca_key, hashes.SHA256()))


def make_pki(pki: Path) -> None:
    """The certificates kubeadm would make for a kind node, reduced to what these processes use."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca = _ca(pki, "ca", "kubernetes")
    _leaf(pki, "apiserver", ca, _name("kube-apiserver"), server=True, client=False)
    # The user's client certificate, as kind's admin.conf (what `kind get kubeconfig` hands out): the audit log
    # shows the product's requests as user kubernetes-admin.
    _leaf(pki, "admin", ca, _name("kubernetes-admin", "system:masters"), server=False, client=True)
    # The harness's own programs (controllers, kwok, Flux, metrics-server, its checks), kept apart in the audit log.
    _leaf(pki, "components", ca, _name("harness:components", "system:masters"), server=False, client=True)
    # kwok's kubelet endpoint and metrics-server's API serve on 127.0.0.1 with this one.
    _leaf(pki, "serving", ca, _name("127.0.0.1"), server=True, client=False)
    front = _ca(pki, "front-proxy-ca", "front-proxy-ca")
    _leaf(pki, "front-proxy-client", front, _name("front-proxy-client"), server=False, client=True)
    _write_key(pki / "sa.key", _key())
    sa_pub = serialization.load_pem_private_key((pki / "sa.key").read_bytes(), None).public_key()
    (pki / "sa.pub").write_bytes(
        sa_pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# ----------------------------------------------------------------------------------------------------------------
# cluster state
# ----------------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    """One process cluster: where it lives, its ports and the pids of its programs (cluster.json)."""

    name: str
    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    node_labels: dict[str, str] = field(default_factory=dict)
    usage: dict[str, dict[str, str]] = field(default_factory=dict)
    # Node port -> "address:port" on this host, as kind's extraPortMappings publish it (set by the stand-in kind).
    node_ports: dict[str, str] = field(default_factory=dict)
    # Path in the node -> folder on this host, as kind's extraMounts bind it (set by the stand-in kind).
    node_mounts: dict[str, str] = field(default_factory=dict)

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def components_kubeconfig(self) -> Path:
        return self.root / "components.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.root / "logs" / "audit.log"

    @property
    def node_name(self) -> str:
        return f"{self.name}-control-plane"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @classmethod
    def at(cls, state_dir: str | Path, name: str) -> Cluster:
        return cls(name=name, root=Path(state_dir).resolve() / "clusters" / name)

    def save(self) -> None:
        data = {
            "name": self.name,
            "ports": self.ports,
            "pids": self.pids,
            "node_labels": self.node_labels,
            "usage": self.usage,
            "node_ports": self.node_ports,
            "node_mounts": self.node_mounts,
            "server": self.server if "apiserver" in self.ports else None,
            "components_kubeconfig": str(self.components_kubeconfig),
            "audit_log": str(self.audit_log),
        }
        tmp = self.root / "cluster.json.tmp"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(self.root / "cluster.json")

    def load(self) -> bool:
        try:
            data = json.loads((self.root / "cluster.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        self.ports, self.pids = data["ports"], data["pids"]
        self.node_labels = data.get("node_labels", {})
        self.usage = data.get("usage", {})
        self.node_ports = data.get("node_ports", {})
        self.node_mounts = data.get("node_mounts", {})
        return True

    # --- kubeconfig -------------------------------------------------------------------------------------------
    def kubeconfig(self, context: str, user: str = "admin") -> dict:
        """A kubeconfig for the user `admin` (kind's kubernetes-admin) or `components` (the harness's programs)."""

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode("ascii")

        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "current-context": context,
            "clusters": [
                {
                    "name": context,
                    "cluster": {"server": self.server, "certificate-authority-data": b64(self.pki / "ca.crt")},
                }
            ],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "users": [
                {
                    "name": context,
                    "user": {
                        "client-certificate-data": b64(self.pki / f"{user}.crt"),
                        "client-key-data": b64(self.pki / f"{user}.key"),
                    },
                }
            ],
        }

    def write_components_kubeconfig(self) -> None:
        self.components_kubeconfig.write_text(
            yaml.safe_dump(self.kubeconfig("harness", "components")), encoding="utf-8"
        )
        self.components_kubeconfig.chmod(0o600)

    # --- HTTPS to the API server with the components' certificate --------------------------------------------
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "components.crt"), str(self.pki / "components.key"))
        return ctx

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, dict | str]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl()) as resp:
                raw = resp.read().decode("utf-8")
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read().decode("utf-8", "replace"), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def apply(self, obj: dict) -> None:
        """Server-side apply of one object as the field manager `harness`."""
        api = obj["apiVersion"]
        base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        plural = {
            "CustomResourceDefinition": "customresourcedefinitions",
            "Service": "services",
            "APIService": "apiservices",
            "Node": "nodes",
            "Metric": "metrics",
            "ClusterResourceUsage": "clusterresourceusages",
            "StorageClass": "storageclasses",
        }[obj["kind"]]
        ns = obj["metadata"].get("namespace")
        path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
        status, answer = self.request(
            "PATCH",
            f"{path}/{obj['metadata']['name']}?fieldManager=harness&force=true",
            obj,
            content_type="application/apply-patch+yaml",
        )
        if status >= 300:
            raise HarnessError(f"applying {obj['kind']} {obj['metadata']['name']} answered HTTP {status}: {answer}")


# ----------------------------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def popen(log_path: Path, argv: list, cwd: Path, env: dict | None = None) -> int:
    """Start a program in its own session (so a stop reaches its children), output appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
    return proc.pid


def _spawn(cluster: Cluster, name: str, argv: list, env: dict | None = None) -> None:
    cluster.pids[name] = popen(cluster.logs / f"{name}.log", argv, cluster.root, env)
    cluster.save()


def _wait(cluster: Cluster, name: str, check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = cluster.pids.get(name)
        if pid and not _alive(pid):
            raise HarnessError(f"{name} exited while starting; the end of its log:\n{_log_tail(cluster, name)}")
        with contextlib.suppress(OSError, ssl.SSLError, urllib.error.URLError, ValueError):
            if check():
                return
        time.sleep(0.2)
    raise HarnessError(f"{what} within {timeout:.0f} s; the end of {name}'s log:\n{_log_tail(cluster, name)}")


def _log_tail(cluster: Cluster, name: str, lines: int = 15) -> str:
    """The last lines of a program's log (the folder is removed when a start fails)."""
    try:
        text = (cluster.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _https_ok(url: str, cluster: Cluster) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=cluster._ssl()) as resp:
        return resp.status == 200


def _stop_pid(pid: int, timeout: float = 15.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    # One line per request (verb, user, resource, code): what the benchmark and the idempotence checks count.
    "rules": [{"level": "Metadata"}],
}


def start_etcd(cluster: Cluster) -> None:
    client, peer = cluster.ports["etcd"], cluster.ports["etcd-peer"]
    _spawn(
        cluster,
        "etcd",
        [
            binary("etcd"),
            "--name=node0",
            f"--data-dir={cluster.root / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=node0=http://127.0.0.1:{peer}",
            "--auto-compaction-retention=1",
            # A test cluster on a shared disk: no fsync per write (kwokctl does the same for speed).
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
    )
    _wait(
        cluster,
        "etcd",
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2).status == 200,
        60,
        "etcd did not answer /health",
    )


def start_apiserver(cluster: Cluster) -> None:
    pki = cluster.pki
    policy = cluster.root / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY), encoding="utf-8")
    egress = cluster.root / "egress-selector.yaml"
    egress.write_text(yaml.safe_dump(network.egress_configuration(cluster.root)), encoding="utf-8")
    _spawn(
        cluster,
        "kube-apiserver",
        [
            binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{cluster.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={cluster.ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={network.SERVICE_CIDR}",
            # Traffic to Services, webhooks and the kubelet goes through network.py, as kind's goes through
            # kube-proxy: the documented egress selector (HTTP CONNECT), the way konnectivity is plugged in.
            f"--egress-selector-config-file={egress}",
            # As kubeadm (so kind) sets it: the kubelet (kwok's server: logs, exec, port-forward) by the node's
            # InternalIP 127.0.0.1, which network.py passes through, and not by its host name, which resolves nowhere.
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            # The aggregation layer (metrics.k8s.io): the front proxy identity kubeadm configures.
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={cluster.audit_log}",
            "--audit-log-maxsize=200",
        ],
    )
    _wait(
        cluster,
        "kube-apiserver",
        lambda: _https_ok(cluster.server + "/readyz", cluster),
        120,
        "kube-apiserver did not become ready",
    )


def start_controllers(cluster: Cluster) -> None:
    pki, kcfg = cluster.pki, cluster.components_kubeconfig
    common = [
        f"--kubeconfig={kcfg}",
        f"--authentication-kubeconfig={kcfg}",
        f"--authorization-kubeconfig={kcfg}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
    ]
    _spawn(
        cluster,
        "kube-controller-manager",
        [
            binary("kube-controller-manager"),
            *common,
            f"--secure-port={cluster.ports['controller-manager']}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=true",
            "--controllers=*,bootstrapsigner,tokencleaner",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
        ],
    )
    _spawn(
        cluster, "kube-scheduler", [binary("kube-scheduler"), *common, f"--secure-port={cluster.ports['scheduler']}"]
    )
    _wait(
        cluster,
        "kube-controller-manager",
        lambda: _https_ok(f"https://127.0.0.1:{cluster.ports['controller-manager']}/healthz", cluster),
        60,
        "kube-controller-manager did not answer /healthz",
    )
    _wait(
        cluster,
        "kube-scheduler",
        lambda: _https_ok(f"https://127.0.0.1:{cluster.ports['scheduler']}/healthz", cluster),
        60,
        "kube-scheduler did not answer /healthz",
    )


def _node(cluster: Cluster) -> dict:
    """The node object as kind's kubeadm registers it (labels of a kind control-plane node, no taint)."""
    labels = {
        "kubernetes.io/hostname": cluster.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/control-plane": "",
        "node.kubernetes.io/exclude-from-external-load-balancers": "",
    }
    labels.update(cluster.node_labels)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cluster.node_name, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
    }


# Pods whose command the harness runs on the host (jobs.py) and whose status it sets when the command ends, so kwok's
# pod-complete stage must leave them Running.
HOST_RUN_LABEL = "app.kubernetes.io/name"
HOST_RUN_VALUES = ("filewcount-load-test",)


def kwok_stage(cluster: Cluster, stage: str) -> Path:
    """kwok's stage file; pod-complete gets a selector that skips the pods jobs.py runs (written into the cluster)."""
    path = kwok_data("kustomize/stage/" + stage)
    if not stage.endswith("/pod-complete.yaml"):
        return path
    obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    obj["spec"]["selector"]["matchExpressions"].append(
        {"key": f'.metadata.labels.["{HOST_RUN_LABEL}"]', "operator": "NotIn", "values": list(HOST_RUN_VALUES)}
    )
    out = cluster.root / "kwok-stages" / "pod-complete.yaml"
    out.parent.mkdir(exist_ok=True)
    out.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return out


def start_kwok(cluster: Cluster) -> None:
    for crd in KWOK_CRDS:
        cluster.apply(yaml.safe_load(kwok_data(f"kustomize/crd/bases/kwok.x-k8s.io_{crd}.yaml").read_text("utf-8")))
    for plural in KWOK_CRDS:
        crd = f"{plural}.kwok.x-k8s.io"
        _wait(cluster, "kube-apiserver", lambda c=crd: _established(cluster, c), 30, f"CRD {crd} not established")
    cluster.apply(_node(cluster))
    # The kubelet's resource metrics endpoint, as kwok defines it, served where metrics-server scrapes a kubelet.
    metric = yaml.safe_load(kwok_data("kustomize/metrics/resource/metrics-resource.yaml").read_text(encoding="utf-8"))
    metric["metadata"]["name"] = cluster.node_name
    metric["spec"]["path"] = "/metrics/resource"
    # kwok sums the node's usage from its pods; a kind node also runs its control plane, kubelet and containerd,
    # and metrics-server drops a node whose CPU or memory reads 0. Add a steady 100m CPU and 256 MiB for them.
    for entry in metric["spec"]["metrics"]:
        if entry["name"] == "node_cpu_usage_seconds_total":
            entry["value"] = f"({entry['value']}) + node.SinceSecond() * {SYSTEM_CPU_CORES}"
        elif entry["name"] == "node_memory_working_set_bytes":
            entry["value"] = f"({entry['value']}) + {SYSTEM_MEMORY_BYTES}.0"
    cluster.apply(metric)
    apply_usage(cluster)
    pki, port = cluster.pki, cluster.ports["kwok"]
    _spawn(
        cluster,
        "kwok",
        [
            binary("kwok"),
            f"--kubeconfig={cluster.components_kubeconfig}",
            "--manage-all-nodes=true",
            "--node-ip=127.0.0.1",
            f"--node-name={cluster.node_name}",
            f"--node-port={port}",
            f"--server-address=127.0.0.1:{port}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            "--node-lease-duration-seconds=40",
            # ClusterPortForward: `kubectl port-forward` to a pod whose program workloads.py runs on this host.
            # Logs: `kubectl logs` of a load-test Job's pod, whose command jobs.py runs on this host.
            "--enable-crds=Metric,ClusterResourceUsage,ClusterPortForward,Logs",
            # kwok's own stages, as kwokctl configures them: the node initialised and kept alive through its
            # Lease; pods Running and Ready, Job pods Succeeded (but the load test's, see kwok_stage), deleted pods
            # removed.
            *(f"--config={kwok_stage(cluster, stage)}" for stage in KWOK_STAGES),
            # The harness's own: Running pods made unready by a node blip get Ready again (stages/*.yaml).
            *(f"--config={stage}" for stage in sorted((HERE / "stages").glob("*.yaml"))),
        ],
    )
    _wait(cluster, "kwok", lambda: _node_ready(cluster), 60, f"kwok did not make node {cluster.node_name} Ready")


def apply_usage(cluster: Cluster) -> None:
    """The one ClusterResourceUsage of the harness: per-namespace overrides, else kwok's usage-from-annotation.

    kwok takes the first ClusterResourceUsage that matches a pod, in no set order, so the harness keeps a single
    one and writes the overrides into its CEL expressions: `pod.metadata.namespace == "ns" ? Quantity(v) : ...`.
    """
    upstream = yaml.safe_load(
        kwok_data("kustomize/metrics/usage/usage-from-annotation.yaml").read_text(encoding="utf-8")
    )
    usage = upstream["spec"]["usages"][0]["usage"]
    for resource in ("cpu", "memory"):
        expression = usage[resource]["expression"].strip()
        for namespace, values in sorted(cluster.usage.items()):
            if values.get(resource):
                expression = (
                    f"pod.metadata.namespace == {json.dumps(namespace)} ? "
                    f"Quantity({json.dumps(values[resource])}) : ({expression})"
                )
        usage[resource] = {"expression": expression}
    upstream["metadata"]["name"] = USAGE_NAME
    cluster.apply(upstream)


def running(state_dir: str | Path, name: str) -> Cluster:
    """The cluster `name` under state_dir, loaded; HarnessError when it is not running there."""
    cluster = Cluster.at(state_dir, name)
    if not cluster.load():
        raise HarnessError(f"cluster {name} is not running under {state_dir}")
    return cluster


def set_usage(
    state_dir: str | Path, name: str, namespace: str, cpu: str | None = None, memory: str | None = None
) -> None:
    """Simulate every pod of a namespace using this much CPU and memory (None: back to the default)."""
    cluster = running(state_dir, name)
    values = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    if values:
        cluster.usage[namespace] = values
    else:
        cluster.usage.pop(namespace, None)
    cluster.save()
    apply_usage(cluster)


def stop_apiserver(state_dir: str | Path, name: str) -> None:
    """Stop the cluster's kube-apiserver (an outage a test provokes); etcd and the other programs keep running."""
    cluster = running(state_dir, name)
    _stop_pid(cluster.pids["kube-apiserver"])


def start_apiserver_again(state_dir: str | Path, name: str) -> None:
    """Start the kube-apiserver stop_apiserver stopped, on the same port and etcd, and wait until it is ready."""
    cluster = running(state_dir, name)
    start_apiserver(cluster)


def set_node_ports(state_dir: str | Path, name: str, mappings: dict[int, str]) -> None:
    """Record where this host publishes the node's ports (node port -> "address:port"), as kind's
    extraPortMappings do; network.py sends a NodePort Service's traffic there."""
    cluster = running(state_dir, name)
    cluster.node_ports = {str(k): v for k, v in mappings.items()}
    cluster.save()


def set_node_mounts(state_dir: str | Path, name: str, mounts: dict[str, str]) -> None:
    """Record the host folders bound into the node (node path -> host folder), as kind's extraMounts do; the stand-in
    local-path-provisioner (storage.py) keeps its volumes in the one bound at /var/local-path-provisioner."""
    cluster = running(state_dir, name)
    cluster.node_mounts = dict(mounts)
    cluster.save()


def _established(cluster: Cluster, crd: str) -> bool:
    status, obj = cluster.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
    conds = ((obj.get("status") or {}).get("conditions") or []) if status == 200 else []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conds)


def _node_ready(cluster: Cluster) -> bool:
    status, node = cluster.request("GET", f"/api/v1/nodes/{cluster.node_name}")
    conds = ((node.get("status") or {}).get("conditions") or []) if status == 200 else []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def metrics_server_host_flags(cluster: Cluster, port: int) -> list[str]:
    """What metrics-server needs to run on this host: the components' credentials, 127.0.0.1:port, the serving
    certificate. The harness's own metrics-server and the chart's (workloads.py) both use these."""
    pki, kcfg = cluster.pki, cluster.components_kubeconfig
    return [
        f"--kubeconfig={kcfg}",
        f"--authentication-kubeconfig={kcfg}",
        f"--authorization-kubeconfig={kcfg}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
    ]


def start_metrics_server(cluster: Cluster) -> None:
    port = cluster.ports["metrics-server"]
    _spawn(
        cluster,
        "metrics-server",
        [
            binary("metrics-server"),
            *metrics_server_host_flags(cluster, port),
            # The flags the tree gives metrics-server on kind (--kubelet-insecure-tls), and the node's own port.
            "--kubelet-insecure-tls",
            "--kubelet-use-node-status-port",
            "--kubelet-preferred-address-types=InternalIP",
            f"--metric-resolution={METRIC_RESOLUTION}",
        ],
    )
    # The aggregated API: an ExternalName Service lets the API server reach the process on 127.0.0.1, as kwokctl's
    # binary runtime does (no kube-proxy routes a ClusterIP here).
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "harness-metrics-server", "namespace": "kube-system"},
            "spec": {
                "type": "ExternalName",
                "externalName": "127.0.0.1",
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"name": "harness-metrics-server", "namespace": "kube-system", "port": port},
            },
        }
    )
    _wait(
        cluster,
        "metrics-server",
        lambda: _node_metrics(cluster),
        90,
        "the metrics API did not serve the node's metrics",
    )


def start_network(cluster: Cluster) -> None:
    """The proxy that plays kube-proxy and the internet for the cluster (network.py)."""
    port = cluster.ports["proxy"]
    _spawn(cluster, "proxy", [sys.executable, HERE / "network.py", "--cluster-root", cluster.root])

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return network.socket_path(cluster.root).exists()

    _wait(cluster, "proxy", listening, 120, "the harness network proxy did not listen")


def proxy_environment(cluster: Cluster) -> dict[str, str]:
    """What a Flux controller needs to reach the chart repositories and Services: the proxy, and trust in its CA."""
    proxy = f"http://127.0.0.1:{cluster.ports['proxy']}"
    return {
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "SSL_CERT_FILE": str(cluster.root / "charts" / "pki" / "ca.crt"),
    }


def _node_metrics(cluster: Cluster) -> bool:
    status, _body = cluster.request("GET", f"/apis/metrics.k8s.io/v1beta1/nodes/{cluster.node_name}")
    return status == 200


def start(
    state_dir: str | Path,
    name: str = DEFAULT_NAME,
    node_labels: dict[str, str] | None = None,
    *,
    kubelet: bool = True,
    metrics_api: bool = True,
) -> Cluster:
    """Start the cluster (or return the running one). kubelet=False registers the node but runs no kwok and no
    metrics-server, so the node never turns Ready: a node whose kubelet never reports. metrics_api=False leaves
    v1beta1.metrics.k8s.io to whatever installs it (the metrics-server chart).

    A start that fails is made once more from scratch, with new ports, and says so on stderr: the ports are picked
    free (free_port) and bound by the programs a moment later, and in between another process on this machine (an
    outgoing connection takes an ephemeral port from the same range) may take one; and on a busy 2-core machine a
    program may miss its readiness deadline once. A second failure is raised."""
    cluster = Cluster.at(state_dir, name)
    if cluster.load() and all(_alive(p) for p in cluster.pids.values()):
        return cluster
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return _start_once(state_dir, name, node_labels, kubelet=kubelet, metrics_api=metrics_api)
        except HarnessError as exc:
            if attempt == START_ATTEMPTS:
                raise
            print(f"harness: cluster {name} did not start ({exc}); starting it again", file=sys.stderr)
    raise AssertionError("unreachable")  # pragma: no cover


START_ATTEMPTS = 2


def _start_once(
    state_dir: str | Path,
    name: str,
    node_labels: dict[str, str] | None,
    *,
    kubelet: bool,
    metrics_api: bool,
) -> Cluster:
    cluster = Cluster.at(state_dir, name)
    stop(state_dir, name)
    cluster.root.mkdir(parents=True)
    cluster.root.chmod(0o700)
    cluster.node_labels = dict(node_labels or {})
    # STANDIN_PROXY_PORT: a port chosen by the caller for the network proxy, so that processes started before the
    # cluster (an ansible-playbook run that creates it) can be given HTTPS_PROXY for it.
    cluster.ports = {
        p: (
            int(os.environ["STANDIN_PROXY_PORT"])
            if p == "proxy" and os.environ.get("STANDIN_PROXY_PORT")
            else free_port()
        )
        for p in (
            "etcd",
            "etcd-peer",
            "apiserver",
            "controller-manager",
            "scheduler",
            "kwok",
            "metrics-server",
            "proxy",
        )
    }
    cluster.save()
    try:
        make_pki(cluster.pki)
        cluster.write_components_kubeconfig()
        start_etcd(cluster)
        start_apiserver(cluster)
        start_network(cluster)
        start_controllers(cluster)
        if kubelet:
            start_kwok(cluster)
            # kind's default StorageClass, served by the stand-in provisioner in the workloads loop (storage.py).
            storage.ensure_storage_class(cluster)
            if metrics_api:
                start_metrics_server(cluster)
            # The programs behind Deployments (Flux, the chart's metrics-server) run while those exist.
            _spawn(cluster, "workloads", [sys.executable, HERE / "workloads.py", "--cluster-root", cluster.root])
        else:
            cluster.apply(_node(cluster))
    except BaseException:
        if not os.environ.get("FILEWCOUNT_HARNESS_KEEP"):
            stop(state_dir, name)
        raise
    return cluster


ORDER = (
    "workloads",
    "metrics-server",
    "kwok",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "proxy",
    "etcd",
)


def kubectl(kubeconfig: str | Path, *args: str, stdin: str | None = None, check: bool = True):
    """Run the harness's kubectl (the pinned version) against kubeconfig; check=True raises on a failure."""
    argv = [str(binary("kubectl")), "--kubeconfig", str(kubeconfig), *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise HarnessError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc


def tree_manifests(path: str | Path, settings: dict[str, str] | None = None) -> str:
    """What Flux applies of a tree directory (kustomize build) or file, for tests that apply it with kubectl.

    The Kustomizations of kube/clusters substitute the cluster settings (substituteStrategy Always), so every
    ${name:=default} becomes the setting's value, or its default without one (flux_varsub.py).
    """
    path = Path(path)
    if path.is_dir():
        argv = [str(binary("kubectl")), "kustomize", str(path)]
        text = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    else:  # as kustomize prints it: without the comments, which Flux never sees
        docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
        text = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs if d)
    done, missing = flux_varsub.substitute(text, settings or {})
    if missing:
        raise HarnessError(f"{path}: ${{{missing[0]}}} has no value and no default")
    return done


def apply_gateway_api_crds(kubeconfig: str | Path) -> str:
    """Apply the tree's Gateway API CRDs (kube/infrastructure/crds), wait until they are served; kubectl's output.

    On a cluster Flux applies them (Kustomization infrastructure-crds) before kube/apps, whose HTTPRoute needs
    them; tests that apply kube/apps alone call this first, as that order would.
    """
    crds = HERE.parents[1] / "kube" / "infrastructure" / "crds"
    applied = kubectl(kubeconfig, "apply", "--server-side", "-k", str(crds)).stdout
    for kind in ("gatewayclasses", "gateways", "httproutes"):
        wait_established(kubeconfig, f"{kind}.gateway.networking.k8s.io")
    return applied


def keda_chart() -> tuple[dict, Path]:
    """The tree's keda HelmRelease and the source of the chart version it pins, from ../shared/charts."""
    release = yaml.safe_load((HERE.parents[1] / "kube/infrastructure/controllers/keda/helmrelease.yaml").read_text())
    return release, chartrepo.charts_dir() / f"keda-{release['spec']['chart']['spec']['version']}"


def apply_keda_crds(kubeconfig: str | Path) -> str:
    """Apply KEDA's CRDs as the tree's keda HelmRelease installs them (the chart's templates/crds, rendered by the
    harness's Helm from ../shared/charts), wait until ScaledObjects are served; kubectl's output.

    On a cluster the keda HelmRelease (infrastructure-controllers) installs them before kube/apps, whose
    ScaledObject needs them; tests that apply kube/apps alone, without KEDA running, call this first.
    """
    _release, chart = keda_chart()
    crds = sorted(p.relative_to(chart).as_posix() for p in (chart / "templates" / "crds").glob("*.yaml"))
    rendered = subprocess.run(
        [str(binary("helm")), "template", "keda", str(chart), "--namespace=keda", *(f"--show-only={c}" for c in crds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    applied = kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=rendered).stdout
    wait_established(kubeconfig, "scaledobjects.keda.sh")
    return applied


def wait_established(kubeconfig: str | Path, crd: str, timeout: float = 60) -> None:
    """Wait until a CRD is Established. Polled rather than `kubectl wait`, which fails at once on a CRD whose
    status has no conditions yet (just created)."""
    established = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    wait_for(
        f"CRD {crd} to be Established",
        lambda: kubectl(kubeconfig, "get", "crd", crd, "-o", established, check=False).stdout == "True",
        timeout,
    )


def apply_app_crds(kubeconfig: str | Path) -> str:
    """The CRDs kube/apps needs (Gateway API for its HTTPRoute, KEDA for its ScaledObject), for tests that apply it
    alone; on a cluster Flux's Kustomizations apply them first."""
    return apply_gateway_api_crds(kubeconfig) + apply_keda_crds(kubeconfig)


def wait_for(what: str, predicate, timeout: float, interval: float = 1.0):
    """Poll predicate until it returns something true and return that; raise after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise HarnessError(f"{what} did not happen within {timeout} s (last: {last!r})")


def _workload_leftovers(root: Path) -> list[int]:
    with contextlib.suppress(FileNotFoundError, ValueError):
        data = json.loads((root / "flux" / "processes.json").read_text(encoding="utf-8"))
        return [c["pid"] for c in data.get("controllers", {}).values()]
    return []


def stop(state_dir: str | Path, name: str = DEFAULT_NAME) -> bool:
    """End every process of the cluster (dependants first) and remove its folder; False when none was there."""
    cluster = Cluster.at(state_dir, name)
    if not cluster.root.exists():
        return False
    cluster.load()
    for proc in ORDER:
        pid = cluster.pids.get(proc)
        if pid:
            _stop_pid(pid)
    # The supervisor stops its controllers; should it have died, its record still names them.
    for pid in _workload_leftovers(cluster.root):
        _stop_pid(pid)
    network.socket_path(cluster.root).unlink(missing_ok=True)
    shutil.rmtree(cluster.root, ignore_errors=True)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status", "usage"))
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--kubeconfig", help="also write a kubeconfig with the context kind-<name> (or --context) here")
    parser.add_argument("--context", help="start: the kubeconfig's context name (default kind-<name>)")
    parser.add_argument("--node-label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--namespace", help="usage: the namespace whose pods get the simulated usage")
    parser.add_argument("--cpu", help="usage: CPU each container uses, e.g. 200m (omit both to reset)")
    parser.add_argument("--memory", help="usage: memory each container uses, e.g. 64Mi")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            labels = dict(item.split("=", 1) for item in args.node_label)
            started = time.monotonic()
            cluster = start(args.state_dir, args.name, labels)
            path = Path(args.kubeconfig) if args.kubeconfig else cluster.root / "kubeconfig"
            path.write_text(yaml.safe_dump(cluster.kubeconfig(args.context or f"kind-{args.name}")), encoding="utf-8")
            path.chmod(0o600)
            sys.stderr.write(f"cluster {args.name} ready in {time.monotonic() - started:.1f} s\n")
            print(f"KUBECONFIG={path}")
        elif args.action == "usage":
            if not args.namespace:
                parser.error("usage needs --namespace")
            set_usage(args.state_dir, args.name, args.namespace, args.cpu, args.memory)
        elif args.action == "stop":
            print("stopped" if stop(args.state_dir, args.name) else "not running")
        else:
            cluster = Cluster.at(args.state_dir, args.name)
            if not cluster.load():
                print("not running")
                return 1
            states = {n: ("running" if _alive(p) else "exited") for n, p in cluster.pids.items()}
            print(json.dumps({"server": cluster.server, "processes": states}, indent=2))
            return 0 if all(s == "running" for s in states.values()) else 1
    except HarnessError as exc:
        sys.stderr.write(f"harness: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
