"""Registry ops: the network input, convolution and linear layers, normalisation and
activations (what a conv -> BN -> activation unit is made of).

Part of the op registry: compiler/ops.py imports this module, so these classes are in
`ops.REGISTRY` like every other op (base class and conventions: compiler/ops.py).
"""
from __future__ import annotations

from ._op import (Arg, BitRule, Op, OpError, QuantRule, fmt, numel, register, resolve_padding,
                  spatial)


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
    quant = QuantRule(unit="head", weights=True)
    folds_bn = True
    init = "always"
    doc = ("2-D convolution. kernel, stride and dilation take n or [h, w]; padding takes n, "
           "[h, w], \"same\" (dilation*(k-1)/2 per side, odd kernels) or \"tf_same\" "
           "(TensorFlow's SAME: output ceil(in/stride), any odd padding's extra row and "
           "column after).")
    args = (Arg("x", "tensor"), Arg("out", "int", minimum=1), Arg("kernel", "pair", minimum=1),
            Arg("stride", "pair", 1, minimum=1), Arg("padding", "padding", 0, minimum=0),
            Arg("dilation", "pair", 1, minimum=1), Arg("groups", "int", 1, minimum=1),
            Arg("bias", "bool", True))

    def normalize(self, a, inputs):
        a["padding"] = resolve_padding(a, inputs, a["dilation"])
        return a

    def shape(self, inputs, a):
        c, _, _ = inputs[0]
        g = a["groups"]
        if c % g:
            raise OpError(f"conv: input channels {c} are not divisible by groups={g}", arg="groups")
        if a["out"] % g:
            raise OpError(f"conv: output channels {a['out']} are not divisible by groups={g}",
                          arg="groups")
        ho, wo = spatial("conv", inputs[0], a["kernel"], a["stride"], a["padding"], a["dilation"])
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
    quant = QuantRule(unit="head", weights=True)
    rank = 2
    folds_bn = True
    init = "always"
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
class _AffineNorm(Op):
    """A normalisation with an optional per-channel affine weight and bias."""

    category = "norm"
    stateful = True
    quant = QuantRule(unit="chain")

    def params(self, inputs, out, a):
        c = inputs[0][0]
        return {"weight": c, "bias": c} if a["affine"] else {}


class _Standardise(_AffineNorm):
    """Layer and group normalisation: each element standardised by its group's statistics."""

    def elementwise_ops(self, inputs, out, a):
        # mean (add), centre (subtract), variance (multiply, add), scale by 1/std (multiply);
        # the affine scale and shift
        return (5 + (2 if a["affine"] else 0)) * numel(out)


@register
class BatchNorm(_AffineNorm):
    name = "bn"
    bitops = BitRule("norm", folds=True, label="BN")
    doc = "Batch normalisation over channels (PyTorch momentum convention)."
    args = (Arg("x", "tensor"), Arg("eps", "float", 1e-5, minimum=0.0),
            Arg("momentum", "float", 0.1, minimum=0.0), Arg("affine", "bool", True))

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


@register
class LayerNorm(_Standardise):
    name = "layer_norm"
    bitops = BitRule("norm", label="LN")
    rank = None      # over the channels of each position: N x C x H x W, or N x C (tokens)
    doc = ("Layer normalisation over the channels at each position (timm's LayerNorm2d; on a "
           "C x 1 x 1 value, over its channels: the last axis of tokens).")
    args = (Arg("x", "tensor"), Arg("eps", "float", 1e-5, minimum=0.0),
            Arg("affine", "bool", True))


@register
class GroupNorm(_Standardise):
    name = "group_norm"
    bitops = BitRule("norm", label="GN")
    doc = ("Group normalisation: the channels in `groups` groups, each normalised over its "
           "channels and positions (groups=1: over C, H and W).")
    args = (Arg("x", "tensor"), Arg("groups", "int", minimum=1),
            Arg("eps", "float", 1e-5, minimum=0.0), Arg("affine", "bool", True))

    def shape(self, inputs, a):
        c = inputs[0][0]
        if c % a["groups"]:
            raise OpError(f"group_norm: channels {c} are not divisible by groups={a['groups']}",
                          arg="groups", hint="choose groups that divide the channel count")
        return inputs[0]


@register
class LayerScale(Op):
    name = "layer_scale"
    category = "norm"
    stateful = True
    bitops = BitRule("elementwise", muls=1, label="LayerScale")
    quant = QuantRule(unit="chain")
    rank = None
    doc = ("A learned per-channel multiplier (layer scale: ConvNeXt's gamma), initialised to "
           "`init`; its multiplies are element-wise ops, not MACs.")
    args = (Arg("x", "tensor"), Arg("init", "float", 1e-6))

    def params(self, inputs, out, a):
        return {"gamma": inputs[0][0]}

    def elementwise_ops(self, inputs, out, a):
        return numel(out)


# ---- activations --------------------------------------------------------------------
class _Activation(Op):
    category = "activation"
    args = (Arg("x", "tensor"),)
    quant = QuantRule(unit="chain")
    rank = None

    def elementwise_ops(self, inputs, out, a):
        return numel(out)


def _activation(name: str, doc: str, muls: int, adds: int, extra: tuple = (), label=None,
                quant: QuantRule = _Activation.quant, gate: bool = False):
    """An activation; (muls, adds) per element for the bit-op analysis: relu, sigmoid and
    swish are the MicroNet counting code's, the others archc's convention (docs/bitops.md)."""
    cls = type(f"Act_{name}", (_Activation,), {
        "name": name, "doc": doc, "args": (Arg("x", "tensor"),) + extra, "quant": quant,
        "gate": gate,
        "bitops": BitRule("elementwise", muls=muls, adds=adds, label=label)})
    return register(cls)


# non-negative outputs; relu also keeps its input's grid outside a unit (compression)
_NONNEG = QuantRule(unit="chain", sign="nonneg")
_activation("relu", "max(x, 0)", 1, 0, label="ReLU",
            quant=QuantRule(unit="chain", grid="keep", sign="nonneg"))
_activation("relu6", "min(max(x, 0), 6)", 1, 0, quant=_NONNEG)
_activation("elu", "x if x > 0 else alpha*(exp(x)-1)", 2, 1, (Arg("alpha", "float", 1.0),))
_activation("leaky_relu", "x if x > 0 else slope*x", 1, 0, (Arg("slope", "float", 0.01),))
_activation("sigmoid", "1 / (1 + exp(-x))", 2, 1, label="Sigmoid", quant=_NONNEG, gate=True)
_activation("tanh", "tanh(x)", 2, 1)
_activation("swish", "x * sigmoid(x) (SiLU)", 3, 1)
_activation("hswish", "x * relu6(x + 3) / 6 (MobileNetV3)", 2, 1)
_activation("hsigmoid", "relu6(x + 3) / 6 (MobileNetV3)", 1, 1, quant=_NONNEG, gate=True)
_activation("gelu", "x * Phi(x), Phi the normal CDF; approximate=\"tanh\": "
            "0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))", 4, 2,
            (Arg("approximate", "string", "none", choices=("none", "tanh")),))
