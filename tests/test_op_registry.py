"""Every fact about an op is its registry entry's (compiler/ops.py), and docs/adding-an-op.md
lists every place an op touches: every registered op is lowered by torch, JAX and ONNX and
classified by compression; an op added in the listed places only (a throwaway `prelu`, as
the document's example) works through the analysis, torch, JAX, ONNX and compression; and
every op computes the same in JAX as in torch (same weights, eval mode)."""
from __future__ import annotations

import ast

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
ort = pytest.importorskip("onnxruntime")
from flax import nnx  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import archc  # noqa: E402
from archc.backends import jax_backend as jb  # noqa: E402
from archc.backends import onnx_backend as ob  # noqa: E402
from archc.backends import torch_backend as tb  # noqa: E402
from archc.compiler import ops  # noqa: E402
from archc.compression import fold, plan  # noqa: E402

BACKENDS = {"torch": tb.BACKEND, "jax": jb.BACKEND, "onnx": ob.BACKEND}
PYTHON_BACKENDS = {"torch": tb, "jax": jb}
# ops no backend lowers, and why
NOT_LOWERED = {"input": "the network's input is the argument of the generated forward, "
                        "not a layer"}

# one tiny network per op: `y` computed from x (4 x 8 x 8) with the op, non-default
# arguments where the op has them
CASES = {
    "conv": 'y = x -> conv(6, kernel=3, stride=2, padding=1, groups=2)',
    "linear": 'y = x -> global_avgpool -> linear(5)',
    "bn": 'y = x -> bn(eps=0.001, momentum=0.2)',
    "lrn": 'y = x -> lrn(3, alpha=0.01, beta=0.75, k=2.0)',
    "relu": 'y = x -> relu',
    "relu6": 'y = x -> relu6',
    "elu": 'y = x -> elu(alpha=0.5)',
    "leaky_relu": 'y = x -> leaky_relu(slope=0.2)',
    "sigmoid": 'y = x -> sigmoid',
    "tanh": 'y = x -> tanh',
    "swish": 'y = x -> swish',
    "hswish": 'y = x -> hswish',
    "hsigmoid": 'y = x -> hsigmoid',
    "gelu": 'y = concat(x -> gelu, x -> gelu(approximate="tanh"))',
    "layer_norm": 'y = concat(x -> layer_norm(eps=1e-6), '
                  'x -> global_avgpool -> layer_norm(affine=false) -> upsample([8, 8]))',
    "group_norm": 'y = concat(x -> group_norm(2, eps=1e-6), x -> group_norm(1, affine=false))',
    "layer_scale": 'y = concat(x -> layer_scale(init=0.5), '
                   'x -> global_avgpool -> flatten -> layer_scale -> upsample([8, 8]))',
    "maxpool": 'y = x -> maxpool(3, stride=2, padding=1, ceil_mode=true)',
    "avgpool": 'y = x -> avgpool(3, stride=2, padding=1, ceil_mode=true, '
               'count_include_pad=false)',
    "global_avgpool": 'y = x -> global_avgpool',
    "global_maxpool": 'y = x -> global_maxpool',
    "dropout": 'y = x -> dropout(0.5)',
    "identity": 'y = x -> identity',
    "flatten": 'y = x -> flatten',
    "slice": 'y = slice(x, 1, 3)',
    "concat": 'y = concat(x, x -> relu)',
    "add": 'y = add(x, x -> tanh)',
    "mul": 'y = mul(x, x -> global_avgpool -> sigmoid)',
    "upsample": 'y = x -> upsample(2, mode="bilinear")',
    "conv_transpose": 'y = x -> conv_transpose(6, kernel=3, stride=2, padding=1, '
                      'output_padding=1)',
    "pixel_shuffle": 'y = x -> pixel_shuffle(2)',
    "pixel_unshuffle": 'y = x -> pixel_unshuffle(2)',
    "channel_shuffle": 'y = x -> channel_shuffle(2)',
    "crop": 'y = x -> crop([5, 6])',
    "adaptive_avgpool": 'y = x -> adaptive_avgpool([3, 5])',
    "adaptive_maxpool": 'y = x -> adaptive_maxpool([3, 5])',
    "drop_path": 'y = x -> drop_path(0.2)',
    # multi-query (one key/value head for 4 query heads) within 2 x 2 patches
    "attention": 'y = attention(x -> conv(8, 1), x -> conv(2, 1), x -> conv(3, 1), 4, '
                 'patch=2)',
}


