"""A training run from start to end: the packages it needs, the run folder, the data set
(in memory or streamed) and the loop of the backend. archc.train() (Python keywords) and the
`archc train` command (flags) both call train() here; its errors name options the way the
caller wrote them (training/options.py).

Imports nothing heavy at the top: require_packages() runs before numpy, JAX or torch load.
"""
from __future__ import annotations

import os

from archc.compiler import ArchError

from .options import TrainOptions, option, spelled, spelling

# import names each training backend needs (pyproject.toml's extras install them); grain only
# when a data set is streamed (training/stream.py), which the in-memory path never imports
TRAIN_MODULES = ("numpy", "PIL", "safetensors", "matplotlib", "tqdm")
BACKEND_MODULES = {"jax": ("jax", "flax", "optax", "orbax.checkpoint"), "torch": ("torch",)}
STREAM_MODULES = ("grain",)
TRAIN_EXTRA = {"jax": "train", "torch": "train-torch"}
BACKENDS = ("jax", "torch")
_JAX_ONLY = ("devices", "coordinator", "num_processes", "process_id", "loader_workers")


def missing_modules(modules) -> list[str]:
    """The import names of `modules` that cannot be found (none is imported)."""
    import importlib.util
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is missing
            found = False
        if not found:
            missing.append(module)
    return missing


def require_packages(backend: str) -> None:
    """A clear error, not an ImportError, when the training dependencies are missing."""
    missing = missing_modules(TRAIN_MODULES + BACKEND_MODULES.get(backend, ()))
    if missing:
        run = f"archc.train({option('backend', backend)})" if spelling() == "keyword" else \
            f"archc train {option('backend', backend)}"
        raise ArchError(f"{run} needs packages that are not installed: {', '.join(missing)}",
                        hint=f"pip install 'archc[{TRAIN_EXTRA.get(backend, 'train')}]'")


def require_streaming() -> None:
    """Streaming a data set needs Grain: a clear error when it is not installed."""
    missing = missing_modules(STREAM_MODULES)
    if missing:
        raise ArchError("streaming a data set with archc train needs packages that are not "
                        f"installed: {', '.join(missing)}",
                        hint=f"pip install 'archc[{TRAIN_EXTRA['jax']}]', or "
                             f"{option('stream', 'off')} for a data set that fits in memory")


def _jax_only(options: TrainOptions) -> None:
    """The torch loop has one device and reads data sets in memory."""
    if any(getattr(options, k) is not None for k in _JAX_ONLY) or options.stream == "on":
        raise ArchError(f"{option('devices')}, the multi-host options, {option('stream', 'on')} "
                        f"and {option('loader_workers')} are options of the JAX backend",
                        hint=f"drop them, or train with {option('backend', 'jax')}")


def train(net, data, recipe=None, options: TrainOptions = TrainOptions(), *,
          spelling: str = "keyword") -> dict:
    """Train the Network `net` on the data set at `data` (a path) with `recipe` (a Recipe, a
    dict of its fields, or None: the papers' recipe; on a resumed run, the run's own).
    Writes the run folder and returns the summary (docs/training.md). spelling: how errors
    name options, "keyword" (`devices=`) or "flag" (`--devices`, the command line's)."""
    with spelled(spelling):
        return _train(net, data, recipe, options)


