"""Label and field selectors of the emulated Kubernetes API (test double, never shipped)."""

from __future__ import annotations

import re
from collections.abc import Callable


class SelectorError(ValueError):
    """An unparsable selector (the API answers 400 BadRequest)."""


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_RE = re.compile(r"^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)$")
_EXISTS_RE = re.compile(r"^(!?)([A-Za-z0-9_./-]+)$")


def label_matcher(selector: str | None) -> Callable[[dict], bool]:
    if not selector:
        return lambda labels: True
    tests: list[Callable[[dict], bool]] = []
    for req in _split_top(selector):
        m = _SET_RE.match(req)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                tests.append(lambda lb, k=key, v=vals: k in lb and lb[k] in v)
            else:
                tests.append(lambda lb, k=key, v=vals: k not in lb or lb[k] not in v)
            continue
        m = _EQ_RE.match(req)
        if m:
            key, op, val = m.groups()
            if op == "!=":
                tests.append(lambda lb, k=key, v=val: lb.get(k) != v)
            else:
                tests.append(lambda lb, k=key, v=val: k in lb and lb[k] == v)
            continue
        m = _EXISTS_RE.match(req)
        if m:
            neg, key = m.groups()
            tests.append((lambda lb, k=key: k not in lb) if neg else (lambda lb, k=key: k in lb))
            continue
        raise SelectorError(f"unable to parse requirement: {req!r}")
    return lambda labels: all(t(labels or {}) for t in tests)


def _field_value(obj: dict, path: str) -> str:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_matcher(selector: str | None) -> Callable[[dict], bool]:
    if not selector:
        return lambda obj: True
    tests: list[Callable[[dict], bool]] = []
    for req in _split_top(selector):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", req)
        if not m:
            raise SelectorError(f"invalid selector: {req!r}; can't understand {req!r}")
        path, op, val = m.groups()
        if op == "!=":
            tests.append(lambda o, p=path, v=val: _field_value(o, p) != v)
        else:
            tests.append(lambda o, p=path, v=val: _field_value(o, p) == v)
    return lambda obj: all(t(obj) for t in tests)
