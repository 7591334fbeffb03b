"""Fake quantization of a BN-folded network (seed 002, sec. 3.5): x_quant = x_int * s in
floating point, with a straight-through estimator for quantization-aware finetuning.

    weights     symmetric MaxValue, one step per output channel, recomputed from the current
                weights at every forward pass (so it follows them during finetuning)
    biases      symmetric MaxValue at `bias_bits`, one step per layer
    activations the calibrated steps of the plan's points (plan.py), fixed; average pools of
                a quantized tensor round back onto its grid; the input is a point too

`FakeQuant.tap` and `FakeQuant.transform` are the training loop's hooks (jax_loop.Trainer):
the tap quantizes layer outputs, the transform quantizes parameters and the input.

Gradient: d fq(x) / dx = 1 where x lies inside [INT_min * s, INT_max * s], 0 outside (the
clipped straight-through estimator); the steps get no gradient.
"""
from __future__ import annotations

import numpy as np
from archc.compiler import Network

from .calibration import int_range
from .plan import Plan
from .state import layer_paths


def _fq_raw(x, s, lo, hi):
    import jax.numpy as jnp
    safe = jnp.where(s > 0, s, 1.0)
    return jnp.clip(jnp.round(x / safe), lo, hi) * s


def _make_fake_quant():
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def fake_quant(x, s, lo, hi):
        return _fq_raw(x, s, lo, hi)

    def fwd(x, s, lo, hi):
        return _fq_raw(x, s, lo, hi), (x, s, lo, hi)

    def bwd(res, g):
        x, s, lo, hi = res
        inside = (x >= lo * s) & (x <= hi * s)
        return (jnp.where(inside, g, 0.0).astype(g.dtype), jnp.zeros_like(s),
                jnp.zeros_like(lo), jnp.zeros_like(hi))
    fake_quant.defvjp(fwd, bwd)
    return fake_quant


_FQ = None


def fake_quant(x, s, lo, hi):
    """clamp(round(x / s), lo, hi) * s (0 where s == 0), straight-through gradient."""
    global _FQ
    import jax.numpy as jnp
    if _FQ is None:
        _FQ = _make_fake_quant()
    return _FQ(x, jnp.asarray(s, x.dtype), jnp.asarray(lo, x.dtype), jnp.asarray(hi, x.dtype))


def channel_steps(kernel, bits: int):
    """Per-output-channel (last axis) MaxValue steps of a kernel, without gradient."""
    import jax
    import jax.numpy as jnp
    axes = tuple(range(kernel.ndim - 1))
    return jax.lax.stop_gradient(jnp.max(jnp.abs(kernel), axis=axes)) / (2 ** (bits - 1) - 1)


def tensor_step(values, bits: int):
    import jax
    import jax.numpy as jnp
    return jax.lax.stop_gradient(jnp.max(jnp.abs(values))) / (2 ** (bits - 1) - 1)


class FakeQuant:
    """The fake-quantized forward pass of a folded network.

    act_steps: {point: step} for every point of `plan` (the input included)."""

    def __init__(self, net: Network, plan: Plan, act_steps: dict, weight_bits: int = 8,
                 act_bits: int = 8, bias_bits: int = 16):
        missing = [p for p in plan.points if p not in act_steps]
        if missing:
            raise ValueError(f"no activation step for {missing[:3]}")
        self.net, self.plan = net, plan
        self.weight_bits, self.act_bits, self.bias_bits = weight_bits, act_bits, bias_bits
        self.steps = {p: float(act_steps[p]) for p in plan.points}
        self.ranges = {p: int_range(act_bits, sym) for p, sym in plan.points.items()}
        paths = layer_paths(net)
        self.weighted = [(n, paths[n]) for n in plan.weighted]

    def point_quant(self, point: str, value):
        lo, hi = self.ranges[point]
        return fake_quant(value, self.steps[point], lo, hi)

    def tap(self, name: str, value):
        if name in self.plan.points:
            return self.point_quant(name, value)
        if name in self.plan.requant:
            return self.point_quant(self.plan.requant[name], value)
        return value

    def quant_params(self, params: dict) -> dict:
        """Parameters with every conv/linear kernel and bias fake-quantized."""
        wb = 2 ** (self.weight_bits - 1)
        bb = 2 ** (self.bias_bits - 1)
        out = params
        for _, path in self.weighted:
            node = _get(out, path)
            new = dict(node)
            k = node["kernel"]
            new["kernel"] = fake_quant(k, channel_steps(k, self.weight_bits), -wb, wb - 1)
            if "bias" in node:
                b = node["bias"]
                new["bias"] = fake_quant(b, tensor_step(b, self.bias_bits), -bb, bb - 1)
            out = _replace(out, path, new)
        return out

    def transform(self, params: dict, x):
        return self.quant_params(params), self.point_quant(self.plan.input, x)

    def integer_weights(self, flat: dict) -> dict:
        """{layer: {weight_int, weight_step, bias_int, bias_step}} (numpy) of folded float
        weights: what an integer engine stores."""
        out = {}
        for n, _ in self.weighted:
            k = np.asarray(flat[n]["kernel"], np.float32)
            s = np.max(np.abs(k), axis=tuple(range(k.ndim - 1))) / np.float32(
                2 ** (self.weight_bits - 1) - 1)
            out[n] = {"weight_int": _ints(k, s, self.weight_bits),
                      "weight_step": s.astype(np.float32)}
            if "bias" in flat[n]:
                b = np.asarray(flat[n]["bias"], np.float32)
                sb = np.float32(np.max(np.abs(b)) / np.float32(2 ** (self.bias_bits - 1) - 1))
                out[n]["bias_int"] = _ints(b, sb, self.bias_bits)
                out[n]["bias_step"] = np.asarray(sb, np.float32)
        return out


def _ints(x, s, bits):
    safe = np.where(s > 0, s, np.float32(1))
    q = np.clip(np.round(x / safe), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    dtype = np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32
    return q.astype(dtype)


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _replace(tree: dict, path: tuple, value) -> dict:
    """A copy of `tree` with the node at `path` replaced (the original is not changed)."""
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = _replace(tree[path[0]], path[1:], value)
    return out
