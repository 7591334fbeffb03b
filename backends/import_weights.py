"""Weights of another implementation of a network (a timm, torchvision or hand-written PyTorch
state dict) in archc's layout: matched by structure, not by name.

The two sides are lists of tensors in registration order: archc's generated torch module's
state dict, and the checkpoint's (a dict keeps its insertion order, torch.save and
safetensors too). Counters (num_batches_tracked) and other integer tensors (index tables)
take no part. Walking both lists together, each archc tensor takes

  - the next checkpoint tensor of the same shape, or of the same shape once size-1
    dimensions are dropped (a Linear on channels-last as a 1x1 conv, a layer-scale vector
    as C x 1 x 1), reshaped;
  - or several next checkpoint tensors concatenated along the first dimension, when archc
    holds in one tensor what the checkpoint splits (parts with the same trailing shape);
  - or its part of one checkpoint tensor, when archc splits what the checkpoint holds in one
    (consecutive archc tensors of the same name and trailing shape, split along the first
    dimension).

The first tensor that fits none of these is an ArchError naming it (key and shape) and the
archc layer it was offered to, and a difference in the number of tensors is one too: never
a partial load. The result is {torch-layout key: float32 numpy array} for every tensor of
the archc module (counters 0), what backends/weights.py saves and loads.
"""
from __future__ import annotations

import os

import numpy as np
from archc.compiler import ArchError, Network

from . import torch_backend

# the keys under which training scripts nest the state dict in a checkpoint (timm:
# state_dict, state_dict_ema; torchvision's references and many scripts: model)
WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net")
MAX_CHECKPOINT_BYTES = 8 << 30
MAX_NESTING = 16
_HINT = ("is the checkpoint of another network, or of other parameters (-D)? archc matches "
         "tensors by their order and shapes (docs/weights.md)")


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if len(shape) else "scalar"


def archc_tensors(net: Network) -> list[tuple[str, tuple, str]]:
    """(torch-layout key, shape, layer name) of every tensor of the generated torch module,
    in its registration order; the module is built on the meta device (no memory, no
    initialisation)."""
    import torch

    from .weights import _entries
    layer_of = {tpath: name for name, tpath, *_ in _entries(net)}
    with torch.device("meta"):
        module = torch_backend.compile_module(net)
    return [(k, tuple(v.shape), layer_of.get(k.rpartition(".")[0], k.rpartition(".")[0]))
            for k, v in module.state_dict().items()]


def _is_counter(key: str, arr) -> bool:
    return key.endswith("num_batches_tracked") or np.dtype(arr.dtype).kind in "iub"


def _numpy(key: str, value) -> np.ndarray:
    """A checkpoint value as a numpy array (torch tensors of any float dtype included)."""
    if hasattr(value, "detach") and hasattr(value, "dtype"):   # a torch tensor
        t = value.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        return t.numpy()
    if isinstance(value, np.ndarray):
        return value
    raise ArchError(f"the checkpoint's '{key}' is a {type(value).__name__}, not a tensor",
                    hint="give a state dict: {name: tensor}")


def flat_state_dict(obj, what: str = "the checkpoint") -> dict:
    """{key: array} of a state dict, flat or nested ({"state_dict": {...}}, {"model": {...}}
    as timm's and torchvision's training scripts save them: the first of WRAPPERS found is
    taken, the rest of the checkpoint (epoch, optimizer ...) ignored; other nested dicts are
    flattened with '.'-joined keys). Anything else is refused."""
    if not isinstance(obj, dict):
        raise ArchError(f"{what} is a {type(obj).__name__}, not a state dict",
                        hint="save model.state_dict(), not the model")
    for key in WRAPPERS:
        if isinstance(obj.get(key), dict):
            return flat_state_dict(obj[key], what)
    out: dict = {}

    def walk(d, prefix, depth):
        if depth > MAX_NESTING:
            raise ArchError(f"{what} nests dicts more than {MAX_NESTING} deep")
        for k, v in d.items():
            if not isinstance(k, str):
                raise ArchError(f"{what} has a key {k!r:.40} that is not a string")
            name = prefix + k
            if isinstance(v, dict):
                walk(v, name + ".", depth + 1)
            else:
                out[name] = _numpy(name, v)
    walk(obj, "", 0)
    if not out:
        raise ArchError(f"{what} holds no tensors", hint="give a state dict: {name: tensor}")
    return out


