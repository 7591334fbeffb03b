"""Semantics of the .arch language (docs/language.md), through archc.load_source."""
from __future__ import annotations

import pytest

import archc
from archc import ArchError


def value(expr: str, typ: str):
    """Evaluate `expr` as the default of a typed network parameter (checks its type too)."""
    net = archc.load_source(f"network N(v: {typ} = {expr}) {{ x = input(1, 1, 1)\n return x }}")
    return net.params["v"]


def net(body: str, blocks: str = "", **params):
    return archc.load_source(f"{blocks}\nnetwork N() {{\n x = input(4, 8, 8)\n{body}\n}}", **params)


@pytest.mark.parametrize("expr,typ,expected", [
    ("7 // 2", "int", 3), ("-7 // 2", "int", -4), ("7 / 2", "float", 3.5), ("6 / 2", "float", 3.0),
    ("7.0 // 2", "float", 3.0), ("-7 % 3", "int", 2), ("2 ** 3", "int", 8), ("2 ** -1", "float", 0.5),
    ("-2 ** 2", "int", -4), ("2 ** 3 ** 2", "int", 512), ("2 + 3 * 4 ** 2", "int", 50),
    ("10 - 2 - 3", "int", 5), ("-3 // 2 * 2", "int", -4), ("3 * 0.5", "float", 1.5),
    ("int(-2.7)", "int", -2), ("ceil(2.1)", "int", 3), ("floor(-2.1)", "int", -3),
    ("round(2.5)", "int", 2), ("round(3.5)", "int", 4), ("round(-0.5)", "int", 0),
    ("round(0.125, 2)", "float", 0.12), ("1 == 1.0", "bool", True), ("1 == true", "bool", False),
    ("not 1 < 2 and true", "bool", False), ("[1, 2] + [3]", "list", (1, 2, 3)),
    ("[0] * 3", "list", (0, 0, 0)), ('"a" + "b"', "string", "ab"), ("[1, 2][-1]", "int", 2),
    ("if 1 < 2 then 10 else 20", "int", 10), ("if false then 1 else if true then 2 else 3", "int", 2),
    ("str([1, \"a\"])", "string", '[1, "a"]'), ("str(true)", "string", "true"),
    ('"a\\tb\\"\\\\"', "string", 'a\tb"\\'), ("1e3", "float", 1000.0), (".5", "float", 0.5),
    ("min([3, 1, 2])", "int", 1), ("max(1, 2.5)", "float", 2.5), ("sum([1, 2, 3])", "int", 6),
    ("len(range(2, 10, 3))", "int", 3), ("zip([1, 2], [3, 4])", "list", ((1, 3), (2, 4))),
    ("enumerate([5, 6])", "list", ((0, 5), (1, 6))), ("1 # comment\n + 1", "int", 2),
])
def test_expression_values(expr, typ, expected):
    v = value(expr, typ)
    assert v == expected
    assert type(v) is type(expected)


# torchvision's _make_divisible(v, 8): hand-checked
#   37.5 -> int(41.5)//8*8 = 40;  10 -> 8, but 8 < 9 so 16;  3 -> max(8, 0) = 8;
#   24 -> 24;  91.2 -> int(95.2)//8*8 = 88 (>= 82.08);  (v=20, d=16) -> 16 < 18 -> 32
@pytest.mark.parametrize("args,expected", [
    ("37.5", 40), ("10", 16), ("3", 8), ("24", 24), ("91.2", 88), ("20, 16", 32),
    ("5, 4, 8", 8),
])
def test_make_divisible_matches_torchvision(args, expected):
    assert value(f"make_divisible({args})", "int") == expected


@pytest.mark.parametrize("expr,needle", [
    ("1 / 0", "division by zero"), ("3 * [0]", "must be a number"), ("int(true)", "bool"),
    ("[1][5]", "out of range"), ("2 ** 100", "out of range"), ("\"a\" + 1", "must be a number"),
    ("1 < \"a\"", "cannot compare"), ("range(1, 2, 0)", "zero"), ("unknown_name", "unknown name"),
])
def test_expression_errors_are_positioned(expr, needle):
    with pytest.raises(ArchError) as e:
        value(expr, "int")
    assert needle in e.value.message
    assert e.value.span is not None and e.value.span.line == 1


