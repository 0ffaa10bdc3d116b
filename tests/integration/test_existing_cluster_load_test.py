"""playbooks/load_test.yml on a cluster the playbooks did not create (gitops_cluster=existing), on the real stack.

As tests/integration/test_existing_cluster.py: a harness cluster made by the stand-in kind with no port mapping
(only its API server is reachable from here), a copy of its kubeconfig with the context renamed `staging`, and
bootstrap with gitops_cluster=existing and free host ports for its port-forwards. Then the load test, which must
not go through a port-forward (it pins one pod): ab runs in a Kubernetes Job against
http://filewcount.filewcount.svc.cluster.local/, whose command the harness's stand-in kubelet (tests/harness/jobs.py)
runs on this host against the filewcount app's process behind its Deployment.

- check mode creates nothing and says which Job it would run;
- the run writes results.json, report.md and chart.png from the Job's log, with the requests ab made in the Job,
  the HPA sampled meanwhile, and deletes the Job;
- ab failing in the Job, and a Job stopped at its deadline (load_test_timeout), each fail with one sentence and
  leave no Job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

CONTEXT = "staging"
JOB_LABEL = "app.kubernetes.io/name=filewcount-load-test"


def playbook(env: dict, name: str, extra: dict, *flags: str) -> subprocess.CompletedProcess:
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        f"playbooks/{name}",
        f"--extra-vars=@{kind_harness.HARNESS_VARS}",
        f"--extra-vars={json.dumps(extra)}",
        *flags,
    ]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)


def ok(proc: subprocess.CompletedProcess) -> tuple[int, int]:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"
    return kind_harness.recap(proc)


def user_kubeconfig(admin: Path, path: Path) -> Path:
    """The cluster's kubeconfig as a user keeps it: the context renamed, mode 0600."""
    config = yaml.safe_load(admin.read_text(encoding="utf-8"))
    for context in config["contexts"]:
        context["name"] = CONTEXT
    config["current-context"] = CONTEXT
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def load_test_jobs(kubeconfig: Path) -> list:
    proc = harness.kubectl(kubeconfig, "get", "jobs", "-A", "-l", JOB_LABEL, "-o", "json")
    return json.loads(proc.stdout)["items"]


def forward_pids(state_dir: Path) -> list[int]:
    folder = state_dir / "port-forwards"
    return [json.loads(p.read_text())["pid"] for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def test_the_load_test_runs_as_a_job_on_an_existing_cluster(tmp_path):
    kind_harness.clone_checkout(tmp_path)
    env = kind_harness.bootstrap_environment(tmp_path)
    ctx = kind_harness.create(tmp_path / "cluster", env=env)
    admin = ctx["state"].components_kubeconfig
    state_dir = tmp_path / "state"
    ports = {node_port: harness.free_port() for node_port in (30080, 30081, 30082)}
    extra = {
        "gitops_cluster": "existing",
        "gitops_kubeconfig": str(user_kubeconfig(ctx["kubeconfig"], tmp_path / "user-kubeconfig")),
        "gitops_kube_context": CONTEXT,
        "gitops_kubectl": str(harness.binary("kubectl")),
        "gitops_host_ports": [
            {"host_port": host, "node_port": node, "listen_address": "127.0.0.1"} for node, host in ports.items()
        ],
    }
    load = {
        **extra,
        "load_test_profile": "burst",
        "load_test_requests": 3000,
        "load_test_concurrency": 10,
        "load_test_cooldown": 0,
        "load_test_sample_interval": 2,
        "load_test_thresholds": {"max_failed_requests": 0, "max_non_2xx": 0},
        "load_test_report_dir": str(tmp_path / "report"),
    }
    try:
        ok(playbook(env, "bootstrap.yml", extra))

        check = playbook(env, "load_test.yml", load, "--check")
        assert ok(check)[1] == 0
        assert "Check mode: no Job was created; it would create Job filewcount/filewcount-load-test-" in check.stdout
        assert "http://filewcount.filewcount.svc.cluster.local/" in check.stdout
        assert load_test_jobs(admin) == []

        run = playbook(env, "load_test.yml", load)
        ok(run)
        report = tmp_path / "report"
        for name in ("results.json", "report.md", "chart.png", "ab-stdout.txt"):
            assert (report / name).stat().st_size > 0, name
        results = json.loads((report / "results.json").read_text(encoding="utf-8"))
        assert results["url"] == "http://filewcount.filewcount.svc.cluster.local/"
        assert results["cmd"][0] == "/usr/local/apache2/bin/ab"
        assert results["cmd"][-1] == "http://filewcount.filewcount.svc.cluster.local/"
        assert results["report"]["complete_requests"] == 3000
        assert results["report"]["failed_requests"] == 0
        assert results["passed"] is True
        assert results["timeline"]["requests"] == 3000
        assert set(results["percentages_ms"]) >= {"50", "95", "99"}
        assert results["hpa"]["samples"] >= 2 and results["hpa"]["initial_replicas"] >= 1
        assert "| Complete requests | 3000 |" in (report / "report.md").read_text(encoding="utf-8")
        assert (report / "chart.png").read_bytes().startswith(b"\x89PNG")
        assert load_test_jobs(admin) == [], "the load-test Job was left behind"
        # The requests reached the app's process through the Service's backend, not a port-forward.
        ran = list((ctx["state"].root / "jobs").glob("*/argv.json"))
        assert len(ran) == 1
        argv = json.loads(ran[0].read_text(encoding="utf-8"))
        assert argv[-1].startswith("http://127.0.0.1:") and "svc.cluster.local" not in argv[-1]

        # ab failing in the Job (a Service name nothing resolves): one sentence with ab's reason, the Job deleted.
        # Without HPA samples the role only watches the Job (watch_job.yml).
        missing = {"load_test_job_url": "http://missing.filewcount.svc.cluster.local/", "load_test_sample_hpa": False}
        failed = playbook(env, "load_test.yml", {**load, **missing})
        assert failed.returncode != 0
        said = " ".join(failed.stdout.split())
        assert "msg: 'The load-test Job filewcount/filewcount-load-test-" in said, failed.stdout[-4000:]
        assert (
            "failed: ab exited with code 50 (apr_sockaddr_info_get() for missing.filewcount.svc.cluster.local:" in said
        )
        assert load_test_jobs(admin) == []

        # Longer than load_test_timeout: Kubernetes stops the Job at activeDeadlineSeconds, the role says so.
        slow = {**load, "load_test_requests": 1000000, "load_test_time_limit": 60, "load_test_timeout": 6}
        timed_out = playbook(env, "load_test.yml", slow)
        assert timed_out.returncode != 0
        said = " ".join(timed_out.stdout.split())
        assert "timed out: it ran longer than load_test_timeout (6 s) and Kubernetes stopped it" in said, said[-4000:]
        assert load_test_jobs(admin) == []
    finally:
        for pid in forward_pids(state_dir):
            if harness._alive(pid):
                os.kill(pid, 15)
        kind_harness.delete(ctx)
