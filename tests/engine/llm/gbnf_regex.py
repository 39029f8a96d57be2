"""Test helper: turn a NON-recursive GBNF grammar (as engine.llm.grammar writes them) into a
Python regex, so tests can check which texts a grammar accepts without loading a model."""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<lit>"(?:\\.|[^"\\])*")
    | (?P<cls>\[(?:\\.|[^\]\\])*\])
    | (?P<rep>\{\d+(?:,\d*)?\})
    | (?P<op>[()|?*+])
    | (?P<name>[a-zA-Z0-9-]+)
    )""",
    re.VERBOSE,
)
_ESC = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]"}


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif nxt == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(_ESC[nxt])
            i += 2
    return "".join(out)


def gbnf_to_regex(grammar: str, root: str = "root") -> re.Pattern[str]:
    rules: dict[str, str] = {}
    for line in grammar.strip().splitlines():
        name, _, body = line.partition("::=")
        rules[name.strip()] = body.strip()
    cache: dict[str, str] = {}

    def expand(name: str, stack: tuple[str, ...]) -> str:
        if name in stack:
            raise ValueError(f"recursive rule {name}")
        if name not in cache:
            cache[name] = "(?:" + convert(rules[name], (*stack, name)) + ")"
        return cache[name]

    def convert(body: str, stack: tuple[str, ...]) -> str:
        out, pos = [], 0
        body = body.rstrip()
        while pos < len(body):
            m = _TOKEN.match(body, pos)
            if not m:
                raise ValueError(f"cannot read {body[pos:]!r}")
            pos = m.end()
            if m["lit"]:
                out.append(re.escape(_unescape(m["lit"][1:-1])))
            elif m["cls"]:
                out.append(m["cls"])
            elif m["rep"]:
                out.append(m["rep"])
            elif m["op"]:
                out.append("(?:" if m["op"] == "(" else m["op"])
            else:
                out.append(expand(m["name"], stack))
        return "".join(out)

    return re.compile(expand(root, ()), re.DOTALL)
