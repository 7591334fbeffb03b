"""Finding and loading .arch files: paths, bundled names, imports and -D values."""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import _syntax as S
from . import limits
from ._builtins import BUILTINS, TENSOR_FUNCTIONS
from ._elaborate import elaborate
from ._parser import parse, parse_expression
from ._values import check_int, make_list, plain
from .errors import ArchError, Span, did_you_mean, printable
from .ir import Network
from . import ops


def library_dir() -> Path:
    """The bundled network library (archs/), shipped as package data."""
    return Path(str(resources.files("archc.archs")))


def bundled_networks() -> list[str]:
    return sorted(p.stem for p in library_dir().glob("*.arch"))


def resolve(target: str) -> Path:
    """A path wins over a bundled name; `se_sqnxt` and `se_sqnxt.arch` both name a bundled file."""
    p = Path(target)
    if p.is_file():
        return p
    name = p.name if p.suffix == ".arch" else p.name + ".arch"
    if p.parent == Path(".") or str(p.parent) in ("", "."):
        candidate = library_dir() / name
        if candidate.is_file():
            return candidate
    names = bundled_networks()
    hint = did_you_mean(p.stem, names) or ("bundled networks: " + ", ".join(names) if names else None)
    raise ArchError(f"no such file or bundled network: '{target}'", None, hint=hint)


def _read(path: Path, span: Span | None) -> str:
    """A source file's text: at most MAX_SOURCE_BYTES read (whatever its size claims), a
    UTF-8 byte-order mark dropped, an invalid byte reported at its line and column."""
    display = _display(path)
    try:
        with open(path, "rb") as f:
            data = f.read(limits.MAX_SOURCE_BYTES + 1)
    except OSError as err:
        raise ArchError(f"cannot read '{display}': {err.strerror or err}", span) from None
    if len(data) > limits.MAX_SOURCE_BYTES:
        raise ArchError(f"'{display}' is larger than {limits.MAX_SOURCE_BYTES} bytes",
                        span or Span(display, 1, 1))
    return decode_source(data, display)


