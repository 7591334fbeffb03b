"""Training-step throughput, JAX vs PyTorch: one network, batch size and precision, one run.

Each row times ONE training step -- gather a batch from device-resident uint8 images by a
device-side permutation, random crop (4-pixel zero padding) + flip, normalise, forward with
batch norm in train mode (and dropout, if the network has any), cross-entropy, backward,
SGD with Nesterov momentum 0.9 and weight decay 5e-4 -- and reports images/s.

Rows:  jax (jit, donated state)  archc.training.jax_loop.Trainer's own train_step, as-is
       jax_scan                  the same with runs of identical blocks applied by one
                                 lax.scan (Trainer(scan=True), backends/_jax_scan.py)
       torch eager               compile_module(net), NCHW contiguous
       torch channels_last       the same module and input in channels_last (NHWC) layout
       torch.compile             torch.compile(model) (channels_last), --compile-mode

Fairness choices:
  - Data (synthetic, uint8 NHWC) and the epoch permutation live on the device for both
    frameworks; augmentation and normalisation are device ops inside the step. Known trap:
    a host-to-device copy per batch dominates the step time of a network this small.
  - JAX runs its jitted step in a Python loop, as `archc train` does. Known trap: lax.scan
    over the steps is slower than a Python loop of one jitted, donated step.
  - bf16 is mixed precision on both sides: fp32 master weights, optimizer state and batch-norm
    statistics, bf16 compute (JAX casts the parameters inside the step; torch uses autocast in
    every torch row), fp32 loss. fp32 is true fp32: TF32 is off in torch and JAX's default
    matmul/conv precision is set to "highest", so MFU is against the fp32 (non-tensor) peak.
  - torch.backends.cudnn.benchmark = True (XLA autotunes its convolutions too).
  - JAX's GPU memory preallocation is off (XLA_PYTHON_CLIENT_PREALLOCATE=false), or it would
    take 75% of the GPU before torch runs.
  - Warm-up (compilation, autotuning) is timed apart: the first step (JAX, eager torch) or the
    first 3 steps (torch.compile). Steady state: the median over --repeats windows of --steps
    steps each, with a device sync at each window's ends only. JAX's persistent compilation
    cache is not enabled here (unless $JAX_COMPILATION_CACHE_DIR is set), but inductor's
    on-disk cache is on by default: a repeated run's torch.compile warm-up is much shorter
    (TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 for a cold one).
  - Both sides also sum the batch loss and count correct predictions on the device, as
    jax_loop.s step does for its epoch metrics.
  - Model FLOPs per training step = 3 x forward = 6 x MACs per image (archc's analysis).

    python bench/train_speed.py                                        # sqnxt, batch 128, fp32
    python bench/train_speed.py --precision bf16 --batch 512           # on a GPU (H100/H200)
    python bench/train_speed.py sqnxt -D stages=[1,1,1,1] -D width=0.5 --batch 32 --steps 5
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import traceback

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before jax is imported

import numpy as np  # noqa: E402

import archc  # noqa: E402
from archc.training.data import ImageData  # noqa: E402
from archc.training.recipe import Recipe, steps_per_epoch  # noqa: E402
from archc.compiler import ArchError, parse_define  # noqa: E402

VARIANTS = ("jax", "jax_scan", "eager", "channels_last", "compile")
# Dense peak TFLOP/s by device-name fragment (first match wins): bf16 tensor cores, fp32 non-tensor.
PEAKS = (("H100 PCIe", {"bf16": 756.0, "fp32": 51.0}), ("H100", {"bf16": 989.0, "fp32": 67.0}),
         ("H200", {"bf16": 989.0, "fp32": 67.0}))


def measure(step, sync, warmup: int, steps: int, repeats: int) -> dict:
    """Time `warmup` first steps together, then `repeats` windows of `steps` steps."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm = time.perf_counter() - t0
    windows = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        windows.append((time.perf_counter() - t0) / steps)
    return {"warmup_s": warm, "s_per_step": statistics.median(windows), "windows": windows}


# ---- the rows: the training loops of `archc train` themselves ------------------------------
def synthetic_data(images, labels, batch: int) -> ImageData:
    return ImageData(images, labels, images[:batch], labels[:batch],
                     tuple(str(c) for c in range(10)), "synthetic")


