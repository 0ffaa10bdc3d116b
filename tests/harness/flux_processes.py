"""The real Flux controllers of the harness, run as host processes while their Deployments exist.

kwok makes the pods of flux-system's Deployments Running and Ready but runs nothing; this supervisor plays the
kubelet's other half for Flux: when the Deployment `flux-system/<controller>` of a Flux controller exists (as
`flux install` / the flux_bootstrap module apply it), it runs that controller, built from its Go module at the
version Flux v2.9.4 ships (build-testbin.sh), on this host with KUBECONFIG and RUNTIME_NAMESPACE=flux-system;
when the Deployment is deleted it stops it, and it restarts one that exits, as the kubelet restarts a container.

Started with the cluster and not with the Deployments on purpose: the controllers need their CRDs, which only
bootstrap installs, so running them from the start would mean applying CRDs the product did not ask for.

Differences from Flux in a cluster, all because the processes run on the host:
- every address is 127.0.0.1 on a free port: metrics, health, source-controller's artifact storage (advertised
  as 127.0.0.1:<port>, so kustomize- and helm-controller fetch artifacts from it) and notification-controller's
  event receiver, which the other controllers post their events to;
- the controllers authenticate with the harness's admin client certificate, not their ServiceAccount tokens;
- they reach the internet through HTTPS_PROXY, the harness's chart repository proxy (chartrepo.py), and trust its
  CA through SSL_CERT_FILE: the tree's HelmRepository URLs answer with the charts of ../shared/charts.

State: <cluster>/flux/processes.json (pid and ports per running controller), logs in <cluster>/logs/<name>.log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
import urllib.request
from pathlib import Path

import cluster as harness

NAMESPACE = "flux-system"
CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller", "notification-controller")
RESTART_BACKOFF = 10.0


class Supervisor:
    def __init__(self, state: harness.Cluster):
        self.cluster = state
        self.root = state.root / "flux"
        self.root.mkdir(exist_ok=True)
        self.running: dict[str, dict] = {}
        self.started_at: dict[str, float] = {}
        # Fixed for the cluster's life, so every controller knows where to send events before the receiver runs.
        self.events_port = harness.free_port()

    # --- the programs ---------------------------------------------------------------------------------------
    def argv(self, name: str, ports: dict[str, int]) -> list:
        args = [
            harness.binary(name),
            f"--metrics-addr=127.0.0.1:{ports['metrics']}",
            f"--health-addr=127.0.0.1:{ports['health']}",
            "--enable-leader-election=false",
            "--watch-all-namespaces=true",
            "--log-level=info",
            "--log-encoding=json",
        ]
        if name == "notification-controller":
            args += [f"--events-addr=127.0.0.1:{self.events_port}", f"--receiverAddr=127.0.0.1:{ports['receiver']}"]
        else:
            args.append(f"--events-addr=http://127.0.0.1:{self.events_port}/")
        if name == "source-controller":
            storage = self.root / "source-controller-storage"
            storage.mkdir(exist_ok=True)
            args += [
                f"--storage-path={storage}",
                f"--storage-addr=127.0.0.1:{ports['storage']}",
                f"--storage-adv-addr=127.0.0.1:{ports['storage']}",
            ]
        return args

    def start(self, name: str) -> None:
        ports = {"metrics": harness.free_port(), "health": harness.free_port()}
        if name == "source-controller":
            ports["storage"] = harness.free_port()
        if name == "notification-controller":
            ports["receiver"] = harness.free_port()
        env = {
            "KUBECONFIG": str(self.cluster.admin_kubeconfig),
            "RUNTIME_NAMESPACE": NAMESPACE,
            # Chart repositories at their real URLs (chartrepo.py), as Flux documents egress through a proxy.
            **harness.proxy_environment(self.cluster),
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

    def save(self) -> None:
        data = {"events_port": self.events_port, "controllers": self.running}
        tmp = self.root / "processes.json.tmp"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(self.root / "processes.json")

    # --- the loop -------------------------------------------------------------------------------------------
    def wanted(self) -> set[str] | None:
        """The controllers whose Deployment exists and is not being deleted; None when the API did not answer."""
        try:
            status, body = self.cluster.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")
        except OSError:
            return None
        if status == 404:
            return set()
        if status != 200 or not isinstance(body, dict):
            return None
        return {
            d["metadata"]["name"]
            for d in body.get("items", [])
            if d["metadata"]["name"] in CONTROLLERS and not d["metadata"].get("deletionTimestamp")
        }

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
                # Logged and tried again on the next pass; the other controllers keep running.
                sys.stderr.write(f"flux_processes: cannot start {name}: {exc}\n")
                self.started_at[name] = now

    def run(self, interval: float = 1.0) -> None:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        try:
            while not stopping:
                self.reconcile_once()
                time.sleep(interval)
        finally:
            for name in list(self.running):
                self.stop(name)


def readyz(root: Path, name: str) -> bool:
    """Whether the controller `name` answers its health endpoint's /readyz."""
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, OSError):
        data = json.loads((root / "flux" / "processes.json").read_text(encoding="utf-8"))
        port = data["controllers"][name]["ports"]["health"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    return False


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Run the Flux controllers of a harness cluster while it has them.")
    parser.add_argument("--cluster-root", required=True, help="the cluster's folder (<state-dir>/clusters/<name>)")
    args = parser.parse_args(argv)
    root = Path(args.cluster_root)
    state = harness.Cluster(name=root.name, root=root)
    if not state.load():
        sys.stderr.write(f"flux_processes: no cluster at {root}\n")
        return 1
    Supervisor(state).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
