"""Learning speed of the fast recipe against the papers' recipe, on a subset, on any device.

    python bench/recipe_compare.py --data ../shared/data/cifar10/cifar10-jpeg.tar.xz
    python bench/recipe_compare.py --data D se_sqnxt -D width=0.5 --epochs 8 \\
        --train-per-class 500 --test-per-class 200 --precision fp32 --json out.json

Trains the same network on the same class-balanced subset with `archc.train` (the JAX loop of
`archc train`), once per row, for the same number of epochs:

    paper          the papers' recipe (batch 128, step decay scaled to the run's length)
    fast           --recipe fast (batch 512, lr 0.4, linear warm-up and decay, label
                   smoothing 0.2, weight decay on kernels only, test-time flip)
    fast, batch 128  the fast recipe at the papers' batch size and learning rate (lr 0.1,
                   warm-up scaled), so the same number of steps as `paper`

and prints the test accuracy after every epoch, the steps taken and the training time.
--precision sets both recipes' precision (the fast recipe's bf16 is emulated, and slow, on a
CPU without bf16 units; it changes what is learnt per step very little).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import archc
from archc.training.recipe import Recipe, preset
from archc.compiler import parse_define


def rows(args) -> list:
    common = {"epochs": args.epochs, "precision": args.precision, "seed": args.seed}
    fast = preset("fast", **common)
    small_batch = preset("fast", **common, batch_size=128, lr=0.1,
                         warmup_epochs=fast.warmup_epochs)
    return [("paper", Recipe(**common)), ("fast", fast), ("fast, batch 128", small_batch)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default="se_sqnxt")
    ap.add_argument("-D", dest="define", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--train-per-class", type=int, default=500)
    ap.add_argument("--test-per-class", type=int, default=200)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="comma list of row numbers (0, 1, 2) to run")
    ap.add_argument("--json", help="also write every metric here")
    args = ap.parse_args(argv)
    params = {k: v for k, v, _ in map(parse_define, args.define)}
    net = archc.load(args.target, **params)
    chosen = rows(args)
    if args.only:
        chosen = [chosen[int(i)] for i in args.only.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, recipe) in enumerate(chosen):
            out = os.path.join(tmp, f"run{i}")
            summary = archc.train(net, args.data, recipe, out=out,
                                  train_per_class=args.train_per_class,
                                  test_per_class=args.test_per_class, progress=False,
                                  log=lambda *a: print(*a, file=sys.stderr, flush=True))
            history = [json.loads(x) for x in Path(out, "metrics.jsonl").read_text().splitlines()]
            results.append({"row": name, "recipe": recipe.to_dict(), "history": history,
                            "best": summary["best_test_acc"], "last": summary["last_test_acc"]})
    import jax
    env = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
           "cpus": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
           "load_average": os.getloadavg(), "network": args.target, "defines": args.define,
           "train_per_class": args.train_per_class, "test_per_class": args.test_per_class}
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=1))
    print(f"{args.target} {' '.join('-D ' + d for d in args.define)}, "
          f"{args.train_per_class * 10} training / {args.test_per_class * 10} test images, "
          f"{args.precision}, {env['device']}, {env['date']}\n")
    head = "| epoch | " + " | ".join(r["row"] for r in results) + " |"
    print(head + "\n" + "|---" * (head.count("|") - 1) + "|")
    for e in range(args.epochs):
        cells = []
        for r in results:
            h = r["history"][e]
            cells.append(f"{h['test_acc']:.1f} % (step {h['step']})")
        print(f"| {e + 1} | " + " | ".join(cells) + " |")
    print("| train time | " + " | ".join(
        f"{sum(h['epoch_seconds'] for h in r['history']):.0f} s" for r in results) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
