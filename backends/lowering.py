"""The backend base: everything about lowering the IR that is not about one framework.

Every backend has a `BackendBase`: its name, its lowering table (one function per op), the
attribute names its members may not take, and its weight layout; `check_lowerable` and
`module_tree` read only these, so they serve every backend. A Python-source backend (torch,
JAX) is a `Backend`, which adds its helper sources and class shapes; `build_source`,
`compile_module`, `write_source` are written once, here, for those. The plan of a generated
file (which classes, what each holds) is backends/_plan.py's. A graph backend (ONNX,
backends/onnx_backend.py) is a plain `BackendBase` whose lowerings emit graph nodes.

The generated file: a module docstring, imports, the helpers the network uses, one class per
distinct block structure (callees first), then the network class. User-derived values enter
it only as Python literals (`_pyexpr.literal`: repr of numbers, strings, tuples), as
identifiers checked by `_plan.identifier`, or as text escaped for a docstring (`doc_text`).
"""
from __future__ import annotations

import math
import os
import re
import textwrap
from dataclasses import dataclass
from typing import Callable

from archc.compiler import ArchError, Network, ops

from . import _plan, _pyexpr
from ._plan import Lowered, LowerCtx, ModuleTree, Plan, PlanError  # noqa: F401 (API)

# Weight initialisation schemes a network may name in its `init` string parameter:
# scheme -> (distribution, fan, scale) of the weights of the ops whose registry entry has an
# `init` kind (conv, linear, conv_transpose), whose variance is scale / fan; their biases are
# zero. "default" is the framework's own (JAX: PyTorch's).
#   xavier_uniform  Glorot uniform (SqueezeNext)      xavier_normal   Glorot normal
#   kaiming_normal  He normal, fan_out, ReLU gain (torchvision's ResNet)
#   kaiming_uniform He uniform, fan_in, ReLU gain
#   lecun_uniform   uniform, fan_in, gain 1: U(+-sqrt(3 / fan_in)), Caffe's "xavier" filler
#                   (its default variance_norm FAN_IN; the SqueezeNext ImageNet prototxts)
INIT_SCHEMES = {"default": None,
                "xavier_uniform": ("uniform", "fan_avg", 1.0),
                "xavier_normal": ("normal", "fan_avg", 1.0),
                "kaiming_normal": ("normal", "fan_out", 2.0),
                "kaiming_uniform": ("uniform", "fan_in", 2.0),
                "lecun_uniform": ("uniform", "fan_in", 1.0)}
WIDTH = 99   # longest generated line
# names every generated file may define, whatever its backend: the init_weights function
# (init_code), tap mode's `tap` and `TAPS` (TAP_SOURCE), the make_divisible helper
FILE_GLOBALS = frozenset({"init_weights", "tap", "TAPS", "make_divisible"})


def init_classes(classes: dict, used: set) -> str:
    """`A, B` for a generated init_weights's isinstance test: the class (`classes`: op -> the
    backend's class) of every op with an `init` kind, in op-name order; those of kind "used"
    only when the network uses them."""
    return ", ".join(classes[n] for n, op in sorted(ops.REGISTRY.items())
                     if op.init == "always" or (op.init == "used" and n in used))


def reserved_globals(helpers: dict, imports: tuple) -> frozenset:
    """The module-level names of a backend's generated files: FILE_GLOBALS, its helpers and
    the names its import lines (Backend.imports) bind."""
    bound = set()
    for _, line in imports:
        words = (line or "").split()
        if words:   # `from a import b`, `import a.b as c`: the last word; `import a.b`: a
            bound.add(words[-1] if words[0] == "from" or "as" in words else
                      words[1].split(".")[0])
    return FILE_GLOBALS | frozenset(helpers) | bound


class LoweringError(ArchError):
    """A network the backend cannot express (an op without a lowering, a name clash)."""


