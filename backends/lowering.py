"""Backend-neutral pieces of lowering the graph IR to framework code (PyTorch, JAX/Flax).

A backend needs the same few things from the IR, whatever framework it targets:
- `class_name(net)`: the generated class name (the network's definition name);
- `ModuleTree`: the nested containers that hold the layers with parameters, built from
  the IR's hierarchical names ("stage3.block2.conv1.conv"), each component mapped to a
  Python identifier the framework does not reserve;
- `forward_steps(net)`: one step per IR node in data-flow order, with readable variable
  names reused once a value is dead;
- `py_number`, `doc_text`: the only ways user-derived values enter generated code
  (numbers via repr of an int/float, free text escaped for a docstring);
- `init_scheme(net, override)`: the weight initialisation a network states.

Nothing here imports a framework.
"""
from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, field

from archc.compiler import ArchError, Network

# Weight initialisation schemes a network may name in its `init` string parameter.
#   default         the framework's own defaults
#   xavier_uniform  Glorot uniform weights, zero biases (SqueezeNext)
#   xavier_normal   Glorot normal weights, zero biases
#   kaiming_normal  He normal, fan_out, ReLU gain, zero biases (torchvision's ResNet)
#   kaiming_uniform He uniform, fan_in, ReLU gain, zero biases
INIT_SCHEMES = ("default", "xavier_uniform", "xavier_normal", "kaiming_normal", "kaiming_uniform")


class LoweringError(ArchError):
    """A network the backend cannot express (an op without a lowering, a name clash)."""


def class_name(net: Network) -> str:
    name = net.name
    if not name.isidentifier() or keyword.iskeyword(name):
        raise LoweringError(f"network name '{name}' is not a valid Python class name")
    return name


def py_ident(name: str, reserved=frozenset()) -> str:
    """A Python identifier for one name component: keywords and reserved names get a '_'."""
    if not name.isidentifier():
        raise LoweringError(f"layer name component '{name}' is not an identifier")
    while keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in reserved:
        name += "_"
    return name


def py_number(v) -> str:
    """Source text for an int, float or bool coming from the IR; nothing else passes."""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        if not math.isfinite(v):
            raise LoweringError(f"cannot emit the non-finite number {v!r}")
        return repr(float(v))
    raise LoweringError(f"internal: expected a number, got {type(v).__name__}")


def py_pair(v) -> str:
    """A (h, w) attribute: `3` when both sides agree, else `(1, 3)`."""
    a, b = v
    return py_number(a) if a == b else f"({py_number(a)}, {py_number(b)})"


def doc_text(text: str) -> str:
    """Free text (comments, string parameters) made safe inside a triple-quoted docstring."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return text.replace("\\", "\\\\").replace('"', '\\"')


def value_text(v) -> str:
    """A network parameter value for the docstring, in the .arch literal syntax."""
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def init_scheme(net: Network, override: str | None = None) -> str:
    """The weight initialisation: the backend option, else the network's `init`, else default."""
    scheme = override if override is not None else net.params.get("init", "default")
    where = "--init" if override is not None else f"parameter 'init' of {net.name}"
    if not isinstance(scheme, str) or scheme not in INIT_SCHEMES:
        raise ArchError(f"{where}: unknown weight initialisation {scheme!r}",
                        hint="use one of: " + ", ".join(INIT_SCHEMES))
    return scheme


def check_lowerable(net: Network, table: dict, backend: str) -> None:
    """Every node's op has a lowering in `table`; else a positioned error naming op and layer."""
    for name in net.layers():
        d = net.node(name)
        if d["op"] not in table:
            raise LoweringError(f"the {backend} backend cannot lower op '{d['op']}' "
                                f"(layer '{name}')", d.get("span"),
                                hint=f"add a lowering for '{d['op']}' to the {backend} backend")


# ---- the module tree ------------------------------------------------------------------
@dataclass
class TreeNode:
    attr: str                       # attribute name in the parent (a Python identifier)
    path: str                       # attribute path from the root ("stage1.block1.conv1")
    layer: str | None = None        # IR node name when this is a layer, None for a container
    children: dict = field(default_factory=dict)   # IR component -> TreeNode


