"""Backup and restore of the kind cluster's retained volumes (module_utils/volume_backup.py), on real folders.

The Prometheus snapshot is the one thing not taken here: a callable stands in for the admin API call and makes the
snapshot folder as Prometheus does (``<tsdb>/snapshots/<name>/<block>/...``). The harness test
(tests/integration/test_harness_backup.py) makes the real request through the API server.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import stat
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils import volume_backup as vb

PROM = vb.Prometheus()
GRAFANA = "monitoring/kube-prometheus-stack-grafana"
LOKI = "monitoring/storage-loki-0"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A volumes folder as a running kind cluster leaves it."""
    root = tmp_path / "volumes"
    tsdb = root / PROM.folder / PROM.sub_path
    (tsdb / "01JBLOCK1").mkdir(parents=True)
    (tsdb / "01JBLOCK1" / "meta.json").write_text('{"ulid": "01JBLOCK1"}')
    (tsdb / "wal").mkdir()
    (tsdb / "wal" / "00000001").write_bytes(b"live wal, not in a snapshot")
    (root / GRAFANA).mkdir(parents=True)
    (root / GRAFANA / "grafana.db").write_bytes(b"sqlite" * 100)
    (root / LOKI / "chunks").mkdir(parents=True)
    (root / LOKI / "chunks" / "c1").write_bytes(b"chunk")
    (root / "monitoring" / "empty-claim").mkdir()
    (root / "pvc-1234_git-server_git-server-data").mkdir()  # the standard class: not retained
    (root / "pvc-1234_git-server_git-server-data" / "repo").write_text("x")
    return root


def snapshotter(data: Path, calls: list[str]):
    def take() -> str:
        name = f"20261128T120000Z-{len(calls):016x}"
        calls.append(name)
        snap = data / PROM.folder / PROM.sub_path / "snapshots" / name
        (snap / "01JBLOCK1").mkdir(parents=True)
        (snap / "01JBLOCK1" / "meta.json").write_text('{"ulid": "01JBLOCK1"}')
        (snap / "01JHEAD").mkdir()
        (snap / "01JHEAD" / "meta.json").write_text('{"ulid": "01JHEAD"}')
        return name

    return take


def backup(data: Path, backups: Path, name: str, calls: list[str], check_mode: bool = False):
    return vb.run_backup(data, backups, name, prometheus=PROM, check_mode=check_mode, snapshot=snapshotter(data, calls))


def test_only_retained_folders_with_data_are_volumes(data: Path) -> None:
    assert vb.volume_folders(data) == [GRAFANA, PROM.folder, LOKI]
    assert vb.volume_folders(data / "absent") == []


