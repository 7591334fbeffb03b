"""Source text -> AST (compiler/_syntax.py), with friendly, positioned syntax errors.

Lark parses with LALR(1) and `propagate_positions`; a Transformer turns the tree into
frozen dataclass nodes that carry a Span. Syntax errors are matched against a few
known mistakes (`match_examples`) to give a clearer message than "unexpected token".
"""
from __future__ import annotations

import functools
import re
from importlib import resources

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import limits
from . import _syntax as S
from .errors import ArchError, Span


@functools.lru_cache(maxsize=None)
def grammar_text() -> str:
    return resources.files("archc.grammar").joinpath("arch.lark").read_text()


def _cache_file(start: str):
    """Where Lark keeps the built LALR tables between runs (a per-user cache directory).

    Building the tables takes ~0.2-0.3 s, most of a short `archc` run. Lark keys the file
    on a hash of the grammar, the options and its own version, and rebuilds (and rewrites)
    it on any mismatch. ARCHC_NO_CACHE=1, or a directory that cannot be created, disables it.
    """
    import os
    from pathlib import Path
    if os.environ.get("ARCHC_NO_CACHE"):
        return False
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        d = Path(base) / "archc"
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return False
    return str(d / f"grammar-{start}.lark-cache")


@functools.lru_cache(maxsize=None)
def _lark(start: str = "start") -> Lark:
    return Lark(grammar_text(), parser="lalr", propagate_positions=True,
                maybe_placeholders=True, start=start, cache=_cache_file(start))


# Human names for the grammar's terminals, used in "expected ..." messages.
_TERMINALS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'",
    "RBRACE": "'}'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "DOT": "'.'",
    "MINUS": "'-'", "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/', '//' or '%'",
    "POW": "'**'", "COMP_OP": "a comparison", "__ANON_0": "'->'", "$END": "end of file",
}
# Tokens that continue an expression (binary operators, '.', '[', '->' ...): collapsed into
# "an operator" so that messages list what matters (',', ')', '{' ...).
_OPERATORS = {"ADD_OP", "MUL_OP", "POW", "COMP_OP", "AND", "OR", "__ANON_0", "DOT", "LSQB"}
# Tokens that can start a value.
_VALUE_START = {"NAME", "INT", "FLOAT", "STRING", "LSQB", "LPAR", "TRUE", "FALSE", "NONE",
                "NOT", "MINUS", "ADD_OP", "IF"}
_STATEMENT_START = {"NAME", "RETURN", "FOR", "IF", "ASSERT"}
_TOP_LEVEL = {"BLOCK", "NETWORK", "IMPORT"}
_CLOSERS = {"RPAR": "(", "RSQB": "[", "RBRACE": "{"}
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _describe_expected(expected) -> str:
    expected = set(expected)
    names = []
    if len(expected & _OPERATORS) >= 3:
        names.append("an operator")
        expected -= _OPERATORS
        expected.discard("LPAR")  # a call's '(' after a name
        expected.discard("COLON")  # a label's ':' after a name
    if len(expected & _VALUE_START) >= 4:
        names.append("a value")
        expected -= _VALUE_START
    for t in sorted(expected):
        if t in _TERMINALS:
            names.append(_TERMINALS[t])
        elif t.isupper() and t.isalpha() and not t.startswith("__"):
            names.append(f"'{t.lower()}'")  # keywords: IF -> 'if'
        else:
            names.append(t.lower())
    names = list(dict.fromkeys(names))
    if len(names) > 8:
        names = names[:8] + ["..."]
    if len(names) > 1:
        return ", ".join(names[:-1]) + " or " + names[-1]
    return names[0] if names else "nothing"


# Known mistakes -> (message, hint).  `_diagnose` recognises each from the parser's state
# (the unexpected token and the set of tokens it would accept), which, unlike Lark's
# match_examples, does not depend on how deeply the mistake is nested.  Every example
# here is checked by tests/test_errors.py to produce exactly its message.
_EXAMPLES = {
    "missing ',' between arguments": [
        "network N() { x = f(a b) }", "network N() { x = f(a, 16 kernel=3) }",
        "network N() { x = f(a, k=1 b) }", 'network N() { x = f(g(a) "s") }',
    ],
    "missing ',' between list items": [
        "network N() { x = [1 2] }", "network N() { x = [a, b c] }",
    ],
    "missing ',' between parameters": [
        "network N(a: int b: int) { }", "block b(x: tensor, a: int = 1 c: int) { }",
    ],
    "'=' assigns a value; to compare, use '=='": [
        "network N() { if a = 1 { } }", "network N() { x = if a = 1 then 2 else 3 }",
        "network N() { assert a + 1 = 2 }", "network N() { if f(a) = 2 { } }",
    ],
    "a statement cannot be a bare expression; assign its value": [
        "network N() { f(x) }", "network N() { x -> relu }",
    ],
    "expected a statement: `name = value`, `return`, `for`, `if` or `assert`": [
        "network N() { 1 }", 'network N() { x = 1\n "s" }', "network N() { [x] }",
    ],
    "'while' is not part of the language": [
        "network N() { while a { } }",
    ],
    "missing '{' to open the body": [
        "network N() x = 1 }", "block b(x: tensor) return x }",
        "network N() { for i in range(3) x = 1 } }",
    ],
    "no ':' before a body; open it with '{'": [
        "network N() { for i in range(3): { } }", "network N() { if a: { } }",
    ],
    "use `elif` for 'else if'": [
        "network N() { if a { } else if b { } }",
    ],
    "expected `block`, `network` or `import` at the top level": [
        "def f() { }", "x = 1",
    ],
    "unmatched '}'": [
        "network N() { } }",
    ],
    "unmatched ')'": [
        "network N() { x = f(a)) }",
    ],
    "a parameter needs a type: `name: type`": [
        "network N(a int) { }", "block b(x) { }",
    ],
    "missing '()' after the name": [
        "network N { }",
    ],
}


