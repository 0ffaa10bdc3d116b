"""The whole flow on a cluster the playbooks did not create (gitops_cluster=existing), on the real stack.

The test creates a harness cluster itself (the stand-in kind, with no port mapping, so nothing of it is reachable
from this machine but its API server) and hands the playbooks a copy of its kubeconfig whose context is renamed
`staging`, as a user of an existing cluster does. The apps run behind their Deployments (tests/harness/workloads.py)
and the playbooks reach them through real `kubectl port-forward` processes they start, on free ports given as
gitops_host_ports (so this test needs no lock on the default host ports and runs beside the others):

- bootstrap converges: preflight checks the cluster (no Docker), the local git server is seeded through its
  port-forward, the real Flux controllers sync the tree, monitoring and filewcount are proved through theirs, and the
  summary prints the URLs that work (GET through them answers);
- the re-run and bootstrap --check report changed=0 and send no write request (the audit log of the kubeconfig's
  user, kubernetes-admin);
- the Gateway's domain is a cluster setting: bootstrap writes it to the ConfigMap flux-system/cluster-settings,
  the real kustomize-controller substitutes it into the Gateway, the routes and the Certificate, and the stand-in
  cert-manager issues the certificate for those names; a re-run with another domain writes only that ConfigMap,
  and Flux re-applies them at once (its watch label), not at their interval;
- status reports on the cluster; sync publishes through the git server's port-forward; upgrade to 2.0 rolls
  filewcount through GitOps (the page answering through its restarted port-forward names the new image), and the
  same upgrade again changes nothing;
- the load test runs ab in a Job inside the cluster (see load_test below);
- teardown stops the port-forwards and removes what bootstrap installed (workloads, Helm releases, Flux, its CRDs,
  the namespaces), keeps the cluster, and its re-run changes nothing and writes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography import x509

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit  # noqa: E402
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

NAMESPACES = ("flux-system", "filewcount", "monitoring", "git-server")
CONTEXT = "staging"
JOB_LABEL = "app.kubernetes.io/name=filewcount-load-test"
# Preflight asks the API server about the caller (cluster_check's RBAC and identity checks): creates that store
# nothing, so they are not writes to the cluster (as in test_cluster_check.py).
SELF_REVIEWS = ("authorization.k8s.io/selfsubjectaccessreviews", "authentication.k8s.io/selfsubjectreviews")


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
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    return kind_harness.recap(proc)


def names(kubeconfig: Path, *what: str) -> list[str]:
    proc = harness.kubectl(kubeconfig, "get", *what, "-o", "json", check=False)
    if proc.returncode != 0:
        return []  # the kind itself is gone (its CRD was deleted)
    return [f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in json.loads(proc.stdout)["items"]]


def writes(state, since: int) -> list[str]:
    """The write requests of kubernetes-admin since the mark, without preflight's self reviews."""
    counted = audit.count(state.audit_log, since)
    reviews = tuple(f"create {r}" for r in SELF_REVIEWS)
    return [w for w in counted["write_requests"] if not w.startswith(reviews)]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read().decode("utf-8", "replace")


