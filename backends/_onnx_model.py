"""The ONNX model around its graph (backends/onnx_backend.py builds it): where the weights
come from (trained ones checked, or the torch module's initialisation), the size check made
before anything is allocated, each node's doc string and the model's metadata.
"""
from __future__ import annotations

import json
import os

from archc.compiler import ArchError, Network

from . import lowering as L
from . import torch_backend


def initial_weights(net: Network, init: str | None = None, seed: int = 0) -> dict:
    """The torch module's initial state_dict as numpy arrays: PyTorch's defaults or the
    network's `init` scheme (or `init`), drawn after torch.manual_seed(seed)."""
    try:
        import torch
    except ImportError:
        raise ArchError("the ONNX backend takes its initial weights from the torch module, and "
                        "torch is not installed", hint="give trained weights (--weights "
                        "model.safetensors), or pip install 'archc[torch]'") from None
    from . import weights
    torch.manual_seed(seed)
    return weights.state_dict_numpy(torch_backend.compile_module(net, init=init))


def tensors_of(net: Network, weights, init: str | None) -> tuple:
    """({torch key: array}, where they came from) for build_model's `weights` argument."""
    if weights is None:
        scheme = L.init_scheme(net, init)
        return initial_weights(net, init), f"torch initialisation ({scheme}), seed 0"
    if init is not None:
        raise ArchError("--init chooses how weights are initialised; with --weights nothing is",
                        hint="give one of --weights and --init")
    if isinstance(weights, dict):
        from archc._checks import finite_tensors
        finite_tensors(weights, "weights")
        return weights, "given"
    if not isinstance(weights, (str, os.PathLike)):
        raise ArchError(f"weights must be a safetensors file's path or a dict of arrays, not "
                        f"{type(weights).__name__}")
    from . import weights as W
    return W.load(weights), os.path.basename(os.fspath(weights))


def doc(costs: dict, net: Network):
    """layer -> its node's doc string: op, output shape and the analysis' costs."""
    def layer_doc(layer: str) -> str:
        lc = costs[layer]
        span = net.node(layer).get("span")
        where = f" {os.path.basename(span.file)}:{span.line}." if span else ""
        c, h, w = lc.output
        return (f"{lc.op}: output {c} x {h} x {w} (C x H x W); params {lc.params}, buffers "
                f"{lc.buffers}, MACs {lc.macs}, element-wise ops {lc.elementwise_ops}, "
                f"activations {lc.activations}.{where}")
    return layer_doc


def metadata(net: Network, analysis, source: str, folded: dict, opset: int) -> dict:
    from archc.presentation.report import to_json_dict
    report = to_json_dict(analysis)
    keep = ("name", "op", "output", "params", "buffers", "macs", "flops", "elementwise_ops",
            "activations")
    layers = [{k: lc[k] for k in keep} for lc in report["layers"]]
    return {"archc.network": net.name, "archc.source": os.path.basename(net.file),
            "archc.parameters": json.dumps(report["parameters"]),
            "archc.weights": source, "archc.opset": str(opset),
            "archc.bn_folded": json.dumps(folded),
            "archc.totals": json.dumps(report["totals"]),
            "archc.layers": json.dumps(layers, separators=(",", ":")),
            "archc.shapes": "output and layers: [H, W, C] as in `archc analyze --format json`"}


def value_info(helper, TensorProto, name: str, shape: tuple, rank: int):
    c, h, w = shape
    dims = ["N", c, h, w] if rank == 4 else ["N", c]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


ONNX_MAX_BYTES = 2 << 30   # protobuf's limit: an ONNX file without external data
COPIES = 4                 # float32 copies made on the way: module, arrays, initialisers, file


def check_size(net: Network, params: int) -> None:
    """Refuse, before anything is allocated, a network whose float32 weights do not fit one
    ONNX file, or whose export would not fit in the memory available."""
    from archc._checks import available_memory
    size = params * 4
    if size > ONNX_MAX_BYTES:
        raise ArchError(f"{net.name} has {params:,} parameters ({size / 2**30:.1f} GiB as "
                        "float32): more than the 2 GiB an ONNX file holds",
                        hint="choose smaller network parameters")
    avail = available_memory()
    if avail is not None and size * COPIES > avail:
        raise ArchError(f"{net.name} has {params:,} parameters: exporting it needs about "
                        f"{size * COPIES:,} bytes of memory, more than the {avail:,} available",
                        hint="choose smaller network parameters, or free memory")
