"""Fixtures shared by the module tests."""

from __future__ import annotations

import pytest
from ansible.module_utils import _internal


@pytest.fixture(autouse=True)
def _module_side_warnings(monkeypatch):
    """Run each module as it runs for real: outside the controller, returning its warnings in the result.

    Once any controller code is imported into the test process (the filter tests import the templating engine),
    ansible-core 2.19 sends module warnings straight to the controller's display instead of the module's result.
    A real module runs in a process of its own where that never happens, so the tests pin it to module side.
    """
    monkeypatch.setattr(_internal, "is_controller", False)


@pytest.fixture
def git_env(tmp_path, monkeypatch):
    """Run git as on a fresh machine: an empty HOME, no system config, and a fixed identity for commits."""
    home = tmp_path / "home"
    home.mkdir()
    for key, value in {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }.items():
        monkeypatch.setenv(key, value)
