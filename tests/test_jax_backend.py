"""The JAX/Flax NNX backend (issue 6): counts, shapes and numerics against the analysis and
against the torch backend (the reference for numerics), weight exchange, jitted steps."""
from __future__ import annotations

import ast
import os

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
from flax import nnx  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import archc  # noqa: E402
from archc.backends import jax_backend as jb  # noqa: E402
from archc.backends import lowering  # noqa: E402
from archc.backends import torch_backend as tb  # noqa: E402
from archc.backends import weights as W  # noqa: E402
from archc.compiler import bundled_networks, load  # noqa: E402

from _runtime import (DEV_LOOP_NETWORKS, jax_with_weights, outputs,  # noqa: E402  (tests/)
                      runtime_params, slow_unless)

SQNXT_VARIANTS = [
    ("sqnxt", {}), ("sqnxt", {"width": 2.0}), ("sqnxt", {"stages": [2, 4, 14, 1]}),
    ("se_sqnxt", {}), ("se_sqnxt", {"width": 0.5}), ("se_sqnxt", {"stages": [1, 2, 8, 1]}),
    ("shallow_sqnxt", {}), ("shallow_sqnxt", {"width": 0.125}),
]
ALL = [(n, runtime_params(n)) for n in bundled_networks()] + \
    [v for v in SQNXT_VARIANTS if v[1]]


def _id(case):
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def _abstract(net):
    """The generated module built abstractly (shapes only, no memory, no compute)."""
    return nnx.eval_shape(lambda: jb.compile_module(net, tap=True))


def test_reserved_attribute_list_covers_nnx_module():
    public = {n for n in dir(nnx.Module) if not n.startswith("_")}
    assert public <= jb.NNX_ATTRS, sorted(public - jb.NNX_ATTRS)


@pytest.mark.parametrize("case", slow_unless(ALL, lambda c: c[0] in DEV_LOOP_NETWORKS), ids=_id)
def test_params_and_every_layer_shape_match_analysis(case):
    name, params = case
    net = load(name, **params)
    totals = archc.analyze(net).totals
    model = _abstract(net)
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    n_stats = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    assert n_params == totals["params"]
    assert n_stats == totals["buffers"]
    seen = {}
    lowering.set_tap(model, lambda layer, v: seen.__setitem__(layer, tuple(v.shape)) or v)
    model.eval()
    graphdef, state = nnx.split(model)
    c, h, w = net.input_shape
    out = jax.eval_shape(lambda st, x: nnx.merge(graphdef, st)(x), state,
                         jax.ShapeDtypeStruct((2, h, w, c), jnp.float32))
    # N x C where torch's value is, and global pools that only flatten or linear read
    ranks, torch_ranks = jb.BACKEND.ranks(net), tb.BACKEND.ranks(net)
    for layer in net.layers():
        lc, lh, lw = net.node(layer)["shape"]
        assert ranks[layer] == torch_ranks[layer] or net.node(layer)["op"] in (
            "global_avgpool", "global_maxpool"), layer
        assert seen[layer] == ((2, lc) if ranks[layer] == 2 else (2, lh, lw, lc)), layer
    want = []
    for _, node in net.output_list():
        oc, oh, ow = net.node(node)["shape"]
        want.append((2, oc) if (oh, ow) == (1, 1) else (2, oh, ow, oc))
    assert [o.shape for o in outputs(out)] == want


def _pair(net, seed=0):
    """The torch module and the JAX module with the torch weights loaded (the JAX module
    built abstractly, its initialisation never run: tests/_runtime.py)."""
    torch.manual_seed(seed)
    tm = tb.compile_module(net)
    return tm, jax_with_weights(net, W.state_dict_numpy(tm))


def _input(net, n=2, seed=0):
    c, h, w = net.input_shape
    return np.random.RandomState(seed).randn(n, c, h, w).astype(np.float32)


def _forward_both(tm, jm, x):
    """The torch module on NCHW `x` and the JAX module (jitted) on its NHWC transpose: the
    first output of each (the network's logits for the classification networks)."""
    yt, yj = _forward_all(tm, jm, x)
    return yt[0], yj[0]


def _forward_all(tm, jm, x):
    """Every output of both modules, as numpy arrays in the network's order."""
    with torch.no_grad():
        yt = [o.numpy() for o in outputs(tm(torch.from_numpy(x)))]
    yj = nnx.jit(lambda m, v: m(v))(jm, jnp.asarray(x.transpose(0, 2, 3, 1)))
    return yt, [np.asarray(o) for o in outputs(yj)]


