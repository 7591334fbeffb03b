"""Bit-op analysis (compiler/bitops.py, compiler/quant.py; docs/bitops.md).

Paper numbers: seed 002 (002_68cf32dd8b4fd706.txt), Sec. 5.3 (totals, score) and Appendix B
Table 1 (per layer), transcribed in tests/data/profitablenet_table1.tsv.
"""
from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import re
from contextlib import redirect_stderr, redirect_stdout

import pytest

import archc.compiler as C
from archc._cli import main
from archc.compiler.bitops import bitops
from archc.compiler.errors import ArchError
from archc.compiler.quant import load_quant, parse_quant

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent

# ---- Table 1 names <-> archc layer names ------------------------------------------------------
_SE = {"pool": "SE_global_pool", "fc1": "SE_fc1", "relu": "SE_fc1/relu", "fc2": "SE_fc2",
       "gate": "SE_weights"}
_FIXED = {"conv1": "conv1/3x3_s2", "conv1_relu": "conv1/3x3_s2/relu", "conv9": "conv9/1x1",
          "conv9_relu": "conv9/1x1/relu", "avepool": "avepool/7x7", "classifier": "classifier"}


def paper_name(name: str) -> str:
    """The Table 1 layer name of an archc layer of archs/profitablenet.arch."""
    if name in _FIXED:
        return _FIXED[name]
    block, rest = name.split(".", 1)
    simple = {"increase": "1x1_increase", "increase_relu": "1x1_increase/relu",
              "decrease": "1x1_decrease", "elt_sum": "elt_sum", "dwconv.dw.conv": "3x3_dwconv",
              "dwconv.dw.relu": "3x3_dwconv/relu", "se.scale": "3x3_dwconv/scale"}
    if rest in simple:
        return f"{block}/{simple[rest]}"
    m = re.fullmatch(r"dwconv\.slice(\d+)\.(conv|relu)", rest)
    if m:
        return f"{block}/3x3_dwconv/slice_{m.group(1)}" + ("/relu" if m.group(2) == "relu" else "")
    if rest.startswith("se."):
        return f"{block}/3x3_dwconv/{_SE[rest[3:]]}"
    raise KeyError(name)


def _profitable():
    net = C.load("profitablenet")
    return net, bitops(net, "table1", load_quant("profitablenet.quant"))


def _table1():
    text = (HERE / "data" / "profitablenet_table1.tsv").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t"))


# ---- seed 002 reproduction ---------------------------------------------------------------------
def test_table1_every_readable_cell():
    net, r = _profitable()
    by_paper = {paper_name(c.name): c for c in r.layers if c.costed}
    rows = _table1()
    assert [row["layername"] for row in rows] == list(by_paper)   # same rows, same order
    checked = 0
    for row in rows:
        if row["status"] != "ok":
            assert row["status"] == "garbled"
            continue
        c = by_paper[row["layername"]]
        for col, bits, scale in (("mulops_M", c.mul_bitops, 1e6), ("addops_M", c.add_bitops, 1e6),
                                 ("storage_K", c.storage_bits, 1e3)):
            printed = row[col]
            got = "-" if not bits else f"{bits / scale:.2f}"
            # the table prints a zero-valued count of an op that exists as 0.00
            if printed == "0.00" and got == "-":
                got = "0.00"
            assert got == printed, (row["layername"], col, got, printed)
            checked += 1
    assert checked >= 300


def test_table1_totals_and_score():
    _, r = _profitable()
    t = r.totals
    assert f"{t['storage_params32'] / 1e6:.6f}" == "0.825353"   # Sec. 5.3: 0.825353 M
    assert f"{t['mul_ops32'] / 1e6:.4f}" == "52.1957"           # 52.1957 M
    assert f"{t['add_ops32'] / 1e6:.3f}" == "101.488"           # 101.488 M
    assert f"{t['score']:.5f}" == "0.25097"                     # score 0.25097


def test_reference_example_conv1():
    # micronet-scoring.md rule 6: conv1 3->32, 3x3/2, 224->112, sparsity 0.45
    _, r = _profitable()
    c = next(c for c in r.layers if c.name == "conv1")
    assert c.muls == 14 * 32 * 112 * 112 and c.mul_bits == 8
    assert c.adds == 14 * 32 * 112 * 112 and c.add_bits == 16
    assert c.storage_bits == pytest.approx(864 * 8 * 0.55 + 864 + 32 * 16)


def test_profitablenet_dense_size():
    net, r = _profitable()
    assert r.totals["weights"] == 4_424_520      # micronet-scoring.md, "Dense size"
    assert r.totals["biases"] == 18_440
    a = C.analyze(net)
    assert a.totals["params"] == 4_424_520 + 1000 + 2 * 17_440   # + classifier bias + BN


