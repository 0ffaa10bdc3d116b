"""Emulated Kubernetes API server for the integration harness (a TEST DOUBLE, never used by the collection).

Run ``emulator.py start|stop|serve --help``; tests/harness/README.md documents the commands.

What it does (plain HTTP on 127.0.0.1, no auth):
- Discovery: /version, /api, /api/v1, /apis, /apis/<group>, /apis/<group>/<version> (unaggregated; kubectl falls
  back to it), for the built-in kinds in resources.py and for every served version of each CRD as soon as the CRD
  is created (its status says Established and NamesAccepted at once, as the real apiextensions server does).
- Verbs: create, get, list (limit/continue), watch (?watch=true or /watch/ paths; JSON lines, chunked,
  ``Content-Type: application/json`` like kube-apiserver; resourceVersion replay and 410 Gone), update (PUT is a full
  replace; metadata.resourceVersion mismatch -> 409 Conflict), patch (merge, json, strategic approximation, and
  server-side apply that creates missing objects), delete (ownerReference garbage collection, namespace content,
  CRD instances), deletecollection. ``dryRun=All`` on every write persists nothing and returns the would-be object.
- labelSelector (=, ==, !=, in, notin, exists, !exists) and fieldSelector (=, ==, != on any dotted field, e.g.
  metadata.name, metadata.namespace, status.phase).
- ``status`` subresource (GET/PUT/PATCH .../status): main-resource writes keep the status, status writes keep the
  rest. Namespaced writes need the Namespace to exist (404 NotFound otherwise).
- Validation (422 Invalid Status naming the fields): built-in kinds strictly against the Kubernetes 1.36 schemas of
  ``kubernetes-validate``; custom resources against their CRD's openAPIV3Schema; names must be RFC 1123 subdomains.
- Request log with counts per verb (``--request-log``), controllers mode (``--controllers``, see controllers.py)
  with ``--fail`` rules, and metrics.k8s.io/v1beta1 NodeMetrics/PodMetrics in controllers mode. GitRepositories
  whose repository exists under ``--git-root`` report the real commit, and their Kustomizations apply the built
  content through this API (gitops.py), so a push is applied, pruned or refused (422) like Flux would.

Known approximations (documented deviations from a real API server):
- Unknown fields are always rejected with 422 (a real server answers 400 with fieldValidation=Strict, or drops them
  with a warning otherwise); wrong types are 422 too (400 on a real server).
- Strategic merge patch and server-side apply are approximations (see patching.py): no field-manager conflicts,
  managedFields are not reported. Defaulting is limited to what clients rely on: replicas, revisionHistoryLimit,
  progressDeadlineSeconds and strategy of workloads, HPA minReplicas, Service type/clusterIP/nodePort, Secret
  stringData -> data and type, Namespace phase and name label. Finalizers do not delay deletion; namespace
  deletion is immediate.
- No conversion between CRD versions (objects are stored once and served under every version). No Table output
  (kubectl prints its default columns). No authentication/authorization, no admission webhooks.
"""

# Route handlers answer in many places by design (one return per HTTP outcome).
# ruff: noqa: PLR0911

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import controllers
import k8s_selectors
import patching
import yaml
from store import ApiError, Store, not_found

KUBE_VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.3",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2026-08-26T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
    "emulationMajor": "1",
    "emulationMinor": "37",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36",
}

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}


class RequestLog:
    """Every request (method, path, verb, status) and counts per verb, flushed to a JSON file."""

    def __init__(self, path: str | None):
        self.path = path
        self.lock = threading.Lock()
        self.entries: list[dict] = []
        self.dirty = False
        if path:
            threading.Thread(target=self._flusher, daemon=True).start()

    def add(self, method: str, path: str, verb: str, status: int, resource: str = "") -> None:
        with self.lock:
            self.entries.append({"method": method, "path": path, "verb": verb, "status": status, "resource": resource})
            self.dirty = True

    def reset(self) -> None:
        with self.lock:
            self.entries = []
            self.dirty = True
        self.flush()

    def snapshot(self) -> dict:
        with self.lock:
            counts: dict[str, int] = {}
            for entry in self.entries:
                counts[entry["verb"]] = counts.get(entry["verb"], 0) + 1
            return {"requests": list(self.entries), "counts": counts, "total": len(self.entries)}

    def flush(self) -> None:
        if not self.path:
            return
        with self.lock:
            if not self.dirty:
                return
            self.dirty = False
        data = self.snapshot()
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, self.path)

    def _flusher(self) -> None:
        while True:
            time.sleep(0.2)
            with contextlib.suppress(OSError):
                self.flush()


