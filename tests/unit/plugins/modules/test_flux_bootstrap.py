"""Tests of the flux_bootstrap module's main(): argument spec, no_log, check mode, failures as fail_json.

The Kubernetes API is replaced at the boundary (``KubeApi`` -> the FakeKube of the module_utils tests) and
``AnsibleModule.run_command`` is recorded, so what the module would run is visible.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.filewcount.gitops.plugins.modules import flux_bootstrap

_SPEC = importlib.util.spec_from_file_location(
    "_fb_util_tests", Path(__file__).parents[1] / "module_utils" / "test_flux_bootstrap_utils.py"
)
helpers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(helpers)

TOKEN = helpers.TOKEN


def module_args(**over):
    args = {
        "provider": "github",
        "version": "v2.9.4",
        "owner": "octo",
        "repository": "fleet",
        "personal": True,
        "token": TOKEN,
        "path": "kube/clusters/kind",
        "kubeconfig": "/tmp/kubeconfig",
        "context": "kind-filewcount",
    }
    args.update(over)
    return args


@pytest.fixture
def cluster(monkeypatch):
    state = {"kube": helpers.FakeKube(), "commands": []}
    monkeypatch.setattr(flux_bootstrap, "KubeApi", lambda kubeconfig, context: state["kube"])

    def run_command(self, argv, environ_update=None, **kwargs):
        state["commands"].append((list(argv), dict(environ_update or {})))
        if argv[1:3] == ["version", "--client"]:
            return 0, "flux: v2.9.4\n", ""
        if argv[1:3] == ["bootstrap", "github"]:
            token = (environ_update or {}).get("GITHUB_TOKEN")
            if token != TOKEN:
                return (
                    1,
                    "",
                    "✗ failed to get Git repository: provider error: GET https://api.github.com/x: 401 Bad credentials",
                )
            done = helpers.synced_cluster(helpers.github_params())
            state["kube"].objects.update(done.objects)
            return 0, "✔ all components are healthy\n", ""
        return 1, "", "unexpected command"

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return state


def run_module(capsys, args, check_mode=False, diff=False):
    args = dict(args)
    args["_ansible_check_mode"] = check_mode
    args["_ansible_diff"] = diff
    with patch_module_args(args), pytest.raises(SystemExit):
        flux_bootstrap.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def test_fresh_cluster_check_mode_then_bootstrap_then_idempotent(cluster, capsys):
    result, raw = run_module(capsys, module_args(), check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["action"] == "bootstrap"
    assert cluster["commands"] == []
    assert cluster["kube"].mutating_calls() == []
    assert TOKEN not in raw

    result, raw = run_module(capsys, module_args())
    assert result["changed"] is True
    assert result["revision"] == "main@sha1:abc"
    assert result["controllers"]["source-controller"] == "v1.9.4"
    assert TOKEN not in raw
    assert all(TOKEN not in " ".join(argv) for argv, _env in cluster["commands"])
    assert cluster["commands"][-1][1] == {"GITHUB_TOKEN": TOKEN}

    cluster["commands"].clear()
    result, raw = run_module(capsys, module_args())
    assert result["changed"] is False
    assert result["action"] == "none"
    assert cluster["commands"] == []


def test_rejected_token_is_one_sentence_without_the_token(cluster, capsys):
    result, raw = run_module(capsys, module_args(token="ghp_wrong_token_value_123"))
    assert result["failed"] is True
    assert result["msg"].startswith("github.com rejected the token (401 Bad credentials)")
    assert "ghp_wrong_token_value_123" not in raw


def test_invalid_combination_fails_before_touching_anything(cluster, capsys):
    result, _out = run_module(capsys, module_args(provider="git", url="http://git.local/r.git"))
    assert result["failed"] is True
    assert "uses plain HTTP" in result["msg"]
    assert cluster["commands"] == []
    assert cluster["kube"].calls == []


def test_required_options_per_provider(cluster, capsys):
    args = module_args()
    del args["token"]
    result, _out = run_module(capsys, args)
    assert result["failed"] is True
    assert "token" in result["msg"]


def test_documentation_lists_every_option():
    documented = set(yaml.safe_load(flux_bootstrap.DOCUMENTATION)["options"])
    assert documented == set(flux_bootstrap._argument_spec())
    for name, spec in flux_bootstrap._argument_spec().items():
        if name in ("token", "password", "private_key"):
            assert spec.get("no_log") is True, name
