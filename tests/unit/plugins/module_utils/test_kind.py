"""Tests of the kind cluster logic: config hashing, failure mapping, and create/compare/delete with a fake kind."""

from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.filewcount.gitops.plugins.module_utils import kind as k

IMAGE = "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed"


def config(host_port=8080, image=IMAGE):
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [
            {
                "role": "control-plane",
                "image": image,
                "extraPortMappings": [{"containerPort": 30080, "hostPort": host_port, "listenAddress": "127.0.0.1"}],
            }
        ],
    }


class FakeKind:
    """Answers the kind argv the module builds, and records them."""

    def __init__(self, clusters=(), fail=None):
        self.clusters = list(clusters)
        self.calls = []
        self.fail = fail or {}
        self.configs = []

    def kubeconfig_text(self, name):
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "kind-" + name,
                        "cluster": {"server": "https://127.0.0.1:41234", "certificate-authority-data": "Q0E="},
                    }
                ],
                "contexts": [{"name": "kind-" + name, "context": {"cluster": "kind-" + name, "user": "kind-" + name}}],
                "users": [{"name": "kind-" + name, "user": {"client-certificate-data": "Q0VSVA=="}}],
                "current-context": "kind-" + name,
            }
        )

    def _flag(self, argv, flag):
        return argv[argv.index(flag) + 1] if flag in argv else None

    def __call__(self, argv):  # noqa: PLR0911 - one answer per kind subcommand
        argv = list(argv)
        self.calls.append(argv)
        sub = tuple(argv[1:3])
        if sub in self.fail:
            return self.fail[sub]
        name = self._flag(argv, "--name")
        if sub == ("get", "clusters"):
            return 0, "".join(c + "\n" for c in self.clusters), "" if self.clusters else "No kind clusters found.\n"
        if sub == ("create", "cluster"):
            with open(self._flag(argv, "--config"), encoding="utf-8") as handle:
                self.configs.append(yaml.safe_load(handle))
            self.clusters.append(name)
            self._write(self._flag(argv, "--kubeconfig"), name)
            return 0, "", ""
        if sub == ("get", "kubeconfig"):
            return 0, self.kubeconfig_text(name), ""
        if sub == ("export", "kubeconfig"):
            self._write(self._flag(argv, "--kubeconfig") or self.user_path, name)
            return 0, "", ""
        if sub == ("delete", "cluster"):
            if name in self.clusters:
                self.clusters.remove(name)
            return 0, "", ""
        return 1, "", "ERROR: unknown"

    user_path = None

    def _write(self, path, name):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.kubeconfig_text(name))


def nodes_with(hash_value):
    labels = {"kubernetes.io/hostname": "filewcount-control-plane"}
    if hash_value:
        labels[k.CONFIG_HASH_LABEL] = hash_value
    return lambda _kubeconfig, _context: [{"name": "filewcount-control-plane", "labels": labels}]


def test_hash_ignores_label_and_is_stable():
    rendered, digest = k.render_config(config(), "filewcount")
    assert len(digest) == k.HASH_LENGTH
    assert rendered["name"] == "filewcount"
    assert rendered["nodes"][0]["labels"] == {k.CONFIG_HASH_LABEL: digest}
    again, digest2 = k.render_config(rendered, "filewcount")
    assert digest2 == digest and again == rendered


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["nodes"][0].update(image="kindest/node:v1.35.8@sha256:" + "0" * 64),
        lambda c: c["nodes"][0]["extraPortMappings"][0].update(hostPort=9090),
        lambda c: c["nodes"][0].update(extraMounts=[{"hostPath": "/data", "containerPath": "/var/x"}]),
        lambda c: c["nodes"].append({"role": "worker"}),
    ],
)
def test_hash_changes_with_the_config(change):
    base = config()
    other = config()
    change(other)
    assert k.render_config(base, "n")[1] != k.render_config(other, "n")[1]


def test_hash_ignores_key_order():
    a = config()
    b = json.loads(json.dumps(config()), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    assert k.config_hash(a) == k.config_hash(b)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"kind": "Config", "apiVersion": "v1"},
        {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha3"},
        {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": [{"role": "worker"}]},
    ],
)
def test_invalid_configs_are_refused(bad):
    with pytest.raises(k.KindError):
        k.render_config(bad, "n")


