"""The LALR tables of grammar/arch.lark, shipped as plain JSON data (grammar/arch.tables.json).

Building the tables takes ~0.2-0.3 s, most of a short `archc` run, so they are built once,
when the grammar changes, and shipped in the package. Nothing is cached per user and
nothing is unpickled: the file is JSON (tuples and int-keyed dicts tagged, see `_encode`),
read with json.loads and handed to Lark as a dict. It records the SHA-256 of the grammar
and the Lark version that built it; on any mismatch (an edited grammar, another Lark) the
parser is built from the grammar in memory instead.

    python tools/gen_parser_tables.py          # regenerate after editing grammar/arch.lark

tests/test_parser_tables.py checks that the shipped file is up to date.
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources

import lark
from lark import Lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

OPTIONS = {"parser": "lalr", "propagate_positions": True, "maybe_placeholders": True,
           "start": "start"}
TABLES = "arch.tables.json"
_TUPLE, _INT_KEYS = "__archc_tuple__", "__archc_int_keys__"


def grammar_text() -> str:
    return resources.files("archc.grammar").joinpath("arch.lark").read_text(encoding="utf-8")


def grammar_hash(text: str | None = None) -> str:
    return hashlib.sha256((grammar_text() if text is None else text).encode()).hexdigest()


def build() -> Lark:
    """The parser built from the grammar (what the tables are made from)."""
    return Lark(grammar_text(), **OPTIONS)


def _encode(x):
    """Lark's serialised tables -> JSON data: tuples and int-keyed dicts are tagged."""
    if isinstance(x, tuple):
        return {_TUPLE: [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    if isinstance(x, dict):
        if any(not isinstance(k, str) for k in x):
            assert all(isinstance(k, int) and not isinstance(k, bool) for k in x), x.keys()
            return {_INT_KEYS: [[k, _encode(v)] for k, v in x.items()]}
        assert _TUPLE not in x and _INT_KEYS not in x, x.keys()
        return {k: _encode(v) for k, v in x.items()}
    assert x is None or isinstance(x, (str, int, float, bool)), type(x)
    return x


def _decode(x):
    if isinstance(x, list):
        return [_decode(v) for v in x]
    if isinstance(x, dict):
        if _TUPLE in x:
            return tuple(_decode(v) for v in x[_TUPLE])
        if _INT_KEYS in x:
            return {k: _decode(v) for k, v in x[_INT_KEYS]}
        return {k: _decode(v) for k, v in x.items()}
    return x


def tables_text(parser: Lark | None = None) -> str:
    """The JSON text of the tables of `parser` (default: built from the grammar now)."""
    data, memo = (parser or build()).memo_serialize([TerminalDef, Rule])
    doc = {"grammar_sha256": grammar_hash(), "lark_version": lark.__version__,
           "data": _encode(data), "memo": _encode(memo)}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n"


def read_tables(text: str | None = None) -> dict | None:
    """The shipped tables (or those of `text`) as Lark's serialised dict; None if missing,
    damaged or stale."""
    try:
        if text is None:
            text = resources.files("archc.grammar").joinpath(TABLES).read_text(encoding="utf-8")
        doc = json.loads(text)
        if doc.get("grammar_sha256") != grammar_hash() or \
                doc.get("lark_version") != lark.__version__:
            return None
        return {"data": _decode(doc["data"]), "memo": _decode(doc["memo"])}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def load() -> Lark:
    """The parser: from the shipped tables when they match the grammar and Lark, else built."""
    tables = read_tables()
    if tables is not None:
        try:
            return Lark.load(tables)  # a dict: Lark deserialises it without pickle
        except Exception:  # noqa: BLE001 - damaged data: the grammar is the truth
            pass
    return build()
