"""BatchNorm folding (seed 002, sec. 5.1: "linear combination for all BatchNorm layers,
integrating these parameters into their former convolutional layers or fully-connected
layers").

A BN folds into the conv or linear layer that feeds it when it is that layer's only consumer
(the rule of the bit-op analysis, compiler/bitops.py); the ops a BN folds into are those
whose registry entry says `folds_bn` (compiler/ops.py). `fold_network` rewrites the IR: the
layer gets a bias and the BN becomes an identity, so the folded network keeps every layer
name and lowers through the ordinary backends. `fold_weights` computes the folded values:

    f = gamma / sqrt(running_var + eps)
    kernel' = kernel * f      (per output channel)
    bias'   = (bias - running_mean) * f + beta
"""
from __future__ import annotations

import dataclasses

import numpy as np
from archc.compiler import Network, ops


def _folds_bn(net: Network, layer: str) -> bool:
    return ops.get(net.node(layer)["op"]).folds_bn


def folded_bns(net: Network) -> dict:
    """BN layer -> the conv/linear layer it folds into."""
    out = {}
    for n in net.layers():
        d = net.node(n)
        if d["op"] != "bn" or len(d["inputs"]) != 1:
            continue
        src = d["inputs"][0]
        if _folds_bn(net, src) and net.graph.out_degree(src) == 1:
            out[n] = src
    return out


def fold_network(net: Network) -> Network:
    """A copy of `net` whose foldable BNs are identities and whose conv/linear layers all
    have a bias. The original is left as it was."""
    graph = net.graph.copy()  # new per-node dicts; the values replaced below are new objects
    for n in net.layers():
        if _folds_bn(net, n) and not net.node(n)["attrs"]["bias"]:
            d = graph.nodes[n]
            d["attrs"] = {**d["attrs"], "bias": True}
            d["exprs"] = {k: v for k, v in (d.get("exprs") or {}).items() if k != "bias"}
    for bn in folded_bns(net):
        d = graph.nodes[bn]
        d["op"], d["attrs"], d["exprs"] = "identity", {}, {}
    return dataclasses.replace(net, graph=graph)


def fold_weights(net: Network, flat: dict) -> dict:
    """{layer: {var: array}} of `net` (parameters and BN statistics) -> the same for
    fold_network(net): folded kernels and biases, unfolded BNs unchanged (float32)."""
    folds = {src: bn for bn, src in folded_bns(net).items()}
    out = {}
    for n in net.layers():
        op = net.node(n)["op"]
        if op == "bn" and n not in folded_bns(net):
            out[n] = {k: np.asarray(v, np.float32) for k, v in flat[n].items()}
        if not ops.get(op).folds_bn:
            continue
        k = np.asarray(flat[n]["kernel"], np.float64)
        b = np.asarray(flat[n].get("bias", np.zeros(k.shape[-1])), np.float64)
        bn = folds.get(n)
        if bn is not None:
            v, a = flat[bn], net.node(bn)["attrs"]
            gamma = np.asarray(v.get("scale", np.ones_like(b)), np.float64)
            beta = np.asarray(v.get("bias", np.zeros_like(b)), np.float64)
            f = gamma / np.sqrt(np.asarray(v["var"], np.float64) + a["eps"])
            k = k * f
            b = (b - np.asarray(v["mean"], np.float64)) * f + beta
        out[n] = {"kernel": k.astype(np.float32), "bias": b.astype(np.float32)}
    return out
