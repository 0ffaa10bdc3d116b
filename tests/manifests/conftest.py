"""Shared fixtures of the manifest suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

import cluster as harness
import validate


@pytest.fixture(scope="session")
def schemas() -> Path:
    """The pinned schema directory (FILEWCOUNT_SCHEMAS_DIR, default ../shared/schemas)."""
    path = validate.default_schemas_dir()
    if not (path / "crds").is_dir() or not (path / "charts").is_dir():
        pytest.fail(
            f"Schema directory {path} is missing crds/ or charts/; set FILEWCOUNT_SCHEMAS_DIR or run `make schemas`.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def tree(schemas: Path) -> validate.Tree:
    """The repository's GitOps tree, loaded once for the session (kind's sync path)."""
    return validate.load_tree(validate.REPO_ROOT, schemas)


def _testbin(name: str) -> Path:
    """A program the harness builds (make testbin); the test is skipped, saying so, when it is not built."""
    try:
        return harness.binary(name)
    except harness.HarnessError as exc:
        pytest.skip(f"the harness's {name} is not built: {exc}")


@pytest.fixture(scope="session")
def amtool() -> Path:
    """Alertmanager's amtool, at the chart's Alertmanager version."""
    return _testbin("amtool")


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Prometheus's promtool, at the chart's Prometheus version."""
    return _testbin("promtool")
