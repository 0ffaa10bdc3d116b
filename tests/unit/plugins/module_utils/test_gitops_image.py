"""Unit tests for plugins/module_utils/gitops_image.py: pure edits and the git side on real repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ansible_collections.filewcount.gitops.plugins.module_utils import gitops_image as g

MANIFEST = "kube/apps/filewcount/deployment.yaml"
IMAGE = "docker.io/bldrtech/filewcount"
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: filewcount
  namespace: filewcount
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: filewcount
          image: docker.io/bldrtech/filewcount:1.0  # bumped by playbooks/upgrade.yml
          ports:
            - containerPort: 80
"""


@pytest.mark.parametrize("tag", ["2.0", "1.0", "v1.2.3", "10.20"])
def test_validate_tag_accepts_versions(tag):
    assert g.validate_tag(tag) == tag


@pytest.mark.parametrize(
    ("tag", "needle"),
    [
        ("", "No image tag given"),
        (None, "No image tag given"),
        ("latest", "Refusing the tag 'latest'"),
        ("2.0 ; rm", "not a valid container image tag"),
        (":2.0", "not a valid container image tag"),
        ("x" * 129, "not a valid container image tag"),
        ("two", "does not match the expected version format"),
        ("2", "does not match"),
    ],
)
def test_validate_tag_rejects(tag, needle):
    with pytest.raises(g.InvalidTagError, match=needle):
        g.validate_tag(tag)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("          image: docker.io/bldrtech/filewcount:1.0", "          image: docker.io/bldrtech/filewcount:2.0"),
        ('        - image: "bldrtech/filewcount:1.0"', '        - image: "bldrtech/filewcount:2.0"'),
        ("  image: 'docker.io/bldrtech/filewcount:1.0' # pin", "  image: 'docker.io/bldrtech/filewcount:2.0' # pin"),
        ("  image: docker.io/bldrtech/filewcount:1.0@sha256:" + "a" * 64, "  image: docker.io/bldrtech/filewcount:2.0"),
        ("  image: docker.io/bldrtech/filewcount", "  image: docker.io/bldrtech/filewcount:2.0"),
    ],
)
def test_replace_image_tag_line_forms(line, expected):
    new, old = g.replace_image_tag(line + "\n", IMAGE, "2.0")
    assert new == expected + "\n"
    assert len(old) == 1


def test_replace_leaves_other_images_and_keys_alone():
    text = (
        DEPLOYMENT + "        - name: side\n          image: docker.io/bldrtech/filewcount-sidecar:1.0\n"
        "# image: docker.io/bldrtech/filewcount:0.9 (history)\n"
    )
    new, old = g.replace_image_tag(text, IMAGE, "2.0")
    assert old == ["docker.io/bldrtech/filewcount:1.0"]
    assert "filewcount-sidecar:1.0" in new
    assert "filewcount:0.9 (history)" in new
    assert new.count("filewcount:2.0") == 1
    assert g.current_images(new, IMAGE) == ["docker.io/bldrtech/filewcount:2.0"]


def test_replace_same_tag_is_identity():
    new, old = g.replace_image_tag(DEPLOYMENT, IMAGE, "1.0")
    assert new == DEPLOYMENT
    assert old == ["docker.io/bldrtech/filewcount:1.0"]


def test_replace_without_image_line_fails():
    with pytest.raises(g.ImageNotFoundError, match=r"No 'image: docker.io/bldrtech/filewcount:<tag>' line"):
        g.replace_image_tag("kind: Service\n", IMAGE, "2.0")


def test_yaml_check_catches_a_reference_the_regex_missed():
    text = DEPLOYMENT + "        - {name: b, image: docker.io/bldrtech/filewcount:1.0}\n"
    with pytest.raises(g.ImageNotFoundError, match="edit it by hand"):
        g.replace_image_tag(text, IMAGE, "2.0")


def test_other_registry_matches_only_exact_name():
    assert g.current_images("image: ghcr.io/bldrtech/filewcount:1\n", "ghcr.io/bldrtech/filewcount") == [
        "ghcr.io/bldrtech/filewcount:1"
    ]
    assert g.current_images("image: bldrtech/filewcount:1\n", "ghcr.io/bldrtech/filewcount") == []


