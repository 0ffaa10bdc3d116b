"""Faults during bootstrap on the real stack, and what the user reads (harness: real control plane and Flux).

playbooks/bootstrap.yml runs as a user runs it, with the stand-in kind starting the harness cluster on the
default host ports 8080-8082 (molecule/default uses them too, after these tests), from scratch for each fault;
each is followed by a re-run that must converge and lose nothing:

- the API server stops in the middle of bootstrap (while Flux is being installed) and comes back 20 s later: the
  run either rides it out or fails with a message and no Python traceback; the re-run converges, a third run
  reports changed=0 and sends no write request (the audit log of kind's user kubernetes-admin);
- a chart value the API server rejects (metrics-server `replicas: -1`) committed to the checkout that bootstrap
  publishes: the real helm-controller fails the install and bootstrap ends with one sentence naming the
  HelmRelease and the API server's reason; reverting the commit and re-running converges.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
import audit  # noqa: E402
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

METRICS_SERVER_RELEASE = Path("kube/infrastructure/controllers/metrics-server/helmrelease.yaml")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def world(tmp_path):
    tmp = tmp_path
    checkout = kind_harness.clone_checkout(tmp)
    env = kind_harness.bootstrap_environment(tmp)
    ctx = {
        "tmp": tmp,
        "env": env,
        "checkout": checkout,
        "extra": [],
        "kind_state": tmp / "standin" / "kind",
    }
    with kind_harness.default_host_ports():
        yield ctx
        playbook(ctx, "teardown.yml")
    assert not (tmp / "standin" / "kind" / "clusters" / "filewcount").exists(), "teardown left the cluster"


def argv(ctx: dict, name: str, *extra: str) -> list[str]:
    return [
        str(Path(sys.executable).parent / "ansible-playbook"),
        f"playbooks/{name}",
        f"--extra-vars=@{kind_harness.HARNESS_VARS}",
        *ctx["extra"],
        *extra,
    ]


def playbook(ctx: dict, name: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv(ctx, name, *extra), cwd=ROOT, env=ctx["env"], capture_output=True, text=True, timeout=1800, check=False
    )


def cluster(ctx: dict) -> harness.Cluster:
    state = harness.Cluster.at(ctx["kind_state"], "filewcount")
    assert state.load()
    return state


def flux_installing(ctx: dict) -> bool:
    """True once the Flux controllers' Deployments exist (bootstrap's Flux step), read as the harness."""
    state = harness.Cluster.at(ctx["kind_state"], "filewcount")
    if not state.load() or "apiserver" not in state.ports:
        return False
    try:
        status, _body = state.request("GET", "/apis/apps/v1/namespaces/flux-system/deployments/source-controller")
    except OSError:
        return False
    return status == 200


def failure_messages(proc: subprocess.CompletedProcess) -> list[str]:
    """The msg of each failed task. The project's ansible.cfg prints results as YAML: 'fatal: [...]: FAILED! =>'
    followed by the result indented on the next lines."""
    messages, lines = [], proc.stdout.splitlines()
    for index, line in enumerate(lines):
        if not (line.startswith("fatal:") and "=>" in line):
            continue
        block = []
        for following in lines[index + 1 :]:
            if following and not following.startswith(" "):
                break
            block.append(following)
        result = yaml.safe_load(textwrap.dedent("\n".join(block))) or {}
        messages.append(str(result.get("msg", "")) if isinstance(result, dict) else str(result))
    return messages


def test_api_server_outage_mid_bootstrap_then_rerun_converges(world):
    # Output to a file: a pipe nobody reads while the test waits would fill up and block the playbook.
    output = world["tmp"] / "first-run.log"
    with output.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            argv(world, "bootstrap.yml"), cwd=ROOT, env=world["env"], stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            harness.wait_for("bootstrap to reach the Flux step", lambda: flux_installing(world), 600, interval=0.5)
            harness.stop_apiserver(world["kind_state"], "filewcount")
            time.sleep(20)
            harness.start_apiserver_again(world["kind_state"], "filewcount")
            proc.wait(timeout=1800)
        finally:
            if proc.poll() is None:
                proc.kill()
    stdout, stderr = output.read_text(encoding="utf-8"), ""
    first = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert "Traceback (most recent call last)" not in stdout + stderr
    if first.returncode != 0:
        messages = failure_messages(first)
        assert messages, f"bootstrap failed without saying why:\n{stdout[-3000:]}"

    rerun = playbook(world, "bootstrap.yml")
    assert rerun.returncode == 0, f"the re-run after the outage did not converge:\n{rerun.stdout[-4000:]}"
    assert kind_harness.recap(rerun)[1] == 0

    state = cluster(world)
    since = audit.mark(state.audit_log)
    third = playbook(world, "bootstrap.yml")
    counted = audit.count(state.audit_log, since)
    assert third.returncode == 0, third.stdout[-3000:]
    assert kind_harness.recap(third) == (0, 0), third.stdout[-3000:]
    assert counted["requests"] > 0 and counted["writes"] == 0, counted
    # Nothing was lost: the tree is applied, filewcount runs as the tree says.
    kubeconfig = state.components_kubeconfig
    for name in ("flux-system", "infrastructure-controllers", "infrastructure-configs", "apps"):
        ks = json.loads(
            harness.kubectl(kubeconfig, "get", "kustomization", name, "-n", "flux-system", "-o", "json").stdout
        )
        ready = {c["type"]: c["status"] for c in (ks.get("status") or {}).get("conditions") or []}
        assert ready.get("Ready") == "True", (name, ks.get("status"))
    deployment = json.loads(
        harness.kubectl(kubeconfig, "get", "deployment", "filewcount", "-n", "filewcount", "-o", "json").stdout
    )
    assert deployment["status"].get("readyReplicas", 0) >= 1


def test_a_chart_value_the_api_server_rejects_is_named_then_fixed(world):
    checkout = world["checkout"]
    release = checkout / METRICS_SERVER_RELEASE
    original = release.read_text(encoding="utf-8")
    document = yaml.safe_load(original)
    document["spec"]["values"]["replicas"] = -1
    release.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    git(checkout, "commit", "--quiet", "-am", "Break metrics-server: replicas -1")
    broken = git(checkout, "rev-parse", "HEAD")

    failed = playbook(world, "bootstrap.yml", "--extra-vars", "monitoring_ready_timeout=240")
    assert failed.returncode != 0, failed.stdout[-3000:]
    messages = failure_messages(failed)
    assert messages, failed.stdout[-3000:]
    last = messages[-1]
    assert "kube-system/metrics-server" in last, last
    assert "replicas" in last, last  # the API server's own reason, as helm-controller reports it
    assert "Traceback" not in failed.stdout + failed.stderr

    # Revert that commit, not HEAD: bootstrap fast-forwarded the checkout onto the commit Flux added on top of it.
    git(checkout, "revert", "--no-edit", broken)
    fixed = playbook(world, "bootstrap.yml")
    assert fixed.returncode == 0, fixed.stdout[-4000:]
    hr = json.loads(
        harness.kubectl(
            cluster(world).components_kubeconfig,
            "get",
            "helmrelease",
            "metrics-server",
            "-n",
            "kube-system",
            "-o",
            "json",
        ).stdout
    )
    ready = {c["type"]: c for c in (hr.get("status") or {}).get("conditions") or []}["Ready"]
    assert ready["status"] == "True", ready
