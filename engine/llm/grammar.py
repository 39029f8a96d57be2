"""The reply format as a JSON schema, its GBNF grammar, and the tool descriptions the model reads.

Every model reply is ONE JSON object, keys in this order::

    {"thought": "...", "tool": "<name>", "arguments": {...}, "request_heartbeat": false}

`reply_schema(tools)` builds the JSON schema of that object: a `oneOf` with one branch per tool,
in which `tool` is a const and `arguments` is that tool's parameters schema.

`compile_grammar(schema)` turns it into a llama.cpp grammar. It does NOT use llama-cpp-python's
`json_schema_to_gbnf`, which silently drops what it does not understand (integer `minimum` /
`maximum` are ignored, `type: [...]` lists lose their `items`/`maxLength`, unknown `format`s and
`uniqueItems` are ignored, strings may contain raw control characters, `{}` becomes "any JSON").
The converter here supports a deliberately small subset and raises `ValueError` naming the tool and
the keyword for anything else, so a grammar never constrains less than its schema says.

Supported: `type` (string, integer, number, boolean, null, object, array, or a list of these),
`const`, `enum`, `anyOf` / `oneOf`, string `minLength` / `maxLength`, integer `minimum` /
`maximum` / `exclusiveMinimum` / `exclusiveMaximum`, array `items` / `minItems` / `maxItems`,
object `properties` / `required` / `additionalProperties: false`, local `$ref`s into `$defs` /
`definitions` (inlined by `reply_schema`), and the annotations title, description, default,
examples, $comment, deprecated, readOnly, writeOnly (ignored).
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.types import ToolSpec

if TYPE_CHECKING:  # pragma: no cover
    import llama_cpp

__all__ = [
    "THOUGHT_MAX_LENGTH",
    "REPLY_KEYS",
    "reply_schema",
    "schema_to_gbnf",
    "compile_grammar",
    "render_tool_descriptions",
    "reply_format_instructions",
]

THOUGHT_MAX_LENGTH = 300
REPLY_KEYS = ("thought", "tool", "arguments", "request_heartbeat")

# Digits allowed in an integer/number without an upper bound (as llama.cpp's own converter).
_MAX_DIGITS = 16

_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
    }
)
_TYPE_KEYWORDS: dict[str, frozenset[str]] = {
    "string": frozenset({"minLength", "maxLength"}),
    "integer": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
    "number": frozenset(),
    "boolean": frozenset(),
    "null": frozenset(),
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
}
_JSON_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
    "object": dict,
    "array": list,
}


# --------------------------------------------------------------------------------------------
# The reply schema


def reply_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    """JSON schema of one reply: a `oneOf` over the tools, keys thought, tool, arguments,
    request_heartbeat (all required, in that order, no other keys).

    Local `$ref`s in a tool's parameters are inlined (so each branch is self-contained).
    Raises ValueError for no tools, duplicate names, or parameters that are not an object schema.
    """
    if not tools:
        raise ValueError("reply_schema needs at least one tool")
    seen: set[str] = set()
    branches: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool.name, str) or not tool.name:
            raise ValueError(f"tool name must be a non-empty string, got {tool.name!r}")
        if tool.name in seen:
            raise ValueError(f"duplicate tool name {tool.name!r}")
        seen.add(tool.name)
        branches.append(
            {
                "type": "object",
                "properties": {
                    "thought": {
                        "type": "string",
                        "maxLength": THOUGHT_MAX_LENGTH,
                        "description": "A short inner thought, never shown to the user.",
                    },
                    "tool": {"const": tool.name},
                    "arguments": _arguments_schema(tool),
                    "request_heartbeat": {
                        "type": "boolean",
                        "description": "true to run another step after this tool returns.",
                    },
                },
                "required": list(REPLY_KEYS),
                "additionalProperties": False,
            }
        )
    return {"title": "reply", "oneOf": branches}


def _arguments_schema(tool: ToolSpec) -> dict[str, Any]:
    params = tool.parameters
    if not isinstance(params, dict):
        raise ValueError(f"tool {tool.name!r}: parameters must be a JSON-schema object (a dict)")
    params = copy.deepcopy(params)
    params = _inline_refs(params, params, where=f"tool {tool.name!r} arguments", stack=())
    params.pop("$defs", None)
    params.pop("definitions", None)
    kind = params.setdefault("type", "object")
    if kind != "object":
        raise ValueError(f"tool {tool.name!r}: parameters must have type 'object', got {kind!r}")
    props = params.setdefault("properties", {})
    if "request_heartbeat" in props:
        raise ValueError(
            f"tool {tool.name!r}: 'request_heartbeat' is a top-level field of every reply; "
            "remove it from the tool's parameters"
        )
    params.setdefault("additionalProperties", False)
    return params


def _inline_refs(node: Any, root: dict[str, Any], where: str, stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline_refs(x, root, where, stack) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref is not None:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise ValueError(f"{where}: only local '#/...' $refs are supported, got {ref!r}")
        if ref in stack:
            raise ValueError(f"{where}: recursive $ref {ref!r} cannot become a grammar")
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ValueError(f"{where}: $ref {ref!r} does not resolve")
            target = target[part]
        merged = {k: v for k, v in node.items() if k != "$ref"}
        resolved = _inline_refs(copy.deepcopy(target), root, where, (*stack, ref))
        if not isinstance(resolved, dict):
            raise ValueError(f"{where}: $ref {ref!r} does not point at a schema")
        extra = set(merged) - _ANNOTATIONS
        if extra:
            raise ValueError(f"{where}: keywords {sorted(extra)} next to $ref are not supported")
        return {**resolved, **merged}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in ("const", "enum", "default", "examples"):
            out[k] = v  # values, not schemas
        elif k in ("properties", "$defs", "definitions") and isinstance(v, dict):
            out[k] = {name: _inline_refs(sub, root, where, stack) for name, sub in v.items()}
        else:
            out[k] = _inline_refs(v, root, where, stack)
    return out


# --------------------------------------------------------------------------------------------
# Schema -> GBNF

_SPACE = "space"
_RULE_NAME_RE = re.compile(r"[^a-zA-Z0-9-]+")


def _literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json_literal(value: Any) -> str:
    """GBNF for exactly one JSON value (as json.dumps writes it, compact, non-ASCII kept)."""
    return _literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _rep(item: str, lo: int, hi: int | None) -> str:
    if hi is None:
        if lo == 0:
            return f"{item}*"
        if lo == 1:
            return f"{item}+"
        return f"{item}{{{lo},}}"
    if lo == hi:
        return "" if lo == 0 else (item if lo == 1 else f"{item}{{{lo}}}")
    if lo == 0 and hi == 1:
        return f"{item}?"
    return f"{item}{{{lo},{hi}}}"


# --- integer ranges ---------------------------------------------------------------------------


def _digit_class(lo: int, hi: int) -> str:
    return _literal(str(lo)) if lo == hi else f"[{lo}-{hi}]"


def _same_length_range(lo: str, hi: str) -> list[list[str]]:
    """Alternatives (each a sequence of GBNF atoms) matching the digit strings of equal length
    between lo and hi inclusive (lo <= hi; no sign)."""
    n = len(lo)
    if n == 0:
        return [[]]
    if lo == hi:
        return [[_literal(lo)]]
    if lo[0] == hi[0]:
        return [[_literal(lo[0]), *seq] for seq in _same_length_range(lo[1:], hi[1:])]
    a, b = int(lo[0]), int(hi[0])
    low_rest_is_min = lo[1:] == "0" * (n - 1)
    high_rest_is_max = hi[1:] == "9" * (n - 1)
    alts: list[list[str]] = []
    if not low_rest_is_min:  # a followed by lo[1:]..99..9
        alts += [[_literal(str(a)), *s] for s in _same_length_range(lo[1:], "9" * (n - 1))]
    mid_lo = a if low_rest_is_min else a + 1
    mid_hi = b if high_rest_is_max else b - 1
    if mid_lo <= mid_hi:  # any digit in mid_lo..mid_hi followed by anything
        tail = [_rep("[0-9]", n - 1, n - 1)] if n > 1 else []
        alts.append([_digit_class(mid_lo, mid_hi), *tail])
    if not high_rest_is_max:  # b followed by 00..0..hi[1:]
        alts += [[_literal(str(b)), *s] for s in _same_length_range("0" * (n - 1), hi[1:])]
    return alts


def _natural_range(lo: int, hi: int | None) -> list[list[str]]:
    """Alternatives matching non-negative integers lo..hi (hi None: unbounded, up to 16 digits)."""
    alts: list[list[str]] = []
    top = hi if hi is not None else 10**_MAX_DIGITS - 1
    length = len(str(lo))
    while length <= len(str(top)):
        first = 0 if length == 1 else 10 ** (length - 1)
        last = 10**length - 1
        a, b = max(lo, first), min(top, last)
        if a <= b:
            if hi is None and a == first and length > 1 and b == last:
                # every longer number is in range: one rule for all remaining lengths
                alts.append(["[1-9]", _rep("[0-9]", length - 1, _MAX_DIGITS - 1)])
                break
            alts += _same_length_range(str(a), str(b))
        length += 1
    return alts


def _integer_range(lo: int | None, hi: int | None) -> str:
    """GBNF expression (no trailing space) for the integers lo..hi (either may be None)."""
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"empty integer range: minimum {lo} > maximum {hi}")
    alts: list[list[str]] = []
    # negative part: values lo..min(hi, -1)
    if lo is None or lo < 0:
        neg_hi = hi if hi is not None and hi < 0 else -1
        if lo is None:
            alts += [['"-"', *seq] for seq in _natural_range(-neg_hi, None)]
        elif lo <= neg_hi:
            alts += [['"-"', *seq] for seq in _natural_range(-neg_hi, -lo)]
    # non-negative part: values max(lo, 0)..hi
    if hi is None or hi >= 0:
        alts += _natural_range(max(lo or 0, 0), hi)
    return " | ".join(" ".join(seq) for seq in alts)


def _int_bound(value: Any, keyword: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {keyword} must be a number, got {value!r}")
    return value


# --- the converter ----------------------------------------------------------------------------

_PRIMITIVES = {
    _SPACE: '" "?',
    "char": r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": r'"\"" char* "\"" space',
    "boolean": '("true" | "false") space',
    "null": '"null" space',
    "integer": '("0" | "-"? [1-9] [0-9]{0,15}) space',
    "number": '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})? space',
}
_PRIMITIVE_DEPS = {"string": ["char"]}


class _Converter:
    def __init__(self) -> None:
        self.rules: OrderedDict[str, str] = OrderedDict()
        self._by_body: dict[str, str] = {}

    def primitive(self, name: str) -> str:
        for dep in _PRIMITIVE_DEPS.get(name, []):
            self.primitive(dep)
        if name not in self.rules:
            self.rules[name] = _PRIMITIVES[name]
            self._by_body.setdefault(_PRIMITIVES[name], name)
        if name != _SPACE and _SPACE not in self.rules:
            self.primitive(_SPACE)
        return name

    def add(self, hint: str, body: str) -> str:
        if body in self._by_body:
            return self._by_body[body]
        base = _RULE_NAME_RE.sub("-", hint).strip("-").lower() or "rule"
        if base in _PRIMITIVES:
            base += "-"
        name, i = base, 1
        while name in self.rules:
            i += 1
            name = f"{base}{i}"
        self.rules[name] = body
        self._by_body[body] = name
        return name

    def grammar(self, root: str) -> str:
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines) + "\n"

    # Each visit returns the name of a rule matching the value followed by optional space.
    def visit(self, schema: Any, where: str, hint: str) -> str:
        if isinstance(schema, bool) or not isinstance(schema, dict):
            raise ValueError(f"{where}: a schema must be an object, got {schema!r}")
        if "$ref" in schema:
            raise ValueError(f"{where}: $ref is not supported here (use reply_schema to inline it)")
        if not schema or set(schema) <= _ANNOTATIONS:
            raise ValueError(
                f"{where}: an empty schema (any JSON value) is not supported; give it a type"
            )
        if "const" in schema:
            self._only(schema, {"const", "type"}, where)
            self._check_type_of(schema, [schema["const"]], where)
            return self.add(hint, f"{_json_literal(schema['const'])} {self.primitive(_SPACE)}")
        if "enum" in schema:
            self._only(schema, {"enum", "type"}, where)
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: enum must be a non-empty list")
            self._check_type_of(schema, values, where)
            alts = " | ".join(_json_literal(v) for v in values)
            return self.add(hint, f"({alts}) {self.primitive(_SPACE)}")
        for key in ("anyOf", "oneOf"):
            if key in schema:
                self._only(schema, {key}, where)
                options = schema[key]
                if not isinstance(options, list) or not options:
                    raise ValueError(f"{where}: {key} must be a non-empty list of schemas")
                names = [
                    self.visit(opt, f"{where}.{key}[{i}]", f"{hint}-{i}")
                    for i, opt in enumerate(options)
                ]
                return self.add(hint, " | ".join(dict.fromkeys(names)))
        kind = schema.get("type")
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema:
                kind = "array"
            else:
                keys = sorted(set(schema) - _ANNOTATIONS)
                raise ValueError(f"{where}: schema without a 'type' is not supported (keys {keys})")
        if isinstance(kind, list):
            if not kind or not all(isinstance(k, str) and k in _TYPE_KEYWORDS for k in kind):
                raise ValueError(f"{where}: unsupported type list {kind!r}")
            allowed = {"type"}.union(*(_TYPE_KEYWORDS[k] for k in kind))
            self._only(schema, allowed, where)
            names = []
            for k in kind:
                # each alternative keeps only the keywords that apply to its type
                sub = {key: v for key, v in schema.items() if key in _TYPE_KEYWORDS[k]}
                names.append(self.visit({"type": k, **sub}, f"{where}<{k}>", f"{hint}-{k}"))
            return self.add(hint, " | ".join(dict.fromkeys(names)))
        if not isinstance(kind, str) or kind not in _TYPE_KEYWORDS:
            raise ValueError(f"{where}: unsupported type {kind!r}")
        self._only(schema, {"type"} | _TYPE_KEYWORDS[kind], where, kind)
        return getattr(self, f"_visit_{kind}")(schema, where, hint)

    @staticmethod
    def _only(
        schema: dict[str, Any],
        allowed: set[str] | frozenset[str],
        where: str,
        kind: str | None = None,
    ) -> None:
        extra = sorted(set(schema) - set(allowed) - _ANNOTATIONS)
        if extra:
            what = f" for type {kind!r}" if kind else ""
            raise ValueError(
                f"{where}: unsupported JSON-schema keyword(s) {extra}{what}; the grammar would "
                "not enforce them"
            )

    @staticmethod
    def _check_type_of(schema: dict[str, Any], values: list[Any], where: str) -> None:
        kind = schema.get("type")
        if kind is None:
            return
        kinds = kind if isinstance(kind, list) else [kind]
        for v in values:
            ok = False
            for k in kinds:
                py = _JSON_TYPES.get(k)
                if py is None:
                    raise ValueError(f"{where}: unsupported type {k!r}")
                if isinstance(v, bool) and k in ("integer", "number"):
                    continue
                if isinstance(v, py) and not (k == "integer" and isinstance(v, float)):
                    ok = True
            if not ok:
                raise ValueError(f"{where}: value {v!r} does not have type {kind!r}")

    def _visit_string(self, schema: dict[str, Any], where: str, hint: str) -> str:
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength")
        for key, val in (("minLength", lo), ("maxLength", hi)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 0):
                raise ValueError(f"{where}: {key} must be a non-negative integer, got {val!r}")
        if hi is not None and lo > hi:
            raise ValueError(f"{where}: minLength {lo} > maxLength {hi}")
        if lo == 0 and hi is None:
            return self.primitive("string")
        char = self.primitive("char")
        parts = ['"\\""', _rep(char, lo, hi), '"\\""', self.primitive(_SPACE)]
        return self.add(hint, " ".join(p for p in parts if p))

    def _visit_integer(self, schema: dict[str, Any], where: str, hint: str) -> str:
        lo: int | None = None
        hi: int | None = None
        if "minimum" in schema:
            lo = math.ceil(_int_bound(schema["minimum"], "minimum", where))
        if "exclusiveMinimum" in schema:
            v = _int_bound(schema["exclusiveMinimum"], "exclusiveMinimum", where)
            x = math.floor(v) + 1
            lo = x if lo is None else max(lo, x)
        if "maximum" in schema:
            hi = math.floor(_int_bound(schema["maximum"], "maximum", where))
        if "exclusiveMaximum" in schema:
            v = _int_bound(schema["exclusiveMaximum"], "exclusiveMaximum", where)
            x = math.ceil(v) - 1
            hi = x if hi is None else min(hi, x)
        if lo is None and hi is None:
            return self.primitive("integer")
        try:
            expr = _integer_range(lo, hi)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        return self.add(hint, f"({expr}) {self.primitive(_SPACE)}")

    def _visit_number(self, schema: dict[str, Any], where: str, hint: str) -> str:
        return self.primitive("number")

    def _visit_boolean(self, schema: dict[str, Any], where: str, hint: str) -> str:
        return self.primitive("boolean")

    def _visit_null(self, schema: dict[str, Any], where: str, hint: str) -> str:
        return self.primitive("null")

    def _visit_array(self, schema: dict[str, Any], where: str, hint: str) -> str:
        if "items" not in schema:
            raise ValueError(
                f"{where}: an array needs 'items' (arrays of any JSON are not supported)"
            )
        items = schema["items"]
        if isinstance(items, list):
            raise ValueError(f"{where}: tuple-form 'items' (a list) is not supported")
        lo = schema.get("minItems", 0)
        hi = schema.get("maxItems")
        for key, val in (("minItems", lo), ("maxItems", hi)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 0):
                raise ValueError(f"{where}: {key} must be a non-negative integer, got {val!r}")
        if hi is not None and lo > hi:
            raise ValueError(f"{where}: minItems {lo} > maxItems {hi}")
        item = self.visit(items, f"{where}.items", f"{hint}-item")
        sp = self.primitive(_SPACE)
        if hi == 0:
            inner = ""
        else:
            more = _rep(f'("," {sp} {item})', max(lo - 1, 0), None if hi is None else hi - 1)
            inner = f"{item} {more}".strip()
            if lo == 0:
                inner = f"({inner})?"
        return self.add(hint, f'"[" {sp} {inner} "]" {sp}'.replace("  ", " "))

    def _visit_object(self, schema: dict[str, Any], where: str, hint: str) -> str:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError(f"{where}: properties must be an object")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ValueError(f"{where}: required must be a list of property names")
        unknown = [r for r in required if r not in props]
        if unknown:
            raise ValueError(f"{where}: required names properties that are not defined: {unknown}")
        extra = schema.get("additionalProperties", False)
        if extra is not False:
            raise ValueError(
                f"{where}: additionalProperties {extra!r} is not supported (only false); "
                "declare every property"
            )
        sp = self.primitive(_SPACE)
        kvs: list[tuple[str, bool]] = []
        for key, sub in props.items():
            value = self.visit(sub, f"{where}.{key}", f"{hint}-{key}")
            kv = f'{_literal(json.dumps(key, ensure_ascii=False))} {sp} ":" {sp} {value}'
            kvs.append((kv, key in required))
        body = _object_members(kvs, sp)
        return self.add(hint, f'"{{" {sp} {body} "}}" {sp}'.replace("  ", " "))


def _object_members(kvs: list[tuple[str, bool]], sp: str) -> str:
    """Members in declared order; optional ones may be left out; commas always correct."""
    if not kvs:
        return ""
    comma = f'"," {sp}'
    first_req = next((i for i, (_, req) in enumerate(kvs) if req), None)
    if first_req is not None:
        parts = [f"({kv} {comma})?" for kv, _ in kvs[:first_req]]
        parts.append(f"({kvs[first_req][0]})")
        for kv, req in kvs[first_req + 1 :]:
            parts.append(f"{comma} ({kv})" if req else f"({comma} {kv})?")
        return " ".join(parts)
    # all optional: choose which one comes first, the rest each optional
    alts = []
    for i, (kv, _) in enumerate(kvs):
        rest = " ".join(f"({comma} {k})?" for k, _ in kvs[i + 1 :])
        alts.append(f"({kv}) {rest}".strip())
    return "(" + " | ".join(f"({a})" for a in alts) + ")?"


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF text for a JSON schema (strict subset, see module doc); ValueError if unsupported."""
    where = "reply"
    conv = _Converter()
    branches = (schema.get("oneOf") or schema.get("anyOf")) if isinstance(schema, dict) else None
    if isinstance(branches, list) and all(_tool_name_of(b) for b in branches):
        # name each branch after its tool so errors and rule names say which tool it was
        conv._only(schema, {"oneOf", "anyOf"}, where)
        names = [
            conv.visit(b, f"tool {_tool_name_of(b)!r}", f"{_tool_name_of(b)}") for b in branches
        ]
        root = " | ".join(names)
    else:
        root = conv.visit(schema, where, "value")
    return conv.grammar(root)


