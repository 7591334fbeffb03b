"""Registry ops that resample or rearrange a feature map, and stochastic depth.

Part of the op registry: compiler/ops.py imports this module, so these classes are in
`ops.REGISTRY` like every other op (base class and conventions: compiler/ops.py).

    upsample          nearest / bilinear interpolation (PyTorch's F.interpolate)
    conv_transpose    transposed convolution (PyTorch's ConvTranspose2d)
    pixel_shuffle, pixel_unshuffle, channel_shuffle, crop    rearrangements, free
    adaptive_avgpool, adaptive_maxpool                 pooling to a given output size
    drop_path         stochastic depth (torchvision's StochasticDepth, mode "row")
"""
from __future__ import annotations

from ._op import Arg, BitRule, Op, OpError, fmt, numel, register


def _positive(op: str, shape: tuple, what: str) -> None:
    if shape[1] <= 0 or shape[2] <= 0:
        raise OpError(f"{op} output would be {max(shape[1], 0)}x{max(shape[2], 0)} (H x W): "
                      f"{what}", hint="the spatial size must stay positive")


# ---- interpolation ---------------------------------------------------------------------------
@register
class Upsample(Op):
    name = "upsample"
    category = "resample"
    doc = ("Resize H x W by an integer `scale` (n or [h, w]) or to a `size` (n or [h, w]), "
           "exactly one of them; mode \"nearest\" or \"bilinear\" with PyTorch's "
           "F.interpolate semantics (align_corners only with bilinear).")
    args = (Arg("x", "tensor"), Arg("scale", "pair", None, minimum=1),
            Arg("size", "pair", None, minimum=1),
            Arg("mode", "string", "nearest", choices=("nearest", "bilinear")),
            Arg("align_corners", "bool", False))
    # bilinear: 4 multiply-adds per output (4 multiplies, 3 adds); nearest copies
    bitops = BitRule("elementwise", muls=1, adds=0.75, label="Upsample")

    def normalize(self, a, inputs):
        if (a["scale"] is None) == (a["size"] is None):
            raise OpError("upsample needs exactly one of scale and size",
                          arg="size" if a["scale"] is not None else None,
                          hint="upsample(x, 2) doubles H and W; upsample(x, size=[h, w]) "
                               "resizes to h x w")
        if a["align_corners"] and a["mode"] != "bilinear":
            raise OpError("upsample: align_corners=true needs mode=\"bilinear\"",
                          arg="align_corners",
                          hint="PyTorch defines align_corners only for interpolating modes")
        return a

    def shape(self, inputs, a):
        c, h, w = inputs[0]
        if a["size"] is not None:
            return (c, *a["size"])
        return (c, h * a["scale"][0], w * a["scale"][1])

    def elementwise_ops(self, inputs, out, a):
        return 4 * numel(out) if a["mode"] == "bilinear" else 0


