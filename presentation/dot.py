"""`archc analyze --format dot`: the layer graph in Graphviz's DOT language.

One node per layer (and the input), labelled with its name, op, output shape and costs; one
cluster per IR scope (block calls, loop iterations, splits), nested as in the source; edges
into an `add` (residual), a `concat` and an SE `mul` (scale) are drawn apart. Render it with
`dot -Tsvg net.dot -o net.svg`.
"""
from __future__ import annotations

from archc.compiler._values import show
from archc.compiler.analysis import Analysis
from .view import edge_kind, hwc, pair, scope_title

EDGE_STYLE = {"residual": 'color="#d9480f", style=dashed', "concat": 'color="#7048e8", penwidth=1.6',
              "scale": 'color="#0c8599", style=dotted', "data": ""}
FILL = {"conv": "#e7f0ff", "linear": "#e7f0ff", "bn": "#f3f4f6", "add": "#fff0f0",
        "concat": "#fff0f0", "mul": "#fff0f0", "input": "#e5e7eb"}


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def quote(s: str) -> str:
    """A DOT double-quoted ID or string."""
    return '"' + _escape(s) + '"'


def _label(lines) -> str:
    """A multi-line label: the lines joined by DOT's centred line break."""
    return '"' + "\\n".join(_escape(ln) for ln in lines) + '"'


def _node_line(name: str, lines: list, op: str) -> str:
    fill = FILL.get(op, "#ffffff")
    return f"{quote(name)} [label={_label(lines)}, fillcolor={quote(fill)}];"


def to_dot(a: Analysis) -> str:
    net = a.network
    children: dict[str, list] = {}          # scope -> child scopes, in creation order
    for s in net.scopes.values():
        if s.name:
            children.setdefault(s.parent or "", []).append(s.name)
    layers_in: dict[str, list] = {}         # scope -> its own layers (not its children's)
    layers_in.setdefault("", []).append(
        (net.input, [net.input, "input", hwc(net.input_shape)], "input"))
    for lc in a.layers:
        scope = net.node(lc.name).get("scope", "")
        short = lc.name[len(scope) + 1:] if scope else lc.name
        op = lc.op
        if lc.kernel is not None:
            op += " " + pair(lc.kernel)
        if lc.stride not in (None, (1, 1)):
            op += f" /{pair(lc.stride)}"
        lines = [short, op, hwc(lc.output)]
        if lc.params or lc.macs:
            lines.append(f"{lc.params:,} params, {lc.macs:,} MACs")
        layers_in.setdefault(scope, []).append((lc.name, lines, lc.op))

    title = ", ".join(f"{k}={show(v)}" for k, v in net.params.items())
    out = [f"digraph {quote(net.name)} {{",
           f"  label={quote(f'{net.name}({title})')}; labelloc=t; fontname=Helvetica;",
           "  rankdir=TB; nodesep=0.25; ranksep=0.3;",
           '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10];',
           "  edge [arrowsize=0.6];"]

    def emit(scope: str, indent: str) -> None:
        for name, lines, op in layers_in.get(scope, []):
            out.append(indent + _node_line(name, lines, op))
        for child in children.get(scope, []):
            s = net.scopes[child]
            out.append(f"{indent}subgraph {quote('cluster_' + child)} {{")
            style = "dashed" if s.kind == "block" else "dotted"
            out.append(f"{indent}  label={quote(scope_title(s))}; style={style}; "
                       f"fontsize=10; fontname=Helvetica;")
            emit(child, indent + "  ")
            out.append(indent + "}")

    emit("", "  ")
    for u, v in net.graph.edges:
        style = EDGE_STYLE[edge_kind(net.node(v)["op"])]
        out.append(f"  {quote(u)} -> {quote(v)}" + (f" [{style}]" if style else "") + ";")
    out.append("}")
    return "\n".join(out) + "\n"
