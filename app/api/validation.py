"""Validation problems (422): field errors formatted without the submitted values, and the strict input
check every request passes before a route sees it (``InputGate``: NUL bytes in the path or query; a JSON
body that is not strict JSON: NaN/Infinity, numbers that overflow to infinity, integers past 64 bits, NUL
bytes or lone surrogates in strings, nesting past ``MAX_JSON_DEPTH``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response

from app.api.problems import problem_response

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
MAX_JSON_DEPTH = 100


def _loc_part(p: Any) -> str | int:
    return p if isinstance(p, int) and not isinstance(p, bool) else str(p)


def clean_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """Validation errors as ``{"loc", "msg", "type"}``: no submitted value (``input``), no ``ctx``."""
    out = []
    for err in errors:
        if not isinstance(err, dict):
            out.append({"loc": [], "msg": str(err), "type": "value_error"})
            continue
        msg = str(err.get("msg", ""))
        kind = str(err.get("type", "value_error"))
        ctx = err.get("ctx")
        if kind == "json_invalid" and isinstance(ctx, dict) and ctx.get("error"):
            msg = f"invalid JSON: {ctx['error']}"
        out.append({"loc": [_loc_part(p) for p in err.get("loc", ())], "msg": msg, "type": kind})
    return out


def validation_problem(scope, errors: list[dict[str, Any]]) -> Response:
    return problem_response(scope, 422, errors=clean_errors(errors))


class InvalidJSON(ValueError):
    def __init__(self, msg: str, loc: list | None = None, kind: str = "json_invalid"):
        super().__init__(msg)
        self.msg, self.loc, self.kind = msg, loc or [], kind


def _refuse_constant(name: str):
    raise InvalidJSON(f"{name} is not a JSON number (RFC 8259): send a finite number or null", kind="value_error.non_finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"the number {text[:40]} overflows a 64-bit float: send a finite number", kind="value_error.non_finite")
    return value


def _bad_string(s: str) -> str | None:
    if "\x00" in s:
        return "must not contain NUL bytes (\\u0000)"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (a lone surrogate such as \\ud800 is not)"
    return None


def check_json(value: Any) -> tuple[list, str, str] | None:
    """The first thing in a parsed body that strict JSON input may not hold: (loc, msg, type), or None."""
    stack: list[tuple[Any, tuple, int]] = [(value, (), 0)]
    while stack:
        node, loc, depth = stack.pop()
        if isinstance(node, str):
            why = _bad_string(node)
            if why:
                return ["body", *loc], why, "value_error.string"
        elif isinstance(node, bool) or node is None or isinstance(node, float):
            continue
        elif isinstance(node, int):
            if not MIN_INT64 <= node <= MAX_INT64:
                return ["body", *loc], "integers must fit in 64 bits (-2^63 .. 2^63-1)", "value_error.int64"
        elif isinstance(node, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                return ["body", *loc], f"nested more than {MAX_JSON_DEPTH} levels deep", "value_error.depth"
            if isinstance(node, dict):
                for k, v in node.items():
                    why = _bad_string(k)
                    if why:
                        return ["body", *loc], f"a key {why}", "value_error.string"
                    stack.append((v, (*loc, k), depth + 1))
            else:
                stack.extend((v, (*loc, i), depth + 1) for i, v in enumerate(node))
    return None


def parse_strict_json(body: bytes) -> Any:
    """``json.loads`` that refuses what strict JSON input may not hold (``InvalidJSON`` with a location)."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except InvalidJSON:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} (line {exc.lineno} column {exc.colno})", [exc.pos]) from None
    except UnicodeDecodeError:
        raise InvalidJSON("the body is not UTF-8 text") from None
    except RecursionError:
        raise InvalidJSON(f"nested more than {MAX_JSON_DEPTH} levels deep", kind="value_error.depth") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise InvalidJSON(str(exc), kind="value_error.number") from None
    bad = check_json(value)
    if bad is not None:
        loc, msg, kind = bad
        raise InvalidJSON(msg, loc[1:], kind)
    return value


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return True  # FastAPI reads a body without a Content-Type as JSON
    main = content_type.split(b";", 1)[0].strip().lower()
    return main == b"application/json" or (main.startswith(b"application/") and main.endswith(b"+json"))


class InputGate:
    """422 before any route for input no route should see: a NUL byte in the path or in a query
    parameter's name or value; a JSON body that ``parse_strict_json`` refuses."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if "\x00" in scope.get("path", ""):
            return await validation_problem(scope, [{"loc": ["path"], "msg": "must not contain NUL bytes (%00)", "type": "value_error.string"}])(
                scope, receive, send
            )
        qs = scope.get("query_string", b"")
        if qs and (b"%00" in qs or b"\x00" in qs):
            for name, value in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    err = {"loc": ["query", name.replace("\x00", "\\x00")], "msg": "must not contain NUL bytes (%00)", "type": "value_error.string"}
                    return await validation_problem(scope, [err])(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS") or not _is_json(dict(scope["headers"]).get(b"content-type")):
            return await self.app(scope, receive, send)
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            try:
                parse_strict_json(body)
            except InvalidJSON as exc:
                return await validation_problem(scope, [{"loc": ["body", *exc.loc], "msg": exc.msg, "type": exc.kind}])(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
