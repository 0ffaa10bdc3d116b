# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Back up and restore the kind cluster's retained volumes, which live on this machine.

On kind every volume of the StorageClass ``filewcount-retain`` is the folder ``<data dir>/<namespace>/<claim>``
(kube/infrastructure/controllers/storage: local-path-provisioner's ``pathPattern``, the data dir mounted into the
node by the kind role). A backup is one folder ``<backups>/<name>`` holding:

- every such volume folder, copied as it is (Grafana's database, Loki's chunks and index, ...), except Prometheus's;
- for Prometheus, the TSDB snapshot its admin API took (``POST /api/v1/admin/tsdb/snapshot``: the persisted blocks
  and the head block flushed to one more, https://prometheus.io/docs/prometheus/latest/querying/api/#snapshot),
  stored where the TSDB lives in the volume (``<claim>/prometheus-db``, prometheus-operator's sub-path), so that
  restoring puts the blocks where Prometheus reads them; the snapshot itself is removed from the volume afterwards;
- ``backup.json``: the folders, the snapshot's name, and the size and SHA-256 of every file.

A backup is built in ``<backups>/.<name>.partial`` and renamed when complete, so a failed run leaves no half backup
and the next run starts over. Restoring checks every file against ``backup.json`` first, refuses to write over a
folder that holds data (nothing is lost), copies the folders into the data dir with modes that let the containers'
users (Prometheus 1000, Grafana 472, Loki 10001) write, and records the backup in ``<data dir>/.restored-from``: a
second restore of the same backup does nothing.

Plain Python, importable without Ansible; the Kubernetes client is imported only to take the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "backup.json"
RESTORED_FROM = ".restored-from"
FORMAT = 1


class BackupError(Exception):
    """Backup or restore cannot go on; the message is one sentence saying what to do."""


@dataclass(frozen=True)
class Prometheus:
    """Where kube-prometheus-stack's Prometheus is: its Service (for the admin API) and its volume's claim."""

    namespace: str = "monitoring"
    service: str = "kube-prometheus-stack-prometheus"
    port: str = "http-web"
    claim: str = "prometheus-kube-prometheus-stack-prometheus-db-prometheus-kube-prometheus-stack-prometheus-0"
    sub_path: str = "prometheus-db"

    @property
    def folder(self) -> str:
        return f"{self.namespace}/{self.claim}"

    @property
    def snapshot_api(self) -> str:
        """The admin API through the API server's service proxy."""
        return (
            f"/api/v1/namespaces/{self.namespace}/services/{self.service}:{self.port}/proxy/api/v1/admin/tsdb/snapshot"
        )


# ----------------------------------------------------------------------------------------------------------- folders
def volume_folders(data_dir: Path) -> list[str]:
    """``<namespace>/<claim>`` of every volume folder of the retained class that holds something, sorted.

    Folders of other classes (local-path's default ``pvc-<uid>_<namespace>_<claim>``) are not the retained class's
    and are left out, as are empty folders."""
    found = []
    if not data_dir.is_dir():
        return found
    for namespace in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "pvc-"))):
        for claim in sorted(p for p in namespace.iterdir() if p.is_dir()):
            if any(claim.iterdir()):
                found.append(f"{namespace.name}/{claim.name}")
    return found


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _unreadable(path: Path, exc: OSError, action: str) -> BackupError:
    return BackupError(
        f"Cannot {action} {path} ({exc.strerror or exc}): the cluster's containers wrote it as their own user; give "
        f"your user access (for example sudo chmod -R a+rwX {path.parent}) and run it again."
    )


def _copy(src: Path, dst: Path, action: str) -> None:
    try:
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    except shutil.Error as exc:  # a list of (src, dst, reason) per file
        first = exc.args[0][0] if exc.args and exc.args[0] else (str(src), "", str(exc))
        raise BackupError(
            f"Cannot {action} {first[0]} ({first[2]}): give your user access to it (for example sudo chmod -R a+rwX "
            f"{src}) and run it again."
        ) from exc
    except OSError as exc:
        raise _unreadable(Path(exc.filename or src), exc, action) from exc


# ------------------------------------------------------------------------------------------------------------ backup
def plan_backup(data_dir: Path, backups: Path, name: str, prometheus: Prometheus) -> dict[str, Any]:
    """What a backup named ``name`` would do: ``exists`` when it is already complete (nothing to do; its ``manifest``
    comes along), else the folders to copy and whether Prometheus's TSDB is among them (then a snapshot is needed)."""
    if not name or "/" in name or name.startswith("."):
        raise BackupError(f"The backup name {name!r} is not a folder name: use letters, digits, '-', '_' or '.'.")
    target = backups / name
    if (target / MANIFEST).is_file():
        return {"exists": True, "path": str(target), "manifest": load_manifest(target)}
    if target.exists():
        raise BackupError(f"{target} exists but is not a backup (it has no {MANIFEST}): choose another name.")
    folders = volume_folders(data_dir)
    if not folders:
        raise BackupError(
            f"There is nothing to back up: {data_dir} holds no volume folder of the kind cluster; run make bootstrap "
            "first (or set gitops_data_dir to where the volumes are)."
        )
    return {"exists": False, "path": str(target), "folders": folders, "snapshot": prometheus.folder in folders}


