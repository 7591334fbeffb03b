"""Golden cost totals (pycls style): every archs/*.arch at its defaults, plus named variants of the
SqueezeNext family, must reproduce tests/golden/costs.json exactly.

A new or changed network fails here on purpose: run `python tools/update_golden.py` and review
the diff of tests/golden/costs.json.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "costs.json"
HINT = "run `python tools/update_golden.py` and review the diff of tests/golden/costs.json"

_spec = importlib.util.spec_from_file_location("update_golden", ROOT / "tools" / "update_golden.py")
update_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(update_golden)

GOLD = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("stem", update_golden.arch_files())
def test_every_arch_file_has_a_golden_entry(stem):
    assert stem in GOLD, f"archs/{stem}.arch has no golden entry: {HINT}"


def test_no_stale_entries():
    stale = sorted(set(GOLD) - set(update_golden.entries()))
    assert not stale, f"golden entries without a network/variant: {stale}; {HINT}"


@pytest.mark.parametrize("key", sorted(GOLD))
def test_costs_match_golden(key):
    entry = GOLD[key]
    stem = Path(entry["file"]).stem
    if not (ROOT / entry["file"]).exists():
        pytest.fail(f"{entry['file']} is gone: {HINT}")
    got = update_golden.costs(stem, entry["params_set"])
    want = {k: entry[k] for k in update_golden.KEYS}
    assert got == want, f"{key}: costs changed; if intended, {HINT}"
