"""The resampling, rearranging and stochastic-depth ops (compiler/_ops_resample.py, issue 13):
their costs by hand against docs/costs.md, their semantics against PyTorch's own functions
(the reference: torch.nn.functional / nn.ConvTranspose2d, and torchvision's StochasticDepth
as documented: per-sample Bernoulli(1 - p) noise divided by 1 - p), and the JAX lowering
against the torch lowering, layer by layer, with the same weights."""
from __future__ import annotations

import numpy as np
import pytest

import archc
from archc.compiler import ops

torch = pytest.importorskip("torch")


def net_of(body: str, inp=(4, 7, 9)):
    c, h, w = inp
    return archc.load_source(f"network N() {{\n x = input({c}, {h}, {w})\n{body}\n}}")


def layer(body, name, inp=(4, 7, 9)):
    return archc.analyze(net_of(body, inp)).layer(name)


# ---- shapes and costs (docs/costs.md) ------------------------------------------------------------
def test_conv_transpose_shape_params_and_macs_by_hand():
    lc = layer("return x -> t: conv_transpose(6, kernel=3, stride=2, padding=1, "
               "output_padding=1, groups=2)", "t")
    # (7 - 1)*2 - 2 + 2 + 1 + 1 = 14, (9 - 1)*2 - 2 + 2 + 1 + 1 = 18
    assert lc.output == (6, 14, 18)
    assert lc.param_tensors == {"weight": 4 * (6 // 2) * 3 * 3, "bias": 6}
    assert lc.macs == 3 * 3 * (6 // 2) * 4 * 7 * 9          # kh*kw*C_out/g * input elements
    assert lc.elementwise_ops == 6 * 14 * 18                 # the bias add
    torch_params = sum(p.numel() for p in torch.nn.ConvTranspose2d(4, 6, 3, groups=2).parameters())
    assert lc.params == torch_params


def test_upsample_and_pool_costs_by_hand():
    assert layer("return upsample(x, 2)", "upsample_1").elementwise_ops == 0
    bil = layer("return upsample(x, size=[5, 4], mode=\"bilinear\")", "upsample_1")
    assert bil.output == (4, 5, 4) and bil.elementwise_ops == 4 * 4 * 5 * 4
    # adaptive 7 -> 3 rows: bins [0,3) [2,5) [4,7) read 9 rows; 9 -> 4 cols: [0,3) [2,5)
    # [4,7) [6,9) read 12 columns
    ap = layer("return adaptive_avgpool(x, [3, 4])", "adaptive_avgpool_1")
    assert ap.output == (4, 3, 4) and ap.elementwise_ops == 4 * 9 * 12
    # divisible: every element read once, as global_avgpool counts it
    assert layer("return adaptive_maxpool(x, [7, 3])", "adaptive_maxpool_1").elementwise_ops \
        == 4 * 7 * 9


def test_crop_takes_the_centre_window():
    """rows from (H - h) // 2, columns from (W - w) // 2: 7 -> 4 starts at row 1, 9 -> 4 at
    column 2; free, like a slice"""
    torch = pytest.importorskip("torch")
    from archc.backends import torch_backend as tb
    n = net_of("return crop(x, 4)")
    assert archc.analyze(n).layer("crop_1").elementwise_ops == 0
    x = torch.randn(1, 4, 7, 9)
    assert torch.equal(tb.compile_module(n)(x), x[:, :, 1:5, 2:6])


def test_rearrangements_are_free_and_keep_the_element_count():
    n = net_of("return x -> pixel_unshuffle(1) -> upsample([2, 2]) -> pixel_unshuffle(2) "
               "-> channel_shuffle(8) -> pixel_shuffle(2)")
    a = archc.analyze(n)
    shapes = [a.layer(x).output for x in ("pixel_unshuffle_2", "channel_shuffle_1",
                                          "pixel_shuffle_1")]
    assert shapes == [(16, 7, 9), (16, 7, 9), (4, 14, 18)]
    assert all(a.layer(x).elementwise_ops == 0 and a.layer(x).params == 0
               for x in ("pixel_unshuffle_2", "channel_shuffle_1", "pixel_shuffle_1"))


def test_registry_declares_state_and_bit_rules():
    assert ops.get("conv_transpose").stateful and ops.get("drop_path").stateful
    assert not any(ops.get(n).stateful for n in ("upsample", "pixel_shuffle", "adaptive_avgpool"))
    assert ops.get("conv_transpose").bitops.kind == "weighted"
    assert ops.get("adaptive_avgpool").bitops.kind == "pool"


# ---- semantics: the torch lowering is PyTorch's function ------------------------------------------
def test_channel_shuffle_is_shufflenets_permutation():
    """ShuffleNet's channel_shuffle as torchvision writes it: view(n, g, c/g, h, w),
    transpose(1, 2), flatten."""
    from archc.backends import torch_backend as tb
    m = tb.compile_module(net_of("return channel_shuffle(x, 2)"))
    x = torch.randn(2, 4, 7, 9)
    ref = x.view(2, 2, 2, 7, 9).transpose(1, 2).reshape(2, 4, 7, 9)
    assert torch.equal(m(x), ref)


def test_drop_path_torch_semantics():
    from archc.backends import torch_backend as tb
    m = tb.compile_module(net_of("return drop_path(x, 0.5)"))
    x = torch.rand(64, 4, 7, 9) + 1.0
    m.eval()
    assert torch.equal(m(x), x)                           # identity at inference
    m.train()
    torch.manual_seed(0)
    y = m(x)
    kept = (y != 0).flatten(1).all(1)
    dropped = (y == 0).flatten(1).all(1)
    assert bool((kept | dropped).all())                   # per sample: all or nothing
    assert torch.allclose(y[kept], x[kept] / 0.5)         # survivors scaled by 1 / (1 - p)
    assert 10 < int(dropped.sum()) < 54                   # p = 0.5 of 64 samples


# ---- JAX against torch, layer by layer ------------------------------------------------------------
CASES = """
    a = x -> ct1: conv_transpose(6, kernel=3, stride=2, padding=1, output_padding=1, groups=2)
    b = x -> ct2: conv_transpose(6, kernel=[2, 3], stride=[2, 1], padding=[0, 2], dilation=[1, 2],
                                 bias=false)
    n = x -> ct3: conv_transpose(4, kernel=1, stride=3, padding=1)
    a = a -> up1: upsample(size=[13, 17], mode="bilinear")
    b = b -> up2: upsample(size=[13, 17])
    n = n -> up3: upsample(size=[13, 17], mode="bilinear", align_corners=true)
    c = x -> up4: upsample(2, mode="bilinear", align_corners=true) -> pu: pixel_unshuffle(2)
          -> cs: channel_shuffle(4) -> ps: pixel_shuffle(2) -> up5: upsample([1, 2])
          -> ap: adaptive_avgpool([13, 17])
    d = x -> am: adaptive_maxpool([5, 4]) -> up6: upsample(size=[13, 17], mode="bilinear")
    e = x -> up7: upsample(size=[3, 5]) -> up8: upsample(size=[16, 20]) -> cr: crop([13, 17])
    f = x -> up9: upsample(size=[4, 4], mode="bilinear") -> aq: adaptive_avgpool([13, 17])
    return concat(a, b, n, c, d, e, f) -> dp: drop_path(0.2) -> ag: adaptive_maxpool(20)
"""


@pytest.mark.slow   # a full-network JAX compile
def test_jax_agrees_with_torch_layer_by_layer():
    """Every layer's output, eval mode, torch weights loaded into the JAX module; includes
    output sizes that do not divide (nearest and bilinear, up and down, align_corners
    both ways), negative effective padding of a transposed convolution, grouped and dilated
    transposed convolutions and adaptive pooling to larger and non-dividing sizes."""
    jax = pytest.importorskip("jax")
    from archc.backends import jax_backend as jb
    from archc.backends import torch_backend as tb
    from archc.backends import weights as W
    from flax import nnx
    net = net_of(CASES)
    seen_t, seen_j = {}, {}
    torch.manual_seed(0)
    tm = tb.compile_module(net, tap=lambda n, v: seen_t.setdefault(n, v.detach().numpy()) is None
                           or v)
    jm = jb.compile_module(net, tap=lambda n, v: seen_j.setdefault(n, v) is None or v)
    W.load_into_jax(jm, net, W.state_dict_numpy(tm))
    tm.eval()
    jm.eval()
    x = np.random.RandomState(0).randn(2, 4, 7, 9).astype(np.float32)
    tm(torch.from_numpy(x))

    def run(m, v):   # one compilation: the tapped values leave the jitted call as outputs
        m(v)
        return dict(seen_j)
    seen_j = {k: np.asarray(v) for k, v in nnx.jit(run)(jm, x.transpose(0, 2, 3, 1)).items()}
    assert list(seen_t) == net.layers() and set(seen_j) == set(net.layers())
    for name in net.layers():
        t, j = seen_t[name].transpose(0, 2, 3, 1), seen_j[name]
        assert t.shape == j.shape, name
        np.testing.assert_allclose(j, t, rtol=0, atol=1e-5 * max(np.abs(t).max(), 1.0),
                                   err_msg=name)


def test_jax_drop_path_is_per_sample_and_identity_in_eval():
    jax = pytest.importorskip("jax")
    from archc.backends import jax_backend as jb
    m = jb.compile_module(net_of("return drop_path(x, 0.5)"))
    x = jax.numpy.ones((64, 7, 9, 4))
    m.eval()
    assert np.array_equal(np.asarray(m(x)), np.asarray(x))
    m.train()
    y = np.asarray(m(x)).reshape(64, -1)
    kept, dropped = (y == 2.0).all(1), (y == 0.0).all(1)
    assert (kept | dropped).all() and 10 < dropped.sum() < 54