def _net(body: str):
    return archc.load_source(f"network T() {{\n    x = input(4, 8, 8)\n    {body}\n"
                             "    return y\n}\n")


def _random_state(module, seed: int = 0) -> dict:
    """The torch module's state_dict with every float tensor random (BN variances positive)."""
    rng = np.random.RandomState(seed)
    out = {}
    for k, v in module.state_dict().items():
        a = v.numpy()
        if a.dtype == np.float32:
            a = rng.randn(*a.shape).astype(np.float32)
            if k.endswith("running_var"):
                a = np.abs(a) + 0.5
        out[k] = a.copy()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in out.items()})
    return out


def _torch_out(module, x) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _jax_out(net, state: dict, x) -> np.ndarray:
    jm = archc.weights.jax_module_from(net, state)
    jm.eval()
    return np.asarray(nnx.jit(lambda m, v: m(v))(jm, jnp.asarray(x.transpose(0, 2, 3, 1))))


def _onnx_out(net, state: dict, x) -> np.ndarray:
    model = ob.build_model(net, weights=state)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {net.input: x})[0]


def _as_nhwc(y_torch: np.ndarray, shape: tuple) -> np.ndarray:
    """torch's output (N x C x H x W, or N x C) in the JAX module's layout `shape`."""
    y = y_torch.transpose(0, 2, 3, 1) if y_torch.ndim == 4 else y_torch
    return y.reshape(shape)


def _close(got, want, tol=1e-5):
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.abs(want).max()), 1e-6)
    assert np.abs(got - want).max() <= tol * scale, (np.abs(got - want).max(), scale)


def backends_agree(tm, net, state: dict, x) -> np.ndarray:
    """The JAX module's and the ONNX model's outputs for `x`, with the torch module `tm`'s
    weights `state`, equal `tm`'s (returned: N x C x H x W or N x C)."""
    yt = _torch_out(tm, x)
    yj = _jax_out(net, state, x)
    _close(yj, _as_nhwc(yt, yj.shape))
    _close(_onnx_out(net, state, x), yt, tol=1e-4)
    return yt


# ---- (a) the real registry: every op lowered everywhere, every fact declared ---------------
def test_every_op_has_a_case_and_a_lowering_in_every_backend():
    layer_ops = set(ops.REGISTRY) - set(NOT_LOWERED)
    assert set(NOT_LOWERED) <= set(ops.REGISTRY)
    assert set(CASES) == layer_ops
    for name, backend in BACKENDS.items():
        assert layer_ops <= set(backend.lower), (name, sorted(layer_ops - set(backend.lower)))
        assert set(backend.lower) <= layer_ops, (name, sorted(set(backend.lower) - layer_ops))


def test_every_op_states_valid_facts():
    for name, op in ops.REGISTRY.items():
        q = op.quant
        assert q.unit in ("", "head", "chain") and q.grid in ("", "keep", "requant"), name
        assert q.sign in ("", "nonneg", "keep"), name
        assert not (q.merge and q.unit != "head"), name         # a merge starts its own unit
        assert not (q.weights and not op.folds_bn), name   # compression reads folded kernels
        assert op.rank in (2, 4, None), name
        assert op.init in (None, "always", "used"), name
        assert not (op.init or op.folds_bn) or op.stateful, name
    # every op with an init kind names a class in both Python backends, and only those
    init_ops = {n for n, op in ops.REGISTRY.items() if op.init}
    for name, module in PYTHON_BACKENDS.items():
        assert set(module.INIT_CLASSES) == init_ops, name


