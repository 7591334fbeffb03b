"""The plan of a generated file: which classes it defines, and what each one holds.

Every block call of the .arch file is a scope of the IR with a trace of what its body did
(compiler/ir.py). `Plan(net, backend)` turns those scopes into classes:

- Each block call is rendered as a class body: its scalar statements become constructor
  code (backends/_pyexpr.py writes the .arch expressions as Python), its layers and the
  blocks it calls become members, and its data flow becomes the forward method.
- Calls of one block whose rendered bodies are equal share a class; calls that took other
  branches or loops (another structure) get a class of their own, named after what differs
  (`SqnxtBlockWithShortcut`).
- A value a class cannot compute from its parameters is a *hole*: equal in every call, it
  is written as a literal; otherwise it becomes a constructor argument that the caller
  passes (the caller knows it).
- A labelled loop of block calls that feed each other (`stage: for ...`) becomes a sequence
  member; its entries keep their names, so parameter paths stay the IR's layer names.

Backends supply the text of each op (their lowering table, through `LowerCtx`) and the
shape of classes (lowering.Backend); everything else is decided here, once for all
backends. The module tree (`ModuleTree`) gives every member its attribute path.
"""
from __future__ import annotations

import io
import re
import tokenize
import unicodedata
from dataclasses import dataclass, field

from archc.compiler import _syntax as S
from archc.compiler import ops
from archc.compiler._values import Outputs, Tensor

from . import _pyexpr as P

HOLE = re.compile(r"\x00(\d+)\x00")     # a value filled in per class (literal or argument)
ARG = re.compile(r"\x01(\d+)\x01")      # input i of a forward expression


class PlanError(Exception):
    """A network the generated code cannot express; lowering.py positions it."""

    def __init__(self, message, span=None, hint=None):
        super().__init__(message)
        self.message, self.span, self.hint = message, span, hint


def identifier(name: str, reserved=frozenset()) -> str:
    """A Python identifier for an archc name, meaning the same to Python: NFKC-normalised
    (as Python normalises identifiers: `ﬁ` is `fi`), a leading `__` turned into `m__`
    (Python would mangle it inside a class body), keywords and reserved names with a
    trailing '_'. Callers keep the results of one namespace apart with `reserved`."""
    name = unicodedata.normalize("NFKC", name)
    if not name.isidentifier():
        raise PlanError(f"'{name}' is not a Python identifier")
    if name.startswith("__"):
        name = "m" + name
    name = P.identifier(name)
    while name in reserved:
        name += "_"
    return name


def camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p) or "Block"


# ---- the module tree: attribute paths ----------------------------------------------------------
class ModuleTree:
    """Attribute paths of the generated module's members, from the IR's hierarchical names.

    Members are the stateful layers (ops.Op.stateful) and the scopes that hold them (block
    calls, labelled loop iterations). Each name component becomes an attribute, made a
    Python identifier that the framework does not reserve; siblings that would collide
    get trailing '_'. The same tree serves code generation and weight exchange."""

    def __init__(self, net, reserved=frozenset()):
        self.reserved = reserved
        self._attr: dict = {}       # IR name (layer or scope) -> attribute component
        self._taken: dict = {}      # parent IR name -> {attribute}
        self._parent: dict = {}
        members = [n for n in net.layers() if net.op(n).stateful]
        scoped = {d.get("scope") for _, d in net.graph.nodes(data=True)}
        members += [s.name for s in net.scopes.values() if s.kind == "block"
                    and any(n == s.name or n.startswith(s.name + ".") for n in scoped if n)]
        needed = set()
        for n in members:
            parts = n.split(".")
            for i in range(1, len(parts) + 1):
                needed.add(".".join(parts[:i]))
        for name in _ordered(net, needed):
            self._add(net, name)

    def _add(self, net, name: str):
        parent, _, comp = name.rpartition(".")
        taken = self._taken.setdefault(parent, set())
        try:
            attr = identifier(comp, self.reserved)
        except PlanError as err:
            raise PlanError(err.message, _span(net, name)) from None
        while attr in taken:
            attr += "_"
        taken.add(attr)
        self._attr[name] = attr
        self._parent[name] = parent

    def path(self, name: str, base: str = "") -> str:
        """Attribute path of a layer or scope, from the network or from scope `base`."""
        parts = []
        while name != base and name:
            if name not in self._attr:
                raise KeyError(name)
            parts.append(self._attr[name])
            name = self._parent[name]
        if name != base:
            raise KeyError(base)
        return ".".join(reversed(parts))

    def __contains__(self, name: str) -> bool:
        return name in self._attr


def _ordered(net, names: set) -> list:
    """Scope and layer names in first-use order (parents before children)."""
    order = {n: i for i, n in enumerate(net.graph.nodes)}
    first: dict = {}
    for n in net.graph.nodes:
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            first.setdefault(".".join(parts[:i]), order[n])
    return sorted(names, key=lambda n: (first.get(n, 0), n.count(".")))


def _span(net, name):
    if name in net.graph:
        return net.node(name).get("span")
    s = net.scopes.get(name)
    return s.span if s is not None else None


