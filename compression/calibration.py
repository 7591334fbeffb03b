"""Quantization steps (seed 002, sec. 3): symmetric MaxValue and KL-divergence calibration.

numpy only. A tensor quantizes as x_int = clamp(round(x / s), INT_min, INT_max) with
    symmetric   INT_min = -2^(precision-1), INT_max = 2^(precision-1) - 1
    asymmetric  INT_min = 0,                INT_max = 2^precision - 1   (non-negative tensors)

MaxValue (sec. 3.3): s = max|x| / (2^(precision-1) - 1); archc's asymmetric variant (not in
the seed) is s = max(x) / (2^precision - 1).

KL divergence (sec. 3.1 pseudo-code; 3.2 for the asymmetric case), on a histogram of |x|
(symmetric) or of x (asymmetric, x >= 0) with SOURCE_BINS bins over [0, max], exact zeros
left out (every step represents 0 exactly, so they say nothing about the step; after a ReLU
they are half the tensor, and kept in bin 0 their spike dominates the divergence and drives
the threshold down to ~TARGET_BINS bins: measured, int8 SqueezeNext lost 4 points that way
(docs/compression.md); ncnn's KL calibrator leaves them out too):
    TARGET_BINS = 2^(precision-1) (symmetric) or 2^precision (asymmetric)
    for i in TARGET_BINS .. SOURCE_BINS-1:
        P = bin[0..i-1], with the outliers sum(bin[i..]) added to P[i-1]; P /= sum(P)
        Q = bin[0..i-1] quantized into TARGET_BINS bins of equal width (i / TARGET_BINS
            source bins each; a source bin on a boundary is shared in proportion), each
            target bin's count expanded back over the non-empty source bins it covers, in
            proportion to how much of each it covers; Q /= sum(Q)
        divergence[i] = sum over P > 0 of P log(P / Q)  (infinite where P > 0 = Q, which
                        happens exactly when bin[i-1] is empty: no threshold in an empty bin)
    h = the largest i with divergence[i] <= tolerance * min(divergence)
    s = (h + 0.5) * (bin width) / TARGET_BINS
"Quantize into TARGET_BINS" is read as equal-width target bins (as ncnn's calibrator does).
Merging whole groups of i // TARGET_BINS bins with the remainder in the last group (MXNet's
port of TensorRT) gives unequal bins and a divergence that jumps at every multiple of
TARGET_BINS: on ReLU outputs it picks i just below 2 * TARGET_BINS, a quarter of the range,
whatever the data (measured: int8 SqueezeNext lost 7.7 points that way, docs/compression.md).
When no candidate has a finite divergence the whole range is kept: s = max / TARGET_BINS.
The pseudo-code limits KL to precision <= 10, so that TARGET_BINS stays below SOURCE_BINS.
"""
from __future__ import annotations

import math

import numpy as np
from archc.compiler.errors import ArchError

SOURCE_BINS = 2048
KL_MAX_PRECISION = 10
MAX_PRECISION = 32
METHODS = ("kl", "max")


def check_precision(precision, method: str = "max", what: str = "precision") -> int:
    """The precision as an int, or an ArchError saying what is allowed."""
    top = KL_MAX_PRECISION if method == "kl" else MAX_PRECISION
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
        raise ArchError(f"{what} must be a whole number of bits, not {precision!r}")
    if not 2 <= precision <= top:
        why = (" (the KL-divergence calibration of Zeng et al. needs precision <= 10, sec. 3.1)"
               if method == "kl" else "")
        raise ArchError(f"{what} {precision} is out of range: {method} calibration takes 2 to "
                        f"{top} bits{why}")
    return int(precision)


def int_range(precision: int, symmetric: bool) -> tuple[int, int]:
    """(INT_min, INT_max) of the seed's formulas."""
    if symmetric:
        return -(2 ** (precision - 1)), 2 ** (precision - 1) - 1
    return 0, 2 ** precision - 1


def target_bins(precision: int, symmetric: bool) -> int:
    return 2 ** (precision - 1) if symmetric else 2 ** precision


def _values(values, symmetric: bool) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ArchError("cannot calibrate an empty tensor")
    if not np.all(np.isfinite(x)):
        raise ArchError("cannot calibrate a tensor with NaN or infinite values")
    if not symmetric and x.min() < 0:
        raise ArchError(f"asymmetric calibration needs non-negative values (min {x.min():g})",
                        hint="use symmetric=True for tensors with negative values")
    return np.abs(x) if symmetric else x


def max_step(values, precision: int = 8, symmetric: bool = True) -> float:
    """MaxValue step: max|x| / INT_max (0.0 for an all-zero tensor)."""
    precision = check_precision(precision, "max")
    x = _values(values, symmetric)
    return float(x.max()) / int_range(precision, symmetric)[1]


def channel_max_steps(weights, precision: int = 8, axis: int = -1) -> np.ndarray:
    """Symmetric MaxValue steps, one per index of `axis` (the output channel: the last axis of
    an HWIO conv kernel or an in x out linear kernel). 0.0 for an all-zero channel."""
    precision = check_precision(precision, "max")
    w = np.abs(np.asarray(weights, dtype=np.float64))
    w = np.moveaxis(w, axis, -1).reshape(-1, w.shape[axis])
    return w.max(axis=0) / int_range(precision, True)[1]


