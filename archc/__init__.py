"""archc: a declarative architecture language and compiler for efficient CNNs.

Write a network once as an .arch file; archc reports what it costs (shapes, parameters,
MACs, activation memory) before any training, and lowers it to PyTorch, JAX/Flax and ONNX.

    >>> import archc
    >>> net = archc.load("se_sqnxt", stages=[1, 2, 8, 1])
    >>> report = archc.analyze(net)
    >>> report.totals["params"]

The public API is this module; everything else is implementation.
"""
from __future__ import annotations

import os

from archc.compiler import Analysis, ArchError, LayerCost, Network, Program, bundled_networks
from archc.compiler import analyze as _analyze
from archc.compiler import load_program
from archc.compiler._loader import build as _build
from archc.presentation.report import render, to_json_dict
from archc.training.recipe import Recipe

__version__ = "0.1.0"


# Network parameters are keyword arguments, next to each function's own keywords (bits,
# backend, weight_init ...). The two never mix silently: the target is positional-only, and
# giving a function's own keyword to a network that has a parameter of the same name is an
# error naming it (load the Network first: archc.load(target, bits=8)).
_UNSET = object()  # an own keyword the caller did not give


def _network(fn: str, target, params: dict, own: dict | None = None) -> Network:
    if isinstance(target, Network):
        if params:
            raise ArchError(f"archc.{fn}(): network parameters ({', '.join(params)}) cannot be "
                            "applied to a Network that is already built",
                            hint="give them when loading it: archc.load(target, name=value)")
        return target
    program = target if isinstance(target, Program) else load_program(target)
    declared = {p.name for p in program.network_def.params}
    for k, v in (own or {}).items():
        if v is not _UNSET and k in declared:
            raise ArchError(f"archc.{fn}(): keyword argument '{k}' is ambiguous: it is an "
                            f"option of archc.{fn}() and a parameter of network "
                            f"'{program.network_def.name}'",
                            hint=f"set the network's with archc.load(target, {k}=...) and pass "
                                 f"the Network to archc.{fn}()")
    return _build(program, params, caller=f"archc.{fn}()")


def _given(v, default):
    return default if v is _UNSET else v


def load(target, /, **params) -> Network:
    """Compile a .arch file (a path, or the name of a bundled network) with parameter values."""
    return _network("load", target, params)


def load_source(text: str, /, filename=_UNSET, **params) -> Network:
    """Compile .arch source text (named `filename` in messages) with parameter values."""
    program = load_program(source=text, filename=_given(filename, "<string>"))
    return _network("load_source", program, params, {"filename": filename})


def deploy(target, /, weights=_UNSET, **params):
    """The deployed form of a Network, file or bundled name with `params`: each sum of linear
    branches of one input (RepVGG's, MobileOne's) merged into one conv with a bias, each BN
    after a conv folded into it (docs/reparam.md; the CLI's --deploy).

    weights: the training form's weights, a safetensors file or {key: array} in the torch
    layout; given, returns (deployed Network, its torch-layout {key: array}), which the
    deployed module computes the training form's eval-mode function with."""
    from archc.compiler.reparam import deploy as _deploy
    net = _network("deploy", target, params, {"weights": weights})
    if weights is _UNSET:
        return _deploy(net)
    from archc.backends import reparam_weights
    from archc.backends import weights as W
    tensors = W.load(weights) if isinstance(weights, (str, os.PathLike)) else weights
    if not isinstance(tensors, dict):
        raise ArchError("archc.deploy(): keyword argument 'weights' must be a safetensors path "
                        f"or a dict of arrays, not {type(weights).__name__}")
    return reparam_weights.deploy_state_dict(net, tensors)


def analyze(target, /, bits=_UNSET, **params) -> Analysis:
    """Analyse a Network, or load a file/bundled name with `params` and analyse it."""
    net = _network("analyze", target, params, {"bits": bits})
    bits = _given(bits, 32)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 64:
        raise ArchError(f"archc.analyze(): keyword argument 'bits' must be an integer from 1 "
                        f"to 64, not {bits!r:.40}")
    return _analyze(net, bits=bits)


def _own_string(fn: str, keyword: str, value, default):
    """An own keyword that takes a string (or None): checked, the default if not given."""
    value = _given(value, default)
    if value is not None and not isinstance(value, str):
        raise ArchError(f"archc.{fn}(): keyword argument '{keyword}' must be a string, not "
                        f"{type(value).__name__}")
    return value


def _backend(backend: str):
    if backend == "torch":
        from archc.backends import torch_backend
        return torch_backend
    if backend == "jax":
        from archc.backends import jax_backend
        return jax_backend
    if backend == "onnx":
        raise ArchError("the onnx backend builds a binary model, not Python source",
                        hint="use archc.build_onnx(...), or archc build --backend onnx -o FILE")
    raise ArchError(f"unknown backend '{backend}'", hint="backends: torch, jax")


def build_source(target, /, backend=_UNSET, weight_init=_UNSET, **params) -> str:
    """The generated module's source text for a Network, file or bundled name with `params`.

    backend: "torch" (default) or "jax"; weight_init overrides the network's `init`
    parameter (the CLI's --init)."""
    own = {"backend": backend, "weight_init": weight_init}
    net = _network("build_source", target, params, own)
    init = _own_string("build_source", "weight_init", weight_init, None)
    return _backend(_own_string("build_source", "backend", backend, "torch")).build_source(
        net, init=init)


