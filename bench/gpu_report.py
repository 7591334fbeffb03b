"""The report of bench/gpu.sh: every number it measured, in one Markdown file.

    python bench/gpu_report.py WORK OUT

WORK holds what gpu.sh wrote (speed_<row>.json of bench/train_speed.py, run-fast/ and
run-paper/ of `archc train`); OUT receives report.md and the raw files behind it (at most 8
files in all, with gpu.sh's log.txt).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET = 90.5          # SE-SqueezeNext-10-1.0x, seed 000 Table V: 90.48 %
ROWS = ("jax", "jax_scan", "eager", "channels_last", "compile")


def speed(work: Path) -> tuple[str, dict | None]:
    from train_speed import header, table   # bench/train_speed.py's own report format
    env, rows = None, []
    for key in ROWS:
        f = work / f"speed_{key}.json"
        if f.exists():
            d = json.loads(f.read_text())
            env = env or d["env"]
            rows += d["rows"]
        else:
            rows.append({"key": key, "name": key, "error": "not run or did not finish"})
    if env is None:
        return "## (a) Training-step throughput\n\nno row finished\n", None
    return (f"## (a) Training-step throughput\n\n{header(env)}\n{table(env, rows)}\n",
            {"env": env, "rows": rows})


def run(work: Path, name: str, title: str) -> str:
    d = work / f"run-{name}"
    metrics = d / "metrics.jsonl"
    if not metrics.exists():
        return f"## {title}\n\nno epoch finished\n"
    hist = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    recipe = json.loads((d / "run.json").read_text())["recipe"]
    out = [f"## {title}", "",
           f"recipe: {json.dumps(recipe, sort_keys=True)}", "",
           "| epoch | test acc % | train acc % | epoch s (training) | training s so far | "
           "images/s |", "|---:|---:|---:|---:|---:|---:|"]
    total, reached = 0.0, None
    for h in hist:
        total += h["epoch_seconds"]
        if reached is None and h["test_acc"] >= TARGET:
            reached = (h["epoch"], total)
        out.append(f"| {h['epoch']} | {h['test_acc']:.2f} | {h['train_acc']:.2f} | "
                   f"{h['epoch_seconds']:.2f} | {total:.1f} | {h['images_per_second']:,.0f} |")
    compile_s = sum(h["compile_seconds"] for h in hist)
    best = max(hist, key=lambda h: h["test_acc"])
    out += ["", f"- epochs finished: {len(hist)} of {recipe['epochs']}; best test accuracy "
                f"{best['test_acc']:.2f} % (epoch {best['epoch']}), last {hist[-1]['test_acc']:.2f} %",
            f"- training time (sum of epoch times, evaluation and checkpoints excluded): "
            f"{total:.1f} s; first-step compile {compile_s:.1f} s apart",
            f"- {TARGET} %: " + (f"reached after epoch {reached[0]}, {reached[1]:.1f} s of "
                                 "training" if reached else "not reached"), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    work, out = (Path(a) for a in (argv or sys.argv[1:]))
    text, raw = speed(work)
    parts = ["# bench/gpu.sh", "",
             "CIFAR-10 here is the JPEG copy in ../shared/data/cifar10 (quality 75): accuracies "
             "are close to, not the same as, accuracies on the original batches.", "", text,
             run(work, "fast", "(b) SE-SqueezeNext-10-1.0x, --recipe fast"),
             run(work, "paper", "(c) SE-SqueezeNext-10-1.0x, the papers' recipe (bf16)")]
    (out / "report.md").write_text("\n".join(parts))
    if raw:
        (out / "speed.json").write_text(json.dumps(raw, indent=1))
    for name in ("fast", "paper"):
        for f, dst in (("metrics.jsonl", f"{name}_metrics.jsonl"),
                       ("summary.json", f"{name}_summary.json")):
            src = work / f"run-{name}" / f
            if src.exists() and not (name == "paper" and f == "summary.json"):
                shutil.copy(src, out / dst)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
