"""make backup then make restore, round trip on the harness's volumes (playbooks/backup.yml and restore.yml).

A harness cluster made by the stand-in kind with the node path of local-path-provisioner mounted from
<state>/volumes, as the kind role mounts gitops_data_dir; the tree's StorageClass filewcount-retain; the claims of
Grafana's and Loki's volumes with a pod each (the stand-in provisioner makes their folders <namespace>/<claim>);
and Prometheus as kube-prometheus-stack declares it: the Prometheus CRD from the pinned chart, a Prometheus object
with the tree's storage and enableAdminAPI, the chart's Service, and the operator's Deployment, for which the
harness's operator stand-in (tests/harness/prometheus.py) makes the StatefulSet, hence the pod and its claim, and
answers the admin API's snapshot request in the volume's TSDB folder. The backup playbook reaches it as it would
on kind: through the API server's service proxy, the Service's endpoints (the real endpoints controller) and the
pod's address.

Files written into those folders (a TSDB block for Prometheus) are backed up by the real playbook, the cluster is
deleted and its data removed (as make purge does, keeping the backups), the backup is restored by the real
playbook, and a new cluster's claims of the same names find the files again. Both playbooks are run twice: the
second run changes nothing. The admin API switched off is refused in one sentence.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster as harness  # noqa: E402
import kind_harness  # noqa: E402
import prometheus  # noqa: E402
import storage  # noqa: E402

NAME = "backup"
RETAIN = ROOT / "kube" / "infrastructure" / "controllers" / "storage" / "storageclass-retain.yaml"
CLAIMS = ("kube-prometheus-stack-grafana", "storage-loki-0")  # Grafana's chart claim, Loki's StatefulSet claim
BLOCK = "01JDQ4Y8Z3K5M7N9P1Q3R5S7T9"  # a TSDB block's folder (a ULID)
FILES = {
    "kube-prometheus-stack-grafana/grafana.db": b"SQLite format 3\x00" + bytes(range(256)) * 40,
    "storage-loki-0/chunks/fake/1a2b3c": b"loki chunk",
    "storage-loki-0/tsdb-shipper-active/index": b"loki index",
}
TSDB_FILES = {f"{BLOCK}/meta.json": b'{"ulid": "' + BLOCK.encode() + b'"}', f"{BLOCK}/chunks/000001": b"samples"}
CRDS = ROOT.parent / "shared" / "charts" / "kube-prometheus-stack-88.5.3" / "charts" / "crds" / "crds"


def prometheus_objects(admin_api: bool) -> list[dict]:
    """What kube-prometheus-stack declares for its Prometheus, as the tree's values make it (the parts needed)."""
    labels = {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": prometheus.PROMETHEUS}
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": {"name": prometheus.PROMETHEUS, "namespace": "monitoring"},
            "spec": {
                "enableAdminAPI": admin_api,
                "portName": "http-web",
                "storage": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "storageClassName": "filewcount-retain",
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "5Gi"}},
                        }
                    }
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": prometheus.SERVICE, "namespace": "monitoring"},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http-web", "port": 9090, "targetPort": 9090}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": prometheus.OPERATOR, "namespace": "monitoring"},
            "spec": {
                "selector": {"matchLabels": {"app": "operator"}},
                "template": {
                    "metadata": {"labels": {"app": "operator"}},
                    "spec": {"containers": [{"name": "operator", "image": "prometheus-operator"}]},
                },
            },
        },
    ]


def playbook(env: dict, name: str, extra: dict, *flags: str) -> subprocess.CompletedProcess:
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        f"playbooks/{name}",
        f"--extra-vars={json.dumps(extra)}",
    ]
    return subprocess.run([*argv, *flags], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def ok(proc: subprocess.CompletedProcess) -> int:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}"
    changed, failed = kind_harness.recap(proc)
    assert failed == 0
    return changed


def said(proc: subprocess.CompletedProcess) -> str:
    """The output with its lines unfolded."""
    return " ".join(proc.stdout.split())


def refused(proc: subprocess.CompletedProcess, sentence: str) -> None:
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert sentence in said(proc), proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr


def claims(ctx: dict, names: tuple[str, ...] = CLAIMS) -> dict[str, dict]:
    """The monitoring namespace, the class and the claims with a pod each; returns claim -> its bound volume."""
    kubeconfig = ctx["kubeconfig"]
    harness.kubectl(kubeconfig, "apply", "-f", str(RETAIN))
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}]
    for claim in names:
        items.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": "monitoring"},
                "spec": {
                    "storageClassName": "filewcount-retain",
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{claim}-user", "namespace": "monitoring"},
                "spec": {
                    "containers": [{"name": "c", "image": "app", "volumeMounts": [{"name": "v", "mountPath": "/d"}]}],
                    "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
                },
            }
        )
    harness.kubectl(
        kubeconfig, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    state = ctx["state"]

    def bound() -> dict[str, dict] | None:
        found = {}
        for claim in names:
            status, body = state.request("GET", f"/api/v1/namespaces/monitoring/persistentvolumeclaims/{claim}")
            if status != 200 or (body.get("status") or {}).get("phase") != "Bound":
                return None
            found[claim] = state.request("GET", f"/api/v1/persistentvolumes/{body['spec']['volumeName']}")[1]
        return found

    return harness.wait_for("the claims to be Bound", bound, 90, interval=0.5)


def test_backup_then_restore_into_a_new_cluster(tmp_path: Path) -> None:
    env = kind_harness.bootstrap_environment(tmp_path)
    state_dir = tmp_path / "state"
    data, backups = state_dir / "volumes", state_dir / "backups"
    data.mkdir(parents=True)
    mounts = {storage.NODE_PATH: str(data)}
    extra = {"gitops_cluster": "kind", "gitops_cluster_name": NAME}

    ctx = kind_harness.create(tmp_path / "first", name=NAME, env=env, mounts=mounts)
    extra["gitops_kubeconfig"] = str(ctx["kubeconfig"])
    try:
        volumes = claims(ctx)
        for claim, pv in volumes.items():
            assert Path(pv["spec"]["hostPath"]["path"]) == data / "monitoring" / claim
            assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        for rel, content in FILES.items():
            (data / "monitoring" / rel).parent.mkdir(parents=True, exist_ok=True)
            (data / "monitoring" / rel).write_bytes(content)

        # Prometheus: the operator stand-in's StatefulSet gets its claim bound; a block in its TSDB folder.
        harness.kubectl(ctx["kubeconfig"], "apply", "--server-side", "-f", str(CRDS / "crd-prometheuses.yaml"))
        harness.wait_for(
            "the Prometheus CRD to be served",
            lambda: ctx["state"].request("GET", f"{prometheus.PROMETHEUS_API}/prometheuses")[0] == 200,
            60,
            interval=0.5,
        )
        manifest = {"apiVersion": "v1", "kind": "List", "items": prometheus_objects(admin_api=False)}
        harness.kubectl(ctx["kubeconfig"], "apply", "-f", "-", stdin=json.dumps(manifest))
        tsdb = harness.wait_for(
            "Prometheus's claim to be Bound to its folder",
            lambda: prometheus.tsdb_folder(ctx["state"]),
            120,
            interval=0.5,
        )
        assert tsdb == data / "monitoring" / prometheus.CLAIM / prometheus.SUB_PATH
        for rel, content in TSDB_FILES.items():
            (tsdb / rel).parent.mkdir(parents=True, exist_ok=True)
            (tsdb / rel).write_bytes(content)
        (tsdb / "wal").mkdir()
        (tsdb / "wal" / "00000000").write_bytes(b"the live WAL, not in a snapshot")
        ready = f"/api/v1/namespaces/monitoring/endpoints/{prometheus.SERVICE}"
        harness.wait_for(
            "the Prometheus Service to have a ready endpoint",
            lambda: any(s.get("addresses") for s in (ctx["state"].request("GET", ready)[1] or {}).get("subsets") or []),
            120,
            interval=0.5,
        )

        # The admin API off (the chart's default): refused with the fix, and no backup is left.
        refused(
            playbook(env, "backup.yml", {**extra, "backup_name": "first"}),
            "Prometheus refused the snapshot because its admin API is off: sync the tree (make sync)",
        )
        assert not (backups / "first").exists()
        manifest = {"apiVersion": "v1", "kind": "List", "items": prometheus_objects(admin_api=True)[:1]}
        harness.kubectl(ctx["kubeconfig"], "apply", "-f", "-", stdin=json.dumps(manifest))

        # Check mode says what it would copy and writes nothing.
        assert ok(playbook(env, "backup.yml", {**extra, "backup_name": "first"}, "--check")) == 1
        assert not backups.exists()

        proc = playbook(env, "backup.yml", {**extra, "backup_name": "first"})
        assert ok(proc) == 1
        saved = backups / "first"
        manifest = json.loads((saved / "backup.json").read_text())
        snapshot = manifest["prometheus_snapshot"]
        folders = [
            "monitoring/kube-prometheus-stack-grafana",
            f"monitoring/{prometheus.CLAIM}",
            "monitoring/storage-loki-0",
        ]
        assert (
            f"Backed up {', '.join(folders)} in {saved} (Prometheus as snapshot {snapshot}). Restore it with: make "
            f"restore BACKUP={saved}" in said(proc)
        )
        assert manifest["folders"] == folders
        prom = f"monitoring/{prometheus.CLAIM}/{prometheus.SUB_PATH}"
        assert set(manifest["files"]) == {f"monitoring/{rel}" for rel in FILES} | {f"{prom}/{r}" for r in TSDB_FILES}
        # The snapshot (hard links of the blocks) was taken in the volume, copied, then removed from it.
        assert not any((tsdb / "snapshots").iterdir())
        assert (tsdb / "wal" / "00000000").is_file()

        # Again: the backup exists, nothing is written.
        proc = playbook(env, "backup.yml", {**extra, "backup_name": "first"})
        assert ok(proc) == 0
        assert "The backup exists already" in said(proc)

        # A restore now would overwrite the running cluster's data: refused, nothing touched.
        refused(
            playbook(env, "restore.yml", {**extra, "restore_backup": str(saved)}),
            f"{data}/monitoring/kube-prometheus-stack-grafana already holds data, which a restore would overwrite",
        )
        assert (data / "monitoring" / "storage-loki-0" / "chunks" / "fake" / "1a2b3c").read_bytes() == b"loki chunk"
    finally:
        kind_harness.delete(ctx)

    # make purge: the cluster and the volumes' data go, the backups stay.
    shutil.rmtree(data)
    proc = playbook(env, "restore.yml", {**extra, "restore_backup": str(saved)})
    assert ok(proc) == 1
    assert f"Restored {', '.join(folders)} of backup first" in said(proc)
    assert ok(playbook(env, "restore.yml", {**extra, "restore_backup": str(saved)})) == 0

    ctx = kind_harness.create(tmp_path / "second", name=NAME, env=env, mounts=mounts)
    try:
        volumes = claims(ctx, (*CLAIMS, prometheus.CLAIM))
        for claim, pv in volumes.items():
            assert Path(pv["spec"]["hostPath"]["path"]) == data / "monitoring" / claim
        for rel, content in FILES.items():
            assert (data / "monitoring" / rel).read_bytes() == content, rel
        for rel, content in TSDB_FILES.items():
            assert (tsdb / rel).read_bytes() == content, rel
        assert not (tsdb / "wal").exists()  # a snapshot holds blocks only
    finally:
        kind_harness.delete(ctx)


@pytest.mark.parametrize(
    ("book", "extra", "sentence"),
    [
        (
            "backup.yml",
            {"gitops_data_dir": "/nonexistent/volumes"},
            "There is nothing to back up: /nonexistent/volumes holds no volume folder of the kind cluster; run make "
            "bootstrap first",
        ),
        (
            "backup.yml",
            {"gitops_cluster": "existing", "gitops_kube_context": "prod"},
            "make backup copies the kind cluster's volumes from this machine; an existing cluster's volumes are in "
            "its own storage",
        ),
        ("restore.yml", {}, "Name the backup to restore: make restore BACKUP="),
        (
            "restore.yml",
            {"restore_backup": "/nonexistent/backup"},
            "/nonexistent/backup is not a backup (it has no backup.json): pass a folder that make backup wrote",
        ),
    ],
)
def test_nothing_to_do_is_refused_in_one_sentence(tmp_path: Path, book: str, extra: dict, sentence: str) -> None:
    env = dict(kind_harness.bootstrap_environment(tmp_path), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    refused(playbook(env, book, {"gitops_cluster": "kind", **extra}), sentence)
