"""The ONNX backend: one lowering per op, and the model around the graph.

    build_model(net, weights=None, fold_bn=False, init=None) -> onnx.ModelProto
    write_model(net, path, ...)                  the same, serialised, written atomically
    module_tree(net)                             initializer paths (= the torch module's)

The model around the graph (where its weights come from, the size check before anything is
allocated, its docs and metadata) is backends/_onnx_model.py's.

Opset 17 (IR version 8): every op used here exists in it (HardSwish since opset 14), and
onnxruntime and the common embedded runtimes read it; `OPSET` is the one place it is stated.
A lowering gets a `GraphCtx` (backends/_onnx_graph.py) and adds the layer's node; names,
ranks, weights and BN folding are that module's. Weights use the torch layout under the
torch module's state_dict keys, so this backend's `weights` table is the torch backend's.
"""
from __future__ import annotations

import math
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
    p = c.a("padding")   # (h, w), or (top, left, bottom, right) ("tf_same")
    return list(p) if len(p) == 4 else [p[0], p[1], p[0], p[1]]   # ONNX: begins, then ends


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


def _affine(c, y, ch: int, rank: int):
    """y * weight + bias per channel (the norms' affine part), when the layer has them."""
    scale, bias = c.weight("weight", (ch,)), c.weight("bias", (ch,))
    if scale is None:
        return y
    if rank == 4:
        scale = c.node("Reshape", [scale, c.const("channels", [ch, 1, 1])], part="scale")
        bias = c.node("Reshape", [bias, c.const("channels", [ch, 1, 1])], part="shift")
    return c.node("Add", [c.node("Mul", [y, scale], part="scaled"), bias])


def _layer_norm(c):
    """LayerNormalization over the last axis: on N x C x H x W the channels are moved last
    and back (timm's LayerNorm2d)."""
    ch, eps = c.shape[0], float(c.a("eps"))
    scale = c.weight("weight", (ch,)) or c.const("scale", np.ones(ch, np.float32))
    bias = c.weight("bias", (ch,)) or c.const("bias", np.zeros(ch, np.float32))
    if c.rank() == 2:
        return c.node("LayerNormalization", [c.x(), scale, bias], axis=-1, epsilon=eps)
    x = c.node("Transpose", [c.x()], part="last", perm=[0, 2, 3, 1])
    y = c.node("LayerNormalization", [x, scale, bias], part="norm", axis=-1, epsilon=eps)
    return c.node("Transpose", [y], perm=[0, 3, 1, 2])


def _group_norm(c):
    """Opset 17 has no GroupNormalization: N x G x (C/G * H * W) through
    InstanceNormalization (each group over its channels and positions), then the affine
    part per channel."""
    (ch, h, w), g, eps = c.shape, c.a("groups"), float(c.a("eps"))
    x = c.node("Reshape", [c.x4(), c.const("groups", [0, g, -1])], part="groups")
    x = c.node("InstanceNormalization", [x, c.const("ones", np.ones(g, np.float32)),
                                         c.const("zeros", np.zeros(g, np.float32))],
               part="norm", epsilon=eps)
    if not c.a("affine"):
        return c.node("Reshape", [x, c.const("shape", [0, ch, h, w])])
    x = c.node("Reshape", [x, c.const("shape", [0, ch, h, w])], part="back")
    return _affine(c, x, ch, 4)


def _layer_scale(c):
    ch = c.shape[0]
    gamma = c.weight("gamma", (ch,))
    if c.rank() == 4:
        gamma = c.node("Reshape", [gamma, c.const("channels", [ch, 1, 1])], part="gamma")
    return c.node("Mul", [c.x(), gamma])


