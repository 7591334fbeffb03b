"""Hostile input must end (quickly) with a positioned error, never hang or exhaust memory.

Each case runs `archc check` in a subprocess with a 20 s timeout: the bound only asserts
termination, not speed. The limits themselves live in compiler/limits.py.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from archc.compiler import limits

HEAD = "network N() {\n x = input(3, 32, 32)\n"
TAIL = " return x\n}\n"
POSITIONED = re.compile(r"^t\.arch:(\d+):(\d+): error: (.*)$", re.M)


def body(text: str) -> str:
    return HEAD + text + "\n" + TAIL


CASES = {
    "nested_parens": (body(" y = " + "(" * 10_000 + "1" + ")" * 10_000),
                      "brackets are nested more than"),
    "nested_lists": (body(" y = " + "[" * 10_000 + "]" * 10_000), "brackets are nested more than"),
    "nested_braces": (body(" if true {" * 10_000 + "}" * 10_000), "brackets are nested more than"),
    "nested_operators": (body(" y = " + "not " * 10_000 + "true"), "nesting is too deep"),
    "range_1e9": (body(" for i in range(10**9) {\n  y = i\n }"), "exceeds the limit"),
    "loops_1e12": (body(" for i in range(100000) {\n  for j in range(100000) {\n"
                        "   for k in range(100) {\n    y = 1\n   }\n  }\n }"),
                   f"evaluation takes more than {limits.MAX_STEPS} steps"),
    "list_doubling": (body(" l = [1]\n for i in range(100) {\n  l = l + l\n }"),
                      f"list longer than {limits.MAX_LIST} elements"),
    "list_repeat": (body(" l = [1] * 10**9"), f"list longer than {limits.MAX_LIST} elements"),
    "pow_2_10000": (body(" y = 2**10000"), "exponent 10000 is out of range"),
    "pow_10_100": (body(" y = 10**100"), "exponent 100 is out of range"),
    "int_overflow": (body(" y = 2**62 * 4"), "is larger than the limit"),
    "int_of_huge_float": (body(" y = int(1e300)"), "integer of 301 digits is larger than the limit"),
    "huge_int_literal": (body(" y = " + "9" * 5000), "integer literal is too large"),
    "node_limit": (body(" for i in range(1000) {\n  for j in range(300) {\n   x = relu(x)\n  }\n }"),
                   f"the network has more than {limits.MAX_NODES} layers"),
    "string_doubling": (body(' s = "ab"\n for i in range(40) {\n  s = s + s\n }'),
                        f"string longer than {limits.MAX_STRING} characters"),
    "long_string_literal": (body(' s = "' + "a" * 200_000 + '"'),
                            f"string is longer than {limits.MAX_STRING} characters"),
    "mutual_recursion": ("block a(x: tensor) {\n return b(x)\n}\nblock b(x: tensor) {\n return a(x)\n}\n"
                         + HEAD + " return a(x)\n}\n", "recursion is not allowed"),
}


def archc_check(cwd, *argv):
    return subprocess.run([sys.executable, "-m", "archc", "check", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_ends_with_a_positioned_error(tmp_path, case):
    source, message = CASES[case]
    (tmp_path / "t.arch").write_text(source)
    p = archc_check(tmp_path, "t.arch")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    m = POSITIONED.match(p.stderr)
    assert m, p.stderr[:500]
    assert message in m.group(3), p.stderr[:500]
    assert 1 <= int(m.group(1)) <= source.count("\n") + 1


def test_five_megabyte_file(tmp_path):
    (tmp_path / "t.arch").write_text(body(" y = 1\n" * 750_000))
    assert (tmp_path / "t.arch").stat().st_size > 5_000_000
    p = archc_check(tmp_path, "t.arch")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"t.arch:1:1: error: 't.arch' is larger than {limits.MAX_SOURCE_BYTES}")


def test_five_megabyte_source_text():
    from archc.compiler import ArchError, load_source
    with pytest.raises(ArchError) as info:
        load_source(body(" y = 1\n" * 700_000), filename="big.arch")
    assert info.value.format().startswith("big.arch:1:1: error: file is larger than")


def test_import_cycle_terminates_and_works(tmp_path):
    (tmp_path / "a.arch").write_text('import "b.arch"\nblock fa(x: tensor) {\n return relu(x)\n}\n'
                                     "network N() {\n x = input(3, 8, 8)\n return fb(x)\n}\n")
    (tmp_path / "b.arch").write_text('import "a.arch"\nblock fb(x: tensor) {\n return fa(x)\n}\n')
    p = archc_check(tmp_path, "a.arch")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok: N:")


def test_import_cycle_between_block_files(tmp_path):
    (tmp_path / "c.arch").write_text('import "d.arch"\nblock fc(x: tensor) {\n return relu(x)\n}\n')
    (tmp_path / "d.arch").write_text('import "c.arch"\nblock fd(x: tensor) {\n return fc(x)\n}\n')
    (tmp_path / "m.arch").write_text('import "c.arch"\nnetwork N() {\n x = input(3, 8, 8)\n'
                                     " return fd(x)\n}\n")
    p = archc_check(tmp_path, "m.arch")
    assert p.returncode == 0, p.stderr


def test_self_import(tmp_path):
    (tmp_path / "s.arch").write_text('import "s.arch"\nnetwork N() {\n x = input(3, 8, 8)\n return x\n}\n')
    p = archc_check(tmp_path, "s.arch")
    assert p.returncode == 0, p.stderr


def test_bundled_networks_are_far_below_the_limits():
    from archc.compiler import bundled_networks, load
    for name in bundled_networks():
        net = load(name)
        assert len(net.graph) < limits.MAX_NODES // 5, name
