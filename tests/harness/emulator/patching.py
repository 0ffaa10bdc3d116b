"""Patch semantics of the emulated Kubernetes API (test double, never shipped).

- JSON merge patch (RFC 7386): exact.
- JSON patch (RFC 6902): exact (add, remove, replace, move, copy, test).
- Strategic merge patch: a documented approximation. Dicts merge recursively, ``null`` deletes a key, lists of
  objects whose field name has a known merge key (``containers``/``env``/``volumes``... by ``name``,
  container ``ports`` by ``containerPort``, service ``ports`` by ``port``, ``volumeMounts`` by ``mountPath``,
  ``conditions`` by ``type``) merge item by item; every other list is replaced. The directives
  ``$patch: replace``/``$patch: delete`` are honoured, ``$setElementOrder/*`` and ``$retainKeys`` are ignored.
- Server-side apply: the applied configuration is merged like a strategic merge patch, and fields that the same
  field manager applied before but no longer applies are removed. Conflicts between managers are not detected.
"""

# ruff: noqa: PLR0911 - one return per patch directive keeps the merge rules readable

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """A patch document that cannot be applied (maps to a 422 or 400 from the API)."""


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}


def _merge_key(field: str, items: list) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return _MERGE_KEYS.get(field)


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if patch.get("$patch") == "delete":
            return None
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
                continue
            if value is None:
                result.pop(key, None)
                continue
            merged = strategic_merge(result.get(key), value, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        return result
    if isinstance(patch, list):
        key = _merge_key(field, patch)
        if key is None or not isinstance(target, list) or not all(isinstance(i, dict) for i in patch):
            replace = [i for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
            return copy.deepcopy([i for i in replace if not (isinstance(i, dict) and "$patch" in i)])
        if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
            return [copy.deepcopy(i) for i in patch if i.get("$patch") != "replace"]
        result = copy.deepcopy(target)
        for item in patch:
            ident = item.get(key)
            idx = next((n for n, cur in enumerate(result) if isinstance(cur, dict) and cur.get(key) == ident), None)
            if item.get("$patch") == "delete":
                if idx is not None:
                    result.pop(idx)
                continue
            if idx is None:
                result.append(strategic_merge({}, item, ""))
            else:
                result[idx] = strategic_merge(result[idx], item, "")
        return result
    return copy.deepcopy(patch)


def remove_unapplied(obj: Any, previous: Any, current: Any) -> Any:
    """Drop from ``obj`` the dict fields present in ``previous`` (an earlier apply) but absent from ``current``."""
    if not (isinstance(obj, dict) and isinstance(previous, dict)):
        return obj
    current = current if isinstance(current, dict) else {}
    for key, prev_value in previous.items():
        if key not in current:
            obj.pop(key, None)
        elif isinstance(prev_value, dict) and key in obj:
            remove_unapplied(obj[key], prev_value, current[key])
    return obj


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise PatchError(f"path segment {part!r} does not exist")
            doc = doc[part]
        elif isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError) as exc:
                raise PatchError(f"invalid list index {part!r}") from exc
        else:
            raise PatchError(f"cannot descend into {part!r}")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _resolve(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                idx = int(last)
            except ValueError as exc:
                raise PatchError(f"invalid list index {last!r}") from exc
            if idx < 0 or idx > len(parent):
                raise PatchError(f"list index {idx} out of range")
            parent.insert(idx, value)
    else:
        raise PatchError("add target is not a container")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _resolve(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}")
        return parent.pop(last)
    if isinstance(parent, list):
        try:
            return parent.pop(int(last))
        except (ValueError, IndexError) as exc:
            raise PatchError(f"invalid list index {last!r}") from exc
    raise PatchError("remove target is not a container")


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("every JSON patch operation needs 'op' and 'path'")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _resolve(doc, parts)
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                _remove(doc, parts)
                doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_resolve(doc, src))
            if kind == "move":
                _remove(doc, src)
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _resolve(doc, parts) != op.get("value"):
                raise PatchError(f"test operation failed at {op['path']}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc
