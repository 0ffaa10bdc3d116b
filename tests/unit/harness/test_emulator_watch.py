"""Watch streams of the emulated Kubernetes API: wire format, python client, kubectl."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse

from conftest import namespace
from kubernetes import client, watch


def _raw_watch(emulator, path: str):
    url = urllib.parse.urlsplit(emulator.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", path)
    return conn, conn.getresponse()


def test_watch_is_chunked_json_lines_with_the_api_servers_content_type(emulator):
    namespace(emulator, "w1")
    conn, resp = _raw_watch(emulator, "/api/v1/namespaces/w1/configmaps?watch=true&timeoutSeconds=1")
    emulator.request(
        "POST", "/api/v1/namespaces/w1/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    )
    body = resp.read().decode()
    conn.close()
    assert resp.status == 200
    # kube-apiserver labels JSON watch streams application/json (one JSON document per line).
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    events = [json.loads(line) for line in body.splitlines() if line]
    assert [(e["type"], e["object"]["kind"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "ConfigMap", "c")
    ]


def test_watch_from_a_resource_version_replays_later_events(emulator):
    namespace(emulator, "w2")
    _status, _headers, created = emulator.request(
        "POST", "/api/v1/namespaces/w2/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    )
    emulator.request(
        "PATCH", "/api/v1/namespaces/w2/configmaps/c", {"data": {"a": "1"}}, content_type="application/merge-patch+json"
    )
    emulator.request("DELETE", "/api/v1/namespaces/w2/configmaps/c")
    rv = created["metadata"]["resourceVersion"]
    conn, resp = _raw_watch(emulator, f"/api/v1/namespaces/w2/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    events = [json.loads(line) for line in resp.read().decode().splitlines() if line]
    conn.close()
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]


def test_watch_list_ends_initial_events_with_a_bookmark(emulator):
    namespace(emulator, "w3")
    conn, resp = _raw_watch(
        emulator,
        "/api/v1/namespaces?watch=true&sendInitialEvents=true"
        "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
    )
    events = [json.loads(line) for line in resp.read().decode().splitlines() if line]
    conn.close()
    bookmark = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmark) == 1
    assert bookmark[0]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events.index(bookmark[0]) == len([e for e in events if e["type"] == "ADDED"])


def test_python_client_watch_stream_sees_changes(emulator):
    namespace(emulator, "w4")
    core = client.CoreV1Api(emulator.api_client())
    seen = []

    def writer():
        time.sleep(0.3)
        core.create_namespaced_config_map("w4", {"metadata": {"name": "late", "labels": {"w": "yes"}}})
        core.create_namespaced_config_map("w4", {"metadata": {"name": "other"}})

    thread = threading.Thread(target=writer)
    thread.start()
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_config_map, "w4", label_selector="w=yes", timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        stream.stop()
    thread.join()
    assert seen == [("ADDED", "late")]


def test_kubectl_rollout_status_and_wait_follow_watches(controllers_emulator):
    emu = controllers_emulator
    manifest = """
apiVersion: v1
kind: Namespace
metadata: {name: rollout}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: rollout}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "docker.io/bldrtech/filewcount:1.0"}]
"""
    result = emu.kubectl("apply", "-f", "-", stdin=manifest)
    assert result.returncode == 0, result.stderr
    result = emu.kubectl("rollout", "status", "deployment/web", "-n", "rollout", "--timeout=10s")
    assert result.returncode == 0, result.stderr
    assert 'deployment "web" successfully rolled out' in result.stdout
    result = emu.kubectl("wait", "--for=condition=Available", "deployment/web", "-n", "rollout", "--timeout=10s")
    assert result.returncode == 0, result.stderr