# ---- values in a class body ------------------------------------------------------------------
class Val:
    """A value as generated code writes it: a literal (`const`), Python text over the
    class's constructor arguments (`text`), or a hole (`text` None). `value` is its value
    in the call being rendered; `raw` the value as the .arch call wrote it (3 for a kernel
    normalised to (3, 3))."""

    __slots__ = ("value", "text", "const", "raw", "hint")

    def __init__(self, value, text=None, const=False, raw=None, hint="value"):
        self.value, self.text, self.const, self.hint = value, text, const, hint
        self.raw = value if raw is None else raw
        if const:
            self.text = P.literal(value)
            self.const = self.text is not None

    @staticmethod
    def literal(v, hint="value"):
        return Val(v, const=True, hint=hint)

    @property
    def hole(self) -> bool:
        return self.text is None

    def _combine(self, other, op, fn):
        other = other if isinstance(other, Val) else Val.literal(other)
        value = fn(self.value, other.value)
        if self.const and other.const:
            return Val.literal(value, self.hint)
        if other.const and other.value == 0 and type(other.value) is int:
            return Val(value, self.text, hint=self.hint)         # x + 0, x - 0
        if self.hole or other.hole:
            return Val(value, hint=self.hint)
        if op == "+" and other.text.isidentifier():   # a + t + t -> a + 2 * t (DenseNet)
            m = re.fullmatch(rf"(.*) \+ (?:(\d+) \* )?{re.escape(other.text)}", self.text)
            if m:
                k = int(m.group(2) or 1) + 1
                return Val(value, f"{m.group(1)} + {k} * {other.text}", hint=self.hint)
        return Val(value, f"{self.text} {op} {paren(other.text)}", hint=self.hint)

    def __add__(self, other):
        return self._combine(other, "+", lambda a, b: a + b)

    def __sub__(self, other):
        return self._combine(other, "-", lambda a, b: a - b)