def build_module(target, /, backend=_UNSET, weight_init=_UNSET, **params):
    """An instance of the generated module for a Network, file or bundled name: the same
    source that `archc build` writes, executed (one lowering path)."""
    own = {"backend": backend, "weight_init": weight_init}
    net = _network("build_module", target, params, own)
    init = _own_string("build_module", "weight_init", weight_init, None)
    return _backend(_own_string("build_module", "backend", backend, "torch")).compile_module(
        net, init=init)


def build_onnx(target, /, weights=_UNSET, fold_bn=_UNSET, weight_init=_UNSET, **params):
    """The ONNX model (an onnx.ModelProto) of a Network, file or bundled name with `params`;
    `onnx.save(model, "net.onnx")` or `archc build --backend onnx -o net.onnx` writes it.

    weights: a safetensors file or {key: array} in the torch module's layout (as `archc train`
    writes model.safetensors); not given: the torch module's initialisation after
    torch.manual_seed(0), weight_init overriding the network's scheme. fold_bn=True: fold
    each BatchNormalization into the conv or linear layer before it (docs/backends.md)."""
    from archc.backends import onnx_backend
    own = {"weights": weights, "fold_bn": fold_bn, "weight_init": weight_init}
    net = _network("build_onnx", target, params, own)
    init = _own_string("build_onnx", "weight_init", weight_init, None)
    fold = _given(fold_bn, False)
    if not isinstance(fold, bool):
        raise ArchError("archc.build_onnx(): keyword argument 'fold_bn' must be True or False, "
                        f"not {type(fold).__name__}")
    return onnx_backend.build_model(net, weights=_given(weights, None), fold_bn=fold, init=init)


def _require_training(backend: str) -> None:
    """A clear error, not an ImportError, when the training dependencies are missing."""
    from archc.training.api import require_packages
    require_packages(backend)


def train(target, data, /, recipe=_UNSET, *, backend=_UNSET, out=_UNSET, resume=_UNSET,
          train_per_class=_UNSET, test_per_class=_UNSET, progress=_UNSET, cache=_UNSET,
          log=_UNSET, val_split=_UNSET, coarse_labels=_UNSET, devices=_UNSET,
          coordinator=_UNSET, num_processes=_UNSET, process_id=_UNSET, stream=_UNSET,
          loader_workers=_UNSET, init_from=_UNSET, **params) -> dict:
    """Train a Network (or file/bundled name with `params`) on the data set at `data`.

    recipe: a Recipe (default: the papers' CIFAR-10 recipe) or a dict of its fields.
    backend "jax" (default) or "torch"; out: the run folder (default runs/<name>-<backend>).
    Writes the run folder (metrics.jsonl, curves.png, checkpoints, model.safetensors,
    summary.json) and returns the summary, with the final parameters under "state".
    resume=True continues the run in `out`; the recipe and the per-class subset sizes not
    given are taken from its run.json.
    val_split=N: validate on N training images held out at random (seed 003: 2,000), not on
    the test split; coarse_labels=True: CIFAR-100's 20 coarse classes.
    JAX only: devices=N trains data parallel on N of each process's devices (default: all);
    coordinator ("host:port"), num_processes and process_id start a multi-host run with
    jax.distributed (docs/training.md, "More than one device"); stream="auto" (default),
    "on" or "off": read an image folder with Grain as training goes (automatic when it does
    not fit in memory), loader_workers=N decoding processes.
    init_from: start from the weights in this safetensors file (torch layout: a run's
    model.safetensors, or archc.weights.import_state_dict's result saved with
    archc.weights.save) instead of the initialisation.
    The keywords other than recipe are the fields of archc.training.options.TrainOptions."""
    own = {"recipe": recipe, "backend": backend, "out": out, "resume": resume,
           "train_per_class": train_per_class, "test_per_class": test_per_class,
           "progress": progress, "cache": cache, "log": log, "val_split": val_split,
           "coarse_labels": coarse_labels, "devices": devices, "coordinator": coordinator,
           "num_processes": num_processes, "process_id": process_id, "stream": stream,
           "loader_workers": loader_workers, "init_from": init_from}
    from archc.training import api
    from archc.training.options import spelled
    options = api.TrainOptions(**{k: v for k, v in own.items()
                                  if v is not _UNSET and k != "recipe"})
    with spelled("keyword"):
        api.require_packages(options.backend)
    net = _network("train", target, params, own)
    return api.train(net, data, _given(recipe, None), options, spelling="keyword")


def __getattr__(name):
    # archc.weights (torch <-> JAX weight exchange, safetensors files) needs numpy, which the
    # core install does not: imported on first use.
    if name == "weights":
        import importlib
        return importlib.import_module("archc.backends.weights")
    raise AttributeError(f"module 'archc' has no attribute '{name}'")


__all__ = ["Analysis", "ArchError", "LayerCost", "Network", "Recipe", "analyze", "build_module",
           "build_onnx", "build_source", "bundled_networks", "deploy", "load", "load_source", "render",
           "to_json_dict", "train", "weights", "__version__"]
