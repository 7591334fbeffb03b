"""Activation statistics of a network on a calibration set, through the tap API: for every
quantization point, the maximum of |x| (symmetric) or x (asymmetric) over the set, then a
histogram of SOURCE_BINS bins over [0, max] of the values that are not exactly zero (the
pseudo-code's GenerateHist; calibration.py says why zeros are left out), computed on the
device batch by batch and summed on the host."""
from __future__ import annotations

import numpy as np
from archc.compiler import Network

from archc.backends import jax_backend, weights
from archc.training.jax_loop import normalize
from archc.training.norm import Normalization


class Observer:
    """A jitted forward pass of `net` (eval mode) that reports statistics at `points`
    ({layer or the input's name: symmetric?}); images are normalised with `norm`, the
    trained run's statistics."""

    def __init__(self, net: Network, points: dict, bins: int, norm: Normalization,
                 seed: int = 0):
        import jax
        import jax.numpy as jnp
        from flax import nnx

        self.points, self.bins, self.input = dict(points), bins, net.input
        seen: dict = {}

        def tap(name, value):
            if name in self.points:
                seen[name] = value
            return value
        # abstract evaluation: the parameters are passed in, so nothing needs initialising
        model = nnx.eval_shape(lambda: jax_backend.compile_module(net, tap=tap, seed=seed))
        model.eval()
        graph, _, _, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        rest = jax.tree.map(weights.placeholder, nnx.to_pure_dict(rest))  # dropout RNGs, unused in eval

        def values(params, stats, images):
            seen.clear()
            x = normalize(images, jnp.float32, norm)
            nnx.merge(graph, params, stats, rest)(x)
            if self.input in self.points:
                seen[self.input] = x
            return {n: (jnp.abs(v) if self.points[n] else v) for n, v in seen.items()}

        def maxima(params, stats, images):
            return {n: jnp.max(v) for n, v in values(params, stats, images).items()}

        def histograms(params, stats, images, tops):
            out = {}
            for n, v in values(params, stats, images).items():
                top = tops[n]
                scale = jnp.where(top > 0, bins / jnp.where(top > 0, top, 1.0), 0.0)
                idx = jnp.clip(jnp.floor(v * scale), 0, bins - 1).astype(jnp.int32)
                out[n] = jnp.bincount(idx.ravel(), weights=(v != 0).ravel().astype(jnp.int32),
                                      length=bins)  # exact zeros left out (calibration.py)
            return out
        self._max = jax.jit(maxima)
        self._hist = jax.jit(histograms)

    def statistics(self, params: dict, stats: dict, images: np.ndarray,
                   batch: int = 100) -> dict:
        """{point: (histogram counts int64, max)} over uint8 NHWC `images`."""
        tops: dict = {}
        for i in range(0, len(images), batch):
            m = self._max(params, stats, images[i:i + batch])
            for n, v in m.items():
                tops[n] = max(tops.get(n, 0.0), float(v))
        missing = set(self.points) - set(tops)
        if missing:
            raise ValueError(f"the tap never saw {sorted(missing)[:3]}")
        hists = {n: np.zeros(self.bins, np.int64) for n in tops}
        t = {n: np.float32(v) for n, v in tops.items()}
        for i in range(0, len(images), batch):
            h = self._hist(params, stats, images[i:i + batch], t)
            for n, v in h.items():
                hists[n] += np.asarray(v, np.int64)
        return {n: (hists[n], tops[n]) for n in tops}