def atomic(text: str) -> bool:
    """No operator outside brackets: a name, a call, an attribute, a subscript, a literal."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and (ch == " " or (ch == "-" and i > 0)):
            return False
    return True


def paren(text: str) -> str:
    return text if atomic(text) else f"({text})"


# ---- what a backend lowering sees ------------------------------------------------------------
class LowerCtx:
    """One layer in a class body, for a backend's lowering function.

    x(i)     input i as forward() writes it        ranks[i]  its runtime rank
    a(name)  an attribute as the constructor writes it (a literal or constructor code)
    f(name)  an attribute as forward() writes it (a literal, or an attribute of self)
    pair(name, forward=False)  a (h, w) attribute: `3` when both sides are literal and equal
    value(name), raw(name)     its value in this call; as the .arch call wrote it
    is_default(name, d)        a literal equal to d (so the lowering can leave it out)
    cin(i)   input i's channel count as the constructor writes it
    path     the member (`self.conv1`) of a stateful op
    """

    def __init__(self, r, node: str, data: dict, ranks: list, attrs: dict, cins: list,
                 path: str | None):
        self._r, self.node, self.op = r, node, data["op"]
        self.ranks, self.attrs, self.cins, self.path = ranks, attrs, cins, path
        self.in_shapes, self.shape = data["in_shapes"], data["shape"]
        self.n_inputs = len(data["inputs"])

    def x(self, i: int = 0) -> str:
        return f"\x01{i}\x01"

    def xs(self) -> list:
        return [self.x(i) for i in range(self.n_inputs)]

    def a(self, name: str) -> str:
        return self._r.text(self.attrs[name], forward=False)

    def f(self, name: str) -> str:
        return self._r.text(self.attrs[name], forward=True)

    def pair(self, name: str, forward: bool = False) -> str:
        v = self.attrs[name]
        if v.const and isinstance(v.value, tuple) and len(v.value) == 2 and \
                v.value[0] == v.value[1]:
            return P.literal(v.value[0])
        return self._r.text(v, forward)

    def value(self, name: str):
        return self.attrs[name].value

    def raw(self, name: str):
        return self.attrs[name].raw

    def is_default(self, name: str, default) -> bool:
        v = self.attrs[name]
        return v.const and v.value == default

    def cin(self, i: int = 0) -> str:
        return self._r.text(self.cins[i], forward=False)


@dataclass
class Lowered:
    ctor: str | None     # the member's constructor (stateful ops), else None
    expr: str            # the forward expression


# ---- one rendered call -------------------------------------------------------------------------
@dataclass
class Item:
    """One step of forward(): a layer, a call of a child block, or a sequence."""
    inputs: list                     # IR nodes consumed, in expression order
    outputs: list                    # IR nodes produced
    expr: str                        # expression template: inputs as \x01i\x01
    name: str                        # IR node (a layer) or scope name
    tap: bool = False                # a layer: passed through tap() in tap mode
    hint: str | None = None          # the .arch variable it was assigned to
    label: str = "y"                 # else a variable named after the layer
    multi: bool = False              # returns a tuple
    scope: str = ""                  # the naming scope it sits in (loops)
    optional: str | None = None      # a member that may be None: the item passes its input


@dataclass
class Member:
    path: tuple                      # attribute names from the class, ("stage1", "block2")
    ctor: str                        # constructor expression (template)
    kind: str                        # layer | block | sequential


@dataclass
class Rendered:
    scope: str
    definition: str | None
    params: list = field(default_factory=list)     # [(py name, archc name, default text|None)]
    channel_params: list = field(default_factory=list)  # [(py name, archc tensor param)]
    forward_args: list = field(default_factory=list)    # py names
    forward_params: list = field(default_factory=list)  # archc names of tensor params
    init: list = field(default_factory=list)   # ("assign", targets, text) | ("member", Member)
    items: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    out_tuple: bool = False
    out_names: list = field(default_factory=list)   # the network's named outputs, in order
    out_channels: list = field(default_factory=list)  # per output: ("const", v)|("text", t)|None
    holes: list = field(default_factory=list)     # [(value, hint, forward, text, names)]
    pyvalues: dict = field(default_factory=dict)  # Python name or text -> value in this call
    out_channel_values: list = field(default_factory=list)
    ifs: list = field(default_factory=list)       # [(statement, branch, condition texts)]
    needs: set = field(default_factory=set)
    ext: dict = field(default_factory=dict)       # external node -> forward text
    key: tuple = ()


class Renderer:
    """Renders one block call (or the network) as a class body; see the module docstring."""

    def __init__(self, plan: "Plan", scope_name: str):
        self.plan, self.net, self.backend = plan, plan.net, plan.backend
        self.scope = self.net.scopes[scope_name]
        self.root = self.scope.kind == "network"
        self.prefix = f"{scope_name}." if scope_name else ""
        self.names: dict = {}      # archc variable -> (python text | None, value, const)
        self.tchan: dict = {}      # node -> Val: its channel count
        self.r = Rendered(scope_name, self.scope.definition)
        self.pymap: dict = {}      # archc variable -> its Python name in this class
        self.pytaken = set(self.backend.reserved_locals)

    def pyname(self, name: str) -> str:
        """The Python name of an archc parameter: one per parameter, distinct per class."""
        if name not in self.pymap:
            self.pymap[name] = identifier(name, self.pytaken)
            self.pytaken.add(self.pymap[name])
        return self.pymap[name]

    def fresh(self, name: str) -> str:
        """A new Python name for each assignment of an archc variable (`c`, then `c_2`):
        code written earlier keeps meaning the value it meant."""
        base = identifier(name, self.backend.reserved_locals)
        py, k = base, 1
        while py in self.pytaken:
            k += 1
            py = f"{base}_{k}"
        self.pytaken.add(py)
        return py

    def pyenv(self) -> dict:
        """Python name -> value, for checking translations."""
        env = {}
        for text, value, const in self.names.values():
            if text is not None and not const and text.isidentifier():
                env[text] = value
        for v in self.tchan.values():
            if v.text is not None and not v.const and v.text.isidentifier():
                env[v.text] = v.value
        return env

    # -- values ------------------------------------------------------------------------------
    def text(self, v: Val, forward: bool) -> str:
        """A Val in the class: a literal, constructor code, or a hole (\x00k\x00). In
        forward() only literals and attributes of self exist: other values are holes that
        remember their constructor code, which __init__ stores on self."""
        if v.const:
            return v.text
        if v.hole or forward:
            avail = tuple(self.pyenv()) + tuple(self.r.pyvalues)
            self.r.holes.append((v.value, v.hint, forward, v.text, avail))
            return f"\x00{len(self.r.holes) - 1}\x00"
        return v.text

    def _channels_text(self, tensor) -> str | None:
        v = self.tchan.get(tensor.node) if isinstance(tensor, Tensor) else None
        return None if v is None or v.hole else v.text

    def translate(self, expr, value, hint: str) -> Val:
        """`expr` (which evaluated to `value` in this call) in this class's terms."""
        if expr is None:
            return Val.literal(value, hint)
        const = True
        for n in _walk(expr):
            if isinstance(n, S.Var):
                const &= self.names.get(n.name, (None, None, False))[2]
            elif isinstance(n, S.Attr):
                const &= self.root
        if const:
            return Val.literal(value, hint)
        scope = P.Scope(self.names, self._channels_text)
        text = P.translate(expr, scope)
        if text is None:
            return Val(value, hint=hint)
        if text == P.literal(value):
            return Val.literal(value, hint)
        try:   # the text must mean, to Python, exactly what the .arch expression meant
            ok = P.same_value(value, P.python_value(text, self.pyenv()))
        except ValueError:
            ok = False
        if not ok:
            return Val(value, hint=hint)
        self.r.needs |= scope.needs
        self.r.pyvalues.setdefault(text, value)
        return Val(value, text, hint=hint)

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> Rendered | None:
        s, net, r = self.scope, self.net, self.r
        if self.root:
            for p, v in s.args.items():
                self.names[p] = (P.literal(v), v, True)
            r.ext[net.input] = "x"
        elif not self._parameters(net.definitions[s.definition]):
            return None
        self.walk(s.name)
        r.pyvalues.update(self.pyenv())
        if self.root:
            r.outputs = [node for _, node in net.output_list()]
            r.out_names = [name for name, _ in net.outputs]
        else:
            out = s.output
            outs = _tensors(out)
            if not outs or (isinstance(out, tuple) and not all(isinstance(t, Tensor)
                                                                for t in out)):
                return None
            r.outputs, r.out_tuple = [t.node for t in outs], isinstance(out, tuple)
            r.out_channels = [self._out_channel(t) for t in outs]
            r.out_channel_values = [t.shape[0] for t in outs]
            if not r.items:
                return None
        self._sequences()
        r.key = (s.definition, tuple(self._key_lines()), tuple(p[0] for p in r.params),
                 tuple(c for c, _ in r.channel_params), tuple(r.forward_args))
        return r

    def _parameters(self, d) -> bool:
        s, r = self.scope, self.r
        tparams = [p.name for p in d.params if _contains_tensor(s.args[p.name])]
        for p in d.params:
            v = s.args[p.name]
            if not _contains_tensor(v):
                continue
            if not isinstance(v, Tensor) and not (
                    isinstance(v, tuple) and all(isinstance(t, Tensor) for t in v)):
                return False   # a list mixing tensors and other values: no class
            arg = self.pyname(p.name)
            r.forward_args.append(arg)
            r.forward_params.append(p.name)
            self.names[p.name] = (None, v, False)
            if isinstance(v, Tensor):
                r.ext.setdefault(v.node, arg)
                ch = identifier("in_channels" if len(tparams) == 1 else f"{arg}_channels",
                                self.pytaken)
                self.pytaken.add(ch)
                r.channel_params.append((ch, p.name))
                self.tchan.setdefault(v.node, Val(v.shape[0], ch, hint=ch))
            else:
                for i, t in enumerate(v):
                    r.ext.setdefault(t.node, f"{arg}[{i}]")
        fixed = self.plan.fixed.get(d.name, set())
        for p in d.params:
            v = s.args[p.name]
            if _contains_tensor(v):
                continue
            if p.name in fixed:   # never given, one value: part of the class, not an argument
                self.names[p.name] = (P.literal(v), v, True)
                continue
            name = self.pyname(p.name)
            r.params.append((name, p.name, _default_text(p)))
            self.names[p.name] = (name, v, False)
        return True

    def _out_channel(self, t: Tensor):
        v = self.tchan.get(t.node)
        if v is None or v.hole:
            return None
        return ("const", v.value) if v.const else ("text", v.text)

    # -- the trace -----------------------------------------------------------------------------
    def walk(self, frame: str):
        pending: list = []
        for ev in self.net.scopes[frame].trace:
            kind = ev[0]
            if kind == "assign":
                self._assign(ev[1], ev[2], pending)
                pending = []
            elif kind == "for":
                st, item = ev[1], ev[3]
                for n, v in zip(st.names, (item,) if len(st.names) == 1 else item):
                    self.names[n] = (None, v, False) if _contains_tensor(v) else \
                        (P.literal(v), v, True)
            elif kind == "if":
                self.r.ifs.append((_where(ev[1]), ev[2], self._conditions(ev[1], ev[2])))
            elif kind == "layer":
                item = self._layer(ev[1])
                if item is not None:
                    pending.append(item)
            elif kind == "scope" and self.net.scopes[ev[1]].kind == "block":
                pending += self._child(self.net.scopes[ev[1]])
            elif kind == "return":
                pending = []

    def _conditions(self, st, taken: int) -> tuple:
        """The branch conditions of an `if` as Python text, each checked to have the truth
        value it had here (None where it cannot be written or checked)."""
        scope = P.Scope(self.names, self._channels_text)
        out = []
        for i, (c, _) in enumerate(st.branches):
            text = P.translate(c, scope)
            if text is not None and i <= taken or taken == -1:
                try:
                    if P.python_value(text, self.pyenv()) is not (i == taken):
                        text = None
                except ValueError:
                    text = None
            out.append(text)
        return tuple(out)

    def _assign(self, st, value, pending: list):
        targets = st.targets
        vals = (value,) if len(targets) == 1 else value
        if _contains_tensor(value):
            for t, v in zip(targets, vals):
                self.names[t] = (None, v, False)
                if isinstance(v, Tensor):
                    for it in pending:
                        if it.hint is None and (len(targets) == 1 or v.node in it.outputs):
                            it.hint = t
            return
        val = self.translate(st.value, value, targets[0])
        if val.const or val.hole:
            for t, v in zip(targets, vals):
                self.names[t] = (P.literal(v), v, True) if val.const else (None, v, False)
            return
        if len(targets) == 1 and val.text.isidentifier():   # `cin = x.channels`: an alias
            self.names[targets[0]] = (val.text, value, False)
            return
        py = tuple(self.fresh(t) for t in targets)
        self.r.init.append(("assign", py, val.text))
        for t, p, v in zip(targets, py, vals):
            self.names[t] = (p, v, False)

    def _attrs(self, data: dict, label: str) -> dict:
        out = {}
        for name, value in data["attrs"].items():
            given = data.get("exprs", {}).get(name)
            hint = f"{label}_{name}"
            if given is None:
                out[name] = Val.literal(value, hint)
            elif not _means(given[1], value):
                out[name] = Val(value, hint=hint)    # normalised ("same" padding): a hole
            else:   # checked against the value as given; the lowering sees the normalised one
                v = self.translate(given[0], given[1], hint)
                if v.const:
                    v = Val.literal(value, hint)
                elif v.hole:
                    v = Val(value, hint=hint)
                else:
                    v.value, v.raw = value, given[1]
                out[name] = v
        return out

    def _layer(self, node: str):
        net, r = self.net, self.r
        data = net.node(node)
        if data["op"] == "input":
            self.tchan[node] = Val.literal(data["shape"][0])
            return None
        op = ops.get(data["op"])
        rel = node[len(self.prefix):]
        label = rel.rsplit(".", 1)[-1]
        attrs = self._attrs(data, label)
        cins = [self.tchan.get(i) or Val(net.node(i)["shape"][0], hint=f"{label}_in")
                for i in data["inputs"]]
        path = self.plan.tree.path(node, self._base()) if op.stateful else None
        ctx = LowerCtx(self, node, data, [self.plan.ranks[i] for i in data["inputs"]], attrs,
                       cins, f"self.{path}" if path else None)
        low = self.backend.lower_op(ctx)
        if (low.ctor is not None) != op.stateful:
            raise PlanError(f"internal: the {self.backend.name} lowering of '{op.name}' "
                            "disagrees with ops.py about statefulness")
        if low.ctor is not None:
            r.init.append(("member", Member(tuple(path.split(".")), low.ctor, "layer")))
        ch = op.channels(cins, attrs)
        if ch is not None and not isinstance(ch, Val):
            ch = Val.literal(ch)
        if ch is not None and ch.value != data["shape"][0]:
            raise PlanError(f"internal: ops.{type(op).__name__}.channels disagrees with its "
                            f"shape rule at '{node}'")
        self.tchan[node] = ch if ch is not None else Val(data["shape"][0],
                                                         hint=f"{label}_channels")
        item = Item(list(data["inputs"]), [node], low.expr, node, tap=True, label=label,
                    scope=data.get("scope", ""))
        r.items.append(item)
        return item

    def _base(self) -> str:
        return self.scope.name

    def _child(self, sc) -> list:
        """A block called here: a member of its class, or (no class) its layers inlined."""
        cp = self.plan.class_of.get(sc.name)
        if cp is None:
            before = len(self.r.items)
            Inline(self, sc.name).walk(sc.name)
            return self.r.items[before:]
        path = self.plan.tree.path(sc.name, self._base())
        args, kw = [], []
        for name, archc, default in cp.params:
            given = sc.given.get(archc)
            value = sc.args[archc]
            if given is None and default is not None and P.literal(value) == default:
                continue
            val = self.translate(given, value, name)
            text = self.text(val, forward=False)
            if cp.positional(name):
                args.append(text)
            elif not (val.const and val.text == default):
                kw.append(f"{name}={text}")
        chan = []
        for ch, archc in cp.channel_params:
            t = sc.args[archc]
            chan.append(self.text(self.tchan.get(t.node) or Val(t.shape[0], hint=ch), False))
        for name, value in self.plan.hoisted_args[sc.name].items():
            kw.append(f"{name}={self.text(Val(value, hint=name), forward=False)}")
        self.r.init.append(("member", Member(tuple(path.split(".")),
                                             self.backend.instance(cp.name, chan + args + kw),
                                             "block")))
        inputs, argtext = [], []
        for p in cp.forward_params:
            v = sc.args[p]
            ts = _tensors(v)
            marks = [f"\x01{len(inputs) + i}\x01" for i in range(len(ts))]
            argtext.append(marks[0] if isinstance(v, Tensor) else "[" + ", ".join(marks) + "]")
            inputs += [t.node for t in ts]
        outs = _tensors(sc.output)
        for t, oc in zip(outs, cp.out_channels):
            self.tchan[t.node] = self._child_channel(oc, cp, sc, t)
        item = Item(inputs, [t.node for t in outs], f"self.{path}({', '.join(argtext)})",
                    sc.name, label=sc.name.rsplit(".", 1)[-1], multi=cp.out_tuple,
                    scope=sc.parent or "")
        self.r.items.append(item)
        return [item]

    def _child_channel(self, oc, cp, sc, t) -> Val:
        """The channel count of a child block's output, in this class's terms: the child's
        claim (a literal, or one of its arguments) with this call's argument substituted,
        checked against the IR's shape."""
        v = None
        if oc is not None and oc[0] == "const":
            v = Val.literal(oc[1])
        elif oc is not None:
            for name, archc, default in cp.params:
                if oc[1] == name:
                    v = self.translate(sc.given.get(archc), sc.args[archc], name)
            for ch, archc in cp.channel_params:
                if oc[1] == ch:
                    v = self.tchan.get(sc.args[archc].node)
        if v is None or not P.same_value(v.value, t.shape[0]):
            return Val(t.shape[0], hint=f"{sc.name.rsplit('.', 1)[-1]}_channels")
        return v

    # -- sequences: a labelled loop of chained block calls -----------------------------------
    def _sequences(self):
        """A labelled loop iteration whose block calls feed each other, and nothing else,
        becomes one sequence member (`self.stage1`), called once in forward()."""
        r = self.r
        for loop in self.net.scopes.values():
            if loop.kind != "loop" or loop.parent != self.scope.name:
                continue
            idx = [i for i, it in enumerate(r.items) if it.scope == loop.name]
            if not idx or idx != list(range(idx[0], idx[-1] + 1)):
                continue
            chain = [r.items[i] for i in idx]
            if not all(it.name in self.plan.class_of and len(it.inputs) == 1 and
                       len(it.outputs) == 1 and not it.multi for it in chain):
                continue
            if any(b.inputs != a.outputs for a, b in zip(chain, chain[1:])):
                continue
            inner = {it.outputs[0] for it in chain[:-1]}
            if inner & set(r.outputs) or any(n in inner for it in r.items if it not in chain
                                             for n in it.inputs):
                continue
            lp = tuple(self.plan.tree.path(loop.name, self._base()).split("."))
            mine = [e for e in r.init if e[0] == "member" and e[1].path[:len(lp)] == lp]
            if not all(e[1].kind == "block" and len(e[1].path) == len(lp) + 1 for e in mine):
                continue
            pos = r.init.index(mine[0])
            seq = ("member", Member(lp, self.backend.sequence(
                [(e[1].path[-1], e[1].ctor) for e in mine]), "sequential"))
            r.init = r.init[:pos] + [seq] + [e for e in r.init[pos:] if e not in mine]
            r.items[idx[0]:idx[-1] + 1] = [Item(
                list(chain[0].inputs), list(chain[-1].outputs), f"self.{'.'.join(lp)}(\x010\x01)",
                loop.name, hint=chain[-1].hint, label=lp[-1])]

    def _key_lines(self) -> list:
        r, out = self.r, []
        for e in r.init:
            if e[0] == "assign":
                out.append(f"{', '.join(e[1])} = {e[2]}")
            else:
                out.append(f"{'.'.join(e[1].path)} = {e[1].ctor}")
        rel = self._relative
        for it in r.items:
            out.append(f"{rel(it.inputs)} -> {rel(it.outputs)}: {it.expr} {it.hint} "
                       f"{it.multi} {[self.plan.ranks.get(n, 4) for n in it.inputs]}")
        out.append(f"return {rel(r.outputs)} {r.out_tuple} {r.out_channels}")
        return [HOLE.sub(lambda m: f"\x00{r.holes[int(m.group(1))][3] or ''}\x00", line)
                for line in out]

    def _relative(self, nodes) -> list:
        return [self.r.ext.get(n) or n[len(self.prefix):] for n in nodes]


