"""The documentation's generated pages: the spec reference from the pydantic models (dynds_core.spec) and the
API reference from the live app's OpenAPI, so that neither can disagree with the code.

An MkDocs hook (mkdocs.yml: ``hooks``): ``on_files`` adds both pages to the build, generated in memory; nothing
is written into docs/. A field's description is its ``Field(description=...)`` or else the comment the code keeps
beside it (on its line, or the lines right above it): one source, the code.
"""

from __future__ import annotations

import inspect
import io
import json
import tokenize
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

SPEC_PAGE = "spec-reference.md"
API_PAGE = "api-reference.md"


# ---------------------------------------------------------------- the spec reference


def field_comments(cls: type) -> dict[str, str]:
    """name -> the comment beside each field of ``cls`` or a base class it inherits the field from."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if base.__module__.startswith("pydantic") or base is object:
            continue
        out.update({name: text for name, text in _own_field_comments(base).items() if text or name not in out})
    return out


def _own_field_comments(cls: type) -> dict[str, str]:
    """name -> the comment beside each field of ``cls``'s own body: trailing, or the comment lines right above."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    trailing: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            trailing[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    for i, line in enumerate(lines, start=1):
        stripped = line.strip()
        head = stripped.split(":", 1)[0]
        if not head.isidentifier() or head not in getattr(cls, "__annotations__", {}) or line.startswith(" " * 8):
            continue
        above = []
        j = i - 1
        while j >= 1 and lines[j - 1].strip().startswith("#"):
            above.insert(0, lines[j - 1].strip().lstrip("#").strip())
            j -= 1
        own = trailing.get(i, "") if not stripped.startswith("#") else ""
        out[head] = " ".join(part for part in (*above, own) if part)
    return out


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(annotation))}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldInfo) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}
    out = []
    for meta in info.metadata:
        for attr, word in words.items():
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{word} {value:,}" if isinstance(value, int) and abs(value) >= 10_000 else f"{word} {value}")
    return ", ".join(out)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.is_required():
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        kind = getattr(value, "kind", None)
        return f"`kind: {kind}`" if kind is not None else "(section)"
    return f"`{json.dumps(value)}`"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field holds (a section, or each member of a discriminated union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _doc(cls: type) -> str:
    # The class's own docstring only: a section without one would inherit pydantic's BaseModel text.
    return inspect.cleandoc(cls.__dict__.get("__doc__") or "")


def spec_reference() -> str:
    """The spec reference: every key of a job spec, its type, default, bounds and meaning."""
    from dynds_core.spec import JobSpec

    out = [
        "# Spec reference",
        "",
        "Every key of a job spec (YAML or JSON), generated from the pydantic models in `dynds_core/spec.py` when this",
        "site is built: the types, defaults and bounds are the ones the code checks. Unknown keys are errors. Narrative",
        "and examples: [Job specs](specs.md).",
        "",
    ]

    def section(path: str, cls: type[BaseModel], depth: int, heading: str = "") -> None:
        comments = field_comments(cls)
        rows, nested = [], []
        for name, info in cls.model_fields.items():
            key = f"{path}.{name}" if path else name
            models = _models_in(info.annotation)
            about = info.description or comments.get(name, "")
            if models and len(models) == 1 and not typing.get_args(info.annotation):
                nested.append((key, key, models[0], about))
                continue
            if len(models) > 1 and all("kind" in m.model_fields for m in models):
                kinds = ", ".join(f"`{m.model_fields['kind'].default}`" for m in models)
                rows.append((key, f"one of the kinds {kinds}", _default(info), "", about))
                nested.extend((f"{key} (kind: {m.model_fields['kind'].default})", key, m, "") for m in models)
                continue
            if models:  # an optional section (X | None)
                rows.append((key, "section \\| null", _default(info), "", about))
                nested.append((key, key, models[0], about))
                continue
            rows.append((key, _type_name(info.annotation), _default(info), _bounds(info), about))
        if path:
            out.extend([f"{'#' * depth} `{heading or path}`", ""])
            if _doc(cls):
                out.extend([_doc(cls), ""])
        if rows:
            out.extend(["| key | type | default | bounds | meaning |", "|---|---|---|---|---|"])
            out.extend(f"| `{k}` | {t} | {d} | {b} | {_cell(m)} |" for k, t, d, b, m in rows)
            out.append("")
        for heading, key, model, about in nested:
            if about:
                out.extend([f"{'#' * min(depth + 1, 4)} `{heading}`", "", about, ""])
                section_body(key, model, min(depth + 1, 4))
            else:
                section(key, model, min(depth + 1, 4), heading)

    def section_body(path: str, cls: type[BaseModel], depth: int) -> None:
        # The heading is already out (with the comment that describes the section): the class's own text and fields.
        mark = len(out)
        section(path, cls, depth)
        del out[mark : mark + 2]  # the heading section() wrote again

    section("", JobSpec, 2)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the API reference


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " \\| ".join(_schema_type(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"array of {_schema_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    return str(schema.get("type", "any"))


def _cell(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def api_reference(openapi: dict[str, Any] | None = None) -> str:
    """The API reference: every operation of the OpenAPI (parameters, body, answers) and every schema."""
    if openapi is None:
        from app.main import create_app

        openapi = create_app().openapi()
    out = [
        "# API reference",
        "",
        f"Generated from the OpenAPI of dynds {openapi['info'].get('version', '')} when this site is built; the live",
        "server serves the same document at `/openapi.json` and an explorer at `/docs`. The contract in prose",
        "(errors, tokens, events, pagination): [The REST API](api.md).",
        "",
        "## Operations",
        "",
    ]
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            out.extend([f"### `{method.upper()} {path}`", ""])
            if op.get("summary"):
                out.extend([f"**{_cell(op['summary'])}**", ""])
            if op.get("description"):
                out.extend([op["description"].strip(), ""])
            params = op.get("parameters", [])
            if params:
                out.extend(["| parameter | in | type | required | meaning |", "|---|---|---|---|---|"])
                for p in params:
                    schema = p.get("schema", {})
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_schema_type(schema)} | {'yes' if p.get('required') else 'no'} | "
                        f"{_cell(p.get('description') or schema.get('description'))} |"
                    )
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                out.extend([f"Body ({media}): {_schema_type(content.get('schema', {}))}", ""])
            answers = op.get("responses", {})
            if answers:
                out.extend(["| answer | meaning | body |", "|---|---|---|"])
                for code, answer in answers.items():
                    content = answer.get("content", {})
                    schema = next(iter(content.values()), {}).get("schema", {}) if content else {}
                    out.append(f"| {code} | {_cell(answer.get('description'))} | {_schema_type(schema) if schema else ''} |")
                out.append("")
    out.extend(["## Schemas", ""])
    for name, schema in sorted(openapi.get("components", {}).get("schemas", {}).items()):
        out.extend([f"### {name}", ""])
        if schema.get("description"):
            out.extend([_cell(schema["description"]), ""])
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if props:
            out.extend(["| field | type | required | meaning |", "|---|---|---|---|"])
            for field, sub in props.items():
                out.append(f"| `{field}` | {_schema_type(sub)} | {'yes' if field in required else 'no'} | {_cell(sub.get('description'))} |")
            out.append("")
        elif any(k in schema for k in ("oneOf", "anyOf", "enum", "type")):
            out.extend([f"{_schema_type(schema)}", ""])
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the MkDocs hook


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for name, build in ((SPEC_PAGE, spec_reference), (API_PAGE, api_reference)):
        files.append(File.generated(config, name, content=build()))
    return files
