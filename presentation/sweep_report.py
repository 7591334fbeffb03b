"""A sweep's output: the table (text, Markdown, CSV, JSON), finished training runs joined to
its rows, and the Pareto plot (matplotlib, imported only for --plot)."""
from __future__ import annotations

import csv
import io
import json
import os

from archc.compiler._values import show, to_json
from archc import _checks as checks
from archc.compiler.errors import ArchError
from .sweep import METRICS, Sweep, pareto_front

MAX_RUN_DEPTH = 3   # --runs DIR: run folders at most this deep below DIR


# ---- finished `archc train` runs -----------------------------------------------------------
def load_runs(folder: str, log=None) -> list[dict]:
    """Finished runs (run.json and summary.json, see training/run_dir.py) in `folder`
    or in its sub-folders; a run without summary.json has not finished and is left out."""
    if not os.path.isdir(folder):
        raise ArchError(f"--runs: '{folder}' is not a folder")
    runs = []
    base = folder.rstrip(os.sep).count(os.sep)
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if root.count(os.sep) - base >= MAX_RUN_DEPTH:
            dirs[:] = []
        if "run.json" not in files:
            continue
        dirs[:] = [d for d in dirs if d != "checkpoints"]
        if "summary.json" not in files:
            if log:
                log(f"note: {root} has not finished (no summary.json); left out")
            continue
        run_path, summary_path = os.path.join(root, "run.json"), os.path.join(root, "summary.json")
        run, summary = checks.run_json(run_path), checks.read_json(summary_path)
        acc = {}
        for key in ("best_test_acc", "last_test_acc"):
            acc[key] = checks.finite(checks.field(summary, key, (int, float), summary_path),
                                     f"{summary_path}: field '{key}'", 0, 100)
        runs.append({"path": root, "network": checks.field(run, "network", str, run_path),
                     "params": checks.field(run, "params", dict, run_path),
                     "best": float(acc["best_test_acc"]), "last": float(acc["last_test_acc"]),
                     "param_count": summary.get("params")})
    if not runs:
        raise ArchError(f"--runs: no finished archc train run in '{folder}'",
                        hint="a run folder holds run.json and, once finished, summary.json")
    return runs


def attach_runs(sweep: Sweep, runs: list[dict], acc: str = "best") -> list[dict]:
    """Give each row the mean test accuracy (`best` or `last`) of the runs of the same network
    with the same parameter values, and their count; returns the runs no row matched."""
    used = set()
    for row in sweep.rows:
        want = {k: to_json(v) for k, v in row["network_params"].items()}
        hits = [i for i, r in enumerate(runs)
                if r["network"] == sweep.network and r["params"] == want]
        used.update(hits)
        row["runs"] = len(hits)
        row["acc"] = (sum(runs[i][acc] for i in hits) / len(hits)) if hits else None
    return [r for i, r in enumerate(runs) if i not in used]


# ---- tables ----------------------------------------------------------------------------------
def metric_columns(sweep: Sweep) -> list[str]:
    cols = ["params", "macs", "size_mb", "size_mb_with_buffers", "peak_activations"]
    if sweep.rules:
        cols += ["score", "storage_mb"]
    if any("acc" in r for r in sweep.rows):
        cols += ["acc", "runs"]
    return cols


TITLES = {**{k: v[0] for k, v in METRICS.items()}, "size_mb_with_buffers": "size MB +BN buf",
          "runs": "runs"}


def _cell(key: str, v) -> str:
    if v is None:
        return "-"
    if key in ("size_mb", "size_mb_with_buffers", "storage_mb"):
        return f"{v:.3f}"
    if key == "score":
        return f"{v:.5f}"
    if key == "acc":
        return f"{v:.2f}"
    return f"{v:,}"


def front_of(sweep: Sweep, x: str, y: str) -> list[int]:
    pts = [(r.get(x), r.get(y)) for r in sweep.rows]
    return pareto_front(pts, (METRICS[x][1], METRICS[y][1]))


