"""Costs (docs/costs.md) checked against hand computation and, for shapes, PyTorch."""
from __future__ import annotations

import pytest

import archc


def one(layer: str, cin=8, h=10, w=10):
    net = archc.load_source(f"network N() {{\n x = input({cin}, {h}, {w})\n return t: {layer}\n}}")
    return archc.analyze(net).layer("t")


@pytest.mark.parametrize("layer,out,params,macs", [
    # kh*kw*(Cin/g)*Cout*Ho*Wo ; weight Cout*(Cin/g)*kh*kw + bias
    ("conv(x, 16, kernel=3)", (16, 8, 8), 16 * 8 * 9 + 16, 9 * 8 * 16 * 64),
    ("conv(x, 16, kernel=3, padding=\"same\", bias=false)", (16, 10, 10), 16 * 8 * 9, 9 * 8 * 16 * 100),
    ("conv(x, 16, kernel=3, stride=2, padding=1)", (16, 5, 5), 1168, 9 * 8 * 16 * 25),
    ("conv(x, 16, kernel=3, groups=4)", (16, 8, 8), 16 * 2 * 9 + 16, 9 * 2 * 16 * 64),
    ("conv(x, 8, kernel=3, groups=8, padding=1)", (8, 10, 10), 8 * 9 + 8, 9 * 1 * 8 * 100),
    ("conv(x, 4, kernel=[1, 3], padding=[0, 1])", (4, 10, 10), 4 * 8 * 3 + 4, 3 * 8 * 4 * 100),
    ("conv(x, 4, kernel=3, dilation=2)", (4, 6, 6), 4 * 8 * 9 + 4, 9 * 8 * 4 * 36),
    ("conv(x, 4, kernel=3, dilation=2, padding=\"same\")", (4, 10, 10), 292, 9 * 8 * 4 * 100),
])
def test_conv(layer, out, params, macs):
    lc = one(layer)
    assert lc.output == out and lc.params == params and lc.macs == macs and lc.flops == 2 * macs


def test_linear_and_bn():
    net = archc.load_source("network N() {\n x = input(8, 4, 4)\n"
                            " y = x -> b: bn -> flatten -> fc: linear(10)\n return y\n}")
    a = archc.analyze(net)
    fc, b = a.layer("fc"), a.layer("b")
    assert fc.param_tensors == {"weight": 128 * 10, "bias": 10} and fc.macs == 1280
    assert b.param_tensors == {"weight": 8, "bias": 8} and b.buffers == 16 and b.macs == 0
    assert b.elementwise_ops == 2 * 8 * 16
    assert a.totals["params"] == 1290 + 16 and a.totals["buffers"] == 16
    assert a.totals["size_bytes"] == (1290 + 16) * 4
    assert archc.analyze(net, bits=8).totals["size_bytes"] == 1306


@pytest.mark.parametrize("size", [5, 6, 7, 8, 13, 14])
@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 0), (3, 2, 1), (3, 3, 1), (5, 3, 2)])
@pytest.mark.parametrize("ceil", [False, True])
def test_pool_shapes_match_pytorch(size, k, s, p, ceil):
    torch = pytest.importorskip("torch")
    if size + 2 * p < k:
        pytest.skip("window larger than the padded input")
    ref = torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)(torch.zeros(1, 2, size, size + 1)).shape
    lc = one(f"maxpool(x, {k}, stride={s}, padding={p}, ceil_mode={'true' if ceil else 'false'})",
             cin=2, h=size, w=size + 1)
    assert lc.output == tuple(ref[1:])
    assert lc.elementwise_ops == k * k * ref[1] * ref[2] * ref[3]


def test_peak_activations_on_a_residual_net():
    src = """network R() {
    x = input(4, 8, 8)
    a = c1: conv(x, 8, kernel=1)
    b = c2: conv(a, 8, kernel=3, padding=1)
    c = r: relu(b)
    return s: add(a, c)
}"""
    t = archc.analyze(archc.load_source(src)).totals
    # input 256; c1 makes a (512) while input alive -> 768, input dies;
    # c2: a + b = 1024; r: a + b + c = 1536, b dies; s: a + c + out = 1536
    assert t["peak_activations"] == 1536 and t["peak_activations_at"] == "r"
    assert t["activations"] == 512 * 4


def test_folding_and_no_fold():
    from archc.compiler.analysis import fold
    n = archc.load("sqnxt", stages=[1, 3, 1, 1])
    a = archc.analyze(n)
    rows = fold(a.layers)
    folded = {r.name: r for r in rows}
    r = folded["stage2.block[2-3].conv1.conv"]
    assert r.repeat == 2 and r.params == 2 * a.layer("stage2.block2.conv1.conv").params
    assert len(fold(a.layers, enabled=False)) == len(a.layers)
    assert sum(r.params for r in rows) == a.totals["params"]
    assert sum(r.macs for r in rows) == a.totals["macs"]
