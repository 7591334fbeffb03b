"""Fuzzing the compile path: whatever the input, archc either succeeds or raises an ArchError
whose format() starts with `file:line:col: error:` -- never any other exception.

Inputs: random text, token soups from the grammar's vocabulary, and mutations (delete,
duplicate, swap, insert characters or tokens) of the bundled archs/*.arch and archs/std/*.arch.

Issue 12 adds a mutation operator per class of hostile input (costly values, non-finite
numbers, odd source characters and bytes, Python keyword values, output paths, import
links) and the property that no input ends in exit 70 or takes more than CASE_SECONDS
(an alarm turns a slow case into a failure; a hard timer ends a hung test run).
"""
from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import re
import signal
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc import _cli
from archc.compiler import ArchError, library_dir, load_program
from archc.compiler._loader import build

POSITIONED = re.compile(r"^[^\n]+:\d+:\d+: error: ")
ARCHS = sorted(library_dir().glob("*.arch")) + sorted((library_dir() / "std").glob("*.arch"))
SOURCES = {p.name if p.parent == library_dir() else f"std/{p.name}": p.read_text() for p in ARCHS}

VOCAB = ["network", "block", "import", "return", "for", "in", "if", "elif", "else", "then",
         "assert", "and", "or", "not", "true", "false", "none", "(", ")", "[", "]", "{", "}",
         ",", ":", "=", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "//", "%", "**",
         "->", ".", "\n", " ", "x", "y", "N", "b", "conv", "bn", "relu", "input", "add",
         "concat", "linear", "flatten", "global_avgpool", "sqnxt_block", "se", "conv_bn",
         "range", "len", "int", "tensor", "int", "float", "list", "string", "channels", "0", "1",
         "3", "32", "64", "2.5", "1e9", '"s"', '"std/se.arch"', '"b{i}"', "#c\n", "kernel",
         "stride", "padding", "groups", "99999999999999999999"]
# a network appended to each std/ file so that its blocks are elaborated, not just parsed
USES = {
    "std/layers.arch": "\nnetwork T() {\n x = input(3, 16, 16)\n return conv_bn(x, 8, kernel=[3, 3])\n}\n",
    "std/se.arch": "\nnetwork T() {\n x = input(16, 8, 8)\n return se(x, ratio=4)\n}\n",
    "std/sqnxt.arch": "\nnetwork T() {\n x = input(16, 8, 8)\n return sqnxt_block(x, 32, stride=2, se_ratio=4)\n}\n",
}
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _compile(text: str, filename: str = "fuzz.arch") -> None:
    """Run parse + elaborate; anything but success or a positioned ArchError fails the test."""
    try:
        build(load_program(source=text, filename=filename))
    except ArchError as err:
        out = err.format()
        if err.span is not None:
            assert POSITIONED.match(out), out
        else:  # only whole-file conditions may lack a position
            assert out.startswith("error: "), out


def _mutate(text: str, data) -> str:
    """Apply a few random character- or token-level edits."""
    tokens = re.findall(r"\w+|\s+|.", text)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        if not tokens:
            tokens = [""]
        kind = data.draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "char"]))
        i = data.draw(st.integers(0, len(tokens) - 1))
        if kind == "delete":
            del tokens[i]
        elif kind == "duplicate":
            tokens.insert(i, tokens[i])
        elif kind == "swap":
            j = data.draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "insert":
            tokens.insert(i, data.draw(st.sampled_from(VOCAB)))
        else:
            t = tokens[i]
            k = data.draw(st.integers(0, len(t)))
            c = data.draw(st.characters(codec="utf-8", exclude_categories=["Cs"]))
            tokens[i] = t[:k] + c + t[k + 1:]
    return "".join(tokens)


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(text):
    _compile(text)


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes(data):
    _compile(data.decode("utf-8", "replace"))


@SETTINGS
@given(st.lists(st.sampled_from(VOCAB), max_size=60))
def test_token_soup(tokens):
    _compile(" ".join(tokens))


@SETTINGS
@given(st.lists(st.sampled_from(VOCAB), max_size=40))
def test_token_soup_in_a_body(tokens):
    _compile("network N() {\n x = input(3, 32, 32)\n" + " ".join(tokens) + "\n return x\n}\n")


