"""The parser's LALR tables ship as JSON data (compiler/_tables.py): up to date with the
grammar, equivalent to a fresh build, and nothing on the path unpickles (issue 12, class 7)."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from importlib import resources

import lark
import pytest

from archc.compiler import _tables, library_dir


def _shipped() -> dict:
    return json.loads(resources.files("archc.grammar").joinpath(_tables.TABLES).read_text())


def test_shipped_tables_match_the_grammar():
    doc = _shipped()
    assert doc["grammar_sha256"] == _tables.grammar_hash(), \
        "grammar/arch.lark changed: run python tools/gen_parser_tables.py"


def test_shipped_tables_match_the_installed_lark():
    assert _shipped()["lark_version"] == lark.__version__, \
        "another Lark is installed: run python tools/gen_parser_tables.py (until then archc " \
        "builds the tables at every start, ~0.2 s)"
    assert _tables.read_tables() is not None


def _outcome(parser, text):
    try:
        return ("tree", parser.parse(text))
    except lark.exceptions.UnexpectedInput as err:
        return (type(err).__name__, err.line, err.column,
                sorted(getattr(err, "expected", None) or getattr(err, "accepts", None) or ()))


def test_shipped_tables_parse_like_the_grammar():
    doc = _shipped()
    shipped = lark.Lark.load({"data": _tables._decode(doc["data"]),
                              "memo": _tables._decode(doc["memo"])})
    fresh = _tables.build()
    texts = [p.read_text() for p in sorted(library_dir().rglob("*.arch"))]
    texts += ["network N() { x = f(a b) }", "network N( { }", "block b(x) { }", "x = 1",
              'network N() { y = "a" + 1 ** -2 -> relu }', "network N() { if a = 1 { } }"]
    for text in texts:
        assert _outcome(shipped, text) == _outcome(fresh, text), text[:200]


def test_stale_tables_are_not_used(monkeypatch):
    monkeypatch.setattr(_tables, "grammar_hash", lambda text=None: "0" * 64)
    assert _tables.read_tables() is None
    monkeypatch.undo()
    monkeypatch.setattr(lark, "__version__", "0.0.0")
    assert _tables.read_tables() is None
    assert _tables.load().parse("network N() { x = 1 }")  # built from the grammar instead


def test_loading_the_parser_never_unpickles(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("pickle used")
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    assert _tables.load().parse("network N() { x = 1 }")


def test_a_planted_cache_file_is_never_read(tmp_path):
    """Lark's cache was a pickle in ~/.cache/archc that Lark unpickled before any check:
    a file planted there ran as the user. Nothing reads it now."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    cache = tmp_path / "cache"
    (cache / "archc").mkdir(parents=True)
    blob = pickle.dumps(Payload())
    for name in ("grammar-start.lark-cache", "grammar.lark-cache"):
        (cache / "archc" / name).write_bytes(blob)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), HOME=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "archc", "check", "se_sqnxt"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert not marker.exists()
    assert sorted(os.listdir(cache / "archc")) == ["grammar-start.lark-cache",
                                                   "grammar.lark-cache"]


@pytest.mark.parametrize("bad", ["", "{", "[]", '{"grammar_sha256": 1}'])
def test_damaged_tables_are_not_used(bad):
    assert _tables.read_tables(bad) is None
    good = json.dumps({**_shipped(), "data": {"__archc_tuple__": 3}})
    assert _tables.read_tables(good) is None