def test_backup_copies_grafana_and_loki_and_prometheus_as_its_snapshot(data: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    changed, result = backup(data, tmp_path / "backups", "b1", calls)
    assert changed
    target = Path(result["path"])
    assert target == tmp_path / "backups" / "b1"
    assert result["backup"]["folders"] == [GRAFANA, PROM.folder, LOKI]
    assert result["backup"]["prometheus_snapshot"] == calls[0]
    assert (target / GRAFANA / "grafana.db").read_bytes() == b"sqlite" * 100
    assert (target / LOKI / "chunks" / "c1").read_bytes() == b"chunk"
    tsdb = target / PROM.folder / PROM.sub_path
    assert sorted(p.name for p in tsdb.iterdir()) == ["01JBLOCK1", "01JHEAD"]  # the snapshot, not the live WAL
    manifest = json.loads((target / vb.MANIFEST).read_text())
    assert set(manifest["files"]) == {
        f"{PROM.folder}/{PROM.sub_path}/01JBLOCK1/meta.json",
        f"{PROM.folder}/{PROM.sub_path}/01JHEAD/meta.json",
        f"{GRAFANA}/grafana.db",
        f"{LOKI}/chunks/c1",
    }
    assert manifest["files"][f"{LOKI}/chunks/c1"]["size"] == 5
    # The snapshot does not stay in Prometheus's volume, and no partial folder is left.
    assert not any((data / PROM.folder / PROM.sub_path / "snapshots").iterdir())
    assert [p.name for p in (tmp_path / "backups").iterdir()] == ["b1"]
    # Only this user may read a backup: it holds Grafana's database.
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_a_backup_that_exists_is_left_alone(data: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    backup(data, tmp_path / "backups", "b1", calls)
    changed, result = backup(data, tmp_path / "backups", "b1", calls)
    assert not changed
    assert len(calls) == 1  # no second snapshot
    assert result["backup"]["name"] == "b1"


def test_check_mode_takes_no_snapshot_and_writes_nothing(data: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    changed, result = backup(data, tmp_path / "backups", "b1", calls, check_mode=True)
    assert changed
    assert result["folders"] == [GRAFANA, PROM.folder, LOKI]
    assert calls == []
    assert not (tmp_path / "backups").exists()


def test_without_prometheus_folder_no_snapshot_is_asked(data: Path, tmp_path: Path) -> None:
    shutil.rmtree(data / PROM.folder)
    calls: list[str] = []
    result = backup(data, tmp_path / "backups", "b1", calls)[1]
    assert calls == []
    assert result["backup"]["folders"] == [GRAFANA, LOKI]
    assert result["backup"]["prometheus_snapshot"] is None


def test_a_failed_backup_leaves_no_backup_and_the_next_run_starts_over(data: Path, tmp_path: Path) -> None:
    def failing() -> str:
        raise vb.BackupError("Prometheus is not answering (HTTP 503): wait.")

    with pytest.raises(vb.BackupError, match="HTTP 503"):
        vb.run_backup(data, tmp_path / "backups", "b1", prometheus=PROM, check_mode=False, snapshot=failing)
    assert not (tmp_path / "backups" / "b1").exists()
    (tmp_path / "backups" / ".b1.partial").mkdir(parents=True)  # as a run killed while copying leaves it
    changed = backup(data, tmp_path / "backups", "b1", [])[0]
    assert changed
    assert not (tmp_path / "backups" / ".b1.partial").exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "There is nothing to back up: .* holds no volume folder of the kind cluster; run make bootstrap"),
        ("squatter", "exists but is not a backup .*: choose another name"),
        ("badname", "is not a folder name"),
    ],
)
def test_backup_refuses_in_one_sentence(tmp_path: Path, setup: str, message: str) -> None:
    data, backups, name = tmp_path / "volumes", tmp_path / "backups", "b1"
    data.mkdir()
    if setup == "squatter":
        (data / GRAFANA).mkdir(parents=True)
        (data / GRAFANA / "grafana.db").write_text("x")
        (backups / name).mkdir(parents=True)
    if setup == "badname":
        (data / GRAFANA).mkdir(parents=True)
        (data / GRAFANA / "grafana.db").write_text("x")
        name = "../escape"
    with pytest.raises(vb.BackupError, match=message):
        backup(data, backups, name, [])


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (503, "Service Unavailable", "is not answering \\(HTTP 503\\)"),
        (200, '{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}', "admin API is off"),
        (200, "not json", "HTTP 200"),
        (200, '{"status":"success","data":{"name":"../x"}}', "HTTP 200"),
    ],
)
def test_snapshot_answers_that_are_not_a_snapshot_are_refused(status: int, body: str, message: str) -> None:
    with pytest.raises(vb.BackupError, match=message):
        vb.snapshot_name(status, body, PROM)
    assert vb.snapshot_name(200, '{"status":"success","data":{"name":"20261128T1-ab"}}', PROM) == "20261128T1-ab"


def _backed_up(data: Path, tmp_path: Path) -> Path:
    result = backup(data, tmp_path / "backups", "b1", [])[1]
    return Path(result["path"])


def test_restore_into_an_empty_data_dir_puts_everything_back_writable_and_only_once(data: Path, tmp_path: Path) -> None:
    saved = _backed_up(data, tmp_path)
    fresh = tmp_path / "fresh"
    changed, result = vb.run_restore(saved, fresh, check_mode=False)
    assert changed
    assert result["backup"]["name"] == "b1"
    assert (fresh / GRAFANA / "grafana.db").read_bytes() == b"sqlite" * 100
    assert sorted(p.name for p in (fresh / PROM.folder / PROM.sub_path).iterdir()) == ["01JBLOCK1", "01JHEAD"]
    db = fresh / GRAFANA / "grafana.db"
    assert stat.S_IMODE(db.stat().st_mode) & 0o666 == 0o666
    assert stat.S_IMODE((fresh / LOKI / "chunks").stat().st_mode) & 0o777 == 0o777
    assert not list(fresh.rglob(".*.partial"))
    # Again: recorded in .restored-from, nothing is written, even once the cluster has added data.
    (fresh / GRAFANA / "grafana.db").write_bytes(b"newer")
    changed = vb.run_restore(saved, fresh, check_mode=False)[0]
    assert not changed
    assert (fresh / GRAFANA / "grafana.db").read_bytes() == b"newer"


