"""Language additions of issue 13 (docs/language.md): the math builtins log, log2, exp,
sqrt, pow, floor, ceil with bounded, positioned errors; the `in` operator; a channel scale
on either side of `*`; assert messages that are expressions."""
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
    ("floor(2.7)", "int", 2), ("floor(-2.5)", "int", -3), ("ceil(2.1)", "int", 3),
    ("ceil(-2.5)", "int", -2), ("ceil(7 / 2)", "int", 4), ("floor(4)", "int", 4),
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


@pytest.mark.parametrize("expr,expected", [
    ("3 in [1, 2, 3]", True), ("4 in [1, 2, 3]", False), ("4 not in [1, 2, 3]", True),
    ("1 in [1.0]", True), ('"1" in [1]', False), ('"b0" in ["b0", "b1"]', True),
    ("[1, 2] in [[1, 2], [3]]", True), ('"ab" in "cabd"', True), ('"x" not in "abc"', True),
    ("2 in []", False), ("not 3 in [3]", False), ("1 + 1 in [2]", True),
    ("3 in [1, 2] or 1 in [1]", True),
])
def test_in_operator(expr, expected):
    assert value(expr, "bool") is expected


@pytest.mark.parametrize("expr,message,column", [
    ("1 in 2", "`in` needs a list or a string on its right, not int", 14),
    ('1 in "abc"', "`in` a string needs a string on its left, not int", 9),
    ("1 not in 2.5", "`not in` needs a list or a string on its right, not float", 18),
])
def test_in_operator_errors_are_positioned(expr, message, column):
    src = f"network N() {{\n    x = input(1, 1, 1)\n    v = {expr}\n    return x\n}}\n"
    with pytest.raises(ArchError) as err:
        archc.load_source(src, filename="t.arch")
    assert err.value.format().startswith(f"t.arch:3:{column}: error: {message}\n")


def test_in_is_a_keyword_only_between_values():
    """`for v in list` is unchanged; `in` in a condition reads a design-space parameter."""
    net = archc.load_source("""network N(variant: string = "b1") {
        x = input(3, 4, 4)
        for k in [1, 2] {
            x = x -> relu
        }
        c = if variant in ["b0", "b1"] then 8 else 4
        return x -> conv(c, kernel=1)
    }""")
    assert net.output_shape == (8, 4, 4)


SCALE = """network N() {
    x = input(6, 5, 5)
    s = x -> g: global_avgpool -> h: sigmoid
    return %s
}"""


@pytest.mark.parametrize("expr", ["x * s", "s * x", "mul(x, s)"])
def test_a_channel_scale_on_either_side_of_star(expr):
    """`s * x` (the C x 1 x 1 gate first) is the same layer as `x * s`: mul(x, s)."""
    net = archc.load_source(SCALE % expr)
    out = net.node(net.output)
    assert out["op"] == "mul" and tuple(out["inputs"]) == ("input", "h")
    assert out["in_shapes"] == ((6, 5, 5), (6, 1, 1)) and out["shape"] == (6, 5, 5)


def test_a_channel_scale_first_in_mul_is_an_error_that_says_so():
    with pytest.raises(ArchError) as err:
        archc.load_source(SCALE % "mul(s, x)", filename="t.arch")
    text = err.value.format()
    assert text.startswith("t.arch:4:12: error: mul: the scale (6x1x1) comes second: "
                           "mul(x, scale) multiplies x (6x5x5) channel by channel\n"), text
    assert "x * s or s * x" in text


def test_a_number_times_a_tensor_stays_an_error():
    for expr in ("2 * x", "x * 2"):
        with pytest.raises(ArchError, match="operator '\\*' is not defined"):
            archc.load_source(SCALE % expr)


@pytest.mark.parametrize("message,shown", [
    ('"width " + str(w) + " is too large"', "width 1.5 is too large"),
    ('"plain"', "plain"),
    ("[w, 2]", "[1.5, 2]"),
    ("w", "1.5"),
])
def test_assert_message_is_an_expression(message, shown):
    src = f"network N(w: float = 1.5) {{\n    x = input(1, 1, 1)\n    assert w < 1, {message}\n" \
          "    return x\n}\n"
    with pytest.raises(ArchError) as err:
        archc.load_source(src, filename="t.arch")
    assert err.value.format().startswith(f"t.arch:3:5: error: assertion failed: {shown}\n")


def test_assert_message_is_evaluated_only_when_the_assertion_fails():
    src = "network N() {\n    x = input(1, 1, 1)\n    assert true, undefined_name\n" \
          "    assert false, nope\n    return x\n}\n"
    with pytest.raises(ArchError) as err:
        archc.load_source(src, filename="t.arch")
    assert err.value.format().startswith("t.arch:4:19: error: unknown name 'nope'")


def test_every_std_block_is_documented_in_the_language_reference():
    """docs/language.md section 9 lists every block of archs/std/ as `name(` with its file."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "language.md").read_text()
    section = doc[doc.index("## 9. The bundled library"):doc.index("## 10.")]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = line.split(" | ")
            for name in re.findall(r"`(\w+)\(", cells[0]):
                rows[name] = cells[1].strip("` ")
    blocks = {m.group(1): p.name for p in (root / "archs" / "std").glob("*.arch")
              for m in re.finditer(r"^block\s+(\w+)\s*\(", p.read_text(), re.M)}
    assert blocks and rows == blocks