@pytest.mark.slow   # every network, many examples
@pytest.mark.parametrize("name", sorted(SOURCES))
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_library(name, data):
    text = SOURCES[name]
    mutated = _mutate(text, data)
    if name.startswith("std/"):  # a block file: add a network that uses its blocks
        mutated = mutated.replace('import "', 'import "std/') + USES.get(name, "")
    _compile(mutated, name)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_library_through_cli(tmp_path, capsys, data):
    name = data.draw(st.sampled_from(sorted(n for n in SOURCES if "/" not in n)))
    path = tmp_path / name
    path.write_text(_mutate(SOURCES[name], data))
    rc = _cli.main(["check", str(path)])
    out, err = capsys.readouterr()
    assert rc in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    if rc == 2:
        assert POSITIONED.match(err) or err.startswith("error: "), err


# ---- issue 12: a mutation operator per class, and no exit 70 or hang --------------------------
CASE_SECONDS = 20  # generous on a loaded 2-core machine; the cases take well under a second
# class 1 (cost) and class 2 (non-finite numbers): statements that ask for a lot of work
COSTLY = [
    "y = round(15, -10**17)", "y = [[[1] * 1000] * 1000] * 1000", "y = str([1] * 9999)",
    "l = [1]\n for i in range(100000) {\n  l = [l]\n }", "y = range(-2**62, 2**62)",
    "y = zip(range(60000), range(60000))", "y = enumerate(range(99999))",
    "l = []\n for i in range(100000) {\n  l = l + [i]\n }", "y = [0] * 99999 == [0] * 99999",
    "y = 2**62 * 2**62", "y = -(2**62) - 2**62", "y = 10**64 ** 64", "y = int(1e308)",
    "y = ceil(1e308)", "y = 1e308 * 10", "y = sum([1e308, 1e308])", "y = 1e300 ** 2",
    "y = 1e308 // 1e-308", "x = bn(x, eps=sum([1e308, 1e308]))", "x = elu(x, alpha=1e200 * 1e200)",
    "y = make_divisible(1e308, 2**62)", "y = float(2**62) ** 64", "y = round(1e308)",
    'y = str(["\\x"] * 5000)', "a = [x] * 99999\n for i in range(99) {\n  b = concat(a)\n }",
]
# class 3 (source text): characters the lexer and a terminal treat differently
ODD_CHARS = ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x1b[2J",
             "\u202e", "\ufeff", "\x00", "\r", "\t", "\u200b", "漢字", "e\u0301", "a" * 5000,
             " " * 20000, "\U0001f600", "\udc80"]
ODD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\xe9", b"\x80\x80"]


@contextlib.contextmanager
def bounded(seconds=CASE_SECONDS):
    """Fail a case that runs longer than `seconds` (an alarm in the main thread); end the
    whole run if even that cannot interrupt it (faulthandler's hard timer)."""
    def alarm(signum, frame):
        raise TimeoutError(f"a fuzz case ran longer than {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(seconds * 3, exit=True, file=sys.__stderr__)
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t0 < seconds


def _cli_case(argv, capsys):
    """Run the CLI once: exit 0 or 2, never 70, never a traceback, never unescaped
    terminal controls in what it prints about the input."""
    with bounded():
        rc = _cli.main(argv)
    out, err = capsys.readouterr()
    assert rc in (0, 2), err[-3000:]
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]
    if rc == 2:
        assert POSITIONED.match(err) or err.startswith("error: "), err[:3000]
        raw = re.search(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029\u202e]", err)
        assert not raw, repr(err[:3000])
        assert len(err) < 20_000, len(err)
    return rc, out, err


