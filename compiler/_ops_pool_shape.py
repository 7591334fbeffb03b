"""Registry ops: pooling, dropout, reshaping and slicing, and the merges (concat, add, mul).

Part of the op registry: compiler/ops.py imports this module, so these classes are in
`ops.REGISTRY` like every other op (base class and conventions: compiler/ops.py).
"""
from __future__ import annotations

from ._op import (Arg, BitRule, Op, OpError, QuantRule, fmt, numel, register, resolve_padding,
                  spatial)


# ---- pooling ---------------------------------------------------------------------------
class _Pool(Op):
    category = "pool"
    quant = QuantRule(grid="keep", sign="keep")

    def normalize(self, a, inputs):
        if a["stride"] is None:
            a["stride"] = a["kernel"]
        if a["padding"] == "tf_same":   # TensorFlow's: may pad more than PyTorch allows
            a["padding"] = resolve_padding(a, inputs)
            return a
        a["padding"] = resolve_padding(a, inputs)
        for (k, p) in zip(a["kernel"], a["padding"]):
            if p > k // 2:
                raise OpError(f"{self.name}: padding {p} is more than half the kernel {k}",
                              arg="padding", hint="PyTorch requires padding <= kernel // 2")
        return a

    def shape(self, inputs, a):
        ho, wo = spatial(self.name, inputs[0], a["kernel"], a["stride"], a["padding"],
                          ceil_mode=a["ceil_mode"])
        return (inputs[0][0], ho, wo)

    def elementwise_ops(self, inputs, out, a):
        kh, kw = a["kernel"]
        return kh * kw * numel(out)  # one read-and-combine per window element


@register
class MaxPool(_Pool):
    name = "maxpool"
    bitops = BitRule("pool", label="Pool")
    doc = ("Max pooling; stride defaults to the kernel; ceil_mode as in PyTorch; padding as "
           "conv's (\"tf_same\": padded positions never win).")
    args = (Arg("x", "tensor"), Arg("kernel", "pair", minimum=1),
            Arg("stride", "pair", None, minimum=1), Arg("padding", "padding", 0, minimum=0),
            Arg("ceil_mode", "bool", False))


@register
class AvgPool(_Pool):
    name = "avgpool"
    bitops = BitRule("pool", muls=1, label="Pool")  # one divide per output
    quant = QuantRule(grid="requant", sign="keep")
    doc = ("Average pooling; stride defaults to the kernel; ceil_mode as in PyTorch; padding "
           "as conv's (count_include_pad counts padded positions, TensorFlow's SAME does not).")
    args = (Arg("x", "tensor"), Arg("kernel", "pair", minimum=1),
            Arg("stride", "pair", None, minimum=1), Arg("padding", "padding", 0, minimum=0),
            Arg("ceil_mode", "bool", False), Arg("count_include_pad", "bool", True))


class _GlobalPool(Op):
    category = "pool"
    args = (Arg("x", "tensor"),)
    quant = QuantRule(grid="keep", sign="keep")

    def shape(self, inputs, a):
        return (inputs[0][0], 1, 1)

    def elementwise_ops(self, inputs, out, a):
        return numel(inputs[0])


@register
class GlobalAvgPool(_GlobalPool):
    name = "global_avgpool"
    bitops = BitRule("pool", muls=1, label="Pool")
    quant = QuantRule(grid="requant", sign="keep")
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
    quant = QuantRule(grid="keep", sign="keep")
    rank = None
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
    quant = QuantRule(unit="chain", grid="keep", sign="keep")
    rank = None
    doc = "Passes its input through unchanged."
    args = (Arg("x", "tensor"),)


@register
class Flatten(Op):
    name = "flatten"
    category = "shape"
    quant = QuantRule(grid="keep", sign="keep")
    rank = 2
    doc = "C x H x W -> (C*H*W) x 1 x 1, in PyTorch's NCHW element order."
    args = (Arg("x", "tensor"),)

    def shape(self, inputs, a):
        return (numel(inputs[0]), 1, 1)

    def channels(self, in_channels, a):
        return None   # C * H * W

    def channels_at(self, in_channels, a, in_shapes):
        return in_channels[0] if tuple(in_shapes[0][1:]) == (1, 1) else None


@register
class Slice(Op):
    name = "slice"
    category = "shape"
    quant = QuantRule(grid="keep", sign="keep")
    rank = None
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
    quant = QuantRule(unit="head", merge=True, sign="keep")
    rank = None
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
    quant = QuantRule(unit="head", merge=True, sign="keep")
    rank = None
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
    quant = QuantRule(unit="head", sign="keep")
    rank = None
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
