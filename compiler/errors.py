"""Positioned diagnostics: every user-facing failure of archc is an ArchError.

An ArchError carries a Span (file, line, column, end) and renders as

    se_sqnxt.arch:12:9: error: unknown layer 'convv'
       12 |     y = convv(x, 64, kernel=3)
          |         ^^^^^
    hint: did you mean 'conv'?

The CLI prints `format()` and exits with status 2; it never shows a traceback.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


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
        where = f"{self.span}: " if self.span else ""
        out = [f"{where}error: {self.message}"]
        excerpt = self._excerpt()
        if excerpt:
            out.append(excerpt)
        out.extend(f"note: {n}" for n in self.notes)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def _excerpt(self) -> str:
        if not self.span or not self.source:
            return ""
        lines = self.source.splitlines()
        if not 1 <= self.span.line <= len(lines):
            return ""
        text = lines[self.span.line - 1].expandtabs(1)
        start = max(self.span.column, 1)
        if self.span.end_line == self.span.line and self.span.end_column:
            width = max(self.span.end_column - start, 1)
        else:
            width = 1
        width = min(width, max(len(text) - start + 1, 1))
        num = str(self.span.line)
        pad = " " * len(num)
        return f" {num} | {text}\n {pad} | {' ' * (start - 1)}{'^' * width}"

    def __str__(self) -> str:
        return self.format()


def did_you_mean(name: str, candidates) -> str | None:
    """A 'did you mean' hint, or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
