"""Network library, part C (issue 13): ShuffleNet V2, EfficientNet, DenseNet, RegNet, MnasNet,
the segmentation networks (FCN, DeepLabV3, LR-ASPP) and U-Net.

References:
- tests/data/torchvision_counts_c.json: parameters, BN buffers and conv+linear MACs of
  torchvision 0.29.1's models (tools/measure_torchvision_c.py; torchvision is not needed
  here). Compared exactly with archc's static analysis.
- Ronneberger et al. 2015, Fig. 1: the U-Net's feature map sizes (572 -> 388).
- tests/data/unet_port_counts.json: the PyTorch port milesial/Pytorch-UNet
  (tools/measure_unet_port.py), which the "padded" variant follows.
tests/test_torchvision_equivalence.py loads torchvision's weights into these networks and
compares every output, where torchvision is installed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import archc

DATA = Path(__file__).parent / "data"
TV = json.loads((DATA / "torchvision_counts_c.json").read_text())["models"]
PORT = json.loads((DATA / "unet_port_counts.json").read_text())

EFFICIENTNET_RES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456,
                    "b6": 528, "b7": 600}
REGNETS = ["x_400mf", "x_800mf", "x_1_6gf", "x_3_2gf", "x_8gf", "x_16gf", "x_32gf",
           "y_400mf", "y_800mf", "y_1_6gf", "y_3_2gf", "y_8gf", "y_16gf", "y_32gf", "y_128gf"]


def _mapping() -> dict:
    """torchvision model (as measured) -> (archc network, parameters)."""
    m = {}
    for w, tag in ((0.5, "0_5"), (1.0, "1_0"), (1.5, "1_5"), (2.0, "2_0")):
        m[f"shufflenet_v2_x{tag}"] = ("shufflenet_v2", {"width": w})
    for v in EFFICIENTNET_RES:
        m[f"efficientnet_{v}"] = ("efficientnet", {"variant": v})
    for d in (121, 161, 169, 201):
        m[f"densenet{d}"] = ("densenet", {"depth": d})
    for v in REGNETS:
        m[f"regnet_{v}"] = ("regnet", {"variant": v})
    for w, tag in ((0.5, "0_5"), (0.75, "0_75"), (1.0, "1_0"), (1.3, "1_3")):
        m[f"mnasnet{tag}"] = ("mnasnet", {"width": w})
    m["vgg16@160"] = ("vgg", {"config": "D", "resolution": 160})
    m["alexnet@160"] = ("alexnet", {"resolution": 160})
    for net, backbones in (("fcn", ("resnet50", "resnet101")),
                           ("deeplabv3", ("resnet50", "resnet101", "mobilenet_v3_large"))):
        for b in backbones:
            m[f"{net}_{b}"] = (net, {"backbone": b})
            m[f"{net}_{b}_aux"] = (net, {"backbone": b, "aux": True})
    m["lraspp_mobilenet_v3_large"] = ("lraspp", {})
    return m


MAPPING = _mapping()


def test_measurements_cover_every_mapping():
    assert set(TV) == set(MAPPING)


@pytest.mark.parametrize("tv_name", sorted(MAPPING))
def test_params_buffers_and_macs_equal_torchvision(tv_name):
    name, kw = MAPPING[tv_name]
    net = archc.load(name, **kw)
    t = archc.analyze(net).totals
    ref = TV[tv_name]
    assert net.input_shape[1] == ref["resolution"]     # measured at the network's own size
    assert (t["params"], t["buffers"], t["macs"]) == (ref["params"], ref["buffers"], ref["macs"])


def test_each_efficientnet_runs_at_its_own_resolution():
    """The paper's resolutions (Tan & Le 2019), and torchvision's dropout per variant."""
    drop = {"b0": 0.2, "b1": 0.2, "b2": 0.3, "b3": 0.3, "b4": 0.4, "b5": 0.4, "b6": 0.5,
            "b7": 0.5}
    for v, r in EFFICIENTNET_RES.items():
        net = archc.load("efficientnet", variant=v)
        assert net.input_shape == (3, r, r) and net.params["dropout"] == drop[v]


def test_efficientnet_stochastic_depth_grows_with_the_block_index():
    """torchvision's rule: p = 0.2 * i / 16 for the i-th of B0's 16 blocks (counting from 0);
    only blocks with a residual connection have one."""
    net = archc.load("efficientnet")
    ps = {n: net.node(n)["attrs"]["p"] for n in net.layers() if net.node(n)["op"] == "drop_path"}
    assert ps["features2.block1.sd"] == 0.2 * 2 / 16
    assert ps["features6.block3.sd"] == max(ps.values()) == 0.2 * 14 / 16
    assert len(ps) == 9     # the blocks that keep their shape


def test_segmentation_outputs_are_torchvisions():
    """An OrderedDict with "out" (and "aux"), each at the input's size."""
    for name, kw in (("fcn", {"aux": True}), ("deeplabv3", {"aux": True}), ("lraspp", {})):
        net = archc.load(name, **kw)
        names = [k for k, _ in net.outputs]
        assert names == (["out", "aux"] if kw else ["out"])
        for _, node in net.outputs:
            assert net.node(node)["shape"] == (21, 520, 520)