class Inline(Renderer):
    """A block without a class of its own: its layers join the caller's class, with every
    attribute a literal or a hole (the caller does not have its variables)."""

    def __init__(self, outer: Renderer, scope_name: str):
        super().__init__(outer.plan, scope_name)
        self.outer = outer
        self.r, self.tchan = outer.r, outer.tchan
        self.prefix = outer.prefix
        for p, v in self.scope.args.items():
            self.names[p] = (None, v, False)

    def _base(self) -> str:
        return self.outer._base()

    def translate(self, expr, value, hint):
        return Val.literal(value, hint) if P.literal(value) is not None else Val(value,
                                                                                 hint=hint)


def _where(st) -> tuple:
    return (st.span.file, st.span.line, st.span.column)


def _walk(expr):
    stack = [expr]
    while stack:
        n = stack.pop()
        yield n
        for f in getattr(n, "__dataclass_fields__", {}):
            if f == "span":
                continue
            c = getattr(n, f)
            if isinstance(c, tuple):
                stack.extend(x for x in c if isinstance(x, S.Node))
            elif isinstance(c, S.Node):
                stack.append(c)


def _means(raw, value) -> bool:
    """The .arch value `raw`, passed as it is, means the normalised attribute `value`."""
    if isinstance(raw, bool) or isinstance(value, bool):
        return raw is value
    if raw == value and type(raw) is type(value):
        return True
    if isinstance(value, tuple) and len(value) == 2:
        return (isinstance(raw, int) and value == (raw, raw)) or \
            (isinstance(raw, tuple) and tuple(raw) == value)
    return isinstance(value, float) and isinstance(raw, int) and float(raw) == value