def forward_pids(state_dir: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in sorted((state_dir / "port-forwards").glob("*.json"))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def settings(kubeconfig: Path) -> dict:
    proc = harness.kubectl(kubeconfig, "get", "configmap", "-n", "flux-system", "cluster-settings", "-o", "json")
    return json.loads(proc.stdout)["data"]


def front_door_names(kubeconfig: Path) -> dict[str, list[str]]:
    """The host names of the Gateway's listeners, the HTTPRoutes, the Certificate and the issued certificate."""

    def one(*what: str) -> dict:
        return json.loads(harness.kubectl(kubeconfig, "get", *what, "-o", "json").stdout)

    gateway = one("gateway", "-n", "traefik", "front-door")
    routes = [
        one("httproute", "-n", namespace, name)
        for namespace, name in (("filewcount", "filewcount"), ("monitoring", "grafana"), ("monitoring", "alertmanager"))
    ]
    certificate = one("certificate", "-n", "traefik", "front-door")
    secret = one("secret", "-n", "traefik", "front-door-tls")
    issued = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    sans = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {
        "listeners": sorted({entry["hostname"] for entry in gateway["spec"]["listeners"]}),
        "routes": sorted(h for route in routes for h in route["spec"]["hostnames"]),
        "certificate": sorted(certificate["spec"]["dnsNames"]),
        "issued": sorted(sans.get_values_for_type(x509.DNSName)),
    }


def expected_names(domain: str) -> dict[str, list[str]]:
    names_ = sorted(f"{name}.{domain}" for name in ("filewcount", "grafana", "alertmanager"))
    return {"listeners": [f"*.{domain}"], "routes": names_, "certificate": names_, "issued": names_}


def wait_for_names(kubeconfig: Path, domain: str, timeout: float = 180) -> float:
    """Seconds until every front-door name is under ``domain`` (Flux re-applied, the stand-in re-issued)."""
    start = time.monotonic()
    while True:
        found = front_door_names(kubeconfig)
        if found == expected_names(domain):
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"after {timeout:.0f} s the front door still names {found}"
        time.sleep(2)


def load_test_jobs(kubeconfig: Path) -> list:
    proc = harness.kubectl(kubeconfig, "get", "jobs", "-A", "-l", JOB_LABEL, "-o", "json")
    return json.loads(proc.stdout)["items"]


def load_test(env: dict, extra: dict, ctx: dict, tmp_path: Path) -> None:
    """The load test as a Job inside the cluster (a port-forward pins one pod, so it must not carry the load).

    ab runs in a Job against http://filewcount.filewcount.svc.cluster.local/, whose command the harness's stand-in
    kubelet (tests/harness/jobs.py) runs on this host against the filewcount app's process behind its Deployment.
    Check mode creates nothing and names the Job; the run writes results.json, report.md and chart.png from the
    Job's log and deletes the Job; ab failing in the Job, and a Job stopped at its deadline (load_test_timeout),
    each fail with one sentence and leave no Job.
    """
    admin = ctx["state"].components_kubeconfig
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
    assert "failed: ab exited with code 50 (apr_sockaddr_info_get() for missing.filewcount.svc.cluster.local:" in said
    assert load_test_jobs(admin) == []

    # Longer than load_test_timeout: Kubernetes stops the Job at activeDeadlineSeconds, the role says so.
    slow = {**load, "load_test_requests": 1000000, "load_test_time_limit": 60, "load_test_timeout": 6}
    timed_out = playbook(env, "load_test.yml", slow)
    assert timed_out.returncode != 0
    said = " ".join(timed_out.stdout.split())
    assert "timed out: it ran longer than load_test_timeout (6 s) and Kubernetes stopped it" in said, said[-4000:]
    assert load_test_jobs(admin) == []


def test_existing_cluster_bootstrap_rerun_check_status_teardown(tmp_path):
    kind_harness.clone_checkout(tmp_path)
    env = kind_harness.bootstrap_environment(tmp_path)
    ctx, extra = kind_harness.existing(tmp_path, env, CONTEXT)
    extra["gitops_gateway_domain"] = "staging.test"
    state, admin = ctx["state"], ctx["state"].components_kubeconfig
    state_dir = tmp_path / "state"
    ports = {entry["node_port"]: entry["host_port"] for entry in extra["gitops_host_ports"]}
    try:
        first = playbook(env, "bootstrap.yml", extra)
        assert ok(first)[0] > 0
        filewcount, grafana = f"http://localhost:{ports[30080]}/", f"http://localhost:{ports[30081]}"
        assert f"filewcount:      {filewcount}" in first.stdout
        assert f"Grafana:         {grafana}" in first.stdout
        assert "Port-forwards:" in first.stdout
        assert (
            "Gateway:         https://filewcount.staging.test/, https://grafana.staging.test/, "
            "https://alertmanager.staging.test/ (" in first.stdout
        )
        assert "kind cluster" not in first.stdout.split("PLAY RECAP")[-1]
        assert get(filewcount)[0] == 200
        assert get(f"{grafana}/api/health")[0] == 200
        pids = forward_pids(state_dir)
        assert len(pids) == 3 and all(alive(pid) for pid in pids), pids
        assert names(admin, "helmreleases", "-A"), "bootstrap left no HelmRelease to uninstall"
        assert names(admin, "secrets", "-A", "-l", "owner=helm"), "no Helm release Secret before teardown"

        since = audit.mark(state.audit_log)
        second = playbook(env, "bootstrap.yml", extra)
        assert ok(second) == (0, 0), second.stdout[-6000:]
        assert writes(state, since) == []
        assert forward_pids(state_dir) == pids, "the re-run restarted a running port-forward"

        since = audit.mark(state.audit_log)
        check = playbook(env, "bootstrap.yml", extra, "--check")
        assert ok(check) == (0, 0), check.stdout[-6000:]
        assert writes(state, since) == []

        # The domain, written before Flux's first sync, is in every name of the front door; another domain on a
        # re-run rewrites the ConfigMap alone, and Flux follows at once.
        # storage_class: the cluster's default StorageClass, as preflight found it (the harness's kind-like `standard`),
        # so the volumes use the user's class, not kind's retained one.
        written = {
            "gateway_domain": "staging.test",
            "gateway_issuer": "filewcount-ca",
            "acme_email": "",
            "storage_class": "standard",
        }
        assert settings(admin) == written
        claim = harness.kubectl(admin, "get", "pvc", "-n", "monitoring", "kube-prometheus-stack-grafana", "-o", "json")
        assert json.loads(claim.stdout)["spec"]["storageClassName"] == "standard"
        assert front_door_names(admin) == expected_names("staging.test")
        since = audit.mark(state.audit_log)
        moved = playbook(env, "bootstrap.yml", {**extra, "gitops_gateway_domain": "apps.test"})
        assert ok(moved)[0] == 1, moved.stdout[-6000:]
        assert writes(state, since) == ["update configmaps flux-system/cluster-settings"]
        print(f"the front door named apps.test {wait_for_names(admin, 'apps.test'):.0f} s after the re-run")
        extra["gitops_gateway_domain"] = "apps.test"

        ok(playbook(env, "status.yml", extra))

        # The GitOps loop through the git server's port-forward: publish, then upgrade filewcount and back.
        ok(playbook(env, "sync.yml", extra))
        author = {"upgrade_git_author_name": "pytest", "upgrade_git_author_email": "pytest@filewcount.invalid"}
        upgrade = playbook(env, "upgrade.yml", {**extra, **author, "filewcount_image_tag": "2.0"})
        assert ok(upgrade)[0] > 0
        assert "image: docker.io/bldrtech/filewcount:2.0" in get(filewcount)[1]
        assert ok(playbook(env, "upgrade.yml", {**extra, **author, "filewcount_image_tag": "2.0"})) == (0, 0)
        pids = forward_pids(state_dir)  # upgrade restarted filewcount's, which pinned a replaced pod
        assert len(pids) == 3 and all(alive(pid) for pid in pids), pids

        load_test(env, extra, ctx, tmp_path)

        teardown = playbook(env, "teardown.yml", extra)
        assert ok(teardown)[0] > 0
        assert not [pid for pid in pids if alive(pid)], "teardown left a port-forward running"
        assert state.load(), "teardown of an existing cluster stopped it"
        assert "/kube-system" in names(admin, "namespaces")
        left = set(names(admin, "namespaces")) & {f"/{n}" for n in NAMESPACES}
        assert not left, f"namespaces left (Terminating?): {left}"
        assert not [n for n in names(admin, "crds") if n.endswith(".fluxcd.io")], names(admin, "crds")
        assert not names(admin, "secrets", "-A", "-l", "owner=helm"), "a Helm release was not uninstalled"
        assert not names(admin, "deployments", "-n", "kube-system", "-l", "app.kubernetes.io/name=metrics-server")
        assert not names(admin, "apiservices", "-l", "app.kubernetes.io/name=metrics-server")
        remotes = subprocess.run(
            ["git", "remote"], cwd=tmp_path / "checkout", capture_output=True, text=True, check=True
        )
        assert "local" not in remotes.stdout.split()

        since = audit.mark(state.audit_log)
        again = playbook(env, "teardown.yml", extra)
        assert ok(again) == (0, 0), again.stdout[-3000:]
        assert writes(state, since) == []
    finally:
        kind_harness.stop_port_forwards(state_dir)
        kind_harness.delete(ctx)


def bad_input(tmp_path: Path, name: str, **extra) -> str:
    """Run a playbook with gitops_cluster=existing and extra; it must fail and print one sentence, the last words."""
    kind_harness.clone_checkout(tmp_path)
    env = dict(kind_harness.bootstrap_environment(tmp_path), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    proc = playbook(env, name, {"gitops_cluster": "existing", **extra})
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert kind_harness.recap(proc)[1] == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout


def test_bootstrap_names_a_context_the_kubeconfig_lacks(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "prod", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me"}}],
            }
        ),
        encoding="utf-8",
    )
    kubeconfig.chmod(0o600)
    out = bad_input(tmp_path, "bootstrap.yml", gitops_kubeconfig=str(kubeconfig), gitops_kube_context="staging")
    assert f"The kubeconfig {kubeconfig} has no context staging (contexts in it: prod)" in out, out[-3000:]
    assert "not-a-secret" not in out


