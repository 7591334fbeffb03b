"""Language additions of issue 13 (docs/language.md): the math builtins log, log2, exp,
sqrt, pow with bounded, positioned errors."""
from __future__ import annotations

import math

import pytest

import archc
from archc import ArchError


def value(expr: str, typ: str):
    net = archc.load_source(f"network N(v: {typ} = {expr}) {{ x = input(1, 1, 1)\n return x }}")
    return net.params["v"]


@pytest.mark.parametrize("expr,typ,expected", [
    ("log(1)", "float", 0.0), ("log(8, 2)", "float", math.log(8, 2)),
    ("log(100, 10)", "float", math.log(100, 10)), ("log2(1024)", "float", 10.0),
    ("exp(0)", "float", 1.0), ("exp(1)", "float", math.e), ("sqrt(16)", "float", 4.0),
    ("sqrt(2)", "float", math.sqrt(2)), ("pow(2, 10)", "int", 1024), ("pow(2, -1)", "float", 0.5),
    ("pow(2.5, 2)", "float", 6.25), ("pow(-8, 3)", "int", -512),
    # RegNet's quantized linear rule (std/regnet.arch): round(log(u / w_0) / log(w_m))
    ("round(log((24 + 24.48 * 21) / 24) / log(2.54))", "int", 3),
])
def test_math_builtins(expr, typ, expected):
    v = value(expr, typ)
    assert v == expected and type(v) is type(expected)


@pytest.mark.parametrize("expr,message", [
    ("log(0)", "log(): the argument must be positive, got 0"),
    ("log(-1.5)", "log(): the argument must be positive, got -1.5"),
    ("log(8, 1)", "log(): a logarithm to base 1 is undefined"),
    ("log(8, 0)", "log(): the base must be positive, got 0"),
    ("log2(0)", "log2(): the argument must be positive, got 0"),
    ("exp(710)", "exp(): e ** 710 is too large for a float"),
    ("sqrt(-1)", "sqrt(): the argument must not be negative, got -1"),
    ("pow(2, 100)", "pow(): exponent 100 is out of range"),
    ("pow(-8, 0.5)", "pow(): fractional power of a negative number"),
    ("pow(0, -1)", "pow(): exponent -1 is out of range"),
    ('log("a")', 'log(): argument must be a number, got string "a"'),
    ("sqrt(true)", "sqrt(): argument must be a number, got bool true"),
])
def test_math_builtin_errors_are_positioned(expr, message):
    src = f"network N() {{\n    x = input(1, 1, 1)\n    v = {expr}\n    return x\n}}\n"
    with pytest.raises(ArchError) as err:
        archc.load_source(src, filename="t.arch")
    text = err.value.format()
    assert text.startswith(f"t.arch:3:9: error: {message}\n"), text
    assert f" 3 |     v = {expr}" in text and "^" * len(expr) in text
    assert "hint: " in text
