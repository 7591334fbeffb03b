"""Rendering an Analysis: aligned text table, Markdown, CSV and the JSON machine interface."""
from __future__ import annotations

import csv
import io
import json
import math

from archc.compiler._values import to_json
from archc.compiler.analysis import Analysis, fold


def _hwc(shape) -> list:
    c, h, w = shape
    return [h, w, c]


def _x(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return "x".join(str(i) for i in v)
    return str(v)


def to_json_dict(a: Analysis) -> dict:
    """The documented JSON interface (docs/cli.md): one entry per primitive layer, data-flow order."""
    layers = []
    for lc in a.layers:
        layers.append({
            "name": lc.name,
            "op": lc.op,
            "inputs": [_hwc(s) for s in lc.inputs],
            "output": _hwc(lc.output),
            "kernel": list(lc.kernel) if lc.kernel is not None else None,
            "stride": list(lc.stride) if lc.stride is not None else None,
            "padding": list(lc.padding) if isinstance(lc.padding, tuple) else None,
            "groups": lc.groups,
            "params": lc.params,
            "param_tensors": lc.param_tensors,
            "buffers": lc.buffers,
            "macs": lc.macs,
            "flops": lc.flops,
            "elementwise_ops": lc.elementwise_ops,
            "activations": lc.activations,
            "attrs": {k: to_json(v) for k, v in sorted(lc.attrs.items())},
            "source": str(a.network.node(lc.name)["span"]),
        })
    net = a.network
    return {
        "network": net.name,
        "file": net.file,
        "parameters": {k: to_json(v) for k, v in net.params.items()},
        "input": _hwc(net.input_shape),
        "output": _hwc(net.output_shape),
        "outputs": [{"name": o.name, "layer": o.layer, "output": _hwc(o.shape),
                     "params": o.params, "macs": o.macs} for o in a.outputs],
        "layers": layers,
        "totals": dict(a.totals),
    }


def json_text(obj, indent: int = 1) -> str:
    """Always valid JSON (RFC 8259 has no NaN or Infinity): a non-finite float, which no
    archc value should be, is written as null rather than as Python's `NaN`."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False) + "\n"


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json_text(a: Analysis) -> str:
    return json_text(to_json_dict(a))


HEADER = ["Layer", "Op", "Input HxWxC", "Padding h x w", "Stride", "Kernel h x w", "Output HxWxC",
          "Groups", "Repeat", "Params", "MACs"]


def rows(a: Analysis, folded: bool = True, only: set | None = None) -> list[list[str]]:
    out = []
    for r in fold(a.layers, enabled=folded):
        lc = r.layer
        if only and lc.op not in only:
            continue
        ins = ", ".join(_x(tuple(_hwc(s))) for s in lc.inputs)
        out.append([r.name, lc.op, ins, _x(lc.padding if isinstance(lc.padding, tuple) else None),
                    _x(lc.stride), _x(lc.kernel), _x(tuple(_hwc(lc.output))),
                    _x(lc.groups), str(r.repeat), f"{r.params:,}", f"{r.macs:,}"])
    return out


def _totals_lines(a: Analysis) -> list[str]:
    t = a.totals
    mb = t["size_bytes"] / 1e6
    return [
        f"params {t['params']:,} (+ {t['buffers']:,} BN buffers)",
        (f"MACs {t['macs']:,}  (FLOPs = 2*MACs = {t['flops']:,})"
         + (f"; conv + linear {t['macs'] - t['matmul_macs']:,}, attention matmuls "
            f"{t['matmul_macs']:,}" if t["matmul_macs"] else "")),
        f"element-wise ops {t['elementwise_ops']:,}",
        f"activations {t['activations']:,} elements; peak live {t['peak_activations']:,} "
        f"(at {t['peak_activations_at']})",
        f"size {t['size_bytes']:,} bytes = {mb:.3f} MB at {t['precision_bits']}-bit parameters",
    ] + [f"output {o.name} {_x(tuple(_hwc(o.shape)))} from {o.layer}: needs {o.params:,} "
         f"params, {o.macs:,} MACs" for o in a.outputs if o.name is not None]


def _title(a: Analysis) -> str:
    params = ", ".join(f"{k}={_show(v)}" for k, v in a.network.params.items())
    return f"{a.network.name}({params})  input {_x(tuple(_hwc(a.network.input_shape)))}"


def _show(v):
    from archc.compiler._values import show
    return show(v)


def render(a: Analysis, fmt: str = "table", folded: bool = True, only: set | None = None) -> str:
    if fmt == "json":
        return to_json_text(a)
    body = rows(a, folded, only)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows([[c.replace(",", "") if i >= 9 else c for i, c in enumerate(r)] for r in body])
        return buf.getvalue()
    if fmt == "markdown":
        lines = [f"**{_title(a)}**", "", "| " + " | ".join(HEADER) + " |",
                 "|" + "|".join("---:" if i >= 7 else "---" for i in range(len(HEADER))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        lines += [""] + [f"- {t}" for t in _totals_lines(a)]
        return "\n".join(lines) + "\n"
    # Plain aligned columns: rich's Table took ~1 s for a 160-row network (docs/benchmarks.md).
    numeric = [i >= 7 for i in range(len(HEADER))]
    widths = [max(len(r[i]) for r in [HEADER] + body) for i in range(len(HEADER))]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [_title(a), line(HEADER), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in body]
    out += [""] + _totals_lines(a)
    return "\n".join(out) + "\n"