# ---- rules on small hand-checked layers ----------------------------------------------------------
SPEC8 = "default weight_bits=8 act_bits=8 acc_bits=16 bias_bits=16 sparsity={s}\n"


def _run(src, spec, rules="table1"):
    net = C.load_source(src, "t.arch")
    return {c.name: c for c in bitops(net, rules, parse_quant(spec, "t.quant")).layers}


def test_rule_1x3_conv():
    src = "network N() { x = input(4, 8, 8)\n return c: conv(x, 6, kernel=[1, 3], padding=[0, 1]) }"
    c = _run(src, SPEC8.format(s=0.5))["c"]
    # vector = 4*1*3 = 12 -> floor(12*0.5) = 6; 6*8*8 = 384 outputs
    assert (c.muls, c.adds) == (6 * 384, (6 - 1 + 1) * 384)
    assert (c.mul_bits, c.add_bits) == (8, 16)
    assert c.storage_bits == pytest.approx(72 * 8 * 0.5 + 72 + 6 * 16)
    o = _run(src, SPEC8.format(s=0.55), "official")["c"]
    assert o.muls == pytest.approx(12 * 0.45 * 384)             # fractional vector length


def test_rule_grouped_conv_with_folded_bn():
    src = ("network N() { x = input(8, 4, 4)\n"
           " return x -> c: conv(4, kernel=3, padding=1, groups=2, bias=false) -> b: bn }")
    L = _run(src, SPEC8.format(s=0.3))
    c = L["c"]
    # vector = 8/2*9 = 36 -> floor(25.2) = 25; outputs 4*4*4 = 64; bias from the folded BN
    assert (c.muls, c.adds) == (25 * 64, 25 * 64)
    assert c.storage_bits == pytest.approx(144 * 8 * 0.7 + 144 + 4 * 16)
    assert c.folded == ["b"] and not L["b"].costed


def test_rule_mixconv():
    src = ('import "std/mixconv.arch"\n'
           "network N() { x = input(4, 6, 6)\n return m: mixconv(x, [3, 5]) }")
    L = _run(src, SPEC8.format(s=0))
    s0, s1 = L["m.slice0.conv"], L["m.slice1.conv"]
    assert (s0.muls, s0.adds) == (9 * 72, 9 * 72)               # 2 ch x 6x6, 3x3 depthwise
    assert (s1.muls, s1.adds) == (25 * 72, 25 * 72)             # 5x5 depthwise
    assert s0.storage_bits == 18 * 8 + 2 * 16 and s1.storage_bits == 50 * 8 + 2 * 16
    assert L["m.slice0.relu"].muls == 72 and L["m.slice0.relu"].mul_bits == 8
    assert not L["m.part0"].costed and not L["m.concat"].costed


def test_rule_se_pool_sigmoid_scale_add():
    src = ('import "std/se.arch"\n'
           "network N() { x = input(32, 5, 5)\n y = s: se(x, ratio=8, bias=false)\n"
           " return r: add(y, x) }")
    spec = SPEC8.format(s=0) + "s.* act_bits=16\ns.scale act_bits=8\n"
    L = _run(src, spec)
    p = L["s.pool"]
    assert (p.muls, p.mul_bits, p.adds, p.add_bits) == (32, 8, 32 * 24, 16)
    f = L["s.fc1"]
    assert (f.muls, f.adds, f.mul_bits, f.storage_bits) == (32 * 4, 31 * 4, 16, 128 * 8)
    g = L["s.gate"]
    assert (g.muls, g.adds, g.mul_bits, g.add_bits) == (64, 32, 16, 16)
    sc = L["s.scale"]
    assert (sc.in_bits, sc.muls, sc.mul_bits) == ((8, 16), 800, 16)
    a = L["r"]
    assert (a.adds, a.add_bits, a.muls) == (800, 16, 0)


def test_no_spec_is_float32_and_official_freebie():
    src = "network N() { x = input(3, 8, 8)\n return c: conv(x, 4, kernel=3, padding=1) }"
    net = C.load_source(src, "t.arch")
    t1 = bitops(net, "table1").layers[0]
    of = bitops(net, "official").layers[0]
    assert t1.storage_bits == (108 + 4) * 32 and of.storage_bits == (108 + 4) * 16
    assert (t1.mul_bits, of.mul_bits, of.add_bits) == (32, 16, 32)


