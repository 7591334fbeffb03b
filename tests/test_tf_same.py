"""TensorFlow's "SAME" padding (`padding="tf_same"`) for convolutions and pools: the output
is ceil(in / stride), the total padding max((out - 1) * s + (k - 1) * d + 1 - in, 0) is split
with its odd row or column after, and torch, JAX and ONNX compute it (asymmetric where it
must be)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import archc
from archc.compiler import ArchError

from test_op_registry import _close, _random_state, backends_agree

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _tf_pads(n, k, s, d=1):
    total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _net(body: str, h: int, w: int):
    return archc.load_source(f"network T() {{\n    x = input(4, {h}, {w})\n    {body}\n"
                             "    return y\n}\n")


@pytest.mark.parametrize("h,w", [(8, 8), (9, 7), (16, 15)])
@pytest.mark.parametrize("k,s,d", [(3, 2, 1), (5, 2, 1), (3, 1, 2), (2, 2, 1), (4, 3, 1)])
def test_conv_shape_padding_and_costs(h, w, k, s, d):
    net = _net(f'y = x -> c: conv(6, kernel={k}, stride={s}, dilation={d}, padding="tf_same")',
               h, w)
    (top, bottom), (left, right) = _tf_pads(h, k, s, d), _tf_pads(w, k, s, d)
    node = net.node("c")
    assert node["attrs"]["padding"] == (top, left, bottom, right)
    assert node["shape"] == (6, math.ceil(h / s), math.ceil(w / s))
    lc = archc.analyze(net).layers[0]
    assert lc.macs == k * k * 4 * 6 * math.ceil(h / s) * math.ceil(w / s)


def test_backends_compute_tensorflow_same():
    """An even input with stride 2 pads only after: torch's padding= cannot say it."""
    body = ('a = x -> c1: conv(6, kernel=3, stride=2, padding="tf_same")\n'
            '    b = x -> mp: maxpool(3, stride=2, padding="tf_same")\n'
            '    e = x -> ap: avgpool(3, stride=2, padding="tf_same", count_include_pad=false)\n'
            '    f = x -> ai: avgpool(2, stride=1, padding="tf_same")\n'
            '    f = f -> c2: conv(4, kernel=2, stride=2, padding="tf_same")\n'
            '    y = concat(a, b, e, f)')
    net = _net(body, 8, 8)
    assert net.node("c1")["attrs"]["padding"] == (0, 0, 1, 1)
    assert net.node("ai")["attrs"]["padding"] == (0, 0, 1, 1)
    torch.manual_seed(0)
    from archc.backends import torch_backend as tb
    tm = tb.compile_module(net)
    state = _random_state(tm)
    x = np.random.RandomState(1).randn(2, 4, 8, 8).astype(np.float32) - 1.0   # mostly < 0
    yt = backends_agree(tm, net, state, x)   # JAX and ONNX equal torch
    # the reference: TensorFlow's rule written out with F.pad
    xt = torch.from_numpy(x)
    w1, b1 = torch.from_numpy(state["c1.weight"]), torch.from_numpy(state["c1.bias"])
    want_a = F.conv2d(F.pad(xt, (0, 1, 0, 1)), w1, b1, stride=2)
    want_b = F.max_pool2d(F.pad(xt, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    ones = F.pad(torch.ones(1, 1, 8, 8), (0, 1, 0, 1))
    want_e = F.avg_pool2d(F.pad(xt, (0, 1, 0, 1)), 3, 2, divisor_override=1) / \
        F.avg_pool2d(ones, 3, 2, divisor_override=1)
    f = F.avg_pool2d(F.pad(xt, (0, 1, 0, 1)), 2, 1)
    w2, b2 = torch.from_numpy(state["c2.weight"]), torch.from_numpy(state["c2.bias"])
    want_f = F.conv2d(f, w2, b2, stride=2)
    want = torch.cat([want_a, want_b, want_e, want_f], 1).numpy()
    _close(yt, want)
    assert np.all(yt[:, 6:10] > -1e30)   # no -inf from the max pool's padding


def test_tf_same_in_a_block_shared_by_two_input_sizes():
    src = """
block down(x: tensor) {
    return x -> c: conv(4, kernel=3, stride=2, padding="tf_same")
}
network T() {
    x = input(4, 10, 10)
    a = x -> d1: down
    b = a -> d2: down
    return b
}
"""
    net = archc.load_source(src)
    assert net.node("d1.c")["attrs"]["padding"] == (0, 0, 1, 1)   # 10 -> 5: total 1
    assert net.node("d2.c")["attrs"]["padding"] == (1, 1, 1, 1)   # 5 -> 3: total 2
    from archc.backends import torch_backend as tb
    torch.manual_seed(0)
    tm = tb.compile_module(net)
    state = _random_state(tm)
    x = np.random.RandomState(3).randn(1, 4, 10, 10).astype(np.float32)
    assert backends_agree(tm, net, state, x).shape == (1, 4, 3, 3)


def test_tf_same_with_ceil_mode_is_a_clear_error():
    with pytest.raises(ArchError) as e:
        _net('y = x -> maxpool(3, stride=2, padding="tf_same", ceil_mode=true)', 8, 8)
    assert "tf_same" in e.value.message and e.value.span is not None


def test_a_bad_padding_string_names_the_choices():
    with pytest.raises(ArchError) as e:
        _net('y = x -> conv(4, kernel=3, padding="valid")', 8, 8)
    assert '"tf_same"' in e.value.message and e.value.span is not None
