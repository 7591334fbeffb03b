"""Initialisation of generated JAX modules: the file's init_weights draws its values with
numpy from a key of rngs.params() (no XLA program per shape). The values follow, layer by
layer, each scheme's distribution; they are a deterministic function of the seed; a traced
build (nnx.jit) has the values of an eager one; archc.build_module is the file's own
constructor; constructing a generated file in a fresh process is fast."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
from flax import nnx  # noqa: E402

import archc  # noqa: E402
from archc.backends import jax_backend as jb  # noqa: E402
from archc.backends import lowering  # noqa: E402

# A conv with bias, a grouped conv without, batch norms, dropout and a wide linear layer:
# large enough tensors (1,728 to 128,000 values) for the statistics below to be sharp.
TINY = """
network Tiny(p: float = 0.5) {
    x = input(3, 8, 8)
    x = x -> c1: conv(64, kernel=3, padding=1) -> b1: bn -> a1: relu
    x = x -> c2: conv(128, kernel=3, padding=1, groups=4, bias=false) -> b2: bn -> a2: relu
    x = x -> pool: global_avgpool -> flatten: flatten
    x = d: dropout(x, p)
    return x -> fc: linear(1000)
}
"""
SCHEMES = ["default", "xavier_uniform", "xavier_normal", "kaiming_normal", "kaiming_uniform"]


@pytest.fixture(scope="module")
def tiny():
    return archc.load_source(TINY)


def expected(scheme: str, kernel_shape: tuple, what: str):
    """(distribution, bound or std) of one tensor, written out from the definitions: PyTorch's
    default U(+-1/sqrt(fan_in)) for weights and biases; flax's variance scaling (fans of a
    kh x kw x in x out kernel) for weights and zero biases otherwise."""
    *rf, fin, fout = kernel_shape
    receptive = math.prod(rf)
    fan_in, fan_out = fin * receptive, fout * receptive
    if scheme == "default":
        return "uniform", 1 / math.sqrt(fan_in)
    if what == "bias":
        return "zero", 0.0
    fan = {"xavier_uniform": (fan_in + fan_out) / 2, "xavier_normal": (fan_in + fan_out) / 2,
           "kaiming_normal": fan_out, "kaiming_uniform": fan_in}[scheme]
    var = (1.0 if scheme.startswith("xavier") else 2.0) / fan
    if scheme.endswith("uniform"):
        return "uniform", math.sqrt(3 * var)
    return "normal", math.sqrt(var)


def check_distribution(x: np.ndarray, dist: str, scale: float, where: str):
    """Bounds, mean, std (6 standard errors) and, for normals, the mass beyond 2 std."""
    x = np.asarray(x, np.float64).ravel()
    n = x.size
    if dist == "zero":
        assert not np.any(x), where
        return
    std = scale / math.sqrt(3) if dist == "uniform" else scale
    assert abs(x.mean()) <= 6 * std / math.sqrt(n) + 1e-7, (where, x.mean(), std)
    rel = 0.5 * math.sqrt((0.8 if dist == "uniform" else 2.0) / n)   # std error of std/std
    assert abs(x.std() / std - 1) <= 6 * rel + 1e-3, (where, x.std(), std)
    if dist == "uniform":
        assert np.abs(x).max() <= scale * (1 + 1e-6), where
        if n >= 1000:
            assert np.abs(x).max() >= 0.99 * scale, where
    elif n >= 1000:
        p = 0.0455   # P(|z| > 2) of a normal; a uniform of that std has none
        beyond = np.mean(np.abs(x) > 2 * std)
        assert abs(beyond - p) <= 6 * math.sqrt(p * (1 - p) / n), (where, beyond)


def check_module(model, scheme: str):
    layers = 0
    for path, layer in nnx.iter_modules(model):
        where = ".".join(map(str, path))
        if isinstance(layer, (nnx.Conv, nnx.Linear)):
            layers += 1
            kernel = np.asarray(layer.kernel[...])
            check_distribution(kernel, *expected(scheme, kernel.shape, "kernel"), where)
            if layer.bias is not None:
                check_distribution(np.asarray(layer.bias[...]),
                                   *expected(scheme, kernel.shape, "bias"), where + ".bias")
        elif type(layer).__name__ == "BatchNorm":
            for attr, want in (("scale", 1), ("bias", 0), ("mean", 0), ("var", 1)):
                np.testing.assert_array_equal(np.asarray(getattr(layer, attr)[...]), want)
    assert layers == 3


@pytest.mark.parametrize("scheme", SCHEMES)
def test_host_values_follow_the_schemes_distributions(tiny, scheme):
    check_module(jb.compile_module(tiny, init=scheme, seed=3), scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_generated_files_own_values_follow_the_same_distributions(tiny, scheme):
    """The checks above on the file's own constructor with a user's nnx.Rngs(0)."""
    ns = lowering.exec_source(jb.build_source(tiny, init=scheme), tiny, "jax")
    check_module(ns["Tiny"](rngs=nnx.Rngs(0)), scheme)


@pytest.mark.parametrize("scheme", ["default", "xavier_normal"])
def test_a_traced_build_has_the_eager_values(tiny, scheme):
    """nnx.jit of the constructor runs the same numpy draw (a pure_callback): same values."""
    ns = lowering.exec_source(jb.build_source(tiny, init=scheme), tiny, "jax")
    eager = ns["Tiny"](rngs=nnx.Rngs(params=5, dropout=1))
    traced = nnx.jit(lambda: ns["Tiny"](rngs=nnx.Rngs(params=5, dropout=1)))()
    a, b = _values(eager), _values(traced)
    for (path, x), (_, y) in zip(jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)):
        np.testing.assert_array_equal(x, y, err_msg=str(path))
    abstract = nnx.eval_shape(lambda: ns["Tiny"](rngs=nnx.Rngs(0)))
    assert abstract.c1.kernel.shape == (3, 3, 3, 64)


def test_a_generated_file_constructs_fast_in_a_fresh_process(tmp_path):
    """A user imports the written file (not archc) and constructs its class eagerly: a few
    seconds at most on a loaded machine (it took 40 s when every initialiser compiled an XLA
    program per shape); its values are those of archc.build_module at the same seed."""
    net = archc.load("se_sqnxt")
    (tmp_path / "gen.py").write_text(jb.build_source(net))
    script = (
        "import sys, time, numpy as np, jax\n"
        "from flax import nnx\n"
        "t = time.perf_counter()\n"
        "from gen import SESqueezeNext\n"
        "m = SESqueezeNext(rngs=nnx.Rngs(params=0, dropout=1))\n"
        "jax.block_until_ready(nnx.state(m))\n"
        "print(time.perf_counter() - t, 'archc' in sys.modules)\n"
        "np.save('k.npy', np.asarray(m.stage3.block2.conv4.conv.kernel[...]))\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, imported = out.stdout.split()
    assert imported == "False"
    assert float(seconds) < 10, seconds   # 0.6 s on an idle 2-core machine
    ref = jb.compile_module(net, seed=0).stage3.block2.conv4.conv.kernel[...]
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), np.asarray(ref))


def _values(model):
    def host(v):
        if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
            v = jax.random.key_data(v)
        return np.asarray(v)
    return jax.tree.map(host, nnx.to_pure_dict(nnx.state(model)))


def test_values_are_a_function_of_the_seed(tiny):
    a, b = _values(jb.compile_module(tiny, seed=1)), _values(jb.compile_module(tiny, seed=1))
    c = _values(jb.compile_module(tiny, seed=2))
    flat_a, flat_b, flat_c = (jax.tree.leaves_with_path(v) for v in (a, b, c))
    for (path, x), (_, y), (_, z) in zip(flat_a, flat_b, flat_c):
        np.testing.assert_array_equal(x, y, err_msg=str(path))
        if x.size > 1 and x.dtype == np.float32 and np.any(x != x.flat[0]):
            assert not np.array_equal(x, z), path   # another seed draws other values
    # every drawn tensor differs from every other (one generator per tensor and seed)
    kernels = [x for p, x in flat_a if "kernel" in str(p)]
    assert all(not np.array_equal(kernels[i].ravel()[:64], kernels[j].ravel()[:64])
               for i in range(len(kernels)) for j in range(i))


def test_module_is_the_generated_classes_own(tiny):
    """Same classes, layers, NNX paths and static attributes as the generated constructor
    (an abstract build of it), every value on the device, dropout with its own RNG stream."""
    host = jb.compile_module(tiny, seed=0)
    ref = nnx.eval_shape(lambda: type(host)(rngs=nnx.Rngs(params=0, dropout=1)))
    assert nnx.graphdef(host) == nnx.graphdef(ref)
    shapes = jax.tree.map(lambda v: (v.shape, v.dtype), nnx.state(host))
    assert shapes == jax.tree.map(lambda v: (v.shape, v.dtype), nnx.state(ref))
    assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(nnx.state(host)))
    assert int(host.d.rngs.count[...]) == 0 and host.d.rngs.tag == "dropout"
    again = jb.compile_module(tiny, seed=0)
    key = jax.random.key_data(host.d.rngs.key[...])
    np.testing.assert_array_equal(key, jax.random.key_data(again.d.rngs.key[...]))
    # in train mode dropout draws from its stream: two calls, two masks, count 2
    x = np.ones((4, 8, 8, 3), np.float32)
    forward = nnx.jit(lambda m, v: m(v))
    assert not np.array_equal(forward(host, x), forward(host, x))
    assert int(host.d.rngs.count[...]) == 2
