"""Compile time of `archc train`'s first JAX train step, where it goes, and its HLO size.

    python bench/compile_time.py                                   # sqnxt and the Table V net
    python bench/compile_time.py se_sqnxt -D stages=[1,2,4,1] --precision bf16
    python bench/compile_time.py --before main                     # and a git revision

For each network and setting, a fresh interpreter builds jax_loop.Trainer (the train and eval
steps `archc train` runs) on synthetic device-resident data and times, for the train step,

    trace+lower  jax.jit(train_step).lower(...)   Python tracing and StableHLO emission
    compile      .compile()                        XLA's optimisation and code generation

and reports the StableHLO size of the lowered program (lines) and the instruction count of
the optimised HLO, the eval step's lower+compile time, and the median time of a train step
afterwards (so a faster compile is not paid for by a slower step). Rows: every block
unrolled (the default) and runs of identical blocks scanned (backends/_jax_scan.py). The
persistent compilation cache is off. Process CPU time is reported too: on a machine shared
with other jobs it is the better estimate of the time on an idle one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codegen_lines import export  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ONE = r"""
import json, re, statistics, sys, time
import numpy as np
import jax, jax.numpy as jnp
import archc
from archc.training.data import ImageData
from archc.training.recipe import Recipe
from archc.training import jax_loop
from archc.compiler import parse_define

args = json.loads(sys.argv[1])
params = {k: v for k, v, _ in map(parse_define, args["define"])}
net = archc.load(args["name"], **params)
recipe = Recipe(batch_size=args["batch"], precision=args["precision"], eval_batch_size=500)
n = args["batch"] * 4
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
labels = rng.integers(0, 10, n).astype(np.int32)
data = ImageData(images, labels, images[:500], labels[:500], tuple("0123456789"), "synthetic")
kw = {} if args["scan"] is None else {"scan": args["scan"]}
trainer = jax_loop.Trainer(net, recipe, 4, 500, **kw)
loop = jax_loop.JaxLoop(trainer, None, trainer.init_state, data)
loop.begin_epoch(1)
call = (loop.state, loop.acc, trainer.rest, loop.images, loop.labels, loop.order)

def clock():
    return time.perf_counter(), time.process_time()

t0 = clock()
lowered = trainer.train_step.lower(*call)
t1 = clock()
compiled = lowered.compile()
t2 = clock()
hlo_lines = len(lowered.as_text().splitlines())
hlo = compiled.as_text()
ops = sum(1 for line in hlo.splitlines() if " = " in line)
# the entry computation's fusions (each one loop XLA:CPU generates code for), by the part of
# the step they come from: the forward pass (jvp), the backward pass (transpose(jvp)), the
# rest (optimizer, augmentation, loss bookkeeping)
parts = {"fwd": 0, "bwd": 0, "rest": 0}
for line in hlo[hlo.index("ENTRY"):].splitlines():
    if " fusion(" not in line:
        continue
    m = re.search(r'op_name="([^"]*)"', line)
    name = m.group(1) if m else ""
    parts["bwd" if "transpose(jvp" in name else "fwd" if "/jvp(" in name else "rest"] += 1
x, y, mask, _ = loop.test
t3 = clock()
trainer.eval_step.lower(loop.state, trainer.zeros(), trainer.rest, x, y, mask, 0).compile()
t4 = clock()
step = compiled
state, acc = loop.state, loop.acc
times, cpu = [], []
for i in range(args["steps"]):
    s, c = clock()
    state, acc = step(state, acc, trainer.rest, loop.images, loop.labels, loop.order)
    jax.block_until_ready(acc)
    times.append(time.perf_counter() - s)
    cpu.append(time.process_time() - c)
print(json.dumps({"lower_s": t1[0] - t0[0], "lower_cpu": t1[1] - t0[1],
                  "compile_s": t2[0] - t1[0], "compile_cpu": t2[1] - t1[1],
                  "stablehlo_lines": hlo_lines, "hlo_ops": ops,
                  "fusions": parts,
                  "eval_s": t4[0] - t3[0], "eval_cpu": t4[1] - t3[1],
                  "step_s": statistics.median(times[1:] or times),
                  "step_cpu": statistics.median(cpu[1:] or cpu)}))
"""
DEFAULT = [("sqnxt", []), ("se_sqnxt", ["stages=[1,2,8,1]"])]


def fusions(r: dict) -> str:
    f = r.get("fusions")   # absent in a --before revision's own script
    return f"{f['fwd']} / {f['bwd']} / {f['rest']}" if f else "-"


def run(name, define, scan, args, pythonpath=None) -> dict:
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.setdefault("JAX_PLATFORMS", "cpu")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    spec = {"name": name, "define": define, "batch": args.batch, "precision": args.precision,
            "scan": scan, "steps": args.steps}
    proc = subprocess.run([sys.executable, "-c", ONE, json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=pythonpath or ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", help="bundled name or .arch file (default: sqnxt and "
                    "se_sqnxt -D stages=[1,2,8,1])")
    ap.add_argument("-D", dest="define", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--steps", type=int, default=3, help="train steps timed after compiling")
    ap.add_argument("--before", metavar="REV", help="also measure a git revision")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    nets = [(args.target, args.define)] if args.target else DEFAULT
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        before = export(args.before, Path(tmp)) if args.before else None
        for name, define in nets:
            label = name + "".join(f" -D {d}" for d in define)
            configs = [("unrolled", False, None), ("scan", True, None)]
            if before:
                configs.insert(0, (f"before ({args.before})", None, before))
            for what, scan, path in configs:
                r = run(name, define, scan, args, path)
                rows.append({"network": label, "config": what, **r})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"batch {args.batch}, {args.precision}\n")
    print("| network | config | trace+lower s (cpu) | compile s (cpu) | StableHLO lines | "
          "optimised HLO ops | fusions fwd / bwd / rest | eval step lower+compile s (cpu) | "
          "train step s (cpu) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['network']} | {r['config']} | failed: {r['error']} |||||||")
            continue
        print(f"| {r['network']} | {r['config']} | {r['lower_s']:.1f} ({r['lower_cpu']:.1f}) | "
              f"{r['compile_s']:.1f} ({r['compile_cpu']:.1f}) | {r['stablehlo_lines']:,} | "
              f"{r['hlo_ops']:,} | {fusions(r)} | {r['eval_s']:.1f} ({r['eval_cpu']:.1f}) | "
              f"{r['step_s']:.2f} ({r['step_cpu']:.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
