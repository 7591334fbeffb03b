"""Registry ops between two activation tensors: attention over the positions of a feature map.

Part of the op registry: compiler/ops.py imports this module, so these classes are in
`ops.REGISTRY` like every other op (base class and conventions: compiler/ops.py).

Tokens are positions. A token sequence is the H x W positions of a C x H x W feature map,
its embedding the C channels, in row-major order (position h * W + w). A layer applied to
each token alone is then an op of the feature map: a transformer's linear layer is a 1 x 1
convolution (the same weight, parameters and MACs), its LayerNorm over the embedding a
normalisation over channels at each position. Only attention mixes tokens, so it is the one
op this module adds:

    attention(q, k, v, heads, patch=1)    softmax(q k^T / sqrt(d_k)) v, per head

`patch` = p restricts each position to the positions with the same offset inside p x p
patches: MobileViT's unfold -> transformer -> fold, whose sequences are those positions.
"""
from __future__ import annotations

from ._op import Arg, BitRule, Op, OpError, QuantRule, fmt, numel, register


@register
class Attention(Op):
    name = "attention"
    category = "attention"
    # the two matrix products between activations, at activation precision (docs/bitops.md)
    bitops = BitRule("matmul", label="MatMul")
    # a product of two activations, like mul: starts a quantized unit of its own
    quant = QuantRule(unit="head")
    doc = ("Multi-head scaled dot-product attention over positions: q is heads*d_k x H x W, "
           "k is g*d_k x H' x W' and v g*d_v x H' x W', with g key/value heads dividing heads "
           "(g = 1: multi-query, k and v shared by every head); out = softmax(q_h k_g^T / "
           "sqrt(d_k)) v_g per head h (group g = h*g/heads), heads*d_v x H x W, channel "
           "h*d_v + j. Heads are consecutive channel blocks. patch=p: each position attends "
           "only to the positions with its offset inside p x p patches (MobileViT's "
           "unfold/fold; H' x W' = H x W, divisible by p). MACs: the two products, "
           "heads * HW * H'W' * (d_k + d_v) / p^2.")
    args = (Arg("q", "tensor"), Arg("k", "tensor"), Arg("v", "tensor"),
            Arg("heads", "int", minimum=1), Arg("patch", "int", 1, minimum=1))

    @staticmethod
    def dims(inputs, a) -> tuple:
        """(heads, key/value heads, d_k, d_v, query positions, key positions, patch area)."""
        (cq, h, w), (ck, hk, wk), (cv, hv, wv) = inputs
        heads, p = a["heads"], a["patch"]
        if cq % heads:
            raise OpError(f"attention: the query's {cq} channels are not divisible by "
                          f"heads={heads}", arg="heads",
                          hint="the query holds heads blocks of d_k channels each")
        dk = cq // heads
        if ck % dk:
            raise OpError(f"attention: the key's {ck} channels are not a multiple of the "
                          f"head size d_k = {cq} / {heads} = {dk}", arg="k",
                          hint="the key holds g heads of d_k channels (g = 1: multi-query)")
        g = ck // dk
        if heads % g:
            raise OpError(f"attention: {g} key heads do not divide heads={heads}", arg="k",
                          hint="each key/value head serves heads / g query heads")
        if cv % g:
            raise OpError(f"attention: the value's {cv} channels are not divisible by the "
                          f"{g} key/value heads", arg="v")
        if (hv, wv) != (hk, wk):
            raise OpError(f"attention: key is {fmt(inputs[1])} but value is {fmt(inputs[2])} "
                          "(C x H x W); their positions must agree", arg="v")
        if p > 1:
            if (hk, wk) != (h, w):
                raise OpError(f"attention: patch={p} needs key and value at the query's "
                              f"{h}x{w} positions, got {hk}x{wk}", arg="patch")
            if h % p or w % p:
                raise OpError(f"attention: the query's {h}x{w} (H x W) is not divisible by "
                              f"patch={p}", arg="patch",
                              hint="resize the feature map to a multiple of the patch size "
                                   "first (MobileViT interpolates)")
        return heads, g, dk, cv // g, h * w, hk * wk, p * p

    def shape(self, inputs, a):
        heads, _, _, dv, _, _, _ = self.dims(inputs, a)
        return (heads * dv, inputs[0][1], inputs[0][2])

    def channels(self, in_channels, a):
        return None   # heads * d_v: needs k's and v's channel counts and a division

    def scores(self, inputs, a) -> int:
        """Attention weights computed: heads * HW * H'W' / p^2."""
        heads, _, _, _, n, m, area = self.dims(inputs, a)
        return heads * n * m // area

    def macs(self, inputs, out, a):
        _, _, dk, dv, _, _, _ = self.dims(inputs, a)
        return self.scores(inputs, a) * (dk + dv)   # q k^T, then the weights times v

    def elementwise_ops(self, inputs, out, a):
        # the query's scaling by 1/sqrt(d_k), and per weight softmax's exp, sum and divide
        return numel(inputs[0]) + 3 * self.scores(inputs, a)
