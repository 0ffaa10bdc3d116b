"""Flux's post-build variable substitution, for tests that apply the tree without Flux (test harness only).

kustomize-controller (fluxcd/pkg/kustomize, kustomize_varsub.go) substitutes ${name} references into the YAML of each
object a Flux Kustomization built: a value from spec.postBuild (substitute over substituteFrom), else the default
after := or :- (= and - without the colon too), else an empty string; $${ escapes one. The tree writes every
cluster setting as ${name:=default} (docs/gitops.md, "Cluster settings"), so a test that applies a directory with
kubectl gets what Flux applies without the ConfigMap from `substitute(text, {})`. The manifest suite
(tests/manifests/validate.py) uses the same function, object by object.
"""

from __future__ import annotations

import re

VARSUB = re.compile(r"\$\$\{|\$\{([_a-zA-Z][_a-zA-Z0-9]*)(?:(:?[=-])([^}]*))?\}")


def substitute(text: str, variables: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` with the references replaced, and the names referenced without a value or a default."""
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, operator, default = match.group(1), match.group(2), match.group(3)
        found = variables.get(name)
        if found is not None and not (operator and operator.startswith(":") and found == ""):
            return found
        if operator:
            return default
        missing.append(name)
        return ""

    return VARSUB.sub(value, text), missing
