"""Model state by layer: between the nested pure dicts of the JAX module (addressed through
`jax_backend.module_tree(net).path(layer)`) and flat {layer: {variable: array}} dicts, and
to and from safetensors files in the torch layout (`backends/weights.py`)."""
from __future__ import annotations

import numpy as np
from archc.compiler import ArchError, Network

from archc.backends import jax_backend, lowering, weights


def layer_paths(net: Network) -> dict:
    """Attribute path (tuple) of every layer with state, by layer name."""
    tree = jax_backend.module_tree(net)
    return {n: tuple(tree.path(n).split(".")) for n in lowering.stateful_layers(net)
            if net.node(n)["op"] != "dropout"}


def _node(tree, path):
    for p in path:
        if not isinstance(tree, dict) or p not in tree:
            return None
        tree = tree[p]
    return tree


def flatten(net: Network, tree: dict) -> dict:
    """{layer: {variable: array}} of the layers present in a nested pure dict."""
    out = {}
    for layer, path in layer_paths(net).items():
        node = _node(tree, path)
        if isinstance(node, dict):
            leaves = {k: v for k, v in node.items() if not isinstance(v, dict)}
            if leaves:
                out[layer] = leaves
    return out


def fill(net: Network, template: dict, flat: dict) -> dict:
    """A nested dict shaped like `template` (arrays or shape/dtype structs) with every leaf
    taken from `flat`, in the template's dtype."""
    by_path = {p: layer for layer, p in layer_paths(net).items()}

    def walk(t, prefix):
        out = {}
        for k, v in t.items():
            if isinstance(v, dict):
                out[k] = walk(v, prefix + (k,))
                continue
            layer = by_path.get(prefix)
            if layer is None or k not in flat.get(layer, {}):
                raise ArchError(f"no value for '{'.'.join(prefix + (k,))}'"
                                + (f" (layer '{layer}')" if layer else ""))
            arr = np.asarray(flat[layer][k])
            shape = tuple(getattr(v, "shape", np.shape(v)))
            if arr.shape != shape:
                raise ArchError(f"'{layer}' {k} has shape {arr.shape}, the network expects "
                                f"{shape}")
            out[k] = arr.astype(getattr(v, "dtype", np.float32))
        return out
    return walk(template, ())


def merge(a: dict, b: dict) -> dict:
    """Two nested dicts joined (params and batch statistics of one module)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_flat(net: Network, path: str) -> dict:
    """A safetensors file in the torch layout (model.safetensors) as {layer: {var: array}};
    a tensor that no layer has is refused, as build --weights refuses it."""
    from archc._checks import no_extra_tensors
    tensors = weights.load(path)
    no_extra_tensors(tensors, weights.torch_keys(net), net.name, f"weights from '{path}'")
    return flatten(net, weights.torch_to_jax(net, tensors))


def save_flat(net: Network, flat: dict, path: str, metadata: dict | None = None) -> None:
    """{layer: {var: array}} as a safetensors file in the torch layout, atomically."""
    nested: dict = {}
    for layer, p in layer_paths(net).items():
        if layer in flat:
            node = nested
            for part in p:
                node = node.setdefault(part, {})
            node.update({k: np.asarray(v) for k, v in flat[layer].items()})
    weights.save(path, weights.jax_to_torch(net, nested), metadata=metadata)


def kernel(flat: dict, layer: str) -> np.ndarray:
    return np.asarray(flat[layer]["kernel"])