@pytest.mark.parametrize(
    ("settings", "sentence"),
    [
        (
            {"gitops_cluster": "kind", "gitops_gateway_issuer": "letsencrypt"},
            "gitops_gateway_issuer letsencrypt needs a cluster that Let's Encrypt reaches for the HTTP-01 challenge, "
            "and a kind cluster is not one: keep filewcount-ca on kind, or use letsencrypt with "
            "gitops_cluster=existing and gitops_sync_path=kube/clusters/eks.",
        ),
        (
            {"gitops_gateway_issuer": "letsencrypt-staging"},
            "gitops_gateway_issuer letsencrypt-staging cannot get a certificate for localhost: set "
            "gitops_gateway_domain to a public domain",
        ),
        (
            {"gitops_gateway_issuer": "letsencrypt", "gitops_gateway_domain": "apps.example.com"},
            "gitops_gateway_issuer letsencrypt registers an ACME account, which needs a contact: set "
            "gitops_acme_email to your e-mail address.",
        ),
        (
            {"gitops_gateway_domain": "https://apps.example.com"},
            "gitops_gateway_domain is 'https://apps.example.com', which is not a DNS domain",
        ),
    ],
    ids=["acme-on-kind", "acme-for-localhost", "acme-without-contact", "domain-with-scheme"],
)
def test_gateway_settings_that_cannot_work_are_refused_before_anything_changes(tmp_path, settings, sentence):
    out = bad_input(tmp_path, "bootstrap.yml", gitops_kube_context=CONTEXT, **settings)
    assert sentence in " ".join(out.split()), out[-3000:]
    assert "changed=0" in out