@dataclass
class BackendBase:
    """What every backend provides, whatever it emits (Python source or a graph).

    lower           op name -> function(ctx) -> the op's lowering (its context is the
                    backend's: _plan.LowerCtx for Python source, a graph context for ONNX)
    reserved_attrs  attribute names members may not take (they get a '_'; module_tree)
    weights         op -> {registry tensor name: (the backend's name, permutation from the
                    torch layout or None)}; entries of optional tensors are skipped by
                    backends/weights.py (bias=false, affine=false)
    """

    name: str
    lower: dict
    reserved_attrs: frozenset
    weights: dict

    def lower_op(self, ctx):
        return self.lower[ctx.op](ctx)


@dataclass
class Backend(BackendBase):
    """A Python-source backend: the base, and the shape of its generated file.

    lower         op name -> function(LowerCtx) -> Lowered (constructor, forward expression)
    reserved_globals names the generated file defines or imports (classes avoid them)
    reserved_locals  names forward() and __init__ must not shadow
    module_base   the class every generated class derives from ("nn.Module")
    forward_name  "forward" or "__call__"
    super_init    call super().__init__() first
    rngs          constructors take `*, rngs` and pass it to every member
    title, layout, imports, modes    what the file's docstring and imports say
    helpers       helper name -> source, emitted once when the plan needs it
    container     constructor of a plain group of members (a labelled loop iteration)
    sequence      function([(name, ctor)]) -> constructor of named members applied in order
    instance      function(class, [args]) -> a class instantiation expression
    init_code     function(scheme, ops used) -> (lines ending the network's __init__, extra
                  source)
    root_return   function(expr, shape) -> an output's returned expression (shape: C, H, W)
    ranks         function(net) -> node -> runtime rank of its value
    instantiate   function(source, net, class name, seed, init scheme name) -> an instance
    """

    reserved_globals: frozenset
    reserved_locals: frozenset
    module_base: str
    forward_name: str
    super_init: bool
    rngs: bool
    helpers: dict
    container: str
    sequence: Callable
    instance: Callable
    init_code: Callable
    root_return: Callable
    ranks: Callable
    instantiate: Callable
    title: str = ""            # "PyTorch module"
    layout: str = "NCHW"       # the tensors' layout, for docstrings
    imports: tuple = ()        # (text the file uses, import line), standard library first
    modes: str = ""            # a docstring note on train/eval


def crop_slices(ctx: LowerCtx) -> str:
    """`top:bottom, left:right` of a crop's centre window (ops.Crop: rows from (H - h) // 2,
    columns from (W - w) // 2); literal, since the input's size is the IR's."""
    (_, h, w), (oh, ow) = ctx.in_shapes[0], ctx.value("size")
    top, left = (h - oh) // 2, (w - ow) // 2
    return f"{top}:{top + oh}, {left}:{left + ow}"


# ---- small pieces of source ----------------------------------------------------------------
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


def doc_text(text: str) -> str:
    """Free text (comments, string parameters) made safe inside a triple-quoted docstring."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return text.replace("\\", "\\\\").replace('"', '\\"')


def value_text(v) -> str:
    """A network parameter value in the .arch literal syntax (for docstrings)."""
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


def class_name(net: Network) -> str:
    try:
        return _plan.identifier(net.name, frozenset({"torch", "nn", "F", "jax", "jnp", "nnx"}))
    except PlanError:
        raise LoweringError(f"network name '{net.name}' is not a valid Python class name")


def check_lowerable(net: Network, backend: BackendBase) -> None:
    """Every node's op has a lowering; else a positioned error naming op and layer."""
    for name in net.layers():
        d = net.node(name)
        if d["op"] not in backend.lower:
            raise LoweringError(f"the {backend.name} backend cannot lower op '{d['op']}' "
                                f"(layer '{name}')", d.get("span"),
                                hint=f"add a lowering for '{d['op']}' to the {backend.name} "
                                     "backend (docs/adding-an-op.md)")


TAP_SOURCE = '''
TAPS = []  # archc's tap mode: functions (layer_name, value) -> value, see lowering.set_tap


def tap(name, value):
    """Every layer's output passes through here (tap mode only)."""
    for fn in TAPS:
        value = fn(name, value)
    return value
'''


