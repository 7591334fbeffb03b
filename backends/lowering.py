"""The backend base: everything about lowering the IR that is not about one framework.

Every backend has a `BackendBase`: its name, its lowering table (one function per op), the
attribute names its members may not take, and its weight layout; `check_lowerable` and
`module_tree` read only these, so they serve every backend. A Python-source backend (torch,
JAX) is a `Backend`, which adds its helper sources and class shapes; `build_source`,
`compile_module`, `write_source` are written once, here, for those. Its lowerings see a
`LowerCtx` (backends/lower_ctx.py). The plan of a generated file (which classes, what each
holds) is backends/_plan.py's; its text, backends/_source.py's. A graph backend (ONNX,
backends/onnx_backend.py) is a plain `BackendBase` whose lowerings emit graph nodes.

The generated file: a module docstring, imports, the helpers the network uses, one class per
distinct block structure (callees first), then the network class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from archc.compiler import ArchError, Network, ops

from . import _family, _source
from ._names import ModuleTree, PlanError, identifier
from ._plan import Plan
from .lower_ctx import Lowered, LowerCtx  # noqa: F401 (API)

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
# names every generated file may define, whatever its backend: the init_weights function
# (init_code), tap mode's `tap` and `TAPS` (TAP_SOURCE), the make_divisible helper, the
# table of activations (backends/_activations.py)
FILE_GLOBALS = frozenset({"init_weights", "tap", "TAPS", "make_divisible", "ACTIVATIONS"})


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
                    backend's: lower_ctx.LowerCtx for Python source, a graph context for ONNX)
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
    helpers       helper name -> source (or function(the file's text) -> source), emitted
                  once when the plan needs it
    container     constructor of a plain group of members (a labelled loop iteration)
    sequence      function([(name, ctor)]) -> constructor of named members applied in order
    instance      function(class, [args]) -> a class instantiation expression
    sequence_dict, sequence_from   a sequence built in a loop: its entries' empty dict, and
                  the sequence from that dict's name
    init_code     function(scheme, ops used) -> (lines ending the network's __init__, extra
                  source)
    root_return   function(expr, shape, rank) -> an output's returned expression (shape:
                  C, H, W; rank: its runtime rank)
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
    # a sequence built in a loop (backends/_roll.py): the empty dict of its entries, and the
    # sequence made from that dict's name
    sequence_dict: str = "OrderedDict()"
    sequence_from: Callable = lambda name: f"nn.Sequential({name})"


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
        return identifier(net.name, frozenset({"torch", "nn", "F", "jax", "jnp", "nnx"}))
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


def set_tap(module, fn) -> None:
    """Make a module built in tap mode pass every layer's output through fn(name, value) ->
    value (None: no tap). The functions live in the generated file's globals."""
    method = type(module).__dict__.get("forward") or type(module).__dict__.get("__call__")
    holder = getattr(method, "__globals__", {}).get("TAPS")
    if holder is None:
        raise ValueError("this module was not built in tap mode (compile_module(..., tap=...))")
    holder[:] = [] if fn is None else [fn]


# ---- the generated file ----------------------------------------------------------------------
def module_tree(net: Network, backend: BackendBase) -> ModuleTree:
    """Attribute paths of the generated module's members (also used by backends/weights.py)."""
    return ModuleTree(net, backend.reserved_attrs)


def _plan_of(net: Network, backend: Backend, tap: bool, family: bool = False) -> Plan:
    """The plan of the generated file; family: its network class takes the parameters
    backends/_family.py verifies as constructor arguments."""
    check_lowerable(net, backend)
    try:
        return Plan(net, backend, tap, symbolic=_family.exposed(backend, net, tap)
                    if family else ())
    except PlanError as err:
        raise LoweringError(err.message, err.span, hint=err.hint) from None


def build_source(backend: Backend, net: Network, init: str | None = None,
                 tap: bool = False, family: bool = True) -> str:
    """The generated module for `net` as Python source text (deterministic).

    init: weight initialisation override (else the network's `init` parameter, else the
    default). tap: pass every layer's output through `tap(layer_name, value)`. family=False:
    the network class takes no arguments (its parameters fixed; the same members, values
    and outputs, without verifying which parameters could be arguments)."""
    scheme = init_scheme(net, init)
    cls = class_name(net)
    plan = _plan_of(net, backend, tap, family=family)
    return _source.file_text(backend, net, plan, cls, scheme, tap)


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
    # the instance is built at the network's values: the family's verification (up to a
    # second) would change only which of them the class could take as arguments
    src = build_source(backend, net, init=init, tap=tap is not None, family=False)
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


def ranks(net: Network, flat_pools: frozenset = frozenset()) -> dict:
    """Runtime rank of every value: its op's (ops.Op.rank: 2 after flatten/linear, 4 after
    ops that need a 4-D input), else that of its inputs. An op in `flat_pools` (JAX's global
    pools) is 2 where only ops of rank 2 read it (flatten, linear: they take N x C), or
    nothing does (a network output): it leaves out the 1 x 1 axes."""
    out = {}
    for n in net.graph.nodes:
        d = net.node(n)
        out[n] = ops.get(d["op"]).rank or max((out[i] for i in d["inputs"]), default=4)
        if d["op"] in flat_pools and all(ops.get(net.node(s)["op"]).rank == 2
                                         for s in net.graph.successors(n)):
            out[n] = 2
    return out


def stateful_layers(net: Network) -> list:
    return [n for n in net.layers() if ops.get(net.node(n)["op"]).stateful]
