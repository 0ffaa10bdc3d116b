"""Object validation of the emulated Kubernetes API (test double, never shipped).

Built-in kinds are checked against the strict Kubernetes 1.36 JSON schemas shipped by ``kubernetes-validate``
(unknown fields and wrong types are errors); custom resources against their CRD's ``openAPIV3Schema`` turned into
a JSON schema that honours ``x-kubernetes-preserve-unknown-fields``, ``x-kubernetes-int-or-string``,
``x-kubernetes-embedded-resource`` and ``nullable``, and rejects unknown fields like a structural schema with
``fieldValidation=Strict``.
"""

from __future__ import annotations

import copy
import functools
import json
import re

import jsonschema
import referencing
import referencing.jsonschema
from kubernetes_validate import utils as kv_utils

KUBERNETES_VERSION = "1.36.0"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Invalid(Exception):
    """The object is invalid: ``causes`` is a list of (field, message) pairs, as in a 422 Status."""

    def __init__(self, causes: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {m}" for f, m in causes))
        self.causes = causes


@functools.lru_cache(maxsize=1)
def _registry() -> referencing.Registry:
    schema_dir = f"v{KUBERNETES_VERSION}-local-strict"
    defs = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", KUBERNETES_VERSION)
    return referencing.Resource.from_contents(defs) @ referencing.Registry()


@functools.lru_cache(maxsize=256)
def _builtin_validator(kind: str, api_version: str):
    schema_dir = f"v{KUBERNETES_VERSION}-local-strict"
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(
            f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{short}.json", KUBERNETES_VERSION
        )
    except FileNotFoundError:
        return None
    registry = referencing.Resource.from_contents(schema) @ _registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _path(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out or "<root>"


def _best_errors(validator, obj) -> list[tuple[str, str]]:
    causes = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        best = jsonschema.exceptions.best_match([err])
        field = _path(best)
        if best.validator == "additionalProperties":
            extra = sorted(set(best.instance) - set(best.schema.get("properties") or {}))
            for name in extra:
                prefix = f"{field}." if field != "<root>" else ""
                causes.append((f"{prefix}{name}", f'field not declared in schema (unknown field "{name}")'))
            continue
        if best.validator == "required":
            causes.append((field, best.message.replace(" is a required property", ": Required value")))
            continue
        causes.append((field, f"Invalid value: {json.dumps(best.instance)[:80]}: {best.message[:200]}"))
    return causes


def validate_metadata(obj: dict, namespaced: bool) -> None:
    meta = obj.get("metadata")
    causes = []
    if not isinstance(meta, dict):
        raise Invalid([("metadata", "Required value")])
    name = meta.get("name")
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif not isinstance(name, str) or len(name) > 253 or not _NAME_RE.match(name):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                "lower case alphanumeric characters, '-' or '.', and must start and end "
                "with an alphanumeric character",
            )
        )
    for key in ("labels", "annotations"):
        val = meta.get(key)
        if val is not None and (not isinstance(val, dict) or not all(isinstance(v, str) for v in val.values())):
            causes.append((f"metadata.{key}", "Invalid value: values must be strings"))
    if causes:
        raise Invalid(causes)


def validate_builtin(obj: dict) -> None:
    validator = _builtin_validator(obj.get("kind", ""), obj.get("apiVersion", ""))
    if validator is None:
        return
    causes = _best_errors(validator, obj)
    if causes:
        raise Invalid(causes)


def _convert(schema: dict, root: bool = False) -> dict:
    """Turn a CRD structural schema into a JSON schema with Strict unknown-field handling."""
    if not isinstance(schema, dict):
        return {}
    out: dict = {}
    for key in (
        "type",
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "uniqueItems",
        "required",
        "minProperties",
        "maxProperties",
        "multipleOf",
    ):
        if key in schema:
            out[key] = copy.deepcopy(schema[key])
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool):  # OpenAPI v3.0 booleans -> JSON schema 2020-12 numbers
            exclusive = out.pop(bound)
            if exclusive and limit in out:
                out[bound] = out.pop(limit)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    for comb in ("allOf", "anyOf", "oneOf"):
        if comb in schema and comb not in out:
            out[comb] = [_convert_partial(s) for s in schema[comb]]
    if "not" in schema:
        out["not"] = _convert_partial(schema["not"])
    props = dict(schema.get("properties") or {})
    embedded = schema.get("x-kubernetes-embedded-resource")
    if root or embedded:
        for meta_key in ("apiVersion", "kind"):
            props.setdefault(meta_key, {"type": "string"})
        props.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
        if root:
            props["metadata"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if props:
        out["properties"] = {k: _convert(v) for k, v in props.items()}
    if "items" in schema:
        out["items"] = _convert(schema["items"])
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        out["additionalProperties"] = _convert(addl)
    elif isinstance(addl, bool):
        out["additionalProperties"] = addl
    elif not schema.get("x-kubernetes-preserve-unknown-fields") and (
        props or schema.get("type") == "object" or root or embedded
    ):
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    return out


def _convert_partial(schema: dict) -> dict:
    """allOf/anyOf/oneOf branches in structural schemas only constrain values; never reject unknown fields."""
    conv = _convert(schema)
    _drop_additional(conv)
    return conv


def _drop_additional(schema: dict) -> None:
    if isinstance(schema, dict):
        if schema.get("additionalProperties") is False:
            schema.pop("additionalProperties")
        for value in schema.values():
            if isinstance(value, dict):
                _drop_additional(value)
            elif isinstance(value, list):
                for item in value:
                    _drop_additional(item)


@functools.lru_cache(maxsize=256)
def _crd_validator(schema_json: str):
    schema = _convert(json.loads(schema_json), root=True)
    return jsonschema.Draft202012Validator(schema)


def validate_custom(obj: dict, openapi_schema: dict | None) -> None:
    if not openapi_schema:
        return
    validator = _crd_validator(json.dumps(openapi_schema, sort_keys=True))
    causes = _best_errors(validator, obj)
    if causes:
        raise Invalid(causes)