class Emulator:
    def __init__(self, store: Store, log: RequestLog):
        self.store = store
        self.log = log
        self.port = 0


def _segments(path: str) -> list[str]:
    return [urllib.parse.unquote(s) for s in path.strip("/").split("/") if s]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "filewcount-emulated-kube-apiserver/1.36"
    emulator: Emulator = None  # type: ignore[assignment]

    def log_message(self, fmt, *args):  # quiet; the request log records requests
        return

    # ------------------------------------------------------------------------------------------ plumbing
    def _send(self, code: int, body, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._status = code

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        if not raw.strip():
            return None
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if "protobuf" in ctype or "cbor" in ctype:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml",
            )
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from exc

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _dispatch(self) -> None:
        self._status = 0
        self._verb = "unknown"
        self._resource = ""
        parsed = urllib.parse.urlsplit(self.path)
        self._query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        try:
            self._route(parsed.path)
        except ApiError as exc:
            if self._verb == "watch-started":
                pass
            else:
                self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self._status = self._status or 499
        except Exception as exc:
            traceback.print_exc()
            self._send(500, ApiError(500, "InternalError", f"emulator error: {exc!r}").status())
        verb = "watch" if self._verb == "watch-started" else self._verb
        if verb == "emulator":  # harness control requests are not API traffic
            return
        self.emulator.log.add(self.command, parsed.path, verb, self._status, self._resource)

    def _q(self, name: str, default: str = "") -> str:
        vals = self._query.get(name)
        return vals[-1] if vals else default

    def _q_bool(self, name: str) -> bool:
        # As kube-apiserver (apimachinery Convert_Slice_string_To_bool): absent, "0" and "false" in any case are
        # false, anything else is true, so watch=True (the Python client before 37.x) starts a watch.
        vals = self._query.get(name)
        return bool(vals) and vals[0] != "0" and vals[0].lower() != "false"

    # ---------------------------------------------------------------------------------------------- routes
    def _route(self, path: str) -> None:
        segs = _segments(path)
        store = self.emulator.store
        if path.startswith("/emulator/v1/"):
            return self._emulator_endpoint(segs[2:] if len(segs) > 2 else [])
        if path in ("/healthz", "/livez", "/readyz"):
            self._verb = "health"
            return self._send(200, b"ok", "text/plain")
        if path == "/version":
            self._verb = "discovery"
            return self._send(200, KUBE_VERSION)
        if segs and segs[0] == "openapi":
            self._verb = "discovery"
            with store.lock:
                return self._openapi(segs[1:])
        if not segs or segs[0] not in ("api", "apis"):
            self._verb = "other"
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        with store.lock:
            if segs == ["api"]:
                self._verb = "discovery"
                return self._send(
                    200,
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.emulator.port}"}
                        ],
                    },
                )
            if segs == ["apis"]:
                self._verb = "discovery"
                return self._send(200, self._group_list())
            if segs[0] == "api":
                group, version, rest = "", (segs[1] if len(segs) > 1 else ""), segs[2:]
                if version != "v1":
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
            else:
                group = segs[1]
                if len(segs) == 2:
                    self._verb = "discovery"
                    for g in self._group_list()["groups"]:
                        if g["name"] == group:
                            return self._send(200, dict(g, kind="APIGroup", apiVersion="v1"))
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                version, rest = segs[2], segs[3:]
            if not rest:
                self._verb = "discovery"
                return self._send(200, self._resource_list(group, version))
        self._resource_request(group, version, rest)

    def _group_list(self) -> dict:
        groups: dict[str, list[str]] = {}
        preferred: dict[str, str] = {}
        for rtype in self.emulator.store.all_types():
            if not rtype.group:
                continue
            versions = groups.setdefault(rtype.group, [])
            if rtype.version not in versions:
                versions.append(rtype.version)
        for crd_types in self.emulator.store.crd_types.values():
            if crd_types:
                crd = self.emulator.store.crd_for(crd_types[0])
                for ver in ((crd or {}).get("spec") or {}).get("versions") or []:
                    if ver.get("storage"):
                        preferred[crd_types[0].group] = ver["name"]
        out = []
        for group, versions in groups.items():
            pref = preferred.get(group, versions[0])
            if pref not in versions:
                pref = versions[0]
            out.append(
                {
                    "name": group,
                    "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                    "preferredVersion": {"groupVersion": f"{group}/{pref}", "version": pref},
                }
            )
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}

    def _resource_list(self, group: str, version: str) -> dict:
        items = []
        for rtype in self.emulator.store.all_types():
            if rtype.group != group or rtype.version != version:
                continue
            entry = {
                "name": rtype.plural,
                "singularName": rtype.singular,
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": list(rtype.verbs),
            }
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                entry["categories"] = list(rtype.categories)
            entry["storageVersionHash"] = rtype.kind[:8]
            items.append(entry)
            for sub in rtype.subresources:
                sub_entry = {
                    "name": f"{rtype.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": ["get", "patch", "update"],
                }
                if sub == "scale":
                    sub_entry.update(kind="Scale", group="autoscaling", version="v1")
                items.append(sub_entry)
        if not items:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}

    def _openapi(self, rest: list[str]) -> None:
        """OpenAPI v3 just detailed enough for kubectl to see that the server validates fields itself.

        Every PATCH operation declares the ``fieldValidation`` query parameter, so kubectl sends
        ``fieldValidation=Strict`` and leaves validation to the server (no schemas are published).
        """
        store = self.emulator.store
        if rest == ["v3"]:
            paths = {}
            for rtype in store.all_types():
                prefix = f"apis/{rtype.group}/{rtype.version}" if rtype.group else "api/v1"
                paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={store.rv}"}
            return self._send(200, {"paths": paths})
        if len(rest) >= 3 and rest[0] == "v3":
            gv = rest[1:]
            group, version = ("", gv[1]) if gv[0] == "api" else (gv[1] if len(gv) > 2 else "", gv[-1])
            paths = {}
            for rtype in store.all_types():
                if rtype.group != group or rtype.version != version:
                    continue
                base = f"/apis/{group}/{version}" if group else "/api/v1"
                item = (
                    f"{base}/namespaces/{{namespace}}/{rtype.plural}/{{name}}"
                    if rtype.namespaced
                    else f"{base}/{rtype.plural}/{{name}}"
                )
                gvk = {"group": group, "version": version, "kind": rtype.kind}
                params = [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("dryRun", "fieldManager", "fieldValidation", "force")
                ]
                paths[item] = {
                    "get": {"x-kubernetes-group-version-kind": gvk, "responses": {}},
                    "patch": {"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {}},
                }
            if not paths:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self._send(
                200,
                {
                    "openapi": "3.0.0",
                    "info": {"title": "Kubernetes", "version": "v1.36.3"},
                    "paths": paths,
                    "components": {"schemas": {}},
                },
            )
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _emulator_endpoint(self, rest: list[str]) -> None:
        self._verb = "emulator"
        if rest == ["healthz"]:
            return self._send(200, b"ok", "text/plain")
        if rest == ["requests"] and self.command == "GET":
            return self._send(200, self.emulator.log.snapshot())
        if rest == ["reset-log"] and self.command == "POST":
            self.emulator.log.reset()
            return self._send(200, {"status": "Success"})
        if rest == ["reset"] and self.command == "POST":
            self.emulator.store.reset()
            return self._send(200, {"status": "Success"})
        raise ApiError(404, "NotFound", "unknown emulator endpoint")

    # ------------------------------------------------------------------------------------ resource requests
    def _parse_resource_path(self, group: str, version: str, rest: list[str]):
        store = self.emulator.store
        watch_path = False
        if rest and rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            rtype = store.find_type(group, version, rest[2])
            if rtype is not None and rtype.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rtype = store.find_type(group, version, rest[0])
        if rtype is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3 or (
            sub and sub not in rtype.subresources and not (rtype.kind == "Namespace" and sub == "finalize")
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rtype, namespace, name, sub, watch_path

    def _dry_run(self, body) -> bool:
        values = self._query.get("dryRun", [])
        if isinstance(body, dict) and body.get("kind") == "DeleteOptions":
            values = values + list(body.get("dryRun") or [])
        for value in values:
            if value != "All":
                raise ApiError(400, "BadRequest", f'Invalid value: "{value}": supported values: "All"')
        return bool(values)

    def _matchers(self):
        try:
            labels = k8s_selectors.label_matcher(self._q("labelSelector"))
            fields = k8s_selectors.field_matcher(self._q("fieldSelector"))
        except k8s_selectors.SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc
        return lambda obj: labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj)

    def _resource_request(self, group: str, version: str, rest: list[str]) -> None:
        store = self.emulator.store
        rtype, namespace, name, sub, watch_path = self._parse_resource_path(group, version, rest)
        self._resource = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
        method = self.command
        is_watch = watch_path or self._q_bool("watch")
        if rtype.virtual:
            return self._metrics(rtype, namespace, name, method)
        if sub == "scale":
            return self._scale(rtype, namespace, name, method)
        if method in ("GET", "HEAD"):
            if is_watch:
                self._verb = "watch"
                return self._watch(rtype, namespace, name)
            if name:
                self._verb = "get"
                obj = store.get(rtype, namespace, name)
                return self._send(200, obj)
            self._verb = "list"
            return self._list(rtype, namespace)
        body = self._body()
        if method == "POST":
            self._verb = "create"
            if name:
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body of the request must be an object")
            self._check_kind(rtype, body)
            obj = store.create(rtype, namespace, body, dry_run=self._dry_run(body))
            return self._send(201, obj)
        if method == "PUT":
            self._verb = "update"
            if not name or not isinstance(body, dict):
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            self._check_kind(rtype, body)
            if rtype.namespaced and not store.namespace_exists(namespace):
                raise ApiError(
                    404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
                )
            obj = store.replace(rtype, namespace, name, body, sub, dry_run=self._dry_run(body))
            return self._send(200, obj)
        if method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            patch_type = PATCH_TYPES.get(ctype)
            self._verb = "apply" if patch_type == "apply" else "patch"
            if patch_type is None:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - "
                    f"accepted media types include: "
                    f"{', '.join(PATCH_TYPES)}",
                )
            if not name:
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            if body is None:
                raise ApiError(400, "BadRequest", "the body of the request was empty")
            if rtype.namespaced and not store.namespace_exists(namespace):
                raise ApiError(
                    404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
                )
            obj = store.patch(
                rtype,
                namespace,
                name,
                patch_type,
                body,
                sub,
                dry_run=self._dry_run(None),
                field_manager=self._q("fieldManager"),
                force=self._q_bool("force"),
            )
            return self._send(200, obj)
        if method == "DELETE":
            dry_run = self._dry_run(body)
            propagation = self._q("propagationPolicy") or (body or {}).get("propagationPolicy") or "Background"
            if name:
                self._verb = "delete"
                obj = store.delete(rtype, namespace, name, dry_run=dry_run, propagation=propagation)
                return self._send(200, obj)
            self._verb = "deletecollection"
            items = store.delete_collection(rtype, namespace or None, self._matchers(), dry_run=dry_run)
            return self._send(
                200,
                {
                    "kind": rtype.list_kind,
                    "apiVersion": rtype.group_version,
                    "metadata": {"resourceVersion": str(store.rv)},
                    "items": items,
                },
            )
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _scale_view(self, rtype, obj: dict) -> dict:
        meta = obj["metadata"]
        selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
            },
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
            "status": {
                "replicas": int((obj.get("status") or {}).get("replicas", 0)),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            },
        }

    def _scale(self, rtype, namespace: str, name: str, method: str) -> None:
        """The ``scale`` subresource (autoscaling/v1 Scale) of built-in workloads: reads and writes spec.replicas."""
        store = self.emulator.store
        if method in ("GET", "HEAD"):
            self._verb = "get"
            return self._send(200, self._scale_view(rtype, store.get(rtype, namespace, name)))
        body = self._body()
        self._verb = "update" if method == "PUT" else "patch"
        if method not in ("PUT", "PATCH") or not isinstance(body, (dict, list)):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        with store.lock:
            current = self._scale_view(rtype, store.get(rtype, namespace, name))
            if method == "PATCH":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                kind = PATCH_TYPES.get(ctype)
                if kind == "json":
                    current = patching.json_patch(current, body)
                elif kind in ("merge", "strategic", "apply"):
                    current = patching.merge_patch(current, body)
                else:
                    raise ApiError(415, "UnsupportedMediaType", "unsupported patch type")
            else:
                current = body
            replicas = (current.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(
                    422,
                    "Invalid",
                    f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                    f"{replicas!r}: must be greater than or equal to 0",
                )
            obj = store.patch(
                rtype, namespace, name, "merge", {"spec": {"replicas": replicas}}, dry_run=self._dry_run(None)
            )
            return self._send(
                200, self._scale_view(rtype, store.get(rtype, namespace, name) if not self._dry_run(None) else obj)
            )

    @staticmethod
    def _check_kind(rtype, body: dict) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind and kind != rtype.kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({api_version}) does not match the "
                f"expected API version ({rtype.group_version})"
                if api_version and api_version != rtype.group_version
                else f'{kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}',
            )
        if (
            api_version
            and api_version.split("/")[0] != (rtype.group or api_version.split("/")[0])
            and api_version != rtype.group_version
        ):
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({api_version}) does not match the "
                f"expected API version ({rtype.group_version})",
            )

    def _list(self, rtype, namespace: str) -> None:
        store = self.emulator.store
        items, rv = store.list(rtype, namespace or None, self._matchers())
        limit = int(self._q("limit") or 0)
        start = int(self._q("continue") or 0) if self._q("continue").isdigit() else 0
        meta = {"resourceVersion": rv}
        if limit and start + limit < len(items):
            meta["continue"] = str(start + limit)
            meta["remainingItemCount"] = len(items) - start - limit
            items = items[start : start + limit]
        else:
            items = items[start:]
        self._send(200, {"kind": rtype.list_kind, "apiVersion": rtype.group_version, "metadata": meta, "items": items})

    def _metrics(self, rtype, namespace: str, name: str, method: str) -> None:
        if method not in ("GET", "HEAD"):
            self._verb = "create" if method == "POST" else "update"
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        store = self.emulator.store
        with store.lock:
            items = (
                controllers.node_metrics(store)
                if rtype.kind == "NodeMetrics"
                else controllers.pod_metrics(store, namespace or None)
            )
        match = self._matchers()
        items = [i for i in items if match(i)]
        if name:
            self._verb = "get"
            for item in items:
                if item["metadata"]["name"] == name:
                    return self._send(200, item)
            raise not_found(rtype, name)
        self._verb = "list"
        self._send(
            200,
            {
                "kind": rtype.list_kind,
                "apiVersion": rtype.group_version,
                "metadata": {"resourceVersion": ""},
                "items": items,
            },
        )

    # ------------------------------------------------------------------------------------------------ watch
    def _watch(self, rtype, namespace: str, name: str) -> None:
        store = self.emulator.store
        match = self._matchers()
        if name:
            selector_match = match

            def match_named(o):
                return selector_match(o) and o["metadata"]["name"] == name

            match = match_named
        timeout = float(self._q("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        rv_param = self._q("resourceVersion")

        def in_scope(obj: dict) -> bool:
            if namespace and rtype.namespaced and obj["metadata"].get("namespace") != namespace:
                return False
            return match(obj)

        initial = []
        send_initial = self._q_bool("sendInitialEvents")
        with store.lock:
            state = store.generation_of_state
            if send_initial:
                items, rv = store.list(rtype, namespace or None, match)
                initial = [{"type": "ADDED", "object": i} for i in items]
                # WatchList (client-go >= 1.32 default): the end of the initial events is a bookmark.
                initial.append(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": rtype.kind,
                            "apiVersion": rtype.group_version,
                            "metadata": {"resourceVersion": rv, "annotations": {"k8s.io/initial-events-end": "true"}},
                        },
                    }
                )
                since = int(rv)
            elif rv_param and rv_param != "0":
                try:
                    since = int(rv_param)
                except ValueError as exc:
                    raise ApiError(400, "BadRequest", f"invalid resourceVersion {rv_param!r}") from exc
                if since < store.oldest_event_rv() - 1 and store.events and since < store.events[0][0] - 1:
                    raise ApiError(410, "Expired", f"too old resource version: {since} ({store.rv})")
            else:
                items, rv = store.list(rtype, namespace or None, match)
                initial = [{"type": "ADDED", "object": i} for i in items]
                since = int(rv)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self._status = 200
        self._verb = "watch-started"
        for event in initial:
            self._chunk(event)
        while True:
            with store.lock:
                if store.generation_of_state != state:
                    break
                pending = store.events_since(since)
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    store.cond.wait(min(remaining, 1.0))
                    pending = store.events_since(since)
                out = []
                for ev_rv, stored_type, key, obj, old in pending:
                    etype = stored_type
                    since = max(since, ev_rv)
                    if key != rtype.store_key:
                        continue
                    now_in, was_in = in_scope(obj), old is not None and in_scope(old)
                    if etype == "MODIFIED" and now_in and not was_in:
                        etype = "ADDED"
                    elif etype == "MODIFIED" and was_in and not now_in:
                        etype = "DELETED"
                    elif not now_in:
                        continue
                    shown = dict(obj, apiVersion=rtype.group_version, kind=rtype.kind)
                    out.append({"type": etype, "object": shown})
            for event in out:
                self._chunk(event)
            if time.monotonic() >= deadline:
                break
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


