r"""Positioned diagnostics: every user-facing failure of archc is an ArchError.

An ArchError carries a Span (file, line, column, end) and renders as

    se_sqnxt.arch:12:9: error: unknown layer 'convv'
       12 |     y = convv(x, 64, kernel=3)
          |         ^^^^^
    hint: did you mean 'conv'?

The CLI prints `format()` and exits with status 2; it never shows a traceback.

What is printed is bounded and exact: the excerpt is the line as the lexer counts lines
(`source_lines`: only "\n" ends one), cut to a window of about EXCERPT_WIDTH columns around
the caret; characters a terminal would act on (controls, escapes, bidi overrides, line
separators, undecodable bytes) are shown as `\x1b`, `\u202e` ...; every line of the
message, hint and notes is cut at MAX_LINE characters.
"""
from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass

EXCERPT_WIDTH = 100   # columns of source shown around the caret
MAX_LINE = 1000       # characters of one line of a message, hint or note
MAX_NAME = 100        # names longer than this get no "did you mean" (difflib is quadratic)


@dataclass(frozen=True)
class Span:
    """A region of source text; lines and columns count from 1."""

    file: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ArchError(Exception):
    """A user error in an .arch file, a -D value or a spec: positioned and with a hint."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None,
                 source: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.source = source  # full text of span.file, for the excerpt
        self.notes: list[str] = []  # "while expanding block ..." trail

    def with_source(self, source: str | None) -> "ArchError":
        if self.source is None:
            self.source = source
        return self

    def format(self) -> str:
        where = f"{printable(str(self.span))}: " if self.span else ""
        out = [f"{where}error: {_lines(self.message)}"]
        excerpt = self._excerpt()
        if excerpt:
            out.append(excerpt)
        out.extend(f"note: {_lines(n)}" for n in self.notes)
        if self.hint:
            out.append(f"hint: {_lines(self.hint)}")
        return "\n".join(out)

    def _excerpt(self) -> str:
        if not self.span or not self.source:
            return ""
        line = source_line(self.source, self.span.line)
        if line is None:
            return ""
        start = max(self.span.column, 1)
        if self.span.end_line == self.span.line and self.span.end_column:
            end = max(self.span.end_column, start + 1)
        else:
            end = start + 1
        text, caret = excerpt_line(line, start - 1, end - 1)
        num = str(self.span.line)
        pad = " " * len(num)
        return f" {num} | {text}\n {pad} | {caret}"

    def __str__(self) -> str:
        return self.format()


def source_lines(text: str) -> list[str]:
    """The lines of a source as the lexer numbers them: only "\n" ends a line (a form feed
    or U+2028 does not, unlike str.splitlines); a trailing "\r" is not shown."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def source_line(text: str, number: int) -> str | None:
    """Line `number` (from 1) of `text`, without splitting all of it; None if out of range."""
    if number < 1:
        return None
    start = 0
    for _ in range(number - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return None
    end = text.find("\n", start)
    line = text[start:] if end < 0 else text[start:end]
    return line[:-1] if line.endswith("\r") else line


def printable(text: str) -> str:
    r"""`text` with every character a terminal would act on or not show written as an escape:
    controls (\x1b ...), format characters (bidi overrides, zero-width), line and paragraph
    separators, and undecodable bytes (surrogate escapes, shown as the byte \xNN)."""
    if text.isprintable():
        return text
    return "".join(_char(c) for c in text)


def _char(c: str) -> str:
    if c.isprintable() or c == " ":
        return c
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8 (decoded with surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def _width(text: str) -> int:
    """Terminal columns of printable text: wide (CJK) characters take two, combining none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def excerpt_line(line: str, start: int, end: int) -> tuple[str, str]:
    """(shown text, caret line) for characters line[start:end], at most about EXCERPT_WIDTH
    columns around them; tabs count as one space, as in the column numbers."""
    start = min(start, len(line))
    end = min(max(end, start + 1), max(len(line), start + 1))
    lo = max(0, start - EXCERPT_WIDTH // 2)
    hi = min(len(line), max(end, lo + EXCERPT_WIDTH))
    hi = min(hi, start + EXCERPT_WIDTH)  # a long span is cut, not the window widened
    prefix = "..." if lo > 0 else ""
    suffix = "..." if hi < len(line) else ""

    def shown(s: str) -> str:
        return printable(s.replace("\t", " "))

    before = prefix + shown(line[lo:start])
    marked = shown(line[start:min(end, hi)])
    text = before + marked + shown(line[min(end, hi):hi]) + suffix
    caret = " " * _width(before) + "^" * max(_width(marked), 1)
    return text, caret


def _lines(text: str) -> str:
    """A message, hint or note: each line made printable and cut at MAX_LINE characters."""
    out = []
    for ln in str(text).split("\n"):
        if len(ln) > MAX_LINE:
            ln = ln[:MAX_LINE] + f"... ({len(ln) - MAX_LINE} more characters)"
        out.append(printable(ln))
    return "\n".join(out)


def did_you_mean(name: str, candidates) -> str | None:
    """A 'did you mean' hint, or None when nothing is close."""
    if len(name) > MAX_NAME:
        return None
    candidates = [c for c in set(candidates) if len(c) <= MAX_NAME]
    close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
