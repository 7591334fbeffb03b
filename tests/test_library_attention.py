"""MobileNetV4 and MobileViT, and the attention op they are written with. Their counts
against timm's (parameters, buffers, conv + linear and attention matmul MACs, outputs, and
the function with timm's weights) are tests/test_timm_oracle.py's, from
tests/data/timm_counts.json. The attention op's arithmetic is checked here against a direct
computation; JAX and ONNX against torch by tests/test_op_registry.py and the backends'
bundled-network tests."""
from __future__ import annotations


import pytest
from archc.compiler import ArchError

import archc

def test_resolution_and_bad_variant():
    net = archc.load("mobilevit", variant="s", resolution=128)
    assert net.input_shape == (3, 128, 128)
    assert archc.load("mobilenet_v4", variant="conv_medium").input_shape == (3, 256, 256)
    assert archc.load("mobilenet_v4", resolution=160).input_shape == (3, 160, 160)
    with pytest.raises(ArchError, match="variant must be"):
        archc.load("mobilevit", variant="m")
    # MobileViT's 2 x 2 patches need even feature maps before each transformer
    with pytest.raises(ArchError, match="patch=2"):
        archc.load("mobilevit", resolution=80)


def _net(body: str, size: int = 8):
    return archc.load_source(f"network T() {{\n    x = input(12, {size}, {size})\n    {body}\n"
                             "    return y\n}\n")


def test_attention_costs():
    # 4 heads of d_k = 3 against 2 key/value heads (d_v = 5) at a quarter of the positions
    net = _net("y = attention(x, x -> conv(6, 1, stride=2), x -> conv(10, 1, stride=2), 4)")
    lc = next(lc for lc in archc.analyze(net).layers if lc.op == "attention")
    assert lc.output == (20, 8, 8)
    scores = 4 * 64 * 16
    assert lc.macs == scores * (3 + 5)
    assert lc.params == 0
    # patches: each of the 4 offsets attends among its own 16 positions
    net = _net("y = attention(x, x, x, 3, patch=2)")
    lc = next(lc for lc in archc.analyze(net).layers if lc.op == "attention")
    assert lc.macs == 3 * 64 * 64 // 4 * (4 + 4)
    assert archc.analyze(net).totals["matmul_macs"] == lc.macs


def test_attention_bitops_count_activation_products():
    from archc.compiler.bitops import bitops
    net = _net("y = attention(x, x, x, 3, patch=2)")
    c = next(c for c in bitops(net).layers if c.op == "attention")
    scores, outputs = 3 * 64 * 16, 12 * 64
    n = 12 * 64 + 3 * scores
    assert c.muls == scores * 8 + n / 2
    assert c.adds == scores * 8 - scores - outputs + n / 2
    assert c.mul_bits == 32 and c.storage_bits == 0


@pytest.mark.parametrize("body, match", [
    ("y = attention(x, x, x, 5)", "not divisible by heads=5"),
    ("y = attention(x, x -> conv(6, 1), x, 3)", "multiple of the head size"),
    ("y = attention(x, x -> conv(8, 1), x, 3)", "do not divide heads"),
    ("y = attention(x, x -> conv(4, 1), x -> conv(5, 1), 6)", "value's 5 channels"),
    ("y = attention(x, x, x -> conv(12, 1, stride=2), 3)", "positions must agree"),
    ("y = attention(x, x -> conv(12, 1, stride=2), x -> conv(12, 1, stride=2), 3, patch=2)",
     "needs key and value"),
    ("y = attention(x, x, x, 3, patch=3)", "not divisible by patch=3"),
])
def test_attention_errors(body, match):
    with pytest.raises(ArchError, match=match):
        _net(body)


def test_attention_computes_softmax_qkt_v():
    """The generated torch code against a direct per-head computation (MobileViT's unfold:
    position (h, w) attends to the positions with its (h % p, w % p))."""
    torch = pytest.importorskip("torch")
    from archc.backends import torch_backend as tb
    net = _net("y = attention(x, x -> conv(6, 1), x -> conv(4, 1), 4, patch=2)", size=4)
    m = tb.compile_module(net).eval()
    x = torch.randn(2, 12, 4, 4)
    got = m(x)
    k, v = m.get_submodule(net.layers()[0])(x), m.get_submodule(net.layers()[1])(x)
    want = torch.zeros(2, 8, 4, 4)
    for h in range(4):            # query head h uses key/value head h // 2 (2 groups)
        g = h // 2
        for oi in range(2):
            for oj in range(2):
                q_ = x[:, 3 * h:3 * h + 3, oi::2, oj::2].flatten(2)          # N x 3 x 4
                k_ = k[:, 3 * g:3 * g + 3, oi::2, oj::2].flatten(2)
                v_ = v[:, 2 * g:2 * g + 2, oi::2, oj::2].flatten(2)          # N x 2 x 4
                a = torch.softmax(q_.transpose(1, 2) @ k_ / 3 ** 0.5, dim=-1)  # N x 4 x 4
                want[:, 2 * h:2 * h + 2, oi::2, oj::2] = (v_ @ a.transpose(1, 2)).reshape(
                    2, 2, 2, 2)
    assert torch.allclose(got, want, atol=1e-6)


def test_attention_with_downsampled_keys_agrees_across_backends():
    """MobileNetV4's kv strides (keys at fewer positions than queries) with two key/value
    heads: JAX and onnxruntime compute torch's output (tests/test_op_registry.py's case is
    multi-query within patches)."""
    pytest.importorskip("jax")
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    import numpy as np
    from test_op_registry import _net as _case
    from test_op_registry import _random_state, backends_agree

    from archc.backends import torch_backend as tb
    net = _case("k = x -> conv(4, 3, stride=2, padding=1, groups=4)\n"
                "    y = attention(x -> conv(8, 1), k -> conv(4, 1), k -> conv(6, 1), 4)")
    torch.manual_seed(0)
    tm = tb.compile_module(net)
    state = _random_state(tm)
    x = np.random.RandomState(1).randn(2, 4, 8, 8).astype(np.float32)
    assert backends_agree(tm, net, state, x).shape == (2, 12, 8, 8)
