"""github mode's make sync and make upgrade without GITHUB_TOKEN: one sentence before anything is contacted.

No cluster is needed: the check is the first task of each playbook, so the run must stop there (git's own
"could not read Username" would otherwise come back from the push, after the remote was already changed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
GITHUB_VARS = ["-e", "gitops_mode=github", "-e", "gitops_github_owner=octo", "-e", "gitops_github_repository=fw"]


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="true")
    env.pop("GITHUB_TOKEN", None)
    env["FILEWCOUNT_STATE_DIR"] = str(tmp_path / "state")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(
        ["ansible-playbook", *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
    )


@pytest.mark.parametrize(
    ("playbook", "extra", "sentence", "checks"),
    [
        (
            "playbooks/sync.yml",
            [],
            "export GITHUB_TOKEN and set gitops_github_owner and gitops_github_repository",
            ["Check the github mode inputs"],
        ),
        (
            "playbooks/upgrade.yml",
            ["-e", "filewcount_image_tag=2.0"],
            "export GITHUB_TOKEN, then run the upgrade",
            ["Fail unless a tag was given", "Fail unless github mode has its token"],
        ),
    ],
)
def test_github_mode_without_a_token_stops_first_with_one_sentence(tmp_path, playbook, extra, sentence, checks):
    checkout = tmp_path / "checkout"  # never the developer's own checkout: a regression would add a remote there
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(checkout)], check=True)
    where = ["-e", f"gitops_repository_dir={checkout}"]
    remotes_before = subprocess.run(["git", "remote", "-v"], cwd=checkout, capture_output=True, text=True, check=True)
    proc = run(tmp_path, playbook, *GITHUB_VARS, *extra, *where)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, out[-2000:]
    assert sentence in out
    # Only the settings (role filewcount.gitops.gitops, which reads nothing but the checkout's top and its sync
    # path) and the playbook's argument checks ran: no git call, no API request.
    assert re.search(r"localhost : ok=\d+ changed=0 unreachable=0 failed=1", out), out[-600:]
    tasks = re.findall(r"^TASK \[([^\]]+)\]", proc.stdout, flags=re.MULTILINE)
    assert [t for t in tasks if not t.startswith("filewcount.gitops.gitops : ")] == checks, tasks
    assert "could not read Username" not in out
    remotes_after = subprocess.run(["git", "remote", "-v"], cwd=checkout, capture_output=True, text=True, check=True)
    assert remotes_after.stdout == remotes_before.stdout