def decode_source(data: bytes, display: str) -> str:
    """UTF-8 bytes -> text (a leading byte-order mark dropped); an invalid byte is an error
    positioned at its own line and column, its line shown with the byte escaped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        text = data.decode("utf-8", "surrogateescape")  # the excerpt shows bytes as \xNN
        line = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        col = len(data[line_start:err.start].decode("utf-8", "replace")) + 1
        bad = data[err.start:err.end]
        raise ArchError(f"'{display}' is not UTF-8 text: byte {bad[:1].hex()} at line {line}, "
                        f"column {col} cannot be decoded", Span(display, line, col, line,
                                                                col + len(bad)),
                        hint="save the file as UTF-8", source=text) from None


class Program:
    """A main file and everything it imports: its definitions, ready to elaborate."""

    def __init__(self, main: S.Module, modules: list, blocks: dict, sources: dict,
                 notes: list | None = None):
        self.main = main
        self.modules = modules
        self.blocks = blocks
        self.sources = sources
        # "file:line:col: ..." for the user, one per block that shadows a built-in (a block
        # defined in a file takes precedence, so that adding built-ins never breaks a file)
        self.notes = list(notes or ())

    @property
    def network_def(self) -> S.Definition:
        nets = [d for d in self.main.definitions if d.kind == "network"]
        if not nets:
            raise ArchError(f"'{self.main.file}' defines no network", Span(self.main.file, 1, 1),
                            hint="add: network Name(...) { x = input(3, 32, 32) ... return x }")
        if len(nets) > 1:
            raise ArchError(f"'{self.main.file}' defines {len(nets)} networks; one file holds one",
                            nets[1].span, hint="move the others into files of their own")
        return nets[0]

    def doc(self) -> str:
        """The comment lines directly above the network definition, else the file's
        leading comment block."""
        d = self.network_def
        lines = self.main.source.splitlines()
        above = []
        for line in reversed(lines[: d.span.line - 1]):
            s = line.strip()
            if not s.startswith("#"):
                break
            above.append(s.lstrip("#").strip())
        if above:
            return " ".join(reversed(above)).strip()
        lead = []
        for line in lines:
            s = line.strip()
            if not s.startswith("#"):
                break
            lead.append(s.lstrip("#").strip())
        return " ".join(lead).strip()


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)


def load_program(target: str | os.PathLike | None = None, *, source: str | None = None,
                 filename: str = "<string>") -> Program:
    """Parse a file (or source text) and all its imports."""
    sources: dict[str, str] = {}
    modules: list[S.Module] = []
    blocks: dict[str, S.Definition] = {}
    notes: list[str] = []
    seen: set[str] = set()

    def load(path: Path | None, text: str, display: str, span: Span | None) -> S.Module:
        sources[display] = text
        try:
            mod = parse(text, display)
        except ArchError as err:
            raise err.with_source(sources.get(err.span.file if err.span else display)) from None
        modules.append(mod)
        base = path.parent if path is not None else Path.cwd()
        for imp in mod.imports:
            target_path = _find_import(imp, base)
            key = str(target_path.resolve())
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > limits.MAX_IMPORTS:
                raise ArchError(f"more than {limits.MAX_IMPORTS} files imported", imp.span)
            sub = load(target_path, _read(target_path, imp.span), _display(target_path), imp.span)
            for d in sub.definitions:
                if d.kind == "network":
                    raise ArchError(f"imported file '{sub.file}' defines a network; imported "
                                    f"files may define blocks only", d.span)
        for d in mod.definitions:
            if d.kind != "block":
                continue
            if d.name in blocks:
                raise ArchError(f"block '{d.name}' is already defined at {blocks[d.name].span}", d.span)
            blocks[d.name] = d
            if d.name in ops.REGISTRY or d.name in BUILTINS or d.name in TENSOR_FUNCTIONS:
                notes.append(f"{d.span.file}:{d.span.line}:{d.span.column}: block '{d.name}' "
                             f"has the name of a built-in layer or function; in this program "
                             f"'{d.name}(...)' calls the block")
        return mod

    try:
        if source is not None:
            main = load(None, source.removeprefix("\ufeff"), filename, None)
        else:
            path = resolve(str(target))
            seen.add(str(path.resolve()))
            main = load(path, _read(path, None), _display(path), None)
    except ArchError as err:
        if err.span and err.source is None:
            err.source = sources.get(err.span.file)
        raise
    return Program(main, modules, blocks, sources, notes)


def _find_import(imp: S.Import, base: Path) -> Path:
    """The file an import names: `imp.path` under the importing file's folder, else under the
    bundled library. The rule "relative and inside the folder" is applied to the real path,
    after every symbolic link is resolved, so that no link can lead an import elsewhere."""
    rel = Path(imp.path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ArchError(f"import path '{imp.path}' must be relative and stay inside its folder",
                        imp.span, hint='e.g. import "std/se.arch"')
    for root in (base, library_dir()):
        p = root / rel
        if not p.is_file():
            continue
        real, top = p.resolve(), root.resolve()
        if not real.is_relative_to(top):
            where = "the importing file's folder" if root == base else "the bundled library"
            raise ArchError(f"import '{imp.path}' leads outside {where} through a symbolic "
                            f"link (to '{real}')", imp.span,
                            hint="imports stay inside the importing file's folder (or the "
                                 "bundled library), links included: copy the file here")
        return real
    std = sorted(f"std/{p.name}" for p in (library_dir() / "std").glob("*.arch"))
    raise ArchError(f"cannot find '{imp.path}' next to this file or in the bundled library", imp.span,
                    hint=did_you_mean(imp.path, std) or "bundled: " + ", ".join(std))


def define_text(text: str) -> str:
    """`-D name=value` as errors show it: spaces around the name and the value removed."""
    if "=" not in text:
        return "-D " + text.strip()
    name, value = text.split("=", 1)
    return f"-D {name.strip()}={value.strip()}"


def parse_define(text: str) -> tuple[str, object, Span]:
    """`name=value` from the command line -> (name, value, span). Values are literals.

    Spans refer to define_text(text), which errors show as the excerpt: `<-D>:1:col`.
    """
    display = define_text(text)
    if "=" not in text:
        name = text.strip()
        raise ArchError(f"-D expects name=value, got '{name}'", Span("<-D>", 1, 4, 1, 4 + max(len(name), 1)),
                        hint=f"e.g. -D {name if name.isidentifier() else 'width'}=0.5", source=display)
    name, value = (part.strip() for part in text.split("=", 1))
    offset = len("-D ") + len(name) + 2  # column of the value's first character
    if not name.isidentifier():
        raise ArchError(f"'{name}' is not a parameter name", Span("<-D>", 1, 4, 1, 4 + max(len(name), 1)),
                        source=display)
    if not value:
        raise ArchError(f"-D {name}= has no value", Span("<-D>", 1, offset - 1, 1, offset),
                        hint=f"e.g. -D {name}=1", source=display)
    span = Span("<-D>", 1, offset, 1, offset + len(value))
    try:
        expr = parse_expression(value)
    except ArchError as err:
        if "never closed" in err.message or "string" in err.message:   # the parser's point
            col = offset + ((err.span.column - 1) if err.span else 0)
            raise ArchError(f"parameter '{name}': {err.message}",
                            Span("<-D>", 1, col, 1, col + 1), hint=err.hint or LITERALS,
                            source=display) from None
        raise ArchError(f"parameter '{name}': '{printable(value)}' is not a literal value", span,
                        hint=_literal_hint(name, value), source=display) from None
    try:
        v = _literal(expr)
    except ValueError as err:  # a list over the limits
        raise ArchError(str(err), span, source=display) from None
    except ArchError as err:
        bare = value.replace("_", "a").isalnum() and not value[0].isdigit()
        hint = (f'a bare word is a name, not a string; quote it: -D {name}="{value}"' if bare else
                "-D values are not evaluated; give the value itself, e.g. 64 or [1, 2, 8, 1]")
        raise ArchError(f"parameter '{name}': {err.message}", span, hint=hint,
                        source=display) from None
    return name, v, span


LITERALS = ('a -D value is a literal: a number (-D width=0.5), true or false, a "string" '
            '(-D act="relu") or a [list] (-D stages=[1, 2, 8, 1])')


def _literal_hint(name: str, value: str) -> str:
    """The literal the user probably meant, written as -D takes it."""
    import re
    if "," in value and not value.lstrip().startswith("["):
        return f"a list is written in brackets: -D {name}=[{printable(value)}]"
    words = value.split()
    if len(words) > 1 and all(re.fullmatch(r"[-+]?[\d.]+", w) for w in words):
        return f"a list is written in brackets, with commas: -D {name}=[{', '.join(words)}]"
    number = re.match(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value)
    if number and number.end() < len(value):
        return (f"a number is written alone, without a unit or suffix: "
                f"-D {name}={number.group(0)}")
    return LITERALS


def _literal(e):
    if isinstance(e, S.Literal):
        return e.value
    if isinstance(e, S.ListLit):
        return make_list(_literal(i) for i in e.items)
    if isinstance(e, S.UnaryOp) and e.op == "-" and isinstance(e.operand, S.Literal) and \
            type(e.operand.value) in (int, float):
        return -e.operand.value
    raise ArchError("a -D value must be a literal: a number, true/false, a \"string\" or a [list]",
                    e.span)


@dataclass(frozen=True)
class KeywordSpan(Span):
    """Where a value given from Python stands: a keyword argument, not a place in a file."""

    keyword: str = ""


def build(program: Program, overrides: dict | None = None, caller: str = "archc") -> Network:
    """Elaborate the program's network with parameter overrides {name: value | (value, span)}.

    Values without a span come from Python keyword arguments of `caller`: they are checked
    and converted here, and an error about one names its keyword instead of a position."""
    ov = {}
    try:
        for k, v in (overrides or {}).items():
            if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], Span):
                ov[k] = v
            else:
                span = KeywordSpan(f"<keyword {k}>", 1, 1, keyword=k)
                try:
                    ov[k] = (_pyvalue(v, 1), span)
                except (TypeError, ValueError, OverflowError) as err:
                    raise ArchError(str(err), span) from None
        net = elaborate(program.network_def, program.blocks, program.sources, ov)
    except ArchError as err:
        if isinstance(err.span, KeywordSpan):
            err = ArchError(f"{caller}: keyword argument '{err.span.keyword}': {err.message}",
                            None, hint=err.hint)
        elif err.span and err.source is None:
            err.source = program.sources.get(err.span.file)
        raise err from None
    net.params = {k: plain(v) for k, v in net.params.items()}
    net.notes = tuple(program.notes)
    net.program = program
    for scope in net.scopes.values():
        scope.args = {k: plain(v) for k, v in scope.args.items()}
    net.doc = program.doc()
    return net


def _pyvalue(v, depth: int):
    """A Python value given as a keyword argument -> a language value, checked like one the
    language computes: lists (bounded) become list values, numbers stay within the limits."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, numbers.Integral):
        return check_int(int(v))
    if isinstance(v, numbers.Real):
        if not math.isfinite(v):
            raise ValueError(f"{v!r} is not a finite number")
        return float(v)
    if isinstance(v, str):
        if len(v) > limits.MAX_STRING:
            raise ValueError(f"string longer than {limits.MAX_STRING} characters")
        return v
    if isinstance(v, (list, tuple)):
        if depth > limits.MAX_LIST_DEPTH:
            raise ValueError(f"lists nested more than {limits.MAX_LIST_DEPTH} levels deep")
        if len(v) > limits.MAX_LIST:
            raise ValueError(f"list longer than {limits.MAX_LIST} elements")
        return make_list(_pyvalue(x, depth + 1) for x in v)
    raise TypeError(f"{type(v).__name__} is not a value of the language (int, float, bool, "
                    "str, None, or a list of them)")
