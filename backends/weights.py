"""Weight exchange between the torch and JAX backends, driven by the IR.

Both backends name parameters after the IR's hierarchical layer names (backends/_names.py's
ModuleTree), and each backend's `weights` table (lowering.Backend) names every tensor the
registry declares (ops.Op.params / buffers) in its framework and gives its layout:

    conv    weight  O x I/g x kh x kw   <->  kernel  kh x kw x I/g x O   (OIHW <-> HWIO)
            bias    O                   <->  bias    O
    linear  weight  out x in            <->  kernel  in x out
            bias    out                 <->  bias    out
    bn      weight / bias               <->  scale / bias
            running_mean / running_var  <->  mean / var
            num_batches_tracked         (torch only; written as 0 when converting from JAX)

On disk the exchange format is safetensors (no pickle): `save` / `load` work on flat
{torch-style key: numpy array} dicts.
"""
from __future__ import annotations

import os

import numpy as np

from archc.compiler import ArchError, Network, ops

from archc._files import write_atomic

from . import jax_backend, torch_backend


def _inverse(perm):
    return tuple(int(i) for i in np.argsort(perm))


def _entries(net: Network):
    """(layer, torch attribute path, jax attribute path, torch name, jax name, transpose) for
    every parameter and buffer the registry declares (ops.Op.params / buffers), named and
    laid out by each backend's `weights` table."""
    ttree = torch_backend.module_tree(net)
    jtree = jax_backend.module_tree(net)
    tw, jw = torch_backend.BACKEND.weights, jax_backend.BACKEND.weights
    for name in net.layers():
        d = net.node(name)
        op = ops.get(d["op"])
        if not op.stateful:
            continue
        args = (d["in_shapes"], d["shape"], d["attrs"])
        for tensor in list(op.params(*args)) + list(op.buffers(*args)):
            tname, _ = tw[d["op"]][tensor]     # the torch layout is the canonical one
            jname, perm = jw[d["op"]][tensor]
            yield name, ttree.path(name), jtree.path(name), tname, jname, perm


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def torch_keys(net: Network) -> set:
    """The torch-layout key of every tensor the network's layers have."""
    return {f"{tpath}.{tname}" for _, tpath, _, tname, _, _ in _entries(net)}


def torch_to_jax(net: Network, tensors: dict) -> dict:
    """torch-style {key: array} -> nested pure dict for `nnx.replace_by_pure_dict`."""
    out: dict = {}
    for name, tpath, jpath, tname, jname, perm in _entries(net):
        key = f"{tpath}.{tname}"
        if key not in tensors:
            raise ArchError(f"weights for layer '{name}' are missing: no '{key}'")
        arr = np.asarray(tensors[key])
        if perm is not None:
            if arr.ndim != len(perm):
                raise ArchError(f"'{key}' has {arr.ndim} dimensions, expected {len(perm)}")
            arr = np.transpose(arr, perm)
        _set(out, jpath.split(".") + [jname], arr)
    return out


def jax_to_torch(net: Network, pure: dict) -> dict:
    """Nested pure dict (`nnx.to_pure_dict(nnx.state(model))`) -> torch-style {key: array}."""
    out: dict = {}
    for name, tpath, jpath, tname, jname, perm in _entries(net):
        path = jpath.split(".") + [jname]
        try:
            arr = np.asarray(_get(pure, path))
        except (KeyError, TypeError):
            raise ArchError(f"JAX state has no '{'.'.join(path)}' for layer '{name}'") from None
        if perm is not None:
            arr = np.transpose(arr, _inverse(perm))
        out[f"{tpath}.{tname}"] = np.ascontiguousarray(arr)
        if net.node(name)["op"] == "bn" and tname == "running_var":
            out[f"{tpath}.num_batches_tracked"] = np.zeros((), np.int64)
    return out


def load_into_jax(model, net: Network, tensors: dict) -> None:
    """Copy torch-style weights into a generated Flax NNX module, in place."""
    import jax
    from flax import nnx
    state = nnx.state(model)
    pure = nnx.to_pure_dict(state)
    new = torch_to_jax(net, tensors)
    slots = []   # (dict, key, numpy copy) for every tensor loaded

    def merge(dst, src, prefix):
        for k, v in src.items():
            if k not in dst:
                raise ArchError(f"the JAX module has no '{prefix + k}'")
            if isinstance(v, dict):
                merge(dst[k], v, prefix + k + ".")
            else:
                if tuple(dst[k].shape) != tuple(v.shape):
                    raise ArchError(f"'{prefix + k}' has shape {tuple(v.shape)}, the module "
                                    f"expects {tuple(dst[k].shape)}")
                # a copy of its own: the device array may alias numpy memory on CPU, and
                # torch updates its buffers in place
                slots.append((dst, k, np.array(v, dtype=dst[k].dtype, copy=True)))
    merge(pure, new, "")
    # every array onto the device in one call (one eager jnp.array per tensor cost 2 ms each)
    for (dst, k, _), arr in zip(slots, jax.device_put([a for _, _, a in slots])):
        dst[k] = arr
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)


def placeholder(leaf):
    """A concrete value for an abstract (jax.ShapeDtypeStruct) leaf of a module's state that
    no weights file holds: the dropout RNG keys and counters, never read in eval mode."""
    import jax
    import jax.numpy as jnp
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.key(0)
    return jnp.zeros(leaf.shape, leaf.dtype)


def jax_module_from(net: Network, tensors: dict, tap=None):
    """The generated JAX module with torch-layout `tensors` loaded. It is built abstractly
    (nnx.eval_shape), so no initial values are drawn: every weight and BN statistic comes
    from `tensors`, the rest (dropout RNG state, no torch counterpart) is a placeholder."""
    import jax
    from flax import nnx
    model = nnx.eval_shape(lambda: jax_backend.compile_module(net, tap=tap))
    load_into_jax(model, net, tensors)
    graph, state = nnx.split(model)
    state = jax.tree.map(lambda x: placeholder(x) if isinstance(x, jax.ShapeDtypeStruct) else x,
                         state, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    return nnx.merge(graph, state)


def state_dict_numpy(module) -> dict:
    """A torch module's state_dict as numpy arrays (copies, never views of live buffers)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def save(path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write {key: array} as safetensors, atomically (temp file + rename)."""
    from safetensors.numpy import save as to_bytes
    write_atomic(path, to_bytes({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                                metadata=metadata))


def load(path) -> dict:
    """{key: array} of a safetensors file, checked (archc._checks.tensors): a regular file,
    a sound header, dtypes numpy reads, every float finite."""
    from archc._checks import tensors
    return tensors(path, f"weights from '{os.fspath(path)}'")


# a state dict of another implementation (timm, torchvision, PyTorch code) in archc's layout
from .import_weights import import_state_dict, read_checkpoint  # noqa: E402,F401