def render(sweep: Sweep, fmt: str, front: list[int], axes: tuple) -> str:
    names = [g.name for g in sweep.grids]
    cols = metric_columns(sweep)
    on_front = set(front)
    if fmt == "json":
        return json.dumps({
            "network": sweep.network, "file": sweep.file,
            "grid": {g.name: [to_json(v) for v in g.values] for g in sweep.grids},
            "fixed": {k: to_json(v) for k, v in sweep.fixed.items()},
            "precision_bits": sweep.bits, "bitops_rules": sweep.rules,
            "pareto": {"x": axes[0], "y": axes[1], "rows": front},
            "seconds": sweep.seconds,
            "rows": [{"parameters": {k: to_json(v) for k, v in r["values"].items()},
                      **{c: r.get(c) for c in cols}, "pareto": i in on_front}
                     for i, r in enumerate(sweep.rows)]}, indent=1) + "\n"
    head = names + [TITLES[c] for c in cols] + ["Pareto"]
    body = [[show(r["values"][n]) for n in names]
            + [_cell(c, r.get(c)) for c in cols] + ["*" if i in on_front else ""]
            for i, r in enumerate(sweep.rows)]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names + cols + ["pareto"])
        for i, r in enumerate(sweep.rows):
            w.writerow([show(r["values"][n]) for n in names]
                       + ["" if r.get(c) is None else r.get(c) for c in cols]
                       + [int(i in on_front)])
        return buf.getvalue()
    numeric = [False] * len(names) + [True] * len(cols) + [False]
    fixed = ", ".join(f"{k}={show(v)}" for k, v in sweep.fixed.items())
    title = (f"{sweep.network} ({sweep.file}): {len(sweep.rows)} combinations"
             + (f", {fixed}" if fixed else "") + f"; size at {sweep.bits}-bit parameters; "
             f"Pareto: {TITLES[axes[0]]} vs {TITLES[axes[1]]}")
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
                 "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.rjust(w) if n else c.ljust(w)
                         for c, w, n in zip(cells, widths, numeric)).rstrip()

    out = [title, line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in body]
    return "\n".join(out) + "\n"


# ---- the plot --------------------------------------------------------------------------------
MAX_LABELS = 40   # --plot labels every combination up to this many, else the front only
PLOT_FORMATS = ("png", "svg", "pdf")   # --plot's format: its file name's extension


def check_plot_path(path: str) -> str:
    """The plot's format (from the extension), or an error before any work is done."""
    from archc._files import check_output_path
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise ArchError(f"--plot '{path}': the file name must end in "
                        + ", ".join("." + f for f in PLOT_FORMATS) + " (the plot's format)",
                        hint="e.g. --plot front.png")
    check_output_path(path)
    return ext


def plot(sweep: Sweep, path: str, x: str, y: str, front: list[int]) -> None:
    """y against x for every row, the Pareto front joined; every point labelled with its
    parameter values (only the front's when there are more than MAX_LABELS) (matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise ArchError("--plot needs matplotlib", hint="pip install matplotlib, or "
                        "pip install 'archc[data]'") from None
    from archc._files import write_atomic
    rows = [(i, r) for i, r in enumerate(sweep.rows) if r.get(x) is not None and r.get(y) is not None]
    if not rows:
        raise ArchError(f"--plot: no combination has both {x} and {y}",
                        hint="--plot-y acc needs --runs with runs of these combinations")
    fig = Figure(figsize=(8, 5.5), dpi=120)
    ax = fig.subplots()
    ax.scatter([r[x] for _, r in rows], [r[y] for _, r in rows], s=22, color="#94a3b8",
               label="combination", zorder=2)
    pts = sorted((sweep.rows[i][x], sweep.rows[i][y], i) for i in front)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="#d9480f", ms=6, lw=1.5,
            label="Pareto front", zorder=3)
    names = [g.name for g in sweep.grids]
    on_front = set(front)
    # every point says which combination it is (up to MAX_LABELS; beyond that the front only)
    labelled = [i for i, _ in rows] if len(rows) <= MAX_LABELS else [p[2] for p in pts]
    for i in labelled:
        r = sweep.rows[i]
        text = ", ".join(f"{n}={show(r['values'][n])}" for n in names)
        if "acc" in (x, y):
            text += f" ({r['runs']} run{'s' if r['runs'] != 1 else ''})"
        ax.annotate(text, (r[x], r[y]), textcoords="offset points", xytext=(5, 4),
                    fontsize=7 if i in on_front else 6,
                    color="#111827" if i in on_front else "#64748b")
    ax.set_xlabel(TITLES[x])
    ax.set_ylabel(TITLES[y])
    if x in ("params", "macs"):
        ax.set_xscale("log")
    if y in ("params", "macs"):
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.margins(x=0.12, y=0.08)   # room for the labels of the outermost points
    ax.legend(loc="best", fontsize=8)
    fixed = ", ".join(f"{k}={show(v)}" for k, v in sweep.fixed.items())
    ax.set_title(f"{sweep.network}: {TITLES[y]} vs {TITLES[x]}" + (f" ({fixed})" if fixed else ""),
                 fontsize=10)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format=check_plot_path(path)))