def _gelu(c):
    """Opset 17 has no Gelu: 0.5 x (1 + erf(x / sqrt 2)), or with approximate="tanh"
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    x = c.x()
    if c.a("approximate") == "tanh":
        cube = c.node("Mul", [c.node("Mul", [x, x], part="square"), x], part="cube")
        inner = c.node("Add", [x, c.node("Mul", [cube, c.const("k", 0.044715)], part="k")],
                       part="inner")
        t = c.node("Tanh", [c.node("Mul", [inner, c.const("s", math.sqrt(2 / math.pi))],
                                   part="arg")], part="tanh")
    else:
        t = c.node("Erf", [c.node("Mul", [x, c.const("s", 1 / math.sqrt(2))], part="arg")],
                   part="erf")
    half = c.node("Mul", [x, c.const("half", 0.5)], part="half")
    return c.node("Mul", [half, c.node("Add", [t, c.const("one", 1.0)], part="one")])


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


def _conv_transpose(c):
    """ConvTranspose. PyTorch allows an output_padding up to max(stride, dilation) - 1,
    onnxruntime only below the stride: there, the output padding becomes the end padding.
    PyTorch's output is rows [p, p + L) of the uncropped transposed convolution (zeros
    beyond its end, bias everywhere), L = its size - 2p + output_padding: end pads p - op,
    and where that is negative, zeros padded after the convolution and the bias added
    after them."""
    (kh, kw), out, g = c.a("kernel"), c.shape[0], c.a("groups")
    cin = c.in_shapes[0][0]
    w = c.weight("weight", (cin, out // g, kh, kw))   # torch's layout, also ONNX's
    bias = c.weight("bias", (out,))
    common = {"kernel_shape": [kh, kw], "strides": list(c.a("stride")),
              "dilations": list(c.a("dilation")), "group": g}
    (ph, pw), (oh, ow) = c.a("padding"), c.a("output_padding")
    if oh < c.a("stride")[0] and ow < c.a("stride")[1]:
        return c.node("ConvTranspose", [c.x4(), w] + _opt(bias), pads=_pads(c),
                      output_padding=[oh, ow], **common)
    eh, ew = ph - oh, pw - ow
    if eh >= 0 and ew >= 0:
        return c.node("ConvTranspose", [c.x4(), w] + _opt(bias),
                      pads=[ph, pw, eh, ew], **common)
    y = c.node("ConvTranspose", [c.x4(), w], part="deconv",
               pads=[ph, pw, max(eh, 0), max(ew, 0)], **common)
    pads = c.const("pads", [0, 0, 0, 0, 0, 0, max(-eh, 0), max(-ew, 0)])
    if bias is None:
        return c.node("Pad", [y, pads])
    y = c.node("Pad", [y, pads], part="pad")
    return c.node("Add", [y, c.node("Reshape", [bias, c.const("bias_shape", [out, 1, 1])],
                                     part="bias")])


def _upsample(c):
    """Resize with PyTorch's F.interpolate coordinates: nearest is "asymmetric" + floor
    (src = floor(dst * in / out)); bilinear is "half_pixel" (align_corners=false: PyTorch's
    src = (dst + 0.5) * in / out - 0.5 for every output size, which "pytorch_half_pixel" is
    not for an output size of 1)
    or "align_corners". An integer scale is given as exact scales; a size as sizes, the
    batch dimension read from the input (opset 17's Resize has no axes)."""
    x = c.x4()
    if c.a("mode") == "nearest":
        how = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
               "nearest_mode": "floor"}
    else:
        how = {"mode": "linear", "coordinate_transformation_mode":
               "align_corners" if c.a("align_corners") else "half_pixel"}
    if c.a("scale") is not None:
        sh, sw = c.a("scale")
        scales = c.const("scales", np.array([1, 1, sh, sw], np.float32))
        return c.node("Resize", [x, "", scales], **how)
    batch = c.node("Slice", [c.node("Shape", [x], part="shape"), c.const("zero", [0]),
                             c.const("two", [2])], part="batch")
    sizes = c.node("Concat", [batch, c.const("size", list(c.a("size")))], part="sizes",
                   axis=0)
    return c.node("Resize", [x, "", "", sizes], **how)


