"""The model-size columns of seeds 000 and 001, Tables I-IV, each from one `archc sweep`.

    python tools/sweep_tables.py > /tmp/tables.md     # from the repository root

Runs each sweep command (the CLI, as a user would), prints the command and its output, then
compares every printed cell with the sweep's sizes and with the size of torch.save() of a
state_dict of the same tensors (tools/paper_sizes.py; docs/paper-tables.md shows the papers'
sizes are PyTorch checkpoint files: parameters and BN buffers plus a per-tensor overhead). The paper cells are copied from
../shared/seeds/000_*.txt and 001_*.txt; the names -> settings mapping is docs/paper-tables.md's.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import archc
from archc.compiler import parse_define

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paper_sizes import state_dict_bytes  # noqa: E402  (tools/paper_sizes.py)

SQ = "[[6,6,8,1],[2,4,14,1]]"
S000 = "[[1,1,1,1],[1,2,4,1],[1,2,6,1],[1,2,8,1],[1,2,16,1],[2,2,16,1]]"
S001 = "[[1,1,1,1],[1,2,2,1],[1,3,3,1],[1,4,4,1],[1,5,5,1],[1,6,6,1]]"
W000 = "[0.5,0.6,0.7,0.8,0.9,1.0,1.2,1.5,1.7,2.0]"
W001 = "[0.125,0.2,0.3,0.6,0.8,0.9,1.5,2.0]"

# (title, sweep arguments, [(printed model name, {grid parameter: value}, paper MB)])
TABLES = [
    ("Seed 000, Table I (SqueezeNet rows)",
     ["squeezenet", "--grid", 'version=["1.0","1.1"]', "-D", 'dataset="cifar10"'],
     [("SqueezeNet-v1.0", {"version": "1.0"}, 3.01), ("SqueezeNet-v1.1", {"version": "1.1"}, 2.96)]),
    ("Seed 000, Table I (SqueezeNext rows)",
     ["sqnxt", "--grid", f"stages={SQ}", "--grid", "width=[1.0,2.0]"],
     [("SqueezeNext-23-1x-v1", {"stages": [6, 6, 8, 1], "width": 1.0}, 2.57),
      ("SqueezeNext-23-1x-v5", {"stages": [2, 4, 14, 1], "width": 1.0}, 2.57),
      ("SqueezeNext-23-2x-v1", {"stages": [6, 6, 8, 1], "width": 2.0}, 9.53),
      ("SqueezeNext-23-2x-v5", {"stages": [2, 4, 14, 1], "width": 2.0}, 9.53)]),
    ("Seed 000, Table I (SE-SqueezeNext rows)",
     ["se_sqnxt", "--grid", "width=[1.0,2.0]"],
     [("SE-SqueezeNext-10-1.0x-v1", {"width": 1.0}, 1.81),
      ("SE-SqueezeNext-10-2.0x-v1", {"width": 2.0}, 6.59)]),
    ("Seed 000, Table II (resolution multiplier = stage list)",
     ["se_sqnxt", "--grid", f"stages={S000}"],
     [(f"SE-SqueezeNext-{n}-1x-v1", {"stages": s}, mb) for n, s, mb in [
         ("06", [1, 1, 1, 1], 1.22), ("10", [1, 2, 4, 1], 1.81), ("12", [1, 2, 6, 1], 2.16),
         ("14", [1, 2, 8, 1], 2.52), ("22", [1, 2, 16, 1], 3.94), ("23", [2, 2, 16, 1], 3.97)]]),
    ("Seed 000, Table III (width multiplier)",
     ["se_sqnxt", "--grid", f"width={W000}"],
     [(f"SE-SqueezeNext-10-{w}x-v1", {"width": w}, mb) for w, mb in [
         (0.5, 0.595), (0.6, 0.760), (0.7, 0.968), (0.8, 1.21), (0.9, 1.48), (1.0, 1.81),
         (1.2, 2.48), (1.5, 3.81), (1.7, 4.78), (2.0, 6.59)]]),
    ("Seed 000, Table IV (dropout)",
     ["se_sqnxt", "--grid", "dropout=[0.1,0.2,0.3,0.4,0.5,0.6]"],
     [(f"SE-SqueezeNext-10-1x-v1, p={p}", {"dropout": p}, 2.16)
      for p in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)]),
    ("Seed 001, Table I (SqueezeNet rows)",
     ["squeezenet", "--grid", 'version=["1.0","1.1"]', "-D", 'dataset="cifar10"'],
     [("SqueezeNet-v1.0", {"version": "1.0"}, 3.013), ("SqueezeNet-v1.1", {"version": "1.1"}, 2.961)]),
    ("Seed 001, Table I (SqueezeNext rows)",
     ["sqnxt", "--grid", f"stages={SQ}", "--grid", "width=[1.0,2.0]"],
     [("SqueezeNext-23-1x-v1", {"stages": [6, 6, 8, 1], "width": 1.0}, 2.586),
      ("SqueezeNext-23-1x-v5", {"stages": [2, 4, 14, 1], "width": 1.0}, 2.586),
      ("SqueezeNext-23-2x-v1", {"stages": [6, 6, 8, 1], "width": 2.0}, 9.525),
      ("SqueezeNext-23-2x-v5", {"stages": [2, 4, 14, 1], "width": 2.0}, 9.525)]),
    ("Seed 001, Table II (resolution multiplier = stage list)",
     ["shallow_sqnxt", "--grid", f"stages={S001}", "--grid", "width=[1.0,2.0]"],
     [(f"Shallow SqueezeNext-{n}-{w:g}x-v1", {"stages": s, "width": w}, mb) for n, s, w, mb in [
         ("06", [1, 1, 1, 1], 2.0, 4.21), ("08", [1, 2, 2, 1], 1.0, 2.96),
         ("10", [1, 3, 3, 1], 1.0, 2.5863), ("12", [1, 4, 4, 1], 1.0, 2.5863),
         ("14", [1, 5, 5, 1], 1.0, 0.370), ("16", [1, 6, 6, 1], 1.0, 1.24)]]),
    ("Seed 001, Table III (width multiplier; the 06 rows)",
     ["shallow_sqnxt", "-D", "stages=[1,1,1,1]", "--grid", f"width={W001}"],
     [(f"Shallow SqueezeNext-06-{w:g}x-v1", {"width": w}, mb) for w, mb in [
         (0.125, 0.115), (0.2, 0.141), (0.2, 0.296), (0.3, 0.196), (0.6, 0.48), (0.8, 0.774),
         (0.9, 0.950), (1.5, 2.44), (2.0, 4.20)]]),
    ("Seed 001, Table IV (dropout, rows read as 06-0.4x)",
     ["shallow_sqnxt", "-D", "stages=[1,1,1,1]", "-D", "width=0.4", "--grid",
      "dropout=[0.1,0.2,0.3,0.4,0.5]"],
     [(f"Shallow SqueezeNext-06-{p}x-v1 (p={p})", {"dropout": p}, 0.273)
      for p in (0.1, 0.2, 0.3, 0.4, 0.5)]),
]


def sweep_cli(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "archc", "sweep", *args], check=True,
                          capture_output=True, text=True)
    return proc.stdout


def main() -> None:
    for title, args, cells in TABLES:
        shown = "archc sweep " + " ".join(shlex.quote(a) for a in args)
        print(f"### {title}\n\n```console\n$ {shown}\n{sweep_cli(args)}```\n")
        rows = json.loads(sweep_cli([*args, "--format", "json"]))["rows"]
        fixed = dict(parse_define(args[i + 1])[:2] for i, a in enumerate(args) if a == "-D")
        print("| model (as printed) | params | size MB | size MB +BN buf | torch.save MB | "
              "paper MB | paper − torch.save |\n|---|---:|---:|---:|---:|---:|---:|")
        for name, want, mb in cells:
            row = next(r for r in rows if all(r["parameters"][k] == v for k, v in want.items()))
            saved = state_dict_bytes(archc.analyze(args[0], **fixed, **want)) / 1e6
            print(f"| {name} | {row['params']:,} | {row['size_mb']:.3f} | "
                  f"{row['size_mb_with_buffers']:.3f} | {saved:.3f} | {mb} | {mb - saved:+.3f} |")
        print()


if __name__ == "__main__":
    main()
