"""forward()'s statements for a class (or the network): the items of a rendered call
(backends/_body.py) in order, as `target = expression` pairs and a returned expression.

Variables are named after the .arch variables they hold (or the layer's name); a temporary
used once, by the next item, is written inline; a chain without a name of its own stays in
its input's variable; in tap mode every layer's output passes through `tap()`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._body import ARG, HOLE, Rendered, passes_on
from ._names import identifier
from .lower_ctx import atomic

if TYPE_CHECKING:
    from ._plan import Plan


def forward_lines(plan: Plan, r: Rendered, fill: dict, items: list | None = None) -> list:
    """forward()'s statements [(target, expr)] or [(target, expr, condition)] (assigned
    only when the condition holds), the last (None, returned expression): variables named
    after the .arch variables, single-use temporaries inlined."""
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
    runs: dict = {}                             # item index -> the run of optional steps
    for i, it in enumerate(items):
        if it.optional:
            prev = runs.get(i - 1)
            run = prev if prev and items[prev[0]].index == it.index else []
            run.append(i)
            runs[i] = run
    into: dict = {}                             # run's first index -> its variable
    for i, it in enumerate(items):
        run = runs.get(i)
        single = run and len(run) == 1 and not it.flag and not it.tap
        if run and not single and i == run[0]:
            # steps under `if cond:`; their result goes to the variable of the value they
            # pass on when absent, when nothing after them reads that, else to a copy
            src = var[passes_on([items[k] for k in run])[it.through]]
            node = live.get(src)
            if src.isidentifier() and node is not None and node not in outputs and \
                    max(uses.get(node, [0])) <= run[-1]:
                into[i] = src
            else:
                into[i] = _choose(items[run[-1]].hint or items[run[-1]].label, live, reserved)
                lines.append((into[i], src))
            live[into[i]] = None                # taken until the last step
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
        if single:   # a member, None when absent: its input passes on
            src = var[passes_on([it])[it.through]]
            name = _choose(it.hint or it.label, live, reserved)
            live[name], var[out] = out, name
            lines.append((name, f"{src} if self.{it.optional} is None else {expr}"))
            continue
        if run:   # `if self.use_add: y = x + y`, `if self.act is not None: y = self.act(y)`
            cond = f"self.{it.optional}" if it.flag else f"self.{it.optional} is not None"
            if i != run[-1] and not tap and later == [i + 1] and it.hint is None and \
                    len(expr) <= 40 and expr.count("(") <= 1:
                var[out] = expr
                continue
            name = into[run[0]] if i == run[-1] else _choose(it.label, live, reserved)
            live[name], var[out] = out, name
            lines.append((name, expr, cond))
            if tap:
                lines.append((name, f'tap(self.tap_prefix + "{it.name[len(prefix):]}", '
                                    f'{name})', cond))
            continue
        if not tap and out in outputs and i == len(items) - 1 and len(r.outputs) == 1:
            var[out] = expr
            continue
        if not tap and out not in outputs and later == [i + 1] and it.hint is None and \
                len(expr) <= 40 and expr.count("(") <= 1 and not items[i + 1].optional:
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