@pytest.mark.parametrize("backend", sorted(PYTHON_BACKENDS))
def test_reserved_globals_are_every_name_the_generated_file_defines(backend):
    """The derived RESERVED_GLOBALS hold every module-level name of a generated file other
    than its network class: a network using every op, in tap mode, with an init scheme."""
    from test_torch_backend import ALL_OPS
    module = PYTHON_BACKENDS[backend]
    net = archc.load_source(ALL_OPS)
    tree = ast.parse(module.build_source(net, init="xavier_uniform", tap=True))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    assert "AllOps" in names
    assert names - {"AllOps"} <= module.RESERVED_GLOBALS, \
        sorted(names - {"AllOps"} - module.RESERVED_GLOBALS)


# ---- (b) a throwaway op, added only where docs/adding-an-op.md says ------------------------
class PReLU(ops.Op):
    """docs/adding-an-op.md's example: the registry entry."""
    name = "prelu"
    category = "activation"
    stateful = True
    bitops = ops.BitRule("elementwise", muls=1, label="PReLU")
    quant = ops.QuantRule(unit="chain")   # continues a conv -> BN -> activation unit
    rank = None                           # element-wise: its input's rank
    doc = "x if x > 0 else a_c * x, one learned slope a_c per channel (init 0.25)."
    args = (ops.Arg("x", "tensor"),)

    def params(self, inputs, out, a):
        return {"weight": inputs[0][0]}

    def elementwise_ops(self, inputs, out, a):
        return ops.numel(out)


JAX_PRELU = '''
class PReLU(nnx.Module):
    """PyTorch's PReLU on the last (channel) axis."""

    def __init__(self, channels):
        self.weight = nnx.Param(np.full(channels, 0.25, np.float32))

    def __call__(self, x):
        return jnp.where(x > 0, x, self.weight[...] * x)
'''


def _onnx_prelu(c):
    ch = c.shape[0]
    slope = c.weight("weight", (ch,))
    if c.rank() == 4:
        slope = c.node("Reshape", [slope, c.const("shape", [ch, 1, 1])], part="slope")
    return c.node("PRelu", [c.x(), slope])


@pytest.fixture
def prelu(monkeypatch):
    """`prelu` registered and lowered in exactly the places docs/adding-an-op.md lists, for
    this test only (the registry and the backends' tables are restored after it)."""
    from archc.backends import lowering as L
    from archc.backends.lower_ctx import Lowered
    ops.register(PReLU)
    monkeypatch.setitem(tb.LOWER, "prelu", lambda c: Lowered(f"nn.PReLU({c.cin()})",
                                                             f"{c.path}({c.x()})"))
    monkeypatch.setitem(tb.BACKEND.weights, "prelu", {"weight": ("weight", None)})
    monkeypatch.setitem(jb.HELPERS, "PReLU", JAX_PRELU)
    monkeypatch.setitem(jb.LOWER, "prelu", lambda c: Lowered(f"PReLU({c.cin()})",
                                                             f"{c.path}({c.x()})"))
    monkeypatch.setitem(jb.BACKEND.weights, "prelu", {"weight": ("weight", None)})
    monkeypatch.setitem(ob.LOWER, "prelu", _onnx_prelu)
    # what importing the edited jax_backend.py derives from its HELPERS
    monkeypatch.setattr(jb.BACKEND, "reserved_globals", L.reserved_globals(jb.HELPERS, jb.IMPORTS))
    try:
        yield
    finally:
        del ops.REGISTRY["prelu"]


PRELU_NET = """
network P() {
    x = input(3, 8, 8)
    x = x -> c: conv(6, kernel=3, padding=1) -> b: bn -> p: prelu -> mp: maxpool(2)
    return x -> g: global_avgpool -> f: flatten -> q: prelu -> fc: linear(4)
}
"""