@pytest.mark.slow   # a full-network JAX compile each (the ops one by one: test_op_registry.py)
@pytest.mark.parametrize("name", bundled_networks())
def test_eval_logits_agree_with_torch(name):
    """Every layer's output, so every output of the network (logits, segmentation maps,
    auxiliary heads) too: eval mode, the same weights, within 1e-4 of each layer's scale
    (a deep network's logits alone can hide a wrong layer under a vanishing signal)."""
    net = load(name, **runtime_params(name))
    seen_t, seen_j = {}, {}
    torch.manual_seed(0)
    tm = tb.compile_module(net, tap=lambda n, v: seen_t.setdefault(n, v.numpy()) is None or v)
    jm = jax_with_weights(net, W.state_dict_numpy(tm),
                          tap=lambda n, v: seen_j.setdefault(n, v) is None or v)
    tm.eval()
    jm.eval()
    x = _input(net, n=1)
    with torch.no_grad():
        yts = [o.numpy() for o in outputs(tm(torch.from_numpy(x)))]

    def run(m, v):   # one compilation; the tapped values leave it as outputs
        seen_j.clear()
        return outputs(m(v)), dict(seen_j)
    yjs, layers = nnx.jit(run)(jm, jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert len(yts) == len(yjs) == len(net.output_list())
    pairs = [(n, seen_t[n], layers[n]) for n in net.layers()] + \
        [(f"output {i}", t, j) for i, (t, j) in enumerate(zip(yts, yjs))]
    for where, yt, yj in pairs:
        yj = np.asarray(yj)
        yt = yt.reshape(yj.shape) if yj.ndim == 2 else yt.transpose(0, 2, 3, 1)
        err, scale = np.abs(yt - yj).max(), np.abs(yt).max()
        assert err <= 1e-4 * max(scale, 1e-6), (where, err, scale)


def test_weights_round_trip_and_safetensors(tmp_path):
    net = load("se_sqnxt", width=0.5)
    tm = tb.compile_module(net)
    sd = W.state_dict_numpy(tm)
    jm = jb.compile_module(net)
    W.load_into_jax(jm, net, sd)
    back = W.jax_to_torch(net, nnx.to_pure_dict(nnx.state(jm)))
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)
    path = tmp_path / "w.safetensors"
    W.save(path, back)
    loaded = W.load(path)
    tm2 = tb.compile_module(net)
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in loaded.items()}, strict=True)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".archc-")]


def test_weights_errors_are_clear():
    net = load("sqnxt", width=0.5)
    sd = W.state_dict_numpy(tb.compile_module(net))
    jm = jb.compile_module(net)
    bad = dict(sd)
    del bad["conv1.weight"]
    with pytest.raises(archc.ArchError, match="conv1"):
        W.load_into_jax(jm, net, bad)
    bad = dict(sd)
    bad["conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(archc.ArchError, match="shape"):
        W.load_into_jax(jm, net, bad)
    with pytest.raises(archc.ArchError, match="cannot read"):
        W.load("/nonexistent/w.safetensors")


def test_build_cli_is_deterministic_and_imports_only_jax(tmp_path):
    from archc._cli import main
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    assert main(["build", "se_sqnxt", "--backend", "jax", "-o", str(a)]) == 0
    assert main(["build", "se_sqnxt", "--backend", "jax", "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    tree = ast.parse(a.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {n.name.split(".")[0] for n in node.names}
        elif isinstance(node, ast.ImportFrom):
            mods.add(node.module.split(".")[0])
    # the standard library, JAX and numpy (jax's own dependency)
    assert mods <= {"functools", "math", "jax", "flax", "numpy"}, mods
    # the very text compile_module runs (its outputs are checked against torch above); the
    # file's own initialisation is checked in tests/test_jax_init.py
    assert a.read_text() == jb.build_source(load("se_sqnxt"))
    ns: dict = {}
    exec(compile(a.read_text(), str(a), "exec"), ns)  # noqa: S102 - our own generated file
    assert isinstance(ns["SESqueezeNext"], type) and issubclass(ns["SESqueezeNext"], nnx.Module)


@pytest.mark.slow   # a whole network run op by op in JAX
def test_build_module_api_jax():
    m = archc.build_module("shallow_sqnxt", backend="jax", width=0.25)
    m.eval()
    assert m(jnp.zeros((1, 32, 32, 3))).shape == (1, 10)

