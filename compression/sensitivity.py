"""Sensitivity analysis (seed 002, sec. 2, Fig. 2) and the per-layer sparsity it gives.

For each conv/linear layer alone, the smallest-|w| fraction of its weights is zeroed, for
fractions 10 % .. 90 % in steps of 5 %, and the accuracy is measured on a mini-train split
of the training set. The seed's rule: "set a unified lower bound of accuracy and prune the
maximum percentage parameters whose test accuracy exceed the bound for each layer". archc
reads it conservatively: a layer gets the largest fraction f such that every measured
fraction up to f keeps the accuracy >= the bound (a noisy dip stops it). The bound is given
directly, as a drop below the unpruned accuracy, or found for a global sparsity target (the
highest bound whose pruned fraction of all conv/linear weights reaches the target).
"""
from __future__ import annotations

import csv
import io
import json

import numpy as np
from archc.compiler import ArchError

from .masks import magnitude_mask

DEFAULT_FRACTIONS = tuple(round(0.10 + 0.05 * i, 2) for i in range(17))  # 0.10 .. 0.90


def curves(evaluate, flat: dict, layers: list, fractions, log=print) -> dict:
    """{layer: [accuracy at each fraction]}; evaluate(flat) -> accuracy (%)."""
    out = {}
    for i, layer in enumerate(layers):
        k = flat[layer]["kernel"]
        accs = []
        for f in fractions:
            trial = dict(flat)
            trial[layer] = {**flat[layer], "kernel": k * magnitude_mask(k, f)}
            accs.append(float(evaluate(trial)))
        out[layer] = accs
        log(f"  sensitivity {i + 1}/{len(layers)} {layer}: "
            + " ".join(f"{a:.1f}" for a in accs))
    return out


def fraction_at(accs, fractions, bound: float) -> float:
    """The largest fraction with every accuracy up to it >= bound (0 when the first fails)."""
    best = 0.0
    for f, a in zip(fractions, accs):
        if a < bound:
            break
        best = f
    return best


def choose(curve: dict, fractions, sizes: dict, dense: float, *, max_drop=None,
           min_accuracy=None, target=None) -> tuple[dict, float]:
    """({layer: fraction}, bound) by the seed's unified lower bound."""
    if target is not None:
        return _for_target(curve, fractions, sizes, target)
    bound = min_accuracy if min_accuracy is not None else dense - max_drop
    return {n: fraction_at(a, fractions, bound) for n, a in curve.items()}, bound


def overall(fractions_by_layer: dict, sizes: dict) -> float:
    total = sum(sizes.values())
    return sum(round(f * sizes[n]) for n, f in fractions_by_layer.items()) / total


def _for_target(curve, fractions, sizes, target):
    bounds = sorted({a for accs in curve.values() for a in accs}, reverse=True)
    for bound in bounds:  # highest bound first: the least damage that reaches the target
        chosen = {n: fraction_at(a, fractions, bound) for n, a in curve.items()}
        if overall(chosen, sizes) >= target:
            return chosen, bound
    top = overall({n: max(fractions) for n in curve}, sizes)
    raise ArchError(f"a sparsity of {target:.0%} is out of reach: pruning every layer by "
                    f"{max(fractions):.0%} gives {top:.1%}",
                    hint="lower --target-sparsity, or add larger --fractions")


def to_csv(curve: dict, fractions, dense: float) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["layer"] + [f"{f:.2f}" for f in fractions])
    w.writerow(["(unpruned)"] + [f"{dense:.4f}"] * len(fractions))
    for layer, accs in curve.items():
        w.writerow([layer] + [f"{a:.4f}" for a in accs])
    return buf.getvalue()


def to_json(curve: dict, fractions, dense: float, sizes: dict) -> str:
    return json.dumps({"fractions": list(fractions), "unpruned_accuracy": dense,
                       "weights": sizes, "accuracy": curve}, indent=1) + "\n"


def plot(curve: dict, fractions, dense: float, bound: float | None, title: str):
    """A Figure like Zeng et al.'s Fig. 2: accuracy against prune ratio, one line per layer.
    The legend names every layer (up to 40; beyond that a colour bar runs from the first layer
    to the last) and the unpruned accuracy and the bound."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 6), dpi=100)
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"]
    n = max(len(curve) - 1, 1)
    for i, (layer, accs) in enumerate(curve.items()):
        ax.plot(np.asarray(fractions) * 100, accs, "o-", ms=2.5, lw=1, color=cmap(i / n),
                label=layer)
    ax.axhline(dense, color="k", lw=1, ls="--", label=f"unpruned {dense:.2f}%")
    if bound is not None:
        ax.axhline(bound, color="r", lw=1, ls=":", label=f"bound {bound:.2f}%")
    ax.set_xlabel("pruned weights of the layer (%)")
    ax.set_ylabel("mini-train accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curve) <= 40:
        ax.legend(fontsize=6, ncol=2, loc="lower left", title="layer", title_fontsize=7)
    else:  # too many layers to name: a colour bar by position, the reference lines named
        lines = [ln for ln in ax.get_lines() if ln.get_label() not in curve]
        ax.legend(handles=lines, fontsize=7, loc="lower left")
        bar = fig.colorbar(matplotlib.cm.ScalarMappable(cmap=cmap), ax=ax, ticks=[0, 1])
        names = list(curve)
        bar.ax.set_yticklabels([names[0], names[-1]], fontsize=7)
        bar.set_label(f"layer, in network order ({len(names)} layers)")
    fig.tight_layout()
    return fig