# ----------------------------------------------------------------------------------------- real git repos
def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repos(tmp_path: Path):
    """A bare 'local' remote seeded from a checkout on branch main; returns (checkout, bare)."""
    bare = tmp_path / "remote.git"
    work = tmp_path / "work"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    _git(tmp_path, "init", "--quiet", "--initial-branch=main", str(work))
    _git(work, "config", "user.name", "Test")
    _git(work, "config", "user.email", "test@example.invalid")
    (work / MANIFEST).parent.mkdir(parents=True)
    (work / MANIFEST).write_text(DEPLOYMENT)
    _git(work, "add", ".")
    _git(work, "commit", "--quiet", "-m", "seed")
    _git(work, "remote", "add", "local", str(bare))
    _git(work, "push", "--quiet", "local", "main")
    return work, bare


def _up(work, tag="2.0", check_mode=False, remote="local"):
    return g.upgrade(g.Git(str(work)), manifest=MANIFEST, image=IMAGE, tag=tag, remote=remote, check_mode=check_mode)


def test_upgrade_commits_and_pushes_then_is_idempotent(repos):
    work, bare = repos
    first = _up(work)
    assert first.changed and first.pushed and first.committed
    assert first.old_images == ["docker.io/bldrtech/filewcount:1.0"]
    assert first.new_image == "docker.io/bldrtech/filewcount:2.0"
    assert _git(bare, "rev-parse", "main") == first.committed == _git(work, "rev-parse", "HEAD")
    assert "filewcount:2.0" in _git(bare, "show", f"main:{MANIFEST}")
    assert _git(bare, "log", "-1", "--format=%s", "main") == "Upgrade filewcount to docker.io/bldrtech/filewcount:2.0"
    assert _git(work, "show", "--name-only", "--format=", "HEAD") == MANIFEST
    second = _up(work)
    assert not second.changed and not second.pushed
    assert "nothing to do" in second.message
    assert _git(bare, "rev-list", "--count", "main") == "2"
    back = _up(work, "1.0")  # downgrade is the same operation
    assert back.changed and back.old_images == ["docker.io/bldrtech/filewcount:2.0"]
    assert "filewcount:1.0" in _git(bare, "show", f"main:{MANIFEST}")


def test_check_mode_changes_nothing(repos):
    work, bare = repos
    head = _git(bare, "rev-parse", "main")
    result = _up(work, check_mode=True)
    assert result.changed and not result.pushed and result.committed is None
    assert "filewcount:2.0" in result.after and "filewcount:1.0" in result.before
    assert (work / MANIFEST).read_text() == DEPLOYMENT
    assert _git(bare, "rev-parse", "main") == head
    assert _git(work, "status", "--porcelain") == ""


def test_dirty_tree_is_refused(repos):
    work, bare = repos
    (work / MANIFEST).write_text(DEPLOYMENT + "# local edit\n")
    with pytest.raises(g.DirtyTreeError, match=rf"uncommitted changes \({MANIFEST}\): commit or stash"):
        _up(work)
    assert _git(bare, "rev-list", "--count", "main") == "1"


def test_untracked_files_do_not_block(repos):
    work, _bare = repos
    (work / "notes.txt").write_text("scratch")
    assert _up(work).pushed
    assert "notes.txt" not in _git(work, "show", "--name-only", "--format=", "HEAD")


def test_pushes_when_only_the_remote_lags(repos):
    work, bare = repos
    text = (work / MANIFEST).read_text().replace(":1.0", ":2.0")
    (work / MANIFEST).write_text(text)
    _git(work, "commit", "--quiet", "-am", "bump locally")
    result = _up(work)
    assert result.changed and result.pushed and result.committed is None
    assert "already uses docker.io/bldrtech/filewcount:2.0 locally" in result.message
    assert _git(bare, "rev-parse", "main") == _git(work, "rev-parse", "HEAD")


def test_remote_ahead_is_refused(repos, tmp_path):
    work, bare = repos
    other = tmp_path / "other"
    _git(tmp_path, "clone", "--quiet", str(bare), str(other))
    (other / "README").write_text("x")
    _git(other, "add", "README")
    _git(other, "-c", "user.name=o", "-c", "user.email=o@example.invalid", "commit", "--quiet", "-m", "other")
    _git(other, "push", "--quiet", "origin", "main")
    with pytest.raises(g.RemoteAheadError, match="git pull --rebase local main"):
        _up(work)
    assert (work / MANIFEST).read_text() == DEPLOYMENT


