"""A harness cluster created through the stand-in kind, for integration tests (test helper).

`create` runs `tests/harness/bin/kind create cluster` on its process backend (tests/harness/cluster.py: a real
control plane, kwok as the node, the real Flux controllers once their Deployments exist), with the node ports a
test needs published on free host ports, as the kind role's extraPortMappings publish 8080-8082. `delete` runs
`kind delete cluster` and checks that nothing of the cluster is left. `install_flux` applies what
`flux install --export` prints (the stand-in's output, built from the controllers' own CRDs) and waits until
the four controllers answer /readyz.

    ctx = kind_harness.create(tmp_path, node_ports=(30082,))
    ctx["env"]           # environment for playbooks and CLIs: stand-ins first on PATH, STANDIN_STATE_DIR, ...
    ctx["kubeconfig"]    # kind's kubeconfig (context kind-<name>, user kubernetes-admin)
    ctx["host_ports"]    # node port -> host port on 127.0.0.1
    ctx["state"]         # the harness Cluster (root, logs, audit log)
    kind_harness.delete(ctx)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
if str(HARNESS) not in sys.path:
    sys.path.insert(0, str(HARNESS))
import cluster as harness  # noqa: E402
import prometheus  # noqa: E402
import workloads  # noqa: E402

KIND = [sys.executable, str(HARNESS / "bin" / "kind")]
FLUX = [sys.executable, str(HARNESS / "bin" / "flux")]
DEFAULT_NAME = "filewcount"
# Extra vars of every playbook run on the harness as a user runs it (molecule/default uses the same file).
HARNESS_VARS = ROOT / "molecule" / "default" / "vars" / "harness.yml"
# The NodePorts of gitops_services (roles/gitops/vars/main.yml): filewcount, Grafana, the git server, the Gateway.
GITOPS_NODE_PORTS = (30080, 30081, 30082, 30090, 30443)
RECAP = re.compile(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)")


@contextlib.contextmanager
def default_host_ports() -> Iterator[None]:
    """Hold the default host ports 8080-8082 (gitops_host_ports) for a full bootstrap, one test at a time.

    Tests that run playbooks/bootstrap.yml as a user does publish those ports; under `pytest -n` they would
    collide. Each takes this exclusive lock (a per-user lock file, released when the test ends or its process dies)
    around its bootstraps.
    """
    path = Path(tempfile.gettempdir()) / f"filewcount-gitops-host-ports-{os.getuid()}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def environment(tmp: Path) -> dict[str, str]:
    """The stand-ins first on PATH, then the project's virtualenv; harness state under tmp."""
    env = dict(
        os.environ,
        STANDIN_STATE_DIR=str(tmp / "standin"),
        FILEWCOUNT_TESTBIN_DIR=str(harness.testbin_dir()),
        PATH=os.pathsep.join([str(HARNESS / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
    )
    env.pop("STANDIN_API_SERVER", None)
    env.pop("KUBECONFIG", None)
    return env


def bootstrap_environment(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for the project's playbooks run as a user runs them, the stand-in kind creating the cluster.

    Everything the run writes stays under tmp: the harness cluster (standin/), the product's state and cache
    directories, and the git server's seed, which harness.yml takes from <tmp>/checkout (see
    :func:`clone_checkout`). No GITHUB_TOKEN unless given in ``extra``, which is added last.
    """
    env = environment(tmp)
    env.update(
        MOLECULE_EPHEMERAL_DIRECTORY=str(tmp),
        FILEWCOUNT_STATE_DIR=str(tmp / "state"),
        FILEWCOUNT_CACHE_DIR=str(tmp / "cache"),
        ANSIBLE_NOCOLOR="true",
        ANSIBLE_FORCE_COLOR="false",
    )
    env.pop("GITHUB_TOKEN", None)
    env.update(extra)
    return env


def clone_checkout(tmp: Path) -> Path:
    """<tmp>/checkout: a clone of this repository that playbooks may push from, add remotes to and fast-forward."""
    checkout = tmp / "checkout"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(checkout)], check=True)
    return checkout


def recap(proc: subprocess.CompletedProcess) -> tuple[int, int]:
    """(changed, failed) of the last play recap of an ansible-playbook run."""
    found = RECAP.findall(proc.stdout)
    assert found, f"no play recap in:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    changed, failed = found[-1]
    return int(changed), int(failed)


def create(
    tmp: Path,
    node_ports: tuple[int, ...] = (),
    name: str = DEFAULT_NAME,
    env: dict | None = None,
    mounts: dict[str, str] | None = None,
) -> dict:
    """Start a harness cluster through the stand-in kind; see the module docstring for what it returns.

    ``mounts`` (node path -> host folder) become the node's extraMounts, as the kind role writes them."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = env or environment(tmp)
    host_ports = {port: harness.free_port() for port in node_ports}
    config = tmp / "kind.yaml"
    mappings = [{"containerPort": n, "hostPort": h, "listenAddress": "127.0.0.1"} for n, h in host_ports.items()]
    node = {"role": "control-plane", **({"extraPortMappings": mappings} if mappings else {})}
    if mounts:
        node["extraMounts"] = [{"hostPath": host, "containerPath": path} for path, host in mounts.items()]
    config.write_text(
        yaml.safe_dump({"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": [node]}), encoding="utf-8"
    )
    kubeconfig = tmp / "kubeconfig"
    create_argv = [*KIND, "create", "cluster", "--name", name, "--config", str(config), "--kubeconfig", str(kubeconfig)]
    proc = subprocess.run(create_argv, env=env, check=False, capture_output=True, text=True)
    assert proc.returncode == 0, f"kind create cluster failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    state = harness.Cluster.at(Path(env["STANDIN_STATE_DIR"]) / "kind", name)
    assert state.load(), f"kind create cluster left no harness cluster at {state.root}"
    return {
        "env": env,
        "name": name,
        "context": f"kind-{name}",
        "kubeconfig": kubeconfig,
        "host_ports": host_ports,
        "state": state,
    }


def existing(tmp: Path, env: dict, context: str = "staging") -> tuple[dict, dict]:
    """A harness cluster the playbooks did not create, and the extra vars a user of such a cluster passes.

    The stand-in kind starts it with no port mapping (nothing but its API server is reachable from this machine;
    the apps run behind their Deployments, tests/harness/workloads.py). The playbooks get a 0600 copy of its
    kubeconfig at <tmp>/user-kubeconfig with the context renamed, the testbin's kubectl for their port-forwards, and
    free host ports for them. Returns (ctx as :func:`create` does, extra vars).
    """
    ctx = create(tmp / "cluster", env=env)
    config = yaml.safe_load(ctx["kubeconfig"].read_text(encoding="utf-8"))
    for entry in config["contexts"]:
        entry["name"] = context
    config["current-context"] = context
    kubeconfig = tmp / "user-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config), encoding="utf-8")
    kubeconfig.chmod(0o600)
    extra = {
        "gitops_cluster": "existing",
        "gitops_kubeconfig": str(kubeconfig),
        "gitops_kube_context": context,
        "gitops_kubectl": str(harness.binary("kubectl")),
        "gitops_host_ports": [
            {"host_port": harness.free_port(), "node_port": node_port, "listen_address": "127.0.0.1"}
            for node_port in GITOPS_NODE_PORTS
        ],
    }
    return ctx, extra


def stop_port_forwards(state_dir: Path) -> None:
    """Stop the port-forwards a failed test left (their pids are in <state_dir>/port-forwards/*.json)."""
    for record in sorted((state_dir / "port-forwards").glob("*.json")):
        with contextlib.suppress(ProcessLookupError, ValueError, KeyError):
            os.kill(int(json.loads(record.read_text(encoding="utf-8"))["pid"]), 15)


def install_flux(ctx: dict, timeout: float = 90) -> None:
    """Apply `flux install --export` and wait until every Flux controller answers /readyz."""
    components = subprocess.run(
        [*FLUX, "install", "--export"], env=ctx["env"], check=True, capture_output=True, text=True
    )
    harness.kubectl(ctx["kubeconfig"], "apply", "--server-side", "-f", "-", stdin=components.stdout)
    for controller in workloads.CONTROLLERS:
        harness.wait_for(
            f"{controller} to answer /readyz", lambda c=controller: workloads.readyz(ctx["state"].root, c), timeout
        )


def delete(ctx: dict) -> None:
    """`kind delete cluster`, then check no process of the cluster is left and its folder is gone."""
    state = ctx["state"]
    record = {}
    processes = state.root / "flux" / "processes.json"
    if processes.exists():
        record = json.loads(processes.read_text(encoding="utf-8")).get("controllers", {})
    subprocess.run(
        [*KIND, "delete", "cluster", "--name", ctx["name"], "--kubeconfig", str(ctx["kubeconfig"])],
        env=ctx["env"],
        check=True,
        capture_output=True,
    )
    pids = [c["pid"] for c in record.values()] + list(state.pids.values())
    assert not [pid for pid in pids if harness._alive(pid)], "kind delete cluster left harness processes running"
    assert not state.root.exists(), f"kind delete cluster left {state.root}"


def install_keda(kubeconfig: Path, tmp: Path) -> None:
    """KEDA for a cluster that runs kube/apps without Flux: the chart from ../shared/charts with the tree's values,
    installed by the harness's Helm as helm-controller installs it, less its ServiceMonitors, whose CRD
    kube-prometheus-stack brings (bootstrap installs the HelmRelease unedited). Then the two objects of
    kube-prometheus-stack that the Prometheus stand-in (tests/harness/prometheus.py) plays: the operator's
    Deployment, for which the harness runs it, and the Service that the ScaledObject's trigger asks."""
    release, chart = harness.keda_chart()
    values = release["spec"]["values"]
    for part in ("operator", "metricServer"):
        values["prometheus"][part]["serviceMonitor"]["enabled"] = False
    values_file = tmp / "keda-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm = [str(harness.binary("helm")), f"--kubeconfig={kubeconfig}"]
    subprocess.run(
        [*helm, "install", "keda", str(chart), "--namespace=keda", "--create-namespace", f"--values={values_file}"],
        check=True,
        capture_output=True,
        text=True,
    )
    labels = {"app.kubernetes.io/name": "prometheus-operator"}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": prometheus.NAMESPACE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": prometheus.OPERATOR, "namespace": prometheus.NAMESPACE},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "kube-prometheus-stack", "image": "quay.io/prometheus-operator"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": prometheus.SERVICE, "namespace": prometheus.NAMESPACE},
            "spec": {
                "selector": {"app.kubernetes.io/name": "prometheus"},
                "ports": [{"name": "http-web", "port": prometheus.SERVICE_PORT}],
            },
        },
    ]
    harness.kubectl(kubeconfig, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(o) for o in objects))
    # The ScaledObject CRD is served before the app's ScaledObject is applied.
    harness.wait_established(kubeconfig, "scaledobjects.keda.sh")
