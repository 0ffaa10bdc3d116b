# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create, compare and delete a kind cluster by driving the kind CLI.

Plain Python, importable without Ansible. The wanted cluster config is hashed (canonical JSON) and the hash is
stored as a node label in the rendered config, so the record lives with the cluster itself: it survives a lost
state directory, and a cluster someone re-created by hand (without the label) is detected instead of trusted.
The label is read back through the Kubernetes API.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CONFIG_HASH_LABEL = "gitops.filewcount.io/kind-config-hash"
HASH_LENGTH = 40  # label values are limited to 63 characters; 160 bits of sha256 are plenty.
KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"

RunFn = Callable[[Sequence[str]], "tuple[int, str, str]"]
NodeReader = Callable[[str, str], "list[dict]"]  # (kubeconfig_path, context) -> list of {"name", "labels"}


class KindError(Exception):
    """The kind CLI failed or the cluster cannot be reconciled; the message is one user-facing sentence."""


class ConfigMismatch(KindError):
    """An existing cluster was created from a different config."""


# --------------------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------------------
def config_hash(config: dict) -> str:
    """Stable hash of the wanted config, ignoring the hash label itself."""
    clean = strip_hash_label(config)
    canonical = json.dumps(clean, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def strip_hash_label(config: dict) -> dict:
    clean = copy.deepcopy(config)
    for node in clean.get("nodes") or []:
        labels = node.get("labels")
        if isinstance(labels, dict):
            labels.pop(CONFIG_HASH_LABEL, None)
            if not labels:
                node.pop("labels")
    return clean


def validate_config(config: dict) -> None:
    if not isinstance(config, dict):
        raise KindError("The kind config must be a mapping: pass a kind Cluster config.")
    if config.get("kind") != "Cluster" or config.get("apiVersion") != KIND_API_VERSION:
        raise KindError(
            f"The kind config must have kind: Cluster and apiVersion: {KIND_API_VERSION}: fix the rendered config."
        )
    nodes = config.get("nodes") or []
    if not any((n or {}).get("role", "control-plane") == "control-plane" for n in nodes) and nodes:
        raise KindError("The kind config has no control-plane node: add one to nodes.")


def render_config(config: dict, name: str) -> tuple[dict, str]:
    """Return (config with name and hash label on every node, hash)."""
    validate_config(config)
    wanted = strip_hash_label(config)
    wanted["name"] = name
    if not wanted.get("nodes"):
        wanted["nodes"] = [{"role": "control-plane"}]
    digest = config_hash(wanted)
    rendered = copy.deepcopy(wanted)
    for node in rendered["nodes"]:
        labels = node.setdefault("labels", {})
        labels[CONFIG_HASH_LABEL] = digest
    return rendered, digest


def context_name(name: str) -> str:
    return f"kind-{name}"


# --------------------------------------------------------------------------------------------------------------
# kind CLI
# --------------------------------------------------------------------------------------------------------------
def _first_error(stderr: str) -> str:
    """The most telling line: the failed command's own output when kind shows it, else kind's ERROR line."""
    for raw in reversed(stderr.splitlines()):
        if raw.strip().startswith("Command Output:"):
            return raw.strip()[len("Command Output:") :].strip()
    for raw in stderr.splitlines():
        line = raw.strip()
        if line.startswith("ERROR:"):
            return line[len("ERROR:") :].strip()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


# (all substrings that must appear in the lower-cased stderr, sentence template); first match wins.
_FAILURES = (
    (
        ("permission denied", "docker"),
        "kind {action} failed because your user may not use the Docker daemon socket: add yourself to the docker "
        "group (`sudo usermod -aG docker $USER`) and log in again.",
    ),
    (
        ("cannot connect to the docker daemon",),
        "kind {action} failed because the Docker daemon is not running: start Docker and run again.",
    ),
    (
        ("port is already allocated",),
        "kind {action} failed because a host port of the cluster's port mappings is taken ({detail}): free the port "
        "or choose other host ports.",
    ),
    (
        ("address already in use",),
        "kind {action} failed because a host port of the cluster's port mappings is taken ({detail}): free the port "
        "or choose other host ports.",
    ),
    (
        ("already exist for a cluster with the name",),
        "kind {action} failed because a cluster with that name already exists ({detail}): delete it with "
        "`kind delete cluster --name NAME` or use another name.",
    ),
    (
        ("no space left on device",),
        "kind {action} failed because the disk is full: free some space (`docker system prune`) and run again.",
    ),
    (
        ("pull", "image"),
        "kind {action} failed while pulling the node image ({detail}): check the network and that the pinned "
        "image exists for this kind release.",
    ),
)


def explain_failure(action: str, rc: int, stderr: str) -> str:
    """Map a kind failure to one sentence naming the problem and the fix."""
    text = stderr.lower()
    detail = _first_error(stderr).rstrip(".")
    if rc == 127 or ("no such file or directory" in text and not text.startswith("error:")):
        return f"The kind CLI could not be run ({detail}): install it or let the kind role download it."
    for needles, template in _FAILURES:
        if all(n in text for n in needles):
            return template.format(action=action, detail=detail)
    return f"kind {action} failed ({detail}): fix the cause and run again."


class KindCLI:
    """Builds argv lists for the kind subcommands used here and runs them through `run`."""

    def __init__(self, run: RunFn, kind: str = "kind"):
        self.run = run
        self.kind = kind

    def _call(self, action: str, argv: list[str]) -> str:
        rc, out, err = self.run([self.kind, *argv])
        if rc != 0:
            raise KindError(explain_failure(action, rc, err))
        return out

    def get_clusters(self) -> list[str]:
        out = self._call("get clusters", ["get", "clusters"])
        return [line.strip() for line in out.splitlines() if line.strip()]

    def get_kubeconfig(self, name: str) -> str:
        return self._call("get kubeconfig", ["get", "kubeconfig", "--name", name])

    def export_kubeconfig(self, name: str, kubeconfig: str | None) -> None:
        argv = ["export", "kubeconfig", "--name", name]
        if kubeconfig:
            argv += ["--kubeconfig", kubeconfig]
        self._call("export kubeconfig", argv)

    def create_cluster(self, name: str, config_path: str, kubeconfig: str, wait: int = 0, retain: bool = False) -> None:
        argv = ["create", "cluster", "--name", name, "--config", config_path, "--kubeconfig", kubeconfig]
        if wait:
            argv += ["--wait", f"{int(wait)}s"]
        if retain:
            argv.append("--retain")
        self._call("create cluster", argv)

    def delete_cluster(self, name: str, kubeconfig: str | None) -> None:
        argv = ["delete", "cluster", "--name", name]
        if kubeconfig:
            argv += ["--kubeconfig", kubeconfig]
        self._call("delete cluster", argv)


# --------------------------------------------------------------------------------------------------------------
# kubeconfig helpers
# --------------------------------------------------------------------------------------------------------------
def _load_yaml(text: str):
    try:
        import yaml  # noqa: PLC0415 (optional dependency, present wherever Ansible runs)
    except ImportError:  # pragma: no cover - json is a subset of YAML, enough for tests without PyYAML
        return json.loads(text)
    return yaml.safe_load(text)


def _named(items, name):
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return None


def kubeconfig_entry(kubeconfig: dict, context: str) -> dict | None:
    """The (cluster, user) pair a context points at, or None when the context is missing."""
    if not isinstance(kubeconfig, dict):
        return None
    ctx = _named(kubeconfig.get("contexts"), context)
    if not ctx:
        return None
    ctx = ctx.get("context") or {}
    cluster = _named(kubeconfig.get("clusters"), ctx.get("cluster"))
    user = _named(kubeconfig.get("users"), ctx.get("user"))
    return {"cluster": (cluster or {}).get("cluster"), "user": (user or {}).get("user")}


def kubeconfig_matches(path: str, wanted_text: str, context: str) -> bool:
    """True when the file at path holds `context` with the same cluster and credentials as wanted_text."""
    try:
        with open(path, encoding="utf-8") as handle:
            current = _load_yaml(handle.read())
    except (OSError, ValueError):
        return False
    except Exception:
        return False
    want = kubeconfig_entry(_load_yaml(wanted_text), context)
    have = kubeconfig_entry(current, context)
    return bool(want) and want == have


def user_kubeconfig_path(env=None) -> str:
    """Where kind writes without --kubeconfig: first existing $KUBECONFIG entry (else the last), or ~/.kube/config."""
    env = os.environ if env is None else env
    paths = [p for p in (env.get("KUBECONFIG") or "").split(os.pathsep) if p]
    for path in paths:
        if os.path.exists(path):
            return path
    if paths:
        return paths[-1]
    return os.path.join(os.path.expanduser("~"), ".kube", "config")


def read_node_labels(kubeconfig: str, context: str) -> list[dict]:
    """Read nodes through the Kubernetes API (python kubernetes client, imported lazily)."""
    try:
        from kubernetes import client, config  # noqa: PLC0415
    except ImportError as exc:
        raise KindError(
            f"The Python kubernetes library is missing ({exc}): install it (`pip install kubernetes`)."
        ) from exc
    try:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        nodes = client.CoreV1Api(api_client).list_node(_request_timeout=30)
    except Exception as exc:
        reason = (str(exc).splitlines() or ["no detail"])[0]
        raise KindError(
            f"The cluster's API could not be read through context {context} ({reason}): check that the "
            "cluster is running (`docker ps`) or recreate it."
        ) from exc
    return [{"name": n.metadata.name, "labels": dict(n.metadata.labels or {})} for n in nodes.items]


# --------------------------------------------------------------------------------------------------------------
# reconcile
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    changed: bool = False
    created: bool = False
    deleted: bool = False
    kubeconfig_written: bool = False
    config_hash: str = ""
    current_hash: str | None = None
    warnings: list = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def recreate_hint(name: str, kubeconfig: str) -> str:
    return (
        f"`make teardown && make bootstrap`, or `kind delete cluster --name {name} --kubeconfig {kubeconfig}` "
        "and run again"
    )


def _mismatch(name: str, current: str | None, digest: str) -> str | None:
    if current == digest:
        return None
    if not current:
        return (
            f"The kind cluster '{name}' exists but its nodes carry no single {CONFIG_HASH_LABEL} label, so its "
            "configuration is unknown (it was not created by this project)"
        )
    return (
        f"The kind cluster '{name}' was created from a different configuration (config hash {current}, wanted {digest})"
    )


def _write_config(config: dict, directory: str | None) -> str:
    fd, path = tempfile.mkstemp(prefix="kind-config-", suffix=".yaml", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        # JSON is valid YAML and keeps this module free of a YAML writer.
        json.dump(config, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def _ensure_kubeconfig(cli: KindCLI, name: str, path: str, check_mode: bool, outcome: Outcome) -> str:
    """Make `path` hold the cluster's context; returns kind's kubeconfig text."""
    wanted = cli.get_kubeconfig(name)
    if not kubeconfig_matches(path, wanted, context_name(name)):
        outcome.changed = True
        outcome.kubeconfig_written = True
        if not check_mode:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, mode=0o700, exist_ok=True)
            cli.export_kubeconfig(name, path)
    return wanted


def ensure_present(
    cli: KindCLI,
    name: str,
    config: dict,
    kubeconfig: str,
    *,
    check_mode: bool = False,
    on_mismatch: str = "fail",
    wait: int = 0,
    retain: bool = False,
    export_user_kubeconfig: bool = False,
    node_reader: NodeReader = read_node_labels,
    tmpdir: str | None = None,
    user_kubeconfig: str | None = None,
) -> Outcome:
    rendered, digest = render_config(config, name)
    outcome = Outcome(config_hash=digest, config=rendered)
    outcome.after = {"name": name, "exists": True, "config_hash": digest}
    clusters = cli.get_clusters()
    if name not in clusters:
        outcome.before = {"name": name, "exists": False}
        outcome.changed = outcome.created = outcome.kubeconfig_written = True
        if not check_mode:
            parent = os.path.dirname(kubeconfig)
            if parent:
                os.makedirs(parent, mode=0o700, exist_ok=True)
            path = _write_config(rendered, tmpdir)
            try:
                cli.create_cluster(name, path, kubeconfig, wait=wait, retain=retain)
            finally:
                os.unlink(path)
            if export_user_kubeconfig:
                cli.export_kubeconfig(name, None)
        return outcome

    kubeconfig_text = _ensure_kubeconfig(cli, name, kubeconfig, check_mode, outcome)
    # Read the nodes with kind's own kubeconfig (works in check mode before the file is written).
    fd, probe = tempfile.mkstemp(prefix="kind-kubeconfig-", dir=tmpdir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(kubeconfig_text)
        nodes = node_reader(probe, context_name(name))
    finally:
        os.unlink(probe)
    hashes = sorted({(n.get("labels") or {}).get(CONFIG_HASH_LABEL) or "" for n in nodes})
    current = hashes[0] if len(hashes) == 1 else None
    outcome.current_hash = current
    outcome.before = {"name": name, "exists": True, "config_hash": current}
    problem = _mismatch(name, current, digest)
    if problem:
        message = f"{problem}: recreate it with {recreate_hint(name, kubeconfig)}."
        if on_mismatch == "fail":
            raise ConfigMismatch(message)
        outcome.warnings.append(message)
        outcome.after = dict(outcome.before)
    if export_user_kubeconfig:
        target = user_kubeconfig or user_kubeconfig_path()
        if not kubeconfig_matches(target, kubeconfig_text, context_name(name)):
            outcome.changed = True
            if not check_mode:
                cli.export_kubeconfig(name, None)
    return outcome


def _has_context(path: str, context: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            data = _load_yaml(handle.read())
    except Exception:
        return False
    return bool(isinstance(data, dict) and _named(data.get("contexts"), context))


def ensure_absent(
    cli: KindCLI,
    name: str,
    kubeconfig: str | None,
    *,
    check_mode: bool = False,
    clean_user_kubeconfig: bool = False,
    user_kubeconfig: str | None = None,
) -> Outcome:
    """Delete the cluster and its context from the project kubeconfig (and, when asked, the user's)."""
    outcome = Outcome(after={"name": name, "exists": False})
    exists = name in cli.get_clusters()
    stale = bool(kubeconfig) and _has_context(kubeconfig, context_name(name))
    outcome.before = {"name": name, "exists": exists}
    if exists or stale:
        outcome.changed = True
        outcome.deleted = exists
        if not check_mode:
            cli.delete_cluster(name, kubeconfig)
    if clean_user_kubeconfig and _has_context(user_kubeconfig or user_kubeconfig_path(), context_name(name)):
        # Without --kubeconfig kind removes the context from $KUBECONFIG or ~/.kube/config (nodes are gone).
        outcome.changed = True
        if not check_mode:
            cli.delete_cluster(name, None)
    return outcome
