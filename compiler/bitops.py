"""Bit-operation analysis: parameter storage and math operations at given bit widths and
sparsity, scored against a MicroNet-challenge baseline (docs/bitops.md).

Every count comes from the op registry (compiler/ops.py): a conv's vector length is its
MACs per output element, its weight and bias counts are `params()`, a pool's window reads,
an add's or a scale's element count are `elementwise_ops()`, and each op's `bitops` rule
(ops.BitRule) says how those counts turn into multiplies, adds and stored bits. This module
applies the rules at the widths of a precision spec, under a rule set:

    table1    the rules behind seed 002's Table 1 (ProfitableNet; ../shared/reference/
              micronet-scoring.md): integer vector length, 1-bit mask only for pruned layers
    official  the challenge's counting.py rules: fractional vector length, unquantised
              (> 16-bit) parameters and multiplies counted at 16 bits ("freebie")

BatchNorm directly after a conv or linear layer (its only consumer) is folded into that
layer's bias for storage and costs nothing itself, as the challenge does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import ops
from .errors import ArchError
from .ir import Network
from .quant import QuantSpec

BASELINES = {
    # name: (title, parameters, math operations), both in 32-bit units
    "imagenet": ("ImageNet: MobileNetV2-1.4", 6.9e6, 1170e6),
    "cifar100": ("CIFAR-100: WideResNet-28-10", 36.5e6, 10.49e9),
}

@dataclass(frozen=True)
class RuleSet:
    name: str
    title: str
    integer_vector_length: bool      # floor(vector length * (1 - s)) per output
    freebie_bits: int | None         # params and multiplies wider than this count at it
    doc: str = ""

    def param_bits(self, bits: int) -> int:
        return min(bits, self.freebie_bits) if self.freebie_bits else bits

    def mul_bits(self, bits: int) -> int:
        return min(bits, self.freebie_bits) if self.freebie_bits else bits


RULESETS = {
    "table1": RuleSet("table1", "Zeng et al. Table 1 (ProfitableNet)", integer_vector_length=True,
                      freebie_bits=None,
                      doc="integer vector length; mask bits only for pruned layers"),
    "official": RuleSet("official", "MicroNet challenge counting.py", integer_vector_length=False,
                        freebie_bits=16,
                        doc="fractional vector length; >16-bit params and multiplies count "
                            "at 16 bits"),
}


@dataclass
class BitCost:
    name: str
    op: str
    type: str
    in_bits: tuple                   # bits of each input tensor
    weight_bits: int | None
    sparsity: float | None
    mul_bits: int | None
    add_bits: int | None
    muls: float = 0.0                # operation counts
    adds: float = 0.0
    storage_bits: float = 0.0
    weights: int = 0
    biases: int = 0
    folded: list = field(default_factory=list)   # BN layers folded into this one

    @property
    def mul_bitops(self) -> float:
        return self.muls * (self.mul_bits or 0)

    @property
    def add_bitops(self) -> float:
        return self.adds * (self.add_bits or 0)

    @property
    def costed(self) -> bool:
        return bool(self.muls or self.adds or self.storage_bits)


@dataclass
class BitReport:
    network: Network
    rules: RuleSet
    baseline: str
    layers: list                     # BitCost, data-flow order, every layer
    totals: dict


def _folded_bn(net: Network) -> dict:
    """normalisation node -> the weighted (conv/linear) node it folds into."""
    out = {}
    for n in net.layers():
        d = net.node(n)
        if not net.op(n).bitops.folds or len(d["inputs"]) != 1:
            continue
        src = d["inputs"][0]
        if net.op(src).bitops.kind == "weighted" and net.graph.out_degree(src) == 1:
            out[n] = src
    return out


# ---- one function per BitRule kind ---------------------------------------------------------
def _weighted(c: BitCost, op, ins, out, a, p, rules: RuleSet, bias: bool):
    """conv and linear: one dot product of `vector length` terms per output element."""
    outputs = ops.numel(out)
    vector = op.macs(ins, out, a) / outputs             # c_in/groups * kh * kw, or c_in
    tensors = op.params(ins, out, a)
    s = p.sparsity
    eff = vector * (1 - s)
    if rules.integer_vector_length:
        eff = math.floor(eff + 1e-9)
    wbits = rules.param_bits(p.weight_bits)
    c.weights = tensors.get("weight", 0)
    c.biases = out[0] if bias else 0
    c.weight_bits, c.sparsity = wbits, s
    c.mul_bits = rules.mul_bits(max(max(c.in_bits), p.weight_bits))
    c.add_bits = p.acc_bits
    c.muls = eff * outputs
    c.adds = (eff - 1 + (1 if bias else 0)) * outputs
    c.storage_bits = c.weights * wbits * (1 - s) + (c.weights if s > 0 else 0) \
        + c.biases * rules.param_bits(p.bias_bits)


def _norm(c, op, ins, out, a, p, rules, bias):
    """An unfolded BatchNorm (or LRN): its element-wise ops as multiplies and adds."""
    n = op.elementwise_ops(ins, out, a)
    c.mul_bits, c.add_bits = rules.mul_bits(max(c.in_bits)), p.acc_bits
    c.muls, c.adds = n / 2, n / 2
    stored = sum(op.params(ins, out, a).values())
    c.biases = stored
    c.storage_bits = stored * rules.param_bits(p.bias_bits)


def _elementwise(c, op, ins, out, a, p, rules, bias):
    """Activations, residual adds, SE scaling, layer scale: the rule's multiplies and adds
    per op; parameters (layer scale's gamma) stored at the bias precision."""
    n = op.elementwise_ops(ins, out, a)
    if op.bitops.muls:
        c.mul_bits, c.muls = rules.mul_bits(max(c.in_bits)), op.bitops.muls * n
    if op.bitops.adds and n:
        c.add_bits, c.adds = p.acc_bits, op.bitops.adds * n
    stored = sum(op.params(ins, out, a).values())
    if stored:
        c.biases = stored
        c.storage_bits = stored * rules.param_bits(p.bias_bits)


def _pool(c, op, ins, out, a, p, rules, bias):
    """Window reads minus one per output are adds; the rule's multiplies per output (an
    average pool's divide)."""
    reads = op.elementwise_ops(ins, out, a)
    outputs = ops.numel(out)
    c.add_bits, c.adds = p.acc_bits, reads - outputs
    c.mul_bits = rules.mul_bits(max(c.in_bits))
    c.muls = op.bitops.muls * outputs


def _matmul(c, op, ins, out, a, p, rules, bias):
    """Products of two activations (attention's q k^T and weights times v): one multiply
    per MAC at the wider input's activation precision (no weight, nothing stored, no
    sparsity), a dot product's terms minus one adds; the scaling and softmax are its
    element-wise ops, half multiplies and half adds as for an unfolded normalisation."""
    macs = op.macs(ins, out, a)
    dots = op.scores(ins, a) + ops.numel(out)        # one per weight, one per output
    n = op.elementwise_ops(ins, out, a)
    c.mul_bits, c.add_bits = rules.mul_bits(max(c.in_bits)), p.acc_bits
    c.muls = macs + n / 2
    c.adds = macs - dots + n / 2


RULES = {"weighted": _weighted, "norm": _norm, "elementwise": _elementwise, "pool": _pool,
         "matmul": _matmul}


def bitops(net: Network, rules: str | RuleSet = "table1", spec: QuantSpec | None = None,
           baseline: str = "imagenet") -> BitReport:
    if isinstance(rules, str):
        if rules not in RULESETS:
            raise ArchError(f"unknown bit-op rules '{rules}'",
                            hint="rules: " + ", ".join(RULESETS))
        rules = RULESETS[rules]
    if baseline not in BASELINES:
        raise ArchError(f"unknown baseline '{baseline}'", hint="baselines: " + ", ".join(BASELINES))
    spec = spec or QuantSpec("<float32>", "")
    prec = spec.resolve([net.input] + net.layers())
    folded = _folded_bn(net)
    has_bias_from = {}
    for bn, src in folded.items():
        has_bias_from.setdefault(src, []).append(bn)
    layers = []
    for n in net.layers():
        d = net.node(n)
        op = ops.get(d["op"])
        ins, out, a = list(d["in_shapes"]), d["shape"], d["attrs"]
        p = prec[n]
        c = BitCost(n, d["op"], op.bitops.label or d["op"],
                    tuple(prec[i].act_bits for i in d["inputs"]), None, None, None, None)
        if n in folded:
            c.folded = [f"folded into {folded[n]}"]
        else:
            rule = RULES.get(op.bitops.kind)
            if rule is not None:
                bias = "bias" in op.params(ins, out, a) or n in has_bias_from
                rule(c, op, ins, out, a, p, rules, bias)
                c.folded = has_bias_from.get(n, [])
        layers.append(c)
    storage = sum(c.storage_bits for c in layers)
    mul = sum(c.mul_bitops for c in layers)
    add = sum(c.add_bitops for c in layers)
    title, base_params, base_ops = BASELINES[baseline]
    t = {
        "storage_bits": storage, "mul_bitops": mul, "add_bitops": add,
        "storage_params32": storage / 32, "mul_ops32": mul / 32, "add_ops32": add / 32,
        "weights": sum(c.weights for c in layers), "biases": sum(c.biases for c in layers),
        "baseline": title, "baseline_params": base_params, "baseline_ops": base_ops,
    }
    t["score_params"] = t["storage_params32"] / base_params
    t["score_ops"] = (t["mul_ops32"] + t["add_ops32"]) / base_ops
    t["score"] = t["score_params"] + t["score_ops"]
    return BitReport(net, rules, baseline, layers, t)


def size_table(target: str = "se_sqnxt") -> str:
    """Markdown: a network's parameter storage at float32, int8 and int8 with 50% sparsity
    (table1 rules; docs/bitops.md embeds this output)."""
    from . import load
    from .quant import load_quant
    net = load(target)
    out = ["| precision (spec) | weights | biases | storage (bits) | storage (KB) |",
           "|---|---:|---:|---:|---:|"]
    for label, spec in (("float32 (none)", None), ("int8 (int8.quant)", "int8.quant"),
                        ("int8, 50% sparse (int8_sparse50.quant)", "int8_sparse50.quant")):
        r = bitops(net, "table1", load_quant(spec) if spec else None)
        t = r.totals
        out.append(f"| {label} | {t['weights']:,} | {t['biases']:,} | {t['storage_bits']:,.0f} | "
                   f"{t['storage_bits'] / 8e3:,.2f} |")
    return "\n".join(out) + "\n"
