"""Tests of the kind_cluster module: main() with patched arguments, driving the stand-in kind CLI
(tests/harness/bin/kind) against a small fake Node API, so argv, the kubeconfig and the API read are all real."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.module_utils.kind import CONFIG_HASH_LABEL
from ansible_collections.filewcount.gitops.plugins.modules import kind_cluster

ROOT = Path(__file__).resolve().parents[4]
STANDIN_KIND = ROOT / "tests" / "harness" / "bin" / "kind"
sys.path.insert(0, str(ROOT / "tests" / "unit" / "harness"))
from fake_nodes_api import FakeNodesAPI  # noqa: E402


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api(tmp_path, monkeypatch):
    with FakeNodesAPI() as fake:
        monkeypatch.setenv("STANDIN_API_SERVER", fake.url)
        monkeypatch.setenv("STANDIN_STATE_DIR", str(tmp_path / "standin"))
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.delenv("KUBECONFIG", raising=False)
        yield fake
        # never leave a NodePort server behind
        os.system(f"{sys.executable} {STANDIN_KIND} delete cluster --name filewcount -q >/dev/null 2>&1")  # noqa: S605


def cluster_config(port):
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [
            {
                "role": "control-plane",
                "image": "kindest/node:v1.36.4@sha256:" + "a" * 64,
                "extraPortMappings": [{"containerPort": 30099, "hostPort": port, "listenAddress": "127.0.0.1"}],
            }
        ],
    }


def run_module(capsys, args, check_mode=False, diff=True):
    args = dict(args, kind_command=str(STANDIN_KIND))
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        kind_cluster.main()
    return json.loads(capsys.readouterr().out)


def test_create_check_idempotent_mismatch_and_delete(api, tmp_path, capsys):
    port = free_port()
    kubeconfig = tmp_path / "state" / "kubeconfig"
    args = {"name": "filewcount", "config": cluster_config(port), "kubeconfig": str(kubeconfig)}

    result = run_module(capsys, args, check_mode=True)
    assert result["changed"] and result["created"] and not kubeconfig.exists() and not api.nodes
    assert result["diff"]["before"] == {"name": "filewcount", "exists": False}

    result = run_module(capsys, args)
    assert result["changed"] and result["created"], result
    labels = api.nodes["filewcount-control-plane"]["metadata"]["labels"]
    assert labels[CONFIG_HASH_LABEL] == result["config_hash"]
    assert "kind-filewcount" in kubeconfig.read_text()
    assert not (tmp_path / "home" / ".kube" / "config").exists()

    again = run_module(capsys, args)
    assert again["changed"] is False and again["current_hash"] == result["config_hash"]

    kubeconfig.unlink()
    rewritten = run_module(capsys, args)
    assert rewritten["changed"] and rewritten["kubeconfig_written"] and kubeconfig.exists()

    other = dict(args, config=cluster_config(free_port()))
    failed = run_module(capsys, other)
    assert failed["failed"]
    assert "created from a different configuration" in failed["msg"]
    assert "make teardown && make bootstrap" in failed["msg"]

    warned = run_module(capsys, dict(other, on_config_change="warn"))
    assert not warned.get("failed") and warned["changed"] is False
    assert "different configuration" in json.dumps(warned["warnings"])

    absent = {"name": "filewcount", "state": "absent", "kubeconfig": str(kubeconfig)}
    check = run_module(capsys, absent, check_mode=True)
    assert check["changed"] and check["deleted"] and api.nodes
    gone = run_module(capsys, absent)
    assert gone["changed"] and gone["deleted"] and not api.nodes
    assert run_module(capsys, absent)["changed"] is False


def test_missing_kind_fails_with_one_sentence(api, tmp_path, capsys):
    args = {
        "name": "x",
        "config": cluster_config(free_port()),
        "kubeconfig": str(tmp_path / "kc"),
        "kind_command": str(tmp_path / "no-kind"),
    }
    with patch_module_args(args), pytest.raises(SystemExit):
        kind_cluster.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and result["msg"].startswith(f"The kind CLI ({tmp_path / 'no-kind'}) was not found")


def test_port_taken_maps_to_clear_message(api, tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        args = {
            "name": "filewcount",
            "config": cluster_config(busy.getsockname()[1]),
            "kubeconfig": str(tmp_path / "kc"),
        }
        result = run_module(capsys, args)
    assert result["failed"]
    assert "host port of the cluster's port mappings is taken" in result["msg"]
    assert "port is already allocated" in result["msg"]


def test_state_present_requires_config(api, tmp_path, capsys):
    with patch_module_args({"name": "x", "kubeconfig": str(tmp_path / "kc")}), pytest.raises(SystemExit):
        kind_cluster.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and "config" in result["msg"]