@pytest.mark.parametrize(
    ("stderr", "needle"),
    [
        (
            'ERROR: failed to create cluster: command "docker run ..." failed with error: exit status 125\n'
            "Command Output: docker: Error response from daemon: driver failed programming external connectivity on "
            "endpoint filewcount-control-plane (3b1f): Bind for 127.0.0.1:8080 failed: port is already allocated",
            "host port of the cluster's port mappings is taken",
        ),
        (
            'ERROR: failed to list clusters: command "docker ps ..." failed with error: exit status 1\nCommand Output: '
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            "Docker daemon is not running",
        ),
        (
            "ERROR: failed to list clusters: ... permission denied while trying to connect to the Docker daemon socket",
            "usermod -aG docker",
        ),
        (
            'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "filewcount"',
            "already exists",
        ),
        (
            'ERROR: failed to create cluster: failed to pull image "kindest/node:v1.36.4@sha256:..."',
            "pulling the node image",
        ),
        ("ERROR: failed to create cluster: write /var/lib/docker/x: no space left on device", "disk is full"),
        ("ERROR: something new", "(something new)"),
    ],
)
def test_explain_failure(stderr, needle):
    msg = k.explain_failure("create cluster", 1, stderr)
    assert needle in msg
    assert msg.endswith(".") and msg.count(". ") == 0  # one sentence


def test_cli_builds_argv_lists(tmp_path):
    fake = FakeKind()
    fake.user_path = str(tmp_path / "user")
    cli = k.KindCLI(fake, kind="/cache/kind-v0.33.0")
    cli.delete_cluster("filewcount", "/state/kubeconfig")
    cli.export_kubeconfig("filewcount", None)
    assert fake.calls == [
        ["/cache/kind-v0.33.0", "delete", "cluster", "--name", "filewcount", "--kubeconfig", "/state/kubeconfig"],
        ["/cache/kind-v0.33.0", "export", "kubeconfig", "--name", "filewcount"],
    ]


def test_create_when_absent(tmp_path):
    fake = FakeKind()
    kubeconfig = str(tmp_path / "state" / "kubeconfig")
    out = k.ensure_present(
        k.KindCLI(fake),
        "filewcount",
        config(),
        kubeconfig,
        wait=60,
        tmpdir=str(tmp_path),
        node_reader=lambda *_: pytest.fail("no API read on create"),
    )
    assert out.changed and out.created
    create = next(c for c in fake.calls if c[1:3] == ["create", "cluster"])
    assert create[:5] == ["kind", "create", "cluster", "--name", "filewcount"]
    assert create[-4:] == ["--kubeconfig", kubeconfig, "--wait", "60s"]
    assert fake.configs[0]["nodes"][0]["labels"][k.CONFIG_HASH_LABEL] == out.config_hash
    assert not list(tmp_path.glob("kind-config-*"))  # temp config removed
    assert out.before == {"name": "filewcount", "exists": False}


def test_create_check_mode_runs_nothing(tmp_path):
    fake = FakeKind()
    out = k.ensure_present(k.KindCLI(fake), "filewcount", config(), str(tmp_path / "kc"), check_mode=True)
    assert out.changed and out.created
    assert [c[1:3] for c in fake.calls] == [["get", "clusters"]]
    assert not (tmp_path / "kc").exists()


def test_existing_same_config_is_unchanged(tmp_path):
    fake = FakeKind(clusters=["filewcount"])
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(fake.kubeconfig_text("filewcount"))
    digest = k.render_config(config(), "filewcount")[1]
    out = k.ensure_present(
        k.KindCLI(fake), "filewcount", config(), str(kubeconfig), node_reader=nodes_with(digest), tmpdir=str(tmp_path)
    )
    assert not out.changed and not out.created and out.current_hash == digest
    assert [c[1:3] for c in fake.calls] == [["get", "clusters"], ["get", "kubeconfig"]]


def test_existing_cluster_missing_kubeconfig_is_exported(tmp_path):
    fake = FakeKind(clusters=["filewcount"])
    kubeconfig = tmp_path / "state" / "kc"
    digest = k.render_config(config(), "filewcount")[1]
    out = k.ensure_present(
        k.KindCLI(fake), "filewcount", config(), str(kubeconfig), node_reader=nodes_with(digest), tmpdir=str(tmp_path)
    )
    assert out.changed and out.kubeconfig_written and not out.created
    assert kubeconfig.exists()
    again = k.ensure_present(
        k.KindCLI(fake), "filewcount", config(), str(kubeconfig), node_reader=nodes_with(digest), tmpdir=str(tmp_path)
    )
    assert not again.changed


def test_existing_different_config_fails_with_recreate_hint(tmp_path):
    fake = FakeKind(clusters=["filewcount"])
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(fake.kubeconfig_text("filewcount"))
    old = k.render_config(config(host_port=9999), "filewcount")[1]
    with pytest.raises(k.ConfigMismatch) as err:
        k.ensure_present(
            k.KindCLI(fake), "filewcount", config(), str(kubeconfig), node_reader=nodes_with(old), tmpdir=str(tmp_path)
        )
    msg = str(err.value)
    assert "created from a different configuration" in msg and old in msg
    assert "make teardown && make bootstrap" in msg
    assert f"kind delete cluster --name filewcount --kubeconfig {kubeconfig}" in msg
    assert not any(c[1:3] == ["create", "cluster"] for c in fake.calls)