ACCESS_PLAYBOOK = """---
- name: Reach filewcount as bootstrap does
  hosts: localhost
  gather_facts: false
  roles:
    - role: filewcount.gitops.gitops
      vars:
        gitops_require_repository: false
  tasks:
    - name: Reach filewcount from this machine
      ansible.builtin.include_role:
        name: filewcount.gitops.gitops
        tasks_from: access
      vars:
        gitops_access_services: [filewcount]

    - name: Print the URL
      ansible.builtin.debug:
        msg: "filewcount at {{ gitops_filewcount_url }}"
"""


def test_a_load_balancer_service_is_reached_at_its_address_not_through_a_port_forward(tmp_path):
    """A user who made filewcount's Service a LoadBalancer (docs/eks.md step 5) gets its address, no port-forward."""
    env = kind_harness.bootstrap_environment(tmp_path)
    ctx, extra = kind_harness.existing(tmp_path, env, CONTEXT)
    kubeconfig = ctx["kubeconfig"]
    try:
        harness.kubectl(kubeconfig, "create", "namespace", "filewcount")
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "filewcount", "namespace": "filewcount"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "filewcount"}, "ports": [{"port": 8088}]},
        }
        harness.kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(service))
        # No cloud controller runs here: play the AWS Load Balancer Controller's part and publish an address.
        status = {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}
        harness.kubectl(
            kubeconfig,
            "-n",
            "filewcount",
            "patch",
            "service",
            "filewcount",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )
        book = tmp_path / "access.yml"
        book.write_text(ACCESS_PLAYBOOK, encoding="utf-8")
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), str(book), f"--extra-vars={json.dumps(extra)}"]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert "filewcount at http://203.0.113.7:8088/" in proc.stdout
        assert kind_harness.recap(proc) == (0, 0)
        assert not list((tmp_path / "state" / "port-forwards").glob("*.json")), "a port-forward was started"
    finally:
        kind_harness.stop_port_forwards(tmp_path / "state")
        kind_harness.delete(ctx)