def _pixel_unshuffle(c):
    """PyTorch's order (channel c * r^2 + i * r + j), which is not SpaceToDepth's:
    N, C, H/r, r, W/r, r -> N, C, r, r, H/r, W/r -> N, C * r^2, H/r, W/r."""
    r, (ch, h, w) = c.a("r"), c.in_shapes[0]
    x = c.node("Reshape", [c.x4(), c.const("split", [0, ch, h // r, r, w // r, r])],
               part="split")
    x = c.node("Transpose", [x], part="blocks", perm=[0, 1, 3, 5, 2, 4])
    return c.node("Reshape", [x, c.const("shape", [0, ch * r * r, h // r, w // r])])


def _channel_shuffle(c):
    """N, g, C/g, H, W -> N, C/g, g, H, W (PyTorch's F.channel_shuffle)."""
    g, (ch, h, w) = c.a("groups"), c.in_shapes[0]
    x = c.node("Reshape", [c.x4(), c.const("groups", [0, g, ch // g, h, w])], part="groups")
    x = c.node("Transpose", [x], part="swap", perm=[0, 2, 1, 3, 4])
    return c.node("Reshape", [x, c.const("shape", [0, ch, h, w])])


def _attention(c):
    """The torch helper's arithmetic (multihead_attention) as nodes: each input to
    N x p*p x g x per x tokens x d (Reshape, Transpose, Reshape), the scaled query times the
    key's transpose (MatMul broadcasts the g key/value heads over their per query heads),
    Softmax over the keys, MatMul by the value, and back to N x C x H x W."""
    heads, p = c.a("heads"), c.a("patch")
    (cq, h, w), (ck, _, _) = c.in_shapes[:2]
    dk = cq // heads
    g = ck // dk

    def tokens(i, part, per, perm_last=False):
        ch, th, tw = c.in_shapes[i]
        d = ch // (g * per)
        x = c.node("Reshape", [c.x4(i), c.const(f"{part}_split",
                                                 [0, g, per, d, th // p, p, tw // p, p])],
                   part=f"{part}_split")
        x = c.node("Transpose", [x], part=f"{part}_order",
                   perm=[0, 5, 7, 1, 2, 3, 4, 6] if perm_last else [0, 5, 7, 1, 2, 4, 6, 3])
        n = (th // p) * (tw // p)
        return c.node("Reshape", [x, c.const(f"{part}_tokens", [0, p * p, g, per] +
                                             ([d, n] if perm_last else [n, d]))],
                      part=f"{part}_tokens")

    q = c.node("Mul", [tokens(0, "q", heads // g), c.const("scale", dk ** -0.5)], part="q_scaled")
    attn = c.node("MatMul", [q, tokens(1, "k", 1, perm_last=True)], part="scores")
    attn = c.node("Softmax", [attn], part="softmax", axis=-1)
    out = c.node("MatMul", [attn, tokens(2, "v", 1)], part="mix")
    split = [0, p, p, heads, h // p, w // p, c.shape[0] // heads]
    out = c.node("Reshape", [out, c.const("split", split)], part="split")
    out = c.node("Transpose", [out], part="order", perm=[0, 3, 6, 4, 1, 5, 2])
    return c.node("Reshape", [out, c.const("shape", [0, c.shape[0], h, w])])


def _crop(c):
    (_, h, w), (oh, ow) = c.in_shapes[0], c.a("size")
    top, left = (h - oh) // 2, (w - ow) // 2      # ops.Crop: the centre window
    return c.node("Slice", [c.x4(), c.const("starts", [top, left]),
                            c.const("ends", [top + oh, left + ow]), c.const("axes", [2, 3])])


def _adaptive_pool(pool: str, reduce: str):
    """PyTorch's bins: output cell i of an axis of length n covers
    [floor(i*n/out), ceil((i+1)*n/out)). Sizes that divide the input are one pool with
    kernel = stride = n / out (1 x 1: the global pool); otherwise each axis whose size does
    not divide is reduced bin by bin (a slice and a reduction per output row or column; a
    rectangle's mean or max is that of its rows' means or maxima) and the bins
    concatenated."""
    def lower(c):
        (_, h, w), (oh, ow) = c.in_shapes[0], c.a("size")
        x = c.x4()
        if (oh, ow) == (1, 1):
            return c.node("Global" + pool, [x])
        if h % oh == 0 and w % ow == 0:
            k = [h // oh, w // ow]
            return c.node(pool, [x], kernel_shape=k, strides=k)
        axes = [(axis, n, o) for axis, n, o in ((2, h, oh), (3, w, ow)) if n != o]
        for i, (axis, n, o) in enumerate(axes):
            bins = []
            for j in range(o):
                lo, hi = (j * n) // o, -(-((j + 1) * n) // o)
                part = f"{'hw'[axis - 2]}{j}"
                piece = c.node("Slice", [x, c.const(f"{part}/starts", [lo]),
                                         c.const(f"{part}/ends", [hi]),
                                         c.const(f"{part}/axes", [axis])], part=part)
                bins.append(c.node(reduce, [piece], part=f"{part}/reduce", axes=[axis],
                                   keepdims=1))
            last = i == len(axes) - 1
            x = c.node("Concat", bins, part=None if last else f"{'hw'[axis - 2]}", axis=axis)
        return x
    return lower


LOWER = {
    "conv": _conv,
    "linear": _gemm,
    "bn": _batch_norm,
    "lrn": _lrn,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "layer_scale": _layer_scale,
    "gelu": _gelu,
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
    "conv_transpose": _conv_transpose,
    "upsample": _upsample,
    "pixel_shuffle": lambda c: c.node("DepthToSpace", [c.x4()], blocksize=c.a("r"),
                                      mode="CRD"),   # PyTorch's F.pixel_shuffle order
    "pixel_unshuffle": _pixel_unshuffle,
    "channel_shuffle": _channel_shuffle,
    "crop": _crop,
    "adaptive_avgpool": _adaptive_pool("AveragePool", "ReduceMean"),
    "adaptive_maxpool": _adaptive_pool("MaxPool", "ReduceMax"),
    # stochastic depth is the identity at inference, which is what an ONNX graph computes
    "drop_path": lambda c: c.node("Identity", [c.x()]),
    "attention": _attention,
}

BACKEND = L.BackendBase(name="onnx", lower=LOWER, reserved_attrs=torch_backend.RESERVED_ATTRS,
                        weights=torch_backend.BACKEND.weights)


# ---- the model --------------------------------------------------------------------------------
def module_tree(net: Network):
    """Initializer paths: the torch module's attribute tree (its state_dict keys)."""
    return L.module_tree(net, BACKEND)


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
    from ._onnx_model import check_size, doc, metadata, tensors_of, value_info
    L.check_lowerable(net, BACKEND)
    analysis = analyze(net)
    check_size(net, analysis.totals["params"])
    tensors, source = tensors_of(net, weights, init)
    costs = {lc.name: lc for lc in analysis.layers}
    ranks = torch_backend.BACKEND.ranks(net)
    nodes, inits, values, folded = build_graph(net, BACKEND, tensors, fold_bn, ranks,
                                               doc(costs, net))
    outputs = []          # (graph output name, layer)
    for key, node in net.output_list():
        if key is None or key == values[node]:
            outputs.append((values[node], node))
            continue
        nodes.append(helper.make_node("Identity", [values[node]], [key], name=key,
                                      doc_string=f"output '{key}': layer '{node}'"))
        outputs.append((key, node))
    out_names = {name for name, _ in outputs}
    info = [value_info(helper, TensorProto, values[n], net.node(n)["shape"], ranks[n])
            for n in net.layers() if n not in folded and values[n] not in out_names]
    graph = helper.make_graph(
        nodes, net.name, [value_info(helper, TensorProto, net.input, net.input_shape, 4)],
        [value_info(helper, TensorProto, name, net.node(n)["shape"], ranks[n])
         for name, n in outputs],
        initializer=inits, value_info=info,
        doc_string=f"{net.name}, compiled by archc from {os.path.basename(net.file)}.")
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="archc",
                              producer_version=__version__, doc_string=net.doc or net.name,
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(model, metadata(net, analysis, source, folded, OPSET))
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