def _contains_tensor(v) -> bool:
    if isinstance(v, (Tensor, Outputs)):
        return True
    return isinstance(v, tuple) and any(_contains_tensor(x) for x in v)


def _tensors(v) -> list:
    if isinstance(v, Tensor):
        return [v]
    if isinstance(v, tuple):
        return [t for x in v for t in _tensors(x)]
    return []


def _default_text(p) -> str | None:
    """A constructor argument's Python default: the .arch default when that is a literal
    (coerced to the parameter's type); None otherwise (the argument is then required)."""
    e = p.default
    if e is None or not all(isinstance(n, (S.Literal, S.ListLit, S.UnaryOp)) for n in _walk(e)):
        return None
    v = _literal_value(e)
    if p.type == "float" and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    return P.literal(v)


def _literal_value(e):
    if isinstance(e, S.Literal):
        return e.value
    if isinstance(e, S.ListLit):
        return tuple(_literal_value(i) for i in e.items)
    v = _literal_value(e.operand)
    return -v if e.op == "-" else (not v)


# ---- classes -----------------------------------------------------------------------------------
@dataclass
class ClassPlan:
    definition: str
    instances: list                  # Rendered, all with the same body
    name: str = ""
    params: list = field(default_factory=list)          # [(py name, archc name, default)]
    channel_params: list = field(default_factory=list)  # [(py name, archc tensor param)]
    forward_args: list = field(default_factory=list)
    forward_params: list = field(default_factory=list)
    hoisted: list = field(default_factory=list)         # [(py name, used in forward)]
    init: list = field(default_factory=list)
    forward: list = field(default_factory=list)         # [(target | None, expr)]
    out_channels: list = field(default_factory=list)
    out_tuple: bool = False
    needs: set = field(default_factory=set)
    fill: dict = field(default_factory=dict)
    items: list = field(default_factory=list)           # the forward items (instance 0's)

    def positional(self, name: str) -> bool:
        """Leading parameters without defaults are passed by position."""
        for pname, _, default in self.params:
            if default is not None:
                return False
            if pname == name:
                return True
        return False


