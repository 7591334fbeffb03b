"""The op registry's mechanics: the `Op` base class, its argument and rule records, and
`register`. compiler/ops.py describes the registry and is the module to import; the ops
themselves are defined by family in compiler/_ops_layers.py, _ops_pool_shape.py and
_ops_resample.py.
"""
from __future__ import annotations

from dataclasses import dataclass

Shape = tuple  # (C, H, W)

REQUIRED = object()


class OpError(Exception):
    """A shape or argument error raised by an op; `arg` names the offending argument."""

    def __init__(self, message: str, hint: str | None = None, arg: str | None = None):
        super().__init__(message)
        self.message, self.hint, self.arg = message, hint, arg


@dataclass(frozen=True)
class BitRule:
    """How compiler/bitops.py counts an op (the MicroNet rules, docs/bitops.md).

    kind   weighted     a dot product per output element (conv, linear): vector-length
                        multiplies and adds, weight storage, sparsity
           norm         an unfolded normalisation: its element-wise ops, half multiplies and
                        half adds; its parameters stored at the bias precision
           elementwise  `muls` multiplies and `adds` adds per element-wise op
           pool         window reads minus one adds per output, `muls` multiplies per output
           matmul       products of two activations (attention): a multiply per MAC at the
                        inputs' precision, a dot product's terms minus one adds; its
                        element-wise ops (scaling, softmax) half multiplies, half adds
           none         free (reshapes, slices, concatenation, dropout)
    folds  a normalisation folded into a directly preceding weighted layer (BN)
    label  the type column of seed 002's Table 1 ("Conv", "FC", "Pool" ...), else the op name
    """

    kind: str = "none"
    muls: float = 0
    adds: float = 0
    folds: bool = False
    label: str | None = None


@dataclass(frozen=True)
class QuantRule:
    """Where compression/plan.py quantizes activations around an op (the rules are that
    module's docstring; seed 002, sec. 3.5). The default: a layer outside any unit, whose
    output is float and may be negative.

    unit     "head": starts a conv -> BN -> activation unit (conv, linear, add, concat, mul);
             "chain": continues the unit of its only input (BN, activations, identity)
    merge    a unit whose output flows only into merges is not quantized; the merge's own
             unit is (add, concat)
    grid     outside a unit: "keep" its input's grid (max pool, slice, flatten, dropout ...),
             "requant" round back onto it (average pools); "" float
    sign     "nonneg": its output is >= 0 by construction (relu, sigmoid ...); "keep": >= 0
             when all its inputs are (pools, reshapes, merges); "" may be negative
    weights  compression prunes and quantizes its weight (conv, linear); such an op must also
             take a folded BN (`Op.folds_bn`), since compression reads its folded kernel
    """

    unit: str = ""
    merge: bool = False
    grid: str = ""
    sign: str = ""
    weights: bool = False


@dataclass(frozen=True)
class Arg:
    """One argument of an op.

    kind: tensor | tensors (variadic) | int | float | bool | string | pair | ints |
          padding (a pair, "same" or "tf_same")
    """

    name: str
    kind: str
    default: object = REQUIRED
    choices: tuple = ()
    minimum: float | None = None
    doc: str = ""


def numel(shape: Shape) -> int:
    c, h, w = shape
    return c * h * w


