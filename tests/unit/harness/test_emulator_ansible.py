"""kubernetes.core modules against the emulated API, through a real ansible-playbook run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import REPO, namespace

PLAYBOOK = """
- name: Exercise kubernetes.core against the emulator
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    kc: {kubeconfig}
    ctx: {context}
  tasks:
    - name: Create a namespace and a deployment
      kubernetes.core.k8s:
        kubeconfig: "{{{{ kc }}}}"
        context: "{{{{ ctx }}}}"
        apply: {apply}
        definition:
          - {{apiVersion: v1, kind: Namespace, metadata: {{name: ansible}}}}
          - apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: web, namespace: ansible}}
            spec:
              replicas: {replicas}
              selector: {{matchLabels: {{app: web}}}}
              template:
                metadata: {{labels: {{app: web}}}}
                spec: {{containers: [{{name: web, image: "nginx:1.27"{extra}}}]}}
"""


def _run(emulator, tmp_path, *, check: bool = False, apply: bool = False, replicas="2", extra="") -> tuple[int, str]:
    book = tmp_path / "play.yml"
    book.write_text(
        textwrap.dedent(
            PLAYBOOK.format(
                kubeconfig=emulator.kubeconfig,
                context=emulator.context,
                apply=str(apply).lower(),
                replicas=replicas,
                extra=extra,
            )
        )
    )
    argv = [str(os.path.join(os.path.dirname(sys.executable), "ansible-playbook")), str(book)]
    if check:
        argv.append("--check")
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="true",
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOCALHOST_WARNING="false",
    )
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _stats(output: str) -> dict:
    return json.loads(output[output.index("{") : output.rindex("}") + 1])["stats"]["localhost"]


def _rv(emulator) -> str:
    return emulator.request("GET", "/api/v1/namespaces")[2]["metadata"]["resourceVersion"]


def test_kubernetes_core_check_mode_create_idempotence_and_422(emulator, tmp_path):
    # Check mode first: dryRun=All on the server, nothing persisted. (Like a real API server, a dry-run create
    # inside a namespace that does not exist yet is a 404, so the namespace exists beforehand.)
    namespace(emulator, "ansible")
    before = _rv(emulator)
    rc, out = _run(emulator, tmp_path, check=True)
    assert rc == 0, out
    assert _stats(out)["changed"] == 1
    assert _rv(emulator) == before
    assert emulator.request("GET", "/apis/apps/v1/namespaces/ansible/deployments/web")[0] == 404

    rc, out = _run(emulator, tmp_path)
    assert rc == 0 and _stats(out)["changed"] == 1, out
    assert emulator.request("GET", "/apis/apps/v1/namespaces/ansible/deployments/web")[2]["spec"]["replicas"] == 2

    for apply in (False, True):
        rc, out = _run(emulator, tmp_path, apply=apply)
        assert rc == 0 and _stats(out)["changed"] == (1 if apply else 0), out  # apply adds its annotation once
    rc, out = _run(emulator, tmp_path, apply=True)
    assert rc == 0 and _stats(out)["changed"] == 0, out

    # A change in check mode is reported but not persisted.
    before = _rv(emulator)
    rc, out = _run(emulator, tmp_path, check=True, replicas="3")
    assert rc == 0 and _stats(out)["changed"] == 1, out
    assert _rv(emulator) == before

    # A deliberately invalid manifest fails with the API's 422.
    rc, out = _run(emulator, tmp_path, replicas='"three"', extra=", bogusField: true")
    assert rc != 0
    assert "422" in out and "Invalid" in out
    assert "spec.template.spec.containers[0].bogusField: field not declared in schema" in out
    assert "spec.replicas" in out