class Plan:
    """All classes of one generated file (callees before callers) and the network's body."""

    def __init__(self, net, backend, tap: bool = False):
        self.net, self.backend, self.tap = net, backend, tap
        self.ranks = backend.ranks(net)
        self.tree = ModuleTree(net, backend.reserved_attrs)
        self.class_of: dict = {}         # block scope -> ClassPlan
        self.hoisted_args: dict = {}     # block scope -> {hoisted parameter: value}
        self.classes: list = []
        self.needs: set = set()
        by_def: dict = {}
        for s in net.scopes.values():
            if s.kind == "block":
                by_def.setdefault(s.definition, []).append(s.name)
        self.fixed = {d: _fixed(net, d, names) for d, names in by_def.items()}
        for d in _callees_first(net, by_def):
            self._classes_of(d, by_def[d])
        root = Renderer(self, "").run()
        self.needs |= root.needs
        fill = {}
        for k, (value, *_) in enumerate(root.holes):
            fill[k] = P.literal(value)
            if fill[k] is None:
                raise PlanError(f"cannot write the value {value!r} in Python")
        self.root_init = [_fill(e, fill) for e in root.init]
        self.root_forward = _forward(self, root, fill)
        self.root = root

    def _classes_of(self, definition: str, scopes: list):
        groups: dict = {}
        for s in scopes:
            r = Renderer(self, s).run()
            if r is not None:
                groups.setdefault(r.key, []).append(r)
        plans = [ClassPlan(definition, rs) for rs in groups.values()]
        for cp in plans:
            self._holes(cp)
        plans = _merge_optional(plans)
        _name(plans, set(self.backend.reserved_globals) | {c.name for c in self.classes} |
              {self.net.name})
        for cp in plans:
            self._finish(cp)
            for r in cp.instances:
                self.class_of[r.scope] = cp
            self.classes.append(cp)
            self.needs |= cp.needs

    def _holes(self, cp: ClassPlan):
        """Holes -> literals (one value in every call) or constructor arguments."""
        rs, r0 = cp.instances, cp.instances[0]
        fill, hoisted, stored = {}, [], []
        taken = {p[0] for p in r0.params} | {c for c, _ in r0.channel_params} | \
            set(r0.forward_args) | set(self.backend.reserved_locals) | \
            {e[1].path[0] for e in r0.init if e[0] == "member"}
        for k, (value, hint, forward, text, avail) in enumerate(r0.holes):
            values = [r.holes[k][0] for r in rs]
            lit = P.literal(value)
            if lit is not None and all(P.same_value(v, value) for v in values):
                fill[k] = lit
                continue
            # a name of the class that holds exactly these values in every call
            known = text or next((n for n in avail if len(set(map(repr, values))) > 1 and all(
                P.same_value(v, r.pyvalues.get(n)) for v, r in zip(values, rs))), None)
            if known is not None and not forward:
                fill[k] = known
                continue
            name = identifier(hint, taken)
            taken.add(name)
            fill[k] = f"self.{name}" if forward else name
            if known is not None:     # forward() reads it from self; __init__ computes it
                stored.append(("store", name, known))
            else:                     # the caller passes it
                hoisted.append((name, forward, k))
        for r in rs:
            self.hoisted_args[r.scope] = {name: r.holes[k][0] for name, _, k in hoisted}
        cp.fill = fill
        cp.hoisted = [(name, forward) for name, forward, _ in hoisted]
        cp.init = [_fill(e, fill) for e in r0.init] + stored
        cp.items = list(r0.items)
        cp.params, cp.channel_params = list(r0.params), list(r0.channel_params)
        cp.forward_args, cp.forward_params = r0.forward_args, r0.forward_params
        cp.out_tuple, cp.needs = r0.out_tuple, r0.needs
        cp.out_channels = [oc if oc is not None else _match_output(cp, k)
                           for k, oc in enumerate(r0.out_channels)]

    def _finish(self, cp: ClassPlan):
        """Dead constructor code removed; unused parameters dropped; forward() written."""
        live, kept = set(), []
        for e in reversed(cp.init):   # liveness, backwards through straight-line code
            if e[0] == "assign":
                if not set(e[1]) & live:
                    continue
                live = (live - set(e[1])) | names_in(e[2])
            elif e[0] == "member":
                live |= names_in(e[1].ctor)
            elif e[0] == "store":
                live |= names_in(e[2])
            else:
                live |= names_in(e[1]) | {n for m in e[2] for n in names_in(m.ctor)}
            kept.append(e)
        cp.init = kept[::-1]
        live |= {name for name, _ in cp.hoisted}
        cp.params = [p for p in cp.params if p[0] in live]
        cp.channel_params = [c for c in cp.channel_params if c[0] in live]
        r0 = cp.instances[0]
        cp.forward = _forward(self, r0, cp.fill, cp.items)


