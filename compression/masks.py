"""Pruning masks (seed 002, sec. 2): one binary mask per conv/linear kernel, True where the
weight is kept; the masked optimizer that never moves a pruned weight.

On disk: safetensors, one bool tensor per layer, keyed by the IR layer name, in the JAX
kernel layout (conv kh x kw x in/groups x out, linear in x out).
"""
from __future__ import annotations

import os

import numpy as np
from archc.compiler import ArchError, Network

from .plan import weighted_layers


def magnitude_mask(kernel, fraction: float) -> np.ndarray:
    """Keep all but the round(fraction * size) weights of smallest |w| (ties: first in
    memory order are pruned first)."""
    w = np.abs(np.asarray(kernel)).ravel()
    k = round(float(fraction) * w.size)
    mask = np.ones(w.size, bool)
    mask[np.argsort(w, kind="stable")[:k]] = False
    return mask.reshape(np.shape(kernel))


def sparsity(mask) -> float:
    mask = np.asarray(mask)
    return float(mask.size - np.count_nonzero(mask)) / mask.size


def measured_sparsity(kernel) -> float:
    """The fraction of weights that are exactly zero."""
    k = np.asarray(kernel)
    return float(k.size - np.count_nonzero(k)) / k.size


def save_masks(path: str, masks: dict) -> None:
    from safetensors.numpy import save

    from archc._files import write_atomic
    meta = {"layout": "jax: conv kh x kw x in/groups x out, linear in x out",
            "meaning": "True keeps the weight, False prunes it"}
    write_atomic(path, save({k: np.ascontiguousarray(v, bool) for k, v in masks.items()},
                            metadata=meta))


def load_masks(path: str, net: Network, flat: dict) -> dict:
    """Masks from a file, checked against the network: every entry names a conv/linear layer
    and has its kernel's shape. flat: {layer: {"kernel": array}} of the network."""
    from archc._checks import tensors
    if not os.path.exists(path):
        raise ArchError(f"no mask file '{path}'")
    masks = tensors(path)
    check_masks(masks, net, flat, path)
    return {k: np.asarray(v).astype(bool) for k, v in masks.items()}


def check_masks(masks: dict, net: Network, flat: dict, where: str = "masks") -> None:
    layers = weighted_layers(net)
    problems = []
    for name, m in masks.items():
        if name not in layers:
            problems.append(f"'{name}' is not a conv or linear layer of {net.name}")
            continue
        want = np.shape(flat[name]["kernel"])
        if tuple(np.shape(m)) != tuple(want):
            problems.append(f"'{name}' has shape {tuple(np.shape(m))}, its kernel is "
                            f"{tuple(want)}")
        elif np.asarray(m).dtype.kind not in "bui" or not np.isin(np.asarray(m), (0, 1)).all():
            problems.append(f"'{name}' is not binary")
    if problems:
        raise ArchError(f"{where}: the masks do not fit {net.name}:\n  "
                        + "\n  ".join(problems[:10])
                        + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""),
                        hint="masks are keyed by conv/linear layer name, in the JAX kernel "
                             "layout (`archc analyze` lists the layers)")


def mask_tree(params: dict, paths: dict, masks: dict) -> dict:
    """A tree shaped like `params`: the mask at each masked kernel, True elsewhere."""
    by_path = {paths[n] + ("kernel",): m for n, m in masks.items()}

    def walk(t, prefix):
        return {k: walk(v, prefix + (k,)) if isinstance(v, dict)
                else by_path.get(prefix + (k,), np.bool_(True)) for k, v in t.items()}
    return walk(params, ())


def masked(tx, tree: dict):
    """`tx` with pruned entries zeroed in the gradients before it and in the updates after
    it: weight decay sees a zero weight, momentum a zero gradient, so a pruned weight (and
    its optimizer state) stays exactly zero."""
    import jax
    import jax.numpy as jnp
    import optax

    def zero(updates, params=None):
        del params
        return jax.tree.map(lambda u, m: jnp.where(m, u, jnp.zeros_like(u)), updates, tree)
    keep = optax.stateless(zero)
    return optax.chain(keep, tx, keep)