def set_tap(module, fn) -> None:
    """Make a module built in tap mode pass every layer's output through fn(name, value) ->
    value (None: no tap). The functions live in the generated file's globals."""
    method = type(module).__dict__.get("forward") or type(module).__dict__.get("__call__")
    holder = getattr(method, "__globals__", {}).get("TAPS")
    if holder is None:
        raise ValueError("this module was not built in tap mode (compile_module(..., tap=...))")
    holder[:] = [] if fn is None else [fn]


def wrap(head: str, expr: str, indent: str, width: int = WIDTH, trail: str = "") -> list:
    """`head + expr + trail` in lines of at most `width` columns. A call that does not fit
    continues its arguments aligned with its opening parenthesis, filling each line; named
    calls (a sequence's blocks) go one per line; a call whose only argument is a call hugs
    it (`nn.Sequential(OrderedDict(`). Arguments that still do not fit are wrapped in turn."""
    line = f"{indent}{head}{expr}{trail}"
    if len(line) <= width or not expr.endswith(")") or "(" not in expr:
        return [line]
    fn, args = expr.split("(", 1)
    parts = _split_args(args[:-1])
    inner = indent + "    "
    if len(parts) == 1 and _is_call(parts[0]):
        g, gargs = parts[0].split("(", 1)
        inside = _split_args(gargs[:-1])
        return ([f"{indent}{head}{fn}({g}("] + [x for p in inside for x in _arg(p, inner, width)]
                + [f"{indent})){trail}"])
    if len(parts) > 1 and all("=" in p.split("(", 1)[0] and _is_call(p.split("=", 1)[1])
                              for p in parts):
        return ([f"{indent}{head}{fn}("] + [x for p in parts for x in _arg(p, inner, width)]
                + [f"{indent}){trail}"])
    return _fill(f"{indent}{head}{fn}(", parts, ")" + trail, width)


def _is_call(text: str) -> bool:
    return text.endswith(")") and "(" in text and not text.startswith(("(", "["))


def _arg(part: str, indent: str, width: int) -> list:
    """One argument on lines of its own, ending with a comma."""
    key, _, value = part.partition("=") if "=" in part.split("(", 1)[0] else ("", "", part)
    return wrap(f"{key}=" if key else "", value, indent, width, trail=",")


def _fill(opening: str, parts: list, closing: str, width: int) -> list:
    """Arguments after `opening`, continued under its parenthesis, as many per line as fit;
    an argument too long for a line of its own is wrapped in turn."""
    pad = " " * len(opening)
    if len(pad) > width // 2:   # too deep: a hanging indent instead
        pad = " " * (len(opening) - len(opening.lstrip()) + 4)
        lines, cur = [opening.rstrip()], pad
    else:
        lines, cur = [], opening
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        piece = p + (", " if not last else closing)
        if cur.strip() and cur != opening and len(cur.rstrip() + " " + piece.rstrip()) > width:
            lines.append(cur.rstrip())
            cur = pad
        if len(cur + piece.rstrip()) > width and _is_call(p.partition("=")[2] or p):
            key, _, value = p.partition("=") if "=" in p.split("(", 1)[0] else ("", "", p)
            sub = wrap((cur.strip() and cur[len(pad):] or "") + (f"{key}=" if key else ""),
                       value, pad, width, trail="," if not last else closing)
            lines += sub
            cur = pad
            if last:
                return lines
            continue
        cur += piece
    lines.append(cur.rstrip())
    return lines


def wrap_def(name: str, args: str, indent: str, width: int = WIDTH) -> list:
    """`def name(args):` within `width` columns."""
    return _fill(f"{indent}def {name}(", _split_args(args), "):", width)


def _split_args(text: str) -> list:
    parts, depth, cur, quote = [], 0, "", None
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


# ---- the generated file ----------------------------------------------------------------------
def module_tree(net: Network, backend: BackendBase) -> ModuleTree:
    """Attribute paths of the generated module's members (also used by backends/weights.py)."""
    return ModuleTree(net, backend.reserved_attrs)


