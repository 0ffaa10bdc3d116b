"""Tests of deleting a kind cluster without kind (plugins/module_utils/kind_docker.py), with a fake docker CLI."""

from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.filewcount.gitops.plugins.module_utils import kind as k
from ansible_collections.filewcount.gitops.plugins.module_utils import kind_docker as kd


class FakeDocker:
    """Answers `docker ps -a --filter label=... --format {{.Names}}` and `docker rm -f -v ...`, and records them."""

    def __init__(self, containers=None, fail=None):
        # container name -> value of the io.x-k8s.kind.cluster label
        self.containers = dict(containers or {})
        self.calls = []
        self.fail = fail or {}

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        if argv[1] in self.fail:
            return self.fail[argv[1]]
        if argv[1:3] == ["ps", "-a"]:
            label = argv[argv.index("--filter") + 1]
            assert label.startswith("label=io.x-k8s.kind.cluster=")
            cluster = label.split("=", 2)[2]
            return 0, "".join(f"{n}\n" for n, c in self.containers.items() if c == cluster), ""
        if argv[1:4] == ["rm", "-f", "-v"]:
            for name in argv[4:]:
                self.containers.pop(name)
            return 0, "", ""
        return 125, "", f"unknown command {argv[1]}"


def kubeconfig_text(*names, current=None):
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": f"kind-{n}", "cluster": {"server": "https://127.0.0.1:6443"}} for n in names],
            "contexts": [
                {"name": f"kind-{n}", "context": {"cluster": f"kind-{n}", "user": f"kind-{n}"}} for n in names
            ],
            "users": [{"name": f"kind-{n}", "user": {"token": "x"}} for n in names],
            "current-context": current or (f"kind-{names[0]}" if names else ""),
        }
    )


def test_nothing_exists_changes_nothing_and_runs_only_docker_ps(tmp_path):
    docker = FakeDocker({"other-control-plane": "other"})
    out = kd.ensure_absent_without_kind(kd.DockerNodes(docker), "filewcount", str(tmp_path / "missing"))
    assert not out.changed and not out.deleted and out.warnings == []
    assert docker.calls == [
        ["docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=filewcount", "--format", "{{.Names}}"]
    ]


def test_no_docker_means_no_cluster(tmp_path):
    def never(_argv):
        raise AssertionError("nothing may run without docker")

    out = kd.ensure_absent_without_kind(kd.DockerNodes(never, None), "filewcount", str(tmp_path / "kc"))
    assert not out.changed
    assert out.warnings == ["docker is not installed, so no kind node container can exist; none was looked for."]


def test_existing_cluster_is_deleted_as_kind_deletes_it(tmp_path):
    docker = FakeDocker(
        {"filewcount-control-plane": "filewcount", "filewcount-worker": "filewcount", "other-control-plane": "other"}
    )
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(kubeconfig_text("filewcount", "other"))
    kubeconfig.chmod(0o600)

    check = kd.ensure_absent_without_kind(kd.DockerNodes(docker), "filewcount", str(kubeconfig), check_mode=True)
    assert check.changed and check.deleted and len(docker.containers) == 3
    assert "kind-filewcount" in kubeconfig.read_text()

    out = kd.ensure_absent_without_kind(kd.DockerNodes(docker), "filewcount", str(kubeconfig))
    assert out.changed and out.deleted and out.before == {"name": "filewcount", "exists": True}
    assert ["docker", "rm", "-f", "-v", "filewcount-control-plane", "filewcount-worker"] in docker.calls
    assert docker.containers == {"other-control-plane": "other"}
    left = yaml.safe_load(kubeconfig.read_text())
    assert [c["name"] for c in left["contexts"]] == ["kind-other"]
    assert [c["name"] for c in left["clusters"]] == ["kind-other"]
    assert [u["name"] for u in left["users"]] == ["kind-other"]
    assert left["current-context"] == ""
    assert os.stat(kubeconfig).st_mode & 0o777 == 0o600

    again = kd.ensure_absent_without_kind(kd.DockerNodes(docker), "filewcount", str(kubeconfig))
    assert not again.changed


def test_stale_context_alone_is_removed(tmp_path):
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(kubeconfig_text("filewcount"))
    out = kd.ensure_absent_without_kind(kd.DockerNodes(FakeDocker()), "filewcount", str(kubeconfig))
    assert out.changed and not out.deleted
    assert not k._has_context(str(kubeconfig), "kind-filewcount")


def test_user_kubeconfig_only_when_asked(tmp_path):
    user = tmp_path / "user"
    user.write_text(kubeconfig_text("filewcount"))
    docker = kd.DockerNodes(FakeDocker())
    assert not kd.ensure_absent_without_kind(docker, "filewcount", None, user_kubeconfig=str(user)).changed
    out = kd.ensure_absent_without_kind(
        docker, "filewcount", None, clean_user_kubeconfig=True, user_kubeconfig=str(user)
    )
    assert out.changed and not k._has_context(str(user), "kind-filewcount")


@pytest.mark.parametrize(
    ("fail", "needle"),
    [
        (
            {"ps": (1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n")},
            "Cannot tell whether the kind cluster 'filewcount' exists: `docker ps` failed (Cannot connect to the "
            "Docker daemon at unix:///var/run/docker.sock.); start Docker and run again.",
        ),
        (
            {"rm": (1, "", "Error response from daemon: removal in progress\n")},
            "Deleting the kind node containers filewcount-control-plane with `docker rm -f -v` failed (Error "
            "response from daemon: removal in progress): remove them by hand and run again.",
        ),
    ],
)
def test_docker_failures_are_one_sentence(tmp_path, fail, needle):
    docker = FakeDocker({"filewcount-control-plane": "filewcount"}, fail=fail)
    with pytest.raises(k.KindError) as raised:
        kd.ensure_absent_without_kind(kd.DockerNodes(docker), "filewcount", str(tmp_path / "kc"))
    assert str(raised.value) == needle