def match(net: Network, state_dict: dict) -> dict:
    """archc-layout {key: array} of `state_dict` (flat {key: array}) for `net` (module doc).
    The checkpoint's order as given first; if it does not fit, with each module's own
    tensors after its sub-modules' (torch registers a module's own parameters first, e.g.
    timm's ConvNeXt block its layer-scale gamma, which archc holds in a layer of its own after
    the block's other layers); then each of these with archc's top-level modules that do not
    fit where they are matched after the others (torchvision registers GoogLeNet's
    auxiliary heads last, archc where they branch off); then with the checkpoint's modules
    that do not fit where they are moved after the rest of the module that holds them
    (timm's Xception registers a block's skip convolution first, archc last). The error is
    the first attempt's."""
    theirs = [(k, v) for k, v in state_dict.items() if not _is_counter(k, v)]
    ours = archc_tensors(net)
    moved = _own_tensors_last(theirs)
    orders = [theirs] + ([moved] if [k for k, _ in moved] != [k for k, _ in theirs] else [])
    first = None
    for defer in (None, "archc", "checkpoint"):
        for order in orders:
            try:
                return _match(net, ours, order, defer)
            except ArchError as err:
                first = first or err
    raise first


def _own_tensors_last(theirs: list) -> list:
    """The tensors reordered so that a module's own tensors follow its sub-modules' (modules
    kept in the order they first appear)."""
    first: dict = {}
    for idx, (k, _) in enumerate(theirs):
        parts = k.split(".")
        for n in range(1, len(parts)):
            first.setdefault(".".join(parts[:n]), idx)

    def order(item):
        idx, (k, _) = item
        parts = k.split(".")
        return [(0, first[".".join(parts[:n])]) for n in range(1, len(parts))] + [(1, idx)]
    return [kv for _, kv in sorted(enumerate(theirs), key=order)]


def _match(net: Network, ours: list, theirs: list, defer: str | None = None) -> dict:
    from archc._checks import finite_tensors
    want = [(k, s, layer) for k, s, layer in ours if not k.endswith("num_batches_tracked")]
    deferred: set = set()
    out: dict = {k: np.zeros((), np.int64) for k, _, _ in ours if k.endswith("num_batches_tracked")}
    i = j = 0
    while i < len(want):
        key, shape, layer = want[i]
        if j >= len(theirs):
            raise ArchError(f"the checkpoint has {len(theirs)} weight tensors, fewer than the "
                            f"{len(want)} of {net.name}: none is left for layer '{layer}' "
                            f"('{key}', {_shape(shape)})", hint=_HINT)
        tkey, arr = theirs[j]
        if _same(arr.shape, shape):
            out[key] = arr.reshape(shape)
            i, j = i + 1, j + 1
            continue
        taken = _concatenate(theirs, j, shape)
        if taken:
            out[key] = np.concatenate([a for _, a in theirs[j:j + taken]], axis=0)
            i, j = i + 1, j + taken
            continue
        parts = _split(want, i, arr.shape)
        if parts:
            at = 0
            for k, s, _ in want[i:i + parts]:
                out[k] = arr[at:at + s[0]]
                at += s[0]
            i, j = i + parts, j + 1
            continue
        top = key.split(".")[0]
        group = [w for w in want[i:] if w[0].split(".")[0] == top]
        if (defer == "archc" and top not in deferred and "." in key
                and len(group) < len(want) - i):
            deferred.add(top)    # the module's tensors are matched after the others
            want = want[:i] + [w for w in want[i:] if w[0].split(".")[0] != top] + group
            continue
        module = tkey.rpartition(".")[0]
        if defer == "checkpoint" and module and module not in deferred:
            deferred.add(module)   # after the rest of the module that holds it
            theirs = theirs[:j] + _after_parent(theirs[j:], module)
            continue
        raise ArchError(f"the checkpoint's '{tkey}' ({_shape(arr.shape)}) does not fit layer "
                        f"'{layer}' of {net.name}: its '{key.rpartition('.')[2]}' is "
                        f"{_shape(shape)} (tensor {i + 1} of {len(want)})", hint=_HINT)
    if j < len(theirs):
        rest = [k for k, _ in theirs[j:]]
        raise ArchError(f"the checkpoint has {len(theirs)} weight tensors, {len(theirs) - j} "
                        f"more than {net.name} has: '{rest[0]}'"
                        + (f" and {len(rest) - 1} after it" if len(rest) > 1 else "")
                        + " are left over", hint=_HINT)
    out = {k: np.ascontiguousarray(v, dtype=np.float32) if v.dtype.kind == "f" else v
           for k, v in out.items()}
    finite_tensors(out, "the checkpoint")
    return {k: out[k] for k, _, _ in ours}