def test_float_is_not_an_int_and_int_widens_to_float():
    with pytest.raises(ArchError, match="expected int, got float"):
        value("2.0", "int")
    assert value("2", "float") == 2.0 and isinstance(value("2", "float"), float)
    with pytest.raises(ArchError, match="must be an integer") as e:
        net(" return conv(x, 8 * 0.5, kernel=1)")
    assert "rounding" in e.value.hint


def test_comparisons_do_not_chain():
    with pytest.raises(ArchError):
        value("1 < 2 < 3", "bool")


def test_conditions_must_be_bool():
    with pytest.raises(ArchError, match="true or false"):
        net(" if 1 { x = relu(x) }\n return x")


def test_loops_unpacking_and_conditionals():
    n = net("""
    total = 0
    for i, c in enumerate([8, 16]) {
        if i == 0 { x = conv(x, c, kernel=1) } elif i == 1 { x = conv(x, c, kernel=3, padding=1) }
        else { x = relu(x) }
        total = total + c
    }
    a, b = [total, 2]
    return conv(x, a // b, kernel=1)""")
    assert n.layers() == ["conv_1", "conv_2", "conv_3"]
    assert n.output_shape == (12, 8, 8)


def test_unpack_length_mismatch():
    with pytest.raises(ArchError, match="cannot unpack 3 into 2"):
        net(" a, b = [1, 2, 3]\n return x")


def test_naming_unlabelled_labelled_and_scopes():
    blocks = "block res(x: tensor) {\n y = x -> conv(x.channels, kernel=1) -> relu\n return x + y\n}"
    n = net("""
    x = conv(x, 4, kernel=1)
    x = conv(x, 4, kernel=1)
    x = mid: relu(x)
    x = res(x)
    x = res(x)
    stage: for i in [10, 20] { x = res(x) }
    for b in range(2) { x = "block{b + 1}": res(x) }
    return x -> head: conv(4, kernel=1) -> relu""", blocks)
    assert n.layers() == [
        "conv_1", "conv_2", "mid", "res_1.conv_1", "res_1.relu_1", "res_1.add_1",
        "res_2.conv_1", "res_2.relu_1", "res_2.add_1",
        "stage1.res_1.conv_1", "stage1.res_1.relu_1", "stage1.res_1.add_1",
        "stage2.res_1.conv_1", "stage2.res_1.relu_1", "stage2.res_1.add_1",
        "block1.conv_1", "block1.relu_1", "block1.add_1",
        "block2.conv_1", "block2.relu_1", "block2.add_1", "head", "relu_1"]
    assert n.input == "input"


def test_duplicate_label_in_unlabelled_loop_is_an_error():
    with pytest.raises(ArchError, match="already used") as e:
        net(" for i in range(2) { x = c: conv(x, 4, kernel=1) }\n return x")
    assert "label the loop" in e.value.hint


def test_bad_interpolated_label():
    with pytest.raises(ArchError, match="not a valid name"):
        net(' return "{1}x": relu(x)')


def test_block_defaults_use_earlier_params_and_own_scope():
    blocks = ("block b(x: tensor, out: int = x.channels * 2, mid: int = out // 4) {\n"
              " return x -> conv(mid, kernel=1) -> conv(out, kernel=1)\n}")
    n = net(" return b(x)", blocks)
    assert [n.node(k)["shape"][0] for k in n.layers()] == [2, 8]
    n = net(" return b(x, out=16)", blocks)
    assert [n.node(k)["shape"][0] for k in n.layers()] == [4, 16]
    # a default cannot see the caller's variables
    blocks2 = "block c(x: tensor, k: int = outer) {\n return conv(x, k, kernel=1)\n}"
    with pytest.raises(ArchError, match="unknown name 'outer'"):
        net(" outer = 3\n return c(x)", blocks2)


