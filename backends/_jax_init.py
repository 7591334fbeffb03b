"""Instantiating a generated Flax NNX module fast: initial values drawn on the host.

The generated file initialises itself with `jax.random` (its `init_weights`), which is right
for a user who imports it, but slow to start: every distinct parameter shape is one XLA
program to compile (eagerly), or one large program to trace and compile (`nnx.jit`, and even
`nnx.eval_shape`: tracing a constructor costs time quadratic in its length here, because
NNX's Variable assignment asks each tracer for `.sharding`, and JAX builds an error message
by walking the whole trace). `instantiate` therefore

  1. runs the generated constructor with placeholder values: `nnx.Conv` / `nnx.Linear` get
     initialisers that return a zero-stride numpy view, the BatchNorm helper's `jnp.ones` /
     `jnp.zeros` are numpy's, dropout layers get no RNG stream, `init_weights` is skipped.
     The module is the generated classes' own (same classes, layers and NNX paths);
  2. draws every conv and linear weight and bias with numpy, from the distribution the
     generated file uses for the network's scheme (backends/lowering.py's INIT_SCHEMES):
     PyTorch's default U(-b, b), b = 1/sqrt(fan_in), for weights and biases; or JAX's
     variance scaling (flax's fan computation) for weights and zero biases; gives each
     dropout layer an RNG stream (tag "dropout", count 0) whose key data is drawn likewise.
     Every tensor's values are a function of (seed, its NNX path) only;
  3. puts every array on the device in one call.

No XLA program is compiled. The values differ from those of the generated file's own
`jax.random` initialisation (another generator); the distributions are the same
(tests/test_jax_init.py checks both against them).
"""
from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np


class _Override:
    """A module object with some attributes replaced (the generated code's `nnx` or `jnp`
    while its constructor runs)."""

    def __init__(self, real, **replace):
        self._real, self._replace = real, replace

    def __getattr__(self, name):
        if name in self._replace:
            return self._replace[name]
        return getattr(self._real, name)


def _placeholder(key, shape, dtype=np.float32):
    return np.broadcast_to(np.zeros((), dtype), tuple(shape))


class _NoKeys:
    """The `rngs` of the placeholder build: conv and linear layers ask it for keys their
    placeholder initialisers ignore; nothing else reads it (dropout layers get theirs after)."""

    @staticmethod
    def params():
        return None


def _layer(cls, *args, rngs, **kwargs):
    return cls(*args, kernel_init=_placeholder, bias_init=_placeholder, rngs=_NoKeys, **kwargs)


def _dropout(*args, rngs, **kwargs):
    from flax import nnx
    return nnx.Dropout(*args, rngs=None, **kwargs)


def _numpy_fill(value):
    def make(shape, dtype=np.float32, *args, **kwargs):
        return np.full(shape, value, dtype=np.dtype(dtype))
    return make


def build_placeholder(ns: dict, cls: str):
    """The generated class `cls` of namespace `ns` built with placeholder conv and linear
    values, numpy BatchNorm constants, dropout layers without RNG streams and no
    init_weights pass (see the module docstring)."""
    import jax.numpy as jnp
    from flax import nnx
    saved = {k: ns[k] for k in ("nnx", "jnp", "init_weights") if k in ns}
    ns["nnx"] = _Override(nnx, Conv=partial(_layer, nnx.Conv), Linear=partial(_layer, nnx.Linear),
                          Dropout=_dropout)
    ns["jnp"] = _Override(jnp, ones=_numpy_fill(1.0), zeros=_numpy_fill(0.0))
    ns["init_weights"] = lambda module, rngs: None
    try:
        return ns[cls](rngs=_NoKeys)
    finally:
        ns.update(saved)


def fans(shape) -> tuple[float, float]:
    """Flax's fan_in and fan_out of a kernel (..., in, out): the receptive field times the
    in- and out-features (jax.nn.initializers' default in_axis=-2, out_axis=-1)."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def draw(scheme: tuple | None, what: str, kernel_shape, shape, rng) -> np.ndarray:
    """Initial values of one tensor. scheme: None (PyTorch's default) or INIT_SCHEMES's
    (distribution, fan mode, scale); what: "kernel" or "bias"."""
    if scheme is None:   # U(-b, b), b = 1/sqrt(fan_in), weights and biases alike
        bound = 1.0 / math.sqrt(max(math.prod(kernel_shape[:-1]), 1))
        return _uniform(rng, shape, bound)
    if what == "bias":
        return np.zeros(shape, np.float32)
    dist, mode, scale = scheme
    fan_in, fan_out = fans(kernel_shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = scale / max(1.0, fan)
    if dist == "uniform":
        return _uniform(rng, shape, math.sqrt(3.0 * variance))
    if dist == "normal":
        z = rng.standard_normal(shape, dtype=np.float32)
        z *= np.float32(math.sqrt(variance))
        return z
    raise ValueError(f"internal: unknown distribution {dist!r}")


def _uniform(rng, shape, bound: float) -> np.ndarray:
    u = rng.random(shape, dtype=np.float32)   # in place: VGG's weights are 0.5 GB
    u *= np.float32(2.0 * bound)
    u -= np.float32(bound)
    return u


def tensor_rng(seed: int, path: str) -> np.random.Generator:
    """The generator of one tensor: a function of the seed and the tensor's NNX path only."""
    digest = hashlib.sha256(path.encode()).digest()
    return np.random.default_rng([seed % (1 << 64), int.from_bytes(digest[:8], "little")])


def instantiate(ns: dict, cls: str, scheme: tuple | None, seed: int):
    """An instance of generated class `cls` with initial values drawn on the host and put on
    the device once. scheme: None for PyTorch's default, else INIT_SCHEMES's triple."""
    import jax
    from flax import nnx
    module = build_placeholder(ns, cls)
    targets, jobs = [], []
    for path, layer in nnx.iter_modules(module):
        name = ".".join(str(p) for p in path)
        if isinstance(layer, nnx.Dropout):
            layer.rngs = dropout_stream(seed, name, layer.rng_collection)
        # every layer with a kernel (nnx.Conv, nnx.Linear, and helper classes such as a
        # transposed convolution) is what the generated init_weights draws
        drawn = isinstance(vars(layer).get("kernel"), nnx.Param)
        for attr, var in vars(layer).items():
            if not isinstance(var, nnx.Variable):
                continue
            value = var.get_value()
            if drawn and attr in ("kernel", "bias"):
                jobs.append(partial(draw, scheme, attr, tuple(layer.kernel.get_value().shape),
                                    tuple(value.shape), tensor_rng(seed, f"{name}.{attr}")))
            elif isinstance(value, np.ndarray):   # BatchNorm's constants
                jobs.append(partial(np.asarray, value))
            else:                                 # dropout's RNG streams: on the device
                continue
            targets.append(var)
    # numpy's generators release the GIL: VGG's 0.5 GB of weights are drawn in parallel
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        values = list(pool.map(lambda job: job(), jobs))
    for var, array in zip(targets, jax.device_put(values)):
        var.set_value(array)
    return module


def dropout_stream(seed: int, path: str, tag: str):
    """A dropout layer's RNG stream: its key data drawn on the host from (seed, path), so no
    XLA program is compiled to make it (jax.random.key, fold_in would each compile one)."""
    import jax
    from flax import nnx
    shape = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape
    data = tensor_rng(seed, path + ".rngs").integers(0, 1 << 32, shape, dtype=np.uint32)
    return nnx.Rngs(**{tag: jax.random.wrap_key_data(data)})[tag]