def _unclosed(text: str, end: int) -> list:
    """Brackets opened before text[end] and not closed: [(char, line, column), ...]."""
    stack, line, col, i = [], 1, 1, 0
    n = min(end, len(text))
    while i < n:
        ch = text[i]
        if ch == "#":
            j = text.find("\n", i, n)
            j = n if j < 0 else j
            col += j - i
            i = j
            continue
        if ch == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n) if j < n and text[j] == '"' else j
            col += j - i
            i = j
            continue
        if ch == "\n":
            line, col = line + 1, 1
            i += 1
            continue
        if ch in _PAIRS:
            stack.append((ch, line, col))
        elif ch in ")]}" and stack and _PAIRS[stack[-1][0]] == ch:
            stack.pop()
        i += 1
        col += 1
    return stack


def _prev_word(text: str, pos: int) -> str:
    before = text[:pos].rstrip()
    k = len(before)
    while k and (before[k - 1].isalnum() or before[k - 1] == "_"):
        k -= 1
    return before[k:]


def _diagnose(tok: Token, accepts: set, text: str):
    """(message, hint, span-override) for a known mistake, or None."""
    t = tok.type
    pos = tok.start_pos or 0
    opened = _unclosed(text, pos)
    prev = text[:pos].rstrip()
    prev_char = prev[-1:] if prev else ""
    newline_before = "\n" in text[len(prev):pos]
    if t == "EQUAL" and "COMP_OP" in accepts:
        return "'=' assigns a value; to compare, use '=='", None, None
    if t in _CLOSERS and t not in accepts:
        if not any(o[0] == _CLOSERS[t] for o in opened):
            return f"unmatched '{tok}'", f"no '{_CLOSERS[t]}' is open here", None
        if opened[-1][0] != _CLOSERS[t]:
            return None  # another bracket is open inside: the caller reports it
    if opened and t not in accepts and (newline_before or t in _CLOSERS) and \
            opened[-1][0] in "([" and _PAIRS[opened[-1][0]] not in (str(tok),):
        return None  # reported as an unclosed bracket by the caller
    if t in _VALUE_START and "COMMA" in accepts and ("RPAR" in accepts or "RSQB" in accepts):
        if "RSQB" in accepts and "RPAR" not in accepts:
            return "missing ',' between list items", None, None
        if opened and re.search(r"\b(block|network)\s+[A-Za-z_]\w*\s*$",
                                text[:_offset(text, opened[-1][1], opened[-1][2])]):
            return "missing ',' between parameters", None, None
        return "missing ',' between arguments", None, None
    if accepts == {"COLON", "COMMA", "EQUAL"}:
        word = _prev_word(text, pos)
        c = len(prev) - len(word)
        wline = text.count("\n", 0, c) + 1
        wcol = c - (text.rfind("\n", 0, c) + 1) + 1
        where = (wline, wcol, wline, wcol + max(len(word), 1))
        if word == "while":
            return ("'while' is not part of the language", "repeat with a loop over a list: "
                    "`for i in range(n) { ... }`", where)
        if t in ("LPAR", "__ANON_0", "LSQB", "DOT") or t in {"ADD_OP", "MUL_OP", "POW", "COMP_OP"}:
            return ("a statement cannot be a bare expression; assign its value",
                    f"e.g. `y = {word}{'(...)' if t == 'LPAR' else ' ...'}`", where)
        return None
    if _STATEMENT_START <= accepts and t not in accepts:
        hint = "comments start with '#'" if str(tok) in ("//", "/") else None
        return "expected a statement: `name = value`, `return`, `for`, `if` or `assert`", hint, None
    if "LBRACE" in accepts and t not in accepts:
        if t == "IF" and _prev_word(text, pos) == "else":
            return "use `elif` for 'else if'", "if a { ... } elif b { ... } else { ... }", None
        if t == "COLON":
            return "no ':' before a body; open it with '{'", None, None
        if t not in _OPERATORS | {"EQUAL", "LPAR"}:
            return "missing '{' to open the body", None, None
    if t == "LBRACE" and prev_char == ":" and "NAME" in accepts:
        c = len(prev) - 1
        line = text.count("\n", 0, c) + 1
        col = c - (text.rfind("\n", 0, c) + 1) + 1
        return "no ':' before a body; open it with '{'", None, (line, col, line, col + 1)
    if _TOP_LEVEL <= accepts:
        if t == "RBRACE":
            return "unmatched '}'", "no '{' is open here", None
        return ("expected `block`, `network` or `import` at the top level",
                "statements belong inside a `network Name(...) { ... }` or `block` body", None)
    if accepts == {"COLON"} and t != "COLON":
        return "a parameter needs a type: `name: type`", "types are " + ", ".join(S.TYPES), None
    if accepts == {"LPAR"} and t == "LBRACE":
        return "missing '()' after the name", "e.g. `network Name() { ... }`", None
    return None