def test_unused_features_are_not_in_the_graph():
    """The backbones end where torchvision's IntermediateLayerGetter ends them: no pooling or
    classifier of the classification networks, every layer feeds an output."""
    import networkx as nx
    for name, kw in (("fcn", {}), ("deeplabv3", {"backbone": "mobilenet_v3_large"}),
                     ("lraspp", {})):
        net = archc.load(name, **kw)
        needed = set()
        for _, node in net.output_list():
            needed |= nx.ancestors(net.graph, node) | {node}
        assert needed == set(net.graph.nodes)


# ---- U-Net ---------------------------------------------------------------------------------
# Ronneberger et al. 2015, Fig. 1: every blue box (H = W, channels), top to bottom and back.
FIG1 = {
    "inc.conv1": (64, 570), "inc.conv2": (64, 568), "down1.pool": (64, 284),
    "down1.conv.conv1": (128, 282), "down1.conv.conv2": (128, 280),
    "down2.conv.conv1": (256, 138), "down2.conv.conv2": (256, 136),
    "down3.conv.conv1": (512, 66), "down3.conv.conv2": (512, 64),
    "down4.conv.conv1": (1024, 30), "down4.conv.conv2": (1024, 28),
    "up1.up": (512, 56), "up1.crop": (512, 56), "up1.concat": (1024, 56),
    "up1.conv.conv1": (512, 54), "up1.conv.conv2": (512, 52),
    "up2.up": (256, 104), "up2.concat": (512, 104), "up2.conv.conv1": (256, 102),
    "up2.conv.conv2": (256, 100), "up3.up": (128, 200), "up3.concat": (256, 200),
    "up3.conv.conv1": (128, 198), "up3.conv.conv2": (128, 196), "up4.up": (64, 392),
    "up4.concat": (128, 392), "up4.conv.conv1": (64, 390), "up4.conv.conv2": (64, 388),
    "outc": (2, 388),
}


def test_unet_paper_variant_is_figure_1():
    net = archc.load("unet")
    assert net.input_shape == (1, 572, 572)
    for layer, (c, s) in FIG1.items():
        assert net.node(layer)["shape"] == (c, s, s), layer
    # the crops take the centre of the skip connections: 568 -> 392 from row 88
    assert net.node("up4.crop")["in_shapes"] == ((64, 568, 568),)
    # parameters by hand: 3x3 convs with biases, 2x2 up-convolutions, the 1x1 classifier
    def conv(i, o, k):
        return o * i * k * k + o
    enc = conv(1, 64, 3) + conv(64, 64, 3) + sum(conv(c // 2, c, 3) + conv(c, c, 3)
                                                  for c in (128, 256, 512, 1024))
    dec = sum(conv(c, c // 2, 2) + conv(c, c // 2, 3) + conv(c // 2, c // 2, 3)
              for c in (1024, 512, 256, 128))
    assert archc.analyze(net).totals["params"] == enc + dec + conv(64, 2, 1)


@pytest.mark.parametrize("kind", ["transposed", "bilinear"])
def test_unet_padded_variant_equals_the_pytorch_port(kind):
    net = archc.load("unet", variant="padded", bilinear=kind == "bilinear")
    t = archc.analyze(net).totals
    ref = PORT["models"][kind]
    assert net.input_shape[1] == PORT["resolution"] == 256
    assert (t["params"], t["buffers"], t["macs"]) == (ref["params"], ref["buffers"], ref["macs"])
    assert ref["max_abs_difference_at_64"] == 0.0   # the port's weights, archc's module
    assert net.output_shape == (2, 256, 256)
