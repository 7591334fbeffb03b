"""Arguments and conditions in a class's terms (a mixin of backends/_render.py's Renderer):
the network parameters each variable depends on, the network's assertions as checks in its
class's constructor, an `if`'s conditions as checked Python, a block default that is an
expression and a child block's output channels written in the caller's terms, and the
renderer's state saved and restored around a loop written as a loop (backends/_roll.py)."""
from __future__ import annotations

from archc.compiler import _syntax as S
from archc.compiler._values import Tensor

from . import _pyexpr as P
from ._body import Check, Val, walk_syntax


class ArgumentsMixin:
    def snapshot(self) -> tuple:
        return dict(self.names), dict(self.tchan), dict(self.deps), set(self.r.needs)

    def restore(self, state: tuple):
        self.names, self.tchan, self.deps = dict(state[0]), dict(state[1]), dict(state[2])
        self.r.needs = set(state[3])

    def deps_of(self, expr) -> set:
        """The network parameters an expression depends on (through the variables it reads)."""
        if not self.plan.symbolic:
            return set()
        out = set()
        for n in walk_syntax(expr):
            if isinstance(n, S.Var):
                out |= self.deps.get(n.name, set())
        return out

    def _assert(self, st):
        """An assertion over the network's arguments, checked by the constructor: written as
        Python and checked to hold here (else the parameters it reads stay fixed)."""
        deps = self.deps_of(st.cond)
        if not deps:
            return    # it holds for every argument the class takes
        scope = P.Scope(self.names, self._channels_text)
        text = P.translate(st.cond, scope)
        try:
            ok = text is not None and P.python_value(text, self.pyenv()) is True
        except ValueError:
            ok = False
        if not ok:
            self.r.unchecked |= deps
            return
        m = st.message
        message = m.value if isinstance(m, S.Literal) and isinstance(m.value, str) else \
            f"assertion failed: {text}"
        self.r.needs |= scope.needs
        self.r.init.append(Check(text, message))

    def _default_here(self, sc, param: str, value, hint: str) -> Val:
        """An argument the call did not give, whose .arch default is an expression of the
        block's other parameters (`mid: int = out`): that expression in this class's terms
        (the call's texts for those parameters), checked to give its value; else a literal."""
        d = self.net.definitions[sc.definition]
        p = next(q for q in d.params if q.name == param)
        if p.default is None or P.literal(value) is None:
            return Val.literal(value, hint)
        names = {}
        for q in d.params:
            v = sc.args[q.name]
            if isinstance(v, Tensor):
                names[q.name] = (None, v, False)
            elif q.name in sc.given:
                t = self.translate(sc.given[q.name], v, q.name)
                if not t.hole:
                    names[q.name] = (t.text, v, t.const)
        scope = P.Scope(names, self._channels_text)
        text = P.translate(p.default, scope)
        try:
            ok = text is not None and P.same_value(value, P.python_value(text, self.pyenv()))
        except ValueError:
            ok = False
        if not ok or text == P.literal(value):
            return Val.literal(value, hint)
        self.r.needs |= scope.needs
        return Val(value, text, hint=hint)

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

    def _child_channel(self, oc, cp, sc, t) -> Val:
        """The channel count of a child block's output, in this class's terms: the child's
        claim (a literal, or one of its arguments) with this call's argument substituted,
        checked against the IR's shape."""
        v = None
        if oc is not None and oc.const:
            v = Val.literal(oc.value)
        elif oc is not None:
            for name, archc, default in cp.params:
                if oc.value == name:
                    v = self.translate(sc.given.get(archc), sc.args[archc], name)
            for ch, archc in cp.channel_params:
                if oc.value == ch:
                    v = self.tchan.get(sc.args[archc].node)
        if v is None or not P.same_value(v.value, t.shape[0]):
            return Val(t.shape[0], hint=f"{sc.name.rsplit('.', 1)[-1]}_channels")
        return v
