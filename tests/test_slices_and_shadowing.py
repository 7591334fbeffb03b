"""List slicing (`a[1:]`, `a[:2]`, `a[1:3]`, negative bounds) and blocks that shadow a
built-in: a file's own block wins, with one note, so adding built-ins never breaks a file."""
from __future__ import annotations

import subprocess
import sys

import pytest

import archc
from archc.compiler import ArchError


def _widths(expr: str) -> list:
    src = f"""
network N() {{
    x = input(3, 8, 8)
    ws = [4, 8, 16, 32]
    for w in {expr} {{
        x = x -> conv(w, kernel=1)
    }}
    return x
}}
"""
    net = archc.load_source(src)
    return [net.node(n)["shape"][0] for n in net.layers()]


@pytest.mark.parametrize("expr,want", [
    ("ws[1:]", [8, 16, 32]), ("ws[:2]", [4, 8]), ("ws[1:3]", [8, 16]), ("ws[:]", [4, 8, 16, 32]),
    ("ws[-2:]", [16, 32]), ("ws[:-3]", [4]), ("ws[1 + 1:len(ws)]", [16, 32]),
    ("ws[3:1]", []), ("ws[2:99]", [16, 32]), ("[1, 2, 3][1:][0:1]", [2]),
])
def test_slices_take_python_parts_of_lists(expr, want):
    assert _widths(expr) == want


def test_a_slice_in_a_block_parameterised_by_its_bounds():
    src = """
block stack(x: tensor, ws: list, skip: int) {
    for w in ws[skip:] {
        x = x -> conv(w, kernel=1)
    }
    return x
}
network N() {
    x = input(3, 8, 8)
    y = x -> stack([4, 8, 16], 1) -> stack([2, 6], 0)
    return y
}
"""
    net = archc.load_source(src)
    assert [net.node(n)["shape"][0] for n in net.layers()] == [8, 16, 2, 6]
    from archc.backends import torch_backend
    torch_backend.build_source(net)   # the generated classes compile the slices


def test_a_labelled_call_is_still_an_expression_inside_brackets_after_parentheses():
    src = """
network N() {
    x = input(3, 8, 8)
    ys = [a: conv(x, 4, kernel=1), b: conv(x, 6, kernel=1)]
    y = concat(ys[1:])
    return y
}
"""
    net = archc.load_source(src)
    assert net.node(net.output)["shape"] == (6, 8, 8)


@pytest.mark.parametrize("expr,message,col", [
    ('ws["a":]', "slice bound must be an int, got string", 17),
    ("ws[1:2.5]", "slice bound must be an int, got float", 19),
    ("ws[true:]", "slice bound must be an int, got bool", 17),
    ("n[1:]", "cannot slice a int", 14),
])
def test_bad_slices_are_positioned_errors(expr, message, col):
    src = f"""
network N() {{
    x = input(3, 8, 8)
    ws = [4, 8]
    n = 3
    for w in {expr} {{
        x = x -> conv(w, kernel=1)
    }}
    return x
}}
"""
    with pytest.raises(ArchError) as e:
        archc.load_source(src)
    assert message in e.value.message
    assert (e.value.span.line, e.value.span.column) == (6, col)
    assert e.value.hint


def test_a_slice_missing_its_bracket_is_a_syntax_error():
    with pytest.raises(ArchError) as e:
        archc.load_source("network N() {\n    x = input(3, 8, 8)\n    y = [1, 2][1:\n"
                          "    return x\n}\n")
    assert "'[' is never closed" in e.value.message
    assert (e.value.span.line, e.value.span.column) == (3, 15)


SHUFFLE = """
block channel_shuffle(x: tensor, groups: int) {
    # an earlier user's own shuffle: a 1x1 conv standing in for it
    return x -> conv(x.channels, kernel=1, groups=groups)
}

network N() {
    x = input(4, 8, 8)
    y = x -> channel_shuffle(2) -> gelu
    return y
}
"""


def test_a_block_may_shadow_a_built_in_with_one_note():
    net = archc.load_source(SHUFFLE, filename="shuffle.arch")
    assert [net.node(n)["op"] for n in net.layers()] == ["conv", "gelu"]
    assert len(net.notes) == 1
    note = net.notes[0]
    assert note.startswith("shuffle.arch:2:1: ") and "'channel_shuffle'" in note
    assert "built-in" in note


def test_the_cli_prints_the_note_once(tmp_path):
    path = tmp_path / "shuffle.arch"
    path.write_text(SHUFFLE)
    r = subprocess.run([sys.executable, "-m", "archc", "analyze", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("note:") == 1 and "channel_shuffle" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_file_without_shadowing_has_no_notes():
    assert archc.load("resnet").notes == ()
