"""Source text -> AST (compiler/_syntax.py), with friendly, positioned syntax errors.

Lark parses with LALR(1) and `propagate_positions`, from tables shipped as data
(compiler/_tables.py); a Transformer turns the tree into frozen dataclass nodes that carry
a Span. Syntax errors are explained by
compiler/_diagnose.py.
"""
from __future__ import annotations

import functools
import re

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError

from . import _syntax as S
from . import _tables, limits
from ._diagnose import syntax_error
from .errors import ArchError, Span


@functools.lru_cache(maxsize=None)
def _lark() -> Lark:
    """The parser, from the tables shipped as JSON data (compiler/_tables.py): no cache file,
    nothing unpickled."""
    return _tables.load()


def _span_of_meta(file: str, meta) -> Span:
    if getattr(meta, "empty", True):
        return Span(file, 1, 1)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _span_of_token(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _decode_string(tok: Token, file: str) -> str:
    body = tok[1:-1]
    if len(body) > limits.MAX_STRING:
        raise ArchError(f"string is longer than {limits.MAX_STRING} characters",
                        Span(file, tok.line, tok.column, tok.line, tok.column + 1))
    out, i = [], 0
    escapes = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in escapes:
                raise ArchError(f"unknown escape '\\{nxt}' in string", _span_of_token(file, tok),
                                hint='strings support \\" \\\\ \\n and \\t')
            out.append(escapes[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@v_args(meta=True)
class _ToAst(Transformer):
    """Lark tree -> AST nodes.  `file` is stamped into every Span."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _sp(self, meta) -> Span:
        return _span_of_meta(self.file, meta)

    # ---- module ----
    def start(self, meta, items):
        imports = tuple(i for i in items if isinstance(i, S.Import))
        defs = tuple(i for i in items if isinstance(i, S.Definition))
        return imports, defs

    def import_stmt(self, meta, ch):
        return S.Import(self._sp(meta), _decode_string(ch[0], self.file))

    def _definition(self, kind, meta, ch):
        name, params, body = ch
        return S.Definition(self._sp(meta), kind, str(name), tuple(params or ()), body, self.file)

    def block_def(self, meta, ch):
        return self._definition("block", meta, ch)

    def network_def(self, meta, ch):
        return self._definition("network", meta, ch)

    def params(self, meta, ch):
        return [c for c in ch if c is not None]

    def param(self, meta, ch):
        name, typ, default = ch
        if str(typ) not in S.TYPES:
            raise ArchError(f"unknown type '{typ}'", _span_of_token(self.file, typ),
                            hint="types are " + ", ".join(S.TYPES))
        return S.Param(self._sp(meta), str(name), str(typ), default)

    def body(self, meta, ch):
        return tuple(ch)

    # ---- statements ----
    def assign(self, meta, ch):
        return S.Assign(self._sp(meta), (str(ch[0]),), ch[1])

    def unpack(self, meta, ch):
        return S.Assign(self._sp(meta), tuple(str(c) for c in ch[:-1]), ch[-1])

    def return_stmt(self, meta, ch):
        return S.Return(self._sp(meta), ch[0])

    def loop_vars(self, meta, ch):
        return tuple(str(c) for c in ch)

    def for_stmt(self, meta, ch):
        names, iterable, body = ch
        return S.For(self._sp(meta), None, names, iterable, body)

    def labelled_for(self, meta, ch):
        label, names, iterable, body = ch
        return S.For(self._sp(meta), str(label), names, iterable, body)

    def if_stmt(self, meta, ch):
        cond, body, *rest = ch
        orelse = rest.pop() if rest and (rest[-1] is None or rest[-1][0] == "else") else None
        branches = [(cond, body)] + [(c, b) for _, c, b in rest]
        return S.If(self._sp(meta), tuple(branches), orelse[1] if orelse else None)

    def elif_clause(self, meta, ch):
        return ("elif", ch[0], ch[1])

    def else_clause(self, meta, ch):
        return ("else", ch[0])

    def assert_stmt(self, meta, ch):
        cond, msg = ch   # the message: any expression, evaluated only when the assertion fails
        return S.Assert(self._sp(meta), cond, msg)

    # ---- expressions ----
    def if_expr(self, meta, ch):
        return S.IfExpr(self._sp(meta), *ch)

    def pipe(self, meta, ch):
        lhs, stage = ch
        label, name, args, span = stage
        pos, kw = args
        # the call's span is its stage (`-> bn1: bn`), so errors point at the failing stage
        return S.Call(span, str(name), (lhs,) + pos, kw, label, _span_of_token(self.file, name))

    def pipe_stage(self, meta, ch):
        # `[_label ":"]` inlines its token, so an unlabelled stage has two children
        label, name, args = ch if len(ch) == 3 else (None, *ch)
        return (self._label(label), name, args if args is not None else ((), ()), self._sp(meta))

    def _label(self, tok):
        """NAME -> str; STRING -> str, or Label when it has {expr} parts."""
        if tok is None:
            return None
        if tok.type == "NAME":
            return str(tok)
        text = _decode_string(tok, self.file)
        span = _span_of_token(self.file, tok)
        parts, i = [], 0
        while i < len(text):
            j = text.find("{", i)
            if j < 0:
                parts.append(text[i:])
                break
            k = text.find("}", j)
            if k < 0:
                raise ArchError("unclosed '{' in label", span, hint='e.g. "block{b + 1}"')
            if j > i:
                parts.append(text[i:j])
            try:
                parts.append(parse_expression(text[j + 1:k], self.file))
            except ArchError as err:
                raise ArchError(f"in label: {err.message}", span) from None
            i = k + 1
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
        return S.Label(span, tuple(parts))

    def _binop(self, meta, op, l, r):
        return S.BinOp(self._sp(meta), op, l, r)

    def or_op(self, meta, ch):
        return self._binop(meta, "or", ch[0], ch[1])

    def and_op(self, meta, ch):
        return self._binop(meta, "and", ch[0], ch[1])

    def not_op(self, meta, ch):
        return S.UnaryOp(self._sp(meta), "not", ch[0])

    def compare(self, meta, ch):
        return self._binop(meta, str(ch[1]), ch[0], ch[2])

    def in_op(self, meta, ch):
        return self._binop(meta, "in", ch[0], ch[1])

    def not_in_op(self, meta, ch):
        return self._binop(meta, "not in", ch[0], ch[1])

    def binop(self, meta, ch):
        return self._binop(meta, str(ch[1]), ch[0], ch[2])

    def pow_op(self, meta, ch):
        return self._binop(meta, "**", ch[0], ch[2])

    def neg(self, meta, ch):
        return S.UnaryOp(self._sp(meta), "-", ch[0])

    def index(self, meta, ch):
        return S.Index(self._sp(meta), ch[0], ch[1])

    def slice(self, meta, ch):
        return S.Slice(self._sp(meta), ch[0], ch[1], ch[2])

    def attr(self, meta, ch):
        return S.Attr(self._sp(meta), ch[0], str(ch[1]))

    def int_lit(self, meta, ch):
        text = str(ch[0])
        if len(text) > 18:
            raise ArchError("integer literal is too large", self._sp(meta),
                            hint=f"integers are limited to magnitude {limits.MAX_INT}")
        return S.Literal(self._sp(meta), int(text))

    def float_lit(self, meta, ch):
        value = float(str(ch[0]))
        if value != value or value in (float("inf"),):
            raise ArchError("number literal is out of range", self._sp(meta))
        return S.Literal(self._sp(meta), value)

    def string_lit(self, meta, ch):
        return S.Literal(self._sp(meta), _decode_string(ch[0], self.file))

    def true_lit(self, meta, ch):
        return S.Literal(self._sp(meta), True)

    def false_lit(self, meta, ch):
        return S.Literal(self._sp(meta), False)

    def none_lit(self, meta, ch):
        return S.Literal(self._sp(meta), None)

    def var(self, meta, ch):
        return S.Var(self._sp(meta), str(ch[0]))

    def list_lit(self, meta, ch):
        return S.ListLit(self._sp(meta), tuple(ch[0] or ()))

    def exprs(self, meta, ch):
        return [c for c in ch if c is not None]

    def call(self, meta, ch):
        name, args = ch
        pos, kw = args if args is not None else ((), ())
        return S.Call(self._sp(meta), str(name), pos, kw, None, _span_of_token(self.file, name))

    def labelled_call(self, meta, ch):
        label, call = ch
        return S.Call(self._sp(meta), call.func, call.args, call.kwargs, self._label(label),
                      call.func_span)

    def args(self, meta, ch):
        pos, kw = [], []
        for a in ch:
            if a is None:
                continue
            if isinstance(a, S.KwArg):
                if any(k.name == a.name for k in kw):
                    raise ArchError(f"keyword argument '{a.name}' given twice", a.span)
                kw.append(a)
            elif kw:
                raise ArchError("positional argument after a keyword argument", a.span,
                                hint="put positional arguments first")
            else:
                pos.append(a)
        return tuple(pos), tuple(kw)

    def kwarg(self, meta, ch):
        return S.KwArg(self._sp(meta), str(ch[0]), ch[1])


def _check_depth(tree: Tree, file: str) -> None:
    """Reject trees nested deeper than MAX_NESTING before any recursive walk."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.MAX_NESTING:
            raise ArchError(f"nesting is too deep (more than {limits.MAX_NESTING} levels)",
                            _span_of_meta(file, node.meta),
                            hint="split the expression or block into named steps")
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1))


_BRACKETS = re.compile(r'[()\[\]{}]|#[^\n]*|"(?:[^"\\\n]|\\.)*"?')


def _check_brackets(text: str, file: str) -> None:
    """Reject brackets nested deeper than MAX_NESTING before parsing (fast, no recursion)."""
    if text.count("(") + text.count("[") + text.count("{") <= limits.MAX_NESTING:
        return
    depth = 0
    for m in _BRACKETS.finditer(text):
        ch = m.group()
        if ch in "([{":
            depth += 1
            if depth > limits.MAX_NESTING:
                pos = m.start()
                line = text.count("\n", 0, pos) + 1
                col = pos - (text.rfind("\n", 0, pos) + 1) + 1
                raise ArchError(f"brackets are nested more than {limits.MAX_NESTING} levels deep",
                                Span(file, line, col, line, col + 1), source=text,
                                hint="split the expression or block into named steps")
        elif ch in ")]}":
            depth = max(depth - 1, 0)


_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[A-Za-z0-9_.]+|\S')


def _check_tokens(text: str, file: str) -> None:
    """Reject sources of more than MAX_TOKENS tokens before parsing (Lark parses some ten
    thousand tokens a second); the count is an upper bound, comments counted as tokens."""
    if len(_TOKENS.findall(text)) <= limits.MAX_TOKENS:
        return
    for k, m in enumerate(_TOKENS.finditer(text)):
        if k == limits.MAX_TOKENS:
            pos = m.start()
            line = text.count("\n", 0, pos) + 1
            col = pos - (text.rfind("\n", 0, pos) + 1) + 1
            raise ArchError(f"the source has more than {limits.MAX_TOKENS} tokens", Span(
                file, line, col, line, col + len(m.group())), source=text,
                hint="the largest bundled network has fewer than 2,000; a list this long is "
                     "better computed, e.g. with range()")


def parse(text: str, file: str = "<string>") -> S.Module:
    """Parse one .arch source into a Module (imports not yet resolved)."""
    if len(text.encode("utf-8", "replace")) > limits.MAX_SOURCE_BYTES:
        raise ArchError(f"file is larger than {limits.MAX_SOURCE_BYTES} bytes", Span(file, 1, 1))
    _check_brackets(text, file)
    _check_tokens(text, file)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise syntax_error(err, text, file) from None
    _check_depth(tree, file)
    try:
        imports, defs = _ToAst(file).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ArchError):
            raise err.orig_exc.with_source(text) from None
        raise
    return S.Module(file, text, imports, defs)


def parse_expression(text: str, file: str = "<-D>") -> S.Node:
    """Parse a standalone expression (used for -D values); spans refer to `text` line 1."""
    if "\n" in text or len(text) > limits.MAX_SOURCE_BYTES:
        raise ArchError("a value must be a single line", Span(file, 1, 1))
    _check_tokens(text, file)
    wrapped = "network _() { _ =\n" + text + "\n}"
    try:
        tree = _lark().parse(wrapped)
    except UnexpectedInput as err:
        base = syntax_error(err, wrapped, file)
        line = base.span.line if base.span else 2
        col = base.span.column if base.span and line == 2 else len(text) + 1
        msg = base.message.replace("'}'", "end of value").replace("end of file", "end of value")
        raise ArchError(msg, Span(file, 1, col), hint=None, source=text) from None
    _check_depth(tree, file)
    try:
        _, defs = _ToAst(file).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ArchError):
            raise err.orig_exc from None
        raise
    return defs[0].body[0].value
