"""playbooks/load_test.yml for real: ansible-playbook runs Debian's ab against a Python test server on 127.0.0.1.

Most tests sample no HPA and check the report directory: results.json, report.md, chart.png, ab's stdout and its
-e/-g files. The last one runs the default profile against a harness cluster (tests/integration/kind_harness.py:
the real HPA controller and metrics-server, kwok simulating the pods) while the test server makes the pods busy
(kwok's simulated CPU) for as long as ab loads it, and checks that the report shows the scale-up and the
scale-down that follows.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import parse_gnuplot, parse_stdout
from tests.unit import ab_servers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        ab_servers.ab_path() is None,
        reason="ab is not installed (apt-get install apache2-utils) so the load test cannot run",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402

PLAYBOOK = ROOT / "playbooks" / "load_test.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def play(
    state_dir: Path, extra_vars: dict, check: bool = False, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, FILEWCOUNT_STATE_DIR=str(state_dir), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    argv = [str(ANSIBLE_PLAYBOOK), str(PLAYBOOK), "-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def report_dirs(state_dir: Path) -> list[Path]:
    base = state_dir / "load-tests"
    return sorted(base.iterdir()) if base.exists() else []


def test_load_test_writes_the_report(tmp_path):
    with ab_servers.serve("normal") as url:
        proc = play(
            tmp_path,
            {
                "load_test_url": url,
                "load_test_sample_hpa": False,
                "load_test_profile": "burst",
                "load_test_requests": 1500,
                "load_test_concurrency": 10,
                "load_test_thresholds": {"max_failed_requests": 0, "max_non_2xx": 0},
            },
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    [report_dir] = report_dirs(tmp_path)
    assert report_dir.name.endswith("Z")
    expected = {"results.json", "report.md", "chart.png", "ab-stdout.txt", "percentiles.csv", "gnuplot.tsv"}
    assert {path.name for path in report_dir.iterdir()} == expected

    results = json.loads((report_dir / "results.json").read_text())
    assert results["url"] == url
    assert results["passed"] is True
    assert results["report"]["complete_requests"] == 1500
    assert results["report"]["failed_requests"] == 0
    assert results["cmd"][1:5] == ["-n", "1500", "-c", "10"]
    assert results["hpa"]["samples"] == 0
    assert results["samples"] == []
    assert len(results["percentages_ms"]) == 101
    per_second = results["timeline"]["per_second"]
    assert sum(entry["requests"] for entry in per_second) == 1500
    # The saved files are ab's own and parse to the same numbers.
    assert parse_stdout((report_dir / "ab-stdout.txt").read_text()) == results["report"]
    assert parse_gnuplot((report_dir / "gnuplot.tsv").read_text()) == results["timeline"]

    markdown = (report_dir / "report.md").read_text()
    assert "| Complete requests | 1500 |" in markdown
    assert "The HPA was not sampled" in markdown
    assert "![requests, latency and replicas over time](chart.png)" in markdown
    chart = (report_dir / "chart.png").read_bytes()
    assert chart.startswith(PNG_SIGNATURE)
    assert len(chart) > 10_000
    assert "Report: " + str(report_dir) in proc.stdout


def test_broken_threshold_fails_after_writing_the_report(tmp_path):
    with ab_servers.serve("mixed") as url:
        proc = play(
            tmp_path,
            {
                "load_test_url": url,
                "load_test_sample_hpa": False,
                "load_test_profile": "burst",
                "load_test_requests": 150,
                "load_test_concurrency": 5,
                "load_test_thresholds": {"max_non_2xx": 0},
            },
        )
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "The number of non-2xx responses was 50, above max_non_2xx 0" in proc.stdout
    [report_dir] = report_dirs(tmp_path)
    results = json.loads((report_dir / "results.json").read_text())
    assert results["passed"] is False
    assert [item["name"] for item in results["broken_thresholds"]] == ["max_non_2xx"]


def test_connection_refused_is_abs_reason(tmp_path):
    proc = play(
        tmp_path,
        {
            "load_test_url": ab_servers.closed_port_url(),
            "load_test_sample_hpa": False,
            "load_test_profile": "burst",
            "load_test_requests": 5,
            "load_test_concurrency": 1,
        },
    )
    assert proc.returncode == 2
    assert "nothing accepts connections at http://127.0.0.1:" in proc.stdout


def test_scale_up_assertion_needs_sampling(tmp_path):
    proc = play(tmp_path, {"load_test_sample_hpa": False, "load_test_assert_scaled_up": True})
    assert proc.returncode == 2
    assert "load_test_assert_scaled_up needs the HPA samples" in proc.stdout
    assert report_dirs(tmp_path) == []


def test_check_mode_sends_no_load(tmp_path):
    """The default profile loads for a time (ab -t, bounded by -n, not ab's implied 50000); burst is the seed's."""
    with ab_servers.serve("normal") as url:
        proc = play(tmp_path, {"load_test_url": url, "load_test_sample_hpa": False}, check=True)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "no load was sent" in proc.stdout
        assert "ab -t 120 -n 1000000 -c 100 " in proc.stdout
        burst = play(
            tmp_path, {"load_test_url": url, "load_test_sample_hpa": False, "load_test_profile": "burst"}, check=True
        )
        assert burst.returncode == 0, burst.stdout[-3000:]
        assert "ab -n 10000 -c 100 " in burst.stdout
    assert report_dirs(tmp_path) == []


def test_missing_ab_is_named_before_anything_runs(tmp_path):
    """No ab: one sentence naming the package, before any sample, ab run or report directory (the kubeconfig does
    not exist, so sampling first would fail with another message)."""
    proc = play(
        tmp_path,
        {
            "load_test_ab_path": str(tmp_path / "no-ab"),
            "load_test_kubeconfig": str(tmp_path / "no-kubeconfig"),
            "load_test_assert_scaled_up": True,
        },
    )
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert (
        f"ApacheBench ({tmp_path / 'no-ab'}) is not installed: install the apache2-utils package on Debian or Ubuntu "
        "(sudo apt-get install apache2-utils) or httpd-tools on Fedora or RHEL (sudo dnf install httpd-tools); macOS "
        "ships ab, and elsewhere set load_test_ab_path to it."
    ) in " ".join(proc.stdout.split())
    assert "Read the HorizontalPodAutoscaler" not in proc.stdout
    assert report_dirs(tmp_path) == []


def test_saved_report_parses_with_the_filters(tmp_path):
    with ab_servers.serve("keepalive") as url:
        proc = play(
            tmp_path,
            {
                "load_test_url": url,
                "load_test_sample_hpa": False,
                "load_test_profile": "burst",
                "load_test_requests": 200,
                "load_test_concurrency": 4,
                "load_test_keep_alive": True,
            },
        )
    assert proc.returncode == 0, proc.stdout[-3000:]
    [report_dir] = report_dirs(tmp_path)
    expression = (
        "{{ (lookup('ansible.builtin.file', dir ~ '/ab-stdout.txt') | filewcount.gitops.ab_parse).keep_alive_requests"
        " }}/{{ (lookup('ansible.builtin.file', dir ~ '/gnuplot.tsv') | filewcount.gitops.ab_parse_gnuplot).requests"
        " }}/{{ (lookup('ansible.builtin.file', dir ~ '/percentiles.csv') | filewcount.gitops.ab_parse_csv) | length }}"
    )
    adhoc = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK.with_name("ansible")),
            "localhost",
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={expression}",
            "-e",
            json.dumps({"dir": str(report_dir)}),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert adhoc.returncode == 0, adhoc.stdout + adhoc.stderr
    assert "200/200/101" in adhoc.stdout


# ------------------------------------------------------------------------------------ the default profile, on a cluster
APP = ROOT / "kube" / "apps" / "filewcount"
# What a busy filewcount pod uses in this test: 150% of its 100m request, above the HPA's 70% target.
BUSY_CPU = "150m"


@contextlib.contextmanager
def busy_while_loaded(ctx: dict, idle_after: float = 2.0):
    """An HTTP server on 127.0.0.1 that makes every filewcount pod busy (kwok's simulated CPU) while requests come
    in and idle again `idle_after` seconds after the last one, as the real pods would be under ab."""
    state_dir = ctx["state"].root.parent.parent
    last = [0.0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            return

        def do_GET(self):
            last[0] = time.monotonic()
            body = b"filewcount 1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stop = threading.Event()

    def follow():
        busy = False
        while not stop.wait(0.5):
            loaded = time.monotonic() - last[0] < idle_after
            if loaded != busy:
                harness.set_usage(state_dir, ctx["name"], "filewcount", cpu=BUSY_CPU if loaded else None)
                busy = loaded

    threads = [threading.Thread(target=server.serve_forever, daemon=True), threading.Thread(target=follow, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def app_cluster(tmp_path):
    """A harness cluster running kube/apps/filewcount and KEDA, the HPA KEDA makes reading CPU. It scales down after
    a 30 s window by 100 % per 15 s instead of the ScaledObject's 300 s and 2 pods a minute, so the scale-down shows
    in a minute or two; tests/unit/roles/load_test/test_profiles.py checks the default profile against the
    ScaledObject's own numbers."""
    ctx = kind_harness.create(tmp_path / "cluster")
    try:
        kubeconfig = ctx["kubeconfig"]
        kind_harness.install_keda(kubeconfig, tmp_path)
        harness.apply_gateway_api_crds(kubeconfig)  # the HTTPRoute needs them (install_keda brought KEDA's)
        harness.kubectl(kubeconfig, "apply", "-f", "-", stdin=harness.tree_manifests(APP))
        # KEDA owns the HPA and puts back any edit of it, so the change goes to the ScaledObject.
        fast_down = {
            "spec": {
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {
                            "scaleDown": {
                                "stabilizationWindowSeconds": 30,
                                "selectPolicy": "Min",
                                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                            }
                        }
                    }
                }
            }
        }
        harness.kubectl(
            kubeconfig,
            "patch",
            "scaledobject",
            "filewcount",
            "-n",
            "filewcount",
            "--type=merge",
            "-p",
            json.dumps(fast_down),
        )
        harness.wait_for(
            "KEDA to make the HPA filewcount",
            lambda: (
                harness.kubectl(kubeconfig, "get", "hpa", "filewcount", "-n", "filewcount", check=False).returncode == 0
            ),
            180,
            interval=2,
        )
        harness.kubectl(kubeconfig, "rollout", "status", "deployment/filewcount", "-n", "filewcount", "--timeout=180s")

        def reads_cpu():
            proc = harness.kubectl(
                kubeconfig, "get", "hpa", "filewcount", "-n", "filewcount", "-o", "json", check=False
            )
            status = json.loads(proc.stdout or "{}").get("status") or {}
            return proc.returncode == 0 and status.get("currentReplicas") == 3 and status.get("currentMetrics")

        harness.wait_for("the HPA to read the pods' CPU", reads_cpu, 180, interval=3)
        yield ctx
    finally:
        kind_harness.delete(ctx)


