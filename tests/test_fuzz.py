"""Fuzzing the compile path: whatever the input, archc either succeeds or raises an ArchError
whose format() starts with `file:line:col: error:` -- never any other exception.

Inputs: random text, token soups from the grammar's vocabulary, and mutations (delete,
duplicate, swap, insert characters or tokens) of the bundled archs/*.arch and archs/std/*.arch.
"""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
}
_REQUIRED = {"conv_transpose": ("out", "kernel"), "pixel_shuffle": ("r",),
             "pixel_unshuffle": ("r",), "channel_shuffle": ("groups",),
             "adaptive_avgpool": ("size",), "adaptive_maxpool": ("size",), "drop_path": ("p",)}


def _resample_source(op: str, r) -> str:
    c, h, w = r.randint(1, 8), r.randint(1, 9), r.randint(1, 9)
    required = _REQUIRED.get(op, ())
    if op == "upsample":   # exactly one of scale and size, mostly
        required = r.choice([("scale",)] * 3 + [("size",)] * 3 + [("scale", "size"), ()])
    args = [f"{k}={_lit(gen(r))}" for k, gen in _RESAMPLE_ARGS[op].items()
            if k in required or (k not in ("scale", "size") and r.random() < 0.4)]
    return f"network N() {{\n x = input({c}, {h}, {w})\n return {op}(x, {', '.join(args)})\n}}\n"


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