def test_restore_check_mode_writes_nothing(data: Path, tmp_path: Path) -> None:
    saved = _backed_up(data, tmp_path)
    changed = vb.run_restore(saved, tmp_path / "fresh", check_mode=True)[0]
    assert changed
    assert not (tmp_path / "fresh").exists()


def test_restore_an_empty_folder_local_path_made_is_filled(data: Path, tmp_path: Path) -> None:
    saved = _backed_up(data, tmp_path)
    fresh = tmp_path / "fresh"
    (fresh / GRAFANA).mkdir(parents=True)
    assert vb.run_restore(saved, fresh, check_mode=False)[0]
    assert (fresh / GRAFANA / "grafana.db").is_file()


def test_restore_refuses_to_overwrite_data_and_loses_nothing(data: Path, tmp_path: Path) -> None:
    saved = _backed_up(data, tmp_path)
    with pytest.raises(vb.BackupError, match=r"already holds data, which a restore would overwrite: .* make purge"):
        vb.run_restore(saved, data, check_mode=False)
    assert (data / PROM.folder / PROM.sub_path / "wal" / "00000001").is_file()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no-manifest", "is not a backup \\(it has no backup.json\\)"),
        ("bad-manifest", "is not a backup manifest of format 1"),
        ("missing-file", "is incomplete: monitoring/kube-prometheus-stack-grafana/grafana.db is missing"),
        ("changed-file", "is damaged: monitoring/kube-prometheus-stack-grafana/grafana.db differs from backup.json"),
    ],
)
def test_restore_refuses_a_backup_that_is_not_whole(data: Path, tmp_path: Path, damage: str, message: str) -> None:
    saved = _backed_up(data, tmp_path)
    if damage == "no-manifest":
        (saved / vb.MANIFEST).unlink()
    elif damage == "bad-manifest":
        (saved / vb.MANIFEST).write_text('{"format": 9}')
    elif damage == "missing-file":
        (saved / GRAFANA / "grafana.db").unlink()
    else:
        (saved / GRAFANA / "grafana.db").write_bytes(b"sqlitX" * 100)
    with pytest.raises(vb.BackupError, match=message):
        vb.run_restore(saved, tmp_path / "fresh", check_mode=False)
    assert not (tmp_path / "fresh" / GRAFANA).exists()


def test_default_name_is_utc_and_sortable() -> None:
    assert vb.default_name(0) == "19700101T000000Z"


class _FakeApiServer(http.server.BaseHTTPRequestHandler):
    """The API server's service proxy for one Service: records what it was asked, answers what the test set."""

    answer: ClassVar[tuple[int, str]] = (200, "")
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def do_POST(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        status, body = self.answer
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def api_server(tmp_path: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "kind-filewcount", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "kind-filewcount",
            }
        )
    )
    _FakeApiServer.seen = []
    yield kubeconfig
    server.shutdown()


def test_the_snapshot_is_asked_through_the_service_proxy_with_the_kubeconfigs_credentials(api_server: Path) -> None:
    pytest.importorskip("kubernetes")
    _FakeApiServer.answer = (200, '{"status":"success","data":{"name":"20261128T153000Z-00c0ffee00c0ffee"}}')
    assert vb.take_snapshot(str(api_server), "kind-filewcount", PROM) == "20261128T153000Z-00c0ffee00c0ffee"
    assert _FakeApiServer.seen == [
        (
            "POST",
            "/api/v1/namespaces/monitoring/services/kube-prometheus-stack-prometheus:http-web/proxy"
            "/api/v1/admin/tsdb/snapshot",
            "Bearer t0ken",
        )
    ]


def test_a_disabled_admin_api_is_named_with_the_fix(api_server: Path) -> None:
    pytest.importorskip("kubernetes")
    _FakeApiServer.answer = (503, '{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}')
    with pytest.raises(vb.BackupError, match="admin API is off: sync the tree"):
        vb.take_snapshot(str(api_server), "kind-filewcount", PROM)


def test_an_unreachable_cluster_says_to_check_it(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes")
    kubeconfig = tmp_path / "kubeconfig"
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    closed = port.getsockname()[1]
    port.close()
    kubeconfig.write_text(
        json.dumps(
            {
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{closed}"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    with pytest.raises(vb.BackupError, match=r"did not answer the snapshot request .*: check that it runs"):
        vb.take_snapshot(str(kubeconfig), "x", PROM, timeout=5)