def _offset(text: str, line: int, col: int) -> int:
    off = 0
    for _ in range(line - 1):
        off = text.index("\n", off) + 1
    return off + col - 1


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
        cond, msg = ch
        return S.Assert(self._sp(meta), cond, _decode_string(msg, self.file) if msg is not None else None)

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

    def binop(self, meta, ch):
        return self._binop(meta, str(ch[1]), ch[0], ch[2])

    def pow_op(self, meta, ch):
        return self._binop(meta, "**", ch[0], ch[2])

    def neg(self, meta, ch):
        return S.UnaryOp(self._sp(meta), "-", ch[0])

    def index(self, meta, ch):
        return S.Index(self._sp(meta), ch[0], ch[1])

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


_CHAR_HINTS = {
    ";": "statements end at the end of the line; no ';' is needed",
    "&": "use `and`", "|": "use `or`", "!": "use `not` (or '!=' to compare)",
    "'": 'strings use double quotes: "..."', "`": 'strings use double quotes: "..."',
    "$": None, "?": "a conditional value is written `if c then a else b`",
}


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


def _syntax_error(err: UnexpectedInput, text: str, file: str, start: str) -> ArchError:
    line, col = getattr(err, "line", 1), getattr(err, "column", 1)
    if line is None or line < 1:
        line, col = text.count("\n") + 1, len(text.rsplit("\n", 1)[-1]) + 1
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else "?"
        span = Span(file, line, col, line, col + 1)
        if ch == '"':
            return ArchError("unterminated string", span,
                             hint="a string ends with '\"' on the same line", source=text)
        hint = _CHAR_HINTS.get(ch)
        if ch == "/" or (ch == "*" and text[err.pos_in_stream - 1:err.pos_in_stream] == "/"):
            hint = "comments start with '#'"
        return ArchError(f"unexpected character {ch!r}", span, hint=hint, source=text)
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        expected = getattr(err, "expected", None) or getattr(err, "accepts", None) or set()
        opened = _unclosed(text, len(text))
        if opened:
            ch, oline, ocol = opened[-1]
            return ArchError(f"'{ch}' is never closed", Span(file, oline, ocol, oline, ocol + 1),
                             hint=f"the file ends before its '{_PAIRS[ch]}'", source=text)
        lines = text.splitlines() or [""]
        span = Span(file, len(lines), len(lines[-1]) + 1)
        return ArchError(f"unexpected end of file; expected {_describe_expected(expected)}",
                         span, source=text)
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    accepts = set(err.accepts or err.expected or ())
    shown = str(tok)
    span = Span(file, tok.line, tok.column, tok.end_line, tok.end_column)
    found = _diagnose(tok, accepts, text)
    if found is None:
        opened = _unclosed(text, tok.start_pos or 0)
        if opened and tok.type not in accepts and opened[-1][0] in "([":
            ch, oline, ocol = opened[-1]
            return ArchError(f"'{ch}' is never closed", Span(file, oline, ocol, oline, ocol + 1),
                             hint=f"expected '{_PAIRS[ch]}' before {shown!r} at line {tok.line}, "
                                  f"column {tok.column}", source=text)
        msg = f"unexpected {shown!r}; expected {_describe_expected(accepts)}"
        return ArchError(msg, span, source=text)
    msg, hint, where = found
    if where is not None:
        span = Span(file, *where)
    return ArchError(msg, span, hint=hint, source=text)


def parse(text: str, file: str = "<string>") -> S.Module:
    """Parse one .arch source into a Module (imports not yet resolved)."""
    if len(text.encode("utf-8", "replace")) > limits.MAX_SOURCE_BYTES:
        raise ArchError(f"file is larger than {limits.MAX_SOURCE_BYTES} bytes", Span(file, 1, 1))
    _check_brackets(text, file)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text, file, "start") from None
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
    wrapped = "network _() { _ =\n" + text + "\n}"
    try:
        tree = _lark().parse(wrapped)
    except UnexpectedInput as err:
        base = _syntax_error(err, wrapped, file, "start")
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