def take_snapshot(kubeconfig: str | None, context: str | None, prometheus: Prometheus, timeout: float = 120) -> str:
    """Ask Prometheus for a TSDB snapshot through the API server's service proxy; return the snapshot's name."""
    from kubernetes import client, config  # noqa: PLC0415 - only a backup that snapshots needs the client

    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
    except Exception as exc:  # ConfigException, OSError, ValueError
        raise BackupError(f"The kubeconfig {kubeconfig} cannot be loaded for context {context} ({exc}).") from exc
    try:
        # Unparsed (no _preload_content): the answer is Prometheus's JSON, not a Kubernetes object.
        response = api.call_api(
            prometheus.snapshot_api,
            "POST",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=timeout,
        )
        status, body = response.status, response.data
    except client.ApiException as exc:
        raise snapshot_refused(exc.status, exc.body or exc.reason, prometheus) from exc
    except Exception as exc:  # urllib3 and socket errors
        raise BackupError(
            f"The cluster did not answer the snapshot request ({exc}): check that it runs (make status)."
        ) from exc
    return snapshot_name(status, body, prometheus)


def _text(body: Any) -> str:
    return body.decode(errors="replace") if isinstance(body, bytes) else str(body)


def snapshot_refused(status: int, body: Any, prometheus: Prometheus) -> BackupError:
    text = _text(body)
    if "admin APIs disabled" in text:
        return BackupError(
            "Prometheus refused the snapshot because its admin API is off: sync the tree (make sync), whose "
            "kube-prometheus-stack HelmRelease sets prometheus.prometheusSpec.enableAdminAPI, and back up again."
        )
    if status in (404, 503):
        return BackupError(
            f"Prometheus ({prometheus.namespace}/{prometheus.service}) is not answering (HTTP {status}): wait until "
            "make status shows kube-prometheus-stack Ready, then back up again."
        )
    return BackupError(f"Prometheus answered the snapshot request with HTTP {status}: {text.strip()[:200]}")


def snapshot_name(status: int, body: Any, prometheus: Prometheus) -> str:
    """The name in Prometheus's answer ``{"status": "success", "data": {"name": ...}}``."""
    text = _text(body)
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    name = ((answer or {}).get("data") or {}).get("name") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(name, str) or not name or "/" in name:
        raise snapshot_refused(status, text, prometheus)
    return name