def _splice(text: str, data, items) -> str:
    """Insert one of `items` at a random line of `text` (inside a body where possible)."""
    lines = text.split("\n")
    i = data.draw(st.integers(1, max(len(lines) - 2, 1)), label="line")
    item = data.draw(st.sampled_from(items), label="insert")
    lines.insert(i, " " + item)
    return "\n".join(lines)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_costly_values_through_cli(tmp_path, capsys, data):
    """Classes 1-2: costly or non-finite statements spliced into library networks."""
    name = data.draw(st.sampled_from(["shallow_sqnxt.arch", "sqnxt.arch", "resnet.arch"]))
    text = _splice(SOURCES[name], data, COSTLY)
    if data.draw(st.booleans(), label="mutate too"):
        text = _mutate(text, data)
    (tmp_path / name).write_text(text)
    fmt = data.draw(st.sampled_from([[], ["--format", "json"]]), label="format")
    rc, out, _ = _cli_case(["analyze", str(tmp_path / name), *fmt], capsys)
    if rc == 0 and fmt:
        json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_odd_source_text_through_cli(tmp_path, capsys, data):
    """Class 3: odd characters and undecodable bytes anywhere in a source file."""
    name = data.draw(st.sampled_from(sorted(n for n in SOURCES if "/" not in n)))
    raw = SOURCES[name].encode()
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        at = data.draw(st.integers(0, len(raw)), label="at")
        if data.draw(st.booleans(), label="bytes"):
            piece = data.draw(st.sampled_from(ODD_BYTES), label="piece")
        else:
            piece = data.draw(st.sampled_from(ODD_CHARS), label="piece").encode(
                "utf-8", "surrogateescape" if "\udc80" else "strict")
        raw = raw[:at] + piece + raw[at:]
    (tmp_path / name).write_bytes(raw)
    _cli_case(["check", str(tmp_path / name)], capsys)


SMALL_PROGRAM = load_program(source=(
    'network S(stages: list = [1, 2], width: float = 0.5, ratio: int = 4, classes: int = 10,\n'
    '          kind: string = "relu") {\n x = input(3, 16, 16)\n'
    " for n in stages {\n  x = conv(x, int(16 * width) * n, kernel=3) -> activation(kind)\n }\n"
    " x = global_avgpool(x) -> flatten\n return linear(x, classes)\n}\n"), filename="s.arch")
PY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) |
    st.sampled_from([2 ** 70, -(2 ** 63), float("nan"), float("inf"), 1e308, "x" * 20_000,
                     object(), b"bytes", 3 + 4j]),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children),
    max_leaves=12)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_python_keyword_values(data):
    """Class 12: any Python value as any keyword of the API is a result or an ArchError
    that names the keyword (never <python>:1:1, never another exception)."""
    key = data.draw(st.sampled_from(["stages", "width", "ratio", "classes", "kind", "bits",
                                     "nope"]), label="keyword")
    value = data.draw(PY_VALUES, label="value")
    with bounded():
        try:
            archc.analyze(SMALL_PROGRAM, **{key: value})
        except ArchError as err:
            out = err.format()
            assert "<python>" not in out, out
            if err.span is None:
                assert f"'{key}'" in out, out


@pytest.mark.slow   # many CLI runs
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_output_paths_and_import_links(tmp_path_factory, capsys, data):
    """Classes 5-6: `build -o` onto every kind of path, and imports through links."""
    d = tmp_path_factory.mktemp("paths")
    (d / "folder").mkdir()
    (d / "file.py").write_text("old")
    os.symlink(d / "file.py", d / "link.py")
    os.mkfifo(d / "fifo.py")
    (d / "outside.arch").write_text("block b(x: tensor) {\n return relu(x)\n}\n")
    (d / "proj").mkdir()
    os.symlink(d / "outside.arch", d / "proj" / "b.arch")
    os.symlink("/etc/passwd", d / "proj" / "p.arch")
    out = data.draw(st.sampled_from(["file.py", "new.py", "folder", "folder/", "link.py",
                                     "fifo.py", "missing/x.py", "/dev/null", "", "."]),
                    label="-o")
    rc, _, err = _cli_case(["build", "shallow_sqnxt", "-o", str(d / out) if out else out],
                           capsys)
    assert (d / "link.py").is_symlink() and (d / "file.py").exists()
    assert [n for n in os.listdir(d) if n.startswith(".archc-")] == []
    imp = data.draw(st.sampled_from(["b.arch", "p.arch", "../outside.arch", "/etc/passwd",
                                     "nope.arch"]), label="import")
    (d / "proj" / "m.arch").write_text(f'import "{imp}"\nnetwork N() {{\n x = input(3, 8, 8)'
                                       f"\n return b(x)\n}}\n")
    rc, _, err = _cli_case(["check", str(d / "proj" / "m.arch")], capsys)
    assert rc == 2 and "root:" not in err


