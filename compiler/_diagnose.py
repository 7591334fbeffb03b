"""Syntax-error diagnosis: turn Lark's "unexpected token" into a message a person can act on.

`syntax_error(err, text, file)` names what was expected in words, recognises known mistakes
from the parser's state (`_EXAMPLES`, each checked by tests/test_errors.py), and points at
an unclosed bracket rather than at the token where the parser gave up.
"""
from __future__ import annotations

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import _syntax as S
from .errors import ArchError, Span, source_lines

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


def _misclosed_brace(text: str, end: int):
    """The '{' that indentation says is not closed before text[end]: (line, column, the
    line of the '}' that closed it in its place), or None. A '}' closes the brace opened on
    the line indented as its own; braces opened inside it and still open are not closed
    (a missing inner '}' makes the parser pair the outer '}' with the inner '{')."""
    stack, found = [], None          # stack: (line, column, indent of its line)
    lines = text[:end].split("\n")
    for ln, raw in enumerate(lines, 1):
        indent = len(raw) - len(raw.lstrip(" "))
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch == "#":
                break
            if ch == '"':
                j = i + 1
                while j < len(raw) and raw[j] != '"':
                    j += 2 if raw[j] == "\\" else 1
                i = j + 1
                continue
            if ch == "{":
                stack.append((ln, i + 1, indent))
            elif ch == "}" and stack:
                if stack[-1][2] != indent and any(o[2] == indent for o in stack):
                    while stack[-1][2] != indent:
                        o = stack.pop()
                        found = found or (o[0], o[1], ln)
                stack.pop()
            i += 1
    return found


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


_CHAR_HINTS = {
    ";": "statements end at the end of the line; no ';' is needed",
    "&": "use `and`", "|": "use `or`", "!": "use `not` (or '!=' to compare)",
    "'": 'strings use double quotes: "..."', "`": 'strings use double quotes: "..."',
    "$": None, "?": "a conditional value is written `if c then a else b`",
}



def syntax_error(err: UnexpectedInput, text: str, file: str) -> ArchError:
    """A positioned ArchError for Lark's syntax error `err` in `text`."""
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
            hint = f"the file ends before its '{_PAIRS[ch]}'"
            inner = _misclosed_brace(text, len(text)) if ch == "{" else None
            if inner is not None:
                ch, (oline, ocol, at) = "{", inner
                hint = f"the '}}' at line {at} is indented to close an outer '{{'"
            return ArchError(f"'{ch}' is never closed", Span(file, oline, ocol, oline, ocol + 1),
                             hint=hint, source=text)
        lines = source_lines(text)
        span = Span(file, len(lines), len(lines[-1]) + 1)
        return ArchError(f"unexpected end of file; expected {_describe_expected(expected)}",
                         span, source=text)
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    accepts = set(err.accepts or err.expected or ())
    shown = str(tok) if len(tok) <= 40 else str(tok)[:37] + "..."
    span = Span(file, tok.line, tok.column, tok.end_line, tok.end_column)
    pos = tok.start_pos or 0
    word = _prev_word(text, pos)      # `network N` inside a body lexes `network` as a name
    start = pos - len(text[:pos]) + len(text[:pos].rstrip()) - len(word)
    if str(tok) in ("network", "block", "import") and tok.type not in accepts:
        word, start = str(tok), pos
    opened = _unclosed(text, start)
    if word in ("network", "block", "import") and tok.type not in accepts and \
            text[text.rfind("\n", 0, start) + 1:start].strip() == "" and \
            opened and opened[-1][0] == "{":
        # a definition starts inside a body: a '}' is missing, maybe an inner one
        oline, ocol = opened[-1][1:]
        wline = text.count("\n", 0, start) + 1
        hint = f"expected '}}' before '{word}' at line {wline}"
        inner = _misclosed_brace(text, start)
        if inner is not None:
            oline, ocol, at = inner
            hint = f"the '}}' at line {at} is indented to close an outer '{{'"
        return ArchError("'{' is never closed", Span(file, oline, ocol, oline, ocol + 1),
                         hint=hint, source=text)
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