def write_backup(
    data_dir: Path, backups: Path, name: str, folders: list[str], *, prometheus: Prometheus, snapshot: str | None
) -> dict[str, Any]:
    """Copy the folders (Prometheus's as its snapshot) into ``<backups>/<name>`` with its manifest; return the manifest.

    The snapshot is removed from Prometheus's volume once copied, so snapshots never pile up there."""
    target, partial = backups / name, backups / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # what a failed run left
    # 0700: a backup holds Grafana's database (users, password hashes, sessions), readable by this user alone.
    backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial.mkdir(mode=0o700)
    snapshot_dir = None
    for folder in folders:
        if folder == prometheus.folder:
            if snapshot is None:
                continue
            snapshot_dir = data_dir / folder / prometheus.sub_path / "snapshots" / snapshot
            if not snapshot_dir.is_dir():
                raise BackupError(
                    f"Prometheus reported snapshot {snapshot}, but {snapshot_dir} does not exist: is gitops_data_dir "
                    "the folder the kind cluster mounts?"
                )
            _copy(snapshot_dir, partial / folder / prometheus.sub_path, "read")
        else:
            _copy(data_dir / folder, partial / folder, "read")
    files = {}
    for path in _files(partial):
        files[path.relative_to(partial).as_posix()] = {"size": path.stat().st_size, "sha256": _digest(path)}
    manifest = {
        "format": FORMAT,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_dir": str(data_dir),
        "folders": [f for f in folders if f != prometheus.folder or snapshot is not None],
        "prometheus_snapshot": snapshot,
        "files": files,
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.rename(target)
    if snapshot_dir is not None:
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    return manifest


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The part of a manifest a result shows: no per-file list."""
    return {
        "name": manifest["name"],
        "created": manifest["created"],
        "folders": manifest["folders"],
        "prometheus_snapshot": manifest.get("prometheus_snapshot"),
        "files": len(manifest["files"]),
        "bytes": sum(f["size"] for f in manifest["files"].values()),
    }


# ----------------------------------------------------------------------------------------------------------- restore
def load_manifest(backup: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((backup / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(
            f"{backup} is not a backup (it has no {MANIFEST}): pass a folder that make backup wrote, "
            "for example make restore BACKUP=<backups folder>/<name>."
        ) from exc
    except (OSError, ValueError) as exc:
        raise BackupError(f"{backup / MANIFEST} cannot be read ({exc}): pass another backup.") from exc
    valid = isinstance(manifest, dict) and manifest.get("format") == FORMAT
    if not (valid and isinstance(manifest.get("files"), dict) and isinstance(manifest.get("folders"), list)):
        raise BackupError(f"{backup / MANIFEST} is not a backup manifest of format {FORMAT}: pass another backup.")
    return manifest


def verify(backup: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there with its size and SHA-256."""
    for rel, expected in sorted(manifest["files"].items()):
        path = backup / rel
        if not path.is_file():
            raise BackupError(f"The backup {backup} is incomplete: {rel} is missing; restore another backup.")
        if path.stat().st_size != expected["size"] or _digest(path) != expected["sha256"]:
            raise BackupError(f"The backup {backup} is damaged: {rel} differs from {MANIFEST}; restore another backup.")


def restored_from(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / RESTORED_FROM).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same_backup(record: dict[str, Any] | None, manifest: dict[str, Any]) -> bool:
    return bool(record) and record.get("name") == manifest["name"] and record.get("created") == manifest["created"]


def plan_restore(backup: Path, data_dir: Path) -> dict[str, Any]:
    """Check the backup and the data dir; ``done`` when this backup is already restored there (nothing to do)."""
    manifest = load_manifest(backup)
    if _same_backup(restored_from(data_dir), manifest):
        return {"done": True, "manifest": manifest}
    verify(backup, manifest)
    occupied = [f for f in manifest["folders"] if (data_dir / f).is_dir() and any((data_dir / f).iterdir())]
    if occupied:
        raise BackupError(
            f"{data_dir / occupied[0]} already holds data, which a restore would overwrite: back it up with make "
            "backup if you need it, run make purge (it deletes the volumes' data and keeps the backups), then make "
            "restore again."
        )
    return {"done": False, "manifest": manifest}


def _open_to_containers(root: Path) -> None:
    """a+rwX, as local-path-provisioner makes each volume's folder 0777: the containers run as other users."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode | (0o777 if path.is_dir() else 0o666))


def write_restore(backup: Path, data_dir: Path, manifest: dict[str, Any]) -> None:
    """Copy every folder of the backup into the data dir, each through a temporary folder renamed when complete."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for folder in manifest["folders"]:
        target = data_dir / folder
        partial = target.parent / f".{target.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _copy(backup / folder, partial, "write")
        _open_to_containers(partial)
        if target.is_dir():  # empty (checked by plan_restore): local-path may have made it
            target.rmdir()
        partial.rename(target)
        target.parent.chmod(stat.S_IMODE(target.parent.stat().st_mode) | 0o755)
    record = {"name": manifest["name"], "created": manifest["created"], "path": str(backup)}
    (data_dir / RESTORED_FROM).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def run_backup(
    data_dir: Path,
    backups: Path,
    name: str,
    *,
    prometheus: Prometheus,
    check_mode: bool,
    snapshot: Callable[[], str],
) -> tuple[bool, dict[str, Any]]:
    """Back up into ``<backups>/<name>``; (changed, result). ``snapshot`` takes the Prometheus snapshot."""
    plan = plan_backup(data_dir, backups, name, prometheus)
    if plan["exists"]:
        return False, {"path": plan["path"], "backup": summary(plan["manifest"])}
    if check_mode:
        return True, {"path": plan["path"], "folders": plan["folders"]}
    taken = snapshot() if plan["snapshot"] else None
    manifest = write_backup(data_dir, backups, name, plan["folders"], prometheus=prometheus, snapshot=taken)
    return True, {"path": plan["path"], "backup": summary(manifest)}


def run_restore(backup: Path, data_dir: Path, check_mode: bool) -> tuple[bool, dict[str, Any]]:
    """Restore ``backup`` into the data dir; (changed, result)."""
    plan = plan_restore(backup, data_dir)
    result = {"backup": summary(plan["manifest"]), "data_dir": str(data_dir)}
    if plan["done"] or check_mode:
        return not plan["done"], result
    write_restore(backup, data_dir, plan["manifest"])
    return True, result


def default_name(now: float | None = None) -> str:
    """A backup's default name: the UTC time, sortable."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


__all__ = [
    "BackupError",
    "Prometheus",
    "default_name",
    "run_backup",
    "run_restore",
    "take_snapshot",
    "volume_folders",
]
