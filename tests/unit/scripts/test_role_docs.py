"""The role READMEs are generated from argument specs; this keeps them from drifting."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("role_docs", ROOT / "scripts" / "role_docs.py")
role_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(role_docs)

ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


@pytest.mark.parametrize("role_dir", ROLES, ids=[r.name for r in ROLES])
def test_readme_matches_argument_specs(role_dir):
    readme = role_dir / "README.md"
    assert readme.exists(), f"{role_dir.name}: run make docs to generate README.md"
    assert readme.read_text() == role_docs.render(role_dir), f"{role_dir.name}: README is stale; run make docs"


@pytest.mark.parametrize("role_dir", ROLES, ids=[r.name for r in ROLES])
def test_defaults_and_specs_list_the_same_variables(role_dir):
    specs = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    # A default is documented when any entry point lists it (an uninstall-only variable need not be in main).
    spec_vars = {name for entry in specs.values() for name in (entry.get("options") or {})}
    for entry in specs.values():
        for name, option in (entry.get("options") or {}).items():
            assert (option or {}).get("description"), f"{role_dir.name}: {name} has no description"
            assert name.startswith(role_dir.name + "_"), f"{role_dir.name}: {name} lacks the role prefix"
    defaults_file = role_dir / "defaults" / "main.yml"
    defaults = set(yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else set()
    missing_in_specs = defaults - spec_vars
    assert not missing_in_specs, f"{role_dir.name}: defaults not in argument_specs: {sorted(missing_in_specs)}"
    optional = {n for n, o in ((specs.get("main") or {}).get("options") or {}).items() if not (o or {}).get("required")}
    missing_in_defaults = optional - defaults
    assert not missing_in_defaults, f"{role_dir.name}: optional specs without a default: {sorted(missing_in_defaults)}"


def test_render_marks_required_and_lists_types(tmp_path):
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    short_description: Demo role.\n    options:\n"
        "      demo_name: {type: str, required: true, description: The name.}\n"
        "      demo_ports: {type: list, elements: int, description: Ports | to open.}\n"
    )
    (role / "defaults" / "main.yml").write_text("demo_ports: [1, 2]\n")
    text = role_docs.render(role)
    assert "| `demo_name` | str | required | The name. |" in text
    assert "| `demo_ports` | list of int | `[1, 2]` | Ports \\| to open. |" in text