class ModuleTree:
    """Nested containers for the IR nodes that hold state (parameters, buffers, modes).

    `layers` are IR node names in data-flow order; a name's components become nested
    attributes. `path(layer)` gives the attribute path ("stage3.block2.conv1.conv").
    """

    def __init__(self, net: Network, layers: list, reserved=frozenset()):
        self.root = TreeNode("", "")
        self._paths: dict[str, str] = {}
        for layer in layers:
            node, parts = self.root, layer.split(".")
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                child = node.children.get(part)
                if child is None:
                    taken = {c.attr for c in node.children.values()}
                    attr = py_ident(part, reserved)
                    while attr in taken:
                        attr += "_"
                    path = f"{node.path}.{attr}" if node.path else attr
                    child = node.children[part] = TreeNode(attr, path, layer if last else None)
                elif last or child.layer is not None:
                    other = child.layer or layer
                    raise LoweringError(
                        f"layer '{other}' is also the name of a group of layers "
                        f"('{'.'.join(parts[: i + 1])}.*')", net.node(layer).get("span"),
                        hint="rename one of them")
                node = child
            self._paths[layer] = node.path

    def path(self, layer: str) -> str:
        return self._paths[layer]

    def walk(self):
        """Every node, parents before children, in first-use order."""
        stack = list(reversed(self.root.children.values()))
        while stack:
            n = stack.pop()
            yield n
            stack.extend(reversed(n.children.values()))


# ---- forward steps ----------------------------------------------------------------------
@dataclass
class Step:
    name: str          # IR node name
    op: str
    attrs: dict
    in_shapes: list
    shape: tuple
    inputs: list       # variable names of the inputs, in argument order
    output: str        # variable name of the result
    span: object = None


def forward_steps(net: Network, reserved=frozenset()) -> tuple[str, list]:
    """(input variable, steps): one Step per layer in data-flow order.

    A step's result reuses the variable of an input that dies there (`x` first, else the
    first such input), so a chain of layers reads `x = f(x)`; a value whose inputs are all
    still needed gets `x` when free, else a name from its layer's group ("conv1", "se"),
    made unique among the live variables.
    """
    layers = net.layers()
    last_use: dict[str, int] = {}
    for i, name in enumerate(layers):
        for src in net.node(name)["inputs"]:
            last_use[src] = i
    last_use[net.output] = len(layers)  # the output lives to the end
    reserved = set(reserved) | {"self"}
    var = {net.input: "x"}
    live = {"x"}
    steps = []
    for i, name in enumerate(layers):
        d = net.node(name)
        ins = [var[s] for s in d["inputs"]]
        dying = [s for s in d["inputs"] if last_use.get(s) == i]
        for s in dying:
            live.discard(var[s])
        if dying:
            names = [var[s] for s in dying]
            out = "x" if "x" in names else names[0]   # the main line stays `x`
        elif "x" not in live:
            out = "x"
        else:
            parts = name.split(".")
            base = py_ident(parts[-2] if len(parts) > 1 else parts[-1], reserved)
            out, k = base, 1
            while out in live:
                k += 1
                out = f"{base}{k}"
        if name in last_use:
            live.add(out)
        var[name] = out
        steps.append(Step(name, d["op"], d["attrs"], list(d["in_shapes"]), d["shape"], ins, out,
                          d.get("span")))
    return var.get(net.output, "x"), steps


def wrap_assign(target: str, expr: str, indent: str, width: int = 99) -> list:
    """`target = expr` as source lines, broken after the outermost '(' when too long."""
    line = f"{indent}{target} = {expr}"
    if len(line) <= width or "(" not in expr:
        return [line]
    head, rest = expr.split("(", 1)
    return [f"{indent}{target} = {head}(", f"{indent}    {rest[:-1]}", f"{indent})"]


TAP_SOURCE = '''
TAPS = []  # archc's tap mode: functions (layer_name, value) -> value, see backends.set_tap


def tap(name, value):
    """Every layer's output passes through here (tap mode only)."""
    for fn in TAPS:
        value = fn(name, value)
    return value
'''


def set_tap(module, fn) -> None:
    """Make a module built in tap mode pass every layer's output through fn(name, value) ->
    value (None: no tap). The functions live in the generated file's globals."""
    taps = type(module).__dict__.get("forward") or type(module).__dict__.get("__call__")
    holder = getattr(taps, "__globals__", {}).get("TAPS")
    if holder is None:
        raise ValueError("this module was not built in tap mode (compile_module(..., tap=...))")
    holder[:] = [] if fn is None else [fn]


def emit_forward(steps: list, lower, probe: bool = False, indent: str = "        "):
    """(constructors by layer, forward body lines) for data-flow steps.

    lower(step) -> (constructor source or None, expression source). Steps of one top-level
    group ("stage3.block2") get a comment line; an identity onto its own variable needs no
    statement; with probe (tap mode), `value = tap(layer_name, value)` follows every step.
    """
    ctors, body, group = {}, [], ""
    for s in steps:
        ctor, expr = lower(s)
        if ctor is not None:
            ctors[s.name] = ctor
        parts = s.name.split(".")
        g = ".".join(parts[:2]) if len(parts) > 2 else ""
        if g != group and g:
            body.append(f"{indent}# {g}")
        group = g
        if expr != s.output:
            body += wrap_assign(s.output, expr, indent)
        if probe:
            body.append(f'{indent}{s.output} = tap("{s.name}", {s.output})')
    return ctors, body