def timed(loop, spe: int, warmup: int, args) -> dict:
    """Time loop.step(), starting a new epoch (new permutation) every `spe` steps, as
    run_dir.run_epochs does; loop.train_metrics() waits for the device."""
    count = [0]
    loop.begin_epoch(1)

    def step():
        if count[0] and count[0] % spe == 0:
            loop.begin_epoch(count[0] // spe + 1)
        loop.step()
        count[0] += 1

    return measure(step, loop.train_metrics, warmup, args.steps, args.repeats)


def run_jax(net, recipe, images, labels, args, scan: bool = False) -> dict:
    import jax
    from archc.training.jax_loop import JaxLoop, Trainer
    if args.precision == "fp32":
        jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 on GPU
    spe = steps_per_epoch(recipe, len(labels))
    trainer = Trainer(net, recipe, spe, n_test=recipe.batch_size, scan=scan)
    loop = JaxLoop(trainer, None, trainer.init_state, synthetic_data(images, labels, args.batch))
    return timed(loop, spe, 1, args)


def run_jax_scan(net, recipe, images, labels, args) -> dict:
    return run_jax(net, recipe, images, labels, args, scan=True)


def torch_row(net, recipe, images, labels, args, channels_last: bool,
              compile_mode: str | None) -> dict:
    from archc.training.torch_loop import TorchLoop
    spe = steps_per_epoch(recipe, len(labels))
    loop = TorchLoop(net, synthetic_data(images, labels, args.batch), recipe, spe,
                     device=args.device, channels_last=channels_last, compile_mode=compile_mode)
    return timed(loop, spe, 3 if compile_mode else 1, args)


def run_eager(net, recipe, images, labels, args):
    return torch_row(net, recipe, images, labels, args, channels_last=False, compile_mode=None)


def run_channels_last(net, recipe, images, labels, args):
    return torch_row(net, recipe, images, labels, args, channels_last=True, compile_mode=None)


def run_compile(net, recipe, images, labels, args):
    return torch_row(net, recipe, images, labels, args, channels_last=True,
                     compile_mode=args.compile_mode)


ROWS = {"jax": ("jax (jit, donated state)", run_jax),
        "jax_scan": ("jax, runs of identical blocks scanned", run_jax_scan),
        "eager": ("torch eager", run_eager),
        "channels_last": ("torch channels_last", run_channels_last),
        "compile": ("torch.compile", run_compile)}


# ---- report -------------------------------------------------------------------------------
def environment(args, net, macs: int, params: int) -> dict:
    import flax
    import jax
    import torch
    tdev = torch.cuda.get_device_name() if args.device == "cuda" else \
        (platform.processor() or platform.machine() or "cpu")
    jdev = jax.devices()[0]
    peak = args.peak_tflops
    if peak is None:
        for frag, p in PEAKS:
            if frag in (tdev if args.device == "cuda" else "") or frag in jdev.device_kind:
                peak = p[args.precision]
                break
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "jax_device": f"{jdev.platform}: {jdev.device_kind}",
            "torch_device": f"{args.device}: {tdev}", "cpus": os.cpu_count(),
            "versions": {"jax": jax.__version__, "flax": flax.__version__,
                         "torch": torch.__version__, "python": platform.python_version()},
            "network": net.name, "target": args.target, "defines": args.define or [],
            "batch": args.batch, "precision": args.precision, "images": args.images,
            "macs_per_image": macs, "params": params, "peak_tflops": peak,
            "steps": args.steps, "repeats": args.repeats, "compile_mode": args.compile_mode}


def table(env: dict, rows: list) -> str:
    jax_ips = next((r["images_per_s"] for r in rows if r["key"] == "jax" and "error" not in r),
                   None)
    out = ["| variant | warm-up s | s/step | images/s | TFLOP/s | MFU | JAX / row |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['name']} | - | failed: {r['error']} | - | - | - | - |")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        ratio = f"{jax_ips / r['images_per_s']:.2f}" if jax_ips else "-"
        out.append(f"| {r['name']} | {r['warmup_s']:.2f} | {r['s_per_step'] * 1e3:.2f} ms | "
                   f"{r['images_per_s']:,.0f} | {r['tflops']:.3f} | {mfu} | {ratio} |")
    return "\n".join(out)


