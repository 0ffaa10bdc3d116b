"""The real programs behind a harness cluster's Deployments, run as host processes while the Deployments exist.

kwok makes the pods of every Deployment Running and Ready but runs nothing. For the Deployments whose program the
harness has built from its Go module (build-testbin.sh), this supervisor plays the kubelet's other half: when
the Deployment exists it runs the program on this host, restarts it when it exits (as the kubelet restarts a
container) and stops it when the Deployment is deleted. The programs (WORKLOADS):

- the Flux controllers, `flux-system/{source,kustomize,helm,notification}-controller`, at the versions Flux
  v2.9.4 ships, with KUBECONFIG and RUNTIME_NAMESPACE=flux-system, as `flux install` / the flux_bootstrap module
  apply them;
- metrics-server, `kube-system/metrics-server`, as the tree's HelmRelease installs it, with the container's own
  arguments (the chart's defaults and the tree's values) except those naming paths inside the container;
- the applications, on a cluster that does not publish their node port on a host port (one `cluster.py start`
  made, as an existing cluster; the stand-in kind records `node_ports` and serves them itself):
  `filewcount/filewcount` (30080), `monitoring/kube-prometheus-stack-grafana` (30081) and `git-server/git-server`
  (30082), each played by its node-port stand-in (nodeports/server.py with np_<node port>.py, state in
  <cluster>/apps) on a free port. One kwok ClusterPortForward per running application (`harness-<namespace>-<name>`,
  the Deployment's namespace, its container ports to the process) lets `kubectl port-forward` reach it through
  the API server and kwok's kubelet server.

Each program's named container ports are registered in <cluster>/backends.json for every Service that selects
the Deployment's pods, so network.py sends a Service's traffic (the API server's to the chart's
v1beta1.metrics.k8s.io APIService, for one) to the process.

Started with the cluster and not with the Deployments on purpose: it must be running to notice a Deployment, and
the programs need what bootstrap installs (CRDs, the APIService), which the harness must not apply itself.

Differences from a cluster, all because the programs run on the host (but the first):
- kustomize- and helm-controller re-check a dependency that was not ready after 5s, not their default 30s
  (`--requeue-dependency`, a flag of theirs): the harness has no image pulls to overlap those waits with;
- every address is 127.0.0.1 on a free port: metrics, health, source-controller's artifact storage (advertised
  as 127.0.0.1:<port>, so kustomize- and helm-controller fetch artifacts from it), notification-controller's
  event receiver (the other controllers post their events to it), metrics-server's secure port;
- the programs authenticate as `harness:components` (a system:masters client certificate), not with their
  ServiceAccount tokens, so the audit log keeps them apart from the product's `kubernetes-admin`;
- the Flux controllers reach the network through network.py (HTTPS_PROXY/HTTP_PROXY) and trust its CA through
  SSL_CERT_FILE: the tree's HelmRepository URLs answer with the charts of ../shared/charts, Service names resolve;
- kind's local-path-provisioner is played by storage.py, one pass per loop;
- the load test's Job pods (label app.kubernetes.io/name=filewcount-load-test) have their command run on this host
  by jobs.py, one pass per loop, which sets their status and serves their log when the command ends;
- cert-manager's programs cannot be built here, so certmanager.py stands in for them (a STAND-IN, not the real
  programs): its webhook behind Deployment cert-manager/cert-manager-webhook, and, while that Deployment of the
  chart exists, one pass of its cainjector and issuing controller per loop;
- while prometheus-operator's Deployment exists, prometheus.py's query API stand-in plays the Prometheus it would
  run, and one pass per loop creates the StatefulSet the operator would make (so Prometheus's pod and claim exist).

State: <cluster>/flux/processes.json (pid and ports per running program), logs in <cluster>/logs/<name>.log.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import certmanager
import cluster as harness
import jobs
import prometheus
import storage

NAMESPACE = "flux-system"
CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller", "notification-controller")
RESTART_BACKOFF = 10.0
KEDA_NAMESPACE = "keda"
KEDA_OPERATOR = "keda-operator"
KEDA_ADAPTER = "keda-operator-metrics-apiserver"
KEDA_BINARIES = {KEDA_OPERATOR: "keda-operator", KEDA_ADAPTER: "keda-adapter"}
# Arguments of KEDA's containers that name addresses or paths inside the container; replaced on the host.
KEDA_CONTAINER_ONLY_FLAGS = (
    "--leader-elect",
    "--cert-dir",
    "--ca-dir",
    "--metrics-bind-address",
    "--health-probe-bind-address",
    "--metrics-service-bind-address",
    "--profiling-bind-address",
    "--port=",
    "--secure-port",
    "--client-ca-file",
    "--tls-cert-file",
    "--tls-private-key-file",
)
# How soon kustomize- and helm-controller look again at a dependency (dependsOn, a HelmChart, a source artifact)
# that was not ready: 30s by default. The tree chains eight of them, so a bootstrap here would spend minutes
# waiting on timers; a real cluster spends that time pulling images instead.
DEPENDENCY_WAITERS = ("kustomize-controller", "helm-controller")
REQUEUE_DEPENDENCY = "5s"


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    # Container port name -> the key of the process's port that answers it.
    container_ports: tuple[tuple[str, str], ...] = ()
    # An application played by nodeports/np_<node_port>.py; run only when the cluster publishes no host port for it.
    node_port: int | None = None


WORKLOADS = (
    Workload(NAMESPACE, "source-controller", (("http", "storage"),)),
    Workload(NAMESPACE, "kustomize-controller"),
    Workload(NAMESPACE, "helm-controller"),
    Workload(NAMESPACE, "notification-controller", (("http", "events"), ("http-webhook", "receiver"))),
    Workload("kube-system", "metrics-server", (("https", "secure"),)),
    Workload("filewcount", "filewcount", (("http", "app"),), node_port=30080),
    # kube-prometheus-stack's Grafana subchart: Deployment <release>-grafana, container port `grafana` (3000).
    Workload("monitoring", "kube-prometheus-stack-grafana", (("grafana", "app"),), node_port=30081),
    Workload("git-server", "git-server", (("http", "app"),), node_port=30082),
    # The chart's webhook Deployment, played by the cert-manager stand-in (certmanager.py: not the real program).
    Workload(certmanager.NAMESPACE, certmanager.WEBHOOK, (("https", "secure"),)),
    # KEDA's operator (the image's /keda) and metrics API server (/keda-adapter), the real programs.
    Workload(KEDA_NAMESPACE, KEDA_OPERATOR, (("metricsservice", "grpc"), ("metrics", "metrics"))),
    Workload(KEDA_NAMESPACE, KEDA_ADAPTER, (("https", "secure"), ("metrics", "metrics"))),
    # kube-prometheus-stack's prometheus-operator Deployment, played by the Prometheus query API stand-in
    # (prometheus.py: not Prometheus, not the operator), which answers for the Service of the Prometheus it would run.
    Workload(prometheus.NAMESPACE, prometheus.OPERATOR),
)
BY_NAME = {w.name: w for w in WORKLOADS}
NODEPORTS = Path(__file__).resolve().parent / "nodeports"
# What the supervisor's ClusterPortForwards carry, to find its own.
PORT_FORWARD_LABEL = "harness.filewcount.io/port-forward"
PORT_FORWARDS = "/apis/kwok.x-k8s.io/v1alpha1/clusterportforwards"

# Arguments of the metrics-server container that name paths or ports inside the container; replaced on the host.
CONTAINER_ONLY_FLAGS = ("--secure-port", "--cert-dir", "--tls-cert-file", "--tls-private-key-file", "--bind-address")


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Supervisor:
    def __init__(self, state: harness.Cluster):
        self.cluster = state
        self.root = state.root / "flux"
        self.root.mkdir(exist_ok=True)
        self.running: dict[str, dict] = {}
        self.started_at: dict[str, float] = {}
        self.deployments: dict[str, dict] = {}
        # Fixed for the cluster's life, so every controller knows where to send events before the receiver runs.
        self.events_port = harness.free_port()
        # The load test's Job pods: their command on this host (jobs.py).
        self.load_tests = jobs.LoadTestJobs(state)

    # --- the programs ---------------------------------------------------------------------------------------
    def ports(self, name: str) -> dict[str, int]:
        keys = ["metrics", "health"]
        if name == "source-controller":
            keys.append("storage")
        if name == "notification-controller":
            keys.append("receiver")
        if name in ("metrics-server", certmanager.WEBHOOK):
            keys = ["secure"]
        if name == KEDA_OPERATOR:
            keys = ["metrics", "health", "grpc"]
        if name == KEDA_ADAPTER:
            keys = ["secure", "metrics"]
        if name == prometheus.OPERATOR:
            keys = ["app"]
        if BY_NAME[name].node_port:
            keys = ["app"]
        ports = {key: harness.free_port() for key in keys}
        if name == "notification-controller":
            ports["events"] = self.events_port
        return ports

    def argv(self, name: str, ports: dict[str, int]) -> list:
        if name == "metrics-server":
            return self.metrics_server_argv(ports)
        if name in KEDA_BINARIES:
            return self.keda_argv(name, ports)
        if name == prometheus.OPERATOR:
            return [
                sys.executable,
                Path(prometheus.__file__).resolve(),
                f"--cluster-root={self.cluster.root}",
                f"--port={ports['app']}",
            ]
        if name == certmanager.WEBHOOK:
            return [
                sys.executable,
                Path(certmanager.__file__).resolve(),
                "webhook",
                f"--cluster-root={self.cluster.root}",
                f"--port={ports['secure']}",
            ]
        node_port = BY_NAME[name].node_port
        if node_port:
            # The node-port stand-in's handler, reading the cluster as the harness's components.
            apps = self.cluster.root / "apps"
            apps.mkdir(exist_ok=True)
            return [
                sys.executable,
                NODEPORTS / "server.py",
                f"--kubeconfig={self.cluster.components_kubeconfig}",
                "--context=harness",
                f"--state-dir={apps}",
                f"--map=127.0.0.1:{ports['app']}={node_port}",
            ]
        args = [
            harness.binary(name),
            f"--metrics-addr=127.0.0.1:{ports['metrics']}",
            f"--health-addr=127.0.0.1:{ports['health']}",
            "--enable-leader-election=false",
            "--watch-all-namespaces=true",
            "--log-level=info",
            "--log-encoding=json",
        ]
        if name in DEPENDENCY_WAITERS:
            args.append(f"--requeue-dependency={REQUEUE_DEPENDENCY}")
        if name == "notification-controller":
            args += [f"--events-addr=127.0.0.1:{self.events_port}", f"--receiverAddr=127.0.0.1:{ports['receiver']}"]
        else:
            args.append(f"--events-addr=http://127.0.0.1:{self.events_port}/")
        if name == "source-controller":
            storage_dir = self.root / "source-controller-storage"
            storage_dir.mkdir(exist_ok=True)
            args += [
                f"--storage-path={storage_dir}",
                f"--storage-addr=127.0.0.1:{ports['storage']}",
                f"--storage-adv-addr=127.0.0.1:{ports['storage']}",
            ]
        return args

    def metrics_server_argv(self, ports: dict[str, int]) -> list:
        """The Deployment's container arguments, with the host's port, certificate and credentials."""
        spec = self.deployments["metrics-server"]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        kept = [a for a in container.get("args") or [] if not a.startswith(CONTAINER_ONLY_FLAGS)]
        return [
            harness.binary("metrics-server"),
            *kept,
            *harness.metrics_server_host_flags(self.cluster, ports["secure"]),
        ]

    # --- KEDA -----------------------------------------------------------------------------------------------
    def keda_dir(self, folder: str) -> Path:
        path = self.cluster.root / "keda" / folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    def keda_argv(self, name: str, ports: dict[str, int]) -> list:
        """The chart's container arguments, with this host's addresses, certificate folder and credentials."""
        container = self.deployments[name]["spec"]["template"]["spec"]["containers"][0]
        kept = [a for a in container.get("args") or [] if not a.startswith(KEDA_CONTAINER_ONLY_FLAGS)]
        certs = self.keda_dir("certs")
        if name == KEDA_OPERATOR:
            host = [
                # One operator per cluster here; the chart's --leader-elect only makes a restart wait for the lease.
                "--leader-elect=false",
                f"--cert-dir={certs}",
                f"--ca-dir={self.keda_dir('ca')}",
                f"--metrics-bind-address=127.0.0.1:{ports['metrics']}",
                f"--health-probe-bind-address=127.0.0.1:{ports['health']}",
                f"--metrics-service-bind-address=127.0.0.1:{ports['grpc']}",
            ]
        else:
            kcfg = self.cluster.components_kubeconfig
            host = [
                f"--port={ports['metrics']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['secure']}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'tls.crt'}",
                f"--tls-private-key-file={certs / 'tls.key'}",
                f"--client-ca-file={certs / 'ca.crt'}",
                f"--lister-kubeconfig={kcfg}",
                f"--authentication-kubeconfig={kcfg}",
                f"--authorization-kubeconfig={kcfg}",
            ]
        return [harness.binary(KEDA_BINARIES[name]), *kept, *host]

    def keda_environment(self, name: str) -> dict[str, str]:
        """The container's literal env values, and what the pod would give it (its namespace, its name)."""
        container = self.deployments[name]["spec"]["template"]["spec"]["containers"][0]
        # An empty value (WATCH_NAMESPACE: all namespaces) comes back from the API server as no value at all.
        env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "valueFrom" not in e}
        return {
            **env,
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "POD_NAME": f"{name}-harness",
            "OPERATOR_NAME": KEDA_OPERATOR,
            # Read from the ServiceAccount's mounted namespace file in a pod.
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
        }

    def sync_keda_certificates(self) -> None:
        """Play the Secret volume of KEDA's pods: the operator writes its CA and serving certificate to the Secret
        keda/kedaorg-certs and waits for them in its certificate folder; the metrics API server reads them there."""
        status, secret = self.cluster.request("GET", f"/api/v1/namespaces/{KEDA_NAMESPACE}/secrets/kedaorg-certs")
        if status != 200 or not isinstance(secret, dict):
            return
        certs = self.keda_dir("certs")
        for key, value in (secret.get("data") or {}).items():
            data = base64.b64decode(value)
            path = certs / key
            with contextlib.suppress(FileNotFoundError):
                if path.read_bytes() == data:
                    continue
            tmp = path.with_name(f".{key}.tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o600)
            tmp.replace(path)

    def start(self, name: str) -> None:
        ports = self.ports(name)
        env = {
            "KUBECONFIG": str(self.cluster.components_kubeconfig),
            "RUNTIME_NAMESPACE": NAMESPACE,
            # Chart repositories at their real URLs and Services by name (network.py), as Flux documents a proxy.
            **harness.proxy_environment(self.cluster),
            **(self.keda_environment(name) if name in KEDA_BINARIES else {}),
        }
        pid = harness.popen(self.cluster.logs / f"{name}.log", self.argv(name, ports), self.cluster.root, env)
        self.running[name] = {"pid": pid, "ports": ports}
        self.started_at[name] = time.monotonic()
        self.save()

    def stop(self, name: str) -> None:
        entry = self.running.pop(name, None)
        if entry:
            harness._stop_pid(entry["pid"])
        self.save()
        if BY_NAME[name].node_port:
            with contextlib.suppress(OSError):
                self.cluster.request("DELETE", f"{PORT_FORWARDS}/{port_forward_name(BY_NAME[name])}")

    def save(self) -> None:
        data = {"events_port": self.events_port, "controllers": self.running}
        tmp = self.root / "processes.json.tmp"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(self.root / "processes.json")

    # --- Services -> processes (network.py reads backends.json) ---------------------------------------------
    def backends(self) -> dict[str, str] | None:
        try:
            status, body = self.cluster.request("GET", "/api/v1/services")
        except OSError:
            return None
        if status != 200 or not isinstance(body, dict):
            return None
        found = {}
        for workload in WORKLOADS:
            entry, deployment = self.running.get(workload.name), self.deployments.get(workload.name)
            if not entry or not deployment:
                continue
            template = deployment["spec"]["template"]
            labels = (template.get("metadata") or {}).get("labels") or {}
            named = {
                p.get("name"): p.get("containerPort")
                for c in template["spec"]["containers"]
                for p in c.get("ports") or []
            }
            by_name = dict(workload.container_ports)
            for service in body.get("items") or []:
                meta, spec = service["metadata"], service.get("spec") or {}
                if meta["namespace"] != workload.namespace or not _selects(spec.get("selector") or {}, labels):
                    continue
                for port in spec.get("ports") or []:
                    target = port.get("targetPort", port["port"])
                    name = (
                        target if isinstance(target, str) else next((n for n, v in named.items() if v == target), None)
                    )
                    if name in by_name:
                        key = f"{workload.namespace}/{meta['name']}:{port['port']}"
                        found[key] = f"127.0.0.1:{entry['ports'][by_name[name]]}"
        standin = self.running.get(prometheus.OPERATOR)
        if standin and prometheus.OPERATOR in self.deployments:
            # The Prometheus the operator would run, played by the query API stand-in.
            key = f"{prometheus.NAMESPACE}/{prometheus.SERVICE}:{prometheus.SERVICE_PORT}"
            found[key] = f"127.0.0.1:{standin['ports']['app']}"
        return found

    def write_backends(self) -> None:
        found = self.backends()
        if found is None:
            return
        path = self.cluster.root / "backends.json"
        text = json.dumps(found, indent=2, sort_keys=True)
        with contextlib.suppress(FileNotFoundError):
            if path.read_text(encoding="utf-8") == text:
                return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    # --- kubectl port-forward to the applications (kwok's ClusterPortForward) -------------------------------
    def port_forwards(self) -> dict[str, dict]:
        """The ClusterPortForward each running application needs: its container ports to its process."""
        wanted = {}
        for name, entry in self.running.items():
            workload, deployment = BY_NAME[name], self.deployments.get(name)
            if not workload.node_port or not deployment:
                continue
            by_name = dict(workload.container_ports)
            ports = sorted(
                {
                    p["containerPort"]
                    for c in deployment["spec"]["template"]["spec"]["containers"]
                    for p in c.get("ports") or []
                    if p.get("name") in by_name
                }
            )
            if not ports:
                continue
            wanted[port_forward_name(workload)] = {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterPortForward",
                "metadata": {"name": port_forward_name(workload), "labels": {PORT_FORWARD_LABEL: "true"}},
                "spec": {
                    "selector": {"matchNamespaces": [workload.namespace]},
                    "forwards": [{"ports": ports, "target": {"address": "127.0.0.1", "port": entry["ports"]["app"]}}],
                },
            }
        return wanted

    def write_port_forwards(self) -> None:
        wanted = self.port_forwards()
        try:
            status, body = self.cluster.request("GET", f"{PORT_FORWARDS}?labelSelector={PORT_FORWARD_LABEL}")
        except OSError:
            return
        if status != 200 or not isinstance(body, dict):
            return  # kwok's CRD missing (an older testbin) or the API is down: nothing to forward to
        present = {item["metadata"]["name"]: item for item in body.get("items") or []}
        for name in sorted(set(present) - set(wanted)):
            with contextlib.suppress(OSError):
                self.cluster.request("DELETE", f"{PORT_FORWARDS}/{name}")
        for name, obj in sorted(wanted.items()):
            if name in present and present[name].get("spec") == obj["spec"]:
                continue
            with contextlib.suppress(OSError):
                status, answer = self.cluster.request(
                    "PATCH",
                    f"{PORT_FORWARDS}/{name}?fieldManager=harness&force=true",
                    obj,
                    content_type="application/apply-patch+yaml",
                )
                if status >= 300:
                    sys.stderr.write(f"workloads: cannot apply ClusterPortForward {name}: HTTP {status} {answer}\n")

    # --- the loop -------------------------------------------------------------------------------------------
    def published(self) -> set[str]:
        """The node ports the cluster publishes on host ports (the stand-in kind records them in cluster.json)."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            self.cluster.load()
        return set(self.cluster.node_ports)

    def wanted(self) -> set[str] | None:
        """The workloads whose Deployment exists and is not being deleted, minus the applications whose node port
        a host port serves; None when the API did not answer."""
        published = self.published()
        runnable = [w for w in WORKLOADS if not w.node_port or str(w.node_port) not in published]
        found = {}
        for namespace in sorted({w.namespace for w in runnable}):
            try:
                status, body = self.cluster.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")
            except OSError:
                return None
            if status == 404:
                continue
            if status != 200 or not isinstance(body, dict):
                return None
            names = {w.name for w in runnable if w.namespace == namespace}
            for d in body.get("items") or []:
                if d["metadata"]["name"] in names and not d["metadata"].get("deletionTimestamp"):
                    found[d["metadata"]["name"]] = d
        self.deployments = found
        return set(found)

    def reconcile_once(self) -> None:
        wanted = self.wanted()
        if wanted is None:  # the API server is down (a test may stop it): change nothing
            return
        for name in sorted(set(self.running) - wanted):
            self.stop(name)
        now = time.monotonic()
        for name in sorted(wanted):
            entry = self.running.get(name)
            if entry and harness._alive(entry["pid"]):
                continue
            if entry and now - self.started_at.get(name, 0) < RESTART_BACKOFF:
                continue
            try:
                self.start(name)
            except (harness.HarnessError, OSError) as exc:
                # Logged and tried again on the next pass; the other programs keep running.
                sys.stderr.write(f"workloads: cannot start {name}: {exc}\n")
                self.started_at[name] = now
        self.write_backends()
        self.write_port_forwards()
        with contextlib.suppress(OSError):
            storage.reconcile_volumes(self.cluster)
        self.load_tests.reconcile_once()
        if certmanager.WEBHOOK in self.deployments:  # the chart is installed: its cainjector and controller stand-ins
            with contextlib.suppress(OSError, ValueError, KeyError):
                certmanager.reconcile(self.cluster)
        if KEDA_OPERATOR in self.deployments:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.sync_keda_certificates()
        if prometheus.OPERATOR in self.deployments:  # the StatefulSet the operator would make (prometheus.py)
            with contextlib.suppress(OSError, ValueError, KeyError):
                done = prometheus.reconcile_statefulset(self.cluster)
                if done:
                    sys.stderr.write(f"workloads: prometheus-operator stand-in {done}\n")

    def run(self, interval: float = 1.0) -> None:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_args: stopping.append(True))
        try:
            while not stopping:
                self.reconcile_once()
                time.sleep(interval)
        finally:
            self.load_tests.stop_all()
            for name in list(self.running):
                self.stop(name)


def port_forward_name(workload: Workload) -> str:
    return f"harness-{workload.namespace}-{workload.name}"


def readyz(root: Path, name: str) -> bool:
    """Whether the Flux controller `name` answers its health endpoint's /readyz."""
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, OSError):
        data = json.loads((root / "flux" / "processes.json").read_text(encoding="utf-8"))
        port = data["controllers"][name]["ports"]["health"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    return False


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Run the programs behind a harness cluster's Deployments.")
    parser.add_argument("--cluster-root", required=True, help="the cluster's folder (<state-dir>/clusters/<name>)")
    args = parser.parse_args(argv)
    root = Path(args.cluster_root)
    state = harness.Cluster(name=root.name, root=root)
    if not state.load():
        sys.stderr.write(f"workloads: no cluster at {root}\n")
        return 1
    Supervisor(state).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