# ------------------------------------------------------------------------------------------------------ CLI
def write_kubeconfig(path: str, url: str, context: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": "emulator"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
        "preferences": {},
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", required=True, help="directory for emulator.json, kubeconfig, logs")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--context", default="kind-filewcount", help="context/cluster/user name in the kubeconfig")
    parser.add_argument("--kubeconfig", help="kubeconfig to write (default <state-dir>/kubeconfig)")
    parser.add_argument("--request-log", help="request log JSON (default <state-dir>/requests.json)")
    parser.add_argument("--controllers", action="store_true", help="run the fake controllers")
    parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="KIND/NAMESPACE/NAME=REASON:MESSAGE",
        help="make that object Ready=False with the reason and message (repeatable)",
    )
    parser.add_argument(
        "--git-root",
        default=None,
        help="directory of bare git repositories that GitRepository URLs ending in <name>.git are served from "
        "(default: $STANDIN_STATE_DIR/git when STANDIN_STATE_DIR is set)",
    )
    parser.add_argument(
        "--schemas-dir",
        default=None,
        help="shared schemas directory whose crds/ hold the CRDs charts install (kube-prometheus-stack); default "
        "$FILEWCOUNT_SCHEMAS_DIR or ../shared/schemas next to the checkout",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=2.0,
        help="controllers mode: also reconcile every N seconds, like Flux polling its sources (0: only on writes)",
    )
    parser.add_argument(
        "--no-default-namespaces",
        action="store_true",
        help="do not create default, kube-system, kube-public and kube-node-lease",
    )


