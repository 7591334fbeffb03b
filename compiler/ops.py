"""The op registry: every primitive layer of the .arch language, defined once.

Each op is one class, and each class holds everything archc knows about that op:
its signature (the arguments the language accepts, with types and defaults), its shape
rule (PyTorch semantics), and its costs -- parameters, buffers, MACs and element-wise
ops. The elaborator, the analysis, the bit-op rules and the backends all read these
classes; no other module restates a shape rule or a cost formula.

Shapes are (C, H, W) tuples of ints, batch dimension excluded.

Cost conventions (docs/costs.md explains them with examples):
- `macs`: multiply-accumulates of convolutions and linear layers only
  (conv: kh*kw*(C_in/groups)*C_out*H_out*W_out; linear: in*out). FLOPs = 2*MACs.
- `elementwise_ops`: every other arithmetic op, one per element it touches (bias adds,
  BN scale+shift, activations, pooling window reads, residual adds, SE scaling).
- `params`: trainable weights (conv/linear weight and bias, BN gamma and beta).
- `buffers`: non-trainable state (BN running mean and variance).

Each op also declares what the other layers of archc would otherwise have to guess:
- `stateful`: whether its layer is a module in the generated code (it holds parameters,
  buffers or a train/eval mode), or a function call;
- `bitops`: its BitRule, how the bit-op analysis (compiler/bitops.py) turns its counts into
  multiplies, adds and stored bits (docs/bitops.md).

To add an op: write one class here (or in compiler/_ops_resample.py, which holds the
resampling and rearranging ops and is imported below) with `@register`; the language,
analysis and JSON output pick it up. Backends then need one lowering entry each
(docs/adding-an-op.md; they raise a clear error naming the op until they have one).
"""
from __future__ import annotations

from dataclasses import dataclass

Shape = tuple  # (C, H, W)

REQUIRED = object()


class OpError(Exception):
    """A shape or argument error raised by an op; `arg` names the offending argument."""

    def __init__(self, message: str, hint: str | None = None, arg: str | None = None):
        super().__init__(message)
        self.message, self.hint, self.arg = message, hint, arg


@dataclass(frozen=True)
class BitRule:
    """How compiler/bitops.py counts an op (the MicroNet rules, docs/bitops.md).

    kind   weighted     a dot product per output element (conv, linear): vector-length
                        multiplies and adds, weight storage, sparsity
           norm         an unfolded normalisation: its element-wise ops, half multiplies and
                        half adds; its parameters stored at the bias precision
           elementwise  `muls` multiplies and `adds` adds per element-wise op
           pool         window reads minus one adds per output, `muls` multiplies per output
           none         free (reshapes, slices, concatenation, dropout)
    folds  a normalisation folded into a directly preceding weighted layer (BN)
    label  the type column of seed 002's Table 1 ("Conv", "FC", "Pool" ...), else the op name
    """

    kind: str = "none"
    muls: float = 0
    adds: float = 0
    folds: bool = False
    label: str | None = None


@dataclass(frozen=True)
class Arg:
    """One argument of an op.

    kind: tensor | tensors (variadic) | int | float | bool | string | pair | padding | ints
    """

    name: str
    kind: str
    default: object = REQUIRED
    choices: tuple = ()
    minimum: float | None = None
    doc: str = ""


def numel(shape: Shape) -> int:
    c, h, w = shape
    return c * h * w


