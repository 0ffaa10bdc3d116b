"""tests/harness/cluster.py start(): a start that fails is made once more from scratch, a second failure raised."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "harness"))
import cluster as harness


def test_a_failed_start_is_made_again_once(tmp_path, monkeypatch, capsys):
    calls = []

    def start_once(state_dir, name, node_labels, *, kubelet, metrics_api):
        calls.append(name)
        if len(calls) == 1:
            raise harness.HarnessError("etcd exited while starting; bind: address already in use")
        return "started"

    monkeypatch.setattr(harness, "_start_once", start_once)
    assert harness.start(tmp_path, "c") == "started"
    assert calls == ["c", "c"]
    assert "did not start (etcd exited while starting" in capsys.readouterr().err


def test_a_second_failure_is_raised(tmp_path, monkeypatch):
    def start_once(state_dir, name, node_labels, *, kubelet, metrics_api):
        raise harness.HarnessError("kube-apiserver did not answer /readyz within 60 s")

    monkeypatch.setattr(harness, "_start_once", start_once)
    with pytest.raises(harness.HarnessError, match="readyz within 60 s"):
        harness.start(tmp_path, "c")