def test_default_profile_shows_the_scale_up_and_the_scale_down(tmp_path, app_cluster):
    ctx = app_cluster
    spec = yaml.safe_load((APP / "scaledobject.yaml").read_text())["spec"]
    with busy_while_loaded(ctx) as url:
        proc = play(
            tmp_path,
            {
                "load_test_url": url,
                "load_test_kubeconfig": str(ctx["kubeconfig"]),
                "load_test_context": ctx["context"],
                # Gentler on this machine than the profile's 100; the load's length is what the HPA needs.
                "load_test_concurrency": 10,
                "load_test_assert_scaled_up": True,
            },
            env=ctx["env"],
            timeout=900,
        )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    [report_dir] = report_dirs(tmp_path)
    results = json.loads((report_dir / "results.json").read_text())
    assert results["cmd"][1:7] == ["-t", "120", "-n", "1000000", "-c", "10"]
    assert results["report"]["time_taken_s"] >= 119
    summary = results["hpa"]
    assert summary["initial_replicas"] == spec["minReplicaCount"]
    assert summary["scaled_up"] and summary["max_current_replicas"] > spec["minReplicaCount"], summary
    # Sampling went on after ab until the replicas were back, well before the profile's 600 s.
    assert summary["scaled_down"] and summary["final_replicas"] == spec["minReplicaCount"], summary
    assert summary["samples_after_load"] >= 2
    after = [s for s in results["samples"] if s["offset_s"] >= results["load_ended_offset_s"]]
    assert after[-1]["offset_s"] - results["load_ended_offset_s"] < 300, after[-1]
    markdown = (report_dir / "report.md").read_text()
    assert f"- Replicas at the end: {spec['minReplicaCount']}; scaled back down: True" in markdown
    assert "The HPA scaled from 3 to" in proc.stdout
