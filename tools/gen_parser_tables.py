"""Regenerate grammar/arch.tables.json, the LALR tables of grammar/arch.lark as JSON data.

    python tools/gen_parser_tables.py           # rewrite the file (after editing the grammar)
    python tools/gen_parser_tables.py --check   # exit 1 if it does not match the grammar

compiler/_tables.py explains the format; tests/test_parser_tables.py runs the check.
"""
from __future__ import annotations

import sys
from pathlib import Path

from archc.compiler import _tables

PATH = Path(__file__).resolve().parent.parent / "grammar" / _tables.TABLES


def main(argv) -> int:
    if "--check" in argv:
        ok = _tables.read_tables() is not None
        print("up to date" if ok else f"{PATH} is stale: run python tools/gen_parser_tables.py")
        return 0 if ok else 1
    PATH.write_text(_tables.tables_text(), encoding="utf-8")
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
