"""`archc view`: the network as one self-contained, offline HTML page.

The page holds the analysis as JSON (every layer, its scope, its costs; the IR's scopes; the
edges), the vendored layout library and a small script that draws it:

    presentation/_view/dagre.min.js   @dagrejs/dagre 3.1.3 (MIT; presentation/_view/README.md): the
                                  layered (Sugiyama) layout of the graph, with block clusters
    presentation/_view/view.js        the page: collapsing and expanding blocks (re-laid out by
                                  dagre each time), the SVG drawing, the layer table, search
    presentation/_view/view.css       its styles
    presentation/_view/page.html      the page skeleton

Blocks (IR scopes of kind "block") start collapsed to one node; loop iterations and splits
start expanded. Every layer of the analysis is a table row and, once its blocks are
expanded, a graph node. No file is fetched when the page opens: scripts, styles and data
are inlined, and the page refers to no URL.
"""
from __future__ import annotations

import json
import re
from importlib import resources

from archc.compiler import ops
from archc.compiler._values import Tensor, show
from archc.compiler.analysis import Analysis

# edge kinds by the consuming op: the page and the DOT output draw them apart
EDGE_KINDS = {"add": "residual", "concat": "concat", "mul": "scale"}


def edge_kind(consumer_op: str) -> str:
    return EDGE_KINDS.get(consumer_op, "data")


def hwc(shape) -> str:
    c, h, w = shape
    return f"{h}x{w}x{c}"


def pair(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, tuple):
        return "x".join(str(i) for i in v)
    return str(v)


def scope_title(scope) -> str:
    """`block1: sqnxt_block(out=32, stride=2)`: the arguments the caller gave, tensors left out."""
    short = scope.name.rsplit(".", 1)[-1]
    if scope.kind == "block":
        args = [f"{k}={show(scope.args[k])}" for k in scope.given
                if k in scope.args and not isinstance(scope.args[k], Tensor)]
        return f"{short}: {scope.definition}({', '.join(args)})"
    return f"{short} ({scope.kind})"


def ancestors(net, scope: str) -> list[str]:
    """The scope and its enclosing scopes, outermost first, the network ("") left out."""
    chain = []
    while scope:
        chain.append(scope)
        scope = net.scopes[scope].parent if scope in net.scopes else ""
    return chain[::-1]


def view_data(a: Analysis, bits=None) -> dict:
    """Everything the page shows, JSON-ready. bits: a compiler.bitops.BitReport or None."""
    net = a.network
    bitcost = {c.name: c for c in bits.layers} if bits is not None else {}
    layers = [{"name": net.input, "op": "input", "scope": "", "out": hwc(net.input_shape),
               "inputs": [], "in": [], "params": 0, "macs": 0, "elementwise": 0,
               "activations": ops.numel(net.input_shape), "attrs": {}, "source": ""}]
    for lc in a.layers:
        d = net.node(lc.name)
        row = {"name": lc.name, "op": lc.op, "scope": d.get("scope", ""),
               "inputs": list(d["inputs"]), "in": [hwc(s) for s in lc.inputs],
               "out": hwc(lc.output), "params": lc.params, "macs": lc.macs,
               "elementwise": lc.elementwise_ops, "activations": lc.activations,
               "attrs": {k: v for k, v in (("kernel", pair(lc.kernel)), ("stride", pair(lc.stride)),
                                           ("padding", pair(lc.padding if isinstance(lc.padding, tuple)
                                                            else None)),
                                           ("groups", lc.groups)) if v is not None},
               "source": str(d["span"])}
        c = bitcost.get(lc.name)
        if c is not None:
            row["bits"] = {"weight_bits": c.weight_bits, "mul_bitops": c.mul_bitops,
                           "add_bitops": c.add_bitops, "storage_bits": c.storage_bits,
                           "folded": list(c.folded)}
        layers.append(row)
    scopes = [{"name": s.name, "kind": s.kind, "parent": s.parent or "", "title": scope_title(s),
               "definition": s.definition or ""}
              for s in net.scopes.values() if s.name]
    edges = []
    for u, v in net.graph.edges:
        edges.append([u, v, edge_kind(net.node(v)["op"])])
    totals = dict(a.totals)
    if bits is not None:
        totals.update({f"bitops_{k}": v for k, v in bits.totals.items()})
        totals["bitops_rules"] = bits.rules.name
    return {"network": net.name, "file": net.file,
            "parameters": {k: show(v) for k, v in net.params.items()},
            "layers": layers, "scopes": scopes, "edges": edges, "totals": totals,
            "output": net.output, "bitops": bits is not None}


def _asset(name: str) -> str:
    return (resources.files("archc.presentation") / "_view" / name).read_text(encoding="utf-8")


def _inline_script(js: str) -> str:
    # no source-map comment (it would name a file the page does not have), and nothing that
    # ends the <script> element early
    lines = [ln for ln in js.splitlines() if not ln.startswith("//# sourceMappingURL=")]
    return "\n".join(lines).replace("</script", "<\\/script")


def script_json(obj) -> str:
    """JSON to embed in a <script> element: `<`, `>` and `&` (which occur in JSON only inside
    strings) as \\u escapes, so that no string can end the element or open an HTML comment
    (`</script>`, `<!--`), and U+2028/U+2029 escaped for older JavaScript parsers."""
    text = json.dumps(obj, separators=(",", ":"))
    for ch in "<>&\u2028\u2029":
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def render_html(a: Analysis, bits=None) -> str:
    """The page as one string: data, layout library, script and styles inlined."""
    data = script_json(view_data(a, bits))
    title = f"{a.network.name} — archc view"
    page = _asset("page.html")
    parts = {"TITLE": _escape(title), "STYLE": _asset("view.css"), "DATA": data,
             "DAGRE": _inline_script(_asset("dagre.min.js")),
             "SCRIPT": _inline_script(_asset("view.js"))}
    # one pass, so that nothing inserted is read as a placeholder
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: parts[m.group(1)], page)


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
