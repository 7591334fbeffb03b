"""The op registry: every primitive layer of the .arch language, defined once.

Each op is one class, and each class holds everything archc knows about that op:
its signature (the arguments the language accepts, with types and defaults), its shape
rule (PyTorch semantics), and its costs -- parameters, buffers, MACs and element-wise
ops. The elaborator, the analysis, the bit-op rules and the backends all read these
classes; no other module restates a shape rule or a cost formula.

Shapes are (C, H, W) tuples of ints, batch dimension excluded.

Cost conventions (docs/costs.md explains them with examples):
- `macs`: multiply-accumulates of convolutions and linear layers
  (conv: kh*kw*(C_in/groups)*C_out*H_out*W_out; linear: in*out) and of the matrix
  products between two activations (attention: q k^T and the weights times v, counted as
  fvcore counts matmuls; the analysis also totals them apart as `matmul_macs`).
  FLOPs = 2*MACs.
- `elementwise_ops`: every other arithmetic op, one per element it touches (bias adds,
  BN scale+shift, activations, pooling window reads, residual adds, SE scaling).
- `params`: trainable weights (conv/linear weight and bias, BN gamma and beta).
- `buffers`: non-trainable state (BN running mean and variance).

Each op also declares what the other layers of archc would otherwise have to guess, so that
no other module keeps a list of op names (defaults in `Op`; an op states what differs):
- `stateful`: whether its layer is a module in the generated code (it holds parameters,
  buffers or a train/eval mode), or a function call;
- `bitops`: its BitRule, how the bit-op analysis (compiler/bitops.py) turns its counts into
  multiplies, adds and stored bits (docs/bitops.md);
- `quant`: its QuantRule, where compression (compression/plan.py) quantizes activations
  around it;
- `rank`: the rank of its value at run time in torch, JAX and ONNX (N x C after
  flatten/linear);
- `folds_bn`: whether a following BN folds into it (compression, the ONNX export);
- `init`: whether the weight initialisation schemes draw its weight.

The registry's mechanics (`Op`, `Arg`, the rule records, `register`) are compiler/_op.py's;
the ops are defined by family in compiler/_ops_layers.py (input, conv, linear,
normalisation, activations), _ops_pool_shape.py (pooling, dropout, reshaping, merges),
_ops_resample.py (resampling, rearranging, stochastic depth) and _ops_attention.py
(attention between activations), imported here in that order,
which is the registry's. To add an op: write one class in the module of its family with
`@register`; the language, analysis and JSON output pick it up. Backends then need one
lowering entry each (docs/adding-an-op.md; they raise a clear error naming the op until
they have one).
"""
from __future__ import annotations

from ._op import (REGISTRY, REQUIRED, Arg, BitRule, Op, OpError, QuantRule, Shape, fmt, get,
                  numel, register)

# the ops, family by family: importing a module registers its ops, in this order
from . import _ops_layers, _ops_pool_shape, _ops_resample, _ops_attention  # noqa: F401

ACTIVATIONS = tuple(n for n, op in REGISTRY.items() if op.category == "activation")

__all__ = ["REGISTRY", "ACTIVATIONS", "Arg", "BitRule", "Op", "OpError", "QuantRule", "REQUIRED",
           "Shape", "register", "get", "numel", "fmt"]
