"""Rendering one block call (or the network) as a class body: a `Rendered`.

A `Renderer` replays the call's trace (compiler/ir.py): scalar statements become constructor
code (backends/_pyexpr.py writes the .arch expressions as Python, each checked to mean what it
meant), layers and the blocks it calls become members, and its data flow becomes forward()
items. A value it cannot write from the call's parameters becomes a hole (backends/_body.py);
backends/_plan.py groups calls with equal bodies into classes and fills the holes. A block
without a class of its own is rendered `Inline` into its caller.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from archc.compiler import _syntax as S
from archc.compiler import ops
from archc.compiler._values import Tensor

from . import _pyexpr as P
from . import _roll, _roll_block
from ._activations import TABLE
from ._body import (Assign, Branch, Code, Hole, Item, Member, OutChannels, Rendered,
                    Val, contains_tensor, default_text, means, tensors, walk_syntax, where)
from ._names import PlanError, identifier
from ._render_args import ArgumentsMixin
from .lower_ctx import LowerCtx

if TYPE_CHECKING:
    from ._plan import Plan


class Renderer(ArgumentsMixin):
    """Renders one block call (or the network) as a class body; see the module docstring."""

    def __init__(self, plan: Plan, scope_name: str):
        self.plan, self.net, self.backend = plan, plan.net, plan.backend
        self.scope = self.net.scopes[scope_name]
        self.root = self.scope.kind == "network"
        self.prefix = f"{scope_name}." if scope_name else ""
        self.names: dict = {}      # archc variable -> (python text | None, value, const)
        self.tchan: dict = {}      # node -> Val: its channel count
        self.r = Rendered(scope_name, self.scope.definition)
        self.pymap: dict = {}      # archc variable -> its Python name in this class
        self.pytaken = set(self.backend.reserved_locals)
        self.deps: dict = {}       # archc variable -> the network parameters it depends on
        self.rolling = None        # a _roll.Roller while a loop is written as a loop
        self.open: list = []       # [(Rendered.ifs index, span)] of the taken branches we are in
        self.tag_prefix: tuple = ()

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
            self.r.holes.append(Hole(v.value, v.hint, forward, v.text, avail, tag=self.tag,
                                     at=len(self.r.init)))
            return f"\x00{len(self.r.holes) - 1}\x00"
        return v.text

    @property
    def tag(self) -> tuple:
        """The `if`s whose taken branch the current statement is in (see _body.Assign)."""
        return self.tag_prefix + tuple(i for i, _ in self.open)

    def _enter(self, span):
        """Leave the branches that do not contain `span`."""
        while self.open and not _inside(span, self.open[-1][1]):
            self.open.pop()

    def _channels_text(self, tensor) -> str | None:
        v = self.tchan.get(tensor.node) if isinstance(tensor, Tensor) else None
        return None if v is None or v.hole else v.text

    def translate(self, expr, value, hint: str) -> Val:
        """`expr` (which evaluated to `value` in this call) in this class's terms."""
        if expr is None:
            return Val.literal(value, hint)
        const = True
        for n in walk_syntax(expr):
            if isinstance(n, S.Var):
                const &= self.names.get(n.name, (None, None, False))[2]
            elif isinstance(n, S.Attr):   # shapes are fixed, but for the network's arguments
                const &= self.root and not self.plan.symbolic
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
            self.pytaken |= {c.name for c in self.plan.classes}
            for p, v in s.args.items():
                if p in self.plan.symbolic:   # a constructor argument, default as built
                    name = self.pyname(p)
                    r.params.append((name, p, P.literal(v)))
                    self.names[p], self.deps[p] = (name, v, False), {p}
                else:
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
            outs = tensors(out)
            if not outs or (isinstance(out, tuple) and not all(isinstance(t, Tensor)
                                                                for t in out)):
                return None
            r.outputs, r.out_tuple = [t.node for t in outs], isinstance(out, tuple)
            r.out_channels = [self._out_channel(t) for t in outs]
            if r.rolled is not None:
                _roll_block.rolled_in(self)
            r.out_channel_values = [t.shape[0] for t in outs]
            if not r.items:
                return None
        return r

    def _parameters(self, d) -> bool:
        s, r = self.scope, self.r
        tparams = [p.name for p in d.params if contains_tensor(s.args[p.name])]
        for p in d.params:
            v = s.args[p.name]
            if not contains_tensor(v):
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
            if contains_tensor(v):
                continue
            if p.name in fixed:   # never given, one value: part of the class, not an argument
                self.names[p.name] = (P.literal(v), v, True)
                continue
            name = self.pyname(p.name)
            r.params.append((name, p.name, default_text(p)))
            self.names[p.name] = (name, v, False)
        return True

    def _out_channel(self, t: Tensor):
        v = self.tchan.get(t.node)
        if v is None or v.hole:
            return None
        return OutChannels(v.const, v.value if v.const else v.text)

    # -- the trace -----------------------------------------------------------------------------
    def walk(self, frame: str):
        self.events(self.net.scopes[frame].trace)

    def events(self, trace: list):
        pending: list = []
        i = 0
        while i < len(trace):
            ev = trace[i]
            kind = ev[0]
            self._enter(self.net.node(ev[1])["span"] if kind == "layer" else
                        self.net.scopes[ev[1]].span if kind == "scope" else ev[1].span)
            i += 1
            if kind == "for" and ev[2] == 1 and (self.rolling or (
                    self.root and self.plan.symbolic and ev[1].label is not None) or (
                    not self.root and type(self) is Renderer and ev[1].label is None)):
                j = _roll.end_of(trace, i - 1, ev[1])
                if j is not None:   # the whole loop at once (backends/_roll.py)
                    if self.rolling:
                        self.r.init.append(Code(tuple(self.rolling.loop(
                            ev[1], trace[i - 1:j], labelled=ev[1].label is not None))))
                    elif self.root:
                        _roll.roll(self, ev[1], trace[i - 1:j])
                    else:
                        _roll_block.roll_block(self, ev[1], trace[i - 1:j])
                    i, pending = j + 1, []
                    continue
            if kind == "if" and self.rolling:
                raise _roll.NoRoll
            if kind == "assign":
                self._assign(ev[1], ev[2], pending)
                pending = []
            elif kind == "for":
                st, item = ev[1], ev[3]
                for n in st.names:
                    self.deps[n] = self.deps_of(st.iterable)
                for n, v in zip(st.names, (item,) if len(st.names) == 1 else item):
                    self.names[n] = (None, v, False) if contains_tensor(v) else \
                        (P.literal(v), v, True)
            elif kind == "if":
                self.r.ifs.append(Branch(where(ev[1]), ev[2], self._conditions(ev[1], ev[2])))
                if ev[2] >= 0:
                    self.open.append((len(self.r.ifs) - 1, ev[1].span))
            elif kind == "layer":
                item = self._layer(ev[1])
                if item is not None:
                    pending.append(item)
            elif kind == "scope" and self.net.scopes[ev[1]].kind == "block":
                pending += self._child(self.net.scopes[ev[1]])
            elif kind == "return":
                pending = []
            elif kind == "assert" and self.root:
                self._assert(ev[1])

    def _assign(self, st, value, pending: list):
        targets = st.targets
        for t in targets:
            self.deps[t] = self.deps_of(st.value)
        vals = (value,) if len(targets) == 1 else value
        if contains_tensor(value):
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
        py = tuple(self.rolling.name_for(st, t) if self.rolling else self.fresh(t)
                   for t in targets)
        self.r.init.append(Assign(py, val.text, self.tag))
        for t, p, v in zip(targets, py, vals):
            self.names[t] = (p, v, False)

    def _attrs(self, data: dict, label: str) -> dict:
        out = {}
        for name, value in data["attrs"].items():
            given = data.get("exprs", {}).get(name)
            hint = f"{label}_{name}"
            if given is None:
                out[name] = Val.literal(value, hint)
            elif not means(given[1], value):
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
            r.init.append(Member(tuple(path.split(".")), low.ctor, "layer", self.tag))
        ch = op.channels_at(cins, attrs, [net.node(i)["shape"] for i in data["inputs"]])
        if ch is not None and not isinstance(ch, Val):
            ch = Val.literal(ch)
        if ch is not None and ch.value != data["shape"][0]:
            raise PlanError(f"internal: ops.{type(op).__name__}.channels disagrees with its "
                            f"shape rule at '{node}'")
        self.tchan[node] = ch if ch is not None else Val(data["shape"][0],
                                                         hint=f"{label}_channels")
        expr = low.expr
        if op.category == "activation" and "kind" in data.get("exprs", {}):
            expr = self._chosen_activation(data["exprs"]["kind"], expr, label)
        item = Item(list(data["inputs"]), [node], expr, node, tap=True, label=label,
                    scope=data.get("scope", ""), tag=self.tag)
        r.items.append(item)
        return item

    def _chosen_activation(self, kind: tuple, expr: str, label: str) -> str:
        """An activation chosen by a string (`activation(y, act)`) that the class can write
        (`act`, an argument): a hole, written as the lowering `expr` where every call of the
        class chose one activation, else as the function __init__ stores from the file's
        table (`self.act = ACTIVATIONS[act]`, backends/_activations.py)."""
        v = self.translate(kind[0], kind[1], label)
        if v.const or v.hole:
            return expr
        avail = tuple(self.pyenv()) + tuple(self.r.pyvalues)
        self.r.holes.append(Hole(kind[1], label, True, f"{TABLE}[{v.text}]", avail,
                                 literal=expr, call=True, tag=self.tag, at=len(self.r.init)))
        return f"\x00{len(self.r.holes) - 1}\x00"

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
            val = self.translate(given, value, name) if given is not None else \
                self._default_here(sc, archc, value, name)
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
        self.r.init.append(Member(tuple(path.split(".")),
                                  self.backend.instance(cp.name, chan + args + kw), "block",
                                  self.tag))
        if self.rolling:
            self.rolling.member_scope[tuple(path.split("."))] = sc
        inputs, argtext = [], []
        for p in cp.forward_params:
            v = sc.args[p]
            ts = tensors(v)
            marks = [f"\x01{len(inputs) + i}\x01" for i in range(len(ts))]
            argtext.append(marks[0] if isinstance(v, Tensor) else "[" + ", ".join(marks) + "]")
            inputs += [t.node for t in ts]
        outs = tensors(sc.output)
        for t, oc in zip(outs, cp.out_channels):
            self.tchan[t.node] = self._child_channel(oc, cp, sc, t)
        item = Item(inputs, [t.node for t in outs], f"self.{path}({', '.join(argtext)})",
                    sc.name, label=sc.name.rsplit(".", 1)[-1], multi=cp.out_tuple,
                    scope=sc.parent or "", tag=self.tag)
        self.r.items.append(item)
        return [item]



class Inline(Renderer):
    """A block without a class of its own: its layers join the caller's class, with every
    attribute a literal or a hole (the caller does not have its variables)."""

    def __init__(self, outer: Renderer, scope_name: str):
        super().__init__(outer.plan, scope_name)
        self.outer = outer
        self.r, self.tchan = outer.r, outer.tchan
        self.tag_prefix = outer.tag
        self.prefix = outer.prefix
        for p, v in self.scope.args.items():
            self.names[p] = (None, v, False)

    def _base(self) -> str:
        return self.outer._base()

    def translate(self, expr, value, hint):
        return Val.literal(value, hint) if P.literal(value) is not None else Val(value,
                                                                                 hint=hint)


def _inside(span, outer) -> bool:
    """`span` starts within `outer` (an `if` statement's span)."""
    if span is None or outer.end_line is None or span.file != outer.file:
        return False
    return (outer.line, outer.column) <= (span.line, span.column) <= \
        (outer.end_line, outer.end_column)