def _tool_name_of(branch: Any) -> str | None:
    if not isinstance(branch, dict):
        return None
    props = branch.get("properties")
    tool = props.get("tool") if isinstance(props, dict) else None
    if isinstance(tool, dict) and isinstance(tool.get("const"), str):
        return tool["const"]
    return None


# --------------------------------------------------------------------------------------------
# Compiling (cached)


@dataclass(frozen=True)
class _Compiled:
    gbnf: str
    grammar: llama_cpp.LlamaGrammar


_CACHE: OrderedDict[str, _Compiled] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()


def _canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def compile_grammar(schema: dict[str, Any]) -> llama_cpp.LlamaGrammar:
    """The llama.cpp grammar for `schema`, cached by the schema's canonical JSON.

    Raises ValueError (naming the tool and keyword) if any part of the schema cannot be turned
    into grammar rules, or if the grammar does not mention every tool of a reply schema.
    """
    key = _canonical(schema)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit.grammar
    gbnf = schema_to_gbnf(schema)
    for name in _reply_tool_names(schema):
        if _literal(json.dumps(name, ensure_ascii=False)) not in gbnf:
            raise ValueError(f"grammar does not mention tool {name!r}; refusing to use it")
    from llama_cpp import LlamaGrammar

    grammar = LlamaGrammar.from_string(gbnf, verbose=False)
    with _CACHE_LOCK:
        _CACHE[key] = _Compiled(gbnf, grammar)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return grammar