def fmt(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


class Op:
    """Base class: an op with no parameters and no arithmetic, shape unchanged."""

    name: str = ""
    args: tuple = ()
    doc: str = ""
    category: str = "other"   # conv | linear | norm | activation | pool | dropout | shape |
    #                           merge | resample
    stateful: bool = False    # a module (parameters, buffers or a train/eval mode), not a call
    bitops: BitRule = BitRule()

    # -- argument normalisation -------------------------------------------------
    def normalize(self, attrs: dict, inputs: list) -> dict:
        """Turn defaults and shorthand into the explicit attributes stored in the IR."""
        return attrs

    # -- shape rule ----------------------------------------------------------------
    def shape(self, inputs: list, attrs: dict) -> Shape:
        return inputs[0]

    def channels(self, in_channels: list, attrs: dict):
        """The output channel count from the input channel counts and the attributes: the
        channel part of `shape`, written with + and - only so that backends can apply it to
        symbolic values (the constructor arguments of a generated block class); None when
        it also needs H and W. tests/test_torch_backend.py checks it against `shape`."""
        return in_channels[0]

    # -- costs -----------------------------------------------------------------------
    def params(self, inputs: list, out: Shape, attrs: dict) -> dict:
        """Trainable parameter counts by tensor name (e.g. {"weight": 576, "bias": 64})."""
        return {}

    def buffers(self, inputs: list, out: Shape, attrs: dict) -> dict:
        return {}

    def macs(self, inputs: list, out: Shape, attrs: dict) -> int:
        return 0

    def elementwise_ops(self, inputs: list, out: Shape, attrs: dict) -> int:
        return 0


REGISTRY: dict[str, Op] = {}


def register(cls):
    op = cls()
    assert op.name and op.name not in REGISTRY, op.name
    REGISTRY[op.name] = op
    return cls


def get(name: str) -> Op:
    return REGISTRY[name]


# ---- helpers --------------------------------------------------------------------
def _window_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's output length for a conv or pooling window along one axis."""
    eff = d * (k - 1) + 1
    num = size + 2 * p - eff
    if num < 0:
        return 0
    if ceil_mode:
        out = -(-num // s) + 1
        if (out - 1) * s >= size + p:  # last window must start inside the input or left pad
            out -= 1
    else:
        out = num // s + 1
    return out


def _spatial(op: str, inp: Shape, k, s, p, d=(1, 1), ceil_mode=False) -> tuple:
    _, h, w = inp
    ho = _window_out(h, k[0], s[0], p[0], d[0], ceil_mode)
    wo = _window_out(w, k[1], s[1], p[1], d[1], ceil_mode)
    if ho <= 0 or wo <= 0:
        raise OpError(
            f"{op} output would be {max(ho, 0)}x{max(wo, 0)} (H x W): input {h}x{w}, "
            f"kernel {k[0]}x{k[1]}, stride {s[0]}x{s[1]}, padding {p[0]}x{p[1]}",
            hint="the spatial size must stay positive; use a smaller kernel or stride, "
                 "more padding, or a larger input")
    return ho, wo


# ---- input ------------------------------------------------------------------------
@register
class Input(Op):
    name = "input"
    category = "input"
    doc = "The network's input image: input(channels, height, width)."
    args = (Arg("channels", "int", minimum=1), Arg("height", "int", minimum=1),
            Arg("width", "int", minimum=1))

    def shape(self, inputs, a):
        return (a["channels"], a["height"], a["width"])

    def channels(self, in_channels, a):
        return a["channels"]


# ---- convolution and linear -------------------------------------------------------
@register
class Conv(Op):
    name = "conv"
    category = "conv"
    stateful = True
    bitops = BitRule("weighted", label="Conv")
    doc = ("2-D convolution. kernel, stride and dilation take n or [h, w]; padding takes n, "
           "[h, w] or \"same\" (dilation*(k-1)/2 per side, odd kernels).")
    args = (Arg("x", "tensor"), Arg("out", "int", minimum=1), Arg("kernel", "pair", minimum=1),
            Arg("stride", "pair", 1, minimum=1), Arg("padding", "padding", 0, minimum=0),
            Arg("dilation", "pair", 1, minimum=1), Arg("groups", "int", 1, minimum=1),
            Arg("bias", "bool", True))

    def normalize(self, a, inputs):
        if a["padding"] == "same":
            pad = []
            for k, d in zip(a["kernel"], a["dilation"]):
                if (d * (k - 1)) % 2:
                    raise OpError(f"padding \"same\" needs an odd kernel, got {k}", arg="padding",
                                  hint="give the padding explicitly, e.g. padding=[0, 1]")
                pad.append(d * (k - 1) // 2)
            a["padding"] = tuple(pad)
        return a

    def shape(self, inputs, a):
        c, _, _ = inputs[0]
        g = a["groups"]
        if c % g:
            raise OpError(f"conv: input channels {c} are not divisible by groups={g}", arg="groups")
        if a["out"] % g:
            raise OpError(f"conv: output channels {a['out']} are not divisible by groups={g}",
                          arg="groups")
        ho, wo = _spatial("conv", inputs[0], a["kernel"], a["stride"], a["padding"], a["dilation"])
        return (a["out"], ho, wo)

    def channels(self, in_channels, a):
        return a["out"]

    def params(self, inputs, out, a):
        kh, kw = a["kernel"]
        p = {"weight": out[0] * (inputs[0][0] // a["groups"]) * kh * kw}
        if a["bias"]:
            p["bias"] = out[0]
        return p

    def macs(self, inputs, out, a):
        kh, kw = a["kernel"]
        return kh * kw * (inputs[0][0] // a["groups"]) * numel(out)

    def elementwise_ops(self, inputs, out, a):
        return numel(out) if a["bias"] else 0   # the bias add


@register
class Linear(Op):
    name = "linear"
    category = "linear"
    stateful = True
    bitops = BitRule("weighted", label="FC")
    doc = "Fully connected layer on a flattened input (C x 1 x 1)."
    args = (Arg("x", "tensor"), Arg("out", "int", minimum=1), Arg("bias", "bool", True))

    def shape(self, inputs, a):
        c, h, w = inputs[0]
        if (h, w) != (1, 1):
            raise OpError(f"linear needs a flat input (C x 1 x 1), got {fmt(inputs[0])}",
                          hint="apply flatten() or global_avgpool() first")
        return (a["out"], 1, 1)

    def channels(self, in_channels, a):
        return a["out"]

    def params(self, inputs, out, a):
        p = {"weight": inputs[0][0] * out[0]}
        if a["bias"]:
            p["bias"] = out[0]
        return p

    def macs(self, inputs, out, a):
        return inputs[0][0] * out[0]

    def elementwise_ops(self, inputs, out, a):
        return out[0] if a["bias"] else 0


# ---- normalisation ----------------------------------------------------------------
@register
class BatchNorm(Op):
    name = "bn"
    category = "norm"
    stateful = True
    bitops = BitRule("norm", folds=True, label="BN")
    doc = "Batch normalisation over channels (PyTorch momentum convention)."
    args = (Arg("x", "tensor"), Arg("eps", "float", 1e-5, minimum=0.0),
            Arg("momentum", "float", 0.1, minimum=0.0), Arg("affine", "bool", True))

    def params(self, inputs, out, a):
        c = inputs[0][0]
        return {"weight": c, "bias": c} if a["affine"] else {}

    def buffers(self, inputs, out, a):
        c = inputs[0][0]
        return {"running_mean": c, "running_var": c}

    def elementwise_ops(self, inputs, out, a):
        return 2 * numel(out)  # scale and shift


@register
class LRN(Op):
    name = "lrn"
    category = "norm"
    bitops = BitRule("norm")
    doc = "Local response normalisation across channels (AlexNet)."
    args = (Arg("x", "tensor"), Arg("size", "int", minimum=1), Arg("alpha", "float", 1e-4),
            Arg("beta", "float", 0.75), Arg("k", "float", 1.0))

    def elementwise_ops(self, inputs, out, a):
        return (a["size"] + 3) * numel(out)  # window sum of squares, scale, power, divide


# ---- activations --------------------------------------------------------------------
class _Activation(Op):
    category = "activation"
    args = (Arg("x", "tensor"),)

    def elementwise_ops(self, inputs, out, a):
        return numel(out)


def _activation(name: str, doc: str, muls: int, adds: int, extra: tuple = (), label=None):
    """An activation; (muls, adds) per element for the bit-op analysis: relu, sigmoid and
    swish are the MicroNet counting code's, the others archc's convention (docs/bitops.md)."""
    cls = type(f"Act_{name}", (_Activation,), {
        "name": name, "doc": doc, "args": (Arg("x", "tensor"),) + extra,
        "bitops": BitRule("elementwise", muls=muls, adds=adds, label=label)})
    return register(cls)


_activation("relu", "max(x, 0)", 1, 0, label="ReLU")
_activation("relu6", "min(max(x, 0), 6)", 1, 0)
_activation("elu", "x if x > 0 else alpha*(exp(x)-1)", 2, 1, (Arg("alpha", "float", 1.0),))
_activation("leaky_relu", "x if x > 0 else slope*x", 1, 0, (Arg("slope", "float", 0.01),))
_activation("sigmoid", "1 / (1 + exp(-x))", 2, 1, label="Sigmoid")
_activation("tanh", "tanh(x)", 2, 1)
_activation("swish", "x * sigmoid(x) (SiLU)", 3, 1)
_activation("hswish", "x * relu6(x + 3) / 6 (MobileNetV3)", 2, 1)
_activation("hsigmoid", "relu6(x + 3) / 6 (MobileNetV3)", 1, 1)

ACTIVATIONS = tuple(n for n, op in REGISTRY.items() if op.category == "activation")


# ---- pooling ---------------------------------------------------------------------------
class _Pool(Op):
    category = "pool"

    def normalize(self, a, inputs):
        if a["stride"] is None:
            a["stride"] = a["kernel"]
        for (k, p) in zip(a["kernel"], a["padding"]):
            if p > k // 2:
                raise OpError(f"{self.name}: padding {p} is more than half the kernel {k}",
                              arg="padding", hint="PyTorch requires padding <= kernel // 2")
        return a

    def shape(self, inputs, a):
        ho, wo = _spatial(self.name, inputs[0], a["kernel"], a["stride"], a["padding"],
                          ceil_mode=a["ceil_mode"])
        return (inputs[0][0], ho, wo)

    def elementwise_ops(self, inputs, out, a):
        kh, kw = a["kernel"]
        return kh * kw * numel(out)  # one read-and-combine per window element


@register
class MaxPool(_Pool):
    name = "maxpool"
    bitops = BitRule("pool", label="Pool")
    doc = "Max pooling; stride defaults to the kernel; ceil_mode as in PyTorch."
    args = (Arg("x", "tensor"), Arg("kernel", "pair", minimum=1),
            Arg("stride", "pair", None, minimum=1), Arg("padding", "pair", 0, minimum=0),
            Arg("ceil_mode", "bool", False))


@register
class AvgPool(_Pool):
    name = "avgpool"
    bitops = BitRule("pool", muls=1, label="Pool")  # one divide per output
    doc = "Average pooling; stride defaults to the kernel; ceil_mode as in PyTorch."
    args = (Arg("x", "tensor"), Arg("kernel", "pair", minimum=1),
            Arg("stride", "pair", None, minimum=1), Arg("padding", "pair", 0, minimum=0),
            Arg("ceil_mode", "bool", False), Arg("count_include_pad", "bool", True))


class _GlobalPool(Op):
    category = "pool"
    args = (Arg("x", "tensor"),)

    def shape(self, inputs, a):
        return (inputs[0][0], 1, 1)

    def elementwise_ops(self, inputs, out, a):
        return numel(inputs[0])


@register
class GlobalAvgPool(_GlobalPool):
    name = "global_avgpool"
    bitops = BitRule("pool", muls=1, label="Pool")
    doc = "Average over the whole H x W plane: C x H x W -> C x 1 x 1."


@register
class GlobalMaxPool(_GlobalPool):
    name = "global_maxpool"
    bitops = BitRule("pool", label="Pool")
    doc = "Maximum over the whole H x W plane: C x H x W -> C x 1 x 1."


# ---- regularisation and reshaping --------------------------------------------------------
@register
class Dropout(Op):
    name = "dropout"
    category = "dropout"
    stateful = True   # train/eval mode and a random stream
    doc = "Dropout with drop probability p (identity at inference)."
    args = (Arg("x", "tensor"), Arg("p", "float", 0.5, minimum=0.0))

    def normalize(self, a, inputs):
        if not 0.0 <= a["p"] < 1.0:
            raise OpError(f"dropout probability must be in [0, 1), got {a['p']}", arg="p")
        return a


@register
class Identity(Op):
    name = "identity"
    category = "shape"
    doc = "Passes its input through unchanged."
    args = (Arg("x", "tensor"),)


@register
class Flatten(Op):
    name = "flatten"
    category = "shape"
    doc = "C x H x W -> (C*H*W) x 1 x 1, in PyTorch's NCHW element order."
    args = (Arg("x", "tensor"),)

    def shape(self, inputs, a):
        return (numel(inputs[0]), 1, 1)

    def channels(self, in_channels, a):
        return None   # C * H * W


@register
class Slice(Op):
    name = "slice"
    category = "shape"
    doc = "Channels [start, stop) of the input; split() returns a list of these."
    args = (Arg("x", "tensor"), Arg("start", "int", minimum=0), Arg("stop", "int", minimum=1))

    def shape(self, inputs, a):
        c, h, w = inputs[0]
        if not a["start"] < a["stop"] <= c:
            raise OpError(f"slice [{a['start']}, {a['stop']}) is not inside the input's {c} channels")
        return (a["stop"] - a["start"], h, w)

    def channels(self, in_channels, a):
        return a["stop"] - a["start"]


# ---- merging -------------------------------------------------------------------------------
@register
class Concat(Op):
    name = "concat"
    category = "merge"
    doc = "Concatenate tensors along channels; H and W must agree."
    args = (Arg("xs", "tensors"),)

    def shape(self, inputs, a):
        _, h, w = inputs[0]
        for i, s in enumerate(inputs[1:], start=2):
            if s[1:] != (h, w):
                raise OpError(f"concat: input {i} is {fmt(s)} (C x H x W) but input 1 is "
                              f"{fmt(inputs[0])}; spatial sizes must match",
                              hint="check strides and paddings of the branches")
        return (sum(s[0] for s in inputs), h, w)

    def channels(self, in_channels, a):
        total = in_channels[0]
        for c in in_channels[1:]:
            total = total + c
        return total


@register
class Add(Op):
    name = "add"
    category = "merge"
    bitops = BitRule("elementwise", adds=1, label="Elt")
    doc = "Element-wise sum of tensors of one shape (residual connections)."
    args = (Arg("xs", "tensors"),)

    def shape(self, inputs, a):
        for i, s in enumerate(inputs[1:], start=2):
            if s != inputs[0]:
                what = "channels" if s[0] != inputs[0][0] else "spatial sizes"
                raise OpError(f"add: input {i} is {fmt(s)} (C x H x W) but input 1 is "
                              f"{fmt(inputs[0])}; {what} differ",
                              hint="a residual needs a projection (1x1 conv) when channels or "
                                   "stride change")
        return inputs[0]

    def elementwise_ops(self, inputs, out, a):
        return (len(inputs) - 1) * numel(out)


@register
class Mul(Op):
    name = "mul"
    category = "merge"
    bitops = BitRule("elementwise", muls=1, label="Scale")
    doc = "Element-wise product; the second input may be C x 1 x 1 (channel-wise scaling, SE)."
    args = (Arg("x", "tensor"), Arg("scale", "tensor"))

    def shape(self, inputs, a):
        x, s = inputs
        if s != x and s != (x[0], 1, 1):
            if x == (s[0], 1, 1):
                raise OpError(f"mul: the scale ({fmt(x)}) comes second: mul(x, scale) "
                              f"multiplies x ({fmt(s)}) channel by channel",
                              hint="write mul(x, s); the operator takes either order "
                                   "(x * s or s * x)")
            want = fmt(x) if x == (x[0], 1, 1) else f"{fmt(x)} or {x[0]}x1x1"
            raise OpError(f"mul: scale is {fmt(s)} but must be {want} "
                          f"to multiply an input of {fmt(x)}")
        return x

    def elementwise_ops(self, inputs, out, a):
        return numel(out)


# resampling, rearranging and stochastic depth: registered by their own module
from . import _ops_resample  # noqa: E402,F401

__all__ = ["REGISTRY", "ACTIVATIONS", "Arg", "BitRule", "Op", "OpError", "REQUIRED", "register", "get",
           "numel", "fmt"]