def _match_output(cp: ClassPlan, k: int):
    """An output whose channel count the class cannot compute, named after the argument
    that has its value in every call (when the calls differ in it): the caller's text for
    that argument then stands for it (and the caller checks it against the IR)."""
    rs = cp.instances
    values = [r.out_channel_values[k] for r in rs]
    if len(set(values)) < 2:
        return None
    for name, _ in cp.channel_params:
        if all(r.pyvalues.get(name) == v for r, v in zip(rs, values)):
            return ("text", name)
    for name, _, _ in cp.params:
        if all(P.same_value(r.pyvalues.get(name), v) for r, v in zip(rs, values)):
            return ("text", name)
    return None


def _relative_item(r: Rendered, it: Item, swap: dict | None = None) -> tuple:
    prefix = f"{r.scope}." if r.scope else ""

    def rel(n):
        n = (swap or {}).get(n, n)
        return r.ext.get(n) or n[len(prefix):]
    return (tuple(map(rel, it.inputs)), tuple(map(rel, it.outputs)), it.expr, it.hint,
            it.multi)


def _merge_optional(plans: list) -> list:
    """Merge two classes of one block that differ by one optional member: a block call
    inside `if c { y = m: f(y) }` that one class has and the other has not. The merged
    class creates the member when c holds (else None) and forward() passes its input
    through when it is None (torchvision's `downsample`)."""
    merged = True
    while merged:
        merged = False
        for a in plans:
            for b in plans:
                if a is not b and _try_merge(a, b):
                    plans.remove(b)
                    merged = True
                    break
            if merged:
                break
    return plans


def _try_merge(a: ClassPlan, b: ClassPlan) -> bool:
    ra, rb = a.instances[0], b.instances[0]
    if (a.params, a.channel_params, a.forward_args, a.hoisted, a.out_tuple) != \
            (b.params, b.channel_params, b.forward_args, b.hoisted, b.out_tuple):
        return False
    if len(ra.ifs) != len(rb.ifs):
        return False
    differ = [i for i, (x, y) in enumerate(zip(ra.ifs, rb.ifs)) if x[:2] != y[:2]]
    if len(differ) != 1:
        return False
    ia, ib = ra.ifs[differ[0]], rb.ifs[differ[0]]
    if ia[0] != ib[0] or ia[1] != -1 or ib[1] != 0 or len(ib[2]) != 1 or ib[2][0] is None \
            or ia[2] != ib[2]:
        return False
    cond = ib[2][0]
    # the constructor: b's entries are a's with one run of members inserted
    n = len(b.init) - len(a.init)
    if n < 1:
        return False
    i = next((k for k, (x, y) in enumerate(zip(a.init, b.init)) if x != y), len(a.init))
    extra = b.init[i:i + n]
    if b.init[:i] != a.init[:i] or b.init[i + n:] != a.init[i:] or \
            any(e[0] != "member" or len(e[1].path) != 1 for e in extra) or \
            any(HOLE.search(e[1].ctor) for e in extra):
        return False
    # forward(): b's items are a's with one call of the first extra member inserted, whose
    # output stands where a used its input
    if len(b.items) != len(a.items) + 1:
        return False
    j = next((k for k, it in enumerate(b.items) if it.expr.startswith(
        f"self.{extra[0][1].path[0]}(")), None)
    if j is None or len(extra) != 1:
        return False
    x = b.items[j]
    if len(x.inputs) != 1 or len(x.outputs) != 1 or x.multi:
        return False
    swap = {x.outputs[0]: x.inputs[0]}
    rest = b.items[:j] + b.items[j + 1:]
    if [_relative_item(ra, it) for it in a.items] != \
            [_relative_item(rb, it, swap) for it in rest]:
        return False
    def rel(r, nodes):
        return [r.ext.get(n) or n[len(r.scope) + 1:] for n in nodes]
    if rel(ra, ra.outputs) != rel(rb, [swap.get(o, o) for o in rb.outputs]):
        return False
    path = extra[0][1].path
    a.init = a.init[:i] + [("guard", cond, [e[1] for e in extra], path)] + a.init[i:]
    a.items = b.items[:j] + [Item(list(x.inputs), list(x.outputs), x.expr, x.name, x.tap,
                                  x.hint, x.label, x.multi, x.scope,
                                  optional=".".join(path))] + b.items[j + 1:]
    a.instances = [rb] + [r for r in b.instances[1:]] + a.instances
    a.fill = b.fill
    return True


def _fixed(net, definition: str, scopes: list) -> set:
    """Parameters of a block that no call gives and that have one value in every call:
    the classes of the block hold them as constants instead of taking them as arguments."""
    out = set()
    for p in net.definitions[definition].params:
        values = [net.scopes[s].args[p.name] for s in scopes]
        if any(p.name in net.scopes[s].given for s in scopes) or _contains_tensor(values[0]):
            continue
        if P.literal(values[0]) is not None and all(type(v) is type(values[0]) and
                                                    v == values[0] for v in values):
            out.add(p.name)
    return out


