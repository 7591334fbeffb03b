"""archc: a declarative architecture language and compiler for efficient CNNs.

Write a network once as an .arch file; archc reports what it costs (shapes, parameters,
MACs, activation memory) before any training, and lowers it to PyTorch and JAX/Flax.

    >>> import archc
    >>> net = archc.load("se_sqnxt", stages=[1, 2, 8, 1])
    >>> report = archc.analyze(net)
    >>> report.totals["params"]

The public API is this module; everything else is implementation.
"""
from __future__ import annotations

import os

from archc.compiler import (Analysis, ArchError, LayerCost, Network, bundled_networks, load,
                            load_source)
from archc.compiler import analyze as _analyze
from archc.compiler.report import render, to_json_dict
from archc.backends.train.recipe import Recipe

__version__ = "0.1.0"


def analyze(target, bits: int = 32, **params) -> Analysis:
    """Analyse a Network, or load a file/bundled name with `params` and analyse it."""
    net = target if isinstance(target, Network) else load(target, **params)
    return _analyze(net, bits=bits)


def _backend(backend: str):
    if backend == "torch":
        from archc.backends import torch_backend
        return torch_backend
    if backend == "jax":
        from archc.backends import jax_backend
        return jax_backend
    raise ArchError(f"unknown backend '{backend}'", hint="backends: torch, jax")


def build_source(target, backend: str = "torch", weight_init: str | None = None,
                 **params) -> str:
    """The generated module's source text for a Network, file or bundled name with `params`.

    weight_init overrides the network's `init` parameter (the CLI's --init)."""
    net = target if isinstance(target, Network) else load(target, **params)
    return _backend(backend).build_source(net, init=weight_init)


def build_module(target, backend: str = "torch", weight_init: str | None = None, **params):
    """An instance of the generated module for a Network, file or bundled name: the same
    source that `archc build` writes, executed (one lowering path)."""
    net = target if isinstance(target, Network) else load(target, **params)
    return _backend(backend).compile_module(net, init=weight_init)


# import names each training backend needs (pyproject.toml's extras install them)
_TRAIN_MODULES = ("numpy", "PIL", "safetensors", "matplotlib", "tqdm")
_BACKEND_MODULES = {"jax": ("jax", "flax", "optax", "orbax.checkpoint"), "torch": ("torch",)}
_TRAIN_EXTRA = {"jax": "train", "torch": "train-torch"}


def _require_training(backend: str) -> None:
    """A clear error, not an ImportError, when the training dependencies are missing."""
    import importlib.util
    wanted = _TRAIN_MODULES + _BACKEND_MODULES.get(backend, ())
    missing = []
    for module in wanted:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is missing
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise ArchError(f"archc train --backend {backend} needs packages that are not "
                        f"installed: {', '.join(missing)}",
                        hint=f"pip install 'archc[{_TRAIN_EXTRA.get(backend, 'train')}]'")


def train(target, data, recipe=None, *, backend: str = "jax", out: str | None = None,
          resume: bool = False, train_per_class: int | None = None,
          test_per_class: int | None = None, progress: bool = True, cache: bool = True,
          log=print, **params) -> dict:
    """Train a Network (or file/bundled name with `params`) on the data set at `data`.

    recipe: a Recipe (default: the papers' CIFAR-10 recipe) or a dict of its fields.
    Writes the run folder `out` (metrics.jsonl, curves.png, checkpoints, model.safetensors,
    summary.json) and returns the summary, with the final parameters under "state"."""
    _require_training(backend)
    from archc.backends.train.data import load_images
    net = target if isinstance(target, Network) else load(target, **params)
    if recipe is None:
        recipe = Recipe()
    elif isinstance(recipe, dict):
        recipe = Recipe(**recipe)
    if backend == "jax":
        from archc.backends.train import jax_loop as loop
    elif backend == "torch":
        from archc.backends.train import torch_loop as loop
    else:
        raise ArchError(f"unknown backend '{backend}'", hint="backends: jax, torch")
    images = load_images(data, cache=cache, log=log).subset(train_per_class, test_per_class,
                                                            seed=recipe.seed)
    out = out or os.path.join("runs", f"{net.name}-{backend}")
    return loop.train(net, images, recipe, out, resume=resume, progress=progress, log=log)


def __getattr__(name):
    # archc.weights (torch <-> JAX weight exchange, safetensors files) needs numpy, which the
    # core install does not: imported on first use.
    if name == "weights":
        import importlib
        return importlib.import_module("archc.backends.weights")
    raise AttributeError(f"module 'archc' has no attribute '{name}'")


__all__ = ["Analysis", "ArchError", "LayerCost", "Network", "Recipe", "analyze", "build_module",
           "build_source", "bundled_networks", "load", "load_source", "render", "to_json_dict",
           "train", "weights", "__version__"]
