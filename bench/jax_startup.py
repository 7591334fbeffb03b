"""JAX start-up: seconds to build every bundled network's Flax NNX module, in archc and as a
user of the generated file builds it.

    python bench/jax_startup.py                       # this checkout
    python bench/jax_startup.py --before main         # and a git revision, side by side
    python bench/jax_startup.py --only sqnxt,vgg --runs 3

Each network is measured in a fresh interpreter (so no network profits from programs XLA
compiled for another), after `import jax` and one tiny jitted call have warmed the runtime:

    load         archc.load(name): parse, elaborate, analyse
    instantiate  jax_backend.compile_module(net): generate the source, exec it, build the
                 module with its initial values on the device (what archc.build_module and
                 archc train do), until every array is ready
    file         the file `archc build --backend jax` writes, in another fresh interpreter
                 that never imports archc: `from gen import Net` and `Net(rngs=nnx.Rngs(0))`
                 eagerly, until every array is ready (import of the file included)
    torch file   the same for the torch file `archc build` writes: after `import torch`,
                 `from gen_torch import Net` and `Net()` (the file's import included)

The persistent compilation cache is off (a user's first call has none). The median of
--runs fresh processes is reported. Targets: instantiate <= 1 s for every network; file
<= 2 s for se_sqnxt and <= 3 s for every network but VGG-16; torch file <= 0.5 s.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codegen_lines import export  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ONE = """
import json, sys, time
import jax, jax.numpy as jnp
jax.jit(lambda x: x + 1)(jnp.zeros(1)).block_until_ready()
import archc
from archc.backends import jax_backend
from flax import nnx
t0 = time.perf_counter()
net = archc.load(sys.argv[1])
t1, c1 = time.perf_counter(), time.process_time()
model = jax_backend.compile_module(net)
jax.block_until_ready(nnx.state(model))
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"load": t1 - t0, "instantiate": t2 - t1, "cpu": c2 - c1}))
"""
# the generated file alone, as a user constructs it (argv: the class name)
FILE = """
import json, sys, time
import jax, jax.numpy as jnp
jax.jit(lambda x: x + 1)(jnp.zeros(1)).block_until_ready()
from flax import nnx
t0 = time.perf_counter()
import gen
model = getattr(gen, sys.argv[1])(rngs=nnx.Rngs(0))
jax.block_until_ready(nnx.state(model))
assert "archc" not in sys.modules
print(json.dumps({"file": time.perf_counter() - t0}))
"""
# the torch file, as a user who has imported torch constructs it
TORCH_FILE = """
import json, sys, time
import torch
t0 = time.perf_counter()
import gen_torch
model = getattr(gen_torch, sys.argv[1])()
assert "archc" not in sys.modules
print(json.dumps({"torch file": time.perf_counter() - t0}))
"""
WRITE = """
import sys
import archc
from archc.backends.lowering import class_name
net = archc.load(sys.argv[1])
open(sys.argv[2], "w").write(archc.build_source(sys.argv[1], backend="jax"))
open(sys.argv[3], "w").write(archc.build_source(sys.argv[1], backend="torch"))
print(class_name(net))
"""


def networks(pythonpath: str | None) -> list:
    env = _env(pythonpath)
    out = subprocess.run([sys.executable, "-c", "import json; from archc.compiler import "
                          "bundled_networks; print(json.dumps(bundled_networks()))"],
                         capture_output=True, text=True, env=env, check=True,
                         cwd=pythonpath or ROOT)
    return json.loads(out.stdout)


def _env(pythonpath: str | None) -> dict:
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _run(script: str, args: list, pythonpath: str | None, cwd) -> dict:
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, env=_env(pythonpath), cwd=cwd)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, pythonpath: str | None, runs: int) -> dict:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        cls = subprocess.run([sys.executable, "-c", WRITE, name, str(Path(tmp, "gen.py")),
                              str(Path(tmp, "gen_torch.py"))],
                             capture_output=True, text=True, env=_env(pythonpath),
                             cwd=pythonpath or ROOT)
        for _ in range(runs):
            t = _run(ONE, [name], pythonpath, pythonpath or ROOT)
            if "error" in t:
                return t
            if cls.returncode == 0:
                t.update(_run(FILE, [cls.stdout.strip()], tmp, tmp))
                t.update(_run(TORCH_FILE, [cls.stdout.strip()], tmp, tmp))
            else:
                t["file_error"] = cls.stderr.strip().splitlines()[-1][:120]
            times.append(t)
    out = {k: statistics.median(t[k] for t in times) for k in ("load", "instantiate", "cpu")}
    for key in ("file", "torch file"):
        files = [t[key] for t in times if key in t]
        out[key] = statistics.median(files) if len(files) == len(times) else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", help="also measure a git revision")
    ap.add_argument("--only", help="comma list of networks (default: every bundled one)")
    ap.add_argument("--runs", type=int, default=1, help="fresh processes per network (median)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else networks(None)
    results = {"now": {}, "before": {}}
    with tempfile.TemporaryDirectory() as tmp:
        before_path = export(args.before, Path(tmp)) if args.before else None
        for name in names:
            results["now"][name] = measure(name, None, args.runs)
            if before_path:
                results["before"][name] = measure(name, before_path, args.runs)
            print(name, results["now"][name], results["before"].get(name, ""), file=sys.stderr,
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))

    def cell(r, key):
        return "failed" if "error" in r or r.get(key) is None else f"{r[key]:.2f}"
    if args.before:
        print(f"| network | load s | instantiate s now | file s before ({args.before}) "
              "| file s now | torch file s now |\n|---|---:|---:|---:|---:|---:|")
    else:
        print("| network | load s | instantiate s | file s | torch file s |\n"
              "|---|---:|---:|---:|---:|")
    for name in names:
        now = results["now"][name]
        row = f"| {name} | {cell(now, 'load')} | {cell(now, 'instantiate')} |"
        if args.before:
            row += f" {cell(results['before'][name], 'file')} |"
        print(row + f" {cell(now, 'file')} | {cell(now, 'torch file')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
