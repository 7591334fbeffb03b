"""Write tests/golden/costs.json: the cost totals of every bundled network (pycls-style golden file).

    python tools/update_golden.py

Run it after adding or changing a file in archs/ (tests/test_golden.py fails until you do), and
review the diff: a changed number is a changed network.
"""
from __future__ import annotations

import json
from pathlib import Path

import archc

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ROOT / "archs"
GOLDEN = ROOT / "tests" / "golden" / "costs.json"
KEYS = ("params", "buffers", "macs", "elementwise_ops", "activations", "peak_activations")

# named variants of the SqueezeNext family (seeds 000 and 001), besides every file's defaults
VARIANTS = {
    "convnext@tiny": ("convnext", {"variant": "tiny"}),
    "mobileone@s1": ("mobileone", {"variant": "s1"}),
    "repvgg@a1": ("repvgg", {"variant": "a1"}),
    "repvgg@b0": ("repvgg", {"variant": "b0"}),
    "sqnxt@v1-2x": ("sqnxt", {"stages": [6, 6, 8, 1], "width": 2.0}),
    "sqnxt@v5-1x": ("sqnxt", {"stages": [2, 4, 14, 1]}),
    "sqnxt@v5-2x": ("sqnxt", {"stages": [2, 4, 14, 1], "width": 2.0}),
    "se_sqnxt@table5": ("se_sqnxt", {"stages": [1, 2, 8, 1]}),
    "se_sqnxt@10-0.5x": ("se_sqnxt", {"stages": [1, 2, 4, 1], "width": 0.5}),
    "se_sqnxt@10-2x": ("se_sqnxt", {"stages": [1, 2, 4, 1], "width": 2.0}),
    "shallow_sqnxt@06-0.125x": ("shallow_sqnxt", {"stages": [1, 1, 1, 1], "width": 0.125}),
    "shallow_sqnxt@06-2x": ("shallow_sqnxt", {"stages": [1, 1, 1, 1], "width": 2.0}),
}


def arch_files() -> list[str]:
    return sorted(p.stem for p in ARCHS.glob("*.arch"))


def entries() -> dict:
    todo = {stem: (stem, {}) for stem in arch_files()}
    todo.update({k: v for k, v in VARIANTS.items() if v[0] in todo})
    return todo


def costs(stem: str, params: dict) -> dict:
    t = archc.analyze(archc.load(str(ARCHS / f"{stem}.arch"), **params)).totals
    return {k: t[k] for k in KEYS}


def main() -> int:
    out, failed = {}, []
    for key, (stem, params) in sorted(entries().items()):
        try:
            out[key] = {"file": f"archs/{stem}.arch", "params_set": params, **costs(stem, params)}
        except archc.ArchError as e:     # left out: tests/test_golden.py fails for it
            failed.append(key)
            print(f"ERROR {key}: {e}")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(out)} entries to {GOLDEN.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
