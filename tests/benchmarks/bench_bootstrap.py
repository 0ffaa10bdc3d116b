"""Benchmark: wall time and Kubernetes API requests of bootstrap's first run and idempotent re-run, and an upgrade.

Runs the real playbook with the stand-in CLIs of tests/harness/bin first on PATH, exactly like molecule/default: the
stand-in kind starts the test harness (a real control plane, kwok as the node, the real Flux controllers installing
the tree's charts), re-runs it, runs upgrade.yml to 2.0 (commit, push to the git server, Flux reconcile, rolling
update: a push to the applied change), then tears down. Requests are read from the API server's audit log: those of
kind's user kubernetes-admin, i.e. the product's own (tests/harness/audit.py). Reports numbers; asserts nothing
about time. Needs the harness programs (`make testbin`).
With ``--existing`` the playbooks get a cluster they did not create (gitops_cluster=existing, kind_harness.existing:
no port mapping, a renamed context, free host ports for their kubectl port-forwards), and the teardown keeps it.
Usage (repository root): ``.venv/bin/python tests/benchmarks/bench_bootstrap.py
[--json tests/output/bench_bootstrap.json] [--keep] [--existing]``. Exit status 1 when a playbook run fails (numbers are
still printed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(REPO / "tests" / "harness"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
import audit  # noqa: E402
import kind_harness  # noqa: E402


def _playbook(name: str, env: dict, log: Path, *extra: str) -> tuple[int, float, str]:
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        f"playbooks/{name}",
        f"--extra-vars=@{kind_harness.HARNESS_VARS}",
        *extra,
    ]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    log.write_text(proc.stdout + proc.stderr)
    recap = [line.strip() for line in proc.stdout.splitlines() if line.startswith("localhost ")]
    return proc.returncode, elapsed, recap[-1] if recap else ""


def _measure(
    label: str, audit_log: Path, env: dict, workdir: Path, extra: list[str], *, name: str = "bootstrap.yml"
) -> dict:
    since = audit.mark(audit_log)
    rc, elapsed, recap = _playbook(name, env, workdir / f"{label}.log", *extra)
    counted = audit.count(audit_log, since)
    return {
        "run": label,
        "rc": rc,
        "seconds": round(elapsed, 2),
        "requests": counted["requests"],
        "writes": counted["writes"],
        "dry_run_writes": counted["dry_run_writes"],
        "counts": dict(Counter(w.split(" ", 1)[0] for w in counted["write_requests"])),
        "write_requests": counted["write_requests"],
        "recap": recap,
        "log": str(workdir / f"{label}.log"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(REPO / "tests" / "output" / "bench_bootstrap.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--host-ports", help="three host ports instead of 8080,8081,8082 (e.g. on a busy machine)")
    parser.add_argument("--existing", action="store_true", help="an existing cluster (gitops_cluster=existing)")
    args = parser.parse_args()
    extra = []
    if args.host_ports:
        ports = [int(p) for p in args.host_ports.split(",")]
        mapping = [
            {"host_port": h, "node_port": n, "listen_address": "127.0.0.1"}
            for h, n in zip(ports, (30080, 30081, 30082), strict=True)
        ]
        extra = ["--extra-vars", json.dumps({"gitops_host_ports": mapping})]
    workdir = Path(tempfile.mkdtemp(prefix="bench-bootstrap-"))
    standin = workdir / "standin"
    # Like molecule/default's prepare: seed the git server from a clone of the committed project, so the
    # benchmark never adds a remote to (or fast-forwards) the developer's checkout.
    kind_harness.clone_checkout(workdir)
    env = kind_harness.bootstrap_environment(workdir)
    audit_log = standin / "kind" / "clusters" / "filewcount" / "logs" / "audit.log"
    ctx = None
    if args.existing:
        ctx, existing = kind_harness.existing(workdir, env)
        extra = ["--extra-vars", json.dumps(existing)]
        audit_log = ctx["state"].audit_log
    results = []
    try:
        results.append(_measure("first", audit_log, env, workdir, extra))
        if results[0]["rc"] == 0:
            results.append(_measure("rerun", audit_log, env, workdir, extra))
            # A push to the applied change: upgrade.yml commits the new tag, pushes it to the git server, asks Flux
            # to reconcile and waits for the rolling update (the GitOps loop a user drives with `make upgrade`).
            upgrade = [
                *extra,
                "--extra-vars",
                json.dumps(
                    {
                        "filewcount_image_tag": "2.0",
                        "upgrade_repo_dir": str(workdir / "checkout"),
                        "upgrade_git_author_name": "benchmark",
                        "upgrade_git_author_email": "benchmark@filewcount.invalid",
                    }
                ),
            ]
            results.append(_measure("upgrade", audit_log, env, workdir, upgrade, name="upgrade.yml"))
    finally:
        _playbook("teardown.yml", env, workdir / "teardown.log", *extra)
        if ctx is not None:
            kind_harness.stop_port_forwards(workdir / "state")
            kind_harness.delete(ctx)
    print(f"{'run':<6} {'rc':>3} {'seconds':>8} {'requests':>9} {'writes':>7}  writes per verb")
    for res in results:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(res["counts"].items()))
        print(f"{res['run']:<6} {res['rc']:>3} {res['seconds']:>8} {res['requests']:>9} {res['writes']:>7}  {counts}")
        print(f"       {res['recap']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"JSON: {args.json}")
    if args.keep or any(r["rc"] for r in results):
        print(f"Logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if results and all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