# ---- the resampling ops (issue 13): random arguments against PyTorch ------------------------
# Kept apart from the generators above. Every call of a resampling, rearranging or
# stochastic-depth op with random (often invalid) arguments either fails with a positioned
# ArchError, or compiles to a layer whose static shape and parameter count equal what the
# generated PyTorch module really produces: archc's shape rules reject whatever PyTorch
# rejects, and accept nothing that PyTorch computes differently. Seeded random draws
# (valid four times in five per argument), so that every op gets valid and invalid cases.
def _lit(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    return repr(v)


def _mostly(valid, *invalid):
    return lambda r: r.choice(invalid) if r.random() < 0.2 else valid(r)


def _pair(lo, hi):
    return lambda r: r.randint(lo, hi) if r.random() < 0.5 else [r.randint(lo, hi),
                                                                  r.randint(lo, hi)]


_N = _mostly(lambda r: r.randint(1, 4), 0, -1, 2.5, "2")
_PAIR = _mostly(_pair(1, 3), 0, -1, 1.5, [1, 0], [1, 2, 3])
_PAD = _mostly(_pair(0, 2), -1, 0.5, [0])
_RESAMPLE_ARGS = {
    "upsample": {"scale": _PAIR, "size": _mostly(_pair(1, 12), 0, [3, 0], 2.0),
                 "mode": lambda r: r.choice(["nearest", "bilinear", "bilinear", "area"]),
                 "align_corners": lambda r: r.random() < 0.5},
    "conv_transpose": {"out": _N, "kernel": _PAIR, "stride": _PAIR, "padding": _PAD,
                       "output_padding": _PAD, "groups": _mostly(lambda r: 1, 2, 3, 0),
                       "dilation": _PAIR, "bias": lambda r: r.random() < 0.5},
    "pixel_shuffle": {"r": _N},
    "pixel_unshuffle": {"r": _N},
    "channel_shuffle": {"groups": _N},
    "adaptive_avgpool": {"size": _PAIR},
    "adaptive_maxpool": {"size": _PAIR},
    "drop_path": {"p": _mostly(lambda r: r.choice([0.0, 0.3, 0.99]), -0.5, 1.0, 2, "0.1")},
    "crop": {"size": _mostly(_pair(1, 9), 0, [2, 0], 1.5)},
}
_REQUIRED = {"conv_transpose": ("out", "kernel"), "pixel_shuffle": ("r",),
             "pixel_unshuffle": ("r",), "channel_shuffle": ("groups",),
             "adaptive_avgpool": ("size",), "adaptive_maxpool": ("size",), "drop_path": ("p",),
             "crop": ("size",)}


def _resample_source(op: str, r) -> str:
    c, h, w = r.randint(1, 8), r.randint(1, 9), r.randint(1, 9)
    required = _REQUIRED.get(op, ())
    if op == "upsample":   # exactly one of scale and size, mostly
        required = r.choice([("scale",)] * 3 + [("size",)] * 3 + [("scale", "size"), ()])
    args = [f"{k}={_lit(gen(r))}" for k, gen in _RESAMPLE_ARGS[op].items()
            if k in required or (k not in ("scale", "size") and r.random() < 0.4)]
    return f"network N() {{\n x = input({c}, {h}, {w})\n return {op}(x, {', '.join(args)})\n}}\n"


@pytest.mark.slow   # many examples in torch and JAX
@pytest.mark.parametrize("op", sorted(_RESAMPLE_ARGS))
def test_resample_ops_random_arguments_agree_with_torch(op):
    import random

    torch = pytest.importorskip("torch")
    import archc
    from archc.backends import torch_backend
    rng = random.Random(f"archc-{op}")
    compiled = 0
    for _ in range(40):
        src = _resample_source(op, rng)
        try:
            net = archc.load_source(src)
        except ArchError as err:
            assert POSITIONED.match(err.format()), err.format()
            continue
        compiled += 1
        module = torch_backend.compile_module(net)
        module.eval()
        with torch.no_grad():
            out = module(torch.randn(1, *net.input_shape))
        assert tuple(out.shape[1:]) == net.output_shape, src
        assert sum(p.numel() for p in module.parameters()) == \
            archc.analyze(net).totals["params"], src
    assert 5 <= compiled <= 35, compiled   # both valid and invalid cases were exercised
