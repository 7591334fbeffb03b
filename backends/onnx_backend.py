"""The ONNX backend: one lowering per op, and the model around the graph.

    build_model(net, weights=None, fold_bn=False, init=None) -> onnx.ModelProto
    write_model(net, path, ...)                  the same, serialised, written atomically
    module_tree(net)                             initializer paths (= the torch module's)

Opset 17 (IR version 8): every op used here exists in it (HardSwish since opset 14), and
onnxruntime and the common embedded runtimes read it; `OPSET` is the one place it is stated.
A lowering gets a `GraphCtx` (backends/_onnx_graph.py) and adds the layer's node; names,
ranks, weights and BN folding are that module's. Weights use the torch layout under the
torch module's state_dict keys, so this backend's `weights` table is the torch backend's.
"""
from __future__ import annotations

import json
import os

import numpy as np

from archc.compiler import ArchError, Network, analyze

from . import lowering as L
from . import torch_backend

OPSET = 17


def _opt(name):
    """An optional operand: [] when the layer has no such tensor (bias=false)."""
    return [] if name is None else [name]


def _pads(c) -> list:
    ph, pw = c.a("padding")
    return [ph, pw, ph, pw]   # ONNX: begins (H, W), then ends


# ---- one lowering per op ----------------------------------------------------------------------
def _conv(c):
    (kh, kw), out, g = c.a("kernel"), c.shape[0], c.a("groups")
    w = c.weight("weight", (out, c.in_shapes[0][0] // g, kh, kw))
    return c.node("Conv", [c.x4(), w] + _opt(c.weight("bias", (out,))), kernel_shape=[kh, kw],
                  strides=list(c.a("stride")), pads=_pads(c), dilations=list(c.a("dilation")),
                  group=g)


def _gemm(c):
    x = c.x() if c.rank() == 2 else c.node("Flatten", [c.x()], part="flatten", axis=1)
    out = c.shape[0]
    w = c.weight("weight", (out, c.in_shapes[0][0]))
    return c.node("Gemm", [x, w] + _opt(c.weight("bias", (out,))), transB=1)


def _batch_norm(c):
    ch = c.shape[0]
    scale = c.weight("weight", (ch,)) or c.const("scale", np.ones(ch))   # affine=false
    bias = c.weight("bias", (ch,)) or c.const("bias", np.zeros(ch))
    stats = [c.weight("running_mean", (ch,)), c.weight("running_var", (ch,))]
    # ONNX's momentum weighs the running value: PyTorch's 1 - momentum (training only)
    return c.node("BatchNormalization", [c.x4(), scale, bias] + stats,
                  epsilon=float(c.a("eps")), momentum=1.0 - float(c.a("momentum")))


def _lrn(c):
    size, alpha, beta, k = c.a("size"), float(c.a("alpha")), float(c.a("beta")), float(c.a("k"))
    if size % 2:
        return c.node("LRN", [c.x4()], size=size, alpha=alpha, beta=beta, bias=k)
    # An even window: ONNX centres it one channel later than PyTorch, and onnxruntime's LRN
    # takes odd sizes only. PyTorch's formula: the mean of the squares over channels
    # [c - size/2, c + size/2 - 1] (zero-padded), an average pool over the channel axis.
    ch, h, w = c.shape
    x = c.x4()
    sq = c.node("Reshape", [c.node("Mul", [x, x], part="square"),
                            c.const("planes", [0, 1, ch, h * w])], part="planes")
    mean = c.node("AveragePool", [sq], part="window", kernel_shape=[size, 1],
                  pads=[size // 2, 0, (size - 1) // 2, 0], count_include_pad=1)
    mean = c.node("Reshape", [mean, c.const("shape", [0, ch, h, w])], part="mean")
    scaled = c.node("Mul", [mean, c.const("alpha", alpha)], part="scaled")
    shifted = c.node("Add", [scaled, c.const("k", k)], part="shifted")
    return c.node("Div", [x, c.node("Pow", [shifted, c.const("beta", beta)], part="power")])


def _dropout(c):   # identity at inference; kept as a node with its rate
    return c.node("Dropout", [c.x(), c.const("ratio", float(c.a("p")))])


def _act(op_type, **attrs):
    """An ONNX activation; attrs: ONNX attribute -> the IR attribute (or a constant)."""
    def lower(c):
        return c.node(op_type, [c.x()], **{k: float(c.a(v)) if isinstance(v, str) else v
                                          for k, v in attrs.items()})
    return lower


def _relu6(c):
    return c.node("Clip", [c.x(), c.const("min", 0.0), c.const("max", 6.0)])


def _swish(c):
    return c.node("Mul", [c.x(), c.node("Sigmoid", [c.x()], part="sigmoid")])


def _pool(op_type, **extra):
    def lower(c):
        kw = {k: int(c.a(v)) for k, v in extra.items()}
        return c.node(op_type, [c.x4()], kernel_shape=list(c.a("kernel")),
                      strides=list(c.a("stride")), pads=_pads(c),
                      ceil_mode=int(c.a("ceil_mode")), **kw)
    return lower


def _slice(c):
    return c.node("Slice", [c.x(), c.const("starts", [c.a("start")]),
                            c.const("ends", [c.a("stop")]), c.const("axes", [1])])


def _add(c):
    xs = c.xs()
    return c.node("Add" if len(xs) == 2 else "Sum", xs)


LOWER = {
    "conv": _conv,
    "linear": _gemm,
    "bn": _batch_norm,
    "lrn": _lrn,
    "dropout": _dropout,
    "relu": _act("Relu"),
    "relu6": _relu6,
    "elu": _act("Elu", alpha="alpha"),
    "leaky_relu": _act("LeakyRelu", alpha="slope"),
    "sigmoid": _act("Sigmoid"),
    "tanh": _act("Tanh"),
    "swish": _swish,
    "hswish": _act("HardSwish"),
    "hsigmoid": _act("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),   # relu6(x + 3) / 6
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool", count_include_pad="count_include_pad"),
    "global_avgpool": lambda c: c.node("GlobalAveragePool", [c.x4()]),
    "global_maxpool": lambda c: c.node("GlobalMaxPool", [c.x4()]),
    "identity": lambda c: c.node("Identity", [c.x()]),
    "flatten": lambda c: c.node("Flatten", [c.x()], axis=1),
    "slice": _slice,
    "concat": lambda c: c.node("Concat", c.xs(), axis=1),
    "add": _add,
    "mul": lambda c: c.node("Mul", c.xs()),
}

BACKEND = L.BackendBase(name="onnx", lower=LOWER, reserved_attrs=torch_backend.RESERVED_ATTRS,
                        weights=torch_backend.BACKEND.weights)


# ---- the model --------------------------------------------------------------------------------
def module_tree(net: Network):
    """Initializer paths: the torch module's attribute tree (its state_dict keys)."""
    return L.module_tree(net, BACKEND)


def initial_weights(net: Network, init: str | None = None, seed: int = 0) -> dict:
    """The torch module's initial state_dict as numpy arrays: PyTorch's defaults or the
    network's `init` scheme (or `init`), drawn after torch.manual_seed(seed)."""
    try:
        import torch
    except ImportError:
        raise ArchError("the ONNX backend takes its initial weights from the torch module, and "
                        "torch is not installed", hint="give trained weights (--weights "
                        "model.safetensors), or pip install 'archc[torch]'") from None
    from . import weights
    torch.manual_seed(seed)
    return weights.state_dict_numpy(torch_backend.compile_module(net, init=init))


def _tensors(net: Network, weights, init: str | None) -> tuple:
    """({torch key: array}, where they came from) for build_model's `weights` argument."""
    if weights is None:
        scheme = L.init_scheme(net, init)
        return initial_weights(net, init), f"torch initialisation ({scheme}), seed 0"
    if init is not None:
        raise ArchError("--init chooses how weights are initialised; with --weights nothing is",
                        hint="give one of --weights and --init")
    if isinstance(weights, dict):
        return weights, "given"
    if not isinstance(weights, (str, os.PathLike)):
        raise ArchError(f"weights must be a safetensors file's path or a dict of arrays, not "
                        f"{type(weights).__name__}")
    from . import weights as W
    return W.load(weights), os.path.basename(os.fspath(weights))


def _doc(costs: dict, net: Network):
    """layer -> its node's doc string: op, output shape and the analysis' costs."""
    def doc(layer: str) -> str:
        lc = costs[layer]
        span = net.node(layer).get("span")
        where = f" {os.path.basename(span.file)}:{span.line}." if span else ""
        c, h, w = lc.output
        return (f"{lc.op}: output {c} x {h} x {w} (C x H x W); params {lc.params}, buffers "
                f"{lc.buffers}, MACs {lc.macs}, element-wise ops {lc.elementwise_ops}, "
                f"activations {lc.activations}.{where}")
    return doc


def _metadata(net: Network, analysis, source: str, folded: dict) -> dict:
    from archc.compiler.report import to_json_dict
    report = to_json_dict(analysis)
    keep = ("name", "op", "output", "params", "buffers", "macs", "flops", "elementwise_ops",
            "activations")
    layers = [{k: lc[k] for k in keep} for lc in report["layers"]]
    return {"archc.network": net.name, "archc.source": os.path.basename(net.file),
            "archc.parameters": json.dumps(report["parameters"]),
            "archc.weights": source, "archc.opset": str(OPSET),
            "archc.bn_folded": json.dumps(folded),
            "archc.totals": json.dumps(report["totals"]),
            "archc.layers": json.dumps(layers, separators=(",", ":")),
            "archc.shapes": "output and layers: [H, W, C] as in `archc analyze --format json`"}


def _value_info(helper, TensorProto, name: str, shape: tuple, rank: int):
    c, h, w = shape
    dims = ["N", c, h, w] if rank == 4 else ["N", c]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def build_model(net: Network, weights=None, fold_bn: bool = False, init: str | None = None):
    """The ONNX model of `net` (an onnx.ModelProto), deterministic.

    weights: a safetensors file in the torch layout (as `archc train` writes it), or a dict
    {torch state_dict key: array}; None: the torch module's initialisation (PyTorch's
    defaults or the network's `init` scheme, or `init`), drawn after torch.manual_seed(0).
    fold_bn: fold every BatchNormalization that follows a conv or linear layer into it."""
    try:
        from onnx import TensorProto, helper
    except ImportError:
        raise ArchError("the ONNX backend needs the onnx package",
                        hint="pip install 'archc[onnx]'") from None
    from archc import __version__

    from ._onnx_graph import build_graph
    L.check_lowerable(net, BACKEND)
    tensors, source = _tensors(net, weights, init)
    analysis = analyze(net)
    costs = {lc.name: lc for lc in analysis.layers}
    ranks = torch_backend.ranks(net)
    nodes, inits, values, folded = build_graph(net, BACKEND, tensors, fold_bn, ranks,
                                               _doc(costs, net))
    out = values[net.output]
    info = [_value_info(helper, TensorProto, values[n], net.node(n)["shape"], ranks[n])
            for n in net.layers() if n not in folded and values[n] != out]
    graph = helper.make_graph(
        nodes, net.name, [_value_info(helper, TensorProto, net.input, net.input_shape, 4)],
        [_value_info(helper, TensorProto, out, net.output_shape, ranks[net.output])],
        initializer=inits, value_info=info,
        doc_string=f"{net.name}, compiled by archc from {os.path.basename(net.file)}.")
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="archc",
                              producer_version=__version__, doc_string=net.doc or net.name,
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(model, _metadata(net, analysis, source, folded))
    return model


def write_model(net: Network, path, weights=None, fold_bn: bool = False,
                init: str | None = None):
    """Write the model to `path` atomically (nothing half-written on error); returns it.
    The path is checked before the model is built (archc._files.check_output_path)."""
    from archc._files import check_output_path, write_atomic
    check_output_path(path)
    model = build_model(net, weights=weights, fold_bn=fold_bn, init=init)
    write_atomic(path, model.SerializeToString())
    return model
