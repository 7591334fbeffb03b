"""SqueezeNext as its authors released it (issue 13): archs/sqnxt.arch with
variant="imagenet" against the authors' Caffe prototxts (github.com/amirgholami/SqueezeNext,
BSD licence), layer by layer, at 227x227 with 1000 classes.

Reference: tests/data/sqnxt_imagenet/<network>.tsv, every layer of each train_val.prototxt
(tools/extract_sqnxt_prototxt.py). For every network, in file order: each Convolution
equals an archc conv (outputs, kernel h x w -- so the order of each block's 3x1 / 1x3 pair
--, stride, padding, groups, bias) followed by BN (Caffe's BatchNorm + Scale with bias) and
ReLU; each Pooling, Eltwise (a sum followed by ReLU) and InnerProduct equals archc's; every
layer reads the same layers (the wiring, including the 23v5 first blocks); and every
spatial size is the one Caffe computes (convolutions floor, poolings ceil).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import archc

DATA = Path(__file__).parent / "data" / "sqnxt_imagenet"
NETWORKS = {   # prototxt -> archc parameters
    "1.0-SqNxt-23": {},
    "2.0-SqNxt-23": {"width": 2.0},
    "1.0-SqNxt-23v5": {"version": "23v5"},
    "2.0-SqNxt-23v5": {"version": "23v5", "width": 2.0},
    "1.0-G-SqNxt-23": {"grouped": True},
}
STRUCTURAL = {"Convolution": "conv", "Pooling": None, "Eltwise": "add", "InnerProduct": "linear"}
PASS_THROUGH = {"bn", "relu", "flatten"}


def caffe_layers(name: str) -> list[dict]:
    out = []
    for line in (DATA / f"{name}.tsv").read_text().splitlines():
        if line.startswith("#"):
            continue
        lname, typ, bottoms, top, params = (line.split("\t") + [""])[:5]
        out.append({"name": lname, "type": typ, "bottoms": bottoms.split(",") if bottoms else [],
                    "top": top, "p": dict(kv.split("=", 1) for kv in params.split())})
    return out


def caffe_structure(layers: list[dict]):
    """Structural layers in file order, each with the in-place layers applied to its output
    (BatchNorm, Scale, ReLU), the structural layers it reads (indices, -1: the data) and
    its output size by Caffe's rules."""
    producer, size, out = {"data": -1}, {"data": 227}, []
    for L in layers:
        if L["type"] in STRUCTURAL:
            p = L["p"]
            h = size[L["bottoms"][0]]
            if L["type"] == "Convolution":
                k = int(p.get("kernel_h", p.get("kernel_size")))
                pad = int(p.get("pad_h", p.get("pad", 0)))
                h = (h + 2 * pad - k) // int(p.get("stride", 1)) + 1
            elif L["type"] == "Pooling" and p.get("global_pooling") != "true":
                k, s, pad = int(p["kernel_size"]), int(p["stride"]), int(p.get("pad", 0))
                o = -(-(h + 2 * pad - k) // s) + 1      # Caffe's pooling rounds up ...
                h = o - 1 if pad and (o - 1) * s >= h + pad else o   # ... and clips
            elif L["type"] in ("Pooling", "InnerProduct"):
                h = 1
            out.append({**L, "reads": [producer[b] for b in L["bottoms"]], "after": [],
                        "size": h})
            producer[L["top"]] = len(out) - 1
            size[L["top"]] = h
        else:   # in place: BatchNorm, Scale, ReLU on the blob `top`
            out[producer[L["top"]]]["after"].append((L["type"], L["p"]))
    return out


def archc_structure(net):
    """archc's structural layers (conv, pooling, add, linear) in data-flow order, each with
    the pass-through layers after it and the structural layers it reads."""
    nodes = [n for n in net.layers() if net.node(n)["op"] not in PASS_THROUGH]
    index = {n: i for i, n in enumerate(nodes)}

    def source(n):
        while n != net.input and net.node(n)["op"] in PASS_THROUGH:
            (n,) = net.node(n)["inputs"]
        return -1 if n == net.input else index[n]

    out = []
    for n in nodes:
        after, m = [], n
        while True:
            users = list(net.graph.successors(m))
            if len(users) != 1 or net.node(users[0])["op"] not in ("bn", "relu"):
                break
            m = users[0]
            after.append(net.node(m)["op"])
        out.append({"name": n, "d": net.node(n), "reads": [source(i) for i in
                                                             net.node(n)["inputs"]],
                    "after": after})
    return out


@pytest.mark.parametrize("proto", sorted(NETWORKS))
def test_every_layer_equals_the_prototxt(proto):
    net = archc.load("sqnxt", variant="imagenet", **NETWORKS[proto])
    assert net.input_shape == (3, 227, 227) and net.output_shape == (1000, 1, 1)
    caffe = caffe_structure(caffe_layers(proto))
    ours = archc_structure(net)
    assert len(ours) == len(caffe) == 111 + 21 + 2 + 1
    for c, a in zip(caffe, ours):
        d, p, where = a["d"], c["p"], f"{proto}: {c['name']} vs {a['name']}"
        assert a["reads"] == c["reads"], where
        assert d["shape"][1] == d["shape"][2] == c["size"], where
        if c["type"] == "Convolution":
            kh = int(p.get("kernel_h", p.get("kernel_size")))
            kw = int(p.get("kernel_w", p.get("kernel_size")))
            pad = (int(p.get("pad_h", p.get("pad", 0))), int(p.get("pad_w", p.get("pad", 0))))
            s = int(p.get("stride", 1))
            assert d["op"] == "conv", where
            assert (d["shape"][0], d["attrs"]["kernel"], d["attrs"]["stride"],
                    d["attrs"]["padding"], d["attrs"]["groups"], d["attrs"]["bias"],
                    d["attrs"]["dilation"]) == \
                (int(p["num_output"]), (kh, kw), (s, s), pad, int(p.get("group", 1)),
                 p.get("bias_term", "true") == "true", (1, 1)), where
            assert [t for t, _ in c["after"]] == ["BatchNorm", "Scale", "ReLU"], where
            assert c["after"][1][1].get("bias_term") == "true"   # Scale with bias: affine BN
            assert a["after"] == ["bn", "relu"], where
            bn = net.node(next(iter(net.graph.successors(a["name"]))))
            assert bn["attrs"]["affine"] and bn["attrs"]["eps"] == 1e-5, where
        elif c["type"] == "Pooling" and p.get("global_pooling") == "true":
            assert d["op"] == "global_avgpool" and p["pool"] == "AVE", where
        elif c["type"] == "Pooling":
            assert (d["op"], d["attrs"]["kernel"], d["attrs"]["stride"], d["attrs"]["padding"],
                    d["attrs"]["ceil_mode"]) == \
                ("maxpool", (3, 3), (2, 2), (0, 0), True), where   # Caffe pools round up
            assert p == {"pool": "MAX", "kernel_size": "3", "stride": "2"}, where
        elif c["type"] == "Eltwise":
            assert d["op"] == "add" and p.get("operation", "SUM") == "SUM", where
            assert [t for t, _ in c["after"]] == ["ReLU"] and a["after"] == ["relu"], where
        else:
            assert (d["op"], d["shape"][0], "bias" in archc.analyze(net).layer(
                a["name"]).param_tensors) == \
                ("linear", int(p["num_output"]), p.get("bias_term", "true") == "true"), where


def test_the_variants_differ_where_the_prototxts_do():
    """What archs/std/sqnxt.arch records (the ImageNet block), read off the reference data:
    the 23v5 stem is 5x5, the width scales the stages only, G-SqNxt groups conv1 and the
    separable pair."""
    first = {p: caffe_layers(p)[0]["p"] for p in NETWORKS}
    assert first["1.0-SqNxt-23"]["kernel_size"] == "7" and first["1.0-SqNxt-23v5"]["kernel_size"] == "5"
    for proto, kw in NETWORKS.items():
        net = archc.load("sqnxt", variant="imagenet", **kw)
        assert net.node("conv1")["shape"][0] == 64 and net.node("conv2")["shape"][0] == 128
        assert net.node("stage4.block1.conv5.conv")["shape"][0] == 256 * kw.get("width", 1)
    g = archc.load("sqnxt", variant="imagenet", grouped=True)
    assert {n.rsplit(".", 2)[-2] for n in g.layers()
            if g.node(n)["op"] == "conv" and g.node(n)["attrs"]["groups"] == 2} == \
        {"conv1", "conv3", "conv4"}


def test_cifar_variant_is_unchanged_and_imagenet_options_are_checked():
    cifar = archc.load("sqnxt")
    assert cifar.input_shape == (3, 32, 32) and cifar.output_shape == (10, 1, 1)
    assert cifar.params["init"] == "xavier_uniform"
    assert archc.load("sqnxt", variant="imagenet").params["init"] == "lecun_uniform"
    assert archc.load("sqnxt", version="23v5").params["stages"] == (2, 4, 14, 1)
    with pytest.raises(archc.ArchError, match="grouped"):
        archc.load("sqnxt", grouped=True)
    with pytest.raises(archc.ArchError, match="version"):
        archc.load("sqnxt", variant="imagenet", version="24")