def _info_path(state_dir: str) -> str:
    return os.path.join(state_dir, "emulator.json")


def serve(args: argparse.Namespace) -> int:
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    rules = [controllers.FailRule.parse(text) for text in args.fail]
    store = Store(controllers=args.controllers, default_namespaces=not args.no_default_namespaces)
    git_root = args.git_root
    if git_root is None and os.environ.get("STANDIN_STATE_DIR"):
        git_root = os.path.join(os.environ["STANDIN_STATE_DIR"], "git")
    schemas_dir = (
        args.schemas_dir
        or os.environ.get("FILEWCOUNT_SCHEMAS_DIR")
        or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "shared", "schemas")
    )
    controllers.Controllers(
        store, rules, git_root=os.path.abspath(git_root) if git_root else None, schemas_dir=os.path.abspath(schemas_dir)
    )
    if args.controllers and args.resync_seconds > 0:

        def _resync() -> None:
            while True:
                time.sleep(args.resync_seconds)
                with store.lock:
                    store.run_controllers()

        threading.Thread(target=_resync, daemon=True).start()
    log = RequestLog(os.path.abspath(args.request_log or os.path.join(state_dir, "requests.json")))
    emulator = Emulator(store, log)
    handler = type("BoundHandler", (Handler,), {"emulator": emulator})
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    httpd.daemon_threads = True
    emulator.port = httpd.server_address[1]
    url = f"http://127.0.0.1:{emulator.port}"
    kubeconfig = os.path.abspath(args.kubeconfig or os.path.join(state_dir, "kubeconfig"))
    write_kubeconfig(kubeconfig, url, args.context)
    info = {
        "pid": os.getpid(),
        "port": emulator.port,
        "url": url,
        "kubeconfig": kubeconfig,
        "context": args.context,
        "request_log": log.path,
    }
    tmp = _info_path(state_dir) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    os.replace(tmp, _info_path(state_dir))

    def _stop(_signum, _frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"STANDIN_API_SERVER={url}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        log.flush()
        try:
            with open(_info_path(state_dir), encoding="utf-8") as fh:
                if json.load(fh).get("pid") == os.getpid():
                    os.unlink(_info_path(state_dir))
        except (OSError, ValueError):
            pass
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def start(args: argparse.Namespace, argv: list[str]) -> int:
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    info_path = _info_path(state_dir)
    if os.path.exists(info_path):
        with open(info_path, encoding="utf-8") as fh:
            info = json.load(fh)
        if _alive(info.get("pid", 0)):
            print(
                f"The emulator already runs (pid {info['pid']}, {info['url']}); stop it first with "
                f"`emulator.py stop --state-dir {state_dir}`.",
                file=sys.stderr,
            )
            return 1
        os.unlink(info_path)
    serve_argv = [sys.executable, os.path.abspath(__file__), "serve", *argv]
    with open(os.path.join(state_dir, "emulator.log"), "ab") as log_fh:
        proc = subprocess.Popen(
            serve_argv, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(os.path.join(state_dir, "emulator.log"), encoding="utf-8", errors="replace") as fh:
                tail = fh.read()[-2000:]
            print(
                f"The emulator exited with code {proc.returncode} before it answered; its log says:\n{tail}",
                file=sys.stderr,
            )
            return 1
        if os.path.exists(info_path):
            with open(info_path, encoding="utf-8") as fh:
                info = json.load(fh)
            if info.get("pid") == proc.pid:
                try:
                    with socket.create_connection(("127.0.0.1", info["port"]), timeout=1):
                        pass
                    print(f"STANDIN_API_SERVER={info['url']}")
                    return 0
                except OSError:
                    pass
        time.sleep(0.05)
    proc.terminate()
    print("The emulator did not answer within 30 seconds; see emulator.log in the state dir.", file=sys.stderr)
    return 1


def stop(state_dir: str) -> int:
    info_path = _info_path(os.path.abspath(state_dir))
    if not os.path.exists(info_path):
        return 0
    with open(info_path, encoding="utf-8") as fh:
        pid = json.load(fh).get("pid", 0)
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(info_path)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="emulator.py", description="Emulated Kubernetes API (test double)")
    subs = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "serve"):
        _add_common(subs.add_parser(name, help=f"{name} the emulator"))
    stop_parser = subs.add_parser("stop", help="stop a background emulator")
    stop_parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    if args.command in ("start", "serve"):
        try:
            for text in args.fail:
                controllers.FailRule.parse(text)
        except ValueError as exc:
            parser.error(str(exc))
    if args.command == "serve":
        return serve(args)
    if args.command == "start":
        return start(args, argv[1:])
    return stop(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