def _train(net, data, recipe, o: TrainOptions) -> dict:
    from .recipe import Recipe
    from .run_dir import check_folder
    if o.backend not in BACKENDS:
        raise ArchError(f"unknown backend '{o.backend}'", hint="backends: " + ", ".join(BACKENDS))
    out = o.out or os.path.join("runs", f"{net.name}-{o.backend}")
    # the run folder first: a mistake there is reported before JAX or the data set loads
    saved, _ = check_folder(out, o.resume)
    if o.backend == "jax":
        from . import distributed
        from . import jax_loop as loop
        distributed.initialize(o.coordinator, o.num_processes, o.process_id)
    else:
        _jax_only(o)
        from . import torch_loop as loop
    per_class, val_split = (o.train_per_class, o.test_per_class), o.val_split
    if saved and o.resume:  # what is not given again is the run's own (docs/training.md)
        run_data = saved.get("data", {})
        recipe = recipe if recipe is not None else saved.get("recipe")
        per_class = tuple(given if given is not None else run_data.get(key)
                          for given, key in zip(per_class, ("train_per_class", "test_per_class")))
        val_split = val_split if val_split is not None else run_data.get("val_split")
    if recipe is None:
        recipe = Recipe()
    elif isinstance(recipe, dict):
        recipe = Recipe.from_dict(recipe)
    common = {"resume": o.resume, "progress": o.progress, "log": o.log}
    if o.init_from is not None:
        from archc._files import check_not_input
        check_not_input(os.path.join(out, "model.safetensors"),
                        [(option("init_from"), o.init_from)], option("out"))
        common["init"] = init_weights(net, o.init_from)
        o.log(f"starting from the weights in {o.init_from}")
    scale = {}
    if o.backend == "jax":
        if o.loader_workers is not None and o.loader_workers < 0:
            raise ArchError(f"{option('loader_workers')} must be 0 or more, not "
                            f"{o.loader_workers}")
        scale = {"devices": o.devices, "loader_workers": o.loader_workers or 0}
        streamed = _streamed(net, data, o, per_class, val_split)
        if streamed is not None:
            return loop.train(net, streamed, recipe, out, **common, **scale)
    from .data import load_images
    images = load_images(data, cache=o.cache, log=o.log, coarse=bool(o.coarse_labels),
                         progress=o.progress)
    images = images.holdout(val_split, seed=recipe.seed).subset(*per_class, seed=recipe.seed)
    return loop.train(net, images, recipe, out, **common, **scale)


def init_weights(net, path) -> dict:
    """The torch-layout weights of `path` (a safetensors file, checked: archc._checks) for
    `net`: one for every tensor of its layers, no other (their shapes are checked as the
    loop's module takes them; here already where torch is installed)."""
    import numpy as np
    from archc.backends import weights

    from archc._checks import no_extra_tensors
    given = option("init_from", path)
    if not isinstance(path, (str, os.PathLike)):
        raise ArchError(f"{option('init_from')} must be the path of a safetensors file, not "
                        f"{type(path).__name__}")
    tensors = weights.load(path)
    keys = weights.torch_keys(net)
    missing = sorted(keys - set(tensors))
    hint = ("import a checkpoint of another implementation first: archc weights import "
            "NET CHECKPOINT -o model.safetensors")
    if missing:
        raise ArchError(f"{given}: no weights for {len(missing)} tensor(s) of {net.name}, "
                        f"e.g. '{missing[0]}'", hint=hint)
    no_extra_tensors(tensors, keys, net.name, given)
    if missing_modules(("torch",)):
        return tensors   # the JAX loop checks each shape as its module takes the weights
    from archc.backends.import_weights import archc_tensors
    for key, shape, layer in archc_tensors(net):
        have = tuple(np.shape(tensors[key]))
        if have != shape and not key.endswith("num_batches_tracked"):
            raise ArchError(f"{given}: '{key}' is {have}, layer '{layer}' of {net.name} "
                            f"needs {shape}", hint=hint)
    return tensors


def _streamed(net, data, o: TrainOptions, per_class, val_split):
    """The image folder at `data` listed for streaming, if it is streamed (--stream on, or
    auto and it does not fit); None: it is read into memory."""
    from . import stream
    path = os.path.expanduser(str(data))
    if not stream.should_stream(path, o.stream, net.input_shape[-1]):
        return None
    if val_split is not None or any(n is not None for n in per_class):
        raise ArchError(f"{option('val_split')} and the per-class subsets are options of the "
                        "in-memory path; this data set is streamed",
                        hint=f"drop them, or {option('stream', 'off')} for a data set that fits")
    images = stream.open_folder(path, net.input_shape[-1])
    require_streaming()
    o.log(f"streaming {data} with Grain ({images.mode} images)")
    return images


__all__ = ["TrainOptions", "require_packages", "require_streaming", "train"]