def test_tensor_attributes_and_operators():
    n = net("""
    assert x.channels == 4 and x.height == 8 and x.width == 8
    assert x.shape == [4, 8, 8]
    s = x -> global_avgpool -> sigmoid
    y = x * s
    return y + x""")
    assert [n.node(k)["op"] for k in n.layers()] == ["global_avgpool", "sigmoid", "mul", "add"]
    with pytest.raises(ArchError, match="no attribute 'size'"):
        net(" return conv(x, x.size, kernel=1)")
    with pytest.raises(ArchError, match="not defined for tensor"):
        net(" return x - x")


def test_split_and_activation():
    n = net(" a, b = split(x, 2)\n c = parts: split(x, [1, 3])\n"
            ' return concat(a, b, c[0], c[1]) -> act: activation("hswish")')
    assert n.layers()[:4] == ["split_1.0", "split_1.1", "parts.0", "parts.1"]
    assert n.node("act")["op"] == "hswish"
    assert n.output_shape == (8, 8, 8)
    with pytest.raises(ArchError, match="cannot split 4 channels into 3"):
        net(" a = split(x, 3)\n return x")
    with pytest.raises(ArchError, match="unknown activation"):
        net(' return activation(x, "rellu")')


def test_assert_message_and_return_required():
    with pytest.raises(ArchError, match="assertion failed: too small"):
        net(' assert x.channels > 10, "too small"\n return x')
    with pytest.raises(ArchError, match="without `return`"):
        net(" y = x")


def test_recursion_is_rejected():
    with pytest.raises(ArchError, match="recursion"):
        net(" return r(x)", "block r(x: tensor) {\n return r(x)\n}")


def test_imports_relative_first_then_bundled(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.arch").write_text(
        'import "std/se.arch"\nblock mine(x: tensor) {\n return se(x, ratio=2)\n}\n')
    main = tmp_path / "main.arch"
    main.write_text('import "sub/mine.arch"\nimport "sub/mine.arch"\n'
                    'network M() {\n x = input(8, 4, 4)\n return mine(x)\n}\n')
    n = archc.load(str(main))
    assert n.layers()[0] == "mine_1.se_1.pool"
    # a file next to the importing one (sub/) shadows the bundled library
    (tmp_path / "sub" / "std").mkdir()
    (tmp_path / "sub" / "std" / "se.arch").write_text("block se(x: tensor, ratio: float = 1) {\n return relu(x)\n}\n")
    n = archc.load(str(main))
    assert [n.node(k)["op"] for k in n.layers()] == ["relu"]


@pytest.mark.parametrize("text,needle", [
    ('import "../x.arch"', "must be relative"),
    ('import "nowhere.arch"', "cannot find"),
])
def test_bad_imports(tmp_path, text, needle):
    f = tmp_path / "m.arch"
    f.write_text(text + "\nnetwork M() {\n x = input(1, 1, 1)\n return x\n}\n")
    with pytest.raises(ArchError, match=needle):
        archc.load(str(f))


def test_imported_file_may_not_define_a_network(tmp_path):
    (tmp_path / "n.arch").write_text("network X() {\n x = input(1, 1, 1)\n return x\n}\n")
    f = tmp_path / "m.arch"
    f.write_text('import "n.arch"\nnetwork M() {\n x = input(1, 1, 1)\n return x\n}\n')
    with pytest.raises(ArchError, match="blocks only"):
        archc.load(str(f))


def test_parameter_overrides_and_width_multiplier():
    src = ("network W(width: float = 1.0, resolution: int = 32) {\n"
           " x = input(3, resolution, resolution)\n"
           " return x -> conv(make_divisible(32 * width, 8), kernel=3, padding=1)\n}")
    assert archc.load_source(src).output_shape == (32, 32, 32)
    assert archc.load_source(src, width=0.35, resolution=16).output_shape == (16, 16, 16)
    with pytest.raises(ArchError, match="no parameter 'widht'"):
        archc.load_source(src, widht=1.0)


def test_language_reference_example_compiles():
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "language.md").read_text()
    example = re.findall(r"```\n(import \"std/se.arch\".*?)```", doc, re.S)[0]
    n = archc.load_source(example)
    assert n.output_shape == (10, 1, 1)


def test_op_table_in_docs_is_fresh():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "tools" / "gen_op_docs.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