def fmt(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


class Op:
    """Base class: an op with no parameters and no arithmetic, shape unchanged."""

    name: str = ""
    args: tuple = ()
    doc: str = ""
    category: str = "other"   # conv | linear | norm | activation | pool | dropout | shape |
    #                           merge | resample | attention
    stateful: bool = False    # a module (parameters, buffers or a train/eval mode), not a call
    bitops: BitRule = BitRule()
    quant: QuantRule = QuantRule()
    # the rank of its value at run time where a C x 1 x 1 value may be N x C (torch, JAX,
    # ONNX; backends/lowering.ranks): 4 (N x C x H x W), 2 (N x C: flatten, linear), None
    # that of its inputs (element-wise ops, merges, slices)
    rank: int | None = 4
    # a BN whose only input it is, and which is its only consumer, folds into its weight and
    # bias (compression/fold.py, the ONNX export's fold_bn); its weight is laid out as conv's
    # or linear's (output channels first in torch, last in JAX)
    folds_bn: bool = False
    # the weight initialisation schemes (backends/lowering.py's INIT_SCHEMES) draw its weight
    # and zero its bias; the generated init_weights names its class: "always" in every file,
    # "used" only where the network uses the op; None: the framework's own initialisation
    init: str | None = None
    # its output lies in [0, 1]: it can gate channels (the SE gates that `archc inspect
    # --se-activations` reads, training/se_activations.py)
    gate: bool = False

    # -- argument normalisation -------------------------------------------------
    def normalize(self, attrs: dict, inputs: list) -> dict:
        """Turn defaults and shorthand into the explicit attributes stored in the IR."""
        return attrs

    # -- shape rule ----------------------------------------------------------------
    def shape(self, inputs: list, attrs: dict) -> Shape:
        return inputs[0]

    def channels(self, in_channels: list, attrs: dict):
        """The output channel count from the input channel counts and the attributes: the
        channel part of `shape`, written with + and - only so that backends can apply it to
        symbolic values (the constructor arguments of a generated block class); None when
        it also needs H and W. tests/test_torch_backend.py checks it against `shape`."""
        return in_channels[0]

    def channels_at(self, in_channels: list, attrs: dict, in_shapes: list):
        """`channels` where the input shapes are known too (H and W then fixed)."""
        return self.channels(in_channels, attrs)

    # -- costs -----------------------------------------------------------------------
    def params(self, inputs: list, out: Shape, attrs: dict) -> dict:
        """Trainable parameter counts by tensor name (e.g. {"weight": 576, "bias": 64})."""
        return {}

    def buffers(self, inputs: list, out: Shape, attrs: dict) -> dict:
        return {}

    def macs(self, inputs: list, out: Shape, attrs: dict) -> int:
        return 0

    def elementwise_ops(self, inputs: list, out: Shape, attrs: dict) -> int:
        return 0


REGISTRY: dict[str, Op] = {}


def register(cls):
    op = cls()
    assert op.name and op.name not in REGISTRY, op.name
    REGISTRY[op.name] = op
    return cls


def get(name: str) -> Op:
    return REGISTRY[name]


# ---- helpers --------------------------------------------------------------------
def window_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool,
               p_end: int | None = None) -> int:
    """PyTorch's output length for a conv or pooling window along one axis; padding p
    before the input and p_end (default p) after it."""
    eff = d * (k - 1) + 1
    num = size + p + (p if p_end is None else p_end) - eff
    if num < 0:
        return 0
    if ceil_mode:
        out = -(-num // s) + 1
        if (out - 1) * s >= size + p:  # last window must start inside the input or left pad
            out -= 1
    else:
        out = num // s + 1
    return out


def pads4(p: tuple) -> tuple:
    """A normalised padding, (h, w) on both sides or (top, left, bottom, right), as
    (top, left, bottom, right)."""
    return tuple(p) if len(p) == 4 else (p[0], p[1], p[0], p[1])


def tf_same(size: tuple, k: tuple, s: tuple, d: tuple) -> tuple:
    """TensorFlow's "SAME" padding for an input of `size` (h, w): output ceil(in / stride),
    the total padding max((out - 1) * s + (k - 1) * d + 1 - in, 0) per axis, its half (rounded
    down) before and the rest after: (top, left, bottom, right), also when symmetric (the
    generated code then has one form whatever the input size)."""
    before, after = [], []
    for n, kk, ss, dd in zip(size, k, s, d):
        total = max((-(-n // ss) - 1) * ss + (kk - 1) * dd + 1 - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return (*before, *after)


def resolve_padding(a: dict, inputs: list, dilation=(1, 1)) -> tuple:
    """The normalised padding of a window op (conv, pools) given n, [h, w], "same"
    (d * (k - 1) / 2 on each side, odd windows) or "tf_same" (TensorFlow's, `tf_same`)."""
    p = a["padding"]
    if p == "same":
        pad = []
        for k, d in zip(a["kernel"], dilation):
            if (d * (k - 1)) % 2:
                raise OpError(f"padding \"same\" needs an odd kernel, got {k}", arg="padding",
                              hint="give the padding explicitly, e.g. padding=[0, 1], or use "
                                   "\"tf_same\" (TensorFlow's, more padding after than before)")
            pad.append(d * (k - 1) // 2)
        return tuple(pad)
    if p == "tf_same":
        if a.get("ceil_mode"):
            raise OpError("padding \"tf_same\" already gives TensorFlow's output size "
                          "ceil(in / stride); it does not combine with ceil_mode",
                          arg="padding", hint="leave ceil_mode false")
        return tf_same(inputs[0][1:], a["kernel"], a["stride"], dilation)
    return p


def spatial(op: str, inp: Shape, k, s, p, d=(1, 1), ceil_mode=False) -> tuple:
    _, h, w = inp
    top, left, bottom, right = pads4(p)
    ho = window_out(h, k[0], s[0], top, d[0], ceil_mode, bottom)
    wo = window_out(w, k[1], s[1], left, d[1], ceil_mode, right)
    if ho <= 0 or wo <= 0:
        shown = f"{p[0]}x{p[1]}" if len(p) == 2 else f"{list(p)} (top, left, bottom, right)"
        raise OpError(
            f"{op} output would be {max(ho, 0)}x{max(wo, 0)} (H x W): input {h}x{w}, "
            f"kernel {k[0]}x{k[1]}, stride {s[0]}x{s[1]}, padding {shown}",
            hint="the spatial size must stay positive; use a smaller kernel or stride, "
                 "more padding, or a larger input")
    return ho, wo