# ---- transposed convolution ------------------------------------------------------------------
@register
class ConvTranspose(Op):
    name = "conv_transpose"
    category = "conv"
    stateful = True
    bitops = BitRule("weighted", label="Deconv")
    init = "used"   # JAX's class for it is a helper, defined only in files that use it
    doc = ("Transposed 2-D convolution (PyTorch's ConvTranspose2d), per axis "
           "out = (in - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1; "
           "output_padding must be smaller than stride or dilation.")
    args = (Arg("x", "tensor"), Arg("out", "int", minimum=1), Arg("kernel", "pair", minimum=1),
            Arg("stride", "pair", 1, minimum=1), Arg("padding", "pair", 0, minimum=0),
            Arg("output_padding", "pair", 0, minimum=0), Arg("groups", "int", 1, minimum=1),
            Arg("dilation", "pair", 1, minimum=1), Arg("bias", "bool", True))

    def shape(self, inputs, a):
        c, h, w = inputs[0]
        g = a["groups"]
        if c % g:
            raise OpError(f"conv_transpose: input channels {c} are not divisible by "
                          f"groups={g}", arg="groups")
        if a["out"] % g:
            raise OpError(f"conv_transpose: output channels {a['out']} are not divisible by "
                          f"groups={g}", arg="groups")
        for op_, s, d in zip(a["output_padding"], a["stride"], a["dilation"]):
            if op_ >= s and op_ >= d:
                raise OpError(f"conv_transpose: output_padding {op_} must be smaller than "
                              f"stride {s} or dilation {d}", arg="output_padding",
                              hint="output_padding chooses among the output sizes that a "
                                   "strided convolution maps to the input size (PyTorch's rule)")
        size = tuple((n - 1) * s - 2 * p + d * (k - 1) + op_ + 1 for n, k, s, p, op_, d in zip(
            (h, w), a["kernel"], a["stride"], a["padding"], a["output_padding"], a["dilation"]))
        out = (a["out"], *size)
        _positive("conv_transpose", out, f"input {h}x{w}, kernel {fmt(a['kernel'])}, padding "
                                         f"{fmt(a['padding'])}")
        return out

    def channels(self, in_channels, a):
        return a["out"]

    def params(self, inputs, out, a):
        # torch's layout: weight C_in x (C_out / groups) x kh x kw
        kh, kw = a["kernel"]
        p = {"weight": inputs[0][0] * (out[0] // a["groups"]) * kh * kw}
        if a["bias"]:
            p["bias"] = out[0]
        return p

    def macs(self, inputs, out, a):
        # every input element is multiplied into kh * kw * C_out/groups outputs
        kh, kw = a["kernel"]
        return kh * kw * (out[0] // a["groups"]) * numel(inputs[0])

    def elementwise_ops(self, inputs, out, a):
        return numel(out) if a["bias"] else 0   # the bias add


# ---- rearrangements (free) -------------------------------------------------------------------
@register
class PixelShuffle(Op):
    name = "pixel_shuffle"
    category = "shape"
    doc = "C x H x W -> C/r^2 x H*r x W*r in PyTorch's element order (F.pixel_shuffle)."
    args = (Arg("x", "tensor"), Arg("r", "int", minimum=1))

    def shape(self, inputs, a):
        c, h, w = inputs[0]
        r = a["r"]
        if c % (r * r):
            raise OpError(f"pixel_shuffle: {c} channels are not divisible by r^2 = {r * r}",
                          arg="r")
        return (c // (r * r), h * r, w * r)

    def channels(self, in_channels, a):
        return None   # C / r^2


@register
class PixelUnshuffle(Op):
    name = "pixel_unshuffle"
    category = "shape"
    doc = "C x H x W -> C*r^2 x H/r x W/r, the inverse of pixel_shuffle (F.pixel_unshuffle)."
    args = (Arg("x", "tensor"), Arg("r", "int", minimum=1))

    def shape(self, inputs, a):
        c, h, w = inputs[0]
        r = a["r"]
        if h % r or w % r:
            raise OpError(f"pixel_unshuffle: the input's {h}x{w} (H x W) is not divisible "
                          f"by r = {r}", arg="r")
        return (c * r * r, h // r, w // r)

    def channels(self, in_channels, a):
        return None   # C * r^2


@register
class ChannelShuffle(Op):
    name = "channel_shuffle"
    category = "shape"
    doc = ("Channel i*(C/groups) + j moves to j*groups + i (ShuffleNet; PyTorch's "
           "F.channel_shuffle).")
    args = (Arg("x", "tensor"), Arg("groups", "int", minimum=1))

    def shape(self, inputs, a):
        c = inputs[0][0]
        if c % a["groups"]:
            raise OpError(f"channel_shuffle: {c} channels are not divisible by "
                          f"groups={a['groups']}", arg="groups")
        return inputs[0]


@register
class Crop(Op):
    name = "crop"
    category = "shape"
    doc = ("The centre size[0] x size[1] window of H x W (n or [h, w], at most the input): rows "
           "from (H - h) // 2, columns from (W - w) // 2 (U-Net's skip connections).")
    args = (Arg("x", "tensor"), Arg("size", "pair", minimum=1))

    def shape(self, inputs, a):
        c, h, w = inputs[0]
        if a["size"][0] > h or a["size"][1] > w:
            raise OpError(f"crop: {fmt(a['size'])} is larger than the input's {h}x{w} (H x W)",
                          arg="size")
        return (c, *a["size"])


# ---- adaptive pooling ------------------------------------------------------------------------
def _bins(n: int, out: int) -> int:
    """Input elements read along one axis: PyTorch's bin i covers
    [floor(i*n/out), ceil((i+1)*n/out))."""
    return sum(-(-((i + 1) * n) // out) - (i * n) // out for i in range(out))


class _AdaptivePool(Op):
    category = "pool"
    args = (Arg("x", "tensor"), Arg("size", "pair", minimum=1))

    def shape(self, inputs, a):
        return (inputs[0][0], *a["size"])

    def elementwise_ops(self, inputs, out, a):
        c, h, w = inputs[0]
        return c * _bins(h, a["size"][0]) * _bins(w, a["size"][1])  # one read per bin element


@register
class AdaptiveAvgPool(_AdaptivePool):
    name = "adaptive_avgpool"
    bitops = BitRule("pool", muls=1, label="Pool")
    doc = ("Average pooling to an output size (n or [h, w]); output cell i of an axis of "
           "length n averages [floor(i*n/out), ceil((i+1)*n/out)) (PyTorch's).")


@register
class AdaptiveMaxPool(_AdaptivePool):
    name = "adaptive_maxpool"
    bitops = BitRule("pool", label="Pool")
    doc = "Max pooling to an output size (n or [h, w]), with adaptive_avgpool's bins."


# ---- stochastic depth ------------------------------------------------------------------------
@register
class DropPath(Op):
    name = "drop_path"
    category = "dropout"
    stateful = True   # train/eval mode and a random stream
    rank = None
    doc = ("Stochastic depth: in training each sample is zeroed with probability p, the "
           "others scaled by 1/(1-p); identity at inference (torchvision's StochasticDepth, "
           "mode \"row\").")
    args = (Arg("x", "tensor"), Arg("p", "float", minimum=0.0))

    def normalize(self, a, inputs):
        if not 0.0 <= a["p"] < 1.0:
            raise OpError(f"drop_path probability must be in [0, 1), got {a['p']}", arg="p")
        return a
