"""No module over about 400 lines without a reason stated at its top.

Every .py file in the package folders (compiler/, backends/, archc/, training/, compression/,
presentation/) is at most MAX_LINES lines, or says why it must be one file: its first
REASON_LINES lines (its docstring) contain the words "one file because", as in

    \"\"\"The op registry. ... It is one file because every op's rules are read together.\"\"\"

A module that grows past the limit is split along its concerns (backends/_plan.py and its
neighbours show how), or states its reason in those words.
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("compiler", "backends", "archc", "training", "compression", "presentation")
MAX_LINES = 450
REASON_LINES = 10
REASON = "one file because"

# Over the limit while being split; remove an entry when it is (none today).
PENDING: set = set()


def too_long(path: Path) -> bool:
    """Over MAX_LINES lines without REASON in its first REASON_LINES lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    top = " ".join(" ".join(lines[:REASON_LINES]).lower().split())
    return len(lines) > MAX_LINES and REASON not in top


def modules() -> list:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_the_folders_hold_modules():
    found = {p.relative_to(ROOT).parts[0] for p in modules()}
    assert found == set(FOLDERS)


def test_no_module_too_long_without_a_reason():
    long = [str(p.relative_to(ROOT)) for p in modules() if too_long(p)]
    unexplained = sorted(set(long) - PENDING)
    assert not unexplained, (f"over {MAX_LINES} lines without '{REASON} ...' in the first "
                             f"{REASON_LINES} lines: {unexplained}; split them along their "
                             "concerns or say why they must be one file")


def test_pending_entries_are_still_needed():
    stale = sorted(p for p in PENDING if not (ROOT / p).exists() or not too_long(ROOT / p))
    assert not stale, f"remove from PENDING in tests/test_layout.py: {stale}"


@pytest.mark.parametrize("head, size, bad", [
    ('"""A module."""\n', MAX_LINES + 1, True),
    ('"""A module."""\n', MAX_LINES, False),
    ('"""A parser table.\n\nIt is one file\n    because the tables are generated."""\n',
     MAX_LINES + 50, False),
    ('"""A module."""\n' + "x = 1\n" * REASON_LINES + "# one file because: too late\n",
     MAX_LINES + 1, True),
])
def test_the_rule(tmp_path, head, size, bad):
    path = tmp_path / "m.py"
    text = head + "x = 1\n" * (size - head.count("\n"))
    path.write_text(text)
    assert len(text.splitlines()) == size
    assert too_long(path) is bad