def kl_divergences(hist, precision: int, symmetric: bool) -> np.ndarray:
    """divergence[i] for i = TARGET_BINS .. len(hist)-1 (the pseudo-code's loop), inf where
    the candidate is impossible (P > 0 where Q = 0)."""
    hist = np.asarray(hist, dtype=np.float64)
    n_src = len(hist)
    n_tgt = target_bins(precision, symmetric)
    out = np.full(max(n_src - n_tgt, 0), np.inf)
    total = hist.sum()
    tail = total - np.cumsum(hist)          # tail[i-1] = sum(hist[i:])
    for k, i in enumerate(range(n_tgt, n_src)):
        raw = hist[:i]
        if raw[i - 1] == 0:                 # P[i-1] = outliers > 0 but Q[i-1] = 0
            continue
        p = raw.copy()
        p[i - 1] += tail[i - 1]
        q = _expanded(raw, n_tgt)
        p /= p.sum()
        q /= q.sum()
        nz = p > 0
        out[k] = float(np.sum(p[nz] * np.log(p[nz] / q[nz])))
    return out


def _expanded(raw: np.ndarray, n_tgt: int) -> np.ndarray:
    """`raw` (i bins) quantized into n_tgt equal-width bins and expanded back to i bins.

    Target bin t covers source positions [t*i/n_tgt, (t+1)*i/n_tgt); since i >= n_tgt a
    source bin [k, k+1) meets at most two target bins, t1 = floor(k*n_tgt/i) and t1 + 1
    (integer arithmetic: the boundaries are exact)."""
    i = len(raw)
    k = np.arange(i)
    t1 = (k * n_tgt) // i
    split = (t1 + 1) * i < (k + 1) * n_tgt
    left = np.where(split, ((t1 + 1) * i - k * n_tgt) / n_tgt, 1.0)   # overlap with t1
    right = 1.0 - left                                               # overlap with t1 + 1
    t2 = np.minimum(t1 + 1, n_tgt - 1)
    filled = (raw > 0).astype(np.float64)
    merged = (np.bincount(t1, raw * left, n_tgt) + np.bincount(t2, raw * right, n_tgt))
    covered = (np.bincount(t1, filled * left, n_tgt) + np.bincount(t2, filled * right, n_tgt))
    value = merged / np.where(covered > 0, covered, 1.0)
    return filled * (left * value[t1] + right * value[t2])


def kl_step_from_histogram(hist, max_value: float, precision: int = 8, symmetric: bool = True,
                           tolerance: float = 1.3) -> float:
    """The KL step for a histogram of |x| (or x >= 0) with len(hist) bins over [0, max_value]."""
    precision = check_precision(precision, "kl")
    _check_tolerance(tolerance)
    hist = np.asarray(hist)
    n_tgt = target_bins(precision, symmetric)
    if len(hist) <= n_tgt:
        raise ArchError(f"{len(hist)} source bins are too few for {precision}-bit "
                        f"{'symmetric' if symmetric else 'asymmetric'} KL calibration",
                        hint=f"use more than {n_tgt} bins")
    if max_value <= 0 or hist.sum() == 0:
        return 0.0
    width = max_value / len(hist)
    div = kl_divergences(hist, precision, symmetric)
    finite = np.isfinite(div)
    if not finite.any():
        return max_value / n_tgt
    bound = tolerance * div[finite].min()
    h = n_tgt + int(np.flatnonzero(div <= bound).max())
    return (h + 0.5) * width / n_tgt


def histogram(values, bins: int = SOURCE_BINS, symmetric: bool = True):
    """(counts, max): the pseudo-code's GenerateHist over [0, max|x|] (or [0, max x]) of the
    values that are not exactly zero."""
    x = _values(values, symmetric)
    top = float(x.max())
    counts, _ = np.histogram(x[x != 0], bins=bins, range=(0.0, top if top > 0 else 1.0))
    return counts, top


def calibration_step(values, precision: int = 8, method: str = "kl", symmetric: bool = True,
                     tolerance: float = 1.3, bins: int = SOURCE_BINS) -> float:
    """The step s of seed 002's formulas for a tensor of values (any shape).

    method "kl": KL-divergence calibration (sec. 3.1, 3.2); "max": MaxValue (sec. 3.3).
    symmetric: signed range (tensors with negative values) or unsigned (x >= 0, e.g. after a
    ReLU or sigmoid). tolerance >= 1 relaxes the minimal divergence (the seed uses 1.3);
    bins is SOURCE_BINS. Returns 0.0 for an all-zero tensor."""
    if method not in METHODS:
        raise ArchError(f"unknown calibration method {method!r}", hint="methods: kl, max")
    if method == "max":
        return max_step(values, precision, symmetric)
    precision = check_precision(precision, "kl")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ArchError(f"bins must be a whole number >= 2, not {bins!r}")
    _check_tolerance(tolerance)
    counts, top = histogram(values, int(bins), symmetric)
    return kl_step_from_histogram(counts, top, precision, symmetric, tolerance)


def _check_tolerance(tolerance) -> None:
    if not (isinstance(tolerance, (int, float, np.floating)) and math.isfinite(tolerance)
            and tolerance >= 1):
        raise ArchError(f"tolerance must be a number >= 1, not {tolerance!r}",
                        hint="Zeng et al. use 1.3; 1 takes the minimal divergence")
