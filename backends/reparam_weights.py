"""Weights through the deploy transform (compiler/reparam.py, docs/reparam.md): a training-form
network's torch-layout tensors -> the deployed network's, in numpy (float64 arithmetic, the
training tensors' dtype out).

For each fusion, every branch becomes a kernel of the merged size and a bias, and they are
summed:
    conv + BN    W * gamma / sqrt(var + eps) per output channel;
                 bias (beta + (b - mean) * gamma / sqrt(var + eps))
    identity BN  a centred identity kernel (grouped: channel c takes input c mod I/g of its
                 group), then as conv + BN
    smaller k    zero-padded into the centre of the merged kernel (1 x 1 into 3 x 3)
Every other tensor is copied. backends/weights.py converts the result to the JAX layout.
"""
from __future__ import annotations

import numpy as np

from archc.compiler import ArchError, Network
from archc.compiler.reparam import deploy, fusions

from . import torch_backend
from .weights import _entries


def _get(tensors: dict, key: str, layer: str, dtype=np.float64) -> np.ndarray:
    if key not in tensors:
        raise ArchError(f"weights for layer '{layer}' are missing: no '{key}'",
                        hint="give the training form's weights (as `archc train` writes them)")
    return np.asarray(tensors[key], dtype=dtype)


def _branch(net: Network, tree, tensors: dict, f, b) -> tuple:
    """(kernel at f.kernel, bias) of one branch, in float64."""
    cin = net.node(f.source)["shape"][0]
    kh, kw = f.kernel
    if b.conv is not None:
        path = tree.path(b.conv)
        w = _get(tensors, f"{path}.weight", b.conv)
        a = net.node(b.conv)["attrs"]
        bias = (_get(tensors, f"{path}.bias", b.conv) if a["bias"]
                else np.zeros(f.out, np.float64))
        ph, pw = (kh - w.shape[2]) // 2, (kw - w.shape[3]) // 2
        w = np.pad(w, ((0, 0), (0, 0), (ph, kh - w.shape[2] - ph), (pw, kw - w.shape[3] - pw)))
    else:   # identity: channel c passes input c (c mod I/g within its group)
        per = cin // f.groups
        w = np.zeros((f.out, per, kh, kw), np.float64)
        w[np.arange(f.out), np.arange(f.out) % per, kh // 2, kw // 2] = 1.0
        bias = np.zeros(f.out, np.float64)
    if b.bn is not None:
        path = tree.path(b.bn)
        a = net.node(b.bn)["attrs"]
        mean = _get(tensors, f"{path}.running_mean", b.bn)
        var = _get(tensors, f"{path}.running_var", b.bn)
        gamma = _get(tensors, f"{path}.weight", b.bn) if a["affine"] else np.ones(f.out)
        beta = _get(tensors, f"{path}.bias", b.bn) if a["affine"] else np.zeros(f.out)
        scale = gamma / np.sqrt(var + a["eps"])
        w = w * scale[:, None, None, None]
        bias = beta + (bias - mean) * scale
    return w, bias


def deploy_state_dict(net: Network, tensors: dict) -> tuple:
    """(the deployed Network, its torch-layout {key: array}) from the training form `net`
    and its torch-layout tensors (as `archc train` and the torch module's state_dict name
    them). The deployed module computes the training form's eval-mode function."""
    dnet = deploy(net)
    tree = torch_backend.module_tree(net)
    fused = {f.name: f for f in fusions(net)}
    dtype = next((np.asarray(v).dtype for v in tensors.values()
                  if np.issubdtype(np.asarray(v).dtype, np.floating)), np.float32)
    out: dict = {}
    for name, tpath, _, tname, _, _ in _entries(dnet):
        key = f"{tpath}.{tname}"
        if name in fused:
            f = fused[name]
            if tname == "weight":
                parts = [_branch(net, tree, tensors, f, b) for b in f.branches]
                out[key] = sum(w for w, _ in parts).astype(dtype)
                out[f"{tpath}.bias"] = sum(b for _, b in parts).astype(dtype)
            continue
        out[key] = _get(tensors, f"{tree.path(name)}.{tname}", name, None)
        if dnet.node(name)["op"] == "bn" and tname == "running_var":
            nbt = f"{tree.path(name)}.num_batches_tracked"
            out[f"{tpath}.num_batches_tracked"] = np.asarray(tensors.get(nbt, np.zeros((), np.int64)))
    return dnet, out