def _after_parent(theirs: list, module: str) -> list:
    """`theirs` with the tensors of `module` moved after the last of its parent module's."""
    inside = [t for t in theirs if t[0].startswith(module + ".")]
    rest = [t for t in theirs if not t[0].startswith(module + ".")]
    parent = module.rpartition(".")[0]
    at = max((n + 1 for n, (k, _) in enumerate(rest) if k.startswith(parent + ".")),
             default=0) if parent else len(rest)
    return rest[:at] + inside + rest[at:]


def _same(a, b) -> bool:
    a, b = tuple(a), tuple(b)
    return a == b or (a and b and tuple(d for d in a if d != 1) == tuple(d for d in b if d != 1))


def _concatenate(theirs, j: int, shape) -> int:
    """How many checkpoint tensors from j concatenate (first dimension) into `shape`; 0: none."""
    if len(shape) == 0:
        return 0
    total, n = 0, 0
    while j + n < len(theirs) and total < shape[0]:
        s = theirs[j + n][1].shape
        if len(s) != len(shape) or tuple(s[1:]) != tuple(shape[1:]):
            return 0
        total, n = total + s[0], n + 1
    return n if n > 1 and total == shape[0] else 0


def _split(want, i: int, shape) -> int:
    """How many archc tensors from i take their part of one checkpoint tensor of `shape`."""
    if len(shape) == 0:
        return 0
    name = want[i][0].rpartition(".")[2]
    total, n = 0, 0
    while i + n < len(want) and total < shape[0]:
        k, s, _ = want[i + n]
        if k.rpartition(".")[2] != name or len(s) != len(shape) or s[1:] != tuple(shape[1:]):
            return 0
        total, n = total + s[0], n + 1
    return n if n > 1 and total == shape[0] else 0


def import_state_dict(target, state_dict, /, **params) -> dict:
    """archc-layout weights ({torch-style key: numpy array}, as archc.weights.save writes
    them) for a Network, or a bundled name / .arch path with `params`, from the state dict
    of another implementation of it (torch tensors or numpy arrays, flat or nested; see the
    module doc for how tensors are matched)."""
    from archc import _network
    net = _network("weights.import_state_dict", target, params)
    return match(net, flat_state_dict(state_dict))


SAFETENSORS_ORDER = ("a .safetensors file does not keep the order of its tensors: archc reads "
                     "them in name order (numbers by value), which is not always the order the "
                     "model registered them in; save the state dict with torch.save (.pth), "
                     "which keeps it")


def _natural(key: str) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def read_checkpoint(path) -> dict:
    """{key: array} of a .safetensors or .pth/.pt file. A .pth is read with
    torch.load(weights_only=True): tensors and plain containers only, never code. A
    .safetensors file does not store the tensors' order: they come in name order, numbers
    by value (SAFETENSORS_ORDER)."""
    from archc import _checks
    shown = f"checkpoint '{os.fspath(path)}'"
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext == ".safetensors":   # its order is not stored: name order, numbers by value
        return dict(sorted(_checks.tensors(path, shown).items(), key=lambda kv: _natural(kv[0])))
    if ext not in (".pth", ".pt", ".bin", ".ckpt"):
        raise ArchError(f"{shown}: archc reads .safetensors and .pth/.pt checkpoints, not "
                        f"'{ext or 'no extension'}'",
                        hint="save it with torch.save(model.state_dict(), 'model.pth') or "
                             "safetensors")
    st = _checks.regular_file(path, shown, MAX_CHECKPOINT_BYTES)
    avail = _checks.available_memory()
    if avail is not None and st.st_size > avail:
        raise ArchError(f"{shown} is {st.st_size:,} bytes, more than the {avail:,} bytes of "
                        "memory available")
    import pickle

    import torch
    try:
        obj = torch.load(os.fspath(path), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        raise ArchError(f"{shown} holds more than tensors (Python objects that loading would "
                        f"run): refused. {str(err).splitlines()[0][:160]}",
                        hint="save only the state dict: torch.save(model.state_dict(), ...)"
                        ) from None
    except MemoryError:
        raise ArchError(f"{shown}: not enough memory to load it") from None
    except Exception as err:  # noqa: BLE001 - torch reports damage with several types
        raise ArchError(f"{shown} cannot be read as a PyTorch checkpoint: "
                        f"{str(err).splitlines()[0][:200] if str(err) else type(err).__name__}",
                        hint="is it a file written by torch.save?") from None
    return flat_state_dict(obj, shown)