def _plan_of(net: Network, backend: Backend, tap: bool) -> Plan:
    check_lowerable(net, backend)
    try:
        return Plan(net, backend, tap)
    except PlanError as err:
        raise LoweringError(err.message, err.span, hint=err.hint) from None


def build_source(backend: Backend, net: Network, init: str | None = None,
                 tap: bool = False) -> str:
    """The generated module for `net` as Python source text (deterministic).

    init: weight initialisation override (else the network's `init` parameter, else the
    default). tap: pass every layer's output through `tap(layer_name, value)`."""
    scheme = init_scheme(net, init)
    cls = class_name(net)
    plan = _plan_of(net, backend, tap)
    used = {d["op"] for _, d in net.graph.nodes(data=True)}
    init_lines, init_extra = backend.init_code(scheme, used)
    body: list = []
    for cp in plan.classes:
        body += ["", ""] + _class(backend, net, cp, tap)
    body += ["", ""] + _network_class(backend, net, plan, cls, scheme, init_lines, tap)
    helpers = dict(backend.helpers, make_divisible=_pyexpr.MAKE_DIVISIBLE)
    used, text = [], "\n".join(body) + init_extra
    changed = True
    while changed:   # helpers the body uses, and the helpers those use
        changed = False
        for name, source in helpers.items():
            if name not in used and re.search(rf"\b{re.escape(name)}\(", text):
                used.append(name)
                text += source
                changed = True
    pieces = [helpers[n] for n in sorted(used, key=list(helpers).index)]
    if tap:
        pieces.append(TAP_SOURCE)
    if init_extra:
        pieces.append(init_extra)
    src = header(backend, net, text)
    for piece in pieces:
        src += ["", ""] + piece.strip("\n").splitlines()
    return "\n".join(src + body) + "\n"


def header(backend: Backend, net: Network, body: str) -> list:
    """The file's docstring and the imports its text uses."""
    src = ['"""' + doc_text(f"{class_name(net)}: {backend.title} generated by archc from "
                            f"{os.path.basename(net.file)}."), "",
           f"Do not edit: regenerate with `archc build --backend {backend.name}`.", '"""']
    stdlib = True
    for needle, line in backend.imports:
        if line is None:      # the standard library ends here
            stdlib = False
            if src[-1] != '"""':
                src.append("")
            continue
        if needle is None or needle in body:
            src.append(line)
    return src if not stdlib else src + [""]


def _io_doc(backend: Backend, net: Network, scheme: str) -> list:
    c, h, w = net.input_shape
    shape = (lambda c, h, w: f"{c} x {h} x {w}") if backend.layout == "NCHW" else \
        (lambda c, h, w: f"{h} x {w} x {c}")

    def out(node):
        oc, oh, ow = net.node(node)["shape"]
        return f"N x {oc}" if (oh, ow) == (1, 1) else f"N x {shape(oc, oh, ow)}"
    if net.outputs:
        outs = "Outputs, an OrderedDict: " + ", ".join(f"{k} {out(n)}" for k, n in net.outputs)
    else:
        outs = f"Output: {out(net.output)}"
    return [""] + textwrap.wrap(f"Input: N x {shape(c, h, w)} ({backend.layout}). {outs}. "
                                f"Weight initialisation: {scheme}.{backend.modes}", width=88)


def _block_doc(net: Network, definition: str) -> list:
    """Docstring lines: the first phrase of the comment above the block (or of the file's
    leading comment, for its first block), and where the block is defined."""
    d = net.definitions[definition]
    lines = net.sources.get(d.file, "").splitlines()
    above = lines[: d.span.line - 1]
    comment = []
    for line in reversed(above):
        if not line.strip().startswith("#"):
            break
        comment.insert(0, line)
    first_def = not any(ln.lstrip().startswith(("block ", "network ")) for ln in above)
    if not comment and first_def:
        for line in lines:
            if not line.strip().startswith("#"):
                break
            comment.append(line)
    text = " ".join(ln.strip().lstrip("#").strip() for ln in comment)
    first = _first_phrase(text)
    where = f"`{definition}`, {_library_relative(d.file)}:{d.span.line}"
    text = doc_text(f"{first}: {where}." if first else f"{where}.")
    return textwrap.wrap(text, width=88) or [text]