def header(env: dict) -> str:
    v = env["versions"]
    d = " ".join(f"-D {x}" for x in env["defines"])
    return "\n".join([
        f"# Training-step throughput: {env['network']} ({env['target']}{' ' + d if d else ''})",
        "",
        f"- date: {env['date']}",
        f"- devices: jax {env['jax_device']}; torch {env['torch_device']}; {env['cpus']} CPUs",
        f"- versions: jax {v['jax']}, flax {v['flax']}, torch {v['torch']}, "
        f"python {v['python']}",
        f"- batch {env['batch']}, {env['precision']}, {env['images']} synthetic images on the "
        f"device; median of {env['repeats']} windows of {env['steps']} steps",
        f"- {env['macs_per_image']:,} MACs/image, {env['params']:,} params; model FLOPs of a "
        f"training step = 3 x forward = 6 x MACs per image",
        f"- peak: {env['peak_tflops'] or 'unknown'} TFLOP/s "
        f"({'MFU = achieved / peak' if env['peak_tflops'] else 'no MFU: pass --peak-tflops'})",
        *(["- WARNING: jax and torch run on different kinds of device"]
          if env["jax_device"].split(":")[0] != env["torch_device"].split(":")[0].replace(
              "cuda", "gpu") else []),
        ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("target", nargs="?", default="sqnxt", help="bundled name or .arch file")
    p.add_argument("-D", dest="define", action="append", metavar="KEY=VALUE")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--steps", type=int, default=30, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=3, help="timed windows (median reported)")
    p.add_argument("--images", type=int, default=50000, help="synthetic training-set size")
    p.add_argument("--only", default=",".join(VARIANTS), help="comma list of " + ",".join(VARIANTS))
    p.add_argument("--device", choices=("cpu", "cuda"), help="torch device (default: cuda if any)")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode: default, reduce-overhead, max-autotune, ...")
    p.add_argument("--peak-tflops", type=float, help="peak TFLOP/s for MFU (else autodetected)")
    p.add_argument("--json", help="also write the raw numbers to this file")
    args = p.parse_args(argv)
    import torch
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    only = [o.strip() for o in args.only.split(",") if o.strip()]
    if not only or any(o not in VARIANTS for o in only):
        p.error(f"--only takes a comma list of {', '.join(VARIANTS)}")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        params = {name: value for name, value, _ in map(parse_define, args.define or [])}
        net = archc.load(args.target, **params)
        recipe = Recipe(batch_size=args.batch, precision=args.precision)
    except ArchError as err:
        sys.stderr.write(err.format() + "\n")
        return 2
    totals = archc.analyze(net).totals
    c, h, w = net.input_shape
    n = max(args.batch, min(args.images, (512 << 20) // (c * h * w)))  # at most 512 MiB
    args.images = n
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    labels = rng.integers(0, net.output_shape[0], n).astype(np.int32)
    env = environment(args, net, totals["macs"], totals["params"])
    print(header(env), flush=True)

    rows = []
    for key in only:
        name, fn = ROWS[key]
        if key == "compile" and args.compile_mode != "default":
            name += f" ({args.compile_mode})"
        print(f"running {name} ...", file=sys.stderr, flush=True)
        row = {"key": key, "name": name}
        try:
            row.update(fn(net, recipe, images, labels, args))
            row["images_per_s"] = args.batch / row["s_per_step"]
            row["tflops"] = 6 * totals["macs"] * row["images_per_s"] / 1e12
            row["mfu"] = row["tflops"] / env["peak_tflops"] if env["peak_tflops"] else None
        except Exception as exc:  # noqa: BLE001 - a failed variant is a row, not a crash
            traceback.print_exc(file=sys.stderr)
            msg = (str(exc).strip().splitlines() or [""])[0][:160]
            row["error"] = f"{type(exc).__name__}: {msg}".replace("|", "/")
        rows.append(row)
        if args.device == "cuda":
            torch.cuda.empty_cache()  # give the cached blocks back before the next row
    print(table(env, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
