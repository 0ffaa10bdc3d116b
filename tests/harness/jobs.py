"""Stand-in kubelet for the load test's Job pods: their container's command runs on this host (test harness only).

kwok makes a Job's pod Succeeded at once and runs nothing. For pods labelled
`app.kubernetes.io/name=filewcount-load-test` (the load_test role's Job, load_test_runner=job) kwok's pod-complete
stage is told to keep out (cluster.kwok_stage), kwok's pod-ready stage makes them Running, and this module, called
once a second by workloads.py, plays the rest of a kubelet:

- runs the container's `command` + `args` on this host in a folder of its own (as the container's workingDir),
  with ab replaced by this host's ab and a URL naming a Service by its cluster DNS name
  (`http://<service>.<namespace>.svc.cluster.local[:port]/`) replaced by the address of the process backing that
  Service (backends.json, written by workloads.py: on a cluster without published node ports, the filewcount app's
  process behind its Deployment);
- keeps its stdout and stderr, merged, as a container log in the CRI format kwok serves, and a kwok `Logs` object
  (the pod's name, owned by the pod) pointing at it, so `kubectl logs` and kubernetes.core.k8s_log read it;
- when the command ends, sets the pod's phase Succeeded (exit code 0) or Failed with the container terminated and
  its exit code, so the Job controller completes or fails the Job only then;
- stops the command when the pod goes (the Job deleted, or stopped at its activeDeadlineSeconds).

Differences from a kubelet: no image is pulled (image, securityContext, resources and volumes are ignored), the
command runs as this user on 127.0.0.1, and the log is written in full when the command ends.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import cluster as harness

LABEL = f"{harness.HOST_RUN_LABEL}={harness.HOST_RUN_VALUES[0]}"
LOGS = "/apis/kwok.x-k8s.io/v1alpha1/namespaces/{namespace}/logs"
DOMAIN = ".svc.cluster.local"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def host_argv(argv: list, backends: dict) -> list:
    """The container's argv as this host runs it: ab from PATH, Service DNS names replaced by their processes."""
    ab = shutil.which("ab") or "/usr/bin/ab"
    out = []
    for arg in argv:
        if arg == "ab" or arg.endswith("/ab"):
            out.append(ab)
            continue
        parts = urlsplit(arg) if arg.startswith(("http://", "https://")) else None
        host = parts.hostname if parts else None
        if host and host.endswith(DOMAIN):
            service, _dot, namespace = host[: -len(DOMAIN)].partition(".")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            target = backends.get(f"{namespace}/{service}:{port}")
            if target:
                out.append(urlunsplit((parts.scheme, target, parts.path, parts.query, parts.fragment)))
                continue
        out.append(arg)
    return out


def cri_log(raw: bytes) -> str:
    """A container's output in the CRI log format kwok reads (`<time> stdout F <line>` per line)."""
    stamp = _now()
    lines = raw.decode("utf-8", errors="replace").splitlines()
    return "".join(f"{stamp} stdout F {line}\n" for line in lines)


class LoadTestJobs:
    """The load-test pods' commands: started, watched and finished once a second (workloads.py's loop)."""

    def __init__(self, state: harness.Cluster):
        self.cluster = state
        self.root = state.root / "jobs"
        self.running: dict[str, dict] = {}

    def _backends(self) -> dict:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return json.loads((self.cluster.root / "backends.json").read_text(encoding="utf-8"))
        return {}

    def _pods(self) -> list | None:
        try:
            status, body = self.cluster.request("GET", f"/api/v1/pods?labelSelector={LABEL}")
        except OSError:
            return None
        if status != 200 or not isinstance(body, dict):
            return None
        return body.get("items") or []

    def start(self, pod: dict) -> None:
        meta, container = pod["metadata"], pod["spec"]["containers"][0]
        folder = self.root / meta["uid"]
        folder.mkdir(parents=True, exist_ok=True)
        argv = host_argv([*(container.get("command") or []), *(container.get("args") or [])], self._backends())
        (folder / "argv.json").write_text(json.dumps(argv), encoding="utf-8")
        with open(folder / "output.raw", "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running[meta["uid"]] = {"proc": proc, "pod": pod, "folder": folder, "started": _now()}

    def finish(self, uid: str) -> None:
        entry = self.running.pop(uid)
        pod, folder, rc = entry["pod"], entry["folder"], entry["proc"].returncode
        meta, container = pod["metadata"], pod["spec"]["containers"][0]
        log = folder / "container.log"
        log.write_text(cri_log((folder / "output.raw").read_bytes()), encoding="utf-8")
        logs = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}],
            },
            "spec": {"logs": [{"containers": [container["name"]], "logsFile": str(log)}]},
        }
        with contextlib.suppress(OSError):
            self.cluster.request("POST", LOGS.format(namespace=meta["namespace"]), logs)
        now = _now()
        status = {
            "status": {
                "phase": "Succeeded" if rc == 0 else "Failed",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                ],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {
                            "terminated": {
                                "exitCode": rc,
                                "reason": "Completed" if rc == 0 else "Error",
                                "startedAt": entry["started"],
                                "finishedAt": now,
                            }
                        },
                    }
                ],
            }
        }
        with contextlib.suppress(OSError):
            answer, body = self.cluster.request(
                "PATCH",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                status,
                content_type="application/merge-patch+json",
            )
            if answer >= 300:
                sys.stderr.write(f"jobs: cannot finish pod {meta['namespace']}/{meta['name']}: HTTP {answer} {body}\n")

    def stop(self, uid: str) -> None:
        entry = self.running.pop(uid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(entry["proc"].pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            entry["proc"].wait(timeout=5)

    def reconcile_once(self) -> None:
        pods = self._pods()
        if pods is None:  # the API server is down: change nothing
            return
        live = {p["metadata"]["uid"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}
        for uid in sorted(set(self.running) - set(live)):
            self.stop(uid)
        for uid, entry in sorted(self.running.items()):
            if entry["proc"].poll() is not None:
                self.finish(uid)
        for uid, pod in sorted(live.items()):
            if uid in self.running or (pod.get("status") or {}).get("phase") != "Running":
                continue
            if (self.root / uid).exists():
                continue  # already run (the supervisor restarted): a kubelet does not rerun a finished container
            self.start(pod)

    def stop_all(self) -> None:
        for uid in list(self.running):
            self.stop(uid)
