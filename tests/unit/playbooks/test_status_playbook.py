"""playbooks/status.yml reads every kind of Flux source, so a source that cannot be fetched shows up in the report.

The kinds come from the pinned CRDs (FILEWCOUNT_SCHEMAS_DIR, ../shared/schemas by default): every
source.toolkit.fluxcd.io CRD there must be listed under `sources` at its stored API version.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = Path(os.environ.get("FILEWCOUNT_SCHEMAS_DIR") or ROOT.parent / "shared" / "schemas")


def _source_crds() -> list[tuple[str, str]]:
    found = []
    for path in sorted((SCHEMAS / "crds").glob("source.toolkit.fluxcd.io_*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        version = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
        found.append((f"{crd['spec']['group']}/{version}", crd["spec"]["names"]["kind"]))
    return found


def _gathered(key: str) -> list[tuple[str, str]]:
    play = yaml.safe_load((ROOT / "playbooks" / "status.yml").read_text(encoding="utf-8"))[0]
    return [(item["api_version"], item["kind"]) for item in play["vars"]["__status_kinds"] if item["key"] == key]


def test_every_flux_source_kind_is_read():
    crds = _source_crds()
    if not crds:
        pytest.skip(f"no Flux source CRDs under {SCHEMAS}/crds (set FILEWCOUNT_SCHEMAS_DIR)")
    assert {kind for _version, kind in crds} >= {"GitRepository", "OCIRepository", "HelmRepository"}
    assert sorted(_gathered("sources")) == sorted(crds)
