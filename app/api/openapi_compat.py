"""The OpenAPI as client generators read it: what JSON Schema allows but generators refuse, rewritten.

Generators (openapi-python-client, openapi-generator) turn a ``$ref`` into a model class and cannot give a
model a default: a ``default`` beside a ``$ref``, or beside a union of ``$ref`` s, drops the whole schema
(openapi-python-client: "ModelProperty cannot have a default value") and every operation that uses it. The
server fills those defaults in itself, so the schema only has to say what they are: the default moves into
the property's description, in the shortest form that parses to it (fields at their own default left out).
Operations are named by their function (``submit_job``, not FastAPI's ``submit_job_api_v1_jobs_post``): the
names generated clients call.

    >>> schema = {"components": {"schemas": {"A": {"properties": {"b": {"$ref": "#/components/schemas/B", "default": {}}}},
    ...                                      "B": {"properties": {}}}}}
    >>> portable(schema)["components"]["schemas"]["A"]["properties"]["b"]
    {'$ref': '#/components/schemas/B', 'description': 'Default: `{}`.'}
"""

from __future__ import annotations

import json
import re
from typing import Any

REF_PREFIX = "#/components/schemas/"
NOT_A_WORD = re.compile(r"\W")  # fastapi.utils.generate_unique_id writes each such character of the path as _


def _refs(prop: dict[str, Any]) -> list[str]:
    """The component names a property schema refers to, directly or as a member of a union."""
    members = [prop, *prop.get("anyOf", ()), *prop.get("oneOf", ()), *prop.get("allOf", ())]
    return [m["$ref"].removeprefix(REF_PREFIX) for m in members if isinstance(m, dict) and "$ref" in m]


def _shortest(value: Any, target: dict[str, Any] | None) -> Any:
    """``value`` without the fields that equal the target schema's own default (required fields stay)."""
    if not isinstance(value, dict) or target is None:
        return value
    props, required = target.get("properties", {}), set(target.get("required", ()))
    return {k: v for k, v in value.items() if k in required or "default" not in props.get(k, {}) or props[k]["default"] != v}


def _target(prop: dict[str, Any], value: Any, components: dict[str, Any]) -> dict[str, Any] | None:
    """The component a default instantiates: the only one referred to, or the discriminator's choice."""
    names = _refs(prop)
    disc = prop.get("discriminator")
    if disc and isinstance(value, dict) and value.get(disc["propertyName"]) in disc.get("mapping", {}):
        names = [disc["mapping"][value[disc["propertyName"]]].removeprefix(REF_PREFIX)]
    return components.get(names[0]) if len(names) == 1 else None


def name_operations(schema: dict[str, Any]) -> None:
    """Each ``operationId`` FastAPI made (``{function}{path}_{method}``, the path's non-word characters as _) cut to the function's name,
    unless another operation took that name first (the root /healthz after /api/v1/healthz): that one keeps it."""
    taken: set[str] = set()
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            suffix = NOT_A_WORD.sub("_", path) + f"_{method}"
            name = op.get("operationId", "").removesuffix(suffix) if isinstance(op, dict) else ""
            if name and name != op["operationId"] and name not in taken:
                op["operationId"] = name
                taken.add(name)


def portable(schema: dict[str, Any]) -> dict[str, Any]:
    """Move each ``default`` that sits beside a ``$ref`` (or a union holding one) into the description, and name
    each operation by its function; in place."""
    name_operations(schema)
    components = schema.get("components", {}).get("schemas", {})
    moved = [prop for component in components.values() for prop in component.get("properties", {}).values() if "default" in prop and _refs(prop)]
    # every text first: the shortest form compares with the defaults of the components it refers to
    texts = [f"Default: `{json.dumps(_shortest(p['default'], _target(p, p['default'], components)), separators=(', ', ': '))}`." for p in moved]
    for prop, text in zip(moved, texts, strict=True):
        del prop["default"]
        prop["description"] = f"{prop['description'].rstrip('.')}. {text}" if prop.get("description") else text
    return schema
