"""Bit-operation reports (`archc analyze --bitops`): a table, markdown, CSV or JSON of
archc.compiler.bitops's per-layer costs and the score."""
from __future__ import annotations

from archc.compiler.bitops import BitReport

from .report import json_text


def _b(v):
    return "-" if v is None else str(v)


def to_json_dict(r: BitReport) -> dict:
    rows = []
    for c in r.layers:
        if not c.costed:
            continue
        rows.append({
            "name": c.name, "op": c.op, "type": c.type, "input_bits": list(c.in_bits),
            "weight_bits": c.weight_bits, "sparsity": c.sparsity, "mul_bits": c.mul_bits,
            "add_bits": c.add_bits, "muls": c.muls, "adds": c.adds,
            "mul_bitops": c.mul_bitops, "add_bitops": c.add_bitops,
            "storage_bits": c.storage_bits, "weights": c.weights, "biases": c.biases,
            "folded_bn": c.folded,
        })
    return {"network": r.network.name, "rules": r.rules.name, "baseline": r.baseline,
            "layers": rows, "totals": dict(r.totals)}


def render(r: BitReport, fmt: str = "table") -> str:
    if fmt == "json":
        return json_text(to_json_dict(r), indent=2)
    head = ["layer", "type", "input bits", "weight", "sparsity", "mul", "add", "mulops(M)",
            "addops(M)", "storage(K)"]
    rows = []
    for c in r.layers:
        if not c.costed:
            continue
        rows.append([c.name, c.type, "/".join(map(str, c.in_bits)), _b(c.weight_bits),
                     "-" if c.sparsity is None else f"{c.sparsity:.2f}", _b(c.mul_bits),
                     _b(c.add_bits), f"{c.mul_bitops / 1e6:.2f}" if c.muls else "-",
                     f"{c.add_bitops / 1e6:.2f}" if c.adds else "-",
                     f"{c.storage_bits / 1e3:.2f}" if c.storage_bits else "-"])
    t = r.totals
    if fmt == "markdown":
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
    elif fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(head)
        w.writerows(rows)
        return buf.getvalue()
    else:
        widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
        line = lambda row: "  ".join(v.ljust(widths[i]) if i < 2 else v.rjust(widths[i])  # noqa: E731
                                     for i, v in enumerate(row)).rstrip()
        out = [line(head), "-" * (sum(widths) + 2 * (len(head) - 1))] + [line(x) for x in rows]
    out += ["",
            f"rules: {r.rules.name} ({r.rules.title})",
            f"parameter storage {t['storage_params32'] / 1e6:.6g} M  "
            f"({t['storage_bits'] / 8e6:.6g} MB; 32-bit equivalents)",
            f"mul operations    {t['mul_ops32'] / 1e6:.6g} M",
            f"add operations    {t['add_ops32'] / 1e6:.6g} M",
            f"score {t['score']:.5f} = {t['storage_params32'] / 1e6:.6g}/"
            f"{t['baseline_params'] / 1e6:g} + ({t['mul_ops32'] / 1e6:.6g} + "
            f"{t['add_ops32'] / 1e6:.6g})/{t['baseline_ops'] / 1e6:g}  vs {t['baseline']}"]
    return "\n".join(out) + "\n"