def test_missing_remote_is_explained(repos):
    work, _bare = repos
    with pytest.raises(g.GitCommandError, match="remote is missing"):
        _up(work, remote="origin")


def test_not_a_repository(tmp_path):
    with pytest.raises(g.GitCommandError, match="needs a git checkout"):
        g.upgrade(g.Git(str(tmp_path)), manifest=MANIFEST, image=IMAGE, tag="2.0", remote="local")


def test_detached_head_is_refused(repos):
    work, _bare = repos
    _git(work, "checkout", "--quiet", "--detach")
    with pytest.raises(g.GitCommandError, match="detached HEAD"):
        _up(work)


@pytest.fixture
def no_identity(repos, monkeypatch, tmp_path):
    """The checkout of ``repos`` on a fresh machine: git has no identity and cannot guess an e-mail address."""
    work, bare = repos
    _git(work, "config", "--unset", "user.name")
    _git(work, "config", "--unset", "user.email")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # Hosts whose name has a domain let git guess user@host; make the test independent of this machine's name.
    _git(work, "config", "user.useConfigOnly", "true")
    probe = subprocess.run(["git", "var", "GIT_AUTHOR_IDENT"], cwd=work, capture_output=True, check=False)
    assert probe.returncode != 0
    return work, bare


def test_missing_identity_commits_as_the_default(no_identity):
    work, bare = no_identity
    result = _up(work)
    assert result.pushed and result.committed
    assert _git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "main") == (
        "filewcount.gitops <filewcount-gitops@localhost>|filewcount.gitops <filewcount-gitops@localhost>"
    )
    assert "user.name" not in _git(work, "config", "--list", "--local")  # nothing written to the user's config


def test_half_an_identity_keeps_its_half(no_identity):
    work, bare = no_identity
    _git(work, "config", "user.name", "Ada")
    assert _up(work).pushed
    assert _git(bare, "log", "-1", "--format=%an <%ae>", "main") == "Ada <filewcount-gitops@localhost>"


def test_given_identity_wins(no_identity):
    work, bare = no_identity
    git = g.Git(str(work), identity={"user.name": "Bot", "user.email": "bot@example.invalid"})
    assert g.upgrade(git, manifest=MANIFEST, image=IMAGE, tag="2.0", remote="local").pushed
    assert _git(bare, "log", "-1", "--format=%an <%ae>", "main") == "Bot <bot@example.invalid>"


def test_the_users_identity_is_used(repos):
    work, bare = repos
    own = _git(work, "var", "GIT_AUTHOR_IDENT").rsplit(" ", 2)[0]  # "Name <email> <time> <zone>"
    assert _up(work).pushed
    assert _git(bare, "log", "-1", "--format=%an <%ae>", "main") == own
    assert "filewcount.gitops" not in own


def test_empty_remote_branch_is_created(tmp_path):
    bare = tmp_path / "empty.git"
    work = tmp_path / "w"
    _git(tmp_path, "init", "--quiet", "--bare", str(bare))
    _git(tmp_path, "init", "--quiet", "--initial-branch=main", str(work))
    (work / MANIFEST).parent.mkdir(parents=True)
    (work / MANIFEST).write_text(DEPLOYMENT)
    _git(work, "add", ".")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "--quiet", "-m", "seed")
    _git(work, "remote", "add", "local", str(bare))
    result = g.upgrade(
        g.Git(str(work), identity={"user.name": "t", "user.email": "t@example.invalid"}),
        manifest=MANIFEST,
        image=IMAGE,
        tag="2.0",
        remote="local",
    )
    assert result.pushed and result.remote_commit_before is None
    assert "filewcount:2.0" in _git(bare, "show", f"main:{MANIFEST}")


def test_new_image_is_spelled_as_in_the_manifest(repos):
    work, _bare = repos
    (work / MANIFEST).write_text(DEPLOYMENT.replace("docker.io/bldrtech/filewcount:1.0", "bldrtech/filewcount:1.0"))
    _git(work, "commit", "--quiet", "-am", "short name")
    result = _up(work)
    assert result.new_image == "bldrtech/filewcount:2.0"
    assert result.old_images == ["bldrtech/filewcount:1.0"]
