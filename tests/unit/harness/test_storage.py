"""The stand-in local-path-provisioner's folder names (tests/harness/storage.py), against local-path-provisioner
v0.0.34's provisioner.go (pathFromPattern) and the StorageClass the tree declares for kind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
import storage  # noqa: E402

RETAIN = ROOT / "kube" / "infrastructure" / "controllers" / "storage" / "storageclass-retain.yaml"


def _class(**parameters: str) -> dict:
    return {"metadata": {"name": "c"}, "parameters": parameters}


def test_without_a_pattern_the_folder_is_the_volume_namespace_and_claim() -> None:
    assert storage.folder_name({"metadata": {"name": "standard"}}, "pvc-1", "ns", "data") == "pvc-1_ns_data"


def test_the_trees_retained_class_names_a_folder_that_a_new_volume_finds_again() -> None:
    retained = yaml.safe_load(RETAIN.read_text(encoding="utf-8"))
    assert retained["provisioner"] == storage.PROVISIONER
    assert retained["reclaimPolicy"] == "Retain"
    first = storage.folder_name(retained, "pvc-1", "monitoring", "prometheus-db")
    second = storage.folder_name(retained, "pvc-2", "monitoring", "prometheus-db")
    assert first == second == "monitoring/prometheus-db/"


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ({"pathPattern": "{{ .PVName }}/x/"}, "must start with {{ .PVC.Namespace }}/{{ .PVC.Name }}/"),
        ({"pathPattern": "{{ .PVC.Namespace }}/{{ .PVC.Name }}"}, "must start with"),
        ({"pathPattern": "{{ .PVC.Namespace }}/{{ .PVC.Name }}/{{ .PVC.Labels.app }}"}, "does not render"),
        ({"pathPattern": "../{{ .PVName }}", "allowUnsafePathPattern": "true"}, "leaves the node path"),
    ],
)
def test_a_pattern_the_provisioner_refuses_or_the_stand_in_cannot_render_is_reported(parameters, error) -> None:
    with pytest.raises(storage.UnsupportedPattern, match=error.replace("{", r"\{").replace("}", r"\}")):
        storage.folder_name(_class(**parameters), "pvc-1", "ns", "data")


def test_an_unsafe_pattern_is_allowed_when_the_class_says_so() -> None:
    assert (
        storage.folder_name(_class(pathPattern="{{ .PVName }}", allowUnsafePathPattern="true"), "pv", "n", "c") == "pv"
    )