def test_a_new_op_with_weights_needs_only_the_documented_places(prelu):
    net = archc.load_source(PRELU_NET)
    # analysis
    costs = {lc.name: lc for lc in archc.analyze(net).layers}
    assert costs["p"].params == 6 and costs["q"].params == 6 and costs["p"].op == "prelu"
    # torch: the module, its parameters, a state_dict key named as the IR
    torch.manual_seed(0)
    tm = tb.compile_module(net)
    assert sum(p.numel() for p in tm.parameters()) == archc.analyze(net).totals["params"]
    assert isinstance(tm.p, torch.nn.PReLU) and "q.weight" in tm.state_dict()
    state = _random_state(tm)
    x = np.random.RandomState(2).randn(2, 3, 8, 8).astype(np.float32)
    # JAX: the helper class emitted once, the torch weights loaded, the same outputs; ONNX:
    # the graph with its slope initializers, the same outputs in onnxruntime
    src = jb.build_source(net)
    assert src.count("class PReLU(nnx.Module):") == 1
    backends_agree(tm, net, state, x)
    # compression: prelu continues the conv's unit (its QuantRule), so the unit ends at it
    p = plan.make_plan(net)
    assert p.grid["c"] is None and p.grid["b"] is None and p.grid["p"] == "p"
    assert p.points["p"] is True          # symmetric: PReLU's output may be negative
    assert p.grid["mp"] == "p"            # max pool keeps its input's grid
    assert p.weighted == ("c", "fc")
    assert fold.folded_bns(net) == {"b": "c"}


# ---- (c) every op: torch, JAX and ONNX compute the same; compression classifies it ---------
@pytest.mark.parametrize("op", sorted(CASES))
def test_op_agrees_across_backends_and_is_classified(op):
    net = _net(CASES[op])
    assert op in {net.node(n)["op"] for n in net.layers()}
    torch.manual_seed(0)
    tm = tb.compile_module(net)
    assert sum(p.numel() for p in tm.parameters()) == archc.analyze(net).totals["params"]
    state = _random_state(tm)
    for layer in net.layers():   # every tensor the registry declares is in both weight tables
        d = net.node(layer)
        o = ops.get(d["op"])
        declared = set(o.params(d["in_shapes"], d["shape"], d["attrs"])) | \
            set(o.buffers(d["in_shapes"], d["shape"], d["attrs"]))
        for name, module in PYTHON_BACKENDS.items():
            assert declared <= set(module.BACKEND.weights.get(d["op"], {})), (name, layer)
    x = 2.0 * np.random.RandomState(1).randn(2, 4, 8, 8).astype(np.float32)
    backends_agree(tm, net, state, x)
    # compression: every layer placed on a grid or float, a sign for every value
    p = plan.make_plan(net)
    assert set(p.grid) == set(net.layers()) | {net.input}
    assert set(p.scored) == set(net.layers())
    assert set(plan.nonnegative(net)) == set(net.layers()) | {net.input}
    assert set(p.weighted) == {n for n in net.layers() if ops.get(net.node(n)["op"]).quant.weights}


# ---- (d) N x C values: JAX's are torch's, restored to 4-D where an op needs it -------------
RANKS = """
    f = x -> conv(6, kernel=3, padding=1) -> maxpool(2) -> flatten -> linear(8)
    g = x -> global_maxpool -> linear(8)
    h = mul(x -> conv(8, kernel=1), add(f, g) -> sigmoid)
    m = add(h -> global_avgpool, h -> global_avgpool -> flatten)
    y = concat(m -> conv(4, kernel=1) -> upsample([8, 8]), h)
"""


def test_flat_values_agree_across_backends():
    """A linear layer after a spatial flatten (VGG's, AlexNet's: PyTorch's (C, H, W) order, so
    its weights transfer unchanged), a global pool only linear reads (N x C in JAX), an
    N x C scale on a 4-D map, a merge of N x C and 4-D values, ops that need a 4-D input
    after N x C values: JAX and ONNX equal torch with the same weights."""
    net = _net(RANKS)
    src = jb.build_source(net)
    assert "flatten(" in src and "jnp.max(x, axis=(1, 2))" in src
    assert src.count("[:, None, None, :]") >= 2
    torch.manual_seed(0)
    tm = tb.compile_module(net)
    x = np.random.RandomState(3).randn(2, 4, 8, 8).astype(np.float32)
    backends_agree(tm, net, _random_state(tm), x)