def _first_phrase(text: str) -> str:
    """Up to the first '. ', ': ' or '; ' outside parentheses, without a trailing comma."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch in ".:;" and text[i + 1:i + 2] in (" ", ""):
            return text[:i]
    return text.rstrip(",;: ")


def _library_relative(path: str) -> str:
    norm = "/" + path.replace("\\", "/").lstrip("/")
    if "/archs/" in norm:
        return norm.rsplit("/archs/", 1)[1]
    return os.path.basename(norm)


def _signature(backend: Backend, cp) -> str:
    parts = ["self"] + [c for c, _ in cp.channel_params]
    kwonly = []
    seen_default = False
    for name, _, default in cp.params:
        if default is None and seen_default:
            kwonly.append(name)
        elif default is None:
            parts.append(name)
        else:
            seen_default = True
            parts.append(f"{name}={default}")
    kwonly += [name for name, _ in cp.hoisted]
    if backend.rngs:
        kwonly.append("rngs: nnx.Rngs")
    if kwonly:
        parts += ["*"] + kwonly
    return ", ".join(parts)


def _init_body(backend: Backend, entries: list, indent: str, tap: bool) -> list:
    out = []
    made = set()
    for e in entries:
        if e[0] == "assign":
            out += wrap(f"{', '.join(e[1])} = ", e[2], indent)
            continue
        if e[0] == "store":   # a value forward() reads
            out += wrap(f"self.{e[1]} = ", e[2], indent)
            continue
        if e[0] == "guard":   # an optional member: None unless the condition holds
            _, cond, members, path = e
            out.append(f"{indent}if {cond}:")
            for m in members:
                out += wrap(f"self.{'.'.join(m.path)} = ", m.ctor, indent + "    ")
            out += [f"{indent}else:", f"{indent}    self.{'.'.join(path)} = None"]
            continue
        m = e[1]
        for i in range(1, len(m.path)):
            head = m.path[:i]
            if head not in made:
                made.add(head)
                out.append(f"{indent}self.{'.'.join(head)} = {backend.container}")
        made.add(m.path)
        out += wrap(f"self.{'.'.join(m.path)} = ", m.ctor, indent)
    return out


def _forward_body(lines: list, indent: str, ret) -> list:
    out = []
    for target, expr in lines[:-1]:
        if target == expr:
            continue
        out += wrap(f"{target} = ", expr, indent)
    returned = ret(lines[-1][1])
    if isinstance(returned, list):
        # named outputs: an OrderedDict, whose order JAX keeps through jit (a dict's keys
        # it sorts); one entry a line when they do not fit on one
        pairs = [(_pyexpr.literal(k), v) for k, v in returned]
        line = f"{indent}return OrderedDict([{', '.join(f'({k}, {v})' for k, v in pairs)}])"
        if len(line) <= WIDTH:
            return out + [line]
        out.append(f"{indent}return OrderedDict([")
        for k, v in pairs:
            out += wrap(f"({k}, ", v, indent + "    ", trail="),")
        return out + [f"{indent}])"]
    return out + wrap("return ", returned, indent)


def _class(backend: Backend, net: Network, cp, tap: bool) -> list:
    ind = "        "
    doc = _block_doc(net, cp.definition)
    src = [f"class {cp.name}({backend.module_base}):"]
    if len(doc) == 1 and len(doc[0]) <= WIDTH - 10:
        src.append(f'    """{doc[0]}"""')
    else:
        src += [f'    """{doc[0]}'] + [f"    {line}" for line in doc[1:]] + ['    """']
    if tap:
        src += ["", '    tap_prefix = ""']
    src += [""] + wrap_def("__init__", _signature(backend, cp), "    ")
    if backend.super_init:
        src.append(f"{ind}super().__init__()")
    body = _init_body(backend, cp.init, ind, tap)
    body += [f"{ind}self.{name} = {name}" for name, fwd in cp.hoisted if fwd]
    if not body and not backend.super_init:
        body = [f"{ind}pass"]
    src += body
    args = ", ".join(["self"] + cp.forward_args)
    src += ["", f"    def {backend.forward_name}({args}):"]
    src += _forward_body(cp.forward, ind, lambda e: e)
    return src


def _network_class(backend: Backend, net: Network, plan: Plan, cls: str, scheme: str,
                   init_lines: list, tap: bool) -> list:
    ind = "        "
    c, h, w = net.input_shape
    # escaped before wrapping, so that no escape pushes a line past the width
    params = ", ".join(doc_text(f"{k} = {value_text(v)}").replace(" ", "\xa0")
                       for k, v in net.params.items())
    body = [doc_text(f"{net.name}, compiled by archc from {os.path.basename(net.file)}.")]
    if net.doc:
        body += [""] + textwrap.wrap(doc_text(net.doc), width=88)
    if params:
        body += [""] + [line.replace("\xa0", " ") for line in
                        textwrap.wrap(f"Parameters as used: {params}.", width=88)]
    body += [doc_text(line) for line in _io_doc(backend, net, scheme)]
    src = [f"class {cls}({backend.module_base}):", '    """' + body[0]]
    src += [("    " + line) if line else "" for line in body[1:]] + ['    """']
    if tap:
        src += ["", '    tap_prefix = ""']
    sig = "self, *, rngs: nnx.Rngs" if backend.rngs else "self"
    src += ["", f"    def __init__({sig}):"]
    if backend.super_init:
        src.append(f"{ind}super().__init__()")
    src += _init_body(backend, plan.root_init, ind, tap)
    src += [ind + line for line in init_lines]
    src += ["", f"    def {backend.forward_name}(self, x):"]
    shapes = [net.node(node)["shape"] for _, node in net.output_list()]

    def ret(e):
        if isinstance(e, list):   # named outputs
            return [(k, backend.root_return(v, shape)) for (k, v), shape in zip(e, shapes)]
        return backend.root_return(e, shapes[0])
    src += _forward_body(plan.root_forward, ind, ret)
    return src