def _callees_first(net, by_def: dict) -> list:
    """Block definitions, each after every block its calls call."""
    calls: dict = {d: set() for d in by_def}
    for s in net.scopes.values():
        if s.kind != "block":
            continue
        p = s.parent
        while p:
            ps = net.scopes[p]
            if ps.kind == "block":
                calls[ps.definition].add(s.definition)
                break
            p = ps.parent
    out, seen = [], set()

    def visit(d):
        if d in seen:
            return
        seen.add(d)
        for c in sorted(calls[d]):
            visit(c)
        out.append(d)
    for d in by_def:
        visit(d)
    return out


def _name(plans: list, taken: set) -> None:
    """Class names: CamelCase of the block; other structures of it named by what differs."""
    if not plans:
        return
    base = camel(plans[0].definition)
    members = [{e[1].path[0] for e in cp.init if e[0] == "member"} for cp in plans]
    order = sorted(range(len(plans)), key=lambda i: (len(members[i]), -len(plans[i].instances)))
    plans[:] = [plans[i] for i in order]
    members = [members[i] for i in order]
    names: list = []
    for i, cp in enumerate(plans):
        name = base
        if i:
            extra = sorted(members[i] - members[0])
            missing = sorted(members[0] - members[i])
            name = base + ("With" + "".join(map(camel, extra)) if extra else "") + \
                ("No" + "".join(map(camel, missing)) if missing else "")
            if name == base or len(extra) + len(missing) > 2 or name in names:
                name = f"{base}{i + 1}"
        while name in taken or name in names:
            name += "_"
        names.append(name)
    for cp, name in zip(plans, names):
        cp.name = name
        taken.add(name)


def names_in(text: str) -> set:
    """The Python names a piece of generated code reads (string literals excluded)."""
    out = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(HOLE.sub(" 0 ", text)).readline):
            if tok.type == tokenize.NAME:
                out.add(tok.string)
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


def _fill(entry, fill: dict):
    def sub(t):
        return HOLE.sub(lambda m: fill[int(m.group(1))], t)
    if entry[0] == "assign":
        return ("assign", entry[1], sub(entry[2]))
    if entry[0] == "store":
        return entry
    m = entry[1]
    return ("member", Member(m.path, sub(m.ctor), m.kind))


def _forward(plan: Plan, r: Rendered, fill: dict, items: list | None = None) -> list:
    """forward()'s statements [(target, expr)], the last (None, returned expression):
    variables named after the .arch variables, single-use temporaries inlined."""
    items = r.items if items is None else items
    tap = plan.tap
    outputs = set(r.outputs)
    uses: dict = {}
    for i, it in enumerate(items):
        for n in it.inputs:
            uses.setdefault(n, []).append(i)
    var: dict = dict(r.ext)                     # node -> text
    carry: dict = {}                            # inlined node -> the variable it consumed
    live = {t.split("[")[0]: n for n, t in r.ext.items()}   # variable -> node
    reserved = set(plan.backend.reserved_locals) | {"self"}
    prefix = f"{r.scope}." if r.scope else ""
    lines = []
    for i, it in enumerate(items):
        expr = substitute(HOLE.sub(lambda m: fill[int(m.group(1))], it.expr),
                          [var[n] for n in it.inputs])
        dying = []
        for n in dict.fromkeys(it.inputs):
            if n in carry:
                dying.append(carry[n])
            elif n not in outputs and max(uses[n]) <= i and live.get(var[n]) == n:
                del live[var[n]]
                dying.append(var[n])
        if it.multi or len(it.outputs) != 1:
            names = []
            for out in it.outputs:
                name = _choose(it.label, live, reserved)
                live[name], var[out] = out, name
                names.append(name)
            lines.append((", ".join(names) + ("," if len(names) == 1 else ""), expr))
            continue
        out = it.outputs[0]
        later = uses.get(out, [])
        if it.optional:   # the member may be None: then the input passes through
            name = _choose(it.hint or it.label, live, reserved)
            live[name], var[out] = out, name
            src = var[it.inputs[0]]
            lines.append((name, f"{src} if self.{it.optional} is None else {expr}"))
            continue
        if not tap and out in outputs and i == len(items) - 1 and len(r.outputs) == 1:
            var[out] = expr
            continue
        if not tap and out not in outputs and later == [i + 1] and it.hint is None and \
                len(expr) <= 40 and expr.count("(") <= 1:
            var[out] = expr
            if dying and dying[0].isidentifier():
                carry[out] = dying[0]
            continue
        if it.hint is None and dying and dying[0].isidentifier():
            name = dying[0]   # a chain without a name of its own stays in its input's variable
        else:
            name = _choose(it.hint or it.label, live, reserved)
        live[name], var[out] = out, name
        lines.append((name, expr))
        if tap and it.tap:
            lines.append((name, f'tap(self.tap_prefix + "{it.name[len(prefix):]}", {name})'))
    if r.out_names:   # the network's named outputs: [(name, text)]
        ret = [(name, var[n]) for name, n in zip(r.out_names, r.outputs)]
    elif r.out_tuple:
        ret = ", ".join(var[n] for n in r.outputs) + ("," if len(r.outputs) == 1 else "")
    else:
        ret = var[r.outputs[0]]
    return lines + [(None, ret)]


def substitute(template: str, texts: list) -> str:
    """Put the inputs' texts into an expression template, in parentheses where an operator
    is next to them."""
    def one(m):
        text = texts[int(m.group(1))]
        before = template[:m.start()].rstrip(" ")[-1:]
        after = template[m.end():].lstrip(" ")[:1]
        if atomic(text) or (before in ("(", "[", ",") and after in (")", "]", ",")):
            return text
        return f"({text})"
    return ARG.sub(one, template)


def _choose(base: str, live: dict, reserved: set) -> str:
    base = identifier(base, reserved)
    name, k = base, 1
    while name in live or name in reserved:
        k += 1
        name = f"{base}{k}"
    return name