def _reply_tool_names(schema: dict[str, Any]) -> list[str]:
    branches = schema.get("oneOf") or schema.get("anyOf") or []
    return [n for n in (_tool_name_of(b) for b in branches) if n]


# --------------------------------------------------------------------------------------------
# What the model reads


def _type_label(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(dict.fromkeys(_type_label(s) for s in schema[key]))
    kind = schema.get("type")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "any"
    if isinstance(kind, list):
        return " or ".join(_type_label({**schema, "type": k}) for k in kind)
    if kind == "string":
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        if hi is not None:
            return f"string, {lo or 0}-{hi} chars" if lo else f"string, max {hi} chars"
        return f"string, min {lo} chars" if lo else "string"
    if kind == "integer":
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        if "exclusiveMinimum" in schema:
            lo = f">{schema['exclusiveMinimum']}"
        if "exclusiveMaximum" in schema:
            hi = f"<{schema['exclusiveMaximum']}"
        if (
            lo is not None
            and hi is not None
            and not isinstance(lo, str)
            and not isinstance(hi, str)
        ):
            return f"integer {lo}..{hi}"
        bits = [str(lo) if isinstance(lo, str) else f">={lo}" for lo in [lo] if lo is not None]
        bits += [str(hi) if isinstance(hi, str) else f"<={hi}" for hi in [hi] if hi is not None]
        return "integer" + (" " + " ".join(bits) if bits else "")
    if kind == "array":
        label = f"array of {_type_label(schema.get('items'))}"
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        if lo or hi is not None:
            label += f" ({lo or 0}-{hi} items)" if hi is not None else f" (min {lo} items)"
        return label
    if kind == "object":
        props = schema.get("properties", {})
        req = set(schema.get("required", []))
        inner = ", ".join(
            f"{k}{'' if k in req else '?'}: {_type_label(v)}" for k, v in props.items()
        )
        return "object {" + inner + "}"
    return str(kind)


def render_tool_descriptions(tools: list[ToolSpec]) -> str:
    """Compact text for the system prompt, one line a tool: `name(arg, arg=default): what it
    does`. Types and limits are left out: the grammar enforces them, and every token here is
    read at each page-out on a CPU."""
    lines: list[str] = []
    for tool in tools:
        params = tool.parameters or {}
        props = params.get("properties", {}) or {}
        required = set(params.get("required", []))
        args = [
            key
            if key in required or "default" not in sub
            else f"{key}={json.dumps(sub['default'])}"
            for key, sub in ((k, v if isinstance(v, dict) else {}) for k, v in props.items())
        ]
        lines.append(f"{tool.name}({', '.join(args)}): {' '.join(tool.description.split())}")
    return "\n".join(lines)


def reply_format_instructions() -> str:
    """One paragraph telling the model the reply format (for the system prompt)."""
    return (
        "Reply with exactly one JSON object and nothing else: "
        '{"thought": "<short private thought>", "tool": "<tool name>", '
        '"arguments": {<that tool\'s arguments>}, "request_heartbeat": <true|false>}. '
        "Set request_heartbeat to true when you need another step after the tool returns "
        f"(for example to use a search result); the thought is at most {THOUGHT_MAX_LENGTH} "
        "characters and is never shown to the user."
    )