def _scope_paths(net: Network, backend: Backend) -> dict:
    """Attribute path -> IR scope prefix of every block-class member (for tap mode)."""
    tree = module_tree(net, backend)
    out = {}
    for s in net.scopes.values():
        if s.kind == "block" and s.name in tree:
            out[tree.path(s.name)] = s.name + "."
    return out


def compile_module(backend: Backend, net: Network, init: str | None = None, tap=None,
                   seed: int = 0):
    """An instance of the generated module: exec of build_source()'s text (archc wrote it
    from validated IR: names are identifiers, values are Python literals).

    tap: build in tap mode; every layer's output passes through tap(layer_name, value) ->
    value in data-flow order (True: tap mode, no function yet; see set_tap)."""
    src = build_source(backend, net, init=init, tap=tap is not None)
    module = backend.instantiate(src, net, class_name(net), seed, init_scheme(net, init))
    if tap is not None:
        for path, prefix in _scope_paths(net, backend).items():
            m = module
            for part in path.split("."):
                m = getattr(m, part) if not part.isdigit() else m[int(part)]
            object.__setattr__(m, "tap_prefix", prefix)
        if callable(tap):
            set_tap(module, tap)
    return module


def exec_source(src: str, net: Network, backend_name: str) -> dict:
    namespace: dict = {"__name__": f"archc_generated_{backend_name}_{net.name}"}
    exec(compile(src, f"<archc {backend_name}: {net.name}>", "exec"), namespace)  # noqa: S102
    return namespace


def write_source(backend: Backend, net: Network, path, init: str | None = None) -> str:
    """Write the module to `path` atomically (nothing half-written on error); returns the text."""
    from archc._files import write_atomic
    src = build_source(backend, net, init=init)
    write_atomic(path, src)
    return src


def stateful_layers(net: Network) -> list:
    return [n for n in net.layers() if ops.get(net.node(n)["op"]).stateful]