# ---- the official rules against an independent oracle (counting.py's formulas) ------------------
def _oracle(kind, k, c_in, c_out, size, stride, sparsity, param_bits, bias):
    """MicroNet counting.py formulas for square kernels ('same' padding): bits, muls, adds."""
    def sparse_size(n):
        return n * param_bits * (1 - sparsity) + (n if sparsity > 0 else 0)
    out = math.ceil((size - k + 1.0 + 2 * (k // 2)) / stride)
    if kind == "conv":
        params, vec, n_out = sparse_size(k * k * c_in * c_out), k * k * c_in * (1 - sparsity), \
            out * out * c_out
    else:  # depthwise
        params, vec, n_out = sparse_size(k * k * c_in), k * k * (1 - sparsity), out * out * c_in
    muls, adds = vec * n_out, (vec - 1) * n_out
    if bias:
        params += c_out * param_bits
        adds += n_out
    return params, muls, adds


@pytest.mark.parametrize("kind,k,c_in,c_out,size,stride,s,bias", [
    ("conv", 1, 16, 24, 14, 1, 0.0, True), ("conv", 3, 8, 16, 15, 2, 0.45, True),
    ("conv", 5, 4, 8, 9, 1, 0.3, False), ("dw", 3, 12, 12, 14, 1, 0.4, True),
    ("dw", 7, 6, 6, 13, 2, 0.0, False)])
@pytest.mark.parametrize("wbits", [8, 32])
def test_official_rules_match_counting_oracle(kind, k, c_in, c_out, size, stride, s, bias, wbits):
    g = c_in if kind == "dw" else 1
    src = (f"network N() {{ x = input({c_in}, {size}, {size})\n return c: conv(x, {c_out}, "
           f"kernel={k}, stride={stride}, padding=\"same\", groups={g}, "
           f"bias={'true' if bias else 'false'}) }}")
    spec = f"default weight_bits={wbits} bias_bits={wbits} act_bits={wbits} sparsity={s}\n"
    c = _run(src, spec, "official")["c"]
    params, muls, adds = _oracle(kind, k, c_in, c_out, size, stride, s, min(wbits, 16), bias)
    assert c.storage_bits == pytest.approx(params)
    assert c.muls == pytest.approx(muls) and c.adds == pytest.approx(adds)
    assert c.mul_bits == min(wbits, 16)


# ---- spec validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("text,msg,line,col", [
    ("default weight_bits=8\nconv1 weigth_bits=4\n", "unknown setting 'weigth_bits'", 2, 7),
    ("default sparsity=1.5\n", "sparsity must be in [0, 1)", 1, 18),
    ("default act_bits=eight\n", "must be a whole number", 1, 18),
    ("default act_bits=8\ndefault act_bits=4\n", "second 'default'", 2, 1),
    ("conv1\n", "sets nothing", 1, 1),
    ("sparsity=0.5\n", "starts with a layer pattern", 1, 1),
])
def test_spec_errors_are_positioned(text, msg, line, col):
    with pytest.raises(ArchError) as e:
        parse_quant(text, "bad.quant")
    assert msg in e.value.message
    assert (e.value.span.file, e.value.span.line, e.value.span.column) == ("bad.quant", line, col)
    assert "^" in e.value.format()


def test_spec_pattern_matching_nothing_is_an_error():
    net = C.load("profitablenet")
    spec = parse_quant("default weight_bits=8\nconv4_1.dwconv.slice9.* sparsity=0.4\n", "s.quant")
    with pytest.raises(ArchError) as e:
        bitops(net, "table1", spec)
    assert "matches no layer" in e.value.message and e.value.span.line == 2


# ---- CLI ---------------------------------------------------------------------------------------
def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_cli_table_and_json():
    rc, out, _ = _cli("analyze", "profitablenet.arch", "--bitops", "table1", "--quant",
                      "profitablenet.quant")
    assert rc == 0 and "score 0.25097" in out and "conv4_0.se.fc1" in out
    rc, out, _ = _cli("analyze", "profitablenet", "--bitops", "table1", "--quant",
                      "profitablenet.quant", "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["rules"] == "table1" and f"{d['totals']['score']:.5f}" == "0.25097"


def test_cli_squeezenext_rectangular_and_cifar_baseline():
    rc, out, _ = _cli("analyze", "se_sqnxt.arch", "--bitops", "official", "--quant", "int8",
                      "--baseline", "cifar100")
    assert rc == 0 and "WideResNet-28-10" in out and "stage1.block1.conv3.conv" in out


def test_cli_errors():
    rc, _, err = _cli("analyze", "se_sqnxt", "--quant", "int8")
    assert rc == 2 and "--quant needs --bitops" in err
    rc, _, err = _cli("analyze", "se_sqnxt", "--bitops", "table1", "--quant", "nope.quant")
    assert rc == 2 and "no such spec file" in err
    rc, _, err = _cli("analyze", "se_sqnxt", "--bitops", "table1", "--quant",
                      str(ROOT / "archs" / "profitablenet.quant"))
    assert rc == 2 and "matches no layer" in err and "profitablenet.quant:" in err


def test_docs_sizes_are_the_tools():
    doc = (ROOT / "docs" / "bitops.md").read_text()
    from archc.compiler.bitops import size_table
    assert size_table() in doc