def test_existing_cluster_without_label_warns_when_asked(tmp_path):
    fake = FakeKind(clusters=["filewcount"])
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(fake.kubeconfig_text("filewcount"))
    out = k.ensure_present(
        k.KindCLI(fake),
        "filewcount",
        config(),
        str(kubeconfig),
        on_mismatch="warn",
        node_reader=nodes_with(None),
        tmpdir=str(tmp_path),
    )
    assert not out.changed
    assert "not created by this project" in out.warnings[0]


def test_user_kubeconfig_only_when_asked(tmp_path):
    fake = FakeKind(clusters=["filewcount"])
    fake.user_path = str(tmp_path / "user-config")
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(fake.kubeconfig_text("filewcount"))
    digest = k.render_config(config(), "filewcount")[1]
    out = k.ensure_present(
        k.KindCLI(fake), "filewcount", config(), str(kubeconfig), node_reader=nodes_with(digest), tmpdir=str(tmp_path)
    )
    assert not out.changed and not (tmp_path / "user-config").exists()
    out = k.ensure_present(
        k.KindCLI(fake),
        "filewcount",
        config(),
        str(kubeconfig),
        node_reader=nodes_with(digest),
        tmpdir=str(tmp_path),
        export_user_kubeconfig=True,
        user_kubeconfig=fake.user_path,
    )
    assert out.changed and (tmp_path / "user-config").exists()
    assert ["kind", "export", "kubeconfig", "--name", "filewcount"] in fake.calls


def test_kind_failure_is_one_sentence(tmp_path):
    fake = FakeKind(
        fail={
            ("get", "clusters"): (
                1,
                "",
                "ERROR: failed to list clusters: Cannot connect to the Docker "
                "daemon at unix:///var/run/docker.sock. Is the docker daemon "
                "running?",
            )
        }
    )
    with pytest.raises(k.KindError, match="Docker daemon is not running"):
        k.ensure_present(k.KindCLI(fake), "filewcount", config(), str(tmp_path / "kc"))


def test_absent_is_idempotent(tmp_path):
    fake = FakeKind(clusters=["filewcount"])
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(fake.kubeconfig_text("filewcount"))
    check = k.ensure_absent(k.KindCLI(fake), "filewcount", str(kubeconfig), check_mode=True)
    assert check.changed and "filewcount" in fake.clusters
    out = k.ensure_absent(k.KindCLI(fake), "filewcount", str(kubeconfig))
    assert out.changed and out.deleted and fake.clusters == []
    kubeconfig.write_text(yaml.safe_dump({"contexts": []}))  # what kind leaves behind
    again = k.ensure_absent(k.KindCLI(fake), "filewcount", str(kubeconfig))
    assert not again.changed
    missing = k.ensure_absent(k.KindCLI(fake), "filewcount", str(tmp_path / "nope"))
    assert not missing.changed


def test_absent_cleans_a_stale_context(tmp_path):
    fake = FakeKind()
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(fake.kubeconfig_text("filewcount"))
    out = k.ensure_absent(k.KindCLI(fake), "filewcount", str(kubeconfig))
    assert out.changed and not out.deleted
    assert ["kind", "delete", "cluster", "--name", "filewcount", "--kubeconfig", str(kubeconfig)] in fake.calls


@pytest.mark.parametrize(
    ("env", "expected_suffix"),
    [({}, "/.kube/config"), ({"KUBECONFIG": "/a/one:/b/two"}, "/b/two")],
)
def test_user_kubeconfig_path(env, expected_suffix):
    assert k.user_kubeconfig_path(env).endswith(expected_suffix)


def test_kubeconfig_matches(tmp_path):
    fake = FakeKind()
    path = tmp_path / "kc"
    assert not k.kubeconfig_matches(str(path), fake.kubeconfig_text("a"), "kind-a")
    path.write_text(fake.kubeconfig_text("a"))
    assert k.kubeconfig_matches(str(path), fake.kubeconfig_text("a"), "kind-a")
    assert not k.kubeconfig_matches(str(path), fake.kubeconfig_text("b"), "kind-b")
    path.write_text(":\n  - not yaml: [")
    assert not k.kubeconfig_matches(str(path), fake.kubeconfig_text("a"), "kind-a")


def test_absent_cleans_the_user_kubeconfig_only_when_asked(tmp_path):
    fake = FakeKind()
    fake.user_path = str(tmp_path / "user")
    user = tmp_path / "user"
    user.write_text(fake.kubeconfig_text("filewcount"))
    out = k.ensure_absent(k.KindCLI(fake), "filewcount", str(tmp_path / "kc"), user_kubeconfig=str(user))
    assert not out.changed and fake.calls == [["kind", "get", "clusters"]]
    out = k.ensure_absent(
        k.KindCLI(fake), "filewcount", str(tmp_path / "kc"), clean_user_kubeconfig=True, user_kubeconfig=str(user)
    )
    assert out.changed and fake.calls[-1] == ["kind", "delete", "cluster", "--name", "filewcount"]
